"""Datagrams in memory: a pair of endpoints, and a transport where the test is the peer."""

import asyncio

import pytest

from nettest import MemoryDatagramTransport, memory_datagram_pair


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data.upper(), addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.replies = asyncio.Queue()
        self.errors = []

    def datagram_received(self, data, addr):
        self.replies.put_nowait((data, addr))

    def error_received(self, exc):
        self.errors.append(exc)


@pytest.mark.asyncio
async def test_an_echo_server_in_memory():
    client = Client()
    client_transport, server_transport = memory_datagram_pair(
        client, Echo(), address_b=("127.0.0.1", 7)
    )
    await asyncio.sleep(0)  # connection_made
    client_transport.sendto(b"ping")
    assert await client.replies.get() == (b"PING", ("127.0.0.1", 7))
    client_transport.close()
    server_transport.close()


@pytest.mark.asyncio
async def test_the_test_plays_the_server():
    client = Client()
    transport = MemoryDatagramTransport(client, remote_addr=("127.0.0.1", 53))
    await asyncio.sleep(0)
    transport.sendto(b"query")
    assert transport.take_sent() == [(b"query", ("127.0.0.1", 53))]
    transport.feed_error(ConnectionRefusedError(111, "Connection refused"))  # ICMP
    await asyncio.sleep(0)
    assert isinstance(client.errors[0], ConnectionRefusedError)
    transport.close()
