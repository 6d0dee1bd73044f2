"""Accuracy, speed and load of FaultProxy, each against a baseline measured in the same run.

Run:  .venv/bin/python benchmarks/bench_faults.py [--quick]

* throughput with no faults, proxy vs direct loopback (target: ratio >= 0.5);
* added cost per round trip, proxy vs a hand-written ~50-line asyncio forwarder
  (two StreamReader/StreamWriter pipes; target: ratio <= 1.5);
* Latency(0.05): median added one-way delay (target: 50 ms +- 5 ms);
* Bandwidth: achieved rate over 4 MiB vs the cap (target: within +-10%);
* load: concurrent connections, every byte checksummed, none lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable

from nettest._faults import Bandwidth, Latency
from nettest._proxy import FaultProxy

Address = tuple[str, int]


# -- upstreams -------------------------------------------------------------------------


class _Sink(asyncio.Protocol):
    """Counts bytes; answers b"done" at EOF."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.count = 0

    def data_received(self, data: bytes) -> None:
        self.count += len(data)

    def eof_received(self) -> bool:
        self.transport.write(b"done")
        self.transport.close()
        return True


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.close()
        return True


class _Source(asyncio.Protocol):
    """Sends `size` bytes as soon as a client connects, then closes."""

    size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t: asyncio.Transport = transport  # type: ignore[assignment]
        t.write(b"s" * self.size)
        t.close()


async def _server(factory: Callable[[], asyncio.Protocol]) -> tuple[asyncio.Server, Address]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
    host, port = server.sockets[0].getsockname()[:2]
    return server, (host, port)


# -- the baseline forwarder (about 50 lines, as a user would write it) --------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.transport.abort()


class Forwarder:
    """The hand-written baseline: one task per direction, streams on both sides."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> Address:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    async def _handle(
        self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
    ) -> None:
        u_reader, u_writer = await asyncio.open_connection(*self.upstream)
        try:
            await asyncio.gather(_pipe(c_reader, u_writer), _pipe(u_reader, c_writer))
        finally:
            c_writer.close()
            u_writer.close()

    async def aclose(self) -> None:
        assert self.server is not None
        self.server.close()


# -- measurements --------------------------------------------------------------------------


async def _throughput(address: Address, total: int) -> float:
    """Send `total` bytes and wait for the sink's answer; return bytes per second."""
    reader, writer = await asyncio.open_connection(*address)
    block = b"x" * (256 * 1024)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        writer.write(block)
        sent += len(block)
        await writer.drain()
    writer.write_eof()
    assert await reader.read() == b"done"
    elapsed = time.perf_counter() - start
    writer.close()
    return total / elapsed


async def _round_trips(address: Address, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection(*address)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        writer.write(b"p")
        await reader.readexactly(1)
        times.append(time.perf_counter() - start)
    writer.close()
    return times


async def _download(address: Address, size: int) -> float:
    reader, writer = await asyncio.open_connection(*address)
    start = time.perf_counter()
    got = 0
    first: float | None = None
    while data := await reader.read(65536):
        if first is None:
            first = time.perf_counter()
        got += len(data)
    elapsed = time.perf_counter() - start
    writer.close()
    assert got == size, (got, size)
    return size / elapsed


async def _load(address: Address, connections: int, size: int) -> tuple[int, float]:
    async def one(n: int) -> bool:
        payload = hashlib.sha256(str(n).encode()).digest() * (size // 32)
        reader, writer = await asyncio.open_connection(*address)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.ensure_future(send())
        echoed = await reader.read()
        await sender
        writer.close()
        return hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()

    start = time.perf_counter()
    results = await asyncio.gather(*(one(n) for n in range(connections)))
    return sum(results), time.perf_counter() - start


@contextlib.asynccontextmanager
async def _cli_proxy(upstream: Address) -> AsyncIterator[Address]:
    """Run ``nettest proxy`` in its own process, as for a program not written in Python."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from nettest._proxy_cli import cli_main; sys.exit(cli_main(sys.argv[1:]))",
        "--upstream",
        f"{upstream[0]}:{upstream[1]}",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = (await process.stdout.readline()).decode()
    host, _, port = line.split("listening on ")[1].split(" ")[0].rpartition(":")
    reader = asyncio.ensure_future(process.stdout.read())  # keep the pipe drained
    try:
        yield host, int(port)
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
        await reader


def _report(name: str, value: str, ratio: float, target: str, ok: bool) -> None:
    verdict = "ok" if ok else "MISSED"
    print(f"{name:<46} {value:<34} ratio {ratio:6.3f}  (target {target}) {verdict}")


async def main(quick: bool) -> None:
    total = (8 if quick else 64) * 1024 * 1024
    trips = 300 if quick else 3000

    # 1. Throughput: rounds alternate direct and proxied runs, so that a busy
    # machine slows both alike; the ratio is the median of the rounds' ratios.
    sink, sink_address = await _server(_Sink)
    proxy = await FaultProxy(sink_address).start()
    rounds = 3 if quick else 7
    direct, proxied, separate = [], [], []
    async with _cli_proxy(sink_address) as cli_address:
        for _ in range(rounds):
            direct.append(await _throughput(sink_address, total))
            proxied.append(await _throughput(proxy.address, total))
            separate.append(await _throughput(cli_address, total))
    ratio = statistics.median(p / d for p, d in zip(proxied, direct, strict=True))
    _report(
        "throughput, no faults (proxy / direct)",
        f"{statistics.median(proxied) / 2**20:.0f} vs "
        f"{statistics.median(direct) / 2**20:.0f} MiB/s",
        ratio,
        ">= 0.5",
        ratio >= 0.5,
    )
    ratio = statistics.median(p / d for p, d in zip(separate, direct, strict=True))
    _report(
        "  same, proxy in its own process (CLI)",
        f"{statistics.median(separate) / 2**20:.0f} vs "
        f"{statistics.median(direct) / 2**20:.0f} MiB/s",
        ratio,
        "info",
        True,
    )
    await proxy.aclose()
    sink.close()

    # 2. Added cost per round trip.
    echo, echo_address = await _server(_Echo)
    forwarder = Forwarder(echo_address)
    forwarder_address = await forwarder.start()
    proxy = await FaultProxy(echo_address).start()
    direct_rtt = statistics.median(await _round_trips(echo_address, trips))
    forwarder_rtt = statistics.median(await _round_trips(forwarder_address, trips))
    proxy_rtt = statistics.median(await _round_trips(proxy.address, trips))
    added_forwarder = forwarder_rtt - direct_rtt
    added_proxy = proxy_rtt - direct_rtt
    ratio = added_proxy / added_forwarder
    _report(
        "added cost per round trip (proxy / forwarder)",
        f"{added_proxy * 1e6:.0f} vs {added_forwarder * 1e6:.0f} us",
        ratio,
        "<= 1.5",
        ratio <= 1.5,
    )
    await proxy.aclose()

    # 3. Latency accuracy: one-way delay added downstream.
    samples = 20 if quick else 60
    plain = await FaultProxy(echo_address).start()
    delayed = await FaultProxy(echo_address, faults=[Latency(0.05)]).start()
    base = await _round_trips(plain.address, samples)
    slow = await _round_trips(delayed.address, samples)
    added = statistics.median(slow) - statistics.median(base)
    _report(
        "Latency(0.05): median added one-way delay",
        f"{added * 1e3:.2f} ms",
        added / 0.05,
        "1 +- 0.1 (50 +- 5 ms)",
        abs(added - 0.05) <= 0.005,
    )
    await plain.aclose()
    await delayed.aclose()
    await forwarder.aclose()
    echo.close()

    # 4. Bandwidth accuracy over 4 MiB.
    size = 4 * 1024 * 1024
    cap = (4 if quick else 2) * 1024 * 1024
    _Source.size = size
    source, source_address = await _server(_Source)
    proxy = await FaultProxy(source_address, faults=[Bandwidth(cap)]).start()
    rate = await _download(proxy.address, size)
    _report(
        f"Bandwidth({cap // 2**20} MiB/s) over 4 MiB",
        f"{rate / 2**20:.3f} MiB/s",
        rate / cap,
        "1 +- 0.1",
        abs(rate / cap - 1) <= 0.1,
    )
    await proxy.aclose()
    source.close()

    # 5. Load.
    connections, each = (50, 64 * 1024) if quick else (500, 256 * 1024)
    echo, echo_address = await _server(_Echo)
    proxy = await FaultProxy(echo_address).start()
    good, elapsed = await _load(proxy.address, connections, each)
    _report(
        f"load: {connections} x {each // 1024} KiB echoed, checksummed",
        f"{good}/{connections} intact in {elapsed:.2f} s",
        good / connections,
        "1.0",
        good == connections,
    )
    await proxy.aclose()
    echo.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run of a few seconds")
    asyncio.run(main(parser.parse_args().quick))
