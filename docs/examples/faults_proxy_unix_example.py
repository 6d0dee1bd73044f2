"""A client of a daemon's Unix admin socket, behind the fault proxy."""

import asyncio

import pytest

from nettest import handlers
from nettest.faults import Latency


async def status(path, timeout=1.0):
    """The admin client under test: ask a daemon for its status line."""
    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except ConnectionRefusedError:
        return "daemon not running"
    try:
        writer.write(b"status\n")
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.decode().strip()
    except asyncio.TimeoutError:
        return "daemon not answering"
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_the_admin_client_through_a_slow_and_a_dead_daemon(unix_server, fault_proxy):
    daemon = handlers.script(handlers.expect_line(b"status"), handlers.send(b"ok\n"))
    server = await unix_server(daemon)
    proxy = await fault_proxy(server, unix=True)
    assert await status(proxy.path) == "ok"

    proxy.add(Latency(2.0))  # slower than the client waits
    assert await status(proxy.path, timeout=0.2) == "daemon not answering"

    proxy.clear()
    await proxy.down()  # the socket file stays, as a dead daemon's does
    assert await status(proxy.path) == "daemon not running"
