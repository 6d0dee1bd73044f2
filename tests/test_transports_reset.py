"""Resets and closes of memory stream transports, side by side with real sockets.

Each test marked with the ``connect`` fixture runs one scenario on a memory pair
and on the real sockets of the same family, on the default loop: loopback TCP
for ``memory`` (AF_INET), a Unix socket for ``memory-unix`` (AF_UNIX), and
asserts what the real socket does.  Where the two differ, the memory pair is
wrong.

What a kernel does, which these pin:

* An RST (or an error) leaves the receive queue alone: bytes that arrived
  before it are read first, then the error (over TCP a FIN queued before the
  RST is read too, as EOF).  Bytes still in the resetting end's buffers are lost.
* A Unix socket is never reset: ``SO_LINGER`` changes nothing, and closing
  makes the peer's sends fail with ``EPIPE`` at once, while its reads end in
  ``ECONNRESET`` if data was left unread, or else in EOF.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from nettest._transport_pairs import memory_stream_pair, memory_transport_pair
from nettest._transports import MemoryTransport
from support import until

LINGER_ZERO = struct.pack("ii", 1, 0)


class Recorder(asyncio.Protocol):
    """Records every callback, joining consecutive reads."""

    def __init__(self, *, keep_open: bool = True) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.transport: Any = None
        self.keep_open = keep_open
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.events and self.events[-1][0] == "data":
            self.events[-1] = ("data", self.events[-1][1] + data)
        else:
            self.events.append(("data", data))

    def eof_received(self) -> bool:
        self.events.append(("eof",))
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", type(exc)))
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


async def settle() -> None:
    """Long enough for a loopback socket to deliver, and for any loop turn to pass."""
    await asyncio.sleep(0.05)


Connect = Callable[..., Any]


@pytest_asyncio.fixture(params=["memory", "tcp", "memory-unix", "unix"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """Connect two protocols in memory or over real sockets; abort everything after.

    ``connect.unix`` says whether the pair is AF_UNIX (memory or real).
    """
    loop = asyncio.get_running_loop()
    made: list[Any] = []
    directory = tempfile.TemporaryDirectory()

    async def connect(client: Recorder, server: Recorder) -> tuple[Any, Any]:
        c: Any
        if request.param.startswith("memory"):
            family = socket.AF_UNIX if request.param == "memory-unix" else socket.AF_INET
            c, s = memory_transport_pair(client, server, family=family)
        else:
            if request.param == "tcp":
                listener = await loop.create_server(lambda: server, "127.0.0.1", 0)
                address = listener.sockets[0].getsockname()
                c, _ = await loop.create_connection(lambda: client, *address)
            else:
                path = os.path.join(directory.name, "socket")
                listener = await loop.create_unix_server(lambda: server, path)
                c, _ = await loop.create_unix_connection(lambda: client, path)
            await until(lambda: server.transport is not None)
            listener.close()
        await until(lambda: client.transport is not None and server.transport is not None)
        s = server.transport
        made.extend((c, s))
        return c, s

    connect.unix = request.param in ("memory-unix", "unix")  # type: ignore[attr-defined]
    yield connect
    for transport in made:
        if not transport.is_closing():
            transport.abort()
    await asyncio.sleep(0.01)
    directory.cleanup()


def reset_from(transport: Any, *, unix: bool) -> None:
    """Make the kernel of `transport`'s end reset the connection.

    Over TCP, SO_LINGER (on, 0) then abort() sends RST.  A Unix socket has no RST:
    closing it with bytes unread (the callers leave some) is its nearest thing.
    """
    if not unix:
        transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO
        )
    transport.abort()


async def leave_unread(writer: Any, reader: Any) -> None:
    """Leave bytes from `writer` unread at `reader`, so that closing `reader` resets."""
    reader.pause_reading()
    writer.write(b"never read")
    await settle()


# -- a reset keeps what already arrived ----------------------------------------------------


@pytest.mark.asyncio
async def test_transport_reset_delivers_what_arrived_while_reading_was_paused(
    connect: Connect,
) -> None:
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    c.pause_reading()
    await leave_unread(c, s)
    s.write(b"response")
    await settle()  # in the client's receive queue
    reset_from(s, unix=connect.unix)  # type: ignore[attr-defined]
    await settle()
    assert client.events == []  # nobody reads: nothing noticed yet
    c.resume_reading()
    await until(lambda: client.lost.done())
    assert client.events == [("data", b"response"), ("lost", ConnectionResetError)]


@pytest.mark.asyncio
async def test_transport_reset_after_a_fin_delivers_data_then_eof_over_tcp_only(
    connect: Connect,
) -> None:
    # Over TCP the FIN queued before the RST is read as EOF, and the reset shows at the
    # next write (EPIPE, in CLOSE_WAIT); a Unix socket reports the error before EOF.
    client, server = Recorder(keep_open=True), Recorder()
    c, s = await connect(client, server)
    c.pause_reading()
    await leave_unread(c, s)
    s.write(b"response")
    s.write_eof()
    await settle()
    reset_from(s, unix=connect.unix)  # type: ignore[attr-defined]
    await settle()
    c.resume_reading()
    await settle()
    if not client.lost.done():
        c.write(b"x")
    await until(lambda: client.lost.done())
    if connect.unix:  # type: ignore[attr-defined]
        assert client.events == [("data", b"response"), ("lost", ConnectionResetError)]
    else:
        assert client.events == [("data", b"response"), ("eof",), ("lost", BrokenPipeError)]


@pytest.mark.asyncio
async def test_transport_reset_loses_what_the_resetting_end_had_not_sent(
    connect: Connect,
) -> None:
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    c.pause_reading()
    await leave_unread(c, s)
    total = 8 * 1024 * 1024  # more than any loopback kernel buffer holds
    s.write(b"r" * total)
    await settle()
    assert s.get_write_buffer_size() > 0
    reset_from(s, unix=connect.unix)  # type: ignore[attr-defined]
    await settle()
    c.resume_reading()
    await until(lambda: client.lost.done())
    assert [e[0] for e in client.events] == ["data", "lost"]
    assert 0 < len(client.events[0][1]) < total
    assert client.events[-1] == ("lost", ConnectionResetError)


@pytest.mark.asyncio
async def test_transport_reset_with_writes_pending_and_reading_paused_ends_on_the_write(
    connect: Connect,
) -> None:
    # The pending send fails first, so what arrived is never read: ECONNRESET over
    # TCP, EPIPE from a Unix socket (whose sends fail that way once the peer closed).
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    c.pause_reading()
    s.pause_reading()
    s.write(b"response")
    await settle()
    c.set_write_buffer_limits(high=2**30)
    while c.get_write_buffer_size() == 0:
        c.write(bytes(65536))
        await asyncio.sleep(0)
    reset_from(s, unix=connect.unix)  # type: ignore[attr-defined]
    await until(lambda: client.lost.done())
    expected = BrokenPipeError if connect.unix else ConnectionResetError  # type: ignore[attr-defined]
    assert client.events == [("lost", expected)]
    assert c.get_write_buffer_size() == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["reset", "feed_reset", "feed_error"])
async def test_memory_transport_reset_by_the_test_delivers_what_arrived_first(how: str) -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    await asyncio.sleep(0)
    transport.pause_reading()
    transport.feed_data(b"arrived")
    if how == "feed_error":
        transport.feed_error(TimeoutError(errno.ETIMEDOUT, "Connection timed out"))
    else:
        getattr(transport, how)()
    await settle()
    assert protocol.events == []
    transport.resume_reading()
    await until(lambda: protocol.lost.done())
    error = TimeoutError if how == "feed_error" else ConnectionResetError
    assert protocol.events == [("data", b"arrived"), ("lost", error)]


@pytest.mark.asyncio
async def test_memory_transport_reset_of_a_pair_delivers_what_each_end_received() -> None:
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, capacity=64)
    await asyncio.sleep(0)
    c.pause_reading()
    s.pause_reading()
    s.write(b"to the client")
    c.write(b"to the server".ljust(64, b"."))  # fills the capacity: received
    c.write(b"never sent")  # stays in the write buffer: lost
    c.reset()
    await settle()
    # The client's pending send fails first, so it never reads; the server reads
    # what it received, then the reset.
    assert client.events == [("lost", ConnectionResetError)]
    assert server.events == []
    s.resume_reading()
    await until(lambda: server.lost.done())
    assert server.events == [
        ("data", b"to the server".ljust(64, b".")),
        ("lost", ConnectionResetError),
    ]
    # reset() works the same on an AF_UNIX pair, although a Unix socket has no RST.
    unix_client, unix_server = Recorder(), Recorder()
    c, s = memory_transport_pair(unix_client, unix_server, family=socket.AF_UNIX)
    await asyncio.sleep(0)
    c.pause_reading()
    s.write(b"to the client")
    s.reset()
    await settle()
    c.resume_reading()
    await until(lambda: unix_client.lost.done() and unix_server.lost.done())
    assert unix_client.events == [("data", b"to the client"), ("lost", ConnectionResetError)]
    assert unix_server.events == [("lost", ConnectionResetError)]


@pytest.mark.asyncio
async def test_memory_transport_reset_ends_a_read_that_waits_for_more_bytes() -> None:
    # A chunks policy that waits for 10 bytes still gets the 3 that came before the
    # reset, as recv() returns what there is once the connection is over.
    protocol = Recorder()
    transport = MemoryTransport(protocol, chunks=lambda available: 10 if available >= 10 else 0)
    transport.feed_data(b"abc")
    await settle()
    assert protocol.events == []
    transport.feed_reset()
    await until(lambda: protocol.lost.done())
    assert protocol.events == [("data", b"abc"), ("lost", ConnectionResetError)]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_stream_reader_reads_what_arrived_then_raises_the_reset(kind: str) -> None:
    # A StreamReader whose transport was paused when the bytes came returns them,
    # then raises.  (One that had read them already raises at once: StreamReader
    # reports its exception before its buffer.)
    loop = asyncio.get_running_loop()
    if kind == "memory":
        (reader, writer), (_, peer) = memory_stream_pair()
    else:
        accepted: asyncio.Future[asyncio.StreamWriter] = loop.create_future()
        listener = await asyncio.start_server(lambda r, w: accepted.set_result(w), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*listener.sockets[0].getsockname())
        peer = await accepted
        listener.close()
    transport: Any = writer.transport
    transport.pause_reading()
    peer.write(b"response")
    await settle()
    reset_from(peer.transport, unix=False)
    await settle()
    transport.resume_reading()
    assert await reader.read(100) == b"response"
    with pytest.raises(ConnectionResetError):
        await reader.read(100)
    writer.close()
    with pytest.raises(ConnectionResetError):
        await writer.wait_closed()


# -- AF_UNIX pairs close as Unix sockets do ------------------------------------------------


@pytest.mark.asyncio
async def test_transport_abort_with_linger_zero_resets_over_tcp_only(connect: Connect) -> None:
    client, server = Recorder(keep_open=False), Recorder()
    _, s = await connect(client, server)
    s.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    s.abort()
    await until(lambda: client.lost.done())
    if connect.unix:  # type: ignore[attr-defined]
        assert client.events == [("eof",), ("lost", type(None))]  # SO_LINGER does nothing
    else:
        assert client.events == [("lost", ConnectionResetError)]


@pytest.mark.asyncio
async def test_transport_first_write_to_a_closed_peer(connect: Connect) -> None:
    # A Unix socket fails the first send at once; over TCP it is accepted, the peer's
    # kernel answers RST, and the next one fails.
    client, server = Recorder(keep_open=True), Recorder()
    c, s = await connect(client, server)
    s.close()
    await until(lambda: server.lost.done() and client.events == [("eof",)])
    await settle()
    c.write(b"to nobody")
    await settle()
    if connect.unix:  # type: ignore[attr-defined]
        assert client.events == [("eof",), ("lost", BrokenPipeError)]
    else:
        assert client.events == [("eof",)]
        c.write(b"again")
        await until(lambda: client.lost.done())
        assert client.events == [("eof",), ("lost", BrokenPipeError)]


@pytest.mark.asyncio
async def test_transport_close_still_flushing_when_the_peer_aborts(connect: Connect) -> None:
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    s.pause_reading()
    c.set_write_buffer_limits(high=2**30)
    while c.get_write_buffer_size() == 0:
        c.write(bytes(65536))
        await asyncio.sleep(0)
    c.close()
    s.abort()  # with the client's bytes unread
    await until(lambda: client.lost.done())
    expected = BrokenPipeError if connect.unix else ConnectionResetError  # type: ignore[attr-defined]
    assert client.events == [("lost", expected)]


@pytest.mark.asyncio
async def test_transport_write_eof_after_the_peer_closed_with_bytes_unread(
    connect: Connect,
) -> None:
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    c.pause_reading()
    await leave_unread(c, s)
    s.close()
    await settle()
    if connect.unix:  # type: ignore[attr-defined]
        c.write_eof()  # shutdown() of a Unix socket whose peer is gone succeeds
    else:
        with pytest.raises(OSError, match="not connected"):
            c.write_eof()
    c.resume_reading()
    await until(lambda: client.lost.done())
    assert client.events == [("lost", ConnectionResetError)]


@pytest.mark.asyncio
async def test_memory_unix_transport_closing_with_bytes_unread_resets_the_test() -> None:
    # The test reading what the protocol wrote sees what a Unix peer sees: the bytes,
    # then ECONNRESET; SO_LINGER alone gives EOF.
    for unread in (True, False):
        transport = MemoryTransport(Recorder(), family=socket.AF_UNIX)
        await asyncio.sleep(0)
        transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO
        )
        transport.write(b"ab")
        if unread:
            transport.feed_data(b"never read")
            transport.pause_reading()
        transport.close()
        await settle()
        assert await transport.receive_written(2, timeout=5) == b"ab"
        error = ConnectionResetError if unread else EOFError
        with pytest.raises(error):
            await transport.receive_written(1, timeout=5)
