"""PEM files for other processes, and the ``nettest certs`` command."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import re
import select
import shlex
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509

from nettest._processes import _pid_namespace, process_tag
from nettest._tls import _write_file
from nettest._tls_files import TLSFiles, cli_main, tls_files, write_tls_files  # noqa: F401
from support import dead_pid
from test_tls import (
    PYTESTER_CONFTEST,
    TIMEOUT,
    blocking_exchange,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import trustme

# A TLS server in another process: it loads the files named on its command line,
# prints its port, and echoes one line upper-cased per connection.
SERVER_SCRIPT = """
import socket, ssl, sys
certfile, keyfile, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certfile, keyfile)
if cafile:
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile)
with socket.create_server(("127.0.0.1", 0)) as listener:
    print(listener.getsockname()[1], flush=True)
    while True:
        connection, _ = listener.accept()
        with context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        ) as tls:
            try:
                tls.do_handshake()
                tls.sendall(tls.recv(100).upper())
            except (ssl.SSLError, OSError) as error:
                print("server:", getattr(error, "reason", error), flush=True)
                # Close gently: closing with the client's bytes unread sends a reset,
                # and the reset makes the client's kernel drop our alert unread.
                try:
                    tls.shutdown(socket.SHUT_WR)
                    tls.settimeout(5)
                    while tls.recv(4096):
                        pass
                except OSError:
                    pass
"""


@contextlib.asynccontextmanager
async def subprocess_server(
    certfile: Path, keyfile: Path, cafile: Path | None = None
) -> AsyncIterator[int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER_SCRIPT,
        str(certfile),
        str(keyfile),
        str(cafile or ""),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        yield int(line)
    finally:
        process.kill()
        await process.wait()
        if process.stdout is not None:
            process.stdout.feed_eof()
            # Let the pipe transport see EOF and close before the loop does.
            await process.stdout.read()


async def echo(port: int, context: ssl.SSLContext, server_hostname: str = "localhost") -> bytes:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=server_hostname),
        TIMEOUT,
    )
    try:
        writer.write(b"ping\n")
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


# -- the files -------------------------------------------------------------------------------


def test_tls_files_are_private_and_complete(
    tls_files: TLSFiles,
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
    tls_client_certificate: trustme.LeafCert,
) -> None:
    assert stat.S_IMODE(tls_files.directory.stat().st_mode) == 0o700
    assert tls_files.client_key is not None
    assert tls_files.client_cert is not None
    for key in (tls_files.key, tls_files.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    leaf, intermediate = (blob.bytes() for blob in tls_certificate.cert_chain_pems)
    assert tls_files.ca_bundle.read_bytes() == tls_ca.cert_pem.bytes()
    assert tls_files.cert.read_bytes() == leaf
    assert tls_files.chain.read_bytes() == intermediate
    assert tls_files.fullchain.read_bytes() == leaf + intermediate
    assert tls_files.key.read_bytes() == tls_certificate.private_key_pem.bytes()
    assert tls_files.client_cert.read_bytes() == b"".join(
        blob.bytes() for blob in tls_client_certificate.cert_chain_pems
    )
    assert all(
        path.parent == tls_files.directory
        for path in (tls_files.ca_bundle, tls_files.cert, tls_files.key, tls_files.fullchain)
    )


def test_tls_files_load_into_contexts(tls_files: TLSFiles) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls_files.fullchain, tls_files.key)
    client = ssl.create_default_context(cafile=tls_files.ca_bundle)
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    assert blocking_exchange(server, client) == (b"ping\n", b"PING\n")


def test_tls_files_cert_alone_is_an_incomplete_chain(tls_files: TLSFiles) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls_files.cert, tls_files.key)
    client = ssl.create_default_context(cafile=tls_files.ca_bundle)
    _, error = blocking_exchange(server, client)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == 20


def test_tls_files_exist_for_the_test_only(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PYTESTER_CONFTEST)
    pytester.makepyfile(
        """
        seen = []

        def test_uses(tls_files):
            assert tls_files.key.is_file()
            seen.append(tls_files.directory)

        def test_gone():
            assert seen and not seen[0].exists()
        """
    )
    pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly").assert_outcomes(passed=2)


def test_write_tls_files_never_overwrites(
    tmp_path: Path, tls_ca: trustme.CA, tls_certificate: trustme.LeafCert
) -> None:
    write_tls_files(tmp_path, tls_ca, tls_certificate)
    with pytest.raises(FileExistsError):
        write_tls_files(tmp_path, tls_ca, tls_certificate)


NOT_DIRECTORIES = [
    ("missing", FileNotFoundError, "does not exist"),
    ("file", NotADirectoryError, "is a file, not a directory"),
    ("dangling", FileNotFoundError, "is a symlink to 'nowhere', which does not exist"),
    ("to-file", NotADirectoryError, "is a symlink to 'file', not to a directory"),
]


def make_not_directories(directory: Path) -> None:
    """A file, and the symlinks of `NOT_DIRECTORIES`, in *directory*."""
    (directory / "file").write_bytes(b"a file")
    (directory / "dangling").symlink_to("nowhere")
    (directory / "to-file").symlink_to("file")


@pytest.mark.parametrize(("name", "error", "what"), NOT_DIRECTORIES)
def test_write_tls_files_says_what_is_there_when_directory_is_none(
    tmp_path: Path,
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
    name: str,
    error: type[OSError],
    what: str,
) -> None:
    # Not the first temporary file it would have opened in it.
    make_not_directories(tmp_path)
    with pytest.raises(error) as excinfo:
        write_tls_files(tmp_path / name, tls_ca, tls_certificate)
    assert str(excinfo.value) == f"directory {str(tmp_path / name)!r} {what}"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dangling", "file", "to-file"]


def refuse_temporary_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make creating a temporary file fail as in a directory one cannot write in."""
    real_open = os.open

    def open_(path: str | os.PathLike[str], flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path).endswith(".tmp"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)


def test_write_tls_files_names_the_directory_it_cannot_write_in(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
) -> None:
    """Not the temporary file it tried to create there, whose name means nothing."""
    refuse_temporary_files(monkeypatch)
    with pytest.raises(PermissionError) as excinfo:
        write_tls_files(tmp_path, tls_ca, tls_certificate)
    assert excinfo.value.filename == str(tmp_path)
    assert str(excinfo.value) == f"[Errno 13] Permission denied: {str(tmp_path)!r}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("directory", "error", "message"),
    [
        ("", ValueError, r"directory must not be empty \('\.' is the current directory\)"),
        ("keys\0x", ValueError, r"directory must not contain a null byte, got 'keys\\x00x'"),
        (None, TypeError, "directory must be a str or os.PathLike path, got NoneType"),
        (b"/tmp", TypeError, "directory must be a str or os.PathLike path, got bytes"),
    ],
)
def test_write_tls_files_refuses_a_directory_that_is_no_path(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
    directory: Any,
    error: type[Exception],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # an empty path meant the current directory
    with pytest.raises(error, match=message):
        write_tls_files(directory, tls_ca, tls_certificate)
    assert list(tmp_path.iterdir()) == []


ALL_NAMES = [
    "ca.pem",
    "cert.pem",
    "chain.pem",
    "fullchain.pem",
    "key.pem",
    "client-fullchain.pem",
    "client-key.pem",
]


def test_write_tls_files_writes_every_file_with_its_mode(
    tmp_path: Path,
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
    tls_client_certificate: trustme.LeafCert,
) -> None:
    umask = os.umask(0)
    os.umask(umask)
    write_tls_files(tmp_path, tls_ca, tls_certificate, client_certificate=tls_client_certificate)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ALL_NAMES)  # no temporaries
    for name in ALL_NAMES:
        mode = 0o600 if name.endswith("key.pem") else 0o644 & ~umask
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


@pytest.mark.parametrize("stale", ALL_NAMES)
def test_write_tls_files_writes_nothing_when_one_file_exists(
    tmp_path: Path,
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
    tls_client_certificate: trustme.LeafCert,
    stale: str,
) -> None:
    (tmp_path / stale).write_bytes(b"stale")
    with pytest.raises(FileExistsError, match="no file was written") as excinfo:
        write_tls_files(
            tmp_path, tls_ca, tls_certificate, client_certificate=tls_client_certificate
        )
    assert excinfo.value.filename == str(tmp_path / stale)
    assert [p.name for p in tmp_path.iterdir()] == [stale]
    assert (tmp_path / stale).read_bytes() == b"stale"
    # Once the culprit is gone, the same call succeeds: nothing half-written is in the way.
    (tmp_path / stale).unlink()
    write_tls_files(tmp_path, tls_ca, tls_certificate, client_certificate=tls_client_certificate)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ALL_NAMES)


def test_write_tls_files_names_every_file_in_the_way(
    tmp_path: Path, tls_ca: trustme.CA, tls_certificate: trustme.LeafCert
) -> None:
    (tmp_path / "key.pem").symlink_to(tmp_path / "nowhere")  # dangling, still in the way
    (tmp_path / "ca.pem").write_bytes(b"stale")
    with pytest.raises(FileExistsError) as excinfo:
        write_tls_files(tmp_path, tls_ca, tls_certificate)
    assert excinfo.value.filename == str(tmp_path / "ca.pem")
    assert f"also there: {tmp_path / 'key.pem'}" in str(excinfo.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "key.pem"]


def _fail_on_call(number: int, function: Callable[..., object]) -> Callable[..., object]:
    calls = itertools.count(1)

    def fail(*args: object, **kwargs: object) -> object:
        if next(calls) == number:
            raise OSError(errno.ENOSPC, "No space left on device")
        return function(*args, **kwargs)

    return fail


@pytest.mark.parametrize("stage", ["write", "rename"])
def test_write_tls_files_leaves_nothing_when_it_fails_midway(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
    stage: str,
) -> None:
    if stage == "write":  # the fourth file cannot be written
        monkeypatch.setattr("nettest._tls_files._write_file", _fail_on_call(4, _write_file))
    else:  # the third file cannot be renamed into place
        monkeypatch.setattr(os, "replace", _fail_on_call(3, os.replace))
    with pytest.raises(OSError, match="No space left on device"):
        write_tls_files(tmp_path, tls_ca, tls_certificate)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    write_tls_files(tmp_path, tls_ca, tls_certificate)  # and a retry works


def test_write_tls_files_never_replaces_a_file_that_appears_meanwhile(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
) -> None:
    (tmp_path / "key.pem").write_bytes(b"someone else's")
    # The check for existing files misses it, as if it appeared just after.
    monkeypatch.setattr(os.path, "lexists", lambda path: False)
    with pytest.raises(FileExistsError):
        write_tls_files(tmp_path, tls_ca, tls_certificate)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]
    assert (tmp_path / "key.pem").read_bytes() == b"someone else's"


def test_tls_files_directory_is_named_after_the_process(tls_files: TLSFiles) -> None:
    """The name lets the next session remove it if this process is killed."""
    assert tls_files.directory.name.startswith(f"nettest-tls-{process_tag()}-files-")
    assert tls_files.directory.parent == Path(tempfile.gettempdir())


@pytest.mark.skipif(os.name != "posix", reason="probes processes with os.kill(pid, 0)")
def test_tls_files_of_a_dead_process_are_removed_by_the_next_session(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that only uses tls_files removes what a killed session's tls_files left."""
    dead = dead_pid()
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    killed = temporary / f"nettest-tls-{dead}-{_pid_namespace()}-files-abc123"
    alive = temporary / f"nettest-tls-{process_tag()}-files-def456"
    for directory in (killed, alive):
        directory.mkdir(mode=0o700)
        (directory / "key.pem").write_bytes(b"a private key")
    tempfile.gettempdir()  # fixes this process's choice before TMPDIR changes for the inner one
    monkeypatch.setenv("TMPDIR", str(temporary))
    pytester.makeconftest(PYTESTER_CONFTEST)
    pytester.makepyfile(
        f"""
        import os, tempfile

        def test_files(tls_files):
            assert tempfile.gettempdir() == {str(temporary)!r}
            assert not os.path.exists({str(killed)!r})
            assert os.path.exists({str(alive)!r})
            assert tls_files.directory.name.startswith(f"nettest-tls-{{os.getpid()}}-")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)
    assert sorted(p.name for p in temporary.glob("nettest-tls-*")) == [alive.name]


def test_tls_files_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        TLSFiles()


# -- a server in another process --------------------------------------------------------------


@pytest.mark.asyncio
async def test_tls_files_serve_from_a_subprocess(
    tls_files: TLSFiles, tls_client_context: ssl.SSLContext
) -> None:
    async with subprocess_server(tls_files.fullchain, tls_files.key) as port:
        assert await echo(port, tls_client_context) == b"PING\n"


@pytest.mark.asyncio
async def test_tls_files_subprocess_serving_cert_alone_is_rejected(
    tls_files: TLSFiles, tls_client_context: ssl.SSLContext
) -> None:
    async with subprocess_server(tls_files.cert, tls_files.key) as port:
        with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
            await echo(port, tls_client_context)
    assert excinfo.value.verify_code == 20


@pytest.mark.asyncio
async def test_tls_files_mutual_tls_with_a_subprocess(
    tls_files: TLSFiles, tls_mutual_client_context: ssl.SSLContext
) -> None:
    async with subprocess_server(tls_files.fullchain, tls_files.key, tls_files.ca_bundle) as port:
        assert await echo(port, tls_mutual_client_context) == b"PING\n"


@pytest.mark.asyncio
async def test_tls_files_mutual_tls_subprocess_rejects_a_client_without_certificate(
    tls_files: TLSFiles, tls_client_context: ssl.SSLContext
) -> None:
    async with subprocess_server(tls_files.fullchain, tls_files.key, tls_files.ca_bundle) as port:
        with pytest.raises(ssl.SSLError) as excinfo:
            await echo(port, tls_client_context)
    assert excinfo.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"


@pytest.mark.skipif(not os.path.exists("/usr/bin/openssl"), reason="no openssl command")
@pytest.mark.parametrize("trusted", [True, False])
def test_tls_files_work_with_openssl_s_client(
    tls_files: TLSFiles, tls_server_context: ssl.SSLContext, trusted: bool
) -> None:
    """openssl verifies the chain that nettest serves against ca.pem, and only against it."""
    from test_tls import BlockingServer

    server = BlockingServer(tls_server_context)
    cafile = tls_files.ca_bundle if trusted else tls_files.cert
    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{server.port}",
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-x509_strict",
            "-CAfile",
            str(cafile),
            "-verify_return_error",
            "-quiet",
        ],
        input=b"ping\n",
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    served = server.finish()
    if trusted:
        # Our server closes without close_notify, so s_client exits 1 after the reply.
        assert b"verify error" not in result.stderr, result.stderr
        assert result.stdout == b"PING\n"
        assert served == b"ping\n"
    else:
        assert result.returncode != 0
        assert b"unable to get local issuer certificate" in result.stderr
        assert isinstance(served, ssl.SSLError)


# -- nettest certs ------------------------------------------------------------------------------


def test_cli_certs_writes_and_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "certs"
    assert cli_main([str(directory)]) == 0
    out = capsys.readouterr().out
    for name in ("ca.pem", "cert.pem", "chain.pem", "fullchain.pem", "key.pem"):
        assert f"{directory / name}\n" in out
        assert (directory / name).is_file()
    assert "server private key: " in out
    assert "CA certificate (clients trust this): " in out
    assert not (directory / "client-key.pem").exists()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "key.pem").stat().st_mode) == 0o600
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "fullchain.pem", directory / "key.pem")
    client = ssl.create_default_context(cafile=directory / "ca.pem")
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    assert blocking_exchange(server, client, "127.0.0.1") == (b"ping\n", b"PING\n")
    # A CA from another run is not trusted: each run makes a new CA.
    assert cli_main([str(tmp_path / "other")]) == 0
    stranger = ssl.create_default_context(cafile=tmp_path / "other" / "ca.pem")
    _, error = blocking_exchange(server, stranger)
    assert isinstance(error, ssl.SSLCertVerificationError)


def test_cli_certs_hosts_and_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main([str(tmp_path), "--host", "db.test", "--host", "10.1.2.3", "--client"]) == 0
    out = capsys.readouterr().out
    assert "server certificate for db.test, 10.1.2.3: " in out
    assert f"client private key: {tmp_path / 'client-key.pem'}" in out
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "fullchain.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    assert blocking_exchange(server, client, "db.test") == (b"ping\n", b"PING\n")
    _, error = blocking_exchange(server, client, "localhost")
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == 62


def test_cli_certs_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main([str(tmp_path)]) == 0
    before = (tmp_path / "key.pem").read_bytes()
    capsys.readouterr()
    assert cli_main([str(tmp_path)]) == 1
    assert "exist already; pass --force to replace" in capsys.readouterr().err
    assert (tmp_path / "key.pem").read_bytes() == before
    assert cli_main([str(tmp_path), "--force"]) == 0
    # One file in the way is named alone, and a stale client file (it would not
    # chain to the new CA) is in the way of a run without --client too.
    only = tmp_path / "only"
    only.mkdir()
    (only / "client-key.pem").write_bytes(b"old")
    capsys.readouterr()
    assert cli_main([str(only)]) == 1
    assert f"{only / 'client-key.pem'} exists already;" in capsys.readouterr().err
    assert cli_main([str(only), "--force"]) == 0
    assert not (only / "client-key.pem").exists()
    # A dangling symlink where a file goes is replaced too.
    key = tmp_path / "key.pem"
    key.unlink()
    key.symlink_to(tmp_path / "nowhere")
    assert cli_main([str(tmp_path)]) == 1
    assert cli_main([str(tmp_path), "--force"]) == 0
    assert not key.is_symlink()
    assert (tmp_path / "key.pem").read_bytes() != before
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600


def test_cli_certs_force_leaves_the_old_files_when_a_directory_is_in_the_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ca.pem").write_bytes(b"old CA")
    (tmp_path / "key.pem").mkdir()
    assert cli_main([str(tmp_path), "--force"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "key.pem"]
    assert (tmp_path / "ca.pem").read_bytes() == b"old CA"
    assert capsys.readouterr().err == (
        f"nettest certs: [Errno 21] Is a directory; no file was replaced: "
        f"'{tmp_path / 'key.pem'}'\n"
    )


def _contents(directory: Path) -> dict[str, tuple[bytes, int] | str]:
    """Each entry's bytes and mode, or a symlink's target."""
    return {
        path.name: str(path.readlink())
        if path.is_symlink()
        else (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        for path in directory.iterdir()
    }


def _refuse_hard_links(*args: object, **kwargs: object) -> None:
    raise OSError(errno.EPERM, "Operation not permitted")


# Seven old files (one a dangling symlink) are kept aside, then five new ones go
# into place over theirs: the first and last rename of either kind fails.  The
# five the new ones replace are kept as hard links, the two client files that go
# are renamed aside; where hard links are refused, all seven are renamed aside.
@pytest.mark.parametrize(
    ("hard_links", "failing"),
    [(True, 1), (True, 2), (True, 3), (True, 7), (False, 1), (False, 7), (False, 8), (False, 12)],
)
def test_cli_certs_force_puts_every_old_file_back_when_a_rename_fails(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hard_links: bool,
    failing: int,
) -> None:
    assert cli_main([str(tmp_path), "--client"]) == 0
    (tmp_path / "chain.pem").unlink()
    (tmp_path / "chain.pem").symlink_to(tmp_path / "nowhere")
    before = _contents(tmp_path)
    capsys.readouterr()
    if not hard_links:
        monkeypatch.setattr(os, "link", _refuse_hard_links)
    monkeypatch.setattr(os, "replace", _fail_on_call(failing, os.replace))
    assert cli_main([str(tmp_path), "--force"]) == 1
    monkeypatch.undo()
    assert _contents(tmp_path) == before
    # The error names a file of the set, not a temporary name.
    assert re.fullmatch(
        rf"nettest certs: \[Errno 28\] No space left on device: '{re.escape(str(tmp_path))}/"
        r"[a-z-]+\.pem'\n",
        capsys.readouterr().err,
    )
    assert cli_main([str(tmp_path), "--force"]) == 0  # and a retry works
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ALL_NAMES[:5])
    assert _contents(tmp_path) != before


def test_cli_certs_force_never_leaves_a_name_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that reloads its files while they are replaced finds each name
    # holding the old file or the new one, never nothing.
    assert cli_main([str(tmp_path)]) == 0
    names = sorted(path.name for path in tmp_path.iterdir())
    before = _contents(tmp_path)
    seen: list[list[str]] = []
    replace = os.replace

    def watched(source: object, destination: object) -> None:
        seen.append(sorted(name for name in names if (tmp_path / name).exists()))
        replace(source, destination)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", watched)
    assert cli_main([str(tmp_path), "--force"]) == 0
    monkeypatch.undo()
    assert len(seen) == len(names)
    assert all(present == names for present in seen)
    after = _contents(tmp_path)
    assert sorted(after) == names  # and no second name is left behind
    assert all(after[name] != before[name] for name in names)


def test_cli_certs_force_puts_nothing_aside_when_a_file_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli_main([str(tmp_path)]) == 0
    before = _contents(tmp_path)
    monkeypatch.setattr("nettest._tls_files._write_file", _fail_on_call(5, _write_file))
    assert cli_main([str(tmp_path), "--force"]) == 1
    assert _contents(tmp_path) == before


@pytest.mark.parametrize(("name", "what"), [(name, what) for name, _, what in NOT_DIRECTORIES[1:]])
def test_cli_certs_says_what_dir_is_when_it_is_no_directory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    what: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    make_not_directories(tmp_path)
    assert cli_main([name]) == 1
    assert capsys.readouterr().err == f"nettest certs: {name} {what}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dangling", "file", "to-file"]


def test_cli_certs_names_the_directory_it_cannot_write_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("ro").mkdir()
    refuse_temporary_files(monkeypatch)
    assert cli_main(["ro"]) == 1
    assert capsys.readouterr().err == "nettest certs: [Errno 13] Permission denied: 'ro'\n"
    assert list(Path("ro").iterdir()) == []


def test_cli_certs_help_says_which_servers_need_the_chain_apart(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "read the whole chain from one file (nginx, " in text
    assert "take fullchain.pem and key.pem" in text
    assert "need the chain apart, such as openssl s_server -cert cert.pem -cert_chain " in text
    assert "-cert_chain chain.pem -key key.pem (add -www" in text


# -- the recipes of docs/tls.rst, run as written (the port aside) -----------------------

DOCS_TLS = Path(__file__).resolve().parent.parent / "docs" / "tls.rst"
HAVE_OPENSSL_AND_CURL = bool(shutil.which("openssl") and shutil.which("curl"))


def documented_recipes() -> list[tuple[list[str], list[str], list[str]]]:
    """The ``nettest certs``, ``openssl s_server`` and ``curl`` commands of the guide."""
    text = DOCS_TLS.read_text()
    section = text[text.index("``nettest certs``\n---") :]
    section = section[: section.index("\nSpeed\n")]
    commands = [
        shlex.split(match.group(1).replace("\\\n", " "))
        for match in re.finditer(r"^   \$ ((?:[^\n]*\\\n)*[^\n]*)$", section, re.MULTILINE)
    ]
    recipes = [(commands[i], commands[i + 1], commands[i + 2]) for i in range(0, len(commands), 3)]
    for recipe in recipes:
        assert [words[0] for words in recipe] == ["nettest", "openssl", "curl"], recipe
    assert recipes, "no recipe found"
    return recipes


def serve_and_fetch(
    directory: Path, server: list[str], client: list[str]
) -> subprocess.CompletedProcess[bytes]:
    """Run the documented s_server on a port of its choosing; run curl against it."""
    port_at = server.index("-accept") + 1
    assert server[port_at] == "8443"
    server = [*server[:port_at], "0", *server[port_at + 1 :]]
    errors = directory / "s_server.stderr"
    with errors.open("wb") as stderr:
        process = subprocess.Popen(
            server,
            cwd=directory,
            stdin=subprocess.PIPE,  # kept open, as a terminal is: s_server quits on EOF
            stdout=subprocess.PIPE,
            stderr=stderr,
            # Unbuffered: a buffered readline() may take the ACCEPT line into its
            # buffer along with the line before, and select() then waits for more.
            bufsize=0,
        )
    try:
        assert process.stdout is not None
        port = None
        while port is None:
            ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
            line = process.stdout.readline() if ready else b""
            assert line, (
                f"openssl s_server printed no ACCEPT line (exit status {process.poll()}); "
                f"it said: {errors.read_bytes()!r}"
            )
            if line.startswith(b"ACCEPT "):
                port = int(line.rsplit(b":", 1)[1])
        url = f"https://localhost:{port}/"
        client = [url if word == "https://localhost:8443/" else word for word in client]
        assert url in client
        return subprocess.run(
            [*client, "--silent", "--show-error", "--max-time", "5"],
            cwd=directory,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        process.kill()
        process.wait(TIMEOUT)
        process.stdin.close()  # type: ignore[union-attr]
        process.stdout.close()  # type: ignore[union-attr]


def run_nettest_certs(directory: Path, command: list[str]) -> None:
    assert command[:2] == ["nettest", "certs"]
    subprocess.run(
        [sys.executable, "-m", "nettest", *command[1:]],
        cwd=directory,
        capture_output=True,
        timeout=60,
        check=True,
    )


@pytest.mark.skipif(not HAVE_OPENSSL_AND_CURL, reason="needs the openssl and curl commands")
@pytest.mark.parametrize("recipe", [0, 1], ids=["server", "mutual"])
def test_cli_certs_documented_recipe_works(tmp_path: Path, recipe: int) -> None:
    certs, server, client = documented_recipes()[recipe]
    run_nettest_certs(tmp_path, certs)
    result = serve_and_fetch(tmp_path, server, client)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"<HTML>"), result.stdout[:200]  # s_server -www's page


@pytest.mark.skipif(not HAVE_OPENSSL_AND_CURL, reason="needs the openssl and curl commands")
def test_cli_certs_documented_recipe_fails_without_the_chain(tmp_path: Path) -> None:
    """The twin: ``s_server -cert fullchain.pem`` sends the leaf alone, as the guide warns."""
    certs, _, client = documented_recipes()[0]
    run_nettest_certs(tmp_path, certs)
    server = "openssl s_server -accept 8443 -www -cert certs/fullchain.pem -key certs/key.pem"
    result = serve_and_fetch(tmp_path, server.split(), client)
    assert result.returncode == 60, result.stderr  # curl: "unable to get local issuer certificate"


@pytest.mark.skipif(not HAVE_OPENSSL_AND_CURL, reason="needs the openssl and curl commands")
def test_cli_certs_documented_mutual_recipe_refuses_a_client_without_certificate(
    tmp_path: Path,
) -> None:
    certs, server, client = documented_recipes()[1]
    run_nettest_certs(tmp_path, certs)
    without = [w for w in client if w not in ("--cert", "--key") and "client-" not in w]
    assert len(without) == len(client) - 4
    result = serve_and_fetch(tmp_path, server, without)
    assert result.returncode != 0
    assert b"alert" in result.stderr, result.stderr  # TLS 1.3: "alert certificate required"


def test_cli_certs_help_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli_main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: nettest certs [-h]")
    assert cli_main([]) == 2
    assert "the following arguments are required: DIR" in capsys.readouterr().err
    assert cli_main([str(tmp_path), "--host", ""]) == 2
    assert (
        "nettest certs: error: argument --host: '' is not a host name" in capsys.readouterr().err
    )
    monkeypatch.chdir(tmp_path)  # an empty DIR meant the current directory
    assert cli_main([""]) == 2
    assert "nettest certs: error: DIR must not be empty" in capsys.readouterr().err
    assert not (tmp_path / "key.pem").exists()


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.0/8", "'127.0.0.0/8' is a network (/8): give a host name or an IP address"),
        ("db/test", "'db/test' has a '/', which no host name has: give a host name"),
        ("999.1.1.1", "'999.1.1.1' is not a valid IP address"),
        ("::zz", "'::zz' is not a valid IP address"),
        ("a..test", "'a..test' is not a host name"),
        ("a test", "'a test' is not a host name"),
        ("*", "'*' is not a host name: a wildcard must be the whole first label"),
        ("a.*.test", "'a.*.test' is not a host name: a wildcard must be the whole first label"),
        ("*.test", "'*.test': a wildcard needs two labels after it, as in *.example.com"),
        ("under_score.test", "'under_score.test' is not a host name: Codepoint U+005F"),
    ],
)
def test_cli_certs_refuses_a_host_no_client_could_match(
    host: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # trustme writes a network as an IP SAN of 8 bytes, and 999.1.1.1 as a DNS name.
    assert cli_main([str(tmp_path), "--host", host]) == 2
    assert f"nettest certs: error: argument --host: {message}" in capsys.readouterr().err
    assert not (tmp_path / "key.pem").exists()


def test_cli_certs_accepts_names_wildcards_and_addresses(tmp_path: Path) -> None:
    hosts = ["db.test", "*.db.test", "127.0.0.2", "::1"]
    assert cli_main([str(tmp_path), *(f"--host={host}" for host in hosts)]) == 0
    pem = (tmp_path / "cert.pem").read_bytes()
    names = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(name.value) for name in names.value] == hosts


def test_cli_certs_writes_a_host_as_the_certificate_holds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fully qualified name's last dot, capitals and a Unicode name: the SAN is
    # lower case, without the dot, in IDNA, and the listing says what it holds
    # (it said "EXAMPLE.test." of a certificate for example.test).
    hosts = ["EXAMPLE.test.", "*.Db.test", "bücher.test"]
    assert cli_main([str(tmp_path), *(f"--host={host}" for host in hosts)]) == 0
    pem = (tmp_path / "cert.pem").read_bytes()
    names = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    held = ["example.test", "*.db.test", "xn--bcher-kva.test"]
    assert [str(name.value) for name in names.value] == held
    assert f"server certificate for {', '.join(held)}: " in capsys.readouterr().out


def test_cli_certs_says_what_is_in_the_way_of_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It gave the raw "[Errno 20] Not a directory: '.../file/sub'".
    (tmp_path / "file").touch()
    assert cli_main([str(tmp_path / "file" / "sub" / "certs")]) == 1
    assert (
        capsys.readouterr().err
        == f"nettest certs: {tmp_path / 'file'} is a file, not a directory\n"
    )


def test_cli_certs_makes_missing_parents_private_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "a b" / "ünï" / "certs"
    old_umask = os.umask(0o022)
    try:
        assert cli_main([str(directory)]) == 0
    finally:
        os.umask(old_umask)
    for path in (tmp_path / "a b", tmp_path / "a b" / "ünï", directory):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
