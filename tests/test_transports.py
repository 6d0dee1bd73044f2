"""MemoryTransport and memory_transport_pair: asyncio's socket-transport semantics.

Tests marked with the ``kind`` fixture run the same scenario over a memory pair and
over a real loopback TCP connection on the default loop, and assert the same
callback sequence: where they would differ, the memory transport is wrong.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import errno
import gc
import logging
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import pytest_asyncio

from nettest._datagrams import memory_datagram_pair
from nettest._flow import FlowEvent, WriteFlow, resolve_limits
from nettest._transport_pairs import memory_stream_pair, memory_transport_pair
from nettest._transports import DEFAULT_CAPACITY, MemorySocket, MemoryTransport
from support import turns, until

# -- helpers -------------------------------------------------------------------------


class Recorder(asyncio.Protocol):
    """Records every callback."""

    def __init__(self, *, keep_open: bool = False) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.transport: Any = None
        self.keep_open = keep_open
        self.lost = asyncio.get_running_loop().create_future()
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.events.append(("made",))

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))

    def eof_received(self) -> bool:
        self.events.append(("eof",))
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", type(exc)))
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self.events.append(("pause", self.transport.get_write_buffer_size()))
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        self.events.append(("resume", self.transport.get_write_buffer_size()))
        if self.on_resume is not None:
            self.on_resume()

    @property
    def received(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


class BufferRecorder(Recorder, asyncio.BufferedProtocol):
    """Receives through get_buffer()/buffer_updated() with a buffer of `size` bytes."""

    def __init__(self, size: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.buffer = bytearray(size)

    def get_buffer(self, sizehint: int) -> bytearray:
        self.events.append(("get_buffer", sizehint))
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.events.append(("data", bytes(self.buffer[:nbytes])))


Connect = Callable[..., Any]


@pytest_asyncio.fixture(params=["memory", "tcp"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """Connect two protocols in memory or over loopback TCP; close everything after."""
    loop = asyncio.get_running_loop()
    made: list[Any] = []

    async def connect(client: Recorder, server: Recorder, **kwargs: Any) -> tuple[Any, Any]:
        c: Any
        s: Any
        if request.param == "memory":
            c, s = memory_transport_pair(client, server, **kwargs)
            await until(lambda: client.transport is not None and server.transport is not None)
        else:
            listener = await loop.create_server(lambda: server, "127.0.0.1", 0)
            port = listener.sockets[0].getsockname()[1]
            c, _ = await loop.create_connection(lambda: client, "127.0.0.1", port)
            await until(lambda: server.transport is not None)
            listener.close()
            s = server.transport
        made.extend((c, s))
        return c, s

    connect.kind = request.param  # type: ignore[attr-defined]
    yield connect
    for transport in made:
        if not transport.is_closing():
            transport.abort()
    await turns(3)


# -- connection set-up -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_transport_pair_connection_made_comes_from_the_loop() -> None:
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server)
    assert client.events == []
    assert server.events == []
    c.write(b"early")  # written before connection_made: still delivered after it
    await turns()
    assert client.events == [("made",)]
    assert server.events == [("made",), ("data", b"early")]
    c.close()
    s.close()
    await turns()


def test_memory_transport_pair_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())


@pytest.mark.asyncio
async def test_memory_transport_data_fed_before_connection_made_waits() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.feed_data(b"x")
    await turns()
    assert protocol.events == [("made",), ("data", b"x")]
    transport.close()
    await turns()


# -- writing and reading, differential --------------------------------------------------


@pytest.mark.asyncio
async def test_transport_pair_round_trip(connect: Connect) -> None:
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    c.write(b"hello ")
    c.write(bytearray(b"world"))
    c.writelines([b"!", memoryview(b"?")])
    await until(lambda: server.received == b"hello world!?")
    s.write(b"back")
    await until(lambda: client.received == b"back")


@pytest.mark.asyncio
async def test_transport_write_rejects_bad_input(connect: Connect) -> None:
    c, _ = await connect(Recorder(), Recorder())
    with pytest.raises(TypeError, match="bytes-like object, not 'str'"):
        c.write("text")
    c.write(b"")  # a no-op
    assert c.get_write_buffer_size() == 0
    c.write_eof()
    with pytest.raises(RuntimeError, match=r"Cannot call write\(\) after write_eof\(\)"):
        c.write(b"x")
    # From 3.12 the selector transport has a writelines() of its own, named in its error.
    name = "writelines" if sys.version_info >= (3, 12) else "write"
    with pytest.raises(RuntimeError, match=rf"Cannot call {name}\(\) after write_eof\(\)"):
        c.writelines([b"x"])
    assert c.can_write_eof()


@pytest.mark.asyncio
async def test_transport_write_of_a_discontiguous_memoryview_is_a_fatal_error(
    connect: Connect,
) -> None:
    # socket.send() needs a contiguous buffer: the transport fails, as on a socket.
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: contexts.append(context))
    try:
        client, server = Recorder(), Recorder()
        c, _ = await connect(client, server)
        c.write(memoryview(b"")[::2])  # empty: a no-op, as any empty write
        assert not c.is_closing()
        c.write(memoryview(b"abcd")[::2])
        assert c.is_closing()
        exc = await asyncio.wait_for(client.lost, 5)
        await until(lambda: server.lost.done())
    finally:
        loop.set_exception_handler(None)
    assert isinstance(exc, BufferError)
    assert [c["message"] for c in contexts] == ["Fatal write error on socket transport"]
    assert server.received == b""
    c.write(memoryview(b"abcd")[::2])  # after the connection is lost: dropped
    c.abort()


@pytest.mark.asyncio
async def test_transport_discontiguous_memoryview_behind_buffered_bytes(
    connect: Connect,
) -> None:
    # Behind buffered bytes, asyncio before 3.12 appends it to a bytearray, which
    # raises TypeError from write(); from 3.12 it is queued, and sending it fails.
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    s.pause_reading()
    while c.get_write_buffer_size() == 0:
        c.write(b"x" * 1_000_000)
        await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: None)
    try:
        if sys.version_info < (3, 12):
            with pytest.raises(TypeError, match="can't set bytearray slice from memoryview"):
                c.write(memoryview(b"abcd")[::2])
            assert not c.is_closing()
        else:
            c.write(memoryview(b"abcd")[::2])
            s.resume_reading()
            assert isinstance(await asyncio.wait_for(client.lost, 5), BufferError)
    finally:
        loop.set_exception_handler(None)


@pytest.mark.asyncio
@pytest.mark.parametrize("keep_open", [True, False])
async def test_transport_half_close(connect: Connect, keep_open: bool) -> None:
    client, server = Recorder(), Recorder(keep_open=keep_open)
    c, s = await connect(client, server)
    c.write(b"request")
    c.write_eof()
    await until(lambda: ("eof",) in server.events)
    assert server.events[:3] == [("made",), ("data", b"request"), ("eof",)]
    if keep_open:
        assert not s.is_closing()
        s.write(b"response")  # the other direction still works
        s.close()
        await until(lambda: client.lost.done() and server.lost.done())
        assert client.events == [
            ("made",),
            ("data", b"response"),
            ("eof",),
            ("lost", type(None)),
        ]
    else:
        assert s.is_closing()
        await until(lambda: client.lost.done() and server.lost.done())
        assert client.events == [("made",), ("eof",), ("lost", type(None))]
    assert server.events[-1] == ("lost", type(None))


@pytest.mark.asyncio
async def test_transport_close_is_idempotent_and_connection_lost_is_never_synchronous(
    connect: Connect,
) -> None:
    client, server = Recorder(), Recorder()
    c, _ = await connect(client, server)
    c.close()
    c.close()
    assert c.is_closing()
    assert not c.is_reading()
    assert client.kinds() == ["made"]
    await until(lambda: client.lost.done())
    assert client.kinds() == ["made", "lost"]
    await until(lambda: server.lost.done())
    assert server.kinds() == ["made", "eof", "lost"]


class Inspector(Recorder):
    """Records what the transport shows of its protocol and socket in connection_lost."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.during_lost = _shown(self.transport, self)
        super().connection_lost(exc)


def _shown(transport: Any, protocol: Any) -> tuple[Any, ...]:
    sock = transport.get_extra_info("socket")
    shown: list[Any] = [transport.get_protocol() is protocol]
    for name in ("getsockname", "getpeername"):
        try:
            shown.append(getattr(sock, name)() == transport.get_extra_info(name[3:]))
        except OSError as exc:
            shown.append(errno.errorcode[exc.errno or 0])
    return (*shown, transport.get_extra_info("peername") is not None)


@pytest.mark.asyncio
async def test_transport_lets_go_of_protocol_and_socket_after_connection_lost(
    connect: Connect,
) -> None:
    # In connection_lost the transport still has both; once it returns, the
    # protocol is gone (get_protocol() is None) and the socket is closed (EBADF),
    # while the extras keep the addresses read earlier.
    client, server = Inspector(), Inspector()
    c, _ = await connect(client, server)
    c.close()
    await until(lambda: client.lost.done())
    await turns()
    assert client.during_lost == (True, True, True, True)
    assert _shown(c, client) == (False, "EBADF", "EBADF", True)
    assert c.get_protocol() is None
    await until(lambda: server.lost.done())


@pytest.mark.asyncio
async def test_memory_transport_eof_comes_once_across_pause_and_resume() -> None:
    # asyncio's protocol state machine allows one eof_received; CPython's selector
    # transport repeats it here, and the memory transport keeps to the contract.
    client, server = Recorder(), Recorder(keep_open=True)
    c, s = memory_transport_pair(client, server)
    await turns()
    c.write_eof()
    await turns()
    s.pause_reading()
    s.resume_reading()
    await turns()
    assert server.kinds() == ["made", "eof"]
    assert s.is_reading()
    c.close()
    s.close()
    await turns()


@pytest.mark.asyncio
async def test_transport_close_stops_reading_at_once(connect: Connect) -> None:
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    s.write(b"late")
    c.close()
    await until(lambda: client.lost.done())
    assert client.kinds() == ["made", "lost"]


@pytest.mark.asyncio
async def test_transport_abort_discards_the_buffer_and_the_peer_sees_eof(
    connect: Connect,
) -> None:
    client, server = Recorder(), Recorder()
    kwargs = {"capacity": 1000} if connect.kind == "memory" else {}  # type: ignore[attr-defined]
    c, s = await connect(client, server, **kwargs)
    s.pause_reading()
    c.write(b"x" * 32 * 1024 * 1024)  # far beyond the send buffer (it autotunes up to 4 MiB)
    assert c.get_write_buffer_size() > 0
    c.abort()
    assert c.get_write_buffer_size() == 0
    await until(lambda: client.lost.done())
    assert client.events[-1] == ("lost", type(None))
    s.resume_reading()
    await until(lambda: server.lost.done())
    assert server.events[-2:] == [("eof",), ("lost", type(None))]
    assert 0 < len(server.received) < 32 * 1024 * 1024


@pytest.mark.asyncio
async def test_transport_closing_with_unread_data_resets_the_peer(connect: Connect) -> None:
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    s.pause_reading()
    c.write(b"never read")
    await turns(10)
    s.close()  # the kernel answers unread data with RST
    await until(lambda: client.lost.done())
    assert client.events == [("made",), ("lost", ConnectionResetError)]
    assert server.events == [("made",), ("lost", type(None))]


@pytest.mark.asyncio
async def test_transport_writes_after_connection_lost_are_dropped_and_logged(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    client = Recorder()
    c, _ = await connect(client, Recorder())
    c.abort()
    await until(lambda: client.lost.done())
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        for _ in range(4):
            c.write(b"x")
        assert not caplog.records
        c.write(b"x")
    assert [r.getMessage() for r in caplog.records] == ["socket.send() raised exception."]
    assert c.get_write_buffer_size() == 0


async def _closed_once_drained(connect: Connect) -> tuple[Any, Recorder]:
    """A client transport whose close() waited for 16 MiB to drain, and the server."""
    client, server = Recorder(), Recorder(keep_open=True)
    kwargs = {"capacity": 65536} if connect.kind == "memory" else {}  # type: ignore[attr-defined]
    c, s = await connect(client, server, **kwargs)
    s.pause_reading()
    c.write(b"x" * 16 * 1024 * 1024)
    assert c.get_write_buffer_size() > 0
    c.close()
    s.resume_reading()
    await until(lambda: client.lost.done(), timeout=20)
    return c, server


@pytest.mark.asyncio
async def test_transport_used_after_a_drained_close_fails_as_asyncios_does(
    connect: Connect,
) -> None:
    # A close() that waited for its buffer to drain ends without counting the
    # connection lost, and asyncio's transport lets go of its loop: write() and the
    # first abort() then fail on it (close(); sleep(0); abort() crashes in real code).
    c, server = await _closed_once_drained(connect)
    for _ in range(2):
        with pytest.raises(AttributeError, match="has no attribute 'call_exception_handler'"):
            c.write(b"late")
    c.write_eof()
    c.close()
    with pytest.raises(AttributeError, match="has no attribute 'call_soon'"):
        c.abort()
    c.abort()  # the loss is counted now: this does nothing, and writes are dropped
    c.write(b"later")
    await until(lambda: server.kinds()[-1] == "eof", timeout=20)
    assert len(server.received) == 16 * 1024 * 1024


@pytest.mark.asyncio
async def test_transport_writelines_after_a_drained_close_fails_as_asyncios_does(
    connect: Connect,
) -> None:
    c, _ = await _closed_once_drained(connect)
    c.writelines([])  # nothing to write: no failure
    if sys.version_info >= (3, 12):  # its own writelines() calls a released method
        with pytest.raises(TypeError, match="'NoneType' object is not callable"):
            c.writelines([b"late"])
    else:  # joins and calls write()
        with pytest.raises(AttributeError, match="has no attribute 'call_exception_handler'"):
            c.writelines([b"late"])


#: asyncio's writelines() never pauses the protocol before 3.12.9 and 3.13.2 (gh-127655).
WRITELINES_PAUSES = not any(
    first <= sys.version_info < fixed
    for first, fixed in (((3, 12), (3, 12, 9)), ((3, 13), (3, 13, 2)))
)


@pytest.mark.asyncio
async def test_transport_writelines_pauses_as_the_running_pythons_does(connect: Connect) -> None:
    client, server = Recorder(), Recorder()
    kwargs = {"capacity": 65536} if connect.kind == "memory" else {}  # type: ignore[attr-defined]
    c, s = await connect(client, server, **kwargs)
    s.pause_reading()
    c.set_write_buffer_limits(high=1000)
    for _ in range(100):  # 6.4 MiB: more than the kernel takes
        c.writelines([b"x" * 32768, b"y" * 32768])
    assert c.get_write_buffer_size() > 1000
    pauses = [event for event in client.events if event[0] == "pause"]
    assert len(pauses) == (1 if WRITELINES_PAUSES else 0)
    c.write(b"z")  # write() pauses, whatever writelines() did
    assert len([event for event in client.events if event[0] == "pause"]) == 1
    c.abort()
    s.abort()
    await until(lambda: client.lost.done() and server.lost.done())


@pytest.mark.asyncio
async def test_transport_writes_after_close_are_still_flushed(connect: Connect) -> None:
    client, server = Recorder(), Recorder()
    kwargs = {"capacity": 65536} if connect.kind == "memory" else {}  # type: ignore[attr-defined]
    c, s = await connect(client, server, **kwargs)
    s.pause_reading()
    c.write(b"x" * 32 * 1024 * 1024)  # far beyond the send buffer (it autotunes up to 4 MiB)
    assert c.get_write_buffer_size() > 0
    c.close()
    c.write(b"tail")  # close() does not stop writes while the buffer drains
    s.resume_reading()
    await until(lambda: server.lost.done(), timeout=20)
    assert server.received.endswith(b"xtail")
    assert len(server.received) == 32 * 1024 * 1024 + 4


@pytest.mark.asyncio
async def test_memory_transport_write_eof_waits_for_the_buffer_to_drain() -> None:
    client, server = Recorder(), Recorder(keep_open=True)
    c, s = memory_transport_pair(client, server, manual=True)
    await turns()
    c.write(b"abc")
    c.write_eof()
    c.write_eof()  # idempotent
    await turns()
    assert server.kinds() == ["made"]
    c.pump(2)
    await turns()
    assert server.kinds() == ["made", "data"]  # no EOF while bytes are buffered
    c.pump()
    await turns()
    assert server.events[1:] == [("data", b"ab"), ("data", b"c"), ("eof",)]
    c.close()
    s.close()
    await turns()


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["after eof", "reading paused"])
async def test_transport_write_eof_after_a_reset_raises_enotconn(
    connect: Connect, how: str
) -> None:
    # Once an RST has arrived, shutdown(SHUT_WR) fails with ENOTCONN, and asyncio's
    # write_eof() lets it out, whether or not a read has noticed the reset yet.
    client, server = Recorder(), Recorder(keep_open=True)
    c, s = await connect(client, server)
    if how == "after eof":
        c.close()  # FIN; the server stays half-open and stops reading
        await until(lambda: server.kinds() == ["made", "eof"])
        s.write(b"x")  # to a closed socket: its kernel answers RST
    else:
        c.pause_reading()
        s.pause_reading()
        s.write(b"x")
        await asyncio.sleep(0.02)
        c.close()  # with our byte unread: RST
    await asyncio.sleep(0.05)
    before = list(server.events)
    with pytest.raises(OSError, match="not connected") as excinfo:
        s.write_eof()
    assert excinfo.value.errno == errno.ENOTCONN
    s.write_eof()  # EOF counts as written: no second attempt
    with pytest.raises(RuntimeError, match=r"Cannot call write\(\) after write_eof\(\)"):
        s.write(b"y")
    assert server.events == before
    assert not s.is_closing()
    if how == "reading paused":
        s.resume_reading()  # the next read finds the reset
        await until(lambda: server.lost.done())
        assert server.events[-1] == ("lost", ConnectionResetError)


@pytest.mark.uvloop
def test_memory_stream_pair_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        (_, c_writer), (s_reader, s_writer) = memory_stream_pair(capacity=1000, limit=1000)
        c_writer.write(b"u" * 200_000)
        drain = asyncio.ensure_future(c_writer.drain())
        await asyncio.sleep(0.01)
        assert not drain.done()
        assert await s_reader.readexactly(200_000) == b"u" * 200_000
        await drain
        c_writer.close()
        await c_writer.wait_closed()
        assert await s_reader.read() == b""
        s_writer.close()
        await s_writer.wait_closed()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


# -- resets ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_transport_reset_reaches_both_ends_without_eof() -> None:
    client, server = Recorder(), Recorder()
    c, _ = memory_transport_pair(client, server)
    await turns()
    c.write(b"received")  # in the server's "kernel" already: read before the reset
    c.reset()
    await turns()
    assert client.events == [("made",), ("lost", ConnectionResetError)]
    assert server.events == [("made",), ("data", b"received"), ("lost", ConnectionResetError)]
    exc = server.lost.result()
    assert str(exc) == "[Errno 104] Connection reset by peer"


@pytest.mark.asyncio
async def test_memory_transport_reset_of_a_paused_reader_shows_at_the_next_write() -> None:
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server)
    await turns()
    s.pause_reading()
    c.reset()
    await turns()
    assert server.kinds() == ["made"]
    s.write(b"x")
    await turns()
    assert server.events[-1] == ("lost", ConnectionResetError)


@pytest.mark.asyncio
async def test_memory_transport_feed_reset_and_feed_error() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.feed_data(b"arrived")  # read first, as a kernel keeps its receive queue
    transport.feed_reset()
    transport.feed_data(b"after the reset")  # never arrives
    await turns()
    assert protocol.events == [("made",), ("data", b"arrived"), ("lost", ConnectionResetError)]

    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.feed_data(b"arrived")
    transport.feed_error(TimeoutError(110, "Connection timed out"))
    await turns()
    assert protocol.events == [("made",), ("data", b"arrived"), ("lost", TimeoutError)]


@pytest.mark.asyncio
@pytest.mark.parametrize("exc", ["boom", ValueError, None])
async def test_memory_transport_feed_error_takes_only_an_exception(exc: object) -> None:
    # Else it failed a loop turn later, in the loop's exception handler, and the
    # protocol's connection_lost() got the string.
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    with pytest.raises(TypeError, match=r"exc must be an exception instance, got "):
        transport.feed_error(exc)  # type: ignore[arg-type]
    await turns()
    assert protocol.kinds() == ["made"]
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_feed_error_that_is_not_an_oserror_is_reported() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    try:
        protocol = Recorder()
        transport = MemoryTransport(protocol)
        transport.feed_error(ValueError("boom"))
        await turns()
    finally:
        loop.set_exception_handler(None)
    assert protocol.events == [("made",), ("lost", ValueError)]
    assert [c["message"] for c in contexts] == ["Fatal read error on socket transport"]


@pytest.mark.asyncio
async def test_transport_writing_to_a_closed_peer_is_reset_with_epipe(connect: Connect) -> None:
    client, server = Recorder(keep_open=True), Recorder()
    c, s = await connect(client, server)
    s.close()
    await until(lambda: client.kinds() == ["made", "eof"])  # half-open: may still write
    c.write(b"to nobody")  # arrives at a closed socket: RST, after the FIN
    await asyncio.sleep(0.05)
    c.write(b"again")
    await until(lambda: client.lost.done())
    assert client.events[-1] == ("lost", BrokenPipeError)


@pytest.mark.asyncio
@pytest.mark.parametrize("reader_paused", [False, True])
async def test_transport_abort_with_linger_zero_resets_the_peer(
    connect: Connect, reader_paused: bool
) -> None:
    client, server = Recorder(), Recorder()
    c, s = await connect(client, server)
    s.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    if reader_paused:
        c.pause_reading()
    s.abort()
    await until(lambda: server.lost.done())
    assert server.events == [("made",), ("lost", type(None))]
    await asyncio.sleep(0.02)
    if reader_paused:
        assert client.kinds() == ["made"]  # nobody reads: the RST is not noticed yet
        c.write(b"x")  # the next send fails
    await until(lambda: client.lost.done())
    assert client.events == [("made",), ("lost", ConnectionResetError)]


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["close", "reading paused", "write_eof", "after eof", "abort"])
async def test_transport_with_buffered_bytes_sees_the_peer_reset_on_its_write_path(
    connect: Connect, how: str
) -> None:
    # The peer closes with our bytes unread: the kernel answers with RST.  The next
    # send() of the buffered bytes fails (ConnectionResetError over TCP, EPIPE after
    # the peer's FIN), which ends a pending close(), a half-close or a transport that
    # no longer reads alike; no resume_writing.
    client, server = Recorder(keep_open=True), Recorder()
    kwargs = {"capacity": 65536} if connect.kind == "memory" else {}  # type: ignore[attr-defined]
    c, s = await connect(client, server, **kwargs)
    s.pause_reading()
    before = ["made"]
    if how == "after eof":
        s.write_eof()
        await until(lambda: client.kinds() == ["made", "eof"])  # the reader stops
        before.append("eof")
    c.write(b"x" * 32 * 1024 * 1024)  # far beyond the send buffer (it autotunes up to 4 MiB)
    assert c.get_write_buffer_size() > 0
    if how == "close":
        c.close()
    elif how == "abort":
        s.close()
        c.abort()  # before the reset comes back: connection_lost(None), once
    elif how != "after eof":
        c.pause_reading()  # only a failing send can notice the reset
        if how == "write_eof":
            c.write_eof()
    if how != "abort":
        s.close()
    await until(lambda: client.lost.done())
    assert client.kinds() == [*before, "pause", "lost"]
    expected = {"abort": type(None), "after eof": BrokenPipeError}.get(how, ConnectionResetError)
    assert client.events[-1] == ("lost", expected)
    await asyncio.sleep(0.02)
    assert client.kinds() == [*before, "pause", "lost"]  # only once
    assert c.get_write_buffer_size() == 0
    assert c.is_closing()


@pytest.mark.asyncio
@pytest.mark.parametrize("manual", [False, True])
async def test_memory_transport_closing_with_a_full_buffer_ends_at_feed_reset(
    manual: bool,
) -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol, capacity=10, manual=manual)
    await turns()
    transport.write(b"y" * 100)
    transport.close()
    await turns()
    assert protocol.kinds() == ["made"]  # waiting for the peer to read
    transport.feed_reset()
    assert protocol.kinds() == ["made"]  # never synchronously
    await turns()
    assert protocol.events == [("made",), ("lost", ConnectionResetError)]
    assert transport.get_write_buffer_size() == 0


# -- the test as the peer -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_transport_take_written_drains_and_resumes_writing() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol, capacity=10)
    transport.set_write_buffer_limits(high=20, low=5)
    await turns()
    transport.write(b"a" * 40)
    assert transport.peek_written() == b"a" * 10  # what fitted in the capacity arrived
    assert transport.get_write_buffer_size() == 30
    assert protocol.events[-1] == ("pause", 30)
    assert transport.take_written() == b"a" * 10
    await turns(1)
    assert transport.get_write_buffer_size() == 20
    assert transport.take_written(4) == b"a" * 4
    await turns(3)
    assert transport.get_write_buffer_size() == 16  # 4 bytes of room: 4 more left
    assert transport.take_written() == b"a" * 10
    await turns(2)
    assert transport.get_write_buffer_size() == 6
    assert protocol.events[-1] == ("pause", 30)  # 6 > low
    assert transport.take_written() == b"a" * 10
    await turns(2)
    assert transport.get_write_buffer_size() == 0
    assert protocol.events[-1] == ("resume", 0)
    assert transport.take_written() == b"a" * 6
    assert [(e.kind, e.buffer_size) for e in transport.flow_events] == [
        ("pause", 30),
        ("resume", 0),
    ]
    transport.close()
    await turns()
    assert transport.written_eof


@pytest.mark.asyncio
async def test_memory_transport_receive_written_waits_and_times_out() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    await turns()
    asyncio.get_running_loop().call_later(0.01, transport.write, b"PONG\n")
    assert await transport.receive_written(5, timeout=2) == b"PONG\n"
    transport.write(b"PA")
    with pytest.raises(TimeoutError, match=r"expected 5 bytes .* got 2: b'PA'; its reading is on"):
        await transport.receive_written(5, timeout=0.01)
    # A protocol that paused its reading waits for input it never gets: say so.
    transport.pause_reading()
    transport.feed_data(b"PING\n")
    with pytest.raises(
        TimeoutError,
        match=r"got 2: b'PA'; its reading is paused since loop time [\d.]+: 5 bytes waiting",
    ):
        await transport.receive_written(5, timeout=0.01)
    transport.resume_reading()
    transport.write_eof()
    with pytest.raises(EOFError, match="closed its side after 2"):
        await transport.receive_written(5, timeout=1)
    transport.close()
    await turns()


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        ("1", TypeError, "timeout must be a number > 0, or None to wait for ever, got '1'"),
        (True, TypeError, "timeout must be a number > 0, or None to wait for ever, got True"),
        (-1, ValueError, "timeout must be > 0 and finite, or None to wait for ever, got -1"),
        (0, ValueError, "timeout must be > 0 and finite, or None to wait for ever, got 0"),
        (
            float("inf"),
            ValueError,
            "timeout must be > 0 and finite, or None to wait for ever, got inf",
        ),
    ],
)
@pytest.mark.asyncio
async def test_memory_transport_receive_written_checks_its_timeout_first(
    timeout: Any, error: type[Exception], message: str
) -> None:
    # As every nettest timeout, and before anything waits: no coroutine is left
    # unawaited (filterwarnings makes that RuntimeWarning an error).
    transport = MemoryTransport(Recorder())
    await turns()
    with pytest.raises(error) as raised:
        await asyncio.wait_for(transport.receive_written(3, timeout=timeout), 5)
    assert str(raised.value) == message
    transport.close()
    await turns()
    gc.collect()


@pytest.mark.asyncio
async def test_memory_transport_receive_written_waits_for_ever_with_no_timeout() -> None:
    transport = MemoryTransport(Recorder())
    await turns()
    asyncio.get_running_loop().call_later(0.01, transport.write, b"abc")
    assert await asyncio.wait_for(transport.receive_written(3, timeout=None), 5) == b"abc"
    transport.close()
    await turns()


@pytest.mark.parametrize("how", ["feed_reset", "reset", "linger_zero"])
@pytest.mark.asyncio
async def test_memory_transport_receive_written_says_the_connection_was_reset(
    how: str,
) -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    await turns()
    transport.write(b"ab")
    if how == "feed_reset":
        transport.feed_reset()  # the test, as the peer, resets
    elif how == "reset":
        transport.reset()
    else:  # the protocol's end closes with SO_LINGER (on, 0): an RST
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()
    with pytest.raises(ConnectionResetError, match=r"the connection was reset after 2: b'ab'"):
        await transport.receive_written(3, timeout=5)
    # What arrived before the reset stays readable, as from a socket: then the reset.
    assert await transport.receive_written(2, timeout=5) == b"ab"
    with pytest.raises(ConnectionResetError, match=r"reset after 0: b''"):
        await transport.receive_written(1, timeout=5)
    transport.close()
    await turns()
    assert protocol.lost.done()


@pytest.mark.asyncio
async def test_memory_transport_feed_eof_after_data() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.feed_data(b"a")
    transport.feed_data(b"b")
    transport.feed_eof()
    with pytest.raises(RuntimeError, match="after feed_eof"):
        transport.feed_data(b"c")
    with pytest.raises(TypeError):
        transport.feed_data("c")  # type: ignore[arg-type]
    await turns()
    assert protocol.events == [("made",), ("data", b"ab"), ("eof",), ("lost", type(None))]
    assert transport.written_eof  # closing sent our FIN too


@pytest.mark.asyncio
async def test_memory_transport_pair_ends_refuse_test_peer_controls() -> None:
    c, s = memory_transport_pair(Recorder(), Recorder())
    with pytest.raises(RuntimeError, match="connected to another transport"):
        c.take_written()
    with pytest.raises(RuntimeError, match="connected to another transport"):
        s.feed_data(b"x")
    c.close()
    s.close()
    await turns()


# -- pause_reading -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_transport_pause_reading_defers_delivery() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    await turns()
    transport.pause_reading()
    assert not transport.is_reading()
    transport.feed_data(b"waits")
    transport.feed_eof()
    await turns()
    assert protocol.kinds() == ["made"]
    transport.resume_reading()
    assert protocol.kinds() == ["made"]  # never inside resume_reading()
    await turns(1)
    assert protocol.events[1:] == [("data", b"waits")]
    await turns()
    assert protocol.kinds() == ["made", "data", "eof", "lost"]


@pytest.mark.asyncio
async def test_memory_transport_pause_reading_in_connection_made_is_honoured() -> None:
    class Pauser(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            transport.pause_reading()  # type: ignore[attr-defined]

    protocol = Pauser()
    transport = MemoryTransport(protocol)
    transport.feed_data(b"x")
    await turns()
    assert protocol.kinds() == ["made"]
    transport.resume_reading()
    await turns()
    assert protocol.received == b"x"
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_pair_paused_reader_fills_capacity_then_buffer_then_pauses() -> (
    None
):
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, capacity=100)
    c.set_write_buffer_limits(high=50, low=10)
    await turns()
    s.pause_reading()
    c.write(b"a" * 100)
    assert c.get_write_buffer_size() == 0  # all in flight
    c.write(b"b" * 50)
    assert c.get_write_buffer_size() == 50
    assert client.kinds() == ["made"]  # 50 is not > high
    c.write(b"c")
    assert client.events[-1] == ("pause", 51)
    c.assert_writing_paused()
    await turns()
    assert server.kinds() == ["made"]
    s.resume_reading()
    await until(lambda: len(server.received) == 151)
    assert client.events[-1] == ("resume", 0)
    assert [(e.kind, e.buffer_size, e.high, e.low) for e in c.flow_events] == [
        ("pause", 51, 50, 10),
        ("resume", 0, 50, 10),
    ]
    c.assert_writing_not_paused()
    c.assert_write_buffer_at_most(51)
    with pytest.raises(AssertionError, match=r"reached 51 bytes \(limit 50\).*pause at 51"):
        c.assert_write_buffer_at_most(50)
    # A bad limit is the test's mistake, not a protocol's assertion failure.
    with pytest.raises(ValueError, match=r"limit must be >= 0 bytes, got -1"):
        c.assert_write_buffer_at_most(-1)
    with pytest.raises(TypeError, match=r"limit must be an int >= 0 bytes, got 'x'"):
        c.assert_write_buffer_at_most("x")  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="writing is not paused"):
        c.assert_writing_paused()
    c.close()
    s.close()
    await turns()


# -- flow control ------------------------------------------------------------------------


def test__write_flow_defaults_and_validation() -> None:
    assert resolve_limits() == (65536, 16384)
    assert resolve_limits(low=100) == (400, 100)
    assert resolve_limits(high=100) == (100, 25)
    assert resolve_limits(high=0) == (0, 0)
    with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(2\) must be >= 0"):
        resolve_limits(1, 2)
    with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(-1\)"):
        resolve_limits(1, -1)


def test__write_flow_pauses_strictly_above_high_and_resumes_at_low() -> None:
    flow = WriteFlow(10, 2)
    assert not flow.grew(10, lambda: 0.0)
    assert flow.grew(11, lambda: 1.0)
    assert flow.paused
    assert not flow.grew(100, lambda: 2.0)  # no double pause
    assert not flow.shrank(3, lambda: 3.0)
    assert flow.shrank(2, lambda: 4.0)
    assert not flow.shrank(0, lambda: 5.0)  # no double resume
    assert flow.events == (
        FlowEvent("pause", 11, 10, 2, 1.0),
        FlowEvent("resume", 2, 10, 2, 4.0),
    )
    assert flow.peak == 100


@pytest.mark.asyncio
async def test_memory_transport_write_buffer_limits() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol, manual=True)
    await turns()
    assert transport.get_write_buffer_limits() == (16384, 65536)
    with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(2\)"):
        transport.set_write_buffer_limits(high=1, low=2)
    transport.set_write_buffer_limits(low=10)
    assert transport.get_write_buffer_limits() == (10, 40)
    transport.write(b"x" * 40)
    assert protocol.kinds() == ["made"]
    transport.set_write_buffer_limits(high=39)  # lowering the limits pauses
    assert protocol.events[-1] == ("pause", 40)
    transport.set_write_buffer_limits(high=1000, low=500)  # raising never resumes
    assert protocol.kinds() == ["made", "pause"]
    transport.pump(1)  # the next shrink does
    await turns(1)
    assert protocol.events[-1] == ("resume", 39)
    transport.abort()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_high_zero_pauses_on_any_buffered_byte() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol, manual=True)
    transport.set_write_buffer_limits(high=0)
    await turns()
    transport.write(b"x")
    assert protocol.events[-1] == ("pause", 1)
    transport.pump()
    await turns(1)
    assert protocol.events[-1] == ("resume", 0)
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_paused_flag_is_set_before_the_callback() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol, manual=True)
    transport.set_write_buffer_limits(high=1)
    await turns()
    seen: list[bool] = []

    def on_pause() -> None:
        seen.append(transport._protocol_paused)
        transport.write(b"more")

    protocol.on_pause = on_pause
    transport.write(b"xx")
    assert seen == [True]
    assert protocol.kinds() == ["made", "pause"]  # writing inside pause_writing: no repeat
    transport.abort()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_resume_runs_before_the_buffer_is_rechecked() -> None:
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, capacity=10)
    c.set_write_buffer_limits(high=10, low=0)
    await turns()
    s.pause_reading()
    c.write(b"a" * 21)  # 10 in flight, 11 buffered: paused
    assert client.events[-1] == ("pause", 11)
    resumed = []

    def write_more() -> None:
        resumed.append(c.get_write_buffer_size())
        if len(resumed) == 1:
            c.write(b"b")  # re-fills the buffer: the transport must keep flushing

    client.on_resume = write_more
    s.resume_reading()
    await until(lambda: len(server.received) == 22)
    assert resumed == [0]
    assert server.received == b"a" * 21 + b"b"
    c.close()
    s.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_flow_callback_errors_go_to_the_exception_handler() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    try:
        protocol = Recorder()
        transport = MemoryTransport(protocol, manual=True)
        transport.set_write_buffer_limits(high=0)
        await turns()

        def fail() -> None:
            raise ValueError("bad callback")

        protocol.on_pause = protocol.on_resume = fail
        transport.write(b"x")  # does not raise
        transport.pump()
        await turns()
        transport.close()
        await turns()
    finally:
        loop.set_exception_handler(None)
    assert [c["message"] for c in contexts] == [
        "protocol.pause_writing() failed",
        "protocol.resume_writing() failed",
    ]
    assert protocol.kinds() == ["made", "pause", "resume", "lost"]


# -- delivery: partial writes, chunks, manual pumping ------------------------------------


@pytest.mark.asyncio
async def test_memory_transport_partial_writes() -> None:
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, partial_writes=10)
    await turns()
    c.write(b"x" * 35)
    assert c.get_write_buffer_size() == 25  # the first send took 10
    sizes = []
    for _ in range(4):
        await asyncio.sleep(0)
        sizes.append(c.get_write_buffer_size())
    assert sizes == [15, 5, 0, 0]
    await turns()
    assert server.received == b"x" * 35
    c.close()
    s.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_partial_writes_callable() -> None:
    offered: list[int] = []

    def half(n: int) -> int:
        offered.append(n)
        return n // 2

    protocol = Recorder()
    transport = MemoryTransport(protocol, partial_writes=half)
    await turns()
    transport.write(b"y" * 8)
    await turns(5)
    assert offered[:4] == [8, 4, 2, 1]
    assert offered[4:] == [1, 1]  # 1 // 2 == 0 takes nothing: retried on every turn
    assert transport.get_write_buffer_size() == 1
    transport.abort()
    await turns()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([1, 2, 3], [b"a", b"bc", b"def", b"ghij"]),
        ((5,), [b"abcde", b"fghij"]),
        (lambda available: 4, [b"abcd", b"efgh", b"ij"]),
        (lambda available: 0 if available < 20 else available, [b"abcdefghij"]),
    ],
)
async def test_memory_transport_chunks(
    chunks: Sequence[int] | Callable[[int], int], expected: list[bytes]
) -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol, chunks=chunks)
    transport.feed_data(b"abcdefghij")
    await turns(3)
    transport.feed_eof()  # a policy waiting for more gets everything at EOF
    await turns(10)
    assert [e[1] for e in protocol.events if e[0] == "data"] == expected
    assert protocol.kinds()[-2:] == ["eof", "lost"]


@pytest.mark.asyncio
async def test_memory_transport_chunks_coalesce_separate_writes() -> None:
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, chunks=lambda n: 0 if n < 6 else n)
    await turns()
    c.write(b"abc")
    await turns()
    c.write(b"def")
    await turns()
    assert [e[1] for e in server.events if e[0] == "data"] == [b"abcdef"]
    c.close()
    s.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_reads_at_most_256_kib_per_turn() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.feed_data(b"z" * (600 * 1024))
    await turns(6)
    assert [len(e[1]) for e in protocol.events if e[0] == "data"] == [
        256 * 1024,
        256 * 1024,
        88 * 1024,
    ]
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_link_carry_replaced_sees_every_send() -> None:
    # Writes that fit would take the transport's shortcut past carry(); a fault
    # layer that replaces carry must see them all the same, and in order.
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, capacity=8)
    await turns()
    link = c._out
    carried: list[bytes] = []

    def carry(data: bytes) -> None:
        carried.append(data)
        link.arrive(data)

    link.carry = carry
    c.write(b"abc")  # fits: the shortcut when nothing interposes
    c.write(b"0123456789")  # 5 bytes fit, the rest is buffered
    assert carried == [b"abc", b"01234"]
    assert c.get_write_buffer_size() == 5
    await turns()
    assert carried == [b"abc", b"01234", b"56789"]
    assert server.received == b"abc0123456789"
    assert link.in_flight == 0
    c.close()
    s.close()
    await turns()


async def _scripted_exchange(interpose: bool) -> tuple[list[Any], list[Any], list[int]]:
    """Run one script of writes, reads and pauses; return what both ends saw."""
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, capacity=10)
    c.set_write_buffer_limits(high=6, low=2)
    await turns()
    if interpose:
        link = c._out
        link.carry = lambda data: link.arrive(data)  # the seam, passing everything on
    sizes: list[int] = []
    for step, size in enumerate([3, 4, 5, 1, 9, 2, 2, 7, 6, 1, 3, 8]):
        c.write(bytes([65 + step]) * size)
        sizes.append(c.get_write_buffer_size())
        if step == 4:
            s.pause_reading()
        if step == 8:
            s.resume_reading()
        if step % 3 == 2:
            await asyncio.sleep(0)
            sizes.append(c.get_write_buffer_size())
    await turns(10)
    c.close()
    s.close()
    await turns()
    flow = [(e.kind, e.buffer_size) for e in c.flow_events]
    return server.events, client.events + flow, sizes


@pytest.mark.asyncio
async def test_memory_transport_pair_shortcut_matches_the_seam() -> None:
    # The plain link's shortcut and the full path through carry() are one behaviour.
    assert await _scripted_exchange(interpose=False) == await _scripted_exchange(True)


@pytest.mark.asyncio
async def test_memory_transport_pair_manual_pump() -> None:
    client, server = Recorder(), Recorder()
    c, _ = memory_transport_pair(client, server, manual=True)
    await turns()
    c.write(b"0123456789")
    await turns()
    assert server.received == b""
    assert c.get_write_buffer_size() == 10
    assert c.pump(4) == 4
    await turns()
    assert server.received == b"0123"
    assert c.pump() == 6
    c.close()
    await turns()
    assert server.received == b"0123456789"
    assert client.kinds() == ["made", "lost"]
    assert server.kinds() == ["made", "data", "data", "eof", "lost"]
    with pytest.raises(ValueError, match="max_bytes must be >= 1, got 0"):
        c.pump(0)


@pytest.mark.asyncio
async def test_memory_transport_pump_outside_manual_mode_moves_at_once() -> None:
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, partial_writes=1)
    await turns()
    c.write(b"abcd")  # the first send takes one byte; the rest waits a turn
    assert c.get_write_buffer_size() == 3
    assert c.pump() == 1  # one send, cut short as partial_writes says
    assert c.pump(5) == 1
    assert c.get_write_buffer_size() == 1
    await turns()
    assert server.received == b"abcd"
    assert c.get_write_buffer_size() == 0
    assert c.pump() == 0
    c.close()
    s.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_made_directly_pumps_to_the_test() -> None:
    transport = MemoryTransport(Recorder(), manual=True)
    await turns()
    transport.write(b"abc")
    assert transport.take_written() == b""
    assert transport.pump(2) == 2
    assert transport.take_written() == b"ab"
    assert transport.get_write_buffer_size() == 1
    transport.close()
    await turns()
    protocol = transport.get_protocol()
    assert isinstance(protocol, Recorder)
    assert protocol.events[-1][0] != "lost"  # the byte keeps it open
    assert transport.pump() == 1
    await turns()
    assert protocol.events[-1] == ("lost", type(None))


@pytest.mark.asyncio
async def test_memory_transport_pump_respects_capacity() -> None:
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, manual=True, capacity=3)
    await turns()
    s.pause_reading()
    c.write(b"abcdef")
    assert c.pump() == 3
    assert c.pump() == 0
    s.resume_reading()
    await turns()
    assert c.pump() == 3
    await turns()
    assert server.received == b"abcdef"
    c.close()
    s.close()
    await turns()


# -- BufferedProtocol ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_transport_buffered_protocol_loops_over_a_short_buffer() -> None:
    protocol = BufferRecorder(size=4)
    transport = MemoryTransport(protocol)
    transport.feed_data(b"0123456789")
    await turns(6)
    assert [e for e in protocol.events if e[0] in ("get_buffer", "data")] == [
        ("get_buffer", -1),
        ("data", b"0123"),
        ("get_buffer", -1),
        ("data", b"4567"),
        ("get_buffer", -1),
        ("data", b"89"),
    ]
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_buffered_protocol_empty_buffer_is_fatal() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    try:
        protocol = BufferRecorder(size=0)
        transport = MemoryTransport(protocol)
        transport.feed_data(b"x")
        await turns()
    finally:
        loop.set_exception_handler(None)
    assert protocol.events[-1] == ("lost", RuntimeError)
    assert str(protocol.lost.result()) == "get_buffer() returned an empty buffer"
    assert contexts[0]["message"] == "Fatal error: protocol.get_buffer() call failed."


@pytest.mark.asyncio
async def test_memory_transport_buffered_protocol_read_only_buffer_is_fatal() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))

    class ReadOnly(BufferRecorder):
        def get_buffer(self, sizehint: int) -> bytes:  # type: ignore[override]
            return b"read only"

    try:
        protocol = ReadOnly()
        transport = MemoryTransport(protocol)
        transport.feed_data(b"x")
        await turns()
    finally:
        loop.set_exception_handler(None)
    assert protocol.events[-1] == ("lost", TypeError)
    assert contexts[0]["message"] == "Fatal read error on socket transport"


class ReadOnlyBuffer(BufferRecorder):
    def get_buffer(self, sizehint: int) -> bytes:  # type: ignore[override]
        self.events.append(("get_buffer", sizehint))
        return b"read only"


@pytest.mark.asyncio
@pytest.mark.parametrize("end", ["eof", "reset"])
@pytest.mark.parametrize(
    ("buffer", "lost", "message"),
    [
        ("usable", None, None),
        ("empty", RuntimeError, "Fatal error: protocol.get_buffer() call failed."),
        ("read-only", TypeError, "Fatal read error on socket transport"),
    ],
)
async def test_transport_buffered_protocol_gets_a_buffer_before_eof_or_a_reset(
    connect: Connect,
    end: str,
    buffer: str,
    lost: type[Exception] | None,
    message: str | None,
) -> None:
    # A socket transport calls get_buffer(-1) before every recv_into(), also the one
    # that returns 0 or fails: the buffer's own error comes first.
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    try:
        server: BufferRecorder = {
            "usable": BufferRecorder(size=100),
            "empty": BufferRecorder(size=0),
            "read-only": ReadOnlyBuffer(),
        }[buffer]
        c, _ = await connect(Recorder(), server)
        if end == "eof":
            c.write_eof()
        else:
            c.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            c.abort()
        await until(lambda: server.lost.done())  # eof_received() returns False: closed
    finally:
        loop.set_exception_handler(None)
    ending: list[tuple[Any, ...]]
    if lost is None:
        ending = (
            [("eof",), ("lost", type(None))] if end == "eof" else [("lost", ConnectionResetError)]
        )
    else:
        ending = [("lost", lost)]
    assert server.events == [("made",), ("get_buffer", -1), *ending]
    assert [c["message"] for c in contexts] == ([message] if message else [])


class UnwritableBuffer(BufferRecorder):
    """Offers a buffer recv_into() cannot fill."""

    def __init__(self, buffer: object) -> None:
        super().__init__()
        self.unwritable = buffer

    def get_buffer(self, sizehint: int) -> Any:
        self.events.append(("get_buffer", sizehint))
        return self.unwritable


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("buffer", "named"),
    [
        (b"read only", "bytes"),
        (memoryview(b"read only"), "memoryview"),
        (memoryview(bytearray(8))[::2], "memoryview"),  # writable, but not contiguous
        ([0] * 8, "list"),
        (collections.deque(b"12345678"), "collections.deque"),  # named as C names it
    ],
    ids=["bytes", "read-only-view", "strided-view", "list", "deque"],
)
async def test_transport_buffered_protocol_unwritable_buffer_is_recv_intos_error(
    connect: Connect, buffer: object, named: str
) -> None:
    # recv_into() refuses it in its own words, a fatal read error, data or no data.
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    try:
        server = UnwritableBuffer(buffer)
        c, _ = await connect(Recorder(), server)
        c.write(b"data")
        await until(lambda: server.lost.done())
    finally:
        loop.set_exception_handler(None)
    assert server.events == [("made",), ("get_buffer", -1), ("lost", TypeError)]
    assert str(server.lost.result()) == (
        f"recv_into() argument 1 must be read-write bytes-like object, not {named}"
    )
    assert [c["message"] for c in contexts] == ["Fatal read error on socket transport"]


@pytest.mark.asyncio
async def test_an_unwritable_buffer_fails_the_read_where_sockets_cannot_be_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The message comes from a probe socket's recv_into(); where making sockets is
    # refused (pytest-socket), the read still fails as it must, not the loop.
    def refused(*args: object, **kwargs: object) -> socket.socket:
        raise RuntimeError("sockets are blocked in this test")

    monkeypatch.setattr(socket, "socket", refused)  # MemoryTransport makes no real socket
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    try:
        server = UnwritableBuffer(b"read only")
        transport = MemoryTransport(server)
        transport.feed_data(b"data")
        await until(lambda: server.lost.done())
    finally:
        loop.set_exception_handler(None)
    assert str(server.lost.result()) == (
        "recv_into() argument 1 must be read-write bytes-like object, not bytes"
    )
    assert [c["message"] for c in contexts] == ["Fatal read error on socket transport"]


@pytest.mark.asyncio
async def test_memory_transport_set_protocol_switches_the_delivery_path() -> None:
    plain = Recorder()
    buffered = BufferRecorder(size=100)
    transport = MemoryTransport(plain)
    transport.feed_data(b"one")
    await turns()
    transport.set_protocol(buffered)
    assert transport.get_protocol() is buffered
    transport.feed_data(b"two")
    await turns()
    transport.set_protocol(plain)
    transport.feed_data(b"three")
    await turns()
    assert plain.received == b"onethree"
    assert buffered.events == [("get_buffer", -1), ("data", b"two")]
    transport.close()
    await turns()


# -- addresses and the socket extra ---------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_socket_is_non_blocking_as_a_transport_socket_is() -> None:
    # The same calls on asyncio's TransportSocket over a real connection, side by side.
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    real_transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
    c, s = memory_transport_pair(Recorder(), Recorder())
    try:
        for sock in (real_transport.get_extra_info("socket"), c.get_extra_info("socket")):
            assert sock.gettimeout() == 0
            sock.settimeout(0)
            sock.setblocking(False)
            with pytest.raises(ValueError, match=r"settimeout\(\): only 0 timeout is allowed"):
                sock.settimeout(1.5)
            with pytest.raises(ValueError, match=r"setblocking\(\): transport sockets cannot"):
                sock.setblocking(True)
            assert sock.get_inheritable() is False
    finally:
        real_transport.close()
        b.close()
        c.close()
        s.close()
    await asyncio.sleep(0)
    with pytest.raises(OSError, match="Bad file descriptor") as closed:
        c.get_extra_info("socket").get_inheritable()
    assert closed.value.errno == errno.EBADF


@pytest.mark.asyncio
async def test_memory_transport_pair_addresses_and_socket_agree() -> None:
    c, s = memory_transport_pair(Recorder(), Recorder())
    host, port = c.get_extra_info("sockname")
    assert host == "127.0.0.1"
    assert 49152 <= port < 65536
    assert c.get_extra_info("peername") == ("127.0.0.1", 8080)
    assert s.get_extra_info("sockname") == c.get_extra_info("peername")
    assert s.get_extra_info("peername") == c.get_extra_info("sockname")
    sock = c.get_extra_info("socket")
    assert isinstance(sock, MemorySocket)
    assert sock.getsockname() == c.get_extra_info("sockname")
    assert sock.getpeername() == c.get_extra_info("peername")
    assert sock.family == socket.AF_INET
    assert sock.type == socket.SOCK_STREAM
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1  # as asyncio sets it
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert c.get_extra_info("sslcontext") is None
    assert c.get_extra_info("missing", "default") == "default"
    assert "laddr=('127.0.0.1'" in repr(sock)
    with pytest.raises(TypeError, match="no public constructor"):
        MemorySocket()
    c2, s2 = memory_transport_pair(Recorder(), Recorder())
    assert c2.get_extra_info("sockname") != c.get_extra_info("sockname")
    for t in (c, s, c2, s2):
        t.close()
    await turns()


def _socket_option_calls(sock: Any) -> list[tuple[str, Callable[[], object]]]:
    """Calls on a socket's options, each labelled, for comparing two sockets."""

    def get(*args: Any) -> Callable[[], object]:
        return lambda: sock.getsockopt(*args)

    def put(*args: Any) -> Callable[[], object]:
        return lambda: sock.setsockopt(*args)

    def then(*calls: Callable[[], object]) -> Callable[[], object]:
        return lambda: tuple(call() for call in calls)

    sol, tcp = socket.SOL_SOCKET, socket.IPPROTO_TCP
    keepalive, linger = socket.SO_KEEPALIVE, socket.SO_LINGER
    struct_linger = struct.pack("iii", 1, 5, 7)  # one int more than the struct holds
    calls = [
        ("get SO_TYPE", get(sol, socket.SO_TYPE)),
        ("get SO_TYPE, 4", get(sol, socket.SO_TYPE, 4)),
        ("get SO_ERROR", get(sol, socket.SO_ERROR)),
        ("get IPPROTO_TCP", get(tcp, socket.TCP_NODELAY)),
        ("get IPPROTO_TCP, 4", get(tcp, socket.TCP_NODELAY, 4)),
        ("set IPPROTO_TCP", put(tcp, socket.TCP_NODELAY, 1)),
        ("get SO_LINGER unset", get(sol, linger)),
        ("set None, 4", put(sol, keepalive, None, 4)),
        ("set None, 0", put(sol, keepalive, None, 0)),
        ("set 1, 4", put(sol, keepalive, 1, 4)),
        ("set SO_LINGER int", put(sol, linger, 1)),
        ("set SO_LINGER 4 bytes", put(sol, linger, struct_linger[:4])),
        ("set SO_TYPE", put(sol, socket.SO_TYPE, 1)),
        ("set SO_ERROR", put(sol, socket.SO_ERROR, 0)),
        ("set str level", put("1", keepalive, 1)),
        ("get str level", get("1", keepalive)),
    ]
    calls += [
        (f"get {name}", get(sol, getattr(socket, name)))
        for name in ("SO_DOMAIN", "SO_PROTOCOL", "SO_ACCEPTCONN")
        if hasattr(socket, name)
    ]
    if hasattr(socket, "SO_PEERCRED"):  # reading it: see the test with connected sockets
        calls.append(("set SO_PEERCRED", put(sol, socket.SO_PEERCRED, 0)))
    if hasattr(socket, "SO_ACCEPTCONN"):
        calls.append(("set SO_ACCEPTCONN", put(sol, socket.SO_ACCEPTCONN, 1)))
    calls += [
        ("get IPV6_V6ONLY", get(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)),
        ("get level 2**40", get(2**40, keepalive)),
        ("set level 2**40", put(2**40, keepalive, 1)),
        ("get buflen 2**40", get(sol, keepalive, 2**40)),
    ]
    calls += [(f"get SO_LINGER unset, {n}", get(sol, linger, n)) for n in (2, 4, 8, 16)]
    calls += [
        (f"get SO_KEEPALIVE, {n!r}", get(sol, keepalive, n))
        for n in (0, 1, 8, 1024, 1025, -1, True, "4", None)
    ]
    good: list[object] = [1, True, b"\1\0\0\0\0\0\0\0", bytearray(4), memoryview(b"\1\0\0\0")]
    calls += [
        (
            f"set SO_KEEPALIVE {value!r}, get",
            then(put(sol, keepalive, value), get(sol, keepalive), get(sol, keepalive, 8)),
        )
        for value in good
    ]
    bad: list[object] = ["yes", 1.5, None, 2**31, -(2**31) - 1, b"\1"]
    calls += [(f"set SO_KEEPALIVE {value!r}", put(sol, keepalive, value)) for value in bad]
    calls.append(
        (
            "set SO_LINGER, get",
            then(
                put(sol, linger, struct_linger),
                get(sol, linger),
                *(get(sol, linger, n) for n in (4, 8, 16)),
            ),
        )
    )
    return calls


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as exc:  # the outcome is what is compared
        return type(exc), str(exc)


@pytest.mark.skipif(sys.platform != "linux", reason="compares with Linux's socket options")
@pytest.mark.parametrize(
    ("family", "kind"),
    [
        (socket.AF_INET, socket.SOCK_STREAM),
        (socket.AF_INET6, socket.SOCK_STREAM),
        (socket.AF_UNIX, socket.SOCK_STREAM),
        (socket.AF_INET, socket.SOCK_DGRAM),
    ],
    ids=["tcp", "tcp6", "unix", "udp"],
)
@pytest.mark.asyncio
async def test_memory_socket_options_behave_as_on_a_linux_socket(family: int, kind: int) -> None:
    # The buflen form returns bytes, SO_TYPE/SO_DOMAIN/SO_PROTOCOL describe the socket,
    # values are type-checked (TypeError) and size-checked (EINVAL) as a real socket's,
    # and a Unix socket has no options below SOL_SOCKET (EOPNOTSUPP).
    memory: Any
    if kind == socket.SOCK_STREAM:
        memory = MemoryTransport(Recorder(), family=family)
    else:
        memory, peer = memory_datagram_pair(asyncio.DatagramProtocol(), asyncio.DatagramProtocol())
        peer.close()
    with socket.socket(family, kind) as real:
        if family != socket.AF_UNIX and kind == socket.SOCK_STREAM:
            real.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
        mine = _socket_option_calls(memory.get_extra_info("socket"))
        theirs = _socket_option_calls(real)
        for (label, call), (_, real_call) in zip(mine, theirs, strict=True):
            assert (label, _outcome(call)) == (label, _outcome(real_call))
    memory.close()
    await turns()


@pytest.mark.skipif(not hasattr(socket, "SO_PEERCRED"), reason="Linux's SO_PEERCRED")
@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET])
@pytest.mark.asyncio
async def test_memory_socket_peer_credentials_are_a_connected_sockets(family: int) -> None:
    # A connected Unix socket's peer is this very process; a TCP socket has none.
    # A struct ucred read as an int, or in 8, 12 or 20 bytes (code that unpacks
    # "3i" from a 12-byte read got 4 bytes).
    client, server = memory_transport_pair(Recorder(), Recorder(), family=family)
    await turns()
    if family == socket.AF_UNIX:
        real, other = socket.socketpair()
    else:
        listener = socket.create_server(("127.0.0.1", 0))
        real = socket.create_connection(listener.getsockname())
        other, _ = listener.accept()
        listener.close()
    with real, other:
        for buflen in (0, 8, 12, 20):
            mine = client.get_extra_info("socket").getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, buflen
            )
            assert mine == real.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, buflen)
    client.close()
    server.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_socket_option_reads_as_bytes_with_a_buffer_length() -> None:
    transport = MemoryTransport(Recorder())
    sock = transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8) == bytes(8)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 4) == struct.pack("i", 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    onoff, seconds = struct.unpack("ii", sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
    assert (onoff, seconds) == (1, 0)
    with pytest.raises(TypeError, match="a bytes-like object is required, not 'str'"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, "yes")
    with pytest.raises(OSError, match="getsockopt buflen out of range"):
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 1025)
    unix = MemoryTransport(Recorder(), family=socket.AF_UNIX)
    with pytest.raises(OSError, match="Operation not supported") as excinfo:
        unix.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert excinfo.value.errno == errno.EOPNOTSUPP
    unix.close()
    transport.close()
    await turns()
    with pytest.raises(TypeError):  # the arguments are checked first, as by a socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, "yes")
    with pytest.raises(OSError, match="Bad file descriptor"):
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)


@pytest.mark.asyncio
async def test_memory_transport_addresses_are_configurable() -> None:
    c, s = memory_transport_pair(
        Recorder(),
        Recorder(),
        client_address=("::1", 50000, 0, 0),
        server_address=("::1", 443, 0, 0),
        family=socket.AF_INET6,
    )
    assert c.get_extra_info("peername") == ("::1", 443, 0, 0)
    assert s.get_extra_info("socket").getpeername() == ("::1", 50000, 0, 0)
    assert s.get_extra_info("socket").family == socket.AF_INET6
    transport = MemoryTransport(Recorder(), family=socket.AF_INET6)
    assert transport.get_extra_info("sockname")[0] == "::1"
    unix = MemoryTransport(Recorder(), family=socket.AF_UNIX)
    assert unix.get_extra_info("peername") == "/tmp/nettest-memory.sock"
    with pytest.raises(ValueError, match="family must be AF_INET, AF_INET6 or AF_UNIX"):
        MemoryTransport(Recorder(), family=12345)
    # As on a socketpair (both ends unnamed) or a TCP socket connected to itself,
    # both ends may share an address (a datagram pair's may not).
    self_a, self_b = memory_transport_pair(
        Recorder(),
        Recorder(),
        client_address=("127.0.0.1", 5000),
        server_address=("127.0.0.1", 5000),
    )
    assert self_a.get_extra_info("sockname") == self_a.get_extra_info("peername")
    for t in (c, s, transport, unix, self_a, self_b):
        t.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_pair_family_follows_the_addresses_given() -> None:
    # A path makes an AF_UNIX pair, an IPv6 host an IPv6 one; each address reads
    # back as a connected socket reports it.
    pairs = [
        memory_transport_pair(Recorder(), Recorder(), server_address="/tmp/rpc.sock"),
        memory_transport_pair(Recorder(), Recorder(), server_address=("::1", 443)),
        memory_transport_pair(Recorder(), Recorder(), server_address=("localhost", 0)),
        memory_transport_pair(Recorder(), Recorder(), server_address=("0.0.0.0", 80)),
    ]
    try:
        sockets = [client.get_extra_info("socket") for client, _ in pairs]
        assert [sock.family for sock in sockets] == [
            socket.AF_UNIX,
            socket.AF_INET6,
            socket.AF_INET,
            socket.AF_INET,
        ]
        assert sockets[0].getpeername() == "/tmp/rpc.sock"
        assert sockets[0].getsockname() == ""
        assert sockets[1].getpeername() == ("::1", 443, 0, 0)
        host, port = sockets[2].getpeername()
        assert host == "127.0.0.1"
        assert port != 0
        assert sockets[3].getpeername() == ("127.0.0.1", 80)
        assert pairs[3][1].get_extra_info("sockname") == ("127.0.0.1", 80)
        alone = MemoryTransport(Recorder(), peername=("::1", 80))
        assert alone.get_extra_info("socket").family == socket.AF_INET6
        pairs.append((alone, alone))
    finally:
        for client, server in pairs:
            client.close()
            server.close()
    await turns()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"client_address": ("127.0.0.1", 5), "server_address": "/tmp/s"},
            ValueError,
            "client_address and server_address must be of one family",
        ),
        (
            {"server_address": ("127.0.0.1", 80), "family": socket.AF_INET6},
            ValueError,
            "server_address is not an AF_INET6 address",
        ),
        (
            {"server_address": "/tmp/s", "family": socket.AF_INET},
            TypeError,
            "server_address is not an AF_INET address",
        ),
        (
            {"client_address": ("127.0.0.1", 80), "family": socket.AF_UNIX},
            TypeError,
            "client_address is not an AF_UNIX address",
        ),
        ({"server_address": 12345}, TypeError, "server_address must be a .host, port. tuple"),
        (
            {"server_address": ("127.0.0.1", 70000)},
            ValueError,
            "server_address is not an AF_INET address: port must be 0-65535",
        ),
    ],
)
@pytest.mark.asyncio
async def test_memory_transport_pair_refuses_addresses_no_socket_could_have(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        memory_transport_pair(Recorder(), Recorder(), **kwargs)
    with pytest.raises(error, match=message):
        memory_stream_pair(**kwargs)
    renamed = {
        {"client_address": "sockname", "server_address": "peername"}.get(key, key): value
        for key, value in kwargs.items()
    }
    with pytest.raises(
        error,
        match=message.replace("client_address", "sockname").replace("server_address", "peername"),
    ):
        MemoryTransport(Recorder(), **renamed)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, "capacity must be >= 1, got 0"),
        ({"capacity": -5}, "capacity must be >= 1, got -5"),
        ({"partial_writes": 0}, "partial_writes must be >= 1 byte per send, got 0"),
        ({"chunks": [3, -1]}, "chunk sizes must be >= 1, got -1"),
        ({"chunks": [0]}, "chunk sizes must be >= 1, got 0"),
    ],
)
async def test_memory_transport_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        memory_transport_pair(Recorder(), Recorder(), **kwargs)
    with pytest.raises(ValueError, match=message):
        MemoryTransport(Recorder(), **kwargs)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 1.5}, "capacity must be an int >= 1, got 1.5"),
        ({"capacity": "x"}, "capacity must be an int >= 1, got 'x'"),
        ({"capacity": True}, "capacity must be an int >= 1, got True"),
        ({"partial_writes": 1.5}, r"partial_writes must be an int >= 1 \(bytes per send\), a "),
        ({"partial_writes": 0.5}, "partial_writes must be an int >= 1 .* got 0.5"),
        ({"partial_writes": "abc"}, "partial_writes must be an int >= 1 .* got 'abc'"),
        ({"chunks": [1.5]}, "chunk sizes must be ints >= 1, got 1.5"),
        ({"chunks": [True]}, "chunk sizes must be ints >= 1, got True"),
        ({"chunks": "abc"}, "chunks must be a sequence of sizes, a function or None, got 'abc'"),
        ({"chunks": iter([1])}, "chunks must be a sequence of sizes, a function or None"),
        ({"family": True}, "family must be AF_INET, AF_INET6 or AF_UNIX, got True"),
    ],
)
async def test_memory_transport_bad_argument_types(kwargs: dict[str, Any], message: str) -> None:
    # Rejected at once, naming the argument, not at the first write or read.
    with pytest.raises(TypeError, match=message):
        memory_transport_pair(Recorder(), Recorder(), **kwargs)
    with pytest.raises(TypeError, match=message):
        MemoryTransport(Recorder(), **kwargs)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda t: t.take_written(-1), ValueError, "max_bytes must be >= 1, got -1"),
        (lambda t: t.take_written(0), ValueError, "max_bytes must be >= 1, got 0"),
        (lambda t: t.take_written(1.5), TypeError, "max_bytes must be an int >= 1, got 1.5"),
        (lambda t: t.take_written(True), TypeError, "max_bytes must be an int >= 1, got True"),
        (lambda t: t.pump(2.5), TypeError, "max_bytes must be an int >= 1, got 2.5"),
        (lambda t: t.pump(-2), ValueError, "max_bytes must be >= 1, got -2"),
    ],
)
async def test_memory_transport_counts_are_checked_before_anything_moves(
    call: Callable[[MemoryTransport], Any], error: type[Exception], message: str
) -> None:
    transport = MemoryTransport(Recorder(), capacity=10, manual=True)
    await turns()
    transport.write(b"0123456789abc")
    transport.pump(10)
    state = (transport.peek_written(), transport._out.in_flight, transport.get_write_buffer_size())
    with pytest.raises(error, match=message):
        call(transport)
    for nbytes, bad in [(-3, ValueError), (0, ValueError), (2.0, TypeError)]:
        with pytest.raises(bad, match=f"nbytes must be .*>= 1, got {nbytes}"):
            await transport.receive_written(nbytes)  # type: ignore[arg-type]
    assert (transport.peek_written(), transport._out.in_flight) == state[:2]
    assert transport.get_write_buffer_size() == state[2] == 3
    assert transport.take_written() == b"0123456789"
    transport.abort()
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_partial_writes_function_must_return_an_int() -> None:
    transport = MemoryTransport(Recorder(), partial_writes=lambda n: n / 2)  # type: ignore[arg-type, return-value]
    await turns()
    with pytest.raises(TypeError, match=r"partial_writes must return an int, got 1\.5"):
        transport.write(b"abc")
    assert transport.get_write_buffer_size() == 0
    assert transport._out.in_flight == 0
    transport.abort()
    await turns()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("size", "error", "message"),
    [
        (-1, ValueError, "chunk sizes must be >= 0, got -1"),
        (1.5, TypeError, "chunk sizes must be ints >= 0, got 1.5"),
    ],
)
async def test_memory_transport_bad_size_from_a_chunks_callable_is_fatal(
    size: Any, error: type[Exception], message: str
) -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    try:
        protocol = Recorder()
        transport = MemoryTransport(protocol, chunks=lambda n: size)
        transport.feed_data(b"x")
        await turns()
    finally:
        loop.set_exception_handler(None)
    assert protocol.events[-1] == ("lost", error)
    assert message in str(contexts[0]["exception"])


# -- resources ----------------------------------------------------------------------------------


@pytest.mark.nettest_leaks("off")  # it drops one open on purpose
@pytest.mark.asyncio
async def test_memory_transport_dropped_unclosed_warns() -> None:
    transport = MemoryTransport(Recorder())
    await turns()
    del transport
    with pytest.warns(ResourceWarning, match="unclosed transport <MemoryTransport open"):
        gc.collect()


@pytest.mark.asyncio
async def test_memory_transport_closed_is_not_warned_about() -> None:
    transport = MemoryTransport(Recorder())
    transport.close()
    await turns()
    del transport
    gc.collect()  # filterwarnings=error would fail the test on a ResourceWarning


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_memory_transport_left_open_is_reported_by_the_hygiene_gate(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        from nettest._transport_pairs import memory_transport_pair

        @pytest.mark.asyncio
        async def test_leaks():
            global kept
            kept = memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())
            await asyncio.sleep(0)

        @pytest.mark.asyncio
        async def test_clean():
            c, s = memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())
            c.close()
            s.close()
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest(f"--asyncio-mode={mode}")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*open MemoryTransport ('127.0.0.1', *) -> ('127.0.0.1', 8080)*"])


# -- loop.sendfile -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_transport_sendfile_uses_the_fallback(tmp_path: Any) -> None:
    path = tmp_path / "payload"
    path.write_bytes(b"f" * 300_000)
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server, capacity=1000)
    await turns()
    loop = asyncio.get_running_loop()
    with path.open("rb") as file:
        sent = await loop.sendfile(c, file)
    assert sent == 300_000
    await until(lambda: len(server.received) == 300_000)
    assert c.get_protocol() is client  # restored
    c.close()
    s.close()
    await turns()


def test_default_capacity_is_documented() -> None:
    assert DEFAULT_CAPACITY == 128 * 1024


# -- where and when reads run ---------------------------------------------------------

_WHO_SET = contextvars.ContextVar[str]("who_set", default="nobody")


class ContextRecorder(Recorder):
    """Records which value of _WHO_SET each data_received() call sees, then sets it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def data_received(self, data: bytes) -> None:
        self.seen.append(_WHO_SET.get())
        _WHO_SET.set("data_received")
        super().data_received(data)


@pytest.mark.parametrize("debug", [False, True], ids=["ready-queue", "debug-call_soon"])
@pytest.mark.asyncio
async def test_reads_run_in_the_transport_context_not_the_writers(debug: bool) -> None:
    # In debug mode reads go through call_soon, with the same context.
    loop = asyncio.get_running_loop()
    loop.set_debug(debug)
    try:
        client, server = Recorder(), ContextRecorder()
        c, s = memory_transport_pair(client, server)
        await turns()

        async def write(data: bytes) -> None:
            _WHO_SET.set("the writer")
            c.write(data)

        for data in (b"one", b"two"):
            await asyncio.create_task(write(data))
            await turns()
        c.close()
        s.close()

        alone = ContextRecorder()  # the test as the peer
        transport = MemoryTransport(alone)

        async def feed(data: bytes) -> None:
            _WHO_SET.set("the test")
            transport.feed_data(data)

        await turns()
        for data in (b"one", b"two"):
            await asyncio.create_task(feed(data))
            await turns()
        transport.close()
        await turns()
    finally:
        loop.set_debug(False)
    assert server.seen == alone.seen == ["nobody", "data_received"]


async def _seen_after_a_resume_in_a_task(
    pair: Callable[[ContextRecorder], Any],
) -> list[str]:
    """What data_received saw before and after a pause, resumed from a task that set _WHO_SET.

    *pair* connects a recorder and returns ``(close, write)`` for its peer.
    """
    receiver = ContextRecorder()
    close, write = await pair(receiver)
    try:
        write(b"one")
        await until(lambda: len(receiver.seen) == 1)
        assert receiver.transport is not None
        receiver.transport.pause_reading()

        async def resume() -> None:
            _WHO_SET.set("the resumer")
            receiver.transport.resume_reading()

        await asyncio.create_task(resume())
        write(b"two")
        await until(lambda: len(receiver.seen) == 2)
        write(b"three")
        await until(lambda: len(receiver.seen) == 3)
    finally:
        await close()
    return receiver.seen


async def _socket_pair(receiver: ContextRecorder) -> Any:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    ta, _ = await loop.connect_accepted_socket(Recorder, a)
    tb, _ = await loop.connect_accepted_socket(lambda: receiver, b)

    async def close() -> None:
        ta.close()
        tb.close()
        await turns()

    return close, ta.write


async def _memory_pair(receiver: ContextRecorder) -> Any:
    ta, tb = memory_transport_pair(Recorder(), receiver)
    await turns()

    async def close() -> None:
        ta.close()
        tb.close()
        await turns()

    return close, ta.write


@pytest.mark.asyncio
async def test_reads_after_resume_reading_run_in_the_resumers_context_as_a_sockets_do() -> None:
    # A selector loop adds the reader again in resume_reading(), with a handle that
    # copies the context current there: what data_received set before is gone.
    real = await _seen_after_a_resume_in_a_task(_socket_pair)
    memory = await _seen_after_a_resume_in_a_task(_memory_pair)
    assert memory == real == ["nobody", "the resumer", "data_received"]


@pytest.mark.uvloop
def test_reads_after_resume_reading_keep_the_transports_context_on_uvloop_as_its_sockets_do() -> (
    None
):
    uvloop = pytest.importorskip("uvloop")

    async def both() -> tuple[list[str], list[str]]:
        real = await _seen_after_a_resume_in_a_task(_socket_pair)
        return real, await _seen_after_a_resume_in_a_task(_memory_pair)

    loop = uvloop.new_event_loop()
    try:
        real, memory = loop.run_until_complete(both())
    finally:
        loop.close()
    assert memory == real == ["nobody", "data_received", "data_received"]


@pytest.mark.asyncio
async def test_pause_and_resume_in_one_turn_deliver_once_on_the_next() -> None:
    # The read queued before pause_reading() is cancelled; resume_reading() queues
    # a new one, for the next turn, as add_reader() would after remove_reader().
    client, server = Recorder(), Recorder()
    c, s = memory_transport_pair(client, server)
    await turns()
    for _ in range(3):
        before = len(server.events)
        c.write(b"ping")
        s.pause_reading()
        s.resume_reading()
        assert len(server.events) == before  # never inside resume_reading()
        await asyncio.sleep(0)
        assert server.events[before:] == [("data", b"ping")]
        await asyncio.sleep(0)
        assert len(server.events) == before + 1  # and only once
    c.close()
    s.close()
    await turns()


class _CountingLoop(asyncio.SelectorEventLoop):
    """A loop that changes call_soon(), as some GUI-toolkit loops do."""

    reads = 0

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:  # type: ignore[override]
        if getattr(callback, "__name__", None) == "_read_ready":
            type(self).reads += 1
        return super().call_soon(callback, *args, context=context)


def test_reads_go_through_call_soon_on_a_loop_that_changes_it() -> None:
    async def exchange() -> list[bytes]:
        client, server = Recorder(), Recorder()
        c, s = memory_transport_pair(client, server)
        await turns()
        for data in (b"one", b"two"):
            c.write(data)
            await turns()
        c.close()
        s.close()
        await turns()
        return [e[1] for e in server.events if e[0] == "data"]

    loop = _CountingLoop()
    try:
        assert loop.run_until_complete(exchange()) == [b"one", b"two"]
    finally:
        loop.close()
    assert _CountingLoop.reads >= 2  # every read was asked for through call_soon()


@pytest.mark.asyncio
async def test_memory_transport_methods_can_be_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    # The transport keeps an instance dict beside its slots, so the usual ways of
    # spying on a transport in a test still work.
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    written: list[bytes] = []
    original = transport.write

    def spy(data: bytes) -> None:
        written.append(data)
        original(data)

    monkeypatch.setattr(transport, "write", spy)
    transport.label = "patched"  # type: ignore[attr-defined]
    await turns()
    protocol.transport.write(b"hello")
    assert written == [b"hello"]
    assert transport.take_written() == b"hello"
    assert transport.label == "patched"  # type: ignore[attr-defined]
    transport.close()
    await turns()


class _DuckTypedProtocol:
    """Has a protocol's methods without subclassing one, as asyncio allows."""

    def __init__(self) -> None:
        self.received = b""

    def connection_made(self, transport: object) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass


@pytest.mark.parametrize(
    ("protocols", "name"),
    [
        ((None, "ok"), "client_protocol"),
        (("ok", asyncio.DatagramProtocol()), "server_protocol"),
        ((Recorder, "ok"), "client_protocol"),  # the class, not an instance
    ],
)
@pytest.mark.asyncio
async def test_memory_transport_pair_refuses_what_is_no_protocol_at_once(
    protocols: tuple[object, object], name: str
) -> None:
    # memory_transport_pair(None, None) used to fail later, in the loop.
    client, server = (Recorder() if p == "ok" else p for p in protocols)
    with pytest.raises(TypeError, match=f"^{name} must be a stream protocol .*, got "):
        memory_transport_pair(client, server)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^protocol must be a stream protocol"):
        MemoryTransport(None)  # type: ignore[arg-type]
    await turns()


@pytest.mark.asyncio
async def test_memory_transport_pair_takes_a_protocol_that_only_has_the_methods() -> None:
    duck = _DuckTypedProtocol()
    client, server = memory_transport_pair(Recorder(), duck)  # type: ignore[arg-type]
    await turns()
    client.write(b"quack")
    await turns()
    assert duck.received == b"quack"
    client.close()
    server.close()
    await turns()


@pytest.mark.asyncio
async def test_manual_takes_only_true_or_false() -> None:
    # manual="no" used to switch manual pumping on.
    for make in (
        lambda: memory_transport_pair(Recorder(), Recorder(), manual="no"),  # type: ignore[arg-type]
        lambda: memory_stream_pair(manual="no"),  # type: ignore[arg-type]
        lambda: MemoryTransport(Recorder(), manual=0),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError, match=r"^manual must be True or False, got "):
            make()
    await turns()
