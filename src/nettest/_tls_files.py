"""TLS material as PEM files, for servers under test that run as other processes.

Also the ``nettest certs DIR`` command, which writes the same files for manual use.
Private keys are always created with mode 0600, never rewritten in place, and the
fixture's directory is private (mode 0700) and removed after the test, or by the
next session when the process was killed before it could remove it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import pathlib
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, final

import pytest

from ._cli import write_lines
from ._tls import (
    DEFAULT_IDENTITIES,
    _authority,
    _build,
    _check_trustme,
    _leaf_identity,
    _make_key_dir,
    _write_file,
    new_ca,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import trustme

__all__ = ["TLSFiles", "cli_main", "write_tls_files"]

_NAMES = {
    "ca_bundle": "ca.pem",
    "cert": "cert.pem",
    "chain": "chain.pem",
    "fullchain": "fullchain.pem",
    "key": "key.pem",
    "client_cert": "client-fullchain.pem",
    "client_key": "client-key.pem",
}


@final
@dataclass(frozen=True, slots=True, init=False)
class TLSFiles:
    """Paths to PEM files: a server's certificate, chain and key, and the CA to trust.

    This type has no public constructor: get one from the ``tls_files`` fixture or
    from `write_tls_files`.  The names follow Let's Encrypt's: give a server
    `fullchain` and `key` (or `cert`, `chain` and `key` where it wants them
    apart), and give clients `ca_bundle`.  Every file is closed, so it can be
    opened again on any platform.

    Attributes:
        directory: The directory that holds every file.
        ca_bundle: The root CA's certificate: what clients trust.
        cert: The server's certificate alone.
        chain: The intermediate CA certificates, leaf excluded.
        fullchain: `cert` followed by `chain`: what a server sends.
        key: The server's private key (PKCS#8 or traditional PEM, mode 0600).
        client_cert: The client certificate followed by its chain, for mutual TLS,
            or None.
        client_key: The client certificate's private key (mode 0600), or None.
    """

    directory: Path
    ca_bundle: Path
    cert: Path
    chain: Path
    fullchain: Path
    key: Path
    client_cert: Path | None
    client_key: Path | None

    def __init__(self) -> None:
        raise TypeError(
            "TLSFiles has no public constructor: use the tls_files fixture or write_tls_files()"
        )


def _check_directory(directory: object) -> Path:
    """Return *directory* as a Path: a non-empty str or os.PathLike of str."""
    path = os.fspath(directory) if isinstance(directory, os.PathLike) else directory
    if not isinstance(path, str):
        raise TypeError(
            f"directory must be a str or os.PathLike path, got {type(directory).__name__}"
        )
    if not path:
        raise ValueError("directory must not be empty ('.' is the current directory)")
    if "\0" in path:
        raise ValueError(f"directory must not contain a null byte, got {path!r}")
    return Path(path)


def write_tls_files(
    directory: str | pathlib.Path,
    ca: trustme.CA,
    certificate: trustme.LeafCert,
    *,
    client_certificate: trustme.LeafCert | None = None,
) -> TLSFiles:
    """Write *ca*, *certificate* and its key (and a client's) as PEM files in *directory*.

    Keys are created with mode 0600.  The files must not exist yet: a key is
    never written into a file that someone else may already be able to read.
    The files appear together or not at all: when one of them exists already,
    or a write fails, none is left behind.  Each is written under a temporary
    name first and renamed into place.

    Args:
        directory: An existing directory; keep it private.
        ca: The CA whose certificate goes in ``ca.pem``.
        certificate: The server certificate, its chain and key.
        client_certificate: A client certificate to write too, for mutual TLS.

    Returns:
        The paths written.

    Raises:
        TypeError: *directory* is not a `str` or ``os.PathLike`` path, *ca* not a
            ``trustme.CA``, or a certificate not a ``trustme.LeafCert``.
        ValueError: *directory* is empty (``"."`` names the current directory), or
            holds a null byte.
        FileExistsError: One of the files exists already (even as a dangling
            symlink); nothing was written.
        FileNotFoundError: *directory* does not exist, or is a dangling symlink
            (the message says which).
        NotADirectoryError: *directory* is a file, or a symlink to one (the
            message says which).
        OSError: A file cannot be written in *directory* (`PermissionError`, or a
            full disk); the error names *directory*, and nothing was written.

    Example::

        files = nettest.write_tls_files(private_dir, tls_ca, tls_certificate)
        subprocess.run(["my-server", "--cert", files.fullchain, "--key", files.key])
    """
    return _write_tls_files(directory, ca, certificate, client_certificate, replace=False)


def _write_tls_files(
    directory: str | pathlib.Path,
    ca: trustme.CA,
    certificate: trustme.LeafCert,
    client_certificate: trustme.LeafCert | None,
    *,
    replace: bool,
) -> TLSFiles:
    """`write_tls_files`, or with *replace* what ``nettest certs --force`` does.

    With *replace*, files that exist already are replaced, and a file of the
    other set (a client certificate and key left from an earlier run, which
    would not chain to the new CA) is removed, all or nothing still: see
    `_write_all_or_nothing`.
    """
    root = _check_directory(directory)
    _check_trustme("ca", ca, "CA")
    _check_trustme("certificate", certificate, "LeafCert")
    if client_certificate is not None:
        _check_trustme("client_certificate", client_certificate, "LeafCert")
    if not root.is_dir():
        # Said of the directory, not of the first temporary file opened in it.
        error, what = _not_a_directory(root)
        raise error(f"directory {str(root)!r} {what}")
    paths = {name: root / filename for name, filename in _NAMES.items()}
    server = _leaf_identity(certificate)
    contents: dict[str, tuple[bytes, bool]] = {
        "ca_bundle": (ca.cert_pem.bytes(), False),
        "cert": (server.chain_pems[0], False),
        "chain": (b"".join(server.chain_pems[1:]), False),
        "fullchain": (b"".join(server.chain_pems), False),
        "key": (server.key_pem, True),
    }
    client_cert = client_key = None
    if client_certificate is not None:
        client = _leaf_identity(client_certificate)
        client_cert, client_key = paths["client_cert"], paths["client_key"]
        contents["client_cert"] = (b"".join(client.chain_pems), False)
        contents["client_key"] = (client.key_pem, True)
    stale = [paths[name] for name in _NAMES if name not in contents] if replace else []
    _write_all_or_nothing(
        {paths[name]: content for name, content in contents.items()},
        replace=replace,
        remove=stale,
    )
    return _build(
        TLSFiles,
        directory=root,
        ca_bundle=paths["ca_bundle"],
        cert=paths["cert"],
        chain=paths["chain"],
        fullchain=paths["fullchain"],
        key=paths["key"],
        client_cert=client_cert,
        client_key=client_key,
    )


def _write_all_or_nothing(
    files: dict[Path, tuple[bytes, bool]], *, replace: bool = False, remove: Sequence[Path] = ()
) -> None:
    """Write each path's bytes (mode 0600 when private), every file or none.

    Every path is checked before anything is written.  The data goes to
    temporary files in the same directory, created as `_write_file` creates
    files.  Then, without *replace*, each path is claimed with ``O_EXCL`` (so a
    file that appeared meanwhile is never replaced) and the temporary file
    renamed over it.  With *replace*, each file already there (those of *files*
    and of *remove*) is first kept under a second name, a hard link (a symlink
    itself rather than what it points to), and each temporary file is renamed
    over its path: every name holds the old file or the new one at every moment.
    Where the file system refuses hard links, the old file is renamed aside.
    The old files are deleted only once every new one is in place.  On any
    error everything made so far is removed and the old files are renamed back,
    so nothing is left half-written or half-replaced.
    """
    targets = [*files, *remove]
    if replace:
        # A directory in the way could be renamed aside, but never deleted: refuse it.
        for path in targets:
            if path.is_dir() and not path.is_symlink():
                raise IsADirectoryError(
                    errno.EISDIR, "Is a directory; no file was replaced", str(path)
                )
    else:
        # lexists: a dangling symlink is there too, and O_EXCL would refuse it.
        existing = [path for path in files if os.path.lexists(path)]
        if existing:
            message = "File exists; no file was written"
            if len(existing) > 1:
                message += f" (also there: {', '.join(str(path) for path in existing[1:])})"
            raise FileExistsError(errno.EEXIST, message, str(existing[0]))
    made: list[Path] = []  # what to remove if anything fails
    aside: list[tuple[Path, Path]] = []  # (old file's new name, its path): put back on failure
    try:
        staged: list[tuple[Path, Path]] = []
        for path, (data, private) in files.items():
            temporary = _sibling(path, "tmp")
            try:
                _write_file(temporary, data, private=private)  # removes it if writing fails
            except OSError as error:
                # Say which directory cannot be written in: the temporary name means nothing.
                raise _naming(error, path.parent) from None
            made.append(temporary)
            staged.append((temporary, path))
        if replace:
            for path in targets:
                if os.path.lexists(path):
                    aside.append((_keep_aside(path, keep_name=path in files), path))
        else:
            for _, path in staged:
                # Claim the name: this fails if the file appeared since the check.
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                made.append(path)
        for temporary, path in staged:
            _rename(temporary, path, path)  # keeps the temporary file's mode
            made.remove(temporary)
            if replace:
                made.append(path)
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                path.unlink()
        for old, path in reversed(aside):
            with contextlib.suppress(OSError):
                if _same_file(old, path):
                    old.unlink()  # never replaced: the second name goes
                else:
                    os.replace(old, path)
        raise
    for old, _ in aside:
        # Every new file is in place: a leftover here is no reason to report failure.
        with contextlib.suppress(OSError):
            old.unlink()


def _sibling(path: Path, suffix: str) -> Path:
    """A new hidden name next to *path*, for a temporary file or an old one moved aside."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.{suffix}")


def _keep_aside(path: Path, *, keep_name: bool) -> Path:
    """Give the file at *path* a second, hidden name and return it.

    With *keep_name*, a hard link, so that *path* stays there until a new file
    is renamed over it; otherwise, or where hard links are refused, a rename.
    """
    old = _sibling(path, "old")
    if keep_name:
        try:
            os.link(path, old, follow_symlinks=False)
        except OSError:
            pass  # a file system without hard links, or one that forbids this one
        else:
            return old
    _rename(path, old, path)
    return old


def _same_file(first: Path, second: Path) -> bool:
    """Whether two names are links to one file (symlinks not followed)."""
    try:
        return os.path.samestat(os.lstat(first), os.lstat(second))
    except OSError:
        return False


def _rename(source: Path, destination: Path, path: Path) -> None:
    """``os.replace(source, destination)``; an error names *path*, not a hidden name."""
    try:
        os.replace(source, destination)
    except OSError as error:
        raise _naming(error, path) from None


def _naming(error: OSError, path: Path) -> OSError:
    """*error* (the same subclass, errno and reason) said of *path* alone."""
    if error.errno is None:
        return error
    return OSError(error.errno, error.strerror, str(path))


def _not_a_directory(path: Path) -> tuple[type[OSError], str]:
    """The error to raise for *path*, which is no directory, and what it is instead."""
    if path.is_symlink():
        target = os.readlink(path)
        if not path.exists():
            return FileNotFoundError, f"is a symlink to {target!r}, which does not exist"
        return NotADirectoryError, f"is a symlink to {target!r}, not to a directory"
    if path.is_file():
        return NotADirectoryError, "is a file, not a directory"
    if path.exists():
        return NotADirectoryError, "is not a directory"
    return FileNotFoundError, "does not exist"


@pytest.fixture
def tls_files(
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
    tls_client_certificate: trustme.LeafCert,
) -> Iterator[TLSFiles]:
    """PEM files of tls_ca, tls_certificate and its key, for a server in another process.

    The files are written to a new private directory (mode 0700, keys 0600) that
    exists for the test's duration and is removed after it, or by the next
    session if the process is killed.  The client certificate and key for mutual
    TLS are there too.
    """
    directory = _make_key_dir("files-")
    try:
        yield write_tls_files(
            directory, tls_ca, tls_certificate, client_certificate=tls_client_certificate
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- nettest certs -------------------------------------------------------------------------


def _host(name: str) -> str:
    """``--host``: an IP address or a host name, not what a certificate cannot match.

    trustme takes a network (``127.0.0.0/8``) and writes a SAN no client matches,
    and anything not an address (``999.1.1.1``) as a DNS name.
    """
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return name
    if "/" in name:
        address, _, prefix = name.partition("/")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            what = "has a '/', which no host name has"
        else:
            what = f"is a network (/{prefix})"
        raise argparse.ArgumentTypeError(
            f"{name!r} {what}: give a host name or an IP address, such as 127.0.0.1"
        )
    wildcard = "*." if name.startswith("*.") else ""
    # A fully qualified name's last dot is no part of what a certificate names.
    rest = name.removeprefix(wildcard).removesuffix(".")
    labels = rest.split(".")
    if ":" in name or all(label.isdigit() for label in labels):
        raise argparse.ArgumentTypeError(f"{name!r} is not a valid IP address")
    if not all(labels) or any(c.isspace() for c in name):
        raise argparse.ArgumentTypeError(
            f"{name!r} is not a host name: labels joined by single dots, no spaces"
        )
    if "*" in rest:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not a host name: a wildcard must be the whole first label, "
            "as in *.example.com"
        )
    if wildcard and len(labels) < 2:
        raise argparse.ArgumentTypeError(
            f"{name!r}: a wildcard needs two labels after it, as in *.example.com "
            "(clients match no wildcard over a single label)"
        )
    import idna  # trustme's own: the certificate holds the name as it encodes it

    try:
        encoded = idna.encode(rest, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise argparse.ArgumentTypeError(f"{name!r} is not a host name: {error}") from None
    return wildcard + encoded


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nettest certs",
        description="Write a test CA certificate, a server certificate (with its "
        "intermediate) and the server's private key to DIR, for manual testing. "
        "Clients must trust ca.pem. A server must send the intermediate too: servers "
        "that read the whole chain from one file (nginx, Apache httpd 2.4.8+, "
        "Python's ssl, Go) take fullchain.pem and key.pem; servers that use only the "
        "first certificate of that file need the chain apart, such as openssl "
        "s_server -cert cert.pem -cert_chain chain.pem -key key.pem (add -www to "
        "answer HTTPS requests). Keys are written with mode 0600. Never use these in "
        "production.",
    )
    parser.add_argument(
        "directory",
        metavar="DIR",
        help="where to write; created, with any missing parents, with mode 0700",
    )
    parser.add_argument(
        "--host",
        action="append",
        type=_host,
        dest="hosts",
        metavar="NAME",
        help="a host name or IP address the server certificate is valid for; repeat "
        f"for more (default: {', '.join(DEFAULT_IDENTITIES)})",
    )
    parser.add_argument(
        "--client",
        action="store_true",
        help="also write a client certificate and its key, for mutual TLS",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace files that exist already, all of them or none",
    )
    return parser


def _make_private_directory(directory: Path) -> None:
    """Make *directory* and its missing parents, each with mode 0700 (not the umask's)."""
    missing = [path for path in (directory, *directory.parents) if not os.path.lexists(path)]
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def cli_main(argv: list[str]) -> int:
    """Run ``nettest certs DIR``: write a CA, a server certificate and its key.

    Args:
        argv: The arguments after ``certs``.

    Returns:
        The exit status: 0 on success, 1 when a file exists or cannot be
        written, 2 for bad arguments.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, or a usage error already printed
        return exit.code if isinstance(exit.code, int) else 2
    if not args.directory:
        parser.print_usage(sys.stderr)
        print("nettest certs: error: DIR must not be empty ('.' is here)", file=sys.stderr)
        return 2
    directory = Path(args.directory)
    # DIR, or else the nearest of its parents that is there, must be a directory:
    # not mkdir's "File exists" or "Not a directory", but what is there instead.
    there = next((path for path in (directory, *directory.parents) if os.path.lexists(path)), None)
    if there is not None and not there.is_dir():
        print(f"nettest certs: {there} {_not_a_directory(there)[1]}", file=sys.stderr)
        return 1
    # lexists: a dangling symlink is there too, and writing through it would fail.
    existing = [directory / name for name in _NAMES.values() if os.path.lexists(directory / name)]
    if existing and not args.force:
        names = ", ".join(str(path) for path in existing)
        verb = "exists" if len(existing) == 1 else "exist"
        print(f"nettest certs: {names} {verb} already; pass --force to replace", file=sys.stderr)
        return 1
    ca = new_ca()
    authority = _authority(ca)
    try:
        server = authority.intermediate.issue_cert(*args.hosts) if args.hosts else authority.server
    except ValueError as error:
        parser.print_usage(sys.stderr)
        print(f"nettest certs: error: --host: {error}", file=sys.stderr)
        return 2
    try:
        _make_private_directory(directory)
        client = authority.client if args.client else None
        files = _write_tls_files(directory, ca, server, client, replace=args.force)
    except OSError as error:
        print(f"nettest certs: {error}", file=sys.stderr)
        return 1
    hosts = ", ".join(args.hosts or DEFAULT_IDENTITIES)
    lines = [
        ("CA certificate (clients trust this)", files.ca_bundle),
        (f"server certificate for {hosts}", files.cert),
        ("intermediate CA certificate", files.chain),
        ("server certificate and chain", files.fullchain),
        ("server private key", files.key),
    ]
    if files.client_cert is not None and files.client_key is not None:
        lines += [
            ("client certificate and chain", files.client_cert),
            ("client private key", files.client_key),
        ]
    write_lines([f"{label}: {path}" for label, path in lines])
    return 0
