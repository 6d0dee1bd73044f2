"""What nettest's servers cost against bare asyncio servers, measured in the same run.

1. Start plus stop of each server kind, against ``asyncio.start_server``,
   ``loop.create_datagram_endpoint`` and ``asyncio.start_unix_server`` (target:
   at most 1.5x).
2. Load: N concurrent clients each echoing 16 KiB through nettest's echo
   TCPServer (recording every byte), against a bare asyncio echo server.

Each measurement runs `--repeat` times, interleaved with its baseline, and the
fastest run counts.

    python benchmarks/bench_servers.py [--cycles N] [--clients N] [--repeat R] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable

from nettest._handlers import echo
from nettest._servers import TCPServer, UnixServer
from nettest._udp import UDPServer

PAYLOAD = 16 * 1024
#: A server's start plus stop costs at most this many times asyncio's own.
START_STOP_TARGET = 1.5


async def _noop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def bare_tcp() -> None:
    server = await asyncio.start_server(_noop, "127.0.0.1", 0)
    server.close()
    await server.wait_closed()


async def nettest_tcp() -> None:
    server = await TCPServer(echo).start()
    await server.aclose()


async def bare_udp() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    transport.close()
    await asyncio.sleep(0)


async def nettest_udp() -> None:
    server = await UDPServer(echo).start()
    await server.aclose()


async def bare_unix() -> None:
    # Like nettest, a fresh private directory per server, removed afterwards.
    directory = tempfile.mkdtemp(prefix="nt-", dir="/tmp")
    server = await asyncio.start_unix_server(_noop, os.path.join(directory, "s"))
    server.close()
    await server.wait_closed()
    shutil.rmtree(directory)


async def nettest_unix() -> None:
    server = await UnixServer(echo).start()
    await server.aclose()


async def _cycles(fn: Callable[[], Awaitable[None]], cycles: int) -> float:
    started = time.perf_counter()
    for _ in range(cycles):
        await fn()
    return (time.perf_counter() - started) / cycles


async def _bare_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _client(address: tuple[str, int], payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(payload)
    writer.write_eof()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def _load(nettest: bool, payloads: list[bytes]) -> float:
    if nettest:
        server = await TCPServer(echo, backlog=len(payloads)).start()
        address = server.address
    else:
        bare = await asyncio.start_server(_bare_echo, "127.0.0.1", 0, backlog=len(payloads))
        address = bare.sockets[0].getsockname()[:2]
    started = time.perf_counter()
    replies = await asyncio.gather(*(_client(address, p) for p in payloads))
    elapsed = time.perf_counter() - started
    if replies != payloads:
        raise AssertionError("echo mismatch")
    if nettest:
        await server.aclose()
    else:
        bare.close()
        await bare.wait_closed()
    return elapsed


def _ratio_line(name: str, value: float, baseline: float, unit: str, scale: float) -> str:
    return f"  {name:<34} {value * scale:9.1f} {unit}   ratio {value / baseline:5.2f}x"


async def main(cycles: int, clients: int, repeat: int, judged: bool) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * clients + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * clients + 256), hard))
    print(f"start+stop, {cycles} cycles each, best of {repeat} (microseconds per cycle):")
    kinds = [
        ("TCP", bare_tcp, nettest_tcp, "asyncio.start_server"),
        ("UDP", bare_udp, nettest_udp, "create_datagram_endpoint"),
        ("Unix", bare_unix, nettest_unix, "asyncio.start_unix_server"),
    ]
    for name, bare, ours, bare_name in kinds:
        best_bare = best_ours = float("inf")
        for _ in range(repeat):
            best_bare = min(best_bare, await _cycles(bare, cycles))
            best_ours = min(best_ours, await _cycles(ours, cycles))
        print(_ratio_line(f"{bare_name} (baseline)", best_bare, best_bare, "us", 1e6))
        ratio = best_ours / best_bare
        verdict = "ok" if ratio <= START_STOP_TARGET else "MISSED"
        if not judged:
            verdict = "not judged: too short a run"
        print(
            _ratio_line(f"nettest {name}Server", best_ours, best_bare, "us", 1e6)
            + f"  (target <= {START_STOP_TARGET}x) {verdict}"
        )
    rng = random.Random(0)
    payloads = [rng.randbytes(PAYLOAD) for _ in range(clients)]
    print(f"load: {clients} concurrent clients x {PAYLOAD} bytes echoed, best of {repeat}:")
    best_bare = best_ours = float("inf")
    for _ in range(repeat):
        best_bare = min(best_bare, await _load(False, payloads))
        best_ours = min(best_ours, await _load(True, payloads))
    print(_ratio_line("bare asyncio echo (baseline)", best_bare, best_bare, "ms", 1e3))
    print(_ratio_line("nettest TCPServer(echo), recorded", best_ours, best_bare, "ms", 1e3))
    total = 2 * clients * PAYLOAD / best_ours / 2**20
    print(f"  nettest throughput: {total:.0f} MiB/s through the loop (both directions)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny run, a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.cycles, args.clients, args.repeat = 30, 100, 1
    for option in ("cycles", "clients", "repeat"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be >= 1, got {getattr(args, option)}")
    asyncio.run(main(args.cycles, args.clients, args.repeat, judged=not args.quick))
