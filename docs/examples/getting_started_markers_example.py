"""Markers: pin one test's seed, and set one test's hygiene gate."""

import asyncio
import random
import socket

import pytest

from nettest import handlers

REPLICAS = ["db1", "db2", "db3", "db4"]


def failover_order(replicas, rng):
    """The client under test tries its replicas in a random order."""
    order = list(replicas)
    rng.shuffle(order)
    return order


@pytest.mark.nettest_seed(1234)
def test_the_order_that_once_failed(nettest_seed):
    # A failure printed its seed; pinning it replays that order in every session.
    assert nettest_seed == 1234
    order = failover_order(REPLICAS, random.Random(nettest_seed))
    assert order == failover_order(REPLICAS, random.Random(1234))
    assert sorted(order) == REPLICAS


class Pool:
    """Keeps connections open between requests, on purpose."""

    def __init__(self):
        self.idle = {}

    def connection(self, address):
        if address not in self.idle:
            self.idle[address] = socket.create_connection(address, timeout=10)
        return self.idle[address]

    def close(self):
        for sock in self.idle.values():
            sock.close()


@pytest.fixture(scope="module")
def connection_pool():
    pool = Pool()
    yield pool
    pool.close()  # what the test leaves open is closed here, with the module


@pytest.mark.nettest_leaks("off")
def test_the_pool_reuses_its_connection(connection_pool, bound_tcp_socket):
    # The socket outlives the test by design: no gate should call it a leak,
    # not even in a --nettest-leaks=strict session.
    first = connection_pool.connection(bound_tcp_socket.address)
    assert connection_pool.connection(bound_tcp_socket.address) is first


async def ping(address):
    """The client under test: one request, with a watchdog task it must not leave behind."""
    reader, writer = await asyncio.open_connection(*address)
    watchdog = asyncio.create_task(asyncio.sleep(10))
    try:
        writer.write(b"ping\n")
        return await reader.readline()
    finally:
        watchdog.cancel()
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
@pytest.mark.nettest_leaks("strict")
async def test_ping_leaves_nothing_behind(tcp_server):
    # Strict for this test alone: a socket it left open or a task still
    # pending at its end would fail it, whatever the session's mode.
    server = await tcp_server(handlers.echo)
    assert await ping(server.address) == b"ping\n"
