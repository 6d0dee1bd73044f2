"""Throughput and latency of nettest's memory streams against real sockets.

Run ``python benchmarks/bench_transports.py`` (256 MiB bulk, 20 000 round trips) or
with ``--quick`` (16 MiB, 2 000 round trips).  Every figure is printed with its ratio
against baselines measured in the same run:

* bulk transfer in 64 KiB writes through ``memory_stream_pair`` versus asyncio
  streams over loopback TCP and a Unix socket, and versus the naive memory pair
  below (targets: >= 3x TCP, >= 1x naive);
* 64-byte request/response round trips (target: <= 0.5x the loopback time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

from nettest._transports import memory_stream_pair

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


def naive_stream_pair() -> Streams:
    loop = asyncio.get_running_loop()
    ends = []
    transports = []
    for _ in range(2):
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport = NaiveTransport(loop, protocol)
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


async def measure(quick: bool, repeats: int) -> None:
    settle_the_allocator()
    total = (16 if quick else 256) * 1024 * 1024
    trips = 2_000 if quick else 20_000
    mib = total / (1024 * 1024)
    print(
        f"bulk transfer: {mib:.0f} MiB in {CHUNK // 1024} KiB writes, best of {repeats} "
        f"(Python {sys.version.split()[0]})"
    )
    # The machine may be shared: interleave the contenders and keep each one's best.
    times: dict[str, float] = {}
    for _ in range(repeats):
        for name, make in (
            ("memory_stream_pair", None),
            ("naive memory pair", None),
            ("loopback TCP", tcp_stream_pair),
            ("Unix socket", unix_stream_pair),
        ):
            if make is None:
                streams = (
                    memory_stream_pair() if name == "memory_stream_pair" else naive_stream_pair()
                )
                elapsed = await bulk(streams, total)
            else:
                streams, close = await make()
                elapsed = await bulk(streams, total)
                await close()
            times[name] = min(times.get(name, elapsed), elapsed)
    memory = times["memory_stream_pair"]
    for name, elapsed in times.items():
        print(f"  {name:20} {elapsed:8.3f} s  {mib / elapsed:9.1f} MiB/s")
    for name in ("loopback TCP", "Unix socket", "naive memory pair"):
        print(f"  throughput ratio memory_stream_pair / {name}: {times[name] / memory:.2f}x")
    print(f"round trips: {trips} x 64 bytes, best of {repeats}")
    memory_rt = tcp_rt = float("inf")
    for _ in range(repeats):
        memory_rt = min(memory_rt, await round_trips(memory_stream_pair(), trips))
        streams, close = await tcp_stream_pair()
        tcp_rt = min(tcp_rt, await round_trips(streams, trips))
        await close()
    print(f"  memory_stream_pair   {memory_rt:8.3f} s  {1e6 * memory_rt / trips:7.1f} us/trip")
    print(f"  loopback TCP         {tcp_rt:8.3f} s  {1e6 * tcp_rt / trips:7.1f} us/trip")
    print(f"  time ratio memory_stream_pair / loopback TCP: {memory_rt / tcp_rt:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run of a few seconds")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender (best kept)")
    args = parser.parse_args()
    asyncio.run(measure(args.quick, args.repeats))


if __name__ == "__main__":
    main()
