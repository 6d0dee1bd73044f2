"""nettest's fixtures in a test that anyio's pytest plugin runs."""

import anyio
import pytest

from nettest import handlers


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_echo_over_anyio(tcp_server):
    server = await tcp_server(handlers.echo)
    async with await anyio.connect_tcp(*server.address) as stream:
        await stream.send(b"ping")
        echoed = b""
        while len(echoed) < 4:
            echoed += await stream.receive()
        assert echoed == b"ping"
    await server.wait_for_connections(1)
    assert server.connections[0].received == b"ping"
