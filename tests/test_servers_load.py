"""A bounded load test: 1,000 concurrent clients, 16 KiB each, against an echo tcp_server."""

# ruff: noqa: F811  (fixtures imported from their module are redefined as parameters)

from __future__ import annotations

import asyncio
import random
import time

import pytest

from nettest import handlers
from nettest._recording import Ending
from nettest._servers import TCPServerFactory, tcp_server  # noqa: F401

CLIENTS = 1000
PAYLOAD = 16 * 1024
#: The whole exchange must end within this many seconds, or the test fails.
DEADLINE = 60.0


def _ensure_fds(needed: int) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        pytest.skip("needs the resource module to check the descriptor limit")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def _client(address: tuple[str, int], payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(payload)
        writer.write_eof()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_thousand_concurrent_echo_clients(
    tcp_server: TCPServerFactory, nettest_seed: int
) -> None:
    _ensure_fds(2 * CLIENTS + 256)
    rng = random.Random(nettest_seed)
    payloads = [rng.randbytes(PAYLOAD) for _ in range(CLIENTS)]
    server = await tcp_server(handlers.echo, backlog=CLIENTS)
    started = time.monotonic()
    replies = await asyncio.wait_for(
        asyncio.gather(*(_client(server.address, p) for p in payloads)), DEADLINE
    )
    elapsed = time.monotonic() - started
    # Every byte came back, to the right client, in order.
    assert [len(r) for r in replies] == [PAYLOAD] * CLIENTS
    assert replies == payloads
    conns = server.connections
    assert len(conns) == CLIENTS
    for conn in conns:
        await conn.wait_closed()
    assert sorted(c.received for c in conns) == sorted(payloads)
    assert all(c.sent == c.received for c in conns)
    assert all(c.ending is Ending.EOF for c in conns)
    print(f"{CLIENTS} clients x {PAYLOAD} bytes echoed in {elapsed:.2f} s")
