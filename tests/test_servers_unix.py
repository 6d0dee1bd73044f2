"""Unix stream servers: private short paths, the length limit, the abstract namespace."""

# ruff: noqa: F811  (fixtures imported from their module are redefined as parameters)

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from nettest import handlers
from nettest._recording import Ending
from nettest._servers import (
    UNIX_PATH_MAX,
    UnixServer,
    UnixServerFactory,
    unix_server,  # noqa: F401
)
from nettest._udp import UnixDatagramServer

pytestmark = pytest.mark.asyncio


def _stat(path: str) -> os.stat_result:
    return os.stat(path)


def _write(path: str, data: bytes) -> None:
    Path(path).write_bytes(data)


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def test_unix_server_echo_in_a_private_short_directory(
    unix_server: UnixServerFactory,
) -> None:
    server = await unix_server(handlers.echo)
    assert server.address == server.path
    assert len(os.fsencode(server.path)) <= UNIX_PATH_MAX
    assert stat.S_ISSOCK(_stat(server.path).st_mode)
    assert stat.S_IMODE(_stat(os.path.dirname(server.path)).st_mode) == 0o700
    # Named after this process, for the next session to remove if it is killed.
    assert os.path.basename(os.path.dirname(server.path)).startswith(f"nt-{os.getpid()}-")
    reader, writer = await asyncio.open_unix_connection(server.path)
    writer.write(b"over unix")
    assert await reader.readexactly(9) == b"over unix"
    writer.write_eof()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    (conn,) = server.connections
    assert await conn.wait_closed() is Ending.EOF
    assert conn.received == b"over unix"
    await server.aclose()
    assert not _exists(os.path.dirname(server.path))


async def test_unix_server_at_a_given_path(tmp_path: Path) -> None:
    short = f"/tmp/nt-{os.getpid()}-given"
    async with UnixServer(handlers.sink, path=short) as server:
        assert server.path == short
        _, writer = await asyncio.open_unix_connection(short)
        writer.write(b"x")
        (conn,) = await server.wait_for_connections(1)
        await conn.wait_for(b"x")
        writer.close()
        await writer.wait_closed()
    assert not _exists(short)


@pytest.mark.parametrize("make", [UnixServer, UnixDatagramServer])
async def test_a_relative_unix_path_is_cleaned_up_after_a_chdir(
    make: type[UnixServer | UnixDatagramServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bound where the process was as the server started, as bind() binds it (a
    # short relative name fits sun_path from a deep directory); the clean-up finds
    # the file after the code under test changed directory, through a symlink too.
    here, elsewhere = tmp_path / ("d" * 150), tmp_path / "elsewhere"
    (here / "real").mkdir(parents=True)
    (here / "link").symlink_to(here / "real" / "sub", target_is_directory=True)
    (here / "real" / "sub").mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    server = make(handlers.sink, path="link/../s.sock")  # the kernel: real/s.sock
    assert server.path == "link/../s.sock"
    await server.start()
    assert (here / "real" / "s.sock").is_socket()
    monkeypatch.chdir(elsewhere)
    await server.aclose()
    assert not (here / "real" / "s.sock").exists()


@pytest.mark.parametrize("make", [UnixServer, UnixDatagramServer])
async def test_unix_server_that_cannot_bind_leaves_the_path_alone(
    make: type[UnixServer] | type[UnixDatagramServer],
) -> None:
    taken = f"/tmp/nt-{os.getpid()}-taken"
    _write(taken, b"someone else's file")
    try:
        with pytest.raises(OSError, match=f"in use: '{taken}'"):
            await make(path=taken).start()
        assert _read(taken) == b"someone else's file"
    finally:
        os.unlink(taken)
    missing = f"/tmp/nt-{os.getpid()}-missing/s"
    with pytest.raises(FileNotFoundError, match=f"No such file or directory: '{missing}'"):
        await make(path=missing).start()


async def test_unix_server_leaves_a_file_that_replaced_its_socket() -> None:
    path = f"/tmp/nt-{os.getpid()}-replaced"
    server = await UnixServer(handlers.sink, path=path).start()
    try:
        os.unlink(path)
        _write(path, b"new")
    finally:
        await server.aclose()
    try:
        assert _read(path) == b"new"
    finally:
        os.unlink(path)


async def test_unix_path_over_the_limit_names_the_limit(tmp_path: Path) -> None:
    long_path = "/tmp/" + "d" * 120 + "/s"
    with pytest.raises(ValueError, match=rf"over the {UNIX_PATH_MAX}-byte limit of sun_path"):
        UnixServer(path=long_path)
    exactly = "/tmp/" + "e" * (UNIX_PATH_MAX - len("/tmp/"))
    assert len(exactly) == UNIX_PATH_MAX
    UnixServer(path=exactly)  # the limit itself is accepted


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract namespace is Linux")
async def test_unix_server_abstract_namespace(unix_server: UnixServerFactory) -> None:
    server = await unix_server(handlers.echo, abstract=True)
    assert server.abstract
    assert server.path.startswith("\0")
    reader, writer = await asyncio.open_unix_connection(server.path)
    writer.write(b"hidden")
    assert await reader.readexactly(6) == b"hidden"
    writer.close()
    await writer.wait_closed()
    assert server.transcript().startswith("#1 (unnamed) -> @")


async def test_unix_server_bad_arguments() -> None:
    with pytest.raises(ValueError, match="either path or abstract"):
        UnixServer(path="/tmp/x", abstract=True)
    with pytest.raises(TypeError, match=r"path must be a str, an os\.PathLike or None, got 1"):
        UnixServer(path=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"path must be a str, an os\.PathLike or None, got b'"):
        UnixServer(path=b"/tmp/x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path must not be empty: pass None for a private"):
        UnixServer(path="")
    with pytest.raises(ValueError, match="path must not be empty"):
        UnixDatagramServer(path="")
    assert UnixServer(path=Path("/tmp/x")).path == "/tmp/x"


@pytest.mark.parametrize("make", [UnixServer, UnixDatagramServer])
async def test_unix_server_refuses_a_path_with_a_null_byte(
    make: type[UnixServer] | type[UnixDatagramServer],
) -> None:
    cut_short = f"/tmp/nt-{os.getpid()}-cut"
    try:
        with pytest.raises(
            ValueError,
            match=r"^path must not contain a null byte, got '/tmp/nt-\d+-cut\\x00b': ",
        ):
            await make(path=cut_short + "\0b").start()
        # Not even a socket at the path where bind() would have stopped.
        assert not _exists(cut_short)
    finally:
        if _exists(cut_short):
            os.unlink(cut_short)


async def test_unix_server_blocking_client(unix_server: UnixServerFactory) -> None:
    server = await unix_server(handlers.script(handlers.expect(b"hi"), handlers.send(b"yo")))

    def client() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(server.path)
            sock.sendall(b"hi")
            return sock.recv(10)

    assert await asyncio.get_running_loop().run_in_executor(None, client) == b"yo"


async def _accepted_not_made() -> None:
    """Resume when asyncio's loop has accepted a waiting connection, not yet made it.

    The accept callback runs in the next iteration, after the callback that wakes
    this task; the task it starts to make the transport runs after this one.
    """
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    loop.call_soon(woken.set_result, None)
    await woken


@pytest.mark.parametrize("yields", [0, 1, 2])
async def test_unix_teardown_reads_and_closes_connections_the_loop_accepted(
    yields: int,
) -> None:
    script = handlers.script(handlers.expect(b"hello"), handlers.expect_eof())
    server = await UnixServer(script).start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:  # a blocking client
        client.connect(server.path)
        client.sendall(b"hello")
    await _accepted_not_made()
    for _ in range(yields):  # 1: made, connection_made not called; 2: nothing read yet
        await asyncio.sleep(0)
    await server.aclose()  # the script was followed: nothing to raise
    (conn,) = server.connections
    assert (conn.received, conn.eof_received, conn.is_open) == (b"hello", True, False)
    assert all(task.done() for task in server._tasks)
