"""A client's connect timeout, tested on loopback: the port never answers the SYN."""

import asyncio
import socket

import pytest


class Unavailable(Exception):
    """The code under test raises this when the server cannot be reached."""


async def connect(address, *, timeout, attempts=2):
    """The code under test: try a few times, each with a connect timeout."""
    for _ in range(attempts):
        try:
            return await asyncio.wait_for(asyncio.open_connection(*address), timeout)
        except (TimeoutError, asyncio.TimeoutError, ConnectionRefusedError):
            continue
    raise Unavailable(f"no answer from {address} after {attempts} attempts")


@pytest.mark.asyncio
async def test_connect_gives_up_after_its_timeouts(blackhole_port):
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(Unavailable):
        await connect(blackhole_port.address, timeout=0.1)
    assert loop.time() - start >= 0.2  # it waited out both attempts


def test_a_blocking_client_times_out_too(blackhole_port):
    with pytest.raises(TimeoutError):
        socket.create_connection(blackhole_port.address, timeout=0.1)
