"""Run the transport conformance suite on transports of your own making."""

import asyncio
import contextlib
import socket

import pytest

from nettest import CONFORMANCE_CASES, check_transport_case, check_transport_pair


@contextlib.asynccontextmanager
async def tcp_pair(client_factory, server_factory):
    """Connect a client to a server over loopback TCP, with the protocols the suite gives."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(server_factory, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        await loop.create_connection(client_factory, "127.0.0.1", port)
        yield  # the suite runs one case here, then closes both transports
    finally:
        server.close()


@pytest.mark.asyncio
async def test_tcp_transports_conform():
    # Every case, one after the other; the first failure names its case.
    await check_transport_pair(tcp_pair)


@contextlib.asynccontextmanager
async def socketpair_pair(client_factory, server_factory):
    """Wrap both ends of a socket.socketpair() in the loop's transports."""
    loop = asyncio.get_running_loop()
    client_sock, server_sock = socket.socketpair()
    await loop.create_connection(client_factory, sock=client_sock)
    await loop.connect_accepted_socket(server_factory, server_sock)
    yield


@pytest.mark.asyncio
@pytest.mark.parametrize("case", CONFORMANCE_CASES)
async def test_socketpair_transports_conform(case, nettest_seed):
    # One test per case: each failure shows in the test id, and the others still run.
    await check_transport_case(socketpair_pair, case, seed=nettest_seed)


@pytest.mark.parametrize("loop_module", ["asyncio", "uvloop"])
def test_transports_conform_on_each_loop(loop_module):
    # The same factory on each loop: the suite only uses the running loop.
    loop = pytest.importorskip(loop_module).new_event_loop()
    try:
        loop.run_until_complete(check_transport_pair(tcp_pair))
    finally:
        loop.close()
