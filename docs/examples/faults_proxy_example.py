"""A client tested through the fault proxy: retries after a reset, a slow link, a dead server."""

import asyncio

import pytest
import pytest_asyncio

from nettest import faults


async def fetch(address, request, *, attempts=2):
    """The code under test: send a request, read the reply, retry once after a reset."""
    for attempt in range(attempts):
        try:
            reader, writer = await asyncio.open_connection(*address)
            try:
                writer.write(request)
                writer.write_eof()
                return await reader.read()
            finally:
                writer.close()
        except ConnectionResetError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest_asyncio.fixture
async def echo_server():
    async def echo(reader, writer):
        writer.write(await reader.read())
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()


@pytest.mark.asyncio
async def test_fetch_retries_after_a_reset(fault_proxy, echo_server):
    # Only the first connection is reset, after its first byte.
    reset_first = faults.Reset(after_bytes=1, trigger=faults.Trigger(connection=1))
    proxy = await fault_proxy(upstream=echo_server, faults=[reset_first])
    assert await fetch(proxy.address, b"ping") == b"ping"
    assert len(proxy.traces) == 2
    assert proxy.traces[0].fired == [repr(reset_first)]


@pytest.mark.asyncio
async def test_fetch_over_a_slow_link(fault_proxy, echo_server):
    proxy = await fault_proxy(upstream=echo_server, faults=[faults.Latency(0.1)])
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await fetch(proxy.address, b"ping") == b"ping"
    # A timer may fire up to the clock's resolution early (uvloop's: 1 ms).
    assert loop.time() - start >= 0.1 - 0.001


@pytest.mark.asyncio
async def test_fetch_while_the_server_is_down(fault_proxy, echo_server):
    proxy = await fault_proxy(upstream=echo_server)
    await proxy.down()
    with pytest.raises(ConnectionRefusedError):
        await fetch(proxy.address, b"ping")
    await proxy.up()
    assert await fetch(proxy.address, b"ping") == b"ping"


@pytest.mark.asyncio
async def test_faults_change_during_the_test(fault_proxy, echo_server):
    proxy = await fault_proxy(upstream=echo_server)
    truncate = faults.Truncate(2)
    proxy.add(truncate)
    assert await fetch(proxy.address, b"ping") == b"pi"
    proxy.remove(truncate)
    assert await fetch(proxy.address, b"ping") == b"ping"
