"""Datagram faults through the proxy: lost, duplicated and refused datagrams."""

import asyncio

import pytest
import pytest_asyncio

from nettest import faults


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.replies = asyncio.Queue()
        self.errors = []

    def datagram_received(self, data, addr):
        self.replies.put_nowait(data)

    def error_received(self, exc):
        self.errors.append(exc)


@pytest_asyncio.fixture
async def udp_echo():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")
    transport.close()


@pytest.mark.asyncio
async def test_duplicated_replies(fault_proxy, udp_echo):
    proxy = await fault_proxy(upstream=udp_echo, kind="udp", faults=[faults.Duplicate()])
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=proxy.address)
    transport.sendto(b"ping")
    assert await client.replies.get() == b"ping"
    assert await client.replies.get() == b"ping"  # the same reply, twice
    transport.close()


@pytest.mark.asyncio
async def test_a_lost_request(fault_proxy, udp_echo):
    lose_all = faults.Drop(direction="upstream")
    proxy = await fault_proxy(upstream=udp_echo, kind="udp", faults=[lose_all])
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=proxy.address)
    transport.sendto(b"ping")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.replies.get(), 0.2)
    assert proxy.traces[0].fired == ["Drop(direction='upstream')"]
    transport.close()


@pytest.mark.asyncio
async def test_the_first_reply_is_lost_and_the_retry_answered(fault_proxy, udp_echo):
    # Drop by number: the first datagram from the server is lost, the rest go through.
    first_reply = faults.Drop(datagrams=(1,))
    proxy = await fault_proxy(upstream=udp_echo, kind="udp", faults=[first_reply])
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=proxy.address)
    transport.sendto(b"ping")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.replies.get(), 0.2)
    transport.sendto(b"ping again")  # what a client's retry does
    assert await client.replies.get() == b"ping again"
    transport.close()


@pytest.mark.asyncio
async def test_port_unreachable(fault_proxy, udp_echo):
    proxy = await fault_proxy(upstream=udp_echo, kind="udp")
    await proxy.down()  # the port is closed: the kernel answers with ICMP
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=proxy.address)
    transport.sendto(b"ping")
    for _ in range(100):
        if client.errors:
            break
        await asyncio.sleep(0.01)
    assert isinstance(client.errors[0], ConnectionRefusedError)
    transport.close()
