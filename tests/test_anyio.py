"""Tests that anyio's pytest plugin runs (``@pytest.mark.anyio``) use nettest as others do.

anyio runs such a test on a loop of its own, while pytest-asyncio sets up
nettest's async fixtures on its loop: servers and proxies started in the test
are closed on the test's loop, and the hygiene gate's stacks leave anyio's
runner out, as they leave out pytest-asyncio's.
"""

from __future__ import annotations

import os

import pytest

from test_hygiene import MODES, run

pytest.importorskip("anyio")

ANYIO_TESTS = """
import asyncio
import pytest
from nettest import handlers, memory_stream_pair
from nettest.faults import Latency

pytestmark = pytest.mark.anyio

@pytest.fixture
def anyio_backend():
    return "asyncio"

async def test_server_and_proxy(tcp_server, fault_proxy, tls_server_context, tls_client_context):
    server = await tcp_server(handlers.echo, ssl=tls_server_context)
    proxy = await fault_proxy(upstream=server, faults=[Latency(0.01)])
    reader, writer = await asyncio.open_connection(
        *proxy.address, ssl=tls_client_context, server_hostname="localhost"
    )
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.close()
    await writer.wait_closed()
    await server.wait_for_connections(1)
    assert server.connections[0].received == b"ping"

async def test_server_left_with_a_client_connected(tcp_server):
    server = await tcp_server(handlers.echo)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    writer.close()

async def test_udp_server(udp_server):
    server = await udp_server(handlers.echo)
    received = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            received.put_nowait(data)

    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        Client, remote_addr=server.address
    )
    transport.sendto(b"hello")
    assert await asyncio.wait_for(received.get(), 10) == b"hello"
    transport.close()

async def test_memory_streams():
    (client_reader, client_writer), (server_reader, server_writer) = memory_stream_pair()
    client_writer.write(b"x")
    await client_writer.drain()
    assert await server_reader.readexactly(1) == b"x"
    for writer in (client_writer, server_writer):
        writer.close()
        await writer.wait_closed()

leaked = []

async def test_leaks_a_socket():
    reader, writer = await asyncio.open_connection(*LISTENER.getsockname())
    leaked.append(writer)

def test_after_it():
    LISTENER.close()

import socket
LISTENER = socket.create_server(("127.0.0.1", 0))
"""


@MODES
def test_anyio_tests_use_servers_proxies_and_memory_pairs(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    result = run(
        pytester,
        ANYIO_TESTS,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
        "-W",
        "error::ResourceWarning",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
        subprocess=True,
    )
    result.assert_outcomes(passed=6, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_socket*",
            # pytest-asyncio before 1.4 makes the policy's loop implicitly: the
            # gate's collection may finalise it here too.
            "*test_leaks_a_socket left * behind (--nettest-leaks=strict):",
            "*- open socket <socket.socket*, created at:",
            "*test_leaky.py*, in test_leaks_a_socket",
            "*reader, writer = await asyncio.open_connection(*LISTENER.getsockname())",
        ]
    )
    # The stack starts at the test: anyio's runner is left out, as pytest-asyncio's is.
    report = result.stdout.str().split("ERROR at teardown")[1].split("short test summary")[0]
    assert f"{os.sep}anyio{os.sep}" not in report
