"""The fault proxy listening on a Unix stream socket (``unix=``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import socket
import sys
import warnings
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


@pytest.mark.asyncio
async def test_a_unix_proxy_down_keeps_its_path_from_a_program_that_takes_it_meanwhile(
    tcp_server: TCPServerFactory, tmp_path: Path
) -> None:
    # A daemon takes a path the usual way: unlink the stale file, bind.  Had the
    # proxy let go of the file while down, the filesystem could give the daemon's
    # file the same inode, and up() or aclose() would remove it as the proxy's.
    server = await tcp_server(handlers.echo)
    path = str(tmp_path / "shared.sock")
    proxy = FaultProxy(server, unix=path)
    await proxy.start()
    daemon = socket.socket(socket.AF_UNIX)
    try:
        await proxy.down()
        with pytest.raises(ConnectionRefusedError):  # the proxy holds the path, refusing
            await asyncio.open_unix_connection(path)
        os.unlink(path)
        daemon.bind(path)
        daemon.listen(1)
        with pytest.raises(OSError, match="Address already in use") as info:
            await proxy.up()
        assert info.value.errno == errno.EADDRINUSE
        assert not proxy.is_up
        await proxy.aclose()
        assert _exists(path)  # the daemon's file, left alone
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)  # and the daemon still listens there
    finally:
        daemon.close()
        await proxy.aclose()


@pytest.mark.asyncio
async def test_a_relative_unix_path_is_bound_again_where_it_was_after_a_chdir(
    tcp_server: TCPServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await tcp_server(handlers.echo)
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    first.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(first)
    proxy = await FaultProxy(server, unix="./proxy.sock").start()
    try:
        monkeypatch.chdir(elsewhere)
        for refuse in (True, False):
            await proxy.down(refuse=refuse)
            await proxy.up()
            assert sorted(os.listdir(first)) == ["proxy.sock"]
            assert os.listdir(elsewhere) == []
        assert await _echo_through(str(first / "proxy.sock"), b"still here") == b"still here"
    finally:
        await proxy.aclose()
    assert os.listdir(first) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract names: Linux")
@pytest.mark.asyncio
async def test_a_trace_names_a_unix_client_bound_to_an_abstract_name(
    tcp_server: TCPServerFactory, fault_proxy: FaultProxyFactory
) -> None:
    server = await tcp_server(handlers.echo)
    proxy = await fault_proxy(server, unix=True)
    name = f"\0nettest-client-{os.getpid()}"
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX) as client:
        client.bind(name)
        client.setblocking(False)
        await loop.sock_connect(client, proxy.path)
        await loop.sock_sendall(client, b"x")
        assert await asyncio.wait_for(loop.sock_recv(client, 1), 10) == b"x"
    await _until_finished(proxy)
    assert str(proxy.traces[0]).startswith(f"tcp connection #1 from @{name[1:]}: ")


async def _until_finished(proxy: FaultProxy) -> None:
    for _ in range(1000):
        if "finished" in str(proxy.traces[0]):
            return
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
@pytest.mark.parametrize("turns", [0, 1, 2, 3])
@pytest.mark.asyncio
async def test_aclose_with_a_connection_being_accepted_leaves_no_socket_behind(
    tcp_server: TCPServerFactory, unix: bool, turns: int
) -> None:
    # The loop accepts in one turn and makes the transport in a task the next: a
    # proxy closed between the two left the accepted socket to warn "unclosed".
    server = await tcp_server(handlers.echo)
    proxy = await FaultProxy(server, unix=unix).start()
    with socket.socket(socket.AF_UNIX if unix else socket.AF_INET) as client:
        client.connect(proxy.path if unix else proxy.address)
        for _ in range(turns):
            await asyncio.sleep(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await proxy.aclose()
            gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
@pytest.mark.asyncio
async def test_aclose_cancelled_as_it_lets_accepts_attach_still_closes_the_proxy(
    tcp_server: TCPServerFactory, unix: bool
) -> None:
    server = await tcp_server(handlers.echo)
    proxy = await FaultProxy(server, unix=unix).start()
    closing = asyncio.ensure_future(proxy.aclose())
    await asyncio.sleep(0)  # inside aclose(), as it lets the loop's accepts attach
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert proxy.closed
    assert not proxy.is_up
    if unix:
        with pytest.raises(FileNotFoundError):  # closed: the path is gone
            await asyncio.open_unix_connection(proxy.path)
    else:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*proxy.address)


@pytest.mark.asyncio
async def test_a_closed_proxy_cannot_start(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.echo)
    for unix in (False, True):
        proxy = FaultProxy(server, unix=unix)
        await proxy.aclose()
        with pytest.raises(RuntimeError, match="the proxy is closed"):
            await proxy.start()


def test_unix_takes_a_bool_or_a_path_for_tcp_alone() -> None:
    upstream = ("127.0.0.1", 1)
    with pytest.raises(ValueError, match="unix: a proxy listens on a Unix stream socket for TCP"):
        FaultProxy(upstream, kind="udp", unix=True)
    for options in ({"port": 8080}, {"host": "::1"}, {"allow_remote": True}):
        with pytest.raises(ValueError, match="give unix, or host, port and allow_remote"):
            FaultProxy(upstream, unix=True, **options)
    with pytest.raises(TypeError, match="unix must be a bool or a path"):
        FaultProxy(upstream, unix=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unix must not be an empty path: pass True for a"):
        FaultProxy(upstream, unix="")
    for name in ("/tmp/a\0b", "\0abstract"):
        with pytest.raises(ValueError, match="unix must be a path without a null byte, got"):
            FaultProxy(upstream, unix=name)
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
    # A path not starting with / or ./ reads as HOST:PORT: the error says how to write one.
    with pytest.raises(SystemExit):
        cli_main(["--listen", "proxy.sock", "--upstream", "127.0.0.1:1"])
    assert (
        "--listen must be HOST:PORT, or a Unix socket path starting with / or ./, got "
        "'proxy.sock'" in capsys.readouterr().err
    )
