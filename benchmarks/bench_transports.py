"""Throughput and latency of nettest's memory streams against real sockets.

Run ``python benchmarks/bench_transports.py`` (256 MiB bulk, 20 000 round trips) or
with ``--quick`` (16 MiB, 2 000 round trips).  Every figure is printed with its ratio
against baselines measured in the same run:

* bulk transfer in 64 KiB writes through ``memory_stream_pair`` versus asyncio
  streams over loopback TCP and a Unix socket, and versus the naive memory pair
  below (targets: >= 3x TCP, >= 1x naive); also versus the naive pair made to
  coalesce writes into reads as a socket does (no target: it shows what that
  copy costs);
* 64-byte request/response round trips (target: <= 0.5x the loopback time).

The contenders are interleaved, each run starts after the previous one's closing
callbacks and garbage are done with, and ratios compare medians (the ratio of the
best runs follows in parentheses).  ``--repeats`` sets the runs per contender.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

from nettest._transport_pairs import memory_stream_pair

Streams = tuple[
    tuple[asyncio.StreamReader, asyncio.StreamWriter],
    tuple[asyncio.StreamReader, asyncio.StreamWriter],
]

CHUNK = 64 * 1024


# -- the naive baseline: a memory pair anyone would write in an afternoon ------------


class NaiveTransport(asyncio.Transport):
    """Delivers each write with call_soon; pauses the writer above 64 KiB undelivered."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.loop, self.protocol = loop, protocol
        self.peer: NaiveTransport | None = None
        self.pending = 0  # bytes written but not yet delivered to the peer
        self.paused_writer = self.paused_reader = self.closing = False
        self.held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.pending += len(data)
        self.loop.call_soon(self._deliver, bytes(data))
        if self.pending > 65536 and not self.paused_writer:
            self.paused_writer = True
            self.protocol.pause_writing()

    def _deliver(self, data: bytes) -> None:
        assert self.peer is not None
        if self.peer.paused_reader:
            self.peer.held.append(data)
            return
        self.peer.protocol.data_received(data)
        self._delivered(len(data))

    def _delivered(self, n: int) -> None:
        self.pending -= n
        if self.paused_writer and self.pending <= 16384:
            self.paused_writer = False
            self.protocol.resume_writing()

    def pause_reading(self) -> None:
        self.paused_reader = True

    def resume_reading(self) -> None:
        self.paused_reader = False
        held, self.held = self.held, []
        for data in held:
            self.protocol.data_received(data)
            assert self.peer is not None
            self.peer._delivered(len(data))

    def write_eof(self) -> None:
        assert self.peer is not None
        self.loop.call_soon(self.peer.protocol.eof_received)

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.loop.call_soon(self.protocol.connection_lost, None)

    def get_write_buffer_size(self) -> int:
        return self.pending


class CoalescingNaiveTransport(NaiveTransport):
    """The naive transport, but what is written in one loop turn arrives as one read.

    A socket delivers everything that arrived since the last read in one
    ``recv()``; so do the memory transports, at the price of joining the writes
    (a copy the plain naive pair never makes).  ``memory_stream_pair`` skips that
    copy, since a plain ``StreamReader`` cannot tell one read from several; other
    protocols pay it.  Not a target: it shows what the copy costs.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol) -> None:
        super().__init__(loop, protocol)
        self.queued: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.pending += len(data)
        if not self.queued:
            self.loop.call_soon(self._deliver_queued)
        self.queued.append(bytes(data))
        if self.pending > 65536 and not self.paused_writer:
            self.paused_writer = True
            self.protocol.pause_writing()

    def _deliver_queued(self) -> None:
        queued, self.queued = self.queued, []
        self._deliver(b"".join(queued))


def naive_stream_pair(kind: type[NaiveTransport] = NaiveTransport) -> Streams:
    loop = asyncio.get_running_loop()
    ends = []
    transports = []
    for _ in range(2):
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport = kind(loop, protocol)
        protocol.connection_made(transport)
        transports.append(transport)
        ends.append((reader, asyncio.StreamWriter(transport, protocol, reader, loop)))
    transports[0].peer, transports[1].peer = transports[1], transports[0]
    return ends[0], ends[1]


# -- real sockets --------------------------------------------------------------------


async def tcp_stream_pair() -> tuple[Streams, Callable[[], Awaitable[None]]]:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await asyncio.open_connection("127.0.0.1", port)
    server_end = await accepted

    async def close() -> None:
        server.close()

    return (client, server_end), close


async def unix_stream_pair() -> tuple[Streams, Callable[[], Awaitable[None]]]:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    directory = tempfile.mkdtemp()
    path = os.path.join(directory, "bench.sock")
    server = await asyncio.start_unix_server(on_client, path)
    client = await asyncio.open_unix_connection(path)
    server_end = await accepted

    async def close() -> None:
        server.close()
        with contextlib.suppress(FileNotFoundError):  # 3.13's close() removes it
            os.unlink(path)
        os.rmdir(directory)

    return (client, server_end), close


# -- the measurements ------------------------------------------------------------------


async def bulk(streams: Streams, total: int) -> float:
    (_, c_writer), (s_reader, s_writer) = streams
    chunk = b"x" * CHUNK

    async def send() -> None:
        for _ in range(total // CHUNK):
            c_writer.write(chunk)
            await c_writer.drain()
        c_writer.write_eof()

    async def receive() -> int:
        count = 0
        while data := await s_reader.read(1 << 20):
            count += len(data)
        return count

    start = time.perf_counter()
    _, received = await asyncio.gather(send(), receive())
    elapsed = time.perf_counter() - start
    assert received == total, (received, total)
    c_writer.close()
    s_writer.close()
    return elapsed


async def round_trips(streams: Streams, count: int) -> float:
    (c_reader, c_writer), (s_reader, s_writer) = streams
    message = b"p" * 64

    async def serve() -> None:
        for _ in range(count):
            s_writer.write(await s_reader.readexactly(64))

    server = asyncio.ensure_future(serve())
    start = time.perf_counter()
    for _ in range(count):
        c_writer.write(message)
        await c_reader.readexactly(64)
    elapsed = time.perf_counter() - start
    await server
    c_writer.close()
    s_writer.close()
    return elapsed


def settle_the_allocator() -> None:
    """Free one large block, as any long-running process has done.

    glibc's malloc serves blocks of 128 KiB and more with mmap, paying a page fault
    per page on every allocation, until a larger mmapped block has been freed (its
    dynamic mmap threshold).  Without this, whichever contender happens to run
    after one that freed a large block would be measured with a faster allocator.
    """
    block = bytearray(32 * 1024 * 1024)
    del block


async def settle() -> None:
    """Finish the previous contender outside the timed region.

    Its closing callbacks run and its garbage is collected now, instead of inside
    the next contender's measurement.
    """
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()


async def memory_pair() -> tuple[Streams, None]:
    return memory_stream_pair(), None


async def naive_pair() -> tuple[Streams, None]:
    return naive_stream_pair(), None


async def coalescing_naive_pair() -> tuple[Streams, None]:
    return naive_stream_pair(CoalescingNaiveTransport), None


Contender = Callable[[], Awaitable[tuple[Streams, Callable[[], Awaitable[None]] | None]]]

BULK_CONTENDERS: dict[str, Contender] = {
    "memory_stream_pair": memory_pair,
    "naive memory pair": naive_pair,
    "coalescing naive": coalescing_naive_pair,
    "loopback TCP": tcp_stream_pair,
    "Unix socket": unix_stream_pair,
}


async def measure(quick: bool, repeats: int) -> None:
    settle_the_allocator()
    total = (16 if quick else 256) * 1024 * 1024
    trips = 2_000 if quick else 20_000
    mib = total / (1024 * 1024)
    print(
        f"bulk transfer: {mib:.0f} MiB in {CHUNK // 1024} KiB writes, median (best) of "
        f"{repeats} (Python {sys.version.split()[0]})"
    )
    # The machine may be shared: interleave the contenders, compare medians.
    times: dict[str, list[float]] = {name: [] for name in BULK_CONTENDERS}
    for _ in range(repeats):
        for name, make in BULK_CONTENDERS.items():
            streams, close = await make()
            await settle()
            times[name].append(await bulk(streams, total))
            if close is not None:
                await close()
    median = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    for name in BULK_CONTENDERS:
        print(
            f"  {name:20} {median[name]:8.3f} s  {mib / median[name]:9.1f} MiB/s"
            f"   ({best[name]:.3f} s)"
        )
    memory = "memory_stream_pair"
    for name in ("loopback TCP", "Unix socket", "naive memory pair", "coalescing naive"):
        print(
            f"  throughput ratio {memory} / {name}: {median[name] / median[memory]:.2f}x"
            f"   ({best[name] / best[memory]:.2f}x)"
        )
    print(f"round trips: {trips} x 64 bytes, median (best) of {repeats}")
    memory_rt: list[float] = []
    tcp_rt: list[float] = []
    for _ in range(repeats):
        streams = memory_stream_pair()
        await settle()
        memory_rt.append(await round_trips(streams, trips))
        streams, close = await tcp_stream_pair()
        await settle()
        tcp_rt.append(await round_trips(streams, trips))
        await close()
    for name, values in (("memory_stream_pair", memory_rt), ("loopback TCP", tcp_rt)):
        value = statistics.median(values)
        print(
            f"  {name:20} {value:8.3f} s  {1e6 * value / trips:7.1f} us/trip"
            f"   ({1e6 * min(values) / trips:.1f} us/trip)"
        )
    print(
        f"  time ratio memory_stream_pair / loopback TCP: "
        f"{statistics.median(memory_rt) / statistics.median(tcp_rt):.2f}x"
        f"   ({min(memory_rt) / min(tcp_rt):.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run of a few seconds")
    parser.add_argument("--repeats", type=int, default=5, help="runs per contender")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    asyncio.run(measure(args.quick, args.repeats))


if __name__ == "__main__":
    main()
