"""FaultProxy on real loopback sockets, in front of plain asyncio upstreams."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from nettest import (
    BlackholePort,
    TCPServerFactory,
    TCPServerThreadFactory,
    UDPServer,
    UDPServerThread,
    UnixDatagramServer,
    UnixServerThreadFactory,
    _proxy_sockets,
    _settings,
    handlers,
)
from nettest._faults import (
    Bandwidth,
    Blackhole,
    CloseAfter,
    Corrupt,
    Drop,
    Duplicate,
    Fault,
    HalfClose,
    Latency,
    Refuse,
    Reorder,
    Reset,
    Slice,
    SlowClose,
    Stall,
    Trigger,
    Truncate,
    TruncateDatagram,
    Unreachable,
)
from nettest._proxy import FaultProxy, FaultProxyFactory
from nettest._proxy_cli import parse_fault
from nettest._server_base import has_ipv6_loopback

Address = tuple[str, int]


class Upstream:
    """A plain asyncio TCP server that records what it received, and may echo it."""

    def __init__(self, *, echo: bool = True, reply: bytes = b"") -> None:
        self.echo = echo
        self.reply = reply
        self.received = bytearray()
        self.chunks: list[bytes] = []
        self.eofs = 0
        self.errors: list[BaseException] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            if self.reply:
                writer.write(self.reply)
            while True:
                data = await reader.read(65536)
                if not data:
                    self.eofs += 1
                    break
                self.chunks.append(data)
                self.received += data
                if self.echo:
                    writer.write(data)
                    await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError as exc:
            self.errors.append(exc)
        finally:
            writer.close()
            # Takes the reset, if one ended it: 3.10 warns of a closed future's
            # exception never retrieved.
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @property
    def address(self) -> Address:
        assert self.server is not None
        name = self.server.sockets[0].getsockname()
        return name[0], name[1]


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=1024)
    try:
        yield server
    finally:
        server.server.close()
        for writer in server.writers:
            writer.transport.abort()
        await asyncio.sleep(0)
        await asyncio.wait_for(server.server.wait_closed(), 5)


@contextlib.asynccontextmanager
async def connect(
    address: Address,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(*address)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def read_all(reader: asyncio.StreamReader, timeout: float = 5) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


# -- TCP ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_proxy_forwards_both_ways_and_traces(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address)
    assert proxy.address[0] == "127.0.0.1"
    assert proxy.address != upstream.address
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"hello")
        writer.write_eof()
        assert await read_all(reader) == b"hello"
    assert bytes(upstream.received) == b"hello"
    [trace] = proxy.traces
    assert trace.upstream_bytes == 5
    assert trace.downstream_bytes == 5
    text = proxy.format_traces()
    assert "b'hello'" in text
    assert "faults fired: none" in text


@pytest.mark.asyncio
async def test_proxy_fixture_takes_upstream_positionally_as_fault_proxy_does(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream.address, faults=[Latency(0.01)])
    assert proxy.upstream == upstream.address
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"hi")
        writer.write_eof()
        assert await read_all(reader) == b"hi"


@pytest.mark.asyncio
async def test_proxy_accepts_a_server_object_or_host_port_text(upstream: Upstream) -> None:
    async with FaultProxy(upstream) as proxy, connect(proxy.address) as (reader, writer):
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
    host, port = upstream.address
    async with FaultProxy(f"{host}:{port}") as proxy:
        assert proxy.upstream == (host, port)
    assert proxy.closed


@pytest.mark.asyncio
async def test_proxy_latency_delays_the_reply(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address, faults=[Latency(0.2)])
    loop = asyncio.get_running_loop()
    async with connect(proxy.address) as (reader, writer):
        start = loop.time()
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        assert loop.time() - start >= 0.19
    assert proxy.traces[0].fired == ["Latency(delay=0.2)"]


@pytest.mark.asyncio
async def test_proxy_latency_after_the_client_gave_up_raises_nothing(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    # The held reply reaches a closed client, whose kernel answers RST; the EOF
    # due after it then finds the connection reset (ENOTCONN from shutdown()).
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        proxy = await fault_proxy(upstream=upstream.address, faults=[Latency(0.2)])
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"ping")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(4), 0.05)  # the client's read timeout
        writer.close()  # it gives up
        await writer.wait_closed()
        await asyncio.sleep(0.4)  # the reply and the EOF fall due
    finally:
        loop.set_exception_handler(previous)
    assert errors == []
    assert "EOF not sent: [Errno 107]" in proxy.format_traces()


@pytest.mark.asyncio
async def test_proxy_truncate_gives_eof_after_n_bytes(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address, faults=[Truncate(3)])
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"abcdef")
        assert await read_all(reader) == b"abc"


@pytest.mark.asyncio
async def test_proxy_reset_is_a_real_rst(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address, faults=[Reset(after_bytes=2)])
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"abcdef")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"ab"
        with pytest.raises(ConnectionResetError):
            await read_all(reader)
    assert "reset" in proxy.format_traces()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fault", [None, Latency(0.3), Bandwidth(200)], ids=["none", "latency", "bandwidth"]
)
async def test_proxy_passes_a_servers_reset_on_behind_the_bytes_sent_before_it(
    fault_proxy: FaultProxyFactory, tcp_server: TCPServerFactory, fault: Fault | None
) -> None:
    # A kernel lets the bytes that arrived before an RST be read, then reports the
    # reset: the RST travels behind them, through the same faults.
    server = await tcp_server(
        handlers.script(handlers.send(b"x" * 64), handlers.sleep(0.05), handlers.reset)
    )
    proxy = await fault_proxy(upstream=server, faults=[fault] if fault else [])
    loop = asyncio.get_running_loop()
    async with connect(proxy.address) as (reader, _):
        started = loop.time()
        got = b""
        try:
            while chunk := await asyncio.wait_for(reader.read(100), 5):
                got += chunk
        except ConnectionResetError:
            got += b"<reset>"
        assert got == b"x" * 64 + b"<reset>"
        if isinstance(fault, Latency):
            assert loop.time() - started >= 0.29
    assert "reset downstream: server reset" in proxy.format_traces()


class _Log(asyncio.Protocol):
    """An upstream that logs what happens to its connection."""

    def __init__(self, log: list[object]) -> None:
        self.log = log

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.log.append("made")

    def data_received(self, data: bytes) -> None:
        self.log.append(data)

    def eof_received(self) -> None:
        self.log.append("EOF")

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.append(type(exc) if exc else None)


class _SlowReader(_Log):
    """An upstream that reads nothing for 50 ms after accepting, as a relay connecting on."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        asyncio.get_running_loop().call_later(0.05, transport.resume_reading)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fault", [None, Latency(0.1), Bandwidth(100)], ids=["none", "latency", "bandwidth"]
)
async def test_proxy_passes_a_clients_reset_made_as_it_connects_upstream(
    fault_proxy: FaultProxyFactory, fault: Fault | None
) -> None:
    # The client sends and resets at once, before the proxy's upstream connection
    # is made: the bytes, and then the reset, wait for it.  (The proxy used to
    # give up the connection: the server got a clean close and none of the bytes.)
    log: list[object] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _SlowReader(log), "127.0.0.1", 0)
    try:
        address = server.sockets[0].getsockname()[:2]
        faults = [dataclasses.replace(fault, direction="upstream")] if fault else []
        proxy = await fault_proxy(upstream=address, faults=faults)
        _, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"data-before-rst")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        for _ in range(500):
            if log and log[-1] is not None and not isinstance(log[-1], (bytes, str)):
                break
            await asyncio.sleep(0.01)
        data = b"".join(item for item in log if isinstance(item, bytes))
        assert data == b"data-before-rst", proxy.format_traces()
        assert log[-1] is ConnectionResetError, proxy.format_traces()
        assert "EOF" not in log
        assert "connected upstream" in proxy.format_traces()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "client_reset", "server_sees"),
    [
        (Reset(), True, []),
        (Reset(after_bytes=0), True, []),
        (Reset(direction="both"), True, ["made", ConnectionResetError]),
        (Reset(direction="upstream"), False, ["made", ConnectionResetError]),
    ],
    ids=["downstream", "after-0-bytes", "both", "upstream"],
)
async def test_proxy_reset_as_the_connection_starts(
    fault_proxy: FaultProxyFactory, fault: Reset, client_reset: bool, server_sees: list[object]
) -> None:
    # A Reset in force from the start fires as the client connects, before the
    # proxy's own connection upstream is made.  One for the client went out only
    # with that connection's, and then never: the client's read hung.
    log: list[object] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Log(log), "127.0.0.1", 0)
    try:
        proxy = await fault_proxy(server.sockets[0].getsockname()[:2], faults=[fault])
        reader, writer = await asyncio.open_connection(*proxy.address)
        try:
            if client_reset:
                with pytest.raises(ConnectionResetError):
                    await asyncio.wait_for(reader.read(100), 5)
            for _ in range(500):
                if server_sees and log[-1:] == server_sees[-1:]:
                    break
                if not server_sees and "finished" in proxy.format_traces():
                    break
                await asyncio.sleep(0.01)
            assert log == server_sees, proxy.format_traces()
        finally:
            writer.transport.abort()
    finally:
        server.close()
        # From 3.12 it waits for the server's connections: a failure, not a hang.
        await asyncio.wait_for(server.wait_closed(), 5)


@pytest.mark.asyncio
async def test_proxy_reset_after_a_pattern(fault_proxy: FaultProxyFactory) -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response)
        with contextlib.suppress(OSError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        proxy = await fault_proxy(
            upstream=server.sockets[0].getsockname(),
            faults=[Reset(trigger=Trigger(pattern=b"\r\n\r\n"))],
        )
        async with connect(proxy.address) as (reader, _):
            headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert headers == response[: response.index(b"\r\n\r\n") + 4]
            with pytest.raises(ConnectionResetError):
                await read_all(reader)
    finally:
        server.close()


@pytest.mark.asyncio
async def test_proxy_blackhole_forwards_nothing(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address, faults=[Blackhole()])
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"ping")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)
    assert bytes(upstream.received) == b"ping"
    assert "Blackhole()" in proxy.traces[0].fired


@pytest.mark.asyncio
async def test_proxy_stall_fills_the_senders_buffers_until_removed(
    fault_proxy: FaultProxyFactory,
) -> None:
    received = bytearray()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.read())
        done.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        stall = Stall(direction="upstream")
        proxy = await fault_proxy(upstream=server.sockets[0].getsockname(), faults=[stall])
        async with connect(proxy.address) as (_, writer):
            payload = b"x" * (16 * 1024 * 1024)
            writer.write(payload)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(writer.drain(), 0.3)
            assert writer.transport.get_write_buffer_size() > 0
            assert not received
            proxy.remove(stall)
            await asyncio.wait_for(writer.drain(), 10)
            writer.write_eof()
            await asyncio.wait_for(done.wait(), 10)
        assert len(received) == len(payload)
    finally:
        server.close()


@pytest.mark.asyncio
async def test_proxy_half_close_gives_eof_but_the_client_can_still_send(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    upstream.echo = False
    proxy = await fault_proxy(upstream=upstream.address, faults=[HalfClose()])
    async with connect(proxy.address) as (reader, writer):
        assert await read_all(reader) == b""
        writer.write(b"still here")
        writer.write_eof()
        for _ in range(100):
            if upstream.eofs:
                break
            await asyncio.sleep(0.01)
    assert bytes(upstream.received) == b"still here"


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", [0.0, 0.01])
async def test_proxy_slice_fragments_what_the_server_reads(
    fault_proxy: FaultProxyFactory, upstream: Upstream, delay: float
) -> None:
    proxy = await fault_proxy(
        upstream=upstream.address, faults=[Slice(2, delay=delay, direction="upstream")]
    )
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"abcdefgh")
        assert await asyncio.wait_for(reader.readexactly(8), 5) == b"abcdefgh"
    # Each piece is read alone, however busy the machine: the next waits for it.
    assert upstream.chunks == [b"ab", b"cd", b"ef", b"gh"]


class _Reads(asyncio.Protocol):
    """Records each read, until the connection is lost."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(None)


async def _sliced_reads(server_port: int, faults: list[Fault]) -> list[bytes]:
    """Connect through a proxy with `faults` to a server that sends 20 bytes and closes."""
    loop = asyncio.get_running_loop()
    async with FaultProxy(("127.0.0.1", server_port), faults=faults) as proxy:
        transport, reads = await loop.create_connection(_Reads, *proxy.address)
        try:
            await asyncio.wait_for(reads.lost, 5)
        finally:
            transport.close()
    return reads.chunks


async def _send_twenty_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"0123456789abcdefghij")
    writer.close()


async def _slice_one_byte_per_read() -> None:
    server = await asyncio.start_server(_send_twenty_bytes, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        assert await _sliced_reads(port, [Slice(1)]) == [
            bytes([b]) for b in b"0123456789abcdefghij"
        ]
        sizes = [len(chunk) for chunk in await _sliced_reads(port, [Slice(3, jitter=2)])]
        assert sum(sizes) == 20
        assert max(sizes) <= 5


@pytest.mark.asyncio
async def test_proxy_slice_with_no_delay_gives_one_piece_per_read() -> None:
    await _slice_one_byte_per_read()


@pytest.mark.asyncio
async def test_proxy_slice_gives_a_read_through_wait_for_one_piece_each() -> None:
    # Before 3.12 wait_for() runs the read in a task of its own, which returns a
    # turn later than a read awaited directly.
    server = await asyncio.start_server(_send_twenty_bytes, "127.0.0.1", 0)
    async with server, FaultProxy(server.sockets[0].getsockname(), faults=[Slice(2)]) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        try:
            reads = [await asyncio.wait_for(reader.read(100), 5)]
            while reads[-1]:
                reads.append(await asyncio.wait_for(reader.read(100), 5))
        finally:
            writer.close()
            await writer.wait_closed()
    assert reads == [b"01", b"23", b"45", b"67", b"89", b"ab", b"cd", b"ef", b"gh", b"ij", b""]


@pytest.mark.uvloop
def test_proxy_slice_with_no_delay_gives_one_piece_per_read_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(_slice_one_byte_per_read())
    finally:
        loop.close()


async def _echo_behind_a_cap_on_a_late_loop() -> list[dict[str, object]]:
    """Echo through a Bandwidth cap while busy turns make the loop run late."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    server = await asyncio.start_server(_echo_handler, "127.0.0.1", 0)
    async with (
        server,
        FaultProxy(server.sockets[0].getsockname(), faults=[Bandwidth(20_000)]) as proxy,
    ):
        for busy_at in (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08):
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(bytes(2_000))
            loop.call_later(busy_at, time.sleep, 0.03)  # a busy turn, as under load
            assert await asyncio.wait_for(reader.readexactly(2_000), 5) == bytes(2_000)
            writer.close()
            await writer.wait_closed()
    return errors


async def _echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
    writer.close()


@pytest.mark.uvloop
def test_proxy_timers_work_on_a_late_uvloop() -> None:
    # uvloop's call_at() for a time already past gives a plain Handle, with no
    # when(): the proxy's tick raised AttributeError into the exception handler.
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(_echo_behind_a_cap_on_a_late_loop()) == []
    finally:
        loop.close()


@pytest.mark.asyncio
async def test_proxy_corrupt_flips_chosen_bytes(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address, faults=[Corrupt(positions=(1,))])
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"\x00\x00\x00")
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"\x00\xff\x00"
    assert bytes(upstream.received) == b"\x00\x00\x00"


@pytest.mark.asyncio
async def test_proxy_bandwidth_caps_the_rate(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address, faults=[Bandwidth(100_000)])
    loop = asyncio.get_running_loop()
    async with connect(proxy.address) as (reader, writer):
        start = loop.time()
        writer.write(b"x" * 30_000)
        await asyncio.wait_for(reader.readexactly(30_000), 5)
        assert loop.time() - start >= 0.28


# -- flow control: the modelled link's window ----------------------------------------------

_MIB = 1024 * 1024


async def _source(size: int) -> tuple[asyncio.Server, Address, list[int]]:
    """A server that sends `size` bytes to each client, in 256 KiB writes, then closes.

    The returned list holds how much the last client's handler has written so far.
    """
    sent = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent[0] = 0
        chunk = b"x" * (256 * 1024)
        try:
            while sent[0] < size:
                writer.write(chunk)
                await writer.drain()
                sent[0] += len(chunk)
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    return server, (host, port), sent


@pytest.mark.asyncio
async def test_proxy_latency_delays_without_capping_the_rate(
    fault_proxy: FaultProxyFactory,
) -> None:
    size = 8 * _MIB
    server, address, _ = await _source(size)
    async with server:
        proxy = await fault_proxy(upstream=address, faults=[Latency(0.2)])
        loop = asyncio.get_running_loop()
        async with connect(proxy.address) as (reader, _):
            start = loop.time()
            first = await asyncio.wait_for(reader.read(65536), 5)
            # While the first bytes crossed the modelled link, the proxy went on
            # reading from the server, as a TCP window lets a sender do; a 256 KiB
            # queue limit let it take about 256 KiB, and capped the rate at that
            # much per delay (8 MiB took 3.4 s).
            taken = proxy.traces[0].downstream_bytes
            assert taken >= 2 * _MIB, taken
            rest = await read_all(reader, 30)
            elapsed = loop.time() - start
        assert len(first) + len(rest) == size
        # About 0.2 s of delay plus two 4 MiB windows; generous for a busy machine.
        assert elapsed < 1.5, elapsed


async def _until_still(value: Callable[[], int], quiet: float = 0.5) -> int:
    """Wait until `value()` has not changed for `quiet` seconds; return it."""
    loop = asyncio.get_running_loop()
    last, since = value(), loop.time()
    deadline = since + 20
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        now = value()
        if now != last:
            last, since = now, loop.time()
        elif loop.time() - since >= quiet:
            return now
    raise AssertionError(f"still changing: {last}")


@pytest.mark.asyncio
async def test_proxy_latency_still_pushes_back_when_the_client_does_not_read(
    fault_proxy: FaultProxyFactory,
) -> None:
    from nettest._proxy_tcp import _HIGH, _WINDOW

    size = 256 * _MIB
    server, address, sent = await _source(size)
    async with server:
        proxy = await fault_proxy(upstream=address, faults=[Latency(0.05)])
        async with connect(proxy.address):  # and never read
            written = await _until_still(lambda: sent[0])
            assert written < size  # the server's writes are paused
            [conn] = proxy._connections
            held = conn.backlogs["downstream"].size
            assert conn.client.transport is not None
            buffered = conn.client.transport.get_write_buffer_size()
            # What the proxy holds is bounded by the window and the write limit.
            assert held + buffered <= _WINDOW + _HIGH + 2 * 256 * 1024, (held, buffered)
            assert conn.paused["downstream"]


@pytest.mark.asyncio
async def test_proxy_queues_a_bounded_number_of_pieces_behind_a_latency(
    fault_proxy: FaultProxyFactory,
) -> None:
    # Slice(1) behind a Latency makes one piece per byte: each counts as at least
    # _PIECE_COST against the window, so the queue holds the window's worth of
    # pieces and at most one read more (asyncio reads up to 256 KiB at a time);
    # it held the whole 4 MiB window as one-byte pieces before (over 360,000).
    from nettest._proxy_tcp import _PIECE_COST, _WINDOW

    one_read = 256 * 1024

    size = 8 * _MIB
    server, address, sent = await _source(size)
    async with server:
        proxy = await fault_proxy(upstream=address, faults=[Latency(0.2), Slice(1)])
        async with connect(proxy.address):  # and never read
            await _until_still(lambda: sent[0])
            [conn] = proxy._connections
            pieces = len(conn.queues["downstream"])
            assert pieces <= _WINDOW // _PIECE_COST + one_read, pieces
            assert conn.paused["downstream"]


@pytest.mark.asyncio
async def test_proxy_latency_and_bandwidth_keep_the_cap_busy(
    fault_proxy: FaultProxyFactory,
) -> None:
    size = 8 * _MIB
    server, address, _ = await _source(size)
    async with server:
        faults = [Latency(0.5), Bandwidth(8 * _MIB)]
        proxy = await fault_proxy(upstream=address, faults=faults)
        loop = asyncio.get_running_loop()
        async with connect(proxy.address) as (reader, _):
            start = loop.time()
            data = await read_all(reader, 30)
            elapsed = loop.time() - start
        assert len(data) == size
        # 1 s at the cap and 0.5 s of delay.  The bytes queued behind the cap come
        # in flight as time passes: unless the proxy reads again then, the cap
        # idled for most of each delay (8.9 s).
        assert elapsed < 4.5, elapsed


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "faults",
    [
        [Bandwidth(64 * 1024, direction="upstream")],
        # Bytes that wait behind the cap are not in flight on the modelled link,
        # whichever fault comes first: the proxy took 4.4 MB (67 s at the cap).
        [Latency(0.5, direction="upstream"), Bandwidth(64 * 1024, direction="upstream")],
        [Bandwidth(64 * 1024, direction="upstream"), Latency(0.5, direction="upstream")],
    ],
    ids=["bandwidth", "latency-bandwidth", "bandwidth-latency"],
)
async def test_proxy_bandwidth_still_pushes_back_at_256_kib(
    fault_proxy: FaultProxyFactory, upstream: Upstream, faults: list[Fault]
) -> None:
    from nettest._proxy_tcp import _HIGH

    proxy = await fault_proxy(upstream=upstream.address, faults=faults)
    async with connect(proxy.address) as (_, writer):
        writer.write(b"x" * (8 * _MIB))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(writer.drain(), 0.5)
        # A bandwidth cap's queue is not the modelled link's delay: the proxy took
        # no more than 256 KiB (and the read that crossed it) from the client.
        assert proxy.traces[0].upstream_bytes <= _HIGH + 256 * 1024
        writer.transport.abort()


def test__backlog_counts_the_bytes_not_in_flight() -> None:
    from nettest._proxy_tcp import _Backlog

    # Read at 1, 2 and 3 s, held by a Latency(1.0) alone: in flight until due.
    backlog = _Backlog()
    for due, size in [(2.0, 10), (3.0, 20), (4.0, 30)]:
        backlog.add(due, size)
    # Due at 2 and 3 s and still queued: held (say, for the upstream connection).
    assert (backlog.size, backlog.count_late(3.0, 1.0)) == (60, 30)
    assert backlog.count_late(3.0, 0.5) == 60  # a Latency was removed: 4.0 is late too
    assert backlog.count_late(3.0, 1.0) == 30  # and added again
    assert backlog.count_late(1.5, 3.0) == 0  # every move can be undone
    backlog.pop()
    assert (backlog.size, backlog.count_late(3.5, 1.0)) == (50, 20)
    backlog.pop()
    backlog.pop()
    assert (backlog.size, backlog.count_late(9.0, 1.0)) == (0, 0)
    backlog.add(10.0, 5)
    assert backlog.count_late(9.5, 1.0) == 0
    backlog.pop()  # from the ones in flight
    assert (backlog.size, backlog.flight) == (0, 0)


def test__backlog_counts_the_bytes_behind_a_cap_as_late() -> None:
    from nettest._proxy_tcp import _Backlog

    # Latency(0.5), then a cap: read at 0, 0.1 and 0.2 s, each 1 s at the cap.
    backlog = _Backlog()
    for due, size in [(1.5, 10), (2.5, 20), (3.5, 30)]:
        backlog.add(due, size)
    # All due later than 0.5 s from now: they wait behind the cap, not on the
    # modelled link (counting them in flight let the proxy take 4 MiB).
    assert backlog.count_late(0.3, 0.5) == 60
    assert backlog.next_in_flight(0.5) == 1.0
    assert backlog.count_late(1.0, 0.5) == 50
    assert backlog.next_in_flight(0.5) == 2.0
    assert backlog.count_late(1.0, 3.0) == 0  # a long Latency: all in flight
    backlog.add(1.0, 40)  # carried out in order: due no sooner than the one before
    assert backlog.count_late(1.0, 2.5) == 0
    assert backlog.count_late(1.0, 2.4) == 70
    for _ in range(4):
        backlog.pop()
    assert (backlog.size, backlog.count_late(1.0, 0.5)) == (0, 0)
    assert backlog.next_in_flight(0.5) is None


@pytest.mark.asyncio
async def test_proxy_close_after_and_slow_close(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address, faults=[CloseAfter(0.05)])
    async with connect(proxy.address) as (reader, _):
        assert await read_all(reader) == b""
    proxy.clear()
    proxy.add(SlowClose(0.2))
    loop = asyncio.get_running_loop()
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"bye")
        writer.write_eof()
        start = loop.time()
        assert await read_all(reader) == b"bye"
        assert loop.time() - start >= 0.19


@pytest.mark.asyncio
async def test_proxy_refuse_resets_the_chosen_connection(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(
        upstream=upstream.address, faults=[Refuse(trigger=Trigger(connection=1))]
    )
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"x")
        with pytest.raises(ConnectionResetError):
            await read_all(reader)
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"y")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"y"
    assert upstream.connections == 1
    assert "connection refused" in str(proxy.traces[0])


@pytest.mark.asyncio
async def test_proxy_down_refuses_and_up_accepts_again(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address)
    address = proxy.address
    await proxy.down()
    assert not proxy.is_up
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*address)
    await proxy.up()
    assert proxy.address == address == (proxy.host, proxy.port)
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"back")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"back"


@pytest.mark.asyncio
async def test_proxy_down_without_refusing_leaves_connects_unanswered(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address)
    address = proxy.address
    async with connect(address) as (reader, writer):  # open connections are left alone
        await proxy.down(refuse=False)
        assert not proxy.is_up
        # Refusing is a switch, and so is not refusing again after it.
        await proxy.down()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*address)
        await proxy.down(refuse=False)
        attempts = [asyncio.ensure_future(asyncio.open_connection(*address)) for _ in range(2)]
        done, _ = await asyncio.wait(attempts, timeout=0.3)
        assert not done  # neither connected nor refused: no answer at all
        with pytest.raises(TimeoutError):
            socket.create_connection(address, timeout=0.1)
        writer.write(b"still")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"still"
        await proxy.up()
        # The clients still trying connect on their next SYN, a second or more later.
        for late_reader, late_writer in await asyncio.wait_for(asyncio.gather(*attempts), 10):
            late_writer.write(b"late")
            assert await asyncio.wait_for(late_reader.readexactly(4), 5) == b"late"
            late_writer.close()
            await late_writer.wait_closed()
    assert upstream.connections == 3


@pytest.mark.asyncio
async def test_proxy_down_refuse_must_be_a_bool(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address)
    with pytest.raises(TypeError, match="refuse must be True or False"):
        await proxy.down(refuse=0)  # type: ignore[arg-type]
    assert proxy.is_up


@pytest.mark.asyncio
async def test_proxy_upstream_down_resets_the_client_and_is_recorded(
    fault_proxy: FaultProxyFactory,
) -> None:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        proxy = await fault_proxy(upstream=sock.getsockname())
        async with connect(proxy.address) as (reader, writer):
            writer.write(b"anyone?")
            with pytest.raises(ConnectionResetError):
                await read_all(reader)
    assert "ConnectionRefusedError" in str(proxy.traces[0])


@pytest.mark.asyncio
async def test_proxy_trace_says_what_it_could_not_deliver(
    fault_proxy: FaultProxyFactory, blackhole_port: BlackholePort, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The upstream never answers the SYN: the client's bytes wait for a connection
    # that times out, and the trace, which showed them let go, says they were lost.
    monkeypatch.setattr(_settings, "timeout", 0.2)
    proxy = await fault_proxy(upstream=blackhole_port.address)
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"anyone?")
        with pytest.raises(ConnectionResetError):
            await read_all(reader)
    trace = str(proxy.traces[0])
    assert "-> 7 bytes b'anyone?'" in trace
    assert "TimeoutError" in trace
    assert "-> 7 bytes not delivered: the connection ended" in trace
    assert trace.index("not delivered") < trace.index("finished")


@pytest.mark.asyncio
async def test_proxy_faults_change_mid_connection(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address)
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"1")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"1"
        blackhole = Blackhole()
        proxy.add(blackhole)
        assert proxy.faults == (blackhole,)
        writer.write(b"2")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), 0.1)
        proxy.remove(blackhole)
        writer.write(b"3")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"3"
    with pytest.raises(ValueError, match="not in force"):
        proxy.remove(blackhole)


@pytest.mark.asyncio
async def test_proxy_the_nth_connection_only(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(
        upstream=upstream.address, faults=[Truncate(0, trigger=Trigger(connection=2))]
    )
    results = []
    for _ in range(3):
        async with connect(proxy.address) as (reader, writer):
            with contextlib.suppress(OSError):  # the second one may be closed already
                writer.write(b"z")
                writer.write_eof()
            results.append(await read_all(reader))
    assert results == [b"z", b"", b"z"]


async def _corrupted_run(seed: int, upstream: Upstream) -> list[bytes]:
    outputs = []
    faults = [Corrupt(rate=0.05), Truncate(0, probability=0.3)]
    async with FaultProxy(upstream.address, faults=faults, seed=seed) as proxy:
        for _ in range(8):
            async with connect(proxy.address) as (reader, writer):
                with contextlib.suppress(OSError):  # truncated connections close at once
                    writer.write(bytes(200))
                    writer.write_eof()
                outputs.append(await read_all(reader))
    return outputs


@pytest.mark.asyncio
async def test_proxy_same_seed_same_faults(upstream: Upstream) -> None:
    first = await _corrupted_run(42, upstream)
    second = await _corrupted_run(42, upstream)
    other = await _corrupted_run(43, upstream)
    assert first == second
    assert first != other
    assert b"" in first + other  # some connections were truncated
    assert any(out and out != bytes(200) for out in first)


@pytest.mark.asyncio
async def test_proxy_rejects_bad_input(upstream: Upstream) -> None:
    with pytest.raises(ValueError, match="kind must be"):
        FaultProxy(upstream.address, kind="sctp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"does not apply to a TCP proxy \(kind='udp' makes"):
        FaultProxy(upstream.address, faults=[Drop(0.5)])
    with pytest.raises(ValueError, match="does not apply to a UDP proxy"):
        FaultProxy(upstream.address, kind="udp", faults=[Truncate(1)])
    with pytest.raises(
        ValueError, match=r"HOST:PORT, or a Unix socket path starting with / or \./ \(a TCP"
    ):
        FaultProxy("nowhere")
    with pytest.raises(ValueError, match=r"^upstream must be HOST:PORT, got 'nowhere'"):
        FaultProxy("nowhere", kind="udp")
    with pytest.raises(TypeError, match="upstream must be"):
        FaultProxy(42)
    # A negative port says the range, as one too large does.
    with pytest.raises(ValueError, match=r"^upstream: the port must be in 1\.\.65535, got -1$"):
        FaultProxy("127.0.0.1:-1")
    with pytest.raises(ValueError, match=r"^upstream must be HOST:PORT, got '127\.0\.0\.1:²'$"):
        FaultProxy("127.0.0.1:²")  # a digit to str.isdigit(), not to int()
    with pytest.raises(ValueError, match=r"upstream path must not contain a null byte, got '/"):
        FaultProxy("/tmp/a\0b")
    proxy = FaultProxy(upstream.address)
    for attribute in ("address", "host", "port"):
        with pytest.raises(RuntimeError, match="not started"):
            getattr(proxy, attribute)
    async with proxy:
        with pytest.raises(ValueError, match="does not apply"):
            proxy.add(Duplicate())
        with pytest.raises(RuntimeError, match="already"):
            await proxy.start()


@pytest.mark.asyncio
async def test_proxy_many_connections_every_byte_checksummed(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address)
    size = 64 * 1024

    async def one(n: int) -> None:
        payload = hashlib.sha256(str(n).encode()).digest() * (size // 32)
        async with connect(proxy.address) as (reader, writer):
            writer.write(payload)
            writer.write_eof()
            echoed = await read_all(reader, 30)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()

    await asyncio.gather(*(one(n) for n in range(50)))
    assert len(proxy.traces) == 50


# -- UDP ------------------------------------------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        assert self.transport is not None
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


@pytest_asyncio.fixture
async def udp_echo() -> AsyncIterator[tuple[Address, _Echo]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname"), protocol
    finally:
        transport.close()
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def udp_client(address: Address) -> AsyncIterator[tuple[asyncio.DatagramTransport, _Client]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Client, remote_addr=address)
    try:
        yield transport, protocol
    finally:
        transport.close()
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_udp_proxy_forwards_datagrams(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo]
) -> None:
    address, echo = udp_echo
    proxy = await fault_proxy(upstream=address, kind="udp")
    async with udp_client(proxy.address) as (transport, client):
        transport.sendto(b"one")
        transport.sendto(b"two")
        got = [await asyncio.wait_for(client.queue.get(), 5) for _ in range(2)]
    assert got == [b"one", b"two"]
    assert echo.received == [b"one", b"two"]
    assert proxy.traces[0].kind == "udp"


@pytest.mark.asyncio
async def test_udp_proxy_drop_duplicate_truncate(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo]
) -> None:
    address, echo = udp_echo
    drop = Drop(direction="upstream", trigger=Trigger(pattern=b"drop"))
    proxy = await fault_proxy(
        upstream=address, kind="udp", faults=[Duplicate(), TruncateDatagram(3), drop]
    )
    async with udp_client(proxy.address) as (transport, client):
        transport.sendto(b"abcdef")
        got = [await asyncio.wait_for(client.queue.get(), 5) for _ in range(2)]
        assert got == [b"abc", b"abc"]
        transport.sendto(b"drop")
        transport.sendto(b"lost")
        got = [await asyncio.wait_for(client.queue.get(), 5) for _ in range(2)]
        assert got == [b"dro", b"dro"]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.queue.get(), 0.1)
    assert echo.received == [b"abcdef", b"drop"]


@pytest.mark.asyncio
async def test_udp_proxy_drops_the_datagrams_chosen_by_number(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo]
) -> None:
    address, echo = udp_echo
    proxy = await fault_proxy(
        upstream=address,
        kind="udp",
        faults=[Drop(datagrams=(2,), direction="upstream"), Drop(datagrams=(1,))],
    )
    async with udp_client(proxy.address) as (transport, client):
        for data in (b"one", b"two", b"three"):
            transport.sendto(data)
            await asyncio.sleep(0.05)
        # "one" reached the server, and its echo, the first reply, was lost.
        assert await asyncio.wait_for(client.queue.get(), 5) == b"three"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.queue.get(), 0.1)
    assert echo.received == [b"one", b"three"]


async def _recvfrom(sock: socket.socket) -> tuple[bytes, typing.Any]:
    """A datagram from a non-blocking socket, polled (sock_recvfrom is 3.11+)."""
    for _ in range(500):
        try:
            return sock.recvfrom(100)
        except BlockingIOError:
            await asyncio.sleep(0.01)
    raise TimeoutError("no datagram in 5 s")


async def _forward_empty_datagrams_both_ways() -> FaultProxy:
    # Plain sockets at both ends, which send b"" on every Python: the proxy is to
    # forward what they sent, though asyncio before 3.13 and uvloop drop sendto(b"").
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        for sock in (upstream, client):
            sock.setblocking(False)
            sock.bind(("127.0.0.1", 0))
        async with FaultProxy(upstream.getsockname(), kind="udp") as proxy:
            client.sendto(b"", proxy.address)
            client.sendto(b"up", proxy.address)
            first, flow = await _recvfrom(upstream)
            assert (first, (await _recvfrom(upstream))[0]) == (b"", b"up")
            upstream.sendto(b"", flow)
            upstream.sendto(b"down", flow)
            assert (await _recvfrom(client))[0] == b""
            assert (await _recvfrom(client))[0] == b"down"
        return proxy


@pytest.mark.asyncio
async def test_udp_proxy_forwards_empty_datagrams() -> None:
    proxy = await _forward_empty_datagrams_both_ways()
    assert "lost" not in proxy.format_traces()


@pytest.mark.uvloop
def test_udp_proxy_forwards_empty_datagrams_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(_forward_empty_datagrams_both_ways())
    finally:
        loop.close()


@pytest.mark.asyncio
async def test_a_proxy_in_front_of_a_nettest_udp_server_is_a_udp_proxy(
    fault_proxy: FaultProxyFactory,
) -> None:
    async with UDPServer(handlers.echo) as server:
        proxy = await fault_proxy(upstream=server, faults=[Duplicate()])
        assert proxy.kind == "udp"
        async with udp_client(proxy.address) as (transport, client):
            transport.sendto(b"twice")
            got = [await asyncio.wait_for(client.queue.get(), 5) for _ in range(2)]
        assert got == [b"twice", b"twice"]
        with pytest.raises(ValueError, match=r"upstream is a UDP server .*: pass kind='udp'"):
            FaultProxy(server, kind="tcp")
    with UDPServerThread(handlers.echo) as thread_server:
        assert FaultProxy(thread_server).kind == "udp"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [None, "tcp", "udp"])
async def test_a_proxy_in_front_of_a_unix_datagram_server_is_refused(kind: str | None) -> None:
    # Neither kind can forward to it: refused when made, not at the first client.
    async with UnixDatagramServer() as server:
        with pytest.raises(ValueError, match=r"upstream is a Unix datagram server \(<Unix"):
            FaultProxy(server, kind=kind)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_udp_proxy_down_gives_port_unreachable(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo]
) -> None:
    address, _ = udp_echo
    proxy = await fault_proxy(upstream=address, kind="udp")
    async with udp_client(proxy.address) as (transport, client):
        await proxy.down()
        transport.sendto(b"anyone?")
        for _ in range(100):
            if client.errors:
                break
            await asyncio.sleep(0.01)
        assert client.errors
        assert isinstance(client.errors[0], ConnectionRefusedError)
        await proxy.up()
        transport.sendto(b"back")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"back"


@pytest.mark.asyncio
async def test_udp_proxy_down_without_refusing_drops_datagrams_silently(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo]
) -> None:
    address, echo = udp_echo
    proxy = await fault_proxy(upstream=address, kind="udp")
    async with udp_client(proxy.address) as (transport, client):
        await proxy.down(refuse=False)
        transport.sendto(b"anyone?")
        await asyncio.sleep(0.2)
        assert not client.errors  # no port unreachable: nothing at all
        assert client.queue.empty()
        await proxy.up()
        transport.sendto(b"back")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"back"
    assert echo.received == [b"back"]


# -- the CLI's fault syntax -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("latency=100ms", Latency(0.1)),
        ("latency=1s,jitter=10ms,direction=both", Latency(1.0, jitter=0.01, direction="both")),
        ("bandwidth=64k", Bandwidth(65536)),
        ("slice=1,delay=5ms", Slice(1, delay=0.005)),
        # Slice's jitter counts bytes; Latency's is a duration.
        ("slice=10,jitter=2", Slice(10, jitter=2)),
        ("reorder=4,max_hold=50ms", Reorder(4, max_hold=0.05)),
        ("truncate=1k", Truncate(1024)),
        ("reset", Reset()),
        ("reset,after_seconds=2", Reset(after_seconds=2.0)),
        ("reset,after=10,pattern=\\r\\n", Reset(trigger=Trigger(after_bytes=10, pattern=b"\r\n"))),
        ("blackhole,direction=both", Blackhole(direction="both")),
        ("stall,direction=upstream", Stall(direction="upstream")),
        ("refuse,connection=1", Refuse(trigger=Trigger(connection=1))),
        ("half-close", HalfClose()),
        ("corrupt,positions=0+3", Corrupt(positions=(0, 3))),
        ("corrupt,rate=0.01,probability=0.5", Corrupt(rate=0.01, probability=0.5)),
        ("drop=0.1", Drop(0.1)),
        ("truncate_datagram=512", TruncateDatagram(512)),
        # Exponents in sizes and durations, as in rates; units in either case.
        ("bandwidth=1e-3", Bandwidth(0.001)),
        ("truncate=1.5e3", Truncate(1500)),
        ("latency=2E-1", Latency(0.2)),
        ("latency=1S,jitter=5MS", Latency(1.0, jitter=0.005)),
        ("bandwidth=1KIB", Bandwidth(1024)),
        ("truncate=2kB", Truncate(2048)),
    ],
)
def test_parse_fault(spec: str, fault: object) -> None:
    assert parse_fault(spec) == fault


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lag=1s", "unknown fault 'lag'"),
        ("latency=soon", "duration"),
        ("latency=-1s", "duration"),
        ("latency=1s,colour=red", "no field 'colour'"),
        ("latency=1s,direction=sideways", "direction"),
        ("latency=1s,jitter", "key=value"),
        ("slice=10,jitter=2ms", "size such as 512"),
        ("bandwidth=0", "bytes_per_second must be > 0"),
        ("truncate=1e-3", "whole number of bytes"),
        ("truncate=1e100", "whole number of bytes"),  # no int of 100 digits built
        ("bandwidth=1Mb", r"got '1Mb' \(B is bytes; b, bits, is not a unit here\)"),
    ],
)
def test_parse_fault_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(spec)


skip_windows = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.mark.parametrize(
    "fault",
    [Latency(2.0), Bandwidth(1), Stall(direction="downstream")],
    ids=["latency", "bandwidth", "stall"],  # a Stall leaves the reply unread in a socket
)
@pytest.mark.asyncio
async def test_closing_the_proxy_resets_a_client_whose_reply_it_still_held(
    upstream: Upstream, fault: Fault
) -> None:
    # A FIN would let a client that reads to EOF take the cut reply for a whole one.
    proxy = await FaultProxy(upstream.address, faults=[fault]).start()
    try:
        async with connect(proxy.address) as (reader, writer):
            writer.write(b"GET a")
            await until(lambda: upstream.received == b"GET a")  # the echo is on its way
            await asyncio.sleep(0.05)  # and has reached the proxy
            await proxy.aclose()
            with pytest.raises(ConnectionResetError):
                await read_all(reader)
    finally:
        await proxy.aclose()


@pytest.mark.asyncio
async def test_closing_the_proxy_ends_an_idle_connection_with_eof(upstream: Upstream) -> None:
    proxy = await FaultProxy(upstream.address, faults=[Latency(0.01)]).start()
    try:
        async with connect(proxy.address) as (reader, writer):
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
            await proxy.aclose()
            assert await read_all(reader) == b""
    finally:
        await proxy.aclose()


@pytest.mark.asyncio
async def test_a_second_aclose_returns_once_the_first_has_closed(upstream: Upstream) -> None:
    proxy = await FaultProxy(upstream.address).start()
    try:
        async with connect(proxy.address) as (reader, writer):
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
            first = asyncio.ensure_future(proxy.aclose())
            await asyncio.sleep(0)
            await proxy.aclose()
            # The first waits until every connection is lost; so must the second.
            assert first.done()
            await first
            assert await read_all(reader) == b""
    finally:
        await proxy.aclose()


# -- the command line --------------------------------------------------------------------

_CLI = "import sys; from nettest._proxy_cli import cli_main; sys.exit(cli_main(sys.argv[1:]))"


def _echo_through(address: str, payload: bytes) -> bytes:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(1024):
            received += chunk
        return received


@contextlib.contextmanager
def _cli_proxy(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``nettest proxy ARGS``; yield its first line and the process, killed if still up."""
    process = subprocess.Popen([sys.executable, "-c", _CLI, *args], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().decode(), process
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_cli_proxy_that_cannot_listen_says_where(capsys: pytest.CaptureFixture[str]) -> None:
    from nettest._proxy_cli import cli_main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli_main(["--upstream", "127.0.0.1:1", "--listen", f"127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert f"nettest proxy: [Errno {errno.EADDRINUSE}] --listen 127.0.0.1:{port}: " in err


def _line_of(process: subprocess.Popen[bytes], timeout: float = 10) -> str:
    """The process's next line of output, failing (not hanging) if none comes in time.

    Read on a thread: the pipe's buffered reader may hold the line already, where
    select() would not see it.  A thread still reading ends as the process is killed.
    """
    import threading

    stdout = process.stdout
    assert stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines, f"no line of output in {timeout} s"
    return lines[0].decode()


@skip_windows
def test_cli_proxy_says_when_a_connection_could_not_reach_the_upstream() -> None:
    # Else a typo in --upstream resets every client with nothing said until --trace.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connect is refused
        with _cli_proxy("--upstream", f"127.0.0.1:{port}") as (first, process):
            assert process.stdout is not None
            process.stdout.readline()  # faults and seed
            address = first.split("listening on ")[1].split(" ")[0]
            with pytest.raises(ConnectionResetError):
                _echo_through(address, b"anyone?")
            assert _line_of(process).startswith("connection #1 from 127.0.0.1:")
            line = _line_of(process)
            assert line.startswith(
                f"connection #1: upstream 127.0.0.1:{port} failed: ConnectionRefusedError("
            ), line
            assert line.endswith("; client reset\n"), line
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0


@skip_windows
def test_cli_udp_proxy_says_once_when_a_clients_upstream_refuses() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    # Nobody listens at the port now: each datagram forwarded there is refused.
    with _cli_proxy("--udp", "--upstream", f"127.0.0.1:{port}") as (first, process):
        _line_of(process)  # faults and seed
        address = first.split("listening on ")[1].split(" ")[0]
        host, _, proxy_port = address.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for _ in range(3):
                client.sendto(b"heartbeat", (host, int(proxy_port)))
                time.sleep(0.05)
        assert _line_of(process).startswith("connection #1 from 127.0.0.1:")
        line = _line_of(process)
        assert line.startswith(
            f"connection #1: upstream 127.0.0.1:{port} error: ConnectionRefusedError("
        ), line
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stdout is not None
        assert "upstream" not in process.stdout.read().decode()  # said once


@skip_windows
@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_cli_proxy_prints_an_ipv6_address_in_brackets() -> None:
    with _cli_proxy("--upstream", "[::1]:1", "--listen", "[::1]:0") as (first, process):
        assert re.match(r"nettest proxy tcp listening on \[::1\]:\d+ -> \[::1\]:1$", first), first
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


@skip_windows
@pytest.mark.parametrize("reader", ["gone", "not reading"])
def test_cli_proxy_goes_on_when_its_stdout_reader_does_not(
    tcp_server_thread: TCPServerThreadFactory, reader: str
) -> None:
    # A reader that goes away (| head -1) broke the pipe and failed every later
    # connection; one that stops reading (a test that reads the address only)
    # filled the pipe, froze the proxy, and kept it from exiting on SIGTERM.
    import signal

    server = tcp_server_thread(handlers.echo)
    process = subprocess.Popen(
        [sys.executable, "-c", _CLI, "--upstream", f"{server.address[0]}:{server.address[1]}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline().decode()
        address = first.split("listening on ")[1].split(" ")[0]
        if reader == "gone":
            process.stdout.close()
            connections = 3
        else:
            if sys.platform.startswith("linux"):  # a small pipe fills with fewer lines
                fcntl = pytest.importorskip("fcntl")
                fcntl.fcntl(process.stdout.fileno(), 1031, 4096)  # F_SETPIPE_SZ
            connections = 300 if sys.platform.startswith("linux") else 3000
        for i in range(connections):
            assert _echo_through(address, b"%d" % i) == b"%d" % i
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stderr.read() == b""
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


@skip_windows
def test_cli_proxy_forwards_to_a_unix_socket(unix_server_thread: UnixServerThreadFactory) -> None:
    server = unix_server_thread(handlers.echo)
    with _cli_proxy("--upstream", server.path) as (first, process):
        assert first.rstrip().endswith(f"-> {server.path}"), first
        address = first.split("listening on ")[1].split(" ")[0]
        assert _echo_through(address, b"to a path") == b"to a path"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert server.connections[0].received == b"to a path"


@skip_windows
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM", "SIGHUP"])
@pytest.mark.asyncio
async def test_cli_proxy_forwards_then_stops_on_signal(upstream: Upstream, signum: str) -> None:
    import signal

    host, port = upstream.address
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CLI,
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        f"{host}:{port}",
        "--fault",
        "latency=10ms",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert "listening on 127.0.0.1:" in first
        address = first.split("listening on ")[1].split(" ")[0]
        proxy_host, _, proxy_port = address.rpartition(":")
        assert "Latency(delay=0.01)" in (await process.stdout.readline()).decode()
        async with connect((proxy_host, int(proxy_port))) as (reader, writer):
            writer.write(b"via cli")
            assert await asyncio.wait_for(reader.readexactly(7), 10) == b"via cli"
            line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
            assert line.startswith("connection #1 from 127.0.0.1:")
            process.send_signal(getattr(signal, signum))
            # The proxy closes its connections: the client sees the end of the stream.
            assert await read_all(reader, 10) == b""
        assert await asyncio.wait_for(process.wait(), 30) == 0
        rest = (await process.stdout.read()).decode()
        assert "stopping" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_cli_help_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from nettest._proxy_cli import cli_main

    with pytest.raises(SystemExit) as info:
        cli_main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nettest proxy")
    assert "--fault SPEC" in out
    # Traces print as the proxy stops (proxy-cli.rst), not as each connection ends.
    assert "full trace when the proxy stops" in " ".join(out.split())
    with pytest.raises(SystemExit) as info:
        cli_main(["--upstream", "127.0.0.1:1", "--fault", "lag=1s"])
    assert info.value.code == 2
    assert "unknown fault 'lag'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["--upstream", "127.0.0.1:1", "--fault", "drop=0.5"])
    err = capsys.readouterr().err
    assert "does not apply to a TCP proxy (--udp makes a UDP proxy)" in err, err
    for args, named in [
        (["--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:99999"], "--listen"),
        (["--upstream", "127.0.0.1:65536"], "upstream"),
        (["--upstream", "127.0.0.1:0"], "upstream"),
    ]:
        with pytest.raises(SystemExit) as info:
            cli_main(args)
        assert info.value.code == 2
        lowest = 1 if named == "upstream" else 0
        assert f"{named}: the port must be in {lowest}..65535" in capsys.readouterr().err


def test_proxy_listens_on_loopback_unless_allowed_remote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nettest._proxy_cli import cli_main

    with pytest.raises(ValueError, match=r"host '0\.0\.0\.0' is not a loopback address"):
        FaultProxy(("127.0.0.1", 1), host="0.0.0.0")
    with pytest.raises(ValueError, match="host must be a literal IP address"):
        FaultProxy(("127.0.0.1", 1), host="localhost")
    FaultProxy(("127.0.0.1", 1), host="0.0.0.0", allow_remote=True)
    FaultProxy(("127.0.0.1", 1), host="::1")
    with pytest.raises(SystemExit) as info:
        cli_main(["--upstream", "127.0.0.1:1", "--listen", "0.0.0.0:0"])
    assert info.value.code == 2
    assert "Pass --allow-remote if you mean it" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli_main(["--upstream", "127.0.0.1:1", "--listen", "[::1%lo]:0"])
    assert info.value.code == 2
    assert "--listen: host '::1%lo' has a scope id" in capsys.readouterr().err


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.asyncio
async def test_fault_proxy_fixture_listens_where_asked(
    fault_proxy: FaultProxyFactory, tcp_server: TCPServerFactory
) -> None:
    server = await tcp_server(handlers.echo, host="::1")
    proxy = await fault_proxy(server, faults=[Truncate(3)], host="::1")
    assert proxy.address[0] == "::1"
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"hello")
        writer.write_eof()
        assert await read_all(reader) == b"hel"
    with pytest.raises(ValueError, match=r"host '0\.0\.0\.0' is not a loopback address"):
        await fault_proxy(server, host="0.0.0.0")
    # What the error advises works: the fixture takes allow_remote, as FaultProxy does.
    remote = await fault_proxy(server, faults=[Truncate(2)], host="::", allow_remote=True)
    assert remote.address[0] == "::"
    async with connect(("::1", remote.address[1])) as (reader, writer):
        writer.write(b"hello")
        writer.write_eof()
        assert await read_all(reader) == b"he"


@pytest.mark.asyncio
async def test_proxy_connections_turn_nagle_off(
    fault_proxy: FaultProxyFactory, tcp_server: TCPServerFactory
) -> None:
    # Its listening socket was made with proto 0, so asyncio left Nagle on for the
    # connections it accepted: behind a Slice(64), each piece waited for the
    # client's delayed ACK, 40 ms a round trip.
    proxy = await fault_proxy(await tcp_server(handlers.echo), faults=[Slice(64)])
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"x" * 256)
        assert await reader.readexactly(256) == b"x" * 256
        (conn,) = proxy._connections
        for side in (conn.client, conn.server):
            assert side is not None
            assert side.transport is not None
            sock = side.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_proxy_ports_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^port must be in 0\.\.65535, got 70000"):
        FaultProxy(("127.0.0.1", 1), port=70000)
    with pytest.raises(TypeError, match=r"port must be an int in 0\.\.65535, got '1'"):
        FaultProxy(("127.0.0.1", 1), port="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"upstream: the port must be in 1\.\.65535, got -1"):
        FaultProxy(("127.0.0.1", -1))
    # Nothing listens on port 0: every client would be reset.
    with pytest.raises(ValueError, match=r"upstream: the port must be in 1\.\.65535, got 0"):
        FaultProxy(("127.0.0.1", 0))
    with pytest.raises(ValueError, match=r"upstream: the port must be in 1\.\.65535, got 0"):
        FaultProxy("127.0.0.1:0")


# -- the fixture in a test run --------------------------------------------------------------

_FAILING_TEST = """
import asyncio
import pytest
from nettest._faults import Latency, Truncate

{marker}
async def test_fails(fault_proxy):
    async def echo(reader, writer):
        writer.write(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        proxy = await fault_proxy(
            upstream=server.sockets[0].getsockname(), faults=[Truncate(2)]
        )
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"hello")
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        assert data == b"hello"
    finally:
        server.close()
"""


@pytest.mark.parametrize("asyncio_mode", ["strict", "auto"])
def test_fault_proxy_fixture_prints_trace_and_seed_on_failure(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    marker = "@pytest.mark.asyncio" if asyncio_mode == "strict" else ""
    pytester.makepyfile(_FAILING_TEST.format(marker=marker))
    result = pytester.runpytest(f"--asyncio-mode={asyncio_mode}", "--nettest-seed=77")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*nettest fault proxy*",
            "<FaultProxy tcp 127.0.0.1:* -> 127.0.0.1:* up> seed=*=?Truncate(after_bytes=2)?",
            "tcp connection #1 from 127.0.0.1:*faults fired: Truncate(after_bytes=2)",
            "*2 bytes b'he'*",
        ]
    )


def test_a_tests_proxies_are_let_go_once_its_reports_are_made(
    pytester: pytest.Pytester,
) -> None:
    # The test's stash kept every proxy it made, with its traces and its closed
    # event loop, for the rest of the session: 125 KB a test, passed or failed.
    pytester.makepyfile(
        """
        import asyncio, gc
        import pytest
        from nettest import FaultProxy, handlers

        async def through_a_proxy(tcp_server, fault_proxy):
            proxy = await fault_proxy(await tcp_server(handlers.echo))
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            writer.close()
            await writer.wait_closed()

        @pytest.mark.asyncio
        @pytest.mark.parametrize("n", range(5))
        async def test_through_a_proxy(tcp_server, fault_proxy, n):
            await through_a_proxy(tcp_server, fault_proxy)

        def test_none_kept():
            gc.collect()
            assert [o for o in gc.get_objects() if isinstance(o, FaultProxy)] == []

        @pytest.mark.asyncio
        async def test_fails_after(tcp_server, fault_proxy):
            await through_a_proxy(tcp_server, fault_proxy)
            assert False  # its report still has the traces
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*- nettest fault proxy -*", "tcp connection #1 from *"])


def test_the_failure_report_shows_each_proxys_last_connections_only(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.mark.asyncio
        async def test_fails(fault_proxy, tcp_server):
            server = await tcp_server()
            proxy = await fault_proxy(upstream=server.address)
            for i in range(13):
                reader, writer = await asyncio.open_connection(*proxy.address)
                writer.write(b"x" * (i + 1))
                writer.close()
                await writer.wait_closed()
            await server.wait_for_connections(13)
            assert len(proxy.traces) == 13
            assert False
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*nettest fault proxy*",
            "<FaultProxy tcp * seed=*",
            "  ... 3 earlier connections not shown "
            "(the last 10 follow; FaultProxy.traces holds them all)",
            "tcp connection #4 from *",
        ]
    )
    out = result.stdout.str()
    assert "tcp connection #13 from" in out
    assert "tcp connection #3 from" not in out


def test_fault_proxy_fixture_closes_its_proxies(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        proxies = []

        @pytest.mark.asyncio
        async def test_one(fault_proxy):
            proxies.append(await fault_proxy(upstream=("127.0.0.1", 9)))
            proxies.append(await fault_proxy(upstream=("127.0.0.1", 9), kind="udp"))
            assert proxies[0].seed != proxies[1].seed

        def test_closed():
            assert [p.closed for p in proxies] == [True, True]
        """
    )
    result = pytester.runpytest("--nettest-leaks=strict", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("kind", ["tcp", "udp"])
@pytest.mark.parametrize("refuse", [True, False])
def test_a_wider_scoped_proxy_s_sockets_are_its_own_after_down_and_up_in_a_test(
    pytester: pytest.Pytester, kind: str, refuse: bool
) -> None:
    # down() and up() run in the test's task, but what they bind (the listener,
    # the socket that holds the port while down) is the module-scoped proxy's:
    # strict mode must neither charge it to the test nor close it at its check.
    pytester.makepyfile(
        f"""
        import asyncio
        import socket
        import pytest
        import pytest_asyncio
        import nettest
        from nettest import handlers

        pytestmark = pytest.mark.asyncio(loop_scope="module")

        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def proxy():
            server_type = nettest.UDPServer if {kind!r} == "udp" else nettest.TCPServer
            async with server_type(handlers.echo) as server:
                async with nettest.FaultProxy(server, seed=1) as proxy:
                    yield proxy

        async def round_trip(proxy):
            if proxy.kind == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(10)
                    sock.sendto(b"hi\\n", proxy.address)
                    return await asyncio.to_thread(sock.recv, 100)
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(b"hi\\n")
            try:
                return await asyncio.wait_for(reader.readline(), 10)
            finally:
                writer.close()
                await writer.wait_closed()

        async def test_down_and_up(proxy):
            await proxy.down(refuse={refuse!r})
            await proxy.up()
            assert await round_trip(proxy) == b"hi\\n"

        async def test_down(proxy):
            await proxy.down(refuse={refuse!r})

        async def test_after(proxy):
            await proxy.up()
            assert await round_trip(proxy) == b"hi\\n"
        """
    )
    result = pytester.runpytest("--nettest-leaks=strict", "-p", "no:randomly")
    result.assert_outcomes(passed=3)


def test_a_proxy_refuses_an_upstream_server_whose_loop_is_idle(
    pytester: pytest.Pytester,
) -> None:
    # A module-scoped server's loop does not run during a function-scoped test:
    # the proxy's connections would wait for ever for it to accept them.
    pytester.makepyfile(
        """
        import pytest
        import pytest_asyncio
        import nettest
        from nettest import handlers

        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def server():
            async with nettest.TCPServer(handlers.echo) as server:
                yield server

        @pytest.mark.asyncio
        async def test_proxy_on_the_test_s_loop(server, fault_proxy):
            with pytest.raises(RuntimeError, match="runs on another event loop") as info:
                await fault_proxy(upstream=server)
            assert "loop_scope" in str(info.value)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_proxy_on_the_server_s_loop(server):
            async with nettest.FaultProxy(server) as proxy:
                assert proxy.is_up

        @pytest.mark.asyncio
        async def test_a_thread_server_s_loop_runs(tcp_server_thread, fault_proxy):
            await fault_proxy(upstream=tcp_server_thread())
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--nettest-leaks=strict")
    result.assert_outcomes(passed=3)


_PROXIES_ON_THE_TESTS_LOOP = """
import asyncio
import socket
import pytest
from nettest import handlers
from nettest.faults import Latency, SlowClose

PROXIES = []

async def through_a_proxy(tcp_server, udp_server, fault_proxy):
    server = await tcp_server(handlers.echo)
    proxy = await fault_proxy(upstream=server, faults=[Latency(0.01)])
    PROXIES.append(proxy)
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.close()
    await writer.wait_closed()
    datagrams = await udp_server(handlers.echo)
    PROXIES.append(await fault_proxy(upstream=datagrams, kind="udp"))

@pytest.mark.asyncio
async def test_on_a_function_loop(tcp_server, udp_server, fault_proxy):
    await through_a_proxy(tcp_server, udp_server, fault_proxy)

@pytest.mark.asyncio(loop_scope="module")
async def test_on_the_module_loop(tcp_server, udp_server, fault_proxy):
    await through_a_proxy(tcp_server, udp_server, fault_proxy)

def test_on_a_loop_closed_before_teardown(fault_proxy):
    async def main():
        async def echo(reader, writer):
            writer.write(await reader.read(100))
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        proxy = await fault_proxy(upstream=server.sockets[0].getsockname())
        PROXIES.append(proxy)
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"ping")
        assert await reader.read() == b"ping"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    asyncio.run(main())

def test_on_a_loop_closed_while_a_fault_holds_its_connections(fault_proxy):
    async def main():
        async def echo(reader, writer):
            writer.write(await reader.read(100))
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        proxy = await fault_proxy(
            upstream=server.sockets[0].getsockname(), faults=[SlowClose(0.5)]
        )
        PROXIES.append(proxy)
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.close()  # the server's FIN is still held as the loop closes
        await writer.wait_closed()
        server.close()

    asyncio.run(main())

def test_every_proxy_was_closed():
    assert len(PROXIES) == 6
    assert [p for p in PROXIES if not p.closed] == []
    for proxy in PROXIES:
        if proxy.kind == "tcp":
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(proxy.address, timeout=5).close()
"""


@pytest.mark.parametrize("fixture_loop_scope", ["function", "module"])
@pytest.mark.parametrize("asyncio_mode", ["strict", "auto"])
def test_fault_proxy_fixture_closes_proxies_on_the_loop_they_run_on(
    pytester: pytest.Pytester, asyncio_mode: str, fixture_loop_scope: str
) -> None:
    # A proxy started on the test's loop, which is not the fixture's, was closed on
    # the fixture's: on 3.10 a ValueError, later a wait for the whole timeout; and
    # with the fixtures on the module's loop, "Event loop is closed".  A hang here
    # is the bug: the timeout is far above what closing takes.
    pytester.makeini(
        f"""\
[pytest]
asyncio_default_fixture_loop_scope = {fixture_loop_scope}
addopts = -p no:looptime_plugin -p no:cacheprovider -W error::ResourceWarning
"""
    )
    pytester.makepyfile(_PROXIES_ON_THE_TESTS_LOOP)
    result = pytester.runpytest_subprocess(
        f"--asyncio-mode={asyncio_mode}", "--nettest-timeout=600", timeout=120
    )
    result.assert_outcomes(passed=5)
    result.stdout.no_fnmatch_line("*LeakError*")


@pytest.mark.asyncio
async def test_udp_proxy_unreachable_closes_the_port_while_in_force(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo]
) -> None:
    address, _ = udp_echo
    proxy = await fault_proxy(upstream=address, kind="udp", faults=[Unreachable()])
    await until(lambda: not proxy.is_up)
    async with udp_client(proxy.address) as (transport, client):
        transport.sendto(b"anyone?")
        await until(lambda: bool(client.errors))
        assert isinstance(client.errors[0], ConnectionRefusedError)
        proxy.clear()
        await until(lambda: proxy.is_up)
        transport.sendto(b"back")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"back"
    with pytest.raises(ValueError, match="closing its port"):
        proxy.add(Unreachable(probability=0.5))


# -- Unreachable() is in force when the call returns ---------------------------------------

#: Rounds of each race test: one lucky round proves nothing, and each round is quick.
_ROUNDS = 25


def _connected_to(address: Address) -> socket.socket:
    """A UDP socket connected to the closed port `address`, and not bound to it.

    The port a closed proxy gave up is free, and connect() may bind the socket to
    it: a socket connected to itself reads its own datagrams, not the refusal.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(address)
    if sock.getsockname() != address:
        return sock
    try:  # held, the port is not given twice
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.connect(address)
        return other
    finally:
        sock.close()


def _refused_at_once(address: Address) -> None:
    """Send from a blocking connected socket, with no loop turn: the kernel must refuse it."""
    with _connected_to(address) as sock:
        sock.settimeout(5)
        sock.send(b"anyone?")
        # The ICMP error comes back from the kernel, not from the proxy: the loop
        # need not run, and recv() blocks until it arrives (or data does).
        with pytest.raises(ConnectionRefusedError):
            sock.recv(100)


@pytest.mark.asyncio
async def test_udp_proxy_unreachable_from_the_factory_is_in_force_when_it_returns(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo]
) -> None:
    address, echo = udp_echo
    loop = asyncio.get_running_loop()
    for _ in range(_ROUNDS):
        proxy = await fault_proxy(upstream=address, kind="udp", faults=[Unreachable()])
        _refused_at_once(proxy.address)
        # An asyncio client whose first datagram left before the loop turned again.
        sock = _connected_to(proxy.address)
        sock.send(b"anyone?")
        transport, client = await loop.create_datagram_endpoint(_Client, sock=sock)
        try:
            await _errors(client, 1)
        finally:
            transport.close()
        assert isinstance(client.errors[0], ConnectionRefusedError)
        assert client.queue.empty()
        await proxy.aclose()
    assert echo.received == []


async def _errors(client: _Client, count: int) -> None:
    """Wait until `client` has had `count` errors."""
    await until(lambda: len(client.errors) >= count)


def _open_fds() -> int | None:
    """How many descriptors this process has open (None where /proc is missing)."""
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


async def _unreachable_rounds(upstream: Address, *, turn_between: bool) -> None:
    """add(Unreachable()) and remove() it again and again; each must act before it returns."""
    loop = asyncio.get_running_loop()
    unreachable = Unreachable()
    async with (
        FaultProxy(upstream, kind="udp") as proxy,
        udp_client(proxy.address) as (
            transport,
            client,
        ),
    ):
        blocking = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            blocking.connect(proxy.address)
            for n in range(_ROUNDS):
                proxy.add(unreachable)
                transport.sendto(b"refused")
                _refused_at_once(proxy.address)
                await _errors(client, n + 1)
                assert isinstance(client.errors[n], ConnectionRefusedError)
                proxy.remove(unreachable)
                if turn_between:
                    # A listener whose transport is made but not yet connected
                    # (connection_made() is a loop turn away) must close at once too.
                    await asyncio.sleep(0)
                    proxy.add(unreachable)
                    _refused_at_once(proxy.address)
                    proxy.remove(unreachable)
                # Bound again on the same port before remove() returned.
                transport.sendto(b"back %d" % n)
                blocking.send(b"blocking %d" % n)
                assert await asyncio.wait_for(client.queue.get(), 5) == b"back %d" % n
                blocking.setblocking(False)
                reply = await asyncio.wait_for(loop.sock_recv(blocking, 100), 5)
                assert reply == b"blocking %d" % n
                blocking.setblocking(True)
        finally:
            blocking.close()
        await proxy.up()  # waits until the port bound again is read
        assert proxy.is_up
    assert proxy.traces[0].upstream_bytes > 0


@pytest.mark.asyncio
@pytest.mark.parametrize("turn_between", [False, True])
async def test_udp_proxy_unreachable_add_and_remove_act_before_returning(
    udp_echo: tuple[Address, _Echo], turn_between: bool
) -> None:
    address, _ = udp_echo
    fds = _open_fds()
    await _unreachable_rounds(address, turn_between=turn_between)
    await asyncio.sleep(0.01)
    assert _open_fds() == fds  # every socket closed, the placeholders too


@pytest.mark.uvloop
@pytest.mark.parametrize("turn_between", [False, True])
def test_udp_proxy_unreachable_add_and_remove_act_before_returning_on_uvloop(
    turn_between: bool,
) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
        try:
            await _unreachable_rounds(echo.get_extra_info("sockname"), turn_between=turn_between)
        finally:
            echo.close()
            await asyncio.sleep(0)

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.asyncio
async def test_udp_proxy_unreachable_forwards_what_arrived_before_it(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo]
) -> None:
    address, echo = udp_echo
    proxy = await fault_proxy(
        upstream=address, kind="udp", faults=[Latency(0.2, direction="upstream")]
    )
    async with udp_client(proxy.address) as (transport, client):
        transport.sendto(b"warm")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"warm"
        transport.sendto(b"delayed")
        await asyncio.sleep(0.05)  # read by the proxy, held by the Latency
        transport.sendto(b"queued")  # still in the proxy's socket buffer
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as newcomer:
            newcomer.sendto(b"new client", proxy.address)
            proxy.add(Unreachable())
            # The fault counts from now: all three reach the upstream, late.
            await until(lambda: len(echo.received) == 4)
        assert echo.received[:2] == [b"warm", b"delayed"]
        assert sorted(echo.received[2:]) == [b"new client", b"queued"]
        # Their replies find the port closed: lost, as the trace says.
        assert client.queue.empty()
        assert not client.errors
    assert "the proxy's port is closed" in proxy.format_traces()


async def _echoes(address: Address) -> None:
    """The port at `address` is open: a datagram sent to it comes back."""
    async with udp_client(address) as (transport, client):
        transport.sendto(b"back")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"back"


@pytest.mark.asyncio
@pytest.mark.parametrize("down_first", [False, True])
async def test_udp_proxy_down_outlasts_unreachable(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo], down_first: bool
) -> None:
    address, _ = udp_echo
    proxy = await fault_proxy(upstream=address, kind="udp")
    if down_first:
        await proxy.down()
        proxy.add(Unreachable())
    else:
        proxy.add(Unreachable())
        await proxy.down()
    # Removing the fault bound the port again, though the proxy was down.
    proxy.remove(Unreachable())
    assert not proxy.is_up
    _refused_at_once(proxy.address)
    await proxy.up()
    await until(lambda: proxy.is_up)  # (at once; mypy keeps `not is_up` from above)
    await _echoes(proxy.address)


@pytest.mark.asyncio
async def test_udp_proxy_up_leaves_the_port_closed_while_unreachable(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo]
) -> None:
    address, _ = udp_echo
    proxy = await fault_proxy(upstream=address, kind="udp", faults=[Unreachable()])
    await proxy.down()
    await proxy.up()  # bound the port, though Unreachable() is in force
    assert not proxy.is_up
    _refused_at_once(proxy.address)
    proxy.remove(Unreachable())
    await until(lambda: proxy.is_up)  # (at once)
    await _echoes(proxy.address)


@pytest.mark.asyncio
@pytest.mark.parametrize("closer", ["add", "down"])
async def test_udp_proxy_up_returns_when_another_task_closes_the_port(
    fault_proxy: FaultProxyFactory, udp_echo: tuple[Address, _Echo], closer: str
) -> None:
    address, _ = udp_echo
    proxy = await fault_proxy(upstream=address, kind="udp", faults=[Unreachable()])

    async def close_the_port() -> None:
        await asyncio.sleep(0)
        if closer == "add":
            proxy.add(Unreachable())
        else:
            await proxy.down()

    other = asyncio.ensure_future(close_the_port())
    await asyncio.sleep(0)  # `other` is ready to run again
    proxy.remove(Unreachable())  # binds; the task that reads the port runs after `other`
    try:
        # up() awaited that task, which closing the port cancelled: CancelledError
        # in a task nobody cancelled.
        await proxy.up()
    except asyncio.CancelledError:
        pytest.fail("up() raised CancelledError, though nothing cancelled this task")
    finally:
        await other
    assert not proxy.is_up  # closed again, as the other task asked
    _refused_at_once(proxy.address)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_proxy_load_500_connections_of_256_kib(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    proxy = await fault_proxy(upstream=upstream.address)
    size = 256 * 1024

    async def one(n: int) -> bool | str:
        payload = hashlib.sha256(str(n).encode()).digest() * (size // 32)
        try:
            async with connect(proxy.address) as (reader, writer):
                writer.write(payload)
                writer.write_eof()  # sent once the buffer drains, while we read the echo
                echoed = await read_all(reader, 60)
        except OSError as exc:
            return repr(exc)
        return hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()

    results = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(500))), 120)
    failed = [(n, r) for n, r in enumerate(results) if r is not True]
    assert not failed, (failed[:3], proxy.format_traces()[-3000:])
    assert sum(t.upstream_bytes for t in proxy.traces) == 500 * size
    assert sum(t.downstream_bytes for t in proxy.traces) == 500 * size


def test_fault_proxy_left_open_is_reported_by_the_hygiene_gate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        from nettest._proxy import FaultProxy

        kept = []

        @pytest.mark.asyncio
        async def test_leaks():
            server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            kept.append(await FaultProxy(server.sockets[0].getsockname()).start())
            server.close()  # the test's own server is closed; the proxy is not
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    # Named by its own address too: the test may have made several in front of one server.
    result.stdout.fnmatch_lines(["*open FaultProxy tcp 127.0.0.1:* -> 127.0.0.1:*"])


@pytest.mark.nettest_leaks("off")  # it drops one open on purpose
@pytest.mark.asyncio
async def test_fault_proxy_dropped_unclosed_warns(upstream: Upstream) -> None:
    proxy = await FaultProxy(upstream.address).start()
    with pytest.warns(ResourceWarning, match="unclosed <FaultProxy"):
        proxy.__del__()
    await proxy.aclose()
    proxy.__del__()  # closed: no warning (filterwarnings=error would fail the test)


@pytest.mark.asyncio
@pytest.mark.parametrize("meanwhile", ["aclose", "down", "up"])
async def test_tcp_proxy_up_while_the_listener_starts(meanwhile: str) -> None:
    # up() binds at once, then awaits create_server(): aclose() or down() in
    # another task meanwhile leave it closed, and a second up() waits for the first.
    upstream = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    proxy = await FaultProxy(upstream.sockets[0].getsockname()[:2]).start()
    try:
        await proxy.down()
        first = asyncio.ensure_future(proxy.up())
        await asyncio.sleep(0)
        if meanwhile == "aclose":
            await proxy.aclose()
        elif meanwhile == "down":
            await proxy.down()
        else:
            await proxy.up()
        await asyncio.wait_for(first, 5)
        host, port = proxy.address
        if meanwhile == "up":
            assert proxy.is_up
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
        else:
            assert not proxy.is_up
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(host, port)
    finally:
        await proxy.aclose()
        upstream.close()
        await upstream.wait_closed()


# -- the port: below the kernel's ephemeral range ------------------------------------------


def _ephemeral_range() -> tuple[int, int] | None:
    """The ports the kernel binds a client's socket to at connect(), on Linux."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as file:
            low, high = file.read().split()
    except OSError:
        return None
    return int(low), int(high)


class _Picks(random.Random):
    """Picks the ports given first, then random ones, and records every pick."""

    def __init__(self, *first: int) -> None:
        super().__init__()
        self.first = list(first)
        self.picked: list[int] = []

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        port = self.first.pop(0) if self.first else super().randrange(start, stop, step)
        self.picked.append(port)
        return port


@contextlib.contextmanager
def _held_port(how: str) -> Iterator[socket.socket]:
    """Hold a loopback port: ``"listening"``, ``"bound"`` (TCP, SO_REUSEADDR) or ``"udp"``."""
    kind = socket.SOCK_DGRAM if how == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        if how != "udp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        if how == "listening":
            sock.listen()
        yield sock


async def _forwards(proxy: FaultProxy) -> None:
    if proxy.kind == "tcp":
        async with connect(proxy.address) as (reader, writer):
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    else:
        async with udp_client(proxy.address) as (transport, client):
            transport.sendto(b"ping")
            assert await asyncio.wait_for(client.queue.get(), 5) == b"ping"


@pytest.mark.skipif(_ephemeral_range() is None, reason="the ephemeral range is Linux's")
@pytest.mark.asyncio
async def test_proxy_port_is_below_the_ephemeral_range(
    fault_proxy: FaultProxyFactory, upstream: Upstream, udp_echo: tuple[Address, _Echo]
) -> None:
    # A client's connect() binds its socket to a free port of the ephemeral range:
    # a port the proxy closed could be the client's own, connected to itself.
    limits = _ephemeral_range()
    assert limits is not None
    state = random.getstate()
    tcp = await fault_proxy(upstream=upstream.address)
    udp = await fault_proxy(upstream=udp_echo[0], kind="udp")
    assert random.getstate() == state  # a test's seeded generator is left alone
    for proxy in (tcp, udp):
        port = proxy.port
        assert 1024 <= port < limits[0]
        await proxy.down()
        await proxy.up()
        await proxy.down(refuse=False)
        await proxy.up()
        if proxy is udp:
            proxy.add(Unreachable())
            proxy.clear()
        assert proxy.port == port
        await _forwards(proxy)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["listening", "bound", "udp"])
async def test_proxy_port_taken_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
    upstream: Upstream,
    udp_echo: tuple[Address, _Echo],
    how: str,
) -> None:
    kind: typing.Literal["tcp", "udp"] = "udp" if how == "udp" else "tcp"
    target = udp_echo[0] if kind == "udp" else upstream.address
    monkeypatch.setattr(_proxy_sockets, "_ephemeral_low", lambda: 32768)
    with _held_port(how) as held:
        taken = held.getsockname()[1]
        if how == "bound":
            # With SO_REUSEADDR two TCP sockets that do not listen share a port,
            # and the second to listen() fails: another process picked the same
            # port at the same moment, and listens first.
            listen = socket.socket.listen

            def listens_second(sock: socket.socket, *backlog: int) -> None:
                if sock is not held and sock.getsockname()[1] == taken:
                    listen(held)
                listen(sock, *backlog)

            monkeypatch.setattr(socket.socket, "listen", listens_second)
        picks = _Picks(taken)
        monkeypatch.setattr(_proxy_sockets, "_port_rng", picks)
        async with FaultProxy(target, kind=kind) as proxy:
            assert picks.picked[0] == taken
            assert proxy.port == picks.picked[-1] != taken
            assert 1024 <= proxy.port < 32768
            await _forwards(proxy)


@pytest.mark.asyncio
@pytest.mark.parametrize("low", [None, 1024, 1025])
async def test_proxy_port_is_the_kernels_choice_without_a_range_below_it(
    monkeypatch: pytest.MonkeyPatch,
    upstream: Upstream,
    udp_echo: tuple[Address, _Echo],
    low: int | None,
) -> None:
    # None: not Linux, or the range could not be read.  1025: every pick is taken,
    # and the proxy gives up after a bounded number of them.
    monkeypatch.setattr(_proxy_sockets, "_ephemeral_low", lambda: low)
    picks = _Picks()
    monkeypatch.setattr(_proxy_sockets, "_port_rng", picks)
    limits = _ephemeral_range()
    for how in ("listening", "udp"):
        kind: typing.Literal["tcp", "udp"] = "udp" if how == "udp" else "tcp"
        target = udp_echo[0] if kind == "udp" else upstream.address
        with _held_port(how) as held:
            taken = held.getsockname()[1]
            picks.first = [taken] * 100
            picks.picked.clear()
            async with FaultProxy(target, kind=kind) as proxy:
                assert len(picks.picked) == (100 if low == 1025 else 0)
                port = proxy.port
                assert port != taken
                if limits is not None:
                    assert limits[0] <= port <= limits[1]
                await proxy.down()
                await proxy.up()
                assert proxy.port == port
                await _forwards(proxy)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["listening", "udp"])
async def test_proxy_explicit_port_is_used_as_given(
    monkeypatch: pytest.MonkeyPatch,
    upstream: Upstream,
    udp_echo: tuple[Address, _Echo],
    how: str,
) -> None:
    # A port the user chose is not swapped for another: taken, it is an error.
    kind: typing.Literal["tcp", "udp"] = "udp" if how == "udp" else "tcp"
    target = udp_echo[0] if kind == "udp" else upstream.address
    picks = _Picks()
    monkeypatch.setattr(_proxy_sockets, "_port_rng", picks)
    with _held_port(how) as held:
        proxy = FaultProxy(target, kind=kind, port=held.getsockname()[1])
        with pytest.raises(OSError, match="Address already in use") as info:
            await proxy.start()
        assert info.value.errno == errno.EADDRINUSE
        await proxy.aclose()
    assert not picks.picked


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["listening", "udp"])
async def test_a_proxy_that_cannot_listen_is_closed(
    upstream: Upstream, udp_echo: tuple[Address, _Echo], how: str
) -> None:
    # Not left tracked as open: the hygiene gate would fail the test for a proxy
    # that never listened, on top of the error that says why.
    kind: typing.Literal["tcp", "udp"] = "udp" if how == "udp" else "tcp"
    target = udp_echo[0] if kind == "udp" else upstream.address
    with _held_port(how) as held:
        proxy = FaultProxy(target, kind=kind, port=held.getsockname()[1])
        with pytest.raises(OSError, match="Address already in use"):
            await proxy.start()
    assert proxy.closed


def test_proxy_fixtures_skip_without_ipv6(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from nettest import _proxy

@pytest.fixture(autouse=True)
def _no_ipv6(monkeypatch):
    monkeypatch.setattr(_proxy, "has_ipv6_loopback", lambda: False)
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.asyncio
async def test_async(fault_proxy):
    await fault_proxy(upstream=("::1", 9), host="::1")

def test_thread(fault_proxy_thread):
    fault_proxy_thread(upstream=("::1", 9), host="::1")
"""
    )
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*IPv6 loopback ::1 is not available*"] * 2)


def test__bind_port_binds_an_explicit_port_once(monkeypatch: pytest.MonkeyPatch) -> None:
    picks = _Picks()
    monkeypatch.setattr(_proxy_sockets, "_port_rng", picks)
    ports: list[int] = []

    def bind(port: int) -> socket.socket:
        ports.append(port)
        return socket.socket()

    with _proxy_sockets._bind_port(40000, bind):
        pass
    assert ports == [40000]
    assert not picks.picked


@pytest.mark.parametrize(
    ("text", "low"),
    [
        ("32768\t60999\n", 32768),
        ("1024 65535", 1024),
        ("", None),
        ("low high", None),
        (None, None),
    ],
)
def test__ephemeral_low(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str | None, low: int | None
) -> None:
    path = tmp_path / "ip_local_port_range"
    if text is not None:
        path.write_text(text)
    monkeypatch.setattr(_proxy_sockets, "_EPHEMERAL_RANGE_FILE", str(path))
    assert _proxy_sockets._ephemeral_low() == low


@pytest.mark.asyncio
async def test_tcp_proxy_restart_resets_open_connections_and_takes_new_ones(
    fault_proxy: FaultProxyFactory, upstream: Upstream
) -> None:
    # What docs/faults.rst gives for a server that restarts: down(), then a Reset
    # added and removed, which resets the connections open at that moment only.
    proxy = await fault_proxy(upstream=upstream.address)
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
        await proxy.down()
        restart = Reset(direction="both")
        proxy.add(restart)
        proxy.remove(restart)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 5)
    await proxy.up()
    async with connect(proxy.address) as (reader, writer):
        writer.write(b"y")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"y"


@pytest.mark.asyncio
async def test_trace_names_the_address_the_upstream_server_sees(
    fault_proxy: FaultProxyFactory, tcp_server: TCPServerFactory
) -> None:
    # A server behind the proxy records the proxy's upstream socket as its
    # client: the trace says which one, to match the two records.
    server = await tcp_server(handlers.echo)
    proxy = await fault_proxy(upstream=server)
    assert proxy.traces == [] or proxy.traces[0].upstream_local is None
    for _ in range(2):
        async with connect(proxy.address) as (reader, writer):
            writer.write(b"x")
            assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
    conns = await server.wait_for_connections(2)
    assert [t.upstream_local for t in proxy.traces] == [c.peer for c in conns]
    async with UDPServer(handlers.echo) as udp:
        proxy = await fault_proxy(upstream=udp)
        async with udp_client(proxy.address) as (transport, client):
            transport.sendto(b"y")
            assert await asyncio.wait_for(client.queue.get(), 5) == b"y"
        (datagram,) = await udp.wait_for_datagrams(1)
        assert proxy.traces[0].upstream_local == datagram.peer
