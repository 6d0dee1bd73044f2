"""Servers on a background thread, driven by blocking socket, ssl and http.client clients."""

# ruff: noqa: F811  (fixtures imported from their module are redefined as parameters)

from __future__ import annotations

import asyncio
import http.client
import inspect
import logging
import logging.handlers
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from nettest import FaultProxyThread, _settings, _stream_server, _threads, handlers
from nettest._handlers import HandlerError
from nettest._recording import Ending
from nettest._servers import TCPServer, UnixServer
from nettest._stream_server import ServerTeardownWarning
from nettest._threads import (
    TCPServerThread,
    TCPServerThreadFactory,
    UDPServerThread,
    UDPServerThreadFactory,
    UnixDatagramServerThread,
    UnixDatagramServerThreadFactory,
    UnixServerThread,
    UnixServerThreadFactory,
    tcp_server_thread,  # noqa: F401
    udp_server_thread,  # noqa: F401
    unix_datagram_server_thread,  # noqa: F401
    unix_server_thread,  # noqa: F401
)
from nettest._udp import UDPServer, UnixDatagramServer

if TYPE_CHECKING:
    from _typeshed import TraceFunction

HTTP_SCRIPT = handlers.script(
    handlers.expect_line(b"GET /status HTTP/1.1"),
    handlers.read_until(b"\r\n\r\n"),
    handlers.send(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
        b'{"ok":true}'
    ),
    handlers.close,
)


def test_blocking_socket_echo(tcp_server_thread: TCPServerThreadFactory) -> None:
    server = tcp_server_thread(handlers.echo)
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"blocking")
        assert sock.recv(100) == b"blocking"
        assert server.wait_for_bytes(b"blocking") == b"blocking"
        (conn,) = server.wait_for_connections(1)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    assert server.server.connections[0] is conn
    assert "b'blocking'" in server.transcript()


def test_thread_servers_share_a_port(
    tcp_server_thread: TCPServerThreadFactory, udp_server_thread: UDPServerThreadFactory
) -> None:
    tcp = tcp_server_thread()  # first: see test_tcp_and_udp_servers_share_a_port
    udp = udp_server_thread(port=tcp.port)
    assert tcp.address == udp.address
    with socket.create_connection(tcp.address, timeout=5) as sock:
        sock.sendall(b"tcp")
        assert sock.recv(100) == b"tcp"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"udp", udp.address)
        assert sock.recv(100) == b"udp"


def test_a_connections_waits_point_a_synchronous_test_to_the_servers(
    tcp_server_thread: TCPServerThreadFactory,
) -> None:
    # conn.wait_closed() in a synchronous test made a coroutine that nothing
    # awaited, and the test passed; the server's blocking waits do the work.
    server = tcp_server_thread(handlers.echo)
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"hi")
        (conn,) = server.wait_for_connections(1)
        assert server.wait_for_bytes(b"hi", connection=1) == b"hi"
        assert server.wait_for_sent(b"hi", connection=1) == b"hi"
        assert sock.recv(100) == b"hi"
        calls: list[tuple[Callable[[], object], str]] = [
            (lambda: conn.wait_for(b"hi"), "wait_for_bytes(data, connection=1)"),
            (lambda: conn.wait_for_sent(b"hi"), "wait_for_sent(data, connection=1)"),
            (conn.wait_closed, "wait_closed(connection=1)"),
        ]
        for call, twin in calls:
            with pytest.raises(RuntimeError, match=re.escape(f"server.{twin}")):
                call()
        with pytest.raises(TimeoutError, match="expected the server to send b'nope'"):
            server.wait_for_sent(b"nope", timeout=0.05)
    assert server.wait_closed() is Ending.EOF


@pytest.mark.parametrize("action", ["close", "reset"])
def test_connection_close_and_reset_from_the_test_thread(
    tcp_server_thread: TCPServerThreadFactory, action: str
) -> None:
    server = tcp_server_thread(handlers.sink)
    with socket.create_connection(server.address, timeout=5) as sock:
        (conn,) = server.wait_for_connections(1)
        # Nothing else wakes the server's loop: the call itself must reach it.
        getattr(conn, action)()
        if action == "close":
            assert sock.recv(100) == b""
        else:
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
    assert server.wait_closed() is (Ending.CLOSED if action == "close" else Ending.ABORTED)


def test_wait_timeout_raises_in_the_test_thread(tcp_server_thread: TCPServerThreadFactory) -> None:
    server = tcp_server_thread()
    with pytest.raises(TimeoutError, match="expected 1 connection; 0 arrived"):
        server.wait_for_connections(1, timeout=0.05)


@pytest.mark.parametrize("clients", [0, 1, 2])
def test_wait_for_a_parametrized_number_of_connections_and_datagrams(
    tcp_server_thread: TCPServerThreadFactory,
    unix_server_thread: UnixServerThreadFactory,
    udp_server_thread: UDPServerThreadFactory,
    clients: int,
) -> None:
    # n=0 once raised "n must be an int >= 1, got 0".
    tcp, unix, udp = tcp_server_thread(), unix_server_thread(), udp_server_thread()
    socks = [socket.create_connection(tcp.address, timeout=5) for _ in range(clients)]
    for _ in range(clients):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        socks.append(sock)
        sock.settimeout(5)
        sock.connect(unix.path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for i in range(clients):
            sender.sendto(b"%d" % i, udp.address)
        try:
            for server in (tcp, unix):
                assert len(server.wait_for_connections(clients, timeout=5)) == clients
                assert server.wait_for_connections(0, timeout=5) == ()
            assert len(udp.wait_for_datagrams(clients, timeout=5)) == clients
            assert udp.wait_for_datagrams(0, timeout=5) == ()
        finally:
            for sock in socks:
                sock.close()
    for server in (tcp, unix):
        with pytest.raises(ValueError, match=r"^n must be an int >= 0, got -1$"):
            server.wait_for_connections(-1)
    with pytest.raises(ValueError, match=r"^n must be an int >= 0, got -1$"):
        udp.wait_for_datagrams(-1)


def test_wait_closed_names_a_bad_connection(tcp_server_thread: TCPServerThreadFactory) -> None:
    server = tcp_server_thread(handlers.echo)
    with pytest.raises(ValueError, match="connection must be an int >= 1, got 0"):
        server.wait_closed(connection=0)
    with pytest.raises(TypeError, match="connection must be an int >= 1, got '1'"):
        server.wait_closed(connection="1")  # type: ignore[arg-type]


def test_http_client_against_a_scripted_reply(tcp_server_thread: TCPServerThreadFactory) -> None:
    server = tcp_server_thread(HTTP_SCRIPT)
    client = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        client.request("GET", "/status")
        response = client.getresponse()
        assert response.status == 200
        assert response.read() == b'{"ok":true}'
    finally:
        client.close()
    (conn,) = server.connections
    assert conn.received.startswith(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1:")


def test_http_client_wrong_path_fails_the_server_side() -> None:
    server = TCPServerThread(HTTP_SCRIPT).start()
    client = http.client.HTTPConnection(*server.address, timeout=5)
    try:
        client.request("GET", "/other")
        with pytest.raises(http.client.RemoteDisconnected):
            client.getresponse()
    finally:
        client.close()
    with pytest.raises(HandlerError, match=r"GET /other HTTP/1\.1"):
        server.close()


@pytest.fixture(scope="module", name="tls_pair")
def _tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def test_blocking_ssl_client(
    tcp_server_thread: TCPServerThreadFactory, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls_pair
    server = tcp_server_thread(handlers.echo, ssl=server_ctx)
    with (
        socket.create_connection(server.address, timeout=5) as raw,
        client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"tls")
        assert sock.recv(100) == b"tls"
    assert server.wait_for_bytes(b"tls") == b"tls"


def test_ssl_client_that_never_answers_close_notify_does_not_hang_teardown(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls_pair
    server = TCPServerThread(handlers.echo, ssl=server_ctx, close_timeout=0.3).start()
    raw = socket.create_connection(server.address, timeout=5)
    with client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        # The client neither reads nor closes while the server shuts down.
        started = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ServerTeardownWarning)
            server.close()
        assert time.monotonic() - started < 3.0


def test_ssl_client_closing_without_close_notify(
    tcp_server_thread: TCPServerThreadFactory, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls_pair
    server = tcp_server_thread(handlers.sink, ssl=server_ctx)
    raw = socket.create_connection(server.address, timeout=5)
    sock = client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    sock.sendall(b"ragged")
    assert server.wait_for_bytes(b"ragged") == b"ragged"
    sock.close()  # SSLSocket.close() sends no close_notify: a ragged EOF
    (conn,) = server.connections
    assert conn.received == b"ragged"


def test_udp_blocking_client(udp_server_thread: UDPServerThreadFactory) -> None:
    server = udp_server_thread(handlers.echo)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"dgram", server.address)
        assert sock.recv(100) == b"dgram"
    (datagram,) = server.wait_for_datagrams(1)
    assert datagram.data == b"dgram"
    # The server records its reply once its send returned, on its own thread: the
    # client may have it first.  Reading server.sent at once raced that.
    (reply,) = server.wait_for_datagrams(1, direction="sent")
    assert reply.data == b"dgram"
    assert reply.direction == "sent"


def test_udp_thread_server_sent_is_waited_for(udp_server_thread: UDPServerThreadFactory) -> None:
    server = udp_server_thread(handlers.echo)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for i in range(1, 31):
            sock.sendto(b"%d" % i, server.address)
            assert sock.recv(100) == b"%d" % i
            sent = server.wait_for_datagrams(i, direction="sent", timeout=5)
            assert [d.data for d in sent] == [b"%d" % k for k in range(1, i + 1)]
    with pytest.raises(TimeoutError, match=r"expected 31 datagrams sent; 30 were sent: "):
        server.wait_for_datagrams(31, direction="sent", timeout=0.05)
    with pytest.raises(ValueError, match='direction must be "received" or "sent", got \'out\''):
        server.wait_for_datagrams(1, direction="out")  # type: ignore[arg-type]


def test_unix_blocking_client(unix_server_thread: UnixServerThreadFactory) -> None:
    server = unix_server_thread(handlers.echo)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(server.path)
        sock.sendall(b"unix")
        assert sock.recv(100) == b"unix"
    assert len(server.wait_for_connections(1)) == 1
    assert server.address == server.path


def test_unix_datagram_blocking_client(
    unix_datagram_server_thread: UnixDatagramServerThreadFactory, tmp_path: Path
) -> None:
    server = unix_datagram_server_thread(handlers.echo)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind(str(tmp_path / "client"))  # echo answers only a client with an address
        sock.sendto(b"first", server.address)
        sock.sendto(b"second", server.path)
        assert [sock.recv(100), sock.recv(100)] == [b"first", b"second"]
    received = server.wait_for_datagrams(2)
    assert [(d.data, d.peer) for d in received] == [
        (b"first", str(tmp_path / "client")),
        (b"second", str(tmp_path / "client")),
    ]
    assert [d.data for d in server.wait_for_datagrams(2, direction="sent")] == [
        b"first",
        b"second",
    ]
    assert server.datagrams == received
    message = r"expected 3 datagrams; 2 arrived: b'first', b'second' \(waited 0.05 s\)"
    with pytest.raises(TimeoutError, match=message):
        server.wait_for_datagrams(3, timeout=0.05)


def test_unix_datagram_thread_server_takes_a_syslog_handler(
    unix_datagram_server_thread: UnixDatagramServerThreadFactory,
) -> None:
    # logging's SysLogHandler, the standard library's own Unix datagram client.
    server = unix_datagram_server_thread(handlers.sink)
    handler = logging.handlers.SysLogHandler(address=server.path)
    try:
        record = logging.makeLogRecord({"msg": "disk full", "levelname": "ERROR"})
        handler.emit(record)
    finally:
        handler.close()
    (datagram,) = server.wait_for_datagrams(1)
    assert datagram.data == b"<11>disk full\x00"  # user.err, NUL-terminated


def test_unix_datagram_thread_server_closes_and_removes_its_socket() -> None:
    with UnixDatagramServerThread(handlers.sink, abstract=False) as server:
        path = Path(server.path)
        assert path.is_socket()
    assert server.closed
    assert not path.exists()
    assert not path.parent.exists()  # its private directory too


def test_unix_datagram_thread_server_raises_a_script_mismatch_at_close() -> None:
    server = UnixDatagramServerThread(handlers.script(handlers.expect(b"ping"))).start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"pong", server.path)
    server.wait_for_datagrams(1)
    with pytest.raises(HandlerError, match="b'pong'"):
        server.close()
    assert server.closed


def test_context_manager_joins_the_thread_and_raises_handler_errors() -> None:
    async def failing(reader: object, writer: object) -> None:
        raise RuntimeError("from the thread")

    before = threading.active_count()
    server = TCPServerThread(failing)
    with (
        pytest.raises(HandlerError, match="RuntimeError: from the thread"),
        server,
        socket.create_connection(server.address, timeout=5) as sock,
    ):
        assert sock.recv(10) == b""
    assert server.closed
    assert threading.active_count() == before


def _connect_and_read(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        return sock.recv(10)


def test_reset_seen_by_a_blocking_client(tcp_server_thread: TCPServerThreadFactory) -> None:
    server = tcp_server_thread(handlers.reset)
    with pytest.raises(ConnectionResetError):  # on connecting or reading: a race
        _connect_and_read(server.address)
    assert server.wait_closed() is Ending.ABORTED


def test_thread_fixture_teardown_in_a_pytest_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import socket
from nettest import _handlers as handlers
from nettest._threads import tcp_server_thread  # noqa: F401

def test_ok(tcp_server_thread):
    server = tcp_server_thread(handlers.echo)
    with socket.create_connection(server.address) as sock:
        sock.sendall(b"a")
        assert sock.recv(1) == b"a"

def test_error(tcp_server_thread):
    async def broken(reader, writer):
        raise KeyError("bad")
    server = tcp_server_thread(broken)
    with socket.create_connection(server.address) as sock:
        assert sock.recv(1) == b""
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_error*", "*KeyError: 'bad'*"])


def test_thread_whose_loop_never_stops_is_blamed_on_its_test_alone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
import asyncio
import socket
import nettest._threads

nettest._threads._JOIN_TIMEOUT = 0.5  # how long teardown waits for the thread

async def stubborn():
    while True:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            pass  # swallowed: the loop's final cancellation never ends it

async def never_ends(reader, writer):
    asyncio.ensure_future(stubborn())  # a task the server does not know
    await asyncio.sleep(100)

def test_stuck(tcp_server_thread):
    server = tcp_server_thread(never_ends, close_timeout=0.2)
    sock = socket.create_connection(server.address)
    server.wait_for_connections(1)
    sock.close()

def test_next():
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error::pytest.PytestUnhandledThreadExceptionWarning"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_stuck*", "*server thread*"])
    result.stdout.no_fnmatch_line("*test_next*ERROR*")


async def _ignores_cancellation(reader: object, writer: object) -> None:
    while True:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            pass


class _Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted  # as pytest-timeout's signal method fails a test that runs too long


def test_a_thread_server_whose_close_is_interrupted_still_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A test timeout can interrupt the close while it waits for a handler that
    # ignores its cancellation.  The close, which ends by itself, still finishes
    # (ending that handler by force) and closes the server's sockets; only then
    # does the loop thread stop, rather than leave the thread, its loop and its
    # sockets running.
    monkeypatch.setattr(_stream_server, "CANCEL_GRACE", 0.1)
    server = TCPServerThread(_ignores_cancellation, close_timeout=0.2).start()
    loop_thread = server._thread
    assert loop_thread is not None
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        with socket.create_connection(server.address):
            server.wait_for_connections(1)
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(_Interrupted), pytest.warns(ServerTeardownWarning) as warned:
                server.close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert server.closed
    assert not loop_thread.thread.is_alive()
    assert "the handler of connection #1 ignored cancellation: nettest closed its coroutine" in (
        str(warned[0].message)
    )


async def _fails_once_cancelled(reader: object, writer: object) -> None:
    try:
        await asyncio.sleep(100)
    except asyncio.CancelledError:
        await asyncio.sleep(0.2)
        raise ValueError("failed as it was cancelled") from None


def test_an_interrupted_close_warns_of_what_the_close_then_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The interruption is what the test reports; the handler's error, raised by
    # the close that ran on to its end, is not lost behind it.
    monkeypatch.setattr(_stream_server, "CANCEL_GRACE", 1.0)
    server = TCPServerThread(_fails_once_cancelled, close_timeout=0.2).start()
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        with socket.create_connection(server.address):
            server.wait_for_connections(1)
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with (
                pytest.raises(_Interrupted),
                pytest.warns(ServerTeardownWarning, match="raised HandlerError") as warned,
            ):
                server.close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert server.closed
    assert any("failed as it was cancelled" in str(w.message) for w in warned)
    assert warned[-1].filename == __file__  # at the line that made the server


def test_a_thread_server_s_loop_ends_a_task_that_ignores_cancellation() -> None:
    # A task the server does not know outlives its close: the stopping loop
    # cancels it, then ends it by force, and says so.
    stubborn: list[asyncio.Task[None]] = []

    async def starts_a_stubborn_task(reader: object, writer: object) -> None:
        stubborn.append(asyncio.ensure_future(_ignores_cancellation(reader, writer)))

    server = TCPServerThread(starts_a_stubborn_task).start()
    loop_thread = server._thread
    assert loop_thread is not None
    with socket.create_connection(server.address):
        server.wait_for_connections(1)
    with pytest.warns(ServerTeardownWarning) as warned:
        server.close()
    assert not loop_thread.thread.is_alive()
    assert str(warned[0].message) == (
        "server thread nettest-TCPServer: its loop stopped with tasks that did not end: "
        f"task {stubborn[0].get_name()} running _ignores_cancellation() ignored "
        "cancellation: nettest closed its coroutine"
    )


def test_every_failing_thread_server_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import socket
from nettest._threads import tcp_server_thread  # noqa: F401

def failing(name):
    async def handler(reader, writer):
        await reader.read(1)
        raise RuntimeError(f"handler {name} failed")
    return handler

def test_two(tcp_server_thread):
    for name in "AB":
        server = tcp_server_thread(failing(name))
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(b"x")
            assert sock.recv(1) == b""
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ExceptionGroup: tcp_server_thread: 2 servers failed at teardown (2 sub-exceptions)",
            "*RuntimeError: handler A failed",
            "*RuntimeError: handler B failed",
        ]
    )


# -- under a debugger ---------------------------------------------------------------


def _do_nothing_tracer(frame: FrameType, event: str, arg: object) -> None:
    """A debugger as sys.settrace sees it, tracing no frame."""


def _tracer(frame: FrameType, event: str, arg: object) -> TraceFunction:
    """A debugger that traces every frame, as pdb does while it steps."""
    return _tracer


def _later(delay: float, action: Callable[[], object]) -> threading.Thread:
    """Call ``action`` in ``delay`` seconds, on a thread of its own."""

    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """Make nettest's default timeout 0.2 s for this test."""
    monkeypatch.setattr(_settings, "timeout", 0.2)
    return 0.2


def test_blocking_waits_never_time_out_under_a_debugger(
    tcp_server_thread: TCPServerThreadFactory, short_timeout: float
) -> None:
    # The default used to be taken on the loop thread, which the debugger does not trace.
    server = tcp_server_thread(handlers.sink)
    sock = socket.socket()
    helper = _later(3 * short_timeout, lambda: sock.connect(server.address))
    previous = sys.gettrace()
    sys.settrace(_do_nothing_tracer)
    try:
        assert len(server.wait_for_connections(1)) == 1
        helper.join()
        helper = _later(3 * short_timeout, lambda: sock.sendall(b"late"))
        assert server.wait_for_bytes(b"late") == b"late"
        helper.join()
        helper = _later(3 * short_timeout, sock.close)
        assert server.wait_closed() is Ending.EOF
    finally:
        sys.settrace(previous)
        helper.join()
        sock.close()
    # Without the debugger, the same wait times out.
    with pytest.raises(
        TimeoutError, match=r"(?s)expected 2 connections; 1 arrived.*waited 0\.2 s"
    ):
        server.wait_for_connections(2)


def test_udp_blocking_wait_never_times_out_under_a_debugger(
    udp_server_thread: UDPServerThreadFactory, short_timeout: float
) -> None:
    server = udp_server_thread(handlers.sink)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        helper = _later(3 * short_timeout, lambda: sock.sendto(b"late", server.address))
        previous = sys.gettrace()
        sys.settrace(_do_nothing_tracer)
        try:
            (datagram,) = server.wait_for_datagrams(1)
        finally:
            sys.settrace(previous)
            helper.join()
    assert datagram.data == b"late"
    with pytest.raises(TimeoutError, match="expected 2 datagrams"):
        server.wait_for_datagrams(2)


@pytest.mark.parametrize("debugged", [True, False], ids=["debugged", "not-debugged"])
def test_script_steps_on_the_thread_follow_the_tests_debugger(
    short_timeout: float, debugged: bool
) -> None:
    # The script runs on the loop thread; the debugger stops the test's thread.  Its
    # step takes its timeout as it starts, when the connection comes.
    frame = sys._getframe()
    previous = sys.gettrace()
    with TCPServerThread(handlers.script(handlers.expect(b"hi"), handlers.send(b"ok"))) as server:
        if debugged:  # as pdb does when it stops: trace this thread, and its stack
            sys.settrace(_tracer)
            frame.f_trace = _tracer
        try:
            with socket.create_connection(server.address, timeout=5) as sock:
                time.sleep(3 * short_timeout)
                if debugged:
                    sock.sendall(b"hi")
                    assert sock.recv(2) == b"ok"
        finally:
            sys.settrace(previous)
            frame.f_trace = None
        if not debugged:
            with pytest.raises(HandlerError, match=r"nothing matching arrived in 0\.2 s"):
                server.close()


@pytest.mark.parametrize(
    ("options", "server"),
    [
        (_threads._TCPOptions, TCPServer),
        (_threads._UnixOptions, UnixServer),
        (_threads._UDPOptions, UDPServer),
        (_threads._UnixDatagramOptions, UnixDatagramServer),
    ],
)
def test_thread_server_options_are_their_servers_keywords(
    options: type[object], server: type[object]
) -> None:
    # What types a thread server's **options: every keyword of its server, in order.
    keywords = [
        name
        for name, parameter in inspect.signature(server).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY
    ]
    assert list(typing.get_type_hints(options)) == keywords


def test_thread_servers_refuse_a_misspelt_option() -> None:
    # At run time, and under mypy: this file is checked with warn_unused_ignores, so
    # were the options typed Any, the ignores below would fail the type check.
    with pytest.raises(TypeError, match="unexpected keyword argument 'limt'"):
        TCPServerThread(handlers.echo, limt=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'pth'"):
        UnixServerThread(handlers.echo, pth="/tmp/x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'hots'"):
        UDPServerThread(handlers.echo, hots="127.0.0.1")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'abstrct'"):
        UnixDatagramServerThread(handlers.echo, abstrct=True)  # type: ignore[call-arg]


@pytest.mark.parametrize("make", [TCPServerThread, FaultProxyThread], ids=["server", "proxy"])
def test_a_thread_server_dropped_unclosed_warns(make: Callable[..., Any]) -> None:
    # Outside pytest's hygiene gate (a script, unittest) that warning is all there is.
    started = make(handlers.echo) if make is TCPServerThread else make(("127.0.0.1", 9))
    started.start()
    thread, inner = started._thread, started._server
    assert thread is not None
    name = repr(started)
    try:
        with pytest.warns(ResourceWarning, match=re.escape(f"unclosed {name}: close() it")):
            del started  # the last reference: no cycle holds it
    finally:
        thread.run(inner.aclose(), finish=True)
        thread.stop()


def test_a_closed_thread_server_dropped_does_not_warn() -> None:
    server = TCPServerThread(handlers.echo).start()
    server.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del server


def test_a_thread_server_closed_by_an_atexit_callback_closes(tmp_path: Path) -> None:
    # close() called with no Python frame above it (atexit calls it from C) raised
    # ValueError looking for the test's line, and the server was never closed.
    script = tmp_path / "atexit_close.py"
    script.write_text(
        "import asyncio, atexit, socket, warnings\n"
        "from nettest import TCPServerThread\n"
        "async def stubborn(reader, writer):\n"
        "    while True:\n"
        "        try:\n"
        "            await asyncio.sleep(10)\n"
        "        except asyncio.CancelledError:\n"
        "            continue\n"
        "warnings.simplefilter('always')\n"
        "server = TCPServerThread(stubborn, close_timeout=0.05).start()\n"
        "client = socket.create_connection(server.address)\n"
        "server.wait_for_connections(1)\n"
        "atexit.register(client.close)\n"
        "atexit.register(server.close)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert "Exception ignored" not in result.stderr
    assert "ServerTeardownWarning: TCPServer 127.0.0.1:" in result.stderr
    assert "ignored cancellation" in result.stderr
