"""The fault proxy listening on a Unix stream socket (``unix=``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path

import pytest

from nettest import (
    FaultProxy,
    FaultProxyFactory,
    FaultProxyThread,
    FaultProxyThreadFactory,
    TCPServerFactory,
    TCPServerThreadFactory,
    UnixServerFactory,
    handlers,
)
from nettest.faults import Latency, Reset, Truncate

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")

_CLI = "import sys; from nettest._proxy_cli import cli_main; sys.exit(cli_main(sys.argv[1:]))"


def _exists(path: str | Path) -> bool:
    """Whether *path* exists (a stat: no blocking worth a thread in a test)."""
    return os.path.exists(path)


async def _echo_through(path: str, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(payload)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_a_unix_proxy_forwards_through_its_faults_and_removes_its_directory(
    tcp_server: TCPServerFactory, fault_proxy: FaultProxyFactory
) -> None:
    server = await tcp_server(handlers.echo)
    proxy = await fault_proxy(server, unix=True, faults=[Truncate(4)])
    path = proxy.path
    assert os.path.basename(path) == "s"
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    assert await _echo_through(path, b"hello world") == b"hell"
    trace = proxy.traces[0]
    assert trace.fired == ["Truncate(after_bytes=4)"]
    # A Unix client is unnamed; the trace says so rather than print "from :".
    assert str(trace).startswith("tcp connection #1 from (unnamed): 11 bytes up, 4 bytes down")
    assert repr(proxy) == f"<FaultProxy tcp {path} -> {server.address[0]}:{server.port} up>"
    await proxy.aclose()
    assert not _exists(Path(path).parent)


@pytest.mark.asyncio
async def test_a_unix_proxy_binds_the_path_given_and_removes_only_its_socket(
    unix_server: UnixServerFactory, tmp_path: Path
) -> None:
    server = await unix_server(handlers.echo)
    path = str(tmp_path / "proxy.sock")
    async with FaultProxy(server, unix=path, faults=[Latency(0.01)]) as proxy:
        assert proxy.path == path
        assert await _echo_through(path, b"unix to unix") == b"unix to unix"
        assert server.connections[0].received == b"unix to unix"
    assert not _exists(path)
    assert _exists(tmp_path)


@pytest.mark.asyncio
async def test_a_unix_proxy_down_refuses_until_up_and_keeps_its_socket_file(
    tcp_server: TCPServerFactory, fault_proxy: FaultProxyFactory
) -> None:
    server = await tcp_server(handlers.echo)
    proxy = await fault_proxy(server, unix=True)
    await proxy.down()
    assert not proxy.is_up
    # The file stays, as a dead server's does: a client is refused, not told "no such file".
    # (From 3.13 asyncio would remove it as the listener closes.)
    assert _exists(proxy.path)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_unix_connection(proxy.path)
    await proxy.up()
    assert await _echo_through(proxy.path, b"back") == b"back"


@pytest.mark.asyncio
async def test_a_unix_proxy_down_without_refusing_queues_connections_unanswered(
    tcp_server: TCPServerFactory, fault_proxy: FaultProxyFactory
) -> None:
    server = await tcp_server(handlers.echo)
    proxy = await fault_proxy(server, unix=True)
    await proxy.down(refuse=False)
    # No SYN to drop on a Unix socket: the connect is queued, and nothing answers.
    reader, writer = await asyncio.open_unix_connection(proxy.path)
    try:
        writer.write(b"anyone?")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)
        await proxy.up()
        # The queued connection goes with the silent listener, as with a server restarting.
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()
    assert await _echo_through(proxy.path, b"up again") == b"up again"
    assert len(server.connections) == 1


@pytest.mark.asyncio
async def test_a_reset_on_a_unix_proxy_ends_the_client_as_a_unix_close_does(
    tcp_server: TCPServerFactory, fault_proxy: FaultProxyFactory
) -> None:
    server = await tcp_server(handlers.echo)
    proxy = await fault_proxy(server, unix=True, faults=[Reset()])
    # A Unix socket has no RST: the client, with nothing of its own left unread, reads EOF.
    assert await _echo_through(proxy.path, b"") == b""
    assert proxy.traces[0].fired == ["Reset()"]


@pytest.mark.asyncio
async def test_a_unix_proxy_has_a_path_not_an_address_and_a_tcp_proxy_the_reverse(
    tcp_server: TCPServerFactory, fault_proxy: FaultProxyFactory
) -> None:
    server = await tcp_server(handlers.echo)
    unix = await fault_proxy(server, unix=True)
    for name in ("address", "host", "port"):
        with pytest.raises(RuntimeError, match=r"Unix socket.*give the client proxy\.path"):
            getattr(unix, name)
    tcp = await fault_proxy(server)
    with pytest.raises(RuntimeError, match=r"proxy\.address.*pass unix=True"):
        _ = tcp.path
    with pytest.raises(RuntimeError, match="not started"):
        _ = FaultProxy(server, unix=True).path


def test_unix_takes_a_bool_or_a_path_for_tcp_alone() -> None:
    upstream = ("127.0.0.1", 1)
    with pytest.raises(ValueError, match="unix: a proxy listens on a Unix stream socket for TCP"):
        FaultProxy(upstream, kind="udp", unix=True)
    for options in ({"port": 8080}, {"host": "::1"}, {"allow_remote": True}):
        with pytest.raises(ValueError, match="give unix, or host, port and allow_remote"):
            FaultProxy(upstream, unix=True, **options)
    with pytest.raises(TypeError, match="unix must be a bool or a path"):
        FaultProxy(upstream, unix=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unix: path must not be empty"):
        FaultProxy(upstream, unix="")
    with pytest.raises(ValueError, match="unix: path must not contain a null byte"):
        FaultProxy(upstream, unix="/tmp/a\0b")
    with pytest.raises(ValueError, match="unix: Unix socket path is 205 bytes"):
        FaultProxy(upstream, unix="/tmp/" + "x" * 200)


def test_a_unix_proxy_thread_serves_a_blocking_client(
    tcp_server_thread: TCPServerThreadFactory, fault_proxy_thread: FaultProxyThreadFactory
) -> None:
    server = tcp_server_thread(handlers.echo)
    proxy = fault_proxy_thread(server, unix=True, faults=[Truncate(3)])
    assert isinstance(proxy, FaultProxyThread)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(proxy.path)
        sock.sendall(b"blocking")
        received = b""
        while chunk := sock.recv(100):
            received += chunk
    assert received == b"blo"
    path = proxy.path
    proxy.close()
    assert not os.path.exists(os.path.dirname(path))


@pytest.mark.asyncio
async def test_cli_listens_on_a_unix_path_and_removes_it_as_it_stops(
    tcp_server: TCPServerFactory, tmp_path: Path
) -> None:
    server = await tcp_server(handlers.echo)
    path = str(tmp_path / "cli.sock")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CLI,
        "--listen",
        path,
        "--upstream",
        f"{server.address[0]}:{server.port}",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert first == f"nettest proxy tcp listening on {path} -> 127.0.0.1:{server.port}\n"
        assert await _echo_through(path, b"via the cli") == b"via the cli"
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
        rest = (await process.stdout.read()).decode()
        assert "connection #1 from (unnamed)" in rest
        assert not _exists(path)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_cli_refuses_a_unix_path_with_udp_or_allow_remote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nettest._proxy_cli import cli_main

    for extra, message in (
        (["--udp"], "--listen: a Unix socket path is for TCP; --udp listens on HOST:PORT"),
        (["--allow-remote"], "--allow-remote applies to --listen HOST:PORT, not to a path"),
    ):
        with pytest.raises(SystemExit) as info:
            cli_main(["--listen", "/tmp/x.sock", "--upstream", "127.0.0.1:1", *extra])
        assert info.value.code == 2
        assert message in capsys.readouterr().err
