"""memory_stream_pair, and TLS over memory transports with real ssl contexts."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest

from nettest._transport_pairs import memory_stream_pair, memory_transport_pair
from nettest._transports import MemoryTransport
from support import turns

# -- streams ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_stream_pair_round_trip_and_eof() -> None:
    (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    c_writer.write(b"GET / HTTP/1.0\r\n\r\n")
    c_writer.write_eof()
    assert await s_reader.readuntil(b"\r\n\r\n") == b"GET / HTTP/1.0\r\n\r\n"
    assert await s_reader.read() == b""  # EOF; the server may still answer
    s_writer.write(b"HTTP/1.0 200 OK\r\n\r\nbody")
    s_writer.close()
    assert await c_reader.read() == b"HTTP/1.0 200 OK\r\n\r\nbody"
    await s_writer.wait_closed()
    c_writer.close()
    await c_writer.wait_closed()
    host, port = c_writer.get_extra_info("peername")
    assert (host, port) == ("127.0.0.1", 8080)
    assert s_writer.get_extra_info("peername") == c_writer.get_extra_info("sockname")


async def _unix_stream_pair(
    tmp_path: Path, memory: bool
) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], ...]:
    """A memory AF_UNIX stream pair, or a real one over a Unix socket."""
    if memory:
        return memory_stream_pair(family=socket.AF_UNIX, server_address=str(tmp_path / "s"))
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    server = await asyncio.start_unix_server(on_connect, str(tmp_path / "s"))
    client = await asyncio.open_unix_connection(str(tmp_path / "s"))
    pair = (client, await accepted)
    server.close()  # its listening socket; wait_closed() (3.12+) would wait for the pair
    return pair


@pytest.mark.asyncio
@pytest.mark.parametrize("memory", [True, False], ids=["memory", "unix-socket"])
async def test_memory_stream_pair_af_unix_closes_as_a_unix_socket(
    tmp_path: Path, memory: bool
) -> None:
    (c_reader, c_writer), (_, s_writer) = await _unix_stream_pair(tmp_path, memory)
    assert c_writer.get_extra_info("peername") == str(tmp_path / "s")
    assert s_writer.get_extra_info("sockname") == str(tmp_path / "s")
    assert c_writer.get_extra_info("socket").family == socket.AF_UNIX
    s_writer.close()
    await s_writer.wait_closed()
    assert await c_reader.read() == b""
    c_writer.write(b"to nobody")  # fails at once on a Unix socket (over TCP: an RST later)
    with pytest.raises(ConnectionResetError, match="Connection lost"):
        await c_writer.drain()  # the transport is lost by the time drain() waits
    assert isinstance(c_reader.exception(), BrokenPipeError)
    c_writer.close()
    with pytest.raises(BrokenPipeError):
        await c_writer.wait_closed()


@pytest.mark.asyncio
async def test_memory_stream_pair_drain_blocks_until_the_peer_reads() -> None:
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair(capacity=1024, limit=1024)
    c_writer.write(b"x" * 100_000)
    drain = asyncio.ensure_future(c_writer.drain())
    await turns(20)
    assert not drain.done()  # nobody reads: the writer is paused
    transport = c_writer.transport
    assert isinstance(transport, MemoryTransport)
    transport.assert_writing_paused()
    data = await s_reader.readexactly(100_000)
    await asyncio.wait_for(drain, 5)
    assert data == b"x" * 100_000
    events = transport.flow_events
    assert [e.kind for e in events] == ["pause", "resume"]
    assert events[0].buffer_size > 65536 >= events[-1].buffer_size
    for writer in (c_writer, s_writer):
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_memory_stream_pair_drain_after_reset_raises() -> None:
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair()
    await turns()
    transport = c_writer.transport
    assert isinstance(transport, MemoryTransport)
    transport.reset()
    with pytest.raises(ConnectionResetError):
        await s_reader.read()
    await turns()
    with pytest.raises(ConnectionResetError):
        await c_writer.drain()
    for writer in (c_writer, s_writer):
        writer.close()
        with pytest.raises(ConnectionResetError):
            await writer.wait_closed()


@pytest.mark.asyncio
async def test_memory_stream_pair_drain_after_close_raises_connection_lost() -> None:
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair()
    await turns()
    c_writer.close()
    await c_writer.wait_closed()
    with pytest.raises(ConnectionResetError, match="Connection lost"):
        await c_writer.drain()
    assert await s_reader.read() == b""
    s_writer.close()
    await s_writer.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"limit": 0}, ValueError, "limit must be >= 1, got 0"),
        ({"limit": 1.5}, TypeError, "limit must be an int >= 1, got 1.5"),
        ({"capacity": "x"}, TypeError, "capacity must be an int >= 1, got 'x'"),
        ({"partial_writes": 1.5}, TypeError, "partial_writes must be an int >= 1"),
        ({"chunks": [0.5]}, TypeError, "chunk sizes must be ints >= 1, got 0.5"),
    ],
)
async def test_memory_stream_pair_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        memory_stream_pair(**kwargs)


@pytest.mark.asyncio
async def test_memory_stream_pair_manual_pump_with_chunks() -> None:
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair(manual=True, chunks=[1, 1])
    await turns()
    c_writer.write(b"line one\nline two\n")
    read = asyncio.ensure_future(s_reader.readline())
    await turns()
    assert not read.done()
    transport = c_writer.transport
    assert isinstance(transport, MemoryTransport)
    assert transport.pump(9) == 9
    assert await read == b"line one\n"
    transport.pump()
    assert await s_reader.readline() == b"line two\n"
    for writer in (c_writer, s_writer):
        writer.close()
        await writer.wait_closed()


async def _burst_into_a_stream_reader(
    protocol_class: type[asyncio.StreamReaderProtocol],
    reader: asyncio.StreamReader,
) -> tuple[list[bytes], MemoryTransport]:
    """Write three 16 KiB pieces in one turn to `reader`; return what feed_data() got."""
    fed: list[bytes] = []
    feed = reader.feed_data

    def record(data: bytes) -> None:
        fed.append(data)
        feed(data)

    reader.feed_data = record  # type: ignore[method-assign,assignment]
    client = Collect()
    c, s = memory_transport_pair(client, protocol_class(reader), capacity=1 << 20)
    await turns()
    pieces = [bytes([65 + i]) * 16384 for i in range(3)]
    for piece in pieces:
        c.write(piece)
    await turns(1)  # exactly one read
    assert b"".join(fed) == b"".join(pieces)
    c.close()
    return fed, s


@pytest.mark.asyncio
async def test_stream_reader_gets_one_read_of_large_writes_without_a_join() -> None:
    # A plain StreamReader cannot tell one read from its writes back to back, so
    # the transport skips copying them into one object, and the read still behaves
    # as one: all of it is delivered although the reader asks to pause after the
    # first piece (its limit is 1 KiB), as a socket delivers one recv() whole.
    reader = asyncio.StreamReader(limit=1024)
    fed, transport = await _burst_into_a_stream_reader(asyncio.StreamReaderProtocol, reader)
    assert [len(data) for data in fed] == [16384] * 3
    assert not transport.is_reading()
    assert await reader.read(1 << 20) == b"A" * 16384 + b"B" * 16384 + b"C" * 16384
    await turns()
    assert transport.is_reading()
    assert await reader.read() == b""  # the client closed: EOF
    transport.close()
    await turns()


class _DataReceivedOverridden(asyncio.StreamReaderProtocol):
    def data_received(self, data: bytes) -> None:
        super().data_received(data)


class _ReaderSubclass(asyncio.StreamReader):
    pass


@pytest.mark.parametrize(
    ("protocol_class", "reader_class"),
    [
        (_DataReceivedOverridden, asyncio.StreamReader),
        (asyncio.StreamReaderProtocol, _ReaderSubclass),
    ],
    ids=["data_received-overridden", "reader-subclass"],
)
@pytest.mark.asyncio
async def test_stream_reader_subclasses_get_one_joined_read(
    protocol_class: type[asyncio.StreamReaderProtocol],
    reader_class: type[asyncio.StreamReader],
) -> None:
    # Code that may look at each data_received() gets what recv() would return.
    reader = reader_class(limit=1024)
    fed, transport = await _burst_into_a_stream_reader(protocol_class, reader)
    assert [len(data) for data in fed] == [3 * 16384]
    assert await reader.read() == b"A" * 16384 + b"B" * 16384 + b"C" * 16384
    transport.close()
    await turns()


# -- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_contexts_factory() -> Any:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("example.test")

    def make(trust: bool = True) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server)
        client = ssl.create_default_context()
        if trust:
            ca.configure_trust(client)
        return server, client

    return make


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.transport: Any = None
        self.made = 0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


@pytest.mark.asyncio
async def test_memory_transport_start_tls_both_sides(tls_contexts_factory: Any) -> None:
    server_ctx, client_ctx = tls_contexts_factory()
    loop = asyncio.get_running_loop()
    client, server = Collect(), Collect()
    c, s = memory_transport_pair(client, server)
    await turns()
    c_tls: Any
    s_tls: Any
    c_tls, s_tls = await asyncio.wait_for(
        asyncio.gather(
            loop.start_tls(c, client, client_ctx, server_hostname="example.test"),
            loop.start_tls(s, server, server_ctx, server_side=True),
        ),
        10,
    )
    assert client.made == server.made == 1  # connection_made is not called again
    assert c_tls.get_extra_info("sslcontext") is client_ctx
    ssl_object = c_tls.get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject)
    assert ssl_object.server_hostname == "example.test"
    peercert = c_tls.get_extra_info("peercert")
    assert ("DNS", "example.test") in peercert["subjectAltName"]
    assert c_tls.get_extra_info("peername") == c.get_extra_info("peername")  # passed through
    assert not c_tls.can_write_eof()
    c_tls.write(b"secret")
    await asyncio.wait_for(_until(lambda: server.data == b"secret"), 5)
    s_tls.write(b"reply")
    await asyncio.wait_for(_until(lambda: client.data == b"reply"), 5)
    c_tls.close()
    assert await asyncio.wait_for(server.lost, 5) is None
    await asyncio.wait_for(client.lost, 5)
    s_tls.close()
    await turns()


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.001)


@pytest.mark.asyncio
async def test_memory_transport_start_tls_wrong_host_fails_and_force_closes(
    tls_contexts_factory: Any,
) -> None:
    server_ctx, client_ctx = tls_contexts_factory()
    loop = asyncio.get_running_loop()
    client, server = Collect(), Collect()
    c, s = memory_transport_pair(client, server)
    await turns()
    results = await asyncio.wait_for(
        asyncio.gather(
            loop.start_tls(c, client, client_ctx, server_hostname="other.test"),
            loop.start_tls(s, server, server_ctx, server_side=True),
            return_exceptions=True,
        ),
        10,
    )
    assert isinstance(results[0], ssl.SSLCertVerificationError)
    assert isinstance(results[1], (ssl.SSLError, ConnectionError))
    await turns()
    assert c.is_closing()  # SSLProtocol closed the memory transport
    assert s.is_closing()


@pytest.mark.asyncio
async def test_memory_transport_start_tls_untrusted_ca_fails(tls_contexts_factory: Any) -> None:
    server_ctx, client_ctx = tls_contexts_factory(trust=False)
    loop = asyncio.get_running_loop()
    client, server = Collect(), Collect()
    c, s = memory_transport_pair(client, server)
    await turns()
    results = await asyncio.wait_for(
        asyncio.gather(
            loop.start_tls(c, client, client_ctx, server_hostname="example.test"),
            loop.start_tls(s, server, server_ctx, server_side=True),
            return_exceptions=True,
        ),
        10,
    )
    assert isinstance(results[0], ssl.SSLCertVerificationError)
    assert "certificate verify failed" in str(results[0])
    await turns()
    assert c.is_closing()
    assert s.is_closing()


@pytest.mark.asyncio
async def test_memory_transport_start_tls_eof_during_handshake(tls_contexts_factory: Any) -> None:
    _, client_ctx = tls_contexts_factory()
    loop = asyncio.get_running_loop()
    client = Collect()
    transport = MemoryTransport(client)
    await turns()
    handshake = asyncio.ensure_future(
        loop.start_tls(transport, client, client_ctx, server_hostname="example.test")
    )
    hello = await transport.receive_written(1, timeout=5)
    assert hello[:1] == b"\x16"  # a TLS handshake record: the ClientHello
    transport.feed_eof()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(handshake, 5)
    await turns()
    assert transport.is_closing()


@pytest.mark.asyncio
async def test_start_tls_rejects_a_transport_without_tls_support() -> None:
    loop = asyncio.get_running_loop()

    class Plain(asyncio.Transport):
        pass

    with pytest.raises(TypeError, match="is not supported by start_tls"):
        await loop.start_tls(Plain(), asyncio.Protocol(), ssl.create_default_context())
    assert MemoryTransport._start_tls_compatible is True


@pytest.mark.asyncio
@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is new in 3.11")
async def test_memory_stream_pair_stream_writer_start_tls(tls_contexts_factory: Any) -> None:
    server_ctx, client_ctx = tls_contexts_factory()
    (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    # Straight away, before the loop has run connection_made.
    await asyncio.wait_for(
        asyncio.gather(
            c_writer.start_tls(  # type: ignore[attr-defined,unused-ignore]
                client_ctx, server_hostname="example.test"
            ),
            s_writer.start_tls(server_ctx),  # type: ignore[attr-defined,unused-ignore]
        ),
        10,
    )
    assert c_writer.get_extra_info("peercert") is not None
    assert s_writer.get_extra_info("sslcontext") is server_ctx
    assert s_writer.get_extra_info("ssl_object").server_side
    c_writer.write(b"over tls\n")
    assert await s_reader.readline() == b"over tls\n"
    s_writer.write(b"and back\n")
    assert await c_reader.readline() == b"and back\n"
    c_writer.close()
    assert await s_reader.read() == b""
    s_writer.close()
    await asyncio.wait_for(asyncio.gather(c_writer.wait_closed(), s_writer.wait_closed()), 5)


# -- the reading timeline ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_long_flow_timeline_is_cut_short_in_an_assertion_s_message() -> None:
    # A drained upload of 3 MiB pauses and resumes its writer dozens of times: the
    # message lists the first and last five, and says where the rest are.
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair()
    client = c_writer.transport
    assert isinstance(client, MemoryTransport)

    async def read_all() -> int:
        return len(await s_reader.readexactly(3 * 2**20))

    reading = asyncio.ensure_future(read_all())
    for _ in range(48):
        c_writer.write(b"x" * 2**16)
        await c_writer.drain()
    assert await reading == 3 * 2**20
    events = client.flow_events
    assert len(events) > 20
    with pytest.raises(AssertionError) as failed:
        client.assert_writing_paused()
    message = str(failed.value)
    listed = [f"{e.kind} at {e.buffer_size}" for e in events]
    assert (
        ", ".join([*listed[:5], f"... {len(events) - 10} more ...", *listed[-5:]])
        + (f" ({len(events)} in all: see flow_events)")
        in message
    )
    assert len(message) < 1000  # both timelines, the peer's reading too
    for writer in (c_writer, s_writer):
        writer.close()


@pytest.mark.asyncio
async def test_reading_events_explain_a_writer_stuck_behind_a_reader_that_stopped() -> None:
    # The server's StreamReader pauses its transport above 2 * limit; nobody reads.
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair(capacity=1024, limit=1024)
    client, server = c_writer.transport, s_writer.transport
    assert isinstance(client, MemoryTransport)
    assert isinstance(server, MemoryTransport)
    server.assert_reading_not_paused()
    assert not server.reading_events
    c_writer.write(b"x" * 100_000)
    await turns(20)
    server.assert_reading_paused()
    (pause,) = server.reading_events
    assert pause.kind == "pause"
    # It paused inside the read that took everything that had arrived; since then
    # a full link's worth arrived and waits.
    assert pause.waiting == 0
    assert pause.time == pytest.approx(asyncio.get_running_loop().time(), abs=1)
    with pytest.raises(AssertionError) as stuck:
        client.assert_writing_not_paused()
    assert (
        f"the peer's reading is paused since loop time {pause.time:.6f}: "
        "1024 bytes waiting to be read; pause/resume reading events: pause with 0 waiting"
    ) in str(stuck.value)
    with pytest.raises(AssertionError, match=r"^reading is paused since loop time [\d.]+: "):
        server.assert_reading_not_paused()

    assert await s_reader.readexactly(100_000) == b"x" * 100_000
    server.assert_reading_not_paused()
    with pytest.raises(AssertionError, match=r"^reading is on, not paused: 0 bytes waiting"):
        server.assert_reading_paused()
    events = server.reading_events
    assert [e.kind for e in events] == ["pause", "resume"] * (len(events) // 2)
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert not client.reading_events  # the client never paused its own reading
    for writer in (c_writer, s_writer):
        writer.close()
        await writer.wait_closed()
    with pytest.raises(AssertionError, match=r"reading is over \(the transport is closing\), not"):
        server.assert_reading_paused()


@pytest.mark.asyncio
async def test_reading_events_are_changes_only() -> None:
    c_transport, s_transport = memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())
    s_transport.pause_reading()
    s_transport.pause_reading()  # paused already: nothing happens
    c_transport.write(b"abc")
    await turns()
    s_transport.resume_reading()
    s_transport.resume_reading()
    assert [(e.kind, e.waiting) for e in s_transport.reading_events] == [
        ("pause", 0),
        ("resume", 3),
    ]
    s_transport.close()
    s_transport.pause_reading()  # closing: nothing happens
    assert len(s_transport.reading_events) == 2
    c_transport.close()
    await turns()
