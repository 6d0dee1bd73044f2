"""Loopback stream servers: TCP over IPv4/IPv6 and TLS, handlers, recording, teardown."""

# ruff: noqa: F811  (fixtures imported from their module are redefined as parameters)

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import struct
import sys
import threading
import time
import typing
import warnings
from collections.abc import Callable

import pytest

from nettest import _handlers as handlers
from nettest import _server_base
from nettest._handlers import HandlerError
from nettest._prebound import BoundSocket
from nettest._proxy import FaultProxy
from nettest._recording import Connection, Ending
from nettest._servers import (
    TCPServer,
    TCPServerFactory,
    UnixServer,
    has_ipv6_loopback,
    tcp_server,  # noqa: F401
)
from nettest._stream_server import ServerTeardownWarning
from nettest._udp import UDPServer

HOSTS = [
    "127.0.0.1",
    pytest.param(
        "::1",
        marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback"),
    ),
]


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass


async def _echoes(address: tuple[str, int], data: bytes) -> None:
    """Check that the echo server at `address` sends `data` back over a new connection."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    assert await reader.readexactly(len(data)) == data
    await _close(writer)


async def _connect_and_read(address: tuple[str, int]) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    try:
        return await reader.read()
    finally:
        writer.close()


# -- echo, recording, address ---------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.asyncio
async def test_tcp_server_echo_records_both_directions(
    tcp_server: TCPServerFactory, host: str
) -> None:
    server = await tcp_server(handlers.echo, host=host)
    assert server.host == host
    assert server.address == (host, server.port)
    assert server.port > 0
    assert server.sockname[:2] == (host, server.port)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"hello ")
    writer.write(b"world")
    assert await reader.readexactly(11) == b"hello world"
    writer.write_eof()
    assert await reader.read() == b""
    await _close(writer)
    (conn,) = await server.wait_for_connections(1)
    assert await conn.wait_closed() is Ending.EOF
    assert conn.received == b"hello world"
    assert conn.sent == b"hello world"
    assert conn.eof_received
    assert conn.peer[:2] == writer.get_extra_info("sockname")[:2]
    assert conn.closed_at is not None
    assert conn.closed_at >= conn.opened_at
    kinds = [e.kind for e in conn.events]
    assert kinds[0] == "received"
    assert kinds[-2:] == ["eof", "closed"]
    assert b"".join(e.data for e in conn.events if e.kind == "sent") == b"hello world"
    transcript = server.transcript()
    assert "client " in transcript
    assert "closed (eof)" in transcript


@pytest.mark.asyncio
async def test_tcp_server_records_each_connection_in_order(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.echo)
    writers = []
    for i in range(3):
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"%d" % i)
        assert await reader.readexactly(1) == b"%d" % i
        writers.append(writer)
    conns = await server.wait_for_connections(3)
    assert [c.index for c in conns] == [1, 2, 3]
    assert [c.received for c in conns] == [b"0", b"1", b"2"]
    assert all(c.is_open for c in conns)
    for writer in writers:
        await _close(writer)


@pytest.mark.asyncio
async def test_tcp_server_is_an_async_context_manager() -> None:
    async with TCPServer(handlers.echo) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        await _close(writer)
    assert server.closed
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*server.address)


@pytest.mark.asyncio
async def test_tcp_server_start_twice_raises() -> None:
    async with TCPServer() as server:
        with pytest.raises(RuntimeError, match="already started"):
            await server.start()


@pytest.mark.asyncio
async def test_tcp_server_aclose_twice_is_harmless() -> None:
    server = await TCPServer().start()
    await server.aclose()
    await server.aclose()
    assert server.closed


# -- built-in handlers ------------------------------------------------------------


@pytest.mark.asyncio
async def test_sink_records_and_sends_nothing(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.sink)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"a" * 100_000)
    writer.write_eof()
    assert await reader.read() == b""
    await _close(writer)
    (conn,) = server.connections
    await conn.wait_closed()
    assert conn.received == b"a" * 100_000
    assert conn.sent == b""
    assert conn.ending is Ending.EOF


@pytest.mark.asyncio
async def test_close_handler_sends_fin(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.close)
    reader, writer = await asyncio.open_connection(*server.address)
    assert await reader.read() == b""
    (conn,) = server.connections
    assert await conn.wait_closed() is Ending.CLOSED
    await _close(writer)


@pytest.mark.asyncio
async def test_reset_handler_sends_rst(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.reset)
    with pytest.raises(ConnectionResetError):  # on connecting or reading: a race
        await _connect_and_read(server.address)
    (conn,) = await server.wait_for_connections(1)
    assert await conn.wait_closed() is Ending.ABORTED


@pytest.mark.asyncio
async def test_hang_handler_never_reads(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.hang, rcvbuf=4096)
    _, writer = await asyncio.open_connection(*server.address)
    writer.transport.set_write_buffer_limits(high=0)
    writer.write(b"x" * 16_000_000)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(writer.drain(), 0.3)
    (conn,) = server.connections
    assert conn.received == b""
    assert conn.is_open
    writer.transport.abort()


@pytest.mark.asyncio
async def test_client_reset_is_recorded_as_reset(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.sink)
    sock = socket.create_connection(server.address)
    sock.sendall(b"abc")
    (conn,) = await server.wait_for_connections(1)
    await conn.wait_for(b"abc")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert await conn.wait_closed() is Ending.RESET


@pytest.mark.asyncio
async def test_connection_close_and_reset_from_the_test(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.hang)
    r1, w1 = await asyncio.open_connection(*server.address)
    r2, w2 = await asyncio.open_connection(*server.address)
    c1, c2 = await server.wait_for_connections(2)
    c1.close()
    c2.reset()
    assert await r1.read() == b""
    with pytest.raises(ConnectionResetError):
        await r2.read()
    assert await c1.wait_closed() is Ending.CLOSED
    assert await c2.wait_closed() is Ending.ABORTED
    w1.close()
    w2.close()


# -- user handlers ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stream_handler_function(tcp_server: TCPServerFactory) -> None:
    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()

    server = await tcp_server(upper)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"shout\n")
    assert await reader.read() == b"SHOUT\n"  # closed when the handler returns
    await _close(writer)
    (conn,) = server.connections
    assert await conn.wait_closed() is Ending.CLOSED
    assert conn.sent == b"SHOUT\n"


class _Doubler(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data * 2)


class _BufferedEcho(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buffer = bytearray(7)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.transport.write(bytes(self.buffer[:nbytes]))


@pytest.mark.asyncio
async def test_protocol_factory_handler(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(_Doubler)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"ab")
    assert await reader.readexactly(4) == b"abab"
    await _close(writer)
    (conn,) = server.connections
    await conn.wait_closed()
    assert (conn.received, conn.sent) == (b"ab", b"abab")


@pytest.mark.asyncio
async def test_buffered_protocol_handler(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(lambda: _BufferedEcho())
    reader, writer = await asyncio.open_connection(*server.address)
    payload = bytes(range(100))
    writer.write(payload)
    assert await reader.readexactly(100) == payload
    await _close(writer)
    (conn,) = server.connections
    await conn.wait_closed()
    assert conn.received == payload


@pytest.mark.parametrize(
    ("handler", "match"),
    [
        ("echo", "got str"),
        (42, "got int"),
        (int, "got the class int"),
        (handlers.script, "call handlers.script"),
    ],
)
@pytest.mark.asyncio
async def test_wrong_handler_type_is_a_type_error(handler: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        TCPServer(handler)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_coroutine_object_handler_is_a_type_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass

    with pytest.raises(TypeError, match="do not call it"):
        TCPServer(handler(None, None))  # type: ignore[arg-type]


# -- a port of one's choosing ------------------------------------------------------------


@pytest.mark.asyncio
async def test_tcp_and_udp_servers_share_a_port(tcp_server: TCPServerFactory) -> None:
    # DNS answers over UDP and TCP on the same port.  The TCP server goes first:
    # its number, free for TCP, is held for UDP only by an open UDP socket,
    # while a UDP server's number is often held for TCP by a connection in
    # TIME_WAIT (about 1% of tries, late in a suite's run).
    tcp = await tcp_server()
    async with UDPServer(port=tcp.port) as udp:
        assert tcp.address == udp.address
        await _echoes(tcp.address, b"over tcp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"over udp", udp.address)
            reply = asyncio.get_running_loop().sock_recv(sock, 100)
            assert await asyncio.wait_for(reply, 10) == b"over udp"


@pytest.mark.asyncio
async def test_a_server_comes_back_on_the_port_of_one_just_closed() -> None:
    # Closing its connections leaves them in TIME_WAIT on the server's side: the
    # new listener needs SO_REUSEADDR, as asyncio's servers set.
    async with TCPServer() as first:
        reader, writer = await asyncio.open_connection(*first.address)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        await first.aclose()
        assert await reader.read() == b""
        await _close(writer)
    async with TCPServer(port=first.port) as second:
        assert second.port == first.port
        await _echoes(second.address, b"again")


@pytest.mark.parametrize("server_type", [TCPServer, UDPServer])
@pytest.mark.asyncio
async def test_a_port_in_use_is_an_os_error_naming_it(server_type: type[TCPServer]) -> None:
    async with server_type() as first:
        second = server_type(port=first.port)
        with pytest.raises(OSError, match=f"cannot bind port={first.port} on 127.0.0.1$") as info:
            await second.start()
        assert info.value.errno == errno.EADDRINUSE
        assert second.closed


@pytest.mark.parametrize(
    ("port", "error", "match"),
    [
        (-1, ValueError, "^port must be in 0..65535, got -1$"),
        (65536, ValueError, "^port must be in 0..65535, got 65536$"),
        ("53", TypeError, "^port must be an int in 0..65535, got '53'$"),
        (True, TypeError, "^port must be an int in 0..65535, got True$"),
    ],
)
def test_a_bad_port_is_refused(port: object, error: type[Exception], match: str) -> None:
    for server_type in (TCPServer, UDPServer):
        with pytest.raises(error, match=match):
            server_type(port=port)  # type: ignore[arg-type]


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "8.8.8.8"])
@pytest.mark.asyncio
async def test_non_loopback_host_needs_allow_remote(host: str) -> None:
    with pytest.raises(ValueError, match="allow_remote=True"):
        TCPServer(host=host)


@pytest.mark.parametrize("host", ["::1%lo", "::1%1"])
def test_a_loopback_host_with_a_scope_id_is_refused_before_it_fails_to_resolve(host: str) -> None:
    # "::1%lo" parses as a loopback address, but getaddrinfo() cannot resolve it.
    for make in (TCPServer, UDPServer):
        with pytest.raises(ValueError, match=r"has a scope id.*: write '::1'"):
            make(host=host)
    with pytest.raises(ValueError, match=r"has a scope id.*: write '::1'"):
        FaultProxy(("127.0.0.1", 9), host=host)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: TCPServer(host="0.0.0.0", allow_remote="no"), "allow_remote"),  # type: ignore[arg-type]
        (lambda: TCPServer(nodelay="no"), "nodelay"),  # type: ignore[arg-type]
        (lambda: TCPServer(reuse_port=1), "reuse_port"),  # type: ignore[arg-type]
        (lambda: UDPServer(reuse_port="no"), "reuse_port"),  # type: ignore[arg-type]
        (lambda: UDPServer(broadcast="no"), "broadcast"),  # type: ignore[arg-type]
        (lambda: UDPServer(host="0.0.0.0", allow_remote="no"), "allow_remote"),  # type: ignore[arg-type]
        (lambda: BoundSocket.tcp(listen="no"), "listen"),  # type: ignore[arg-type]
        (lambda: UnixServer(abstract="no"), "abstract"),  # type: ignore[arg-type]
        (lambda: BoundSocket.udp("0.0.0.0", allow_remote=0), "allow_remote"),  # type: ignore[arg-type]
        (lambda: FaultProxy(("127.0.0.1", 9), host="0.0.0.0", allow_remote="no"), "allow_remote"),  # type: ignore[arg-type]
    ],
)
def test_switches_take_only_true_or_false(make: Callable[[], object], name: str) -> None:
    # Truthiness turned allow_remote="no" into a server on 0.0.0.0.
    with pytest.raises(TypeError, match=f"^{name} must be True or False, got "):
        make()


@pytest.mark.asyncio
async def test_allow_remote_binds_a_wildcard_address() -> None:
    async with TCPServer(host="0.0.0.0", allow_remote=True) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"r")
        assert await reader.readexactly(1) == b"r"
        await _close(writer)


@pytest.mark.asyncio
async def test_host_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"literal IP address.*'localhost'"):
        TCPServer(host="localhost")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"close_timeout": 0}, "close_timeout must be > 0"),
        ({"rcvbuf": 0}, "rcvbuf must be an int from 1 to 2147483647"),
        ({"sndbuf": -5}, "sndbuf must be an int from 1 to 2147483647"),
        ({"backlog": 0}, "backlog must be an int from 1 to 2147483647"),
        ({"ssl": "yes"}, "ssl must be an ssl.SSLContext"),
        (
            {"ssl": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)},
            r"ssl must be a server context \(ssl.PROTOCOL_TLS_SERVER.*got a client context",
        ),
    ],
)
@pytest.mark.asyncio
async def test_bad_options_name_the_parameter(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        TCPServer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"close_timeout": "1"}, TypeError, r"close_timeout must be a number > 0, got '1'"),
        ({"close_timeout": True}, TypeError, r"close_timeout must be a number > 0, got True"),
        ({"close_timeout": -1}, ValueError, r"close_timeout must be > 0 and finite, got -1"),
        ({"close_timeout": float("nan")}, ValueError, r"close_timeout .*finite, got nan"),
        ({"close_timeout": float("inf")}, ValueError, r"close_timeout .*finite, got inf"),
        ({"close_timeout": 10**400}, ValueError, r"close_timeout .*finite, got 1000"),
        ({"rcvbuf": "x"}, TypeError, r"rcvbuf must be an int from 1 to 2147483647 \(bytes\)"),
        ({"rcvbuf": 2.0}, TypeError, r"rcvbuf must be an int .*, got 2\.0"),
        ({"sndbuf": 2**31}, ValueError, r"sndbuf must be an int from 1 to 2147483647"),
        ({"backlog": True}, TypeError, r"backlog must be an int .*, got True"),
        ({"backlog": 2**40}, ValueError, r"backlog must be an int from 1 to 2147483647"),
        ({"limit": "64k"}, TypeError, r"limit must be an int >= 1 \(bytes\), got '64k'"),
    ],
)
def test_bad_numbers_name_the_parameter_and_range(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    # A wrong type is a TypeError and a bad value a ValueError, both raised by the
    # constructor, not by a comparison inside it nor by the socket at start().
    with pytest.raises(error, match=match):
        TCPServer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [float("inf"), "1", True, -1, 0])
@pytest.mark.asyncio
async def test_wait_timeouts_are_checked_like_every_timeout(
    tcp_server: TCPServerFactory, timeout: object
) -> None:
    server = await tcp_server(handlers.sink)
    error = TypeError if isinstance(timeout, (str, bool)) else ValueError
    with pytest.raises(error, match=r"timeout must be .*or None to wait for ever"):
        # Bounded: an infinite timeout used to be taken, and waited for ever.
        await asyncio.wait_for(server.wait_for_connections(1, timeout=timeout), 5)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_connection_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        Connection()


# -- waits ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_wait_for_connections_timeout_says_what_arrived(
    tcp_server: TCPServerFactory,
) -> None:
    server = await tcp_server()
    _, writer = await asyncio.open_connection(*server.address)
    await server.wait_for_connections(1)
    with pytest.raises(TimeoutError, match=r"expected 2 connections; 1 arrived"):
        await server.wait_for_connections(2, timeout=0.05)
    with pytest.raises(ValueError, match=r"^n must be an int >= 0, got -1$"):
        await server.wait_for_connections(-1)
    with pytest.raises(TypeError, match=r"^n must be an int >= 0, got 1.0$"):
        await server.wait_for_connections(1.0)  # type: ignore[arg-type]
    await _close(writer)


@pytest.mark.parametrize("family", ["tcp", "unix"])
@pytest.mark.parametrize("clients", [0, 1, 2])
@pytest.mark.asyncio
async def test_wait_for_connections_of_a_parametrized_number_of_clients(
    family: str, clients: int
) -> None:
    # n=0 once raised "n must be an int >= 1, got 0".
    async with TCPServer() if family == "tcp" else UnixServer() as server:
        writers = []
        for _ in range(clients):
            if isinstance(server, TCPServer):
                _, writer = await asyncio.open_connection(*server.address)
            else:
                _, writer = await asyncio.open_unix_connection(server.path)
            writers.append(writer)
        # For ever: a wait for 0 returns at once, one for the clients once they arrive.
        conns = await asyncio.wait_for(server.wait_for_connections(clients, timeout=None), 5)
        assert len(conns) == clients
        assert conns == server.connections[:clients]
        assert await server.wait_for_connections(0, timeout=None) == ()
        for writer in writers:
            await _close(writer)
    assert await server.wait_for_connections(0) == ()


@pytest.mark.asyncio
async def test_connection_wait_for_bytes(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.sink)
    _, writer = await asyncio.open_connection(*server.address)
    (conn,) = await server.wait_for_connections(1)
    for chunk in (b"GET / HT", b"TP/1.1\r", b"\n\r\n"):
        writer.write(chunk)
        await asyncio.sleep(0)
    assert await conn.wait_for(b"HTTP/1.1\r\n\r\n") == b"GET / HTTP/1.1\r\n\r\n"
    assert await server.wait_for_bytes(b"GET") == b"GET / HTTP/1.1\r\n\r\n"
    with pytest.raises(TimeoutError, match="expected 2 connections; 1 arrived"):
        await server.wait_for_bytes(b"GET", connection=2, timeout=0.05)
    with pytest.raises(TimeoutError, match=r"expected to receive b'Host'; received b'GET"):
        await conn.wait_for(b"Host", timeout=0.05)
    with pytest.raises(TypeError, match="data must be bytes"):
        await conn.wait_for("Host")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be bytes, got str"):
        await conn.wait_for_sent("HTTP")  # type: ignore[arg-type]
    await _close(writer)


async def _fails_at_once(wait: typing.Awaitable[object]) -> str:
    """The TimeoutError message of a wait that must fail without its 60 s timeout."""
    with pytest.raises(TimeoutError) as info:
        await asyncio.wait_for(wait, 5)  # 3.10: asyncio's own TimeoutError is not builtin
    assert "failed at once: it can no longer happen" in str(info.value)
    return str(info.value)


@pytest.mark.asyncio
async def test_waits_on_an_ended_connection_fail_at_once(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.echo)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"PING")
    writer.write_eof()
    assert await reader.read() == b"PING"
    await _close(writer)
    (conn,) = await server.wait_for_connections(1)
    assert await conn.wait_closed() is Ending.EOF
    message = await _fails_at_once(conn.wait_for(b"PONG", timeout=60))
    assert "received b'PING'; the connection eof" in message
    message = await _fails_at_once(conn.wait_for_sent(b"PONG", timeout=60))
    assert "it sent b'PING'; the connection eof" in message
    await _fails_at_once(server.wait_for_bytes(b"PONG", timeout=60))
    # What did arrive is still returned at once.
    assert await conn.wait_for(b"PI", timeout=60) == b"PING"


@pytest.mark.asyncio
async def test_a_pending_wait_fails_when_its_connection_ends(
    tcp_server: TCPServerFactory,
) -> None:
    server = await tcp_server(handlers.sink)
    _, writer = await asyncio.open_connection(*server.address)
    (conn,) = await server.wait_for_connections(1)
    waiting = asyncio.ensure_future(conn.wait_for(b"never", timeout=60))
    await asyncio.sleep(0)
    writer.write(b"some")
    await _close(writer)
    message = await _fails_at_once(waiting)
    assert "received b'some'; the connection eof" in message


@pytest.mark.asyncio
async def test_waits_on_a_closed_server_fail_at_once() -> None:
    server = await TCPServer(handlers.sink).start()
    waiting = asyncio.ensure_future(server.wait_for_connections(1, timeout=60))
    await asyncio.sleep(0)
    await server.aclose()
    message = await _fails_at_once(waiting)
    assert "expected 1 connection; 0 arrived; the server is closed" in message
    await _fails_at_once(server.wait_for_connections(1, timeout=60))


@pytest.mark.parametrize(
    ("connection", "error"), [(0, ValueError), (-1, ValueError), ("1", TypeError)]
)
@pytest.mark.asyncio
async def test_wait_for_bytes_names_a_bad_connection(
    tcp_server: TCPServerFactory, connection: object, error: type[Exception]
) -> None:
    server = await tcp_server(handlers.sink)
    with pytest.raises(error, match=r"^connection must be an int >= 1, got"):
        await server.wait_for_bytes(b"x", connection=connection, timeout=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be bytes"):  # before waiting at all
        await server.wait_for_bytes("x", timeout=0.1)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_wait_on_another_loop_is_refused() -> None:
    server = await TCPServer().start()

    def other() -> None:
        async def wait() -> None:
            await server.wait_for_connections(1, timeout=0.1)

        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(wait())

    await asyncio.get_running_loop().run_in_executor(None, other)
    await server.aclose()


@pytest.mark.asyncio
async def test_connection_waits_on_another_loop_are_refused(
    tcp_server: TCPServerFactory,
) -> None:
    server = await tcp_server(handlers.sink)
    _, writer = await asyncio.open_connection(*server.address)
    (conn,) = await server.wait_for_connections(1)
    waits: list[typing.Callable[[], typing.Awaitable[object]]] = [
        lambda: server.wait_for_connections(1, timeout=0.1),
        lambda: conn.wait_for(b"never", timeout=0.1),
        lambda: conn.wait_for_sent(b"never", timeout=0.1),
        lambda: conn.wait_closed(timeout=0.1),
        lambda: conn.wait_closed(timeout=None),  # would never return
    ]

    def on_another_loop() -> list[str]:
        messages = []
        for wait in waits:

            async def run(wait: typing.Callable[[], typing.Awaitable[object]] = wait) -> None:
                await wait()

            with pytest.raises(RuntimeError, match="another event loop") as caught:
                asyncio.run(asyncio.wait_for(run(), 5))
            messages.append(str(caught.value))
        return messages

    messages = await asyncio.get_running_loop().run_in_executor(None, on_another_loop)
    assert messages[1].startswith(f"Connection #1 to {server._name} belongs to another")
    # The connection's waits say it as the server does.
    tails = {m.split(" belongs ")[1] for m in messages}
    assert len(tails) == 1
    await _close(writer)


# -- errors raised at teardown ------------------------------------------------------------


@pytest.mark.asyncio
async def test_handler_exception_is_raised_at_teardown_with_the_bytes() -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        raise ValueError("cannot parse")

    server = await TCPServer(broken).start()
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"hello")
    assert await reader.read() == b""  # the server closes after the error
    await _close(writer)
    with pytest.raises(HandlerError) as info:
        await server.aclose()
    message = str(info.value)
    assert "ValueError: cannot parse" in message
    assert "b'hello'" in message
    assert "connection #1" in message
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.errors == (info.value.__cause__,)


def test_a_script_mismatch_is_reported_without_nettest_s_frames(pytester: pytest.Pytester) -> None:
    # The mismatch's message is the whole story, in the HandlerError; chained as its
    # cause, it put nettest's script runner (some 60 lines of source) before it.
    # A handler's own exception stays the cause: its frames are the user's code.
    pytester.makepyfile(
        """
        import asyncio, socket
        import pytest
        from nettest import handlers

        @pytest.mark.asyncio
        async def test_udp_mismatch(udp_server):
            server = await udp_server(handlers.script(handlers.expect(b"query")))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"other", server.address)
            await server.wait_for_datagrams(1)

        @pytest.mark.asyncio
        async def test_tcp_mismatch(tcp_server):
            server = await tcp_server(handlers.script(handlers.expect(b"query")))
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"other")
            await reader.read()
            writer.close()
            await writer.wait_closed()

        @pytest.mark.asyncio
        async def test_handler_raises(tcp_server):
            async def handler(reader, writer):
                raise ValueError(await reader.read(5))
            server = await tcp_server(handler)
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"hello")
            await reader.read()
            writer.close()
            await writer.wait_closed()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=3)
    output = result.stdout.str()
    assert output.count("The above exception was the direct cause") == 1
    assert "_handlers.py" not in output
    assert "_udp.py" not in output
    result.stdout.fnmatch_lines(
        [
            "*UDPServer 127.0.0.1:*: 1 handler error:",
            "*ScriptMismatch: script step 1 of 1, expect(b'query'): the client sent something*",
            "*raise ValueError(await reader.read(5))",
            "E*ValueError: b'hello'",
            "*The above exception was the direct cause of the following exception:*",
        ]
    )


def test_a_failed_test_s_report_shows_its_servers_transcripts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio, socket
        import pytest
        from nettest import handlers

        @pytest.mark.asyncio
        async def test_client_fails(udp_server, tcp_server):
            udp = await udp_server(handlers.echo)
            await tcp_server(handlers.sink)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for i in range(30):
                    sock.sendto(b"query %d" % i, udp.address)
            await udp.wait_for_datagrams(30)
            assert False, "the client misread the answer"

        def test_blocking_client_fails(unix_datagram_server_thread):
            server = unix_datagram_server_thread(handlers.sink)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"log line", server.path)
            server.wait_for_datagrams(1)
            assert False

        @pytest.mark.asyncio
        async def test_passes(udp_server):
            await udp_server(handlers.echo)

        @pytest.mark.asyncio
        async def test_many_servers_and_connections(tcp_server):
            for _ in range(6):
                server = await tcp_server(handlers.echo)
            for i in range(9):
                reader, writer = await asyncio.open_connection(*server.address)
                writer.write(b"req %d" % i)
                if i == 8:  # a seventh line for the last connection
                    await reader.readexactly(5)
                    writer.write(b"more")
                writer.write_eof()
                await reader.read()
                writer.close()
                await writer.wait_closed()
            await server.wait_for_connections(9)
            for conn in server.connections:
                await conn.wait_closed()
            assert False
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3)
    output = result.stdout.str()
    assert output.count("- nettest servers -") == 3  # the failed tests' alone
    # The last five servers; the last one's 47 lines cut to 20 and 20, the tail
    # naming the connection it starts in.
    result.stdout.fnmatch_lines(
        [
            "*- nettest servers -*",
            "(1 server started before these)",
            "",
            "<TCPServer 127.0.0.1:* open, 0 connections>",
            "*",
            "<TCPServer 127.0.0.1:* open, 9 connections>",
            "#1 127.0.0.1:* -> 127.0.0.1:*",
            "... 8 lines left out (server.transcript() has all)",
            "#6 127.0.0.1:* -> 127.0.0.1:* (continued)",
            "  +0.*s client  EOF",
            "  +0.*s         closed (eof)",
            "#7 127.0.0.1:* -> 127.0.0.1:*",
        ]
    )
    assert output.count("<TCPServer 127.0.0.1:") == 1 + 5  # test_client_fails has one
    result.stdout.fnmatch_lines(
        [
            "*- nettest servers -*",
            "<UDPServer 127.0.0.1:* open, 30 datagrams received>",
            "  +0.*s <- 127.0.0.1:*  b'query 0'",
            "... 20 lines left out (server.transcript() has all)",
            "  +0.*s -> 127.0.0.1:*  b'query 29'",
            "",
            "<TCPServer 127.0.0.1:* open, 0 connections>",
            "TCPServer 127.0.0.1:*: no connections",
            "*- nettest servers -*",
            "<UnixDatagramServerThread *>",
            "  +0.*s <- *  b'log line'",
        ]
    )


@pytest.mark.asyncio
async def test_protocol_exception_is_raised_at_teardown() -> None:
    class Broken(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            raise KeyError(data)

    server = await TCPServer(Broken).start()
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"boom")
    assert await reader.read() == b""  # aborted: closed with nothing sent
    writer.close()
    with pytest.raises(HandlerError, match=r"data_received\(\) raised.*b'boom'"):
        await server.aclose()


class _CannotMake(asyncio.Protocol):
    def __init__(self) -> None:
        raise ValueError("no protocol today")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("factory", "error"),
    [
        (_CannotMake, "ValueError: no protocol today"),
        (lambda: 42, "TypeError: the handler (a protocol factory) returned int"),
    ],
)
async def test_protocol_factory_error_aborts_the_connection_and_is_raised_at_teardown(
    factory: typing.Callable[[], asyncio.BaseProtocol], error: str
) -> None:
    server = await TCPServer(factory).start()
    reader, writer = await asyncio.open_connection(*server.address)
    assert await reader.read() == b""  # aborted: closed with nothing sent
    await _close(writer)
    (conn,) = server.connections
    await conn.wait_closed()
    assert conn.ending is Ending.ABORTED
    with pytest.raises(HandlerError, match="protocol factory") as info:
        await server.aclose()
    assert error in str(info.value)


@pytest.mark.asyncio
async def test_handler_errors_are_visible_before_teardown(tcp_server: TCPServerFactory) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise RuntimeError("early")

    server = await TCPServer(broken).start()
    reader, writer = await asyncio.open_connection(*server.address)
    assert await reader.read() == b""
    await _close(writer)
    assert [str(e) for e in server.errors] == ["early"]
    with pytest.raises(HandlerError, match="early"):
        await server.aclose()


# -- teardown ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_teardown_closes_idle_clients_without_waiting() -> None:
    server = await TCPServer(handlers.hang).start()
    readers = []
    for _ in range(5):
        reader, writer = await asyncio.open_connection(*server.address)
        readers.append((reader, writer))
    await server.wait_for_connections(5)
    started = time.monotonic()
    await server.aclose()
    assert time.monotonic() - started < 1.0
    for reader, writer in readers:
        assert await reader.read() == b""
        writer.close()
    assert all(c.ending is Ending.CLOSED for c in server.connections)


@pytest.mark.asyncio
async def test_teardown_aborts_a_client_that_never_reads_and_says_so() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.set_write_buffer_limits(high=2**30)
        writer.write(b"x" * 24_000_000)
        await asyncio.sleep(3600)

    server = await TCPServer(flood, close_timeout=0.2, sndbuf=4096).start()
    _, writer = await asyncio.open_connection(*server.address)
    typing.cast("asyncio.Transport", writer.transport).pause_reading()
    (conn,) = await server.wait_for_connections(1)
    started = time.monotonic()
    with pytest.warns(ServerTeardownWarning, match=r"had to abort.*connection #1"):
        await server.aclose()
    assert time.monotonic() - started < 2.5
    assert conn.ending is Ending.ABORTED
    writer.transport.abort()


@pytest.mark.asyncio
async def test_teardown_cancels_a_stuck_handler_and_says_so() -> None:
    async def stuck(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    server = await TCPServer(stuck, close_timeout=0.1).start()
    _, writer = await asyncio.open_connection(*server.address)
    await server.wait_for_connections(1)
    writer.close()
    with pytest.warns(ServerTeardownWarning, match=r"the handler of connection #1 \(cancelled\)"):
        await server.aclose()


@pytest.mark.asyncio
async def test_teardown_ends_a_handler_that_ignores_cancellation() -> None:
    cleaned_up = []

    async def stubborn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass  # a retry loop catching too much
        finally:
            cleaned_up.append(True)

    server = await TCPServer(stubborn, close_timeout=0.1).start()
    _, writer = await asyncio.open_connection(*server.address)
    await server.wait_for_connections(1)
    writer.close()
    started = time.monotonic()
    with pytest.warns(
        ServerTeardownWarning,
        match=r"the handler of connection #1 ignored cancellation: nettest closed its coroutine",
    ):
        await server.aclose()
    assert time.monotonic() - started < 5
    assert cleaned_up == [True]  # its finally block ran
    # Nothing is left for the loop's close to wait on.
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- socket options -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_small_buffers_apply_to_accepted_sockets(tcp_server: TCPServerFactory) -> None:
    seen: list[tuple[int, int, int]] = []

    async def look(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.append(
            (
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            )
        )

    server = await tcp_server(look, rcvbuf=4096, sndbuf=4096, nodelay=False)
    reader, writer = await asyncio.open_connection(*server.address)
    assert await reader.read() == b""
    await _close(writer)
    ((rcv, snd, nodelay),) = seen
    # Linux doubles the value for bookkeeping; either way it is far below the default.
    assert 4096 <= rcv <= 8192
    assert 4096 <= snd <= 8192
    assert nodelay == 0


@pytest.mark.asyncio
async def test_nodelay_is_on_by_default(tcp_server: TCPServerFactory) -> None:
    values: list[int] = []

    async def look(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        values.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await tcp_server(look)
    reader, writer = await asyncio.open_connection(*server.address)
    await reader.read()
    await _close(writer)
    assert values
    assert values[0] != 0


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
@pytest.mark.asyncio
async def test_reuse_port_lets_another_socket_share_the_port(
    tcp_server: TCPServerFactory,
) -> None:
    server = await tcp_server(reuse_port=True)
    (listener,) = server.sockets
    assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(server.address)  # would raise EADDRINUSE without SO_REUSEPORT


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", name="tls_pair")
def _tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "::1", "localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


@pytest.mark.asyncio
async def test_tls_echo_and_recording_in_clear(
    tcp_server: TCPServerFactory, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls_pair
    server = await tcp_server(handlers.echo, ssl=server_ctx)
    assert server.ssl is server_ctx
    reader, writer = await asyncio.open_connection(*server.address, ssl=client_ctx)
    writer.write(b"secret")
    assert await reader.readexactly(6) == b"secret"
    await _close(writer)
    (conn,) = server.connections
    await conn.wait_closed()
    assert conn.received == b"secret"
    assert conn.sent == b"secret"


def _starttls_client(
    address: tuple[str, int], context: ssl.SSLContext, message: bytes
) -> tuple[bytes, bytes]:
    """A blocking SMTP-like client: STARTTLS in clear, then one exchange over TLS."""
    with socket.create_connection(address, timeout=5) as raw:
        raw.sendall(b"STARTTLS\r\n")
        greeting = b""
        while not greeting.endswith(b"\r\n"):
            chunk = raw.recv(100)
            assert chunk, greeting
            greeting += chunk
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(message)
            reply = tls.recv(100)
            try:
                tls.unwrap()  # close_notify both ways
            except ssl.SSLEOFError:
                # Python 3.10's asyncio closes on the client's close_notify
                # without sending its own.
                if sys.version_info >= (3, 11):
                    raise
    return greeting, reply


class _StartTLSEcho(asyncio.Protocol):
    """A protocol handler that upgrades on STARTTLS, then echoes upper-cased."""

    context: typing.ClassVar[ssl.SSLContext]
    upgrades: typing.ClassVar[list[asyncio.Future[None]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if data == b"STARTTLS\r\n":
            self.transport.write(b"220 go ahead\r\n")
            self.upgrades.append(asyncio.ensure_future(self._upgrade()))
        else:
            self.transport.write(data.upper())

    async def _upgrade(self) -> None:
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(self.transport, self, self.context, server_side=True)
        assert transport is not None
        self.transport = transport


@pytest.mark.asyncio
async def test_start_tls_on_a_protocol_handler_records_the_cleartext(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    _StartTLSEcho.context = tls_pair[0]
    async with TCPServer(_StartTLSEcho) as server:
        greeting, reply = await asyncio.get_running_loop().run_in_executor(
            None, _starttls_client, server.address, tls_pair[1], b"secret"
        )
        assert (greeting, reply) == (b"220 go ahead\r\n", b"SECRET")
        (conn,) = server.connections
        assert await conn.wait_closed() in (Ending.EOF, Ending.CLOSED)
    # Cleartext on both sides of the upgrade, no ciphertext.
    assert conn.received == b"STARTTLS\r\nsecret"
    assert conn.sent == b"220 go ahead\r\nSECRET"
    assert conn.tls is not None  # what the upgrade's handshake negotiated
    assert conn.tls.version in ("TLSv1.2", "TLSv1.3")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is 3.11+")
@pytest.mark.parametrize("handler_closes", [False, True])
@pytest.mark.asyncio
async def test_start_tls_on_a_stream_handler_records_the_cleartext(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext], handler_closes: bool
) -> None:
    # conn.tls is read at the end of the handshake: once the handler has closed
    # its writer, the TLS layer shutting down answers nothing, and it stayed None.
    server_ctx, client_ctx = tls_pair

    async def starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\r\n"
        writer.write(b"220 go ahead\r\n")
        # StreamWriter.start_tls is new in 3.11; mypy checks for 3.10.
        start_tls: typing.Any = writer.start_tls  # type: ignore[attr-defined,unused-ignore]
        await start_tls(server_ctx)  # the server side, as asyncio's servers take it
        writer.write((await reader.read(100)).upper())
        await writer.drain()
        if handler_closes:
            await reader.read()
            writer.close()
            await writer.wait_closed()

    async with TCPServer(starttls) as server:
        greeting, reply = await asyncio.get_running_loop().run_in_executor(
            None, _starttls_client, server.address, client_ctx, b"secret"
        )
        assert (greeting, reply) == (b"220 go ahead\r\n", b"SECRET")
        (conn,) = server.connections
        await conn.wait_closed()
    assert (conn.received, conn.sent) == (b"STARTTLS\r\nsecret", b"220 go ahead\r\nSECRET")
    assert conn.tls is not None


def _starttls_then_reset(address: tuple[str, int], upgrading: threading.Event) -> None:
    """A blocking client that asks for STARTTLS, then resets before its ClientHello."""
    with socket.create_connection(address, timeout=5) as raw:
        raw.sendall(b"STARTTLS\r\n")
        assert raw.recv(100) == b"220 go ahead\r\n"
        assert upgrading.wait(5)
        time.sleep(0.1)  # the server's handshake is waiting for the ClientHello
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is 3.11+")
@pytest.mark.asyncio
async def test_a_start_tls_reset_mid_handshake_leaves_the_writer_as_asyncio_does(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # Under asyncio's own server, the handler's protocol never hears of the loss
    # (the TLS layer keeps it while its handshake runs), so wait_closed() waits
    # for ever: nettest's server told it, and a handler that hangs in production
    # passed its tests.
    server_ctx, _ = tls_pair

    async def outcome_under(start: typing.Any) -> str:
        outcomes: list[str] = []
        upgrading = threading.Event()

        async def starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(b"220 go ahead\r\n")
            start_tls: typing.Any = writer.start_tls  # type: ignore[attr-defined,unused-ignore]
            upgrading.set()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await start_tls(server_ctx)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 0.5)
                outcomes.append("closed")
            except TimeoutError:
                outcomes.append("waits")
            except ConnectionError as error:
                outcomes.append(f"raised {type(error).__name__}")

        async with start(starttls) as address:
            await asyncio.get_running_loop().run_in_executor(
                None, _starttls_then_reset, address, upgrading
            )
            while not outcomes:
                await asyncio.sleep(0.05)
        return outcomes[0]

    @contextlib.asynccontextmanager
    async def under_asyncio(handler: typing.Any) -> typing.AsyncIterator[tuple[str, int]]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[:2]
        finally:
            server.close()
            await server.wait_closed()

    @contextlib.asynccontextmanager
    async def under_nettest(handler: typing.Any) -> typing.AsyncIterator[tuple[str, int]]:
        async with TCPServer(handler) as server:
            yield server.address

    expected = await outcome_under(under_asyncio)
    assert expected == "waits"  # asyncio's behaviour on 3.11-3.13, which nettest follows
    assert await outcome_under(under_nettest) == expected


class _OwnProtocol(asyncio.Protocol):
    seen: typing.ClassVar[list[bool]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.seen.append(transport.get_protocol() is self)
        transport.close()


@pytest.mark.asyncio
async def test_a_handlers_transport_gives_the_handlers_protocol() -> None:
    # As asyncio's servers do: not the recorder nettest puts before it.
    protocols: list[asyncio.BaseProtocol] = []

    async def stream_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        protocols.append(writer.transport.get_protocol())
        writer.close()

    _OwnProtocol.seen.clear()
    for handler in (stream_handler, _OwnProtocol):
        async with TCPServer(handler) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            await writer.wait_closed()
    assert [type(p) for p in protocols] == [asyncio.StreamReaderProtocol]
    assert _OwnProtocol.seen == [True]


@pytest.mark.asyncio
async def test_loop_start_tls_in_a_stream_handler_records_the_cleartext_once(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # Python 3.10 has no StreamWriter.start_tls(): handlers call loop.start_tls()
    # with the transport's protocol, and write through the transport it returns.
    server_ctx, client_ctx = tls_pair
    seen: list[object] = []

    async def starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\r\n"
        writer.write(b"220 go ahead\r\n")
        await writer.drain()
        protocol = writer.transport.get_protocol()
        loop = asyncio.get_running_loop()
        tls = await loop.start_tls(writer.transport, protocol, server_ctx, server_side=True)
        assert tls is not None
        seen.append(tls.get_protocol() is protocol)
        line = await reader.read(100)
        seen.append(line)
        tls.write(line.upper())
        tls.close()  # with its close_notify: the writer still holds the plain transport

    async with TCPServer(starttls) as server:
        greeting, reply = await asyncio.get_running_loop().run_in_executor(
            None, _starttls_client, server.address, client_ctx, b"secret"
        )
        assert (greeting, reply) == (b"220 go ahead\r\n", b"SECRET")
        (conn,) = server.connections
        await conn.wait_closed()
    assert seen == [True, b"secret"]
    assert (conn.received, conn.sent) == (b"STARTTLS\r\nsecret", b"220 go ahead\r\nSECRET")
    assert conn.tls is not None


@pytest.mark.asyncio
async def test_a_start_tls_handshake_that_fails_ends_the_connection(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    _StartTLSEcho.context = tls_pair[0]
    _StartTLSEcho.upgrades.clear()
    import trustme

    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)  # trusts another CA: the client refuses
    server = await TCPServer(_StartTLSEcho, close_timeout=1).start()
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.get_running_loop().run_in_executor(
            None, _starttls_client, server.address, stranger, b"secret"
        )
    (conn,) = await server.wait_for_connections(1)
    # The handshake failed before the handler's protocol was told of TLS (3.10
    # never tells it): the recording ends all the same, and nothing is left open.
    assert await conn.wait_closed() in (Ending.RESET, Ending.CLOSED, Ending.EOF)
    assert conn.received == b"STARTTLS\r\n"
    (upgrade,) = _StartTLSEcho.upgrades
    with pytest.raises((ssl.SSLError, ConnectionError)):  # the handler's start_tls() failed
        await upgrade
    await server.aclose()


@pytest.mark.asyncio
async def test_tls_wrong_ca_is_refused(
    tcp_server: TCPServerFactory, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, _ = tls_pair
    server = await tcp_server(handlers.echo, ssl=server_ctx)
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection(*server.address, ssl=ssl.create_default_context())
    await asyncio.sleep(0.05)
    assert server.connections == ()


@pytest.mark.asyncio
async def test_tls_teardown_with_a_handshake_never_started(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls_pair
    server = await TCPServer(handlers.echo, ssl=server_ctx, close_timeout=0.2).start()
    reader, writer = await asyncio.open_connection(*server.address)  # no ClientHello
    await asyncio.sleep(0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ServerTeardownWarning)
        await server.aclose()
    # Aborted at once on every Python (before 3.13 asyncio's server could not
    # reach it, and teardown waited close_timeout, then warned).
    assert [w for w in caught if w.category is ServerTeardownWarning] == []
    assert server.connections == ()  # never recorded: the handshake did not finish
    assert server.handshake_failures == ()  # teardown ended it, not the client
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing sent
    await _close(writer)


@pytest.mark.asyncio
async def test_tls_teardown_does_not_hang_without_close_notify(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls_pair
    server = await TCPServer(handlers.hang, ssl=server_ctx, close_timeout=0.3).start()
    _, writer = await asyncio.open_connection(*server.address, ssl=client_ctx)
    await server.wait_for_connections(1)
    # The client stops reading: it never sees the server's close_notify, never answers.
    typing.cast("asyncio.Transport", writer.transport).pause_reading()
    started = time.monotonic()
    with warnings.catch_warnings():
        # Whether teardown must abort depends on timing; that it ends in time does not.
        warnings.simplefilter("ignore", ServerTeardownWarning)
        await server.aclose()
    assert time.monotonic() - started < 3.0
    writer.transport.abort()


# -- assertions, warnings, uvloop -------------------------------------------------------


@pytest.mark.asyncio
async def test_assert_no_connections(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.sink)
    server.assert_no_connections()
    _, writer = await asyncio.open_connection(*server.address)
    writer.write(b"sneaky")
    (conn,) = await server.wait_for_connections(1)
    await conn.wait_for(b"sneaky")
    with pytest.raises(AssertionError, match=r"expected no connections; 1 arrived:\n#1 .*"):
        server.assert_no_connections()
    await _close(writer)


@pytest.mark.nettest_leaks("off")  # it drops one open on purpose
@pytest.mark.asyncio
async def test_dropped_open_server_warns() -> None:
    server = await TCPServer().start()
    with pytest.warns(ResourceWarning, match="unclosed <TCPServer 127.0.0.1:"):
        server.__del__()
    await server.aclose()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        server.__del__()  # closed: silent


def _on_uvloop(main: typing.Callable[[], typing.Awaitable[None]]) -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.uvloop
def test_servers_on_uvloop() -> None:
    async def main() -> None:
        async with TCPServer(handlers.echo, rcvbuf=4096) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"uv")
            assert await reader.readexactly(2) == b"uv"
            writer.write_eof()
            assert await reader.read() == b""
            await _close(writer)
            (conn,) = server.connections
            assert await conn.wait_closed() is Ending.EOF
        async with TCPServer(handlers.reset) as server:
            with pytest.raises(ConnectionResetError):
                await _connect_and_read(server.address)
        from nettest._udp import UDPServer

        async with UDPServer(handlers.sink) as udp:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"d", udp.address)
                await udp.wait_for_datagrams(1)

    _on_uvloop(main)


LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.uvloop)]


def _run_on(loop: str, main: typing.Callable[[], typing.Awaitable[None]]) -> None:
    async def run() -> None:
        await main()

    if loop == "uvloop":
        _on_uvloop(run)
    else:
        asyncio.run(run())


class _Upper(asyncio.BufferedProtocol):
    """A BufferedProtocol only: uvloop must call its buffer methods, as asyncio does."""

    def __init__(self) -> None:
        self.buffer = bytearray(4)  # smaller than what arrives: several reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's.
        self.transport = typing.cast("asyncio.WriteTransport", transport)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.transport.write(bytes(self.buffer[:nbytes]).upper())

    def eof_received(self) -> None:
        self.transport.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_buffered_protocol_handler_on_each_loop(loop: str) -> None:
    async def main() -> None:
        async with TCPServer(_Upper) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"abcdefghij")
            writer.write_eof()
            assert await reader.read() == b"ABCDEFGHIJ"
            await _close(writer)
            (conn,) = server.connections
            assert await conn.wait_closed() is Ending.EOF
            assert (conn.received, conn.sent) == (b"abcdefghij", b"ABCDEFGHIJ")
            assert server.errors == ()

    _run_on(loop, main)


class _Both(asyncio.Protocol, asyncio.BufferedProtocol):
    """Both kinds: asyncio's loop calls the buffer methods, uvloop data_received."""

    calls: typing.ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.buffer = bytearray(64)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's.
        self.transport = typing.cast("asyncio.WriteTransport", transport)

    def data_received(self, data: bytes) -> None:
        self.calls.append("data_received")
        self.transport.write(data)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.calls.append("buffer_updated")
        self.transport.write(bytes(self.buffer[:nbytes]))


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.WriteTransport", transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


@pytest.mark.parametrize("handler", [_Upper, _Echo, _Both])
@pytest.mark.parametrize("loop", LOOPS)
def test_protocol_handler_is_called_as_the_loop_calls_it_without_nettest(
    loop: str, handler: type[asyncio.BaseProtocol]
) -> None:
    async def exchange(address: tuple[str, int]) -> bytes:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"ab")
        reply = await asyncio.wait_for(reader.readexactly(2), 5)
        await _close(writer)
        return reply

    async def main() -> None:
        loop = asyncio.get_running_loop()
        plain = await loop.create_server(handler, "127.0.0.1", 0)
        _Both.calls.clear()
        expected = await exchange(plain.sockets[0].getsockname()[:2])
        plain.close()
        without = list(_Both.calls)
        _Both.calls.clear()
        async with TCPServer(handler) as server:
            assert await exchange(server.address) == expected
            (conn,) = server.connections
            await conn.wait_closed()
            assert conn.received == b"ab"
        assert _Both.calls == without
        await plain.wait_closed()

    _run_on(loop, main)


# -- teardown and the connections it has not seen yet -----------------------------------


async def _next_iteration() -> None:
    """Resume two loop iterations on, ahead of what the I/O ready now schedules.

    asyncio's loop runs the callbacks scheduled before an iteration ahead of that
    iteration's I/O: the accept callback of a connection waiting now runs in the
    next iteration, after the callback that wakes this task, and what it schedules
    (the task that makes the transport) runs after this task resumes.
    """
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    loop.call_soon(woken.set_result, None)
    await woken


# On asyncio's loop, where teardown starts: the listener has the connection in its
# backlog; accepted, the transport not made yet; made, connection_made not called;
# connection_made called, nothing read yet.
_STAGES = {"backlog": 0, "accepted": 1, "attached": 2, "made": 3}


async def _reach(stage: str) -> None:
    if _STAGES[stage] >= 1:
        await _next_iteration()
    for _ in range(_STAGES[stage] - 1):
        await asyncio.sleep(0)


@pytest.mark.parametrize("stage", list(_STAGES))
@pytest.mark.parametrize("loop", LOOPS)
def test_teardown_reads_and_closes_connections_the_loop_accepted(loop: str, stage: str) -> None:
    async def main() -> None:
        script = handlers.script(handlers.expect(b"hello"), handlers.expect_eof())
        server = await TCPServer(script, close_timeout=1).start()
        with socket.create_connection(server.address) as client:  # a blocking client
            client.sendall(b"hello")
        await _reach(stage)
        if loop == "asyncio":  # the stage was reached
            made = [conn.received for conn in server.connections]
            assert made == ([b""] if stage == "made" else [])
        started = time.monotonic()
        await server.aclose()  # the script was followed: nothing to raise
        assert time.monotonic() - started < 0.5
        assert all(task.done() for task in server._tasks)
        if loop == "asyncio":
            # In the backlog the connection is refused; once accepted, it is kept.
            assert len(server.connections) == (stage != "backlog")
        for conn in server.connections:
            assert (conn.received, conn.eof_received, conn.is_open) == (b"hello", True, False)

    _run_on(loop, main)


@pytest.mark.parametrize("stage", list(_STAGES))
@pytest.mark.asyncio
async def test_tls_teardown_ends_handshakes_the_loop_accepted(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext], stage: str
) -> None:
    server_ctx, _ = tls_pair
    server = await TCPServer(handlers.echo, ssl=server_ctx, close_timeout=5).start()
    with socket.create_connection(server.address) as client:  # and no ClientHello
        await _reach(stage)
        assert len(server._handshaking) == (stage == "made")  # the stage was reached
        with warnings.catch_warnings():
            # Accepted, the handshake began during teardown: ended all the same,
            # not left to close_timeout (which warns).
            warnings.simplefilter("error", ServerTeardownWarning)
            await server.aclose()
        assert (server.connections, server.handshake_failures) == ((), ())
        assert not server._handshaking
        client.settimeout(5)
        with contextlib.suppress(ConnectionResetError):  # refused from the backlog
            assert client.recv(1) == b""


@pytest.mark.asyncio
async def test_teardown_reads_what_a_client_sent_before_it_closes() -> None:
    server = await TCPServer(handlers.sink).start()
    with socket.create_connection(server.address) as client:
        (conn,) = await server.wait_for_connections(1)
        client.sendall(b"x" * 100_000)
        await server.aclose()
    assert conn.received == b"x" * 100_000


@pytest.mark.parametrize("family", ["tcp", "unix"])
@pytest.mark.asyncio
async def test_teardown_reads_past_a_handler_whose_reader_paused(family: str) -> None:
    # 400 kB is more than the StreamReader holds before it pauses reading (twice
    # its 64 KiB limit) and more than SO_RCVBUF: the handler consumes it as
    # teardown runs, and must see all of it, then the EOF.
    size = 400_000
    script = handlers.script(handlers.expect(b"x" * size), handlers.expect_eof())
    server = await (TCPServer(script) if family == "tcp" else UnixServer(script)).start()
    client = socket.socket(socket.AF_INET if family == "tcp" else socket.AF_UNIX)
    with client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        client.settimeout(5)
        client.connect(server.address)
        await server.wait_for_connections(1)
        client.sendall(b"x" * size)  # a blocking client: the loop does not run meanwhile
    await server.aclose()  # the script was followed: nothing to raise
    (conn,) = server.connections
    assert (len(conn.received), conn.eof_received, conn.ending) == (size, True, Ending.EOF)


@pytest.mark.asyncio
async def test_tls_teardown_reads_what_a_client_sent_before_it_closes(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls_pair
    server = await TCPServer(handlers.sink, ssl=server_ctx).start()
    _, writer = await asyncio.open_connection(*server.address, ssl=client_ctx)
    (conn,) = await server.wait_for_connections(1)
    writer.write(b"secret")  # in the kernel now, not read by the server yet
    await server.aclose()
    assert conn.received == b"secret"
    writer.transport.abort()


@pytest.mark.asyncio
async def test_teardown_does_not_wait_for_a_client_that_keeps_sending() -> None:
    server = await TCPServer(handlers.sink, close_timeout=5).start()
    _, writer = await asyncio.open_connection(*server.address)
    (conn,) = await server.wait_for_connections(1)

    async def flood() -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()

    flooding = asyncio.create_task(flood())
    await conn.wait_for(b"x" * 65536)
    started = time.monotonic()
    await server.aclose()  # reads about a receive buffer's worth, then closes
    assert time.monotonic() - started < 2.0
    assert conn.ending is Ending.CLOSED
    flooding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flooding
    writer.transport.abort()


@pytest.mark.parametrize("fixture", ["tcp_server", "unix_server"])
@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_blocking_client_in_an_async_test_is_recorded_and_checked(
    pytester: pytest.Pytester, mode: str, fixture: str
) -> None:
    # The client connects, sends and closes without the loop running: the loop
    # accepts the connection as the test ends, and teardown must make it, read it,
    # run the script on it and close it.
    marker = "" if mode == "auto" else "@pytest.mark.asyncio"
    pytester.makepyfile(
        f"""
import socket
import pytest
from nettest import _handlers as handlers
from nettest._servers import {fixture} as server_factory  # noqa: F401

servers = []

def connect(server):
    if isinstance(server.address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(server.address)
        return sock
    return socket.create_connection(server.address)

{marker}
async def test_follows(server_factory):
    steps = handlers.expect(b"one"), handlers.expect(b"two"), handlers.expect_eof()
    servers.append(await server_factory(handlers.script(*steps)))
    with connect(servers[-1]) as client:
        client.sendall(b"one")
        client.sendall(b"two")

{marker}
async def test_deviates(server_factory):
    servers.append(await server_factory(handlers.script(handlers.expect(b"one"))))
    with connect(servers[-1]) as client:
        client.sendall(b"two")

def test_recorded():
    assert [s.connections[0].received for s in servers] == [b"onetwo", b"two"]
"""
    )
    result = pytester.runpytest(f"--asyncio-mode={mode}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_deviates*", "*expected: b'one'*"])
    result.stdout.no_fnmatch_line("*LeakError*")


class _Transcribed:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return "<server>"

    def transcript(self) -> str:
        if not self.text:
            raise RuntimeError("transcript broke")
        return self.text


def _connection_lines(index: int, events: int) -> list[str]:
    return [f"#{index} 127.0.0.1:1 -> 127.0.0.1:2"] + [
        f"  +0.000s client  b'{i}'" for i in range(events)
    ]


def test_a_cut_transcript_counts_and_titles_what_it_shows() -> None:
    cut = _server_base._cut_transcript
    # 41 lines: a line saying one is left out would save none.
    lines = _connection_lines(1, 40)
    assert cut(_Transcribed("\n".join(lines))).splitlines() == ["<server>", *lines]
    # 60 lines in one connection: the tail goes on with its title.
    lines = _connection_lines(1, 59)
    shown = cut(_Transcribed("\n".join(lines))).splitlines()
    assert shown == [
        "<server>",
        *lines[:20],
        "... 21 lines left out (server.transcript() has all)",
        f"{lines[0]} (continued)",
        *lines[-19:],
    ]
    # Failed TLS handshakes follow the connections unindented: no title over them.
    failures = [f"TLS handshake from 127.0.0.1:{port} failed: SSLError" for port in range(30)]
    lines = _connection_lines(1, 20) + failures
    shown = cut(_Transcribed("\n".join(lines))).splitlines()
    assert shown[22:] == failures[-20:]
    assert shown[21] == "... 11 lines left out (server.transcript() has all)"
    # A transcript() that raises is said, not a crash of the report.
    assert (
        cut(_Transcribed(""))
        == "<server>\n(its transcript() raised RuntimeError('transcript broke'))"
    )
