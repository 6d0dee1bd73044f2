"""FaultProxy in front of nettest's own loopback servers."""

from __future__ import annotations

import asyncio

import pytest

from nettest._faults import Drop, Latency, Reset, Trigger, Truncate
from nettest._proxy import FaultProxyFactory
from nettest._servers import TCPServerFactory, UnixServerFactory, tcp_server, unix_server
from nettest._udp import UDPServerFactory, udp_server

__all__ = ["tcp_server", "udp_server", "unix_server"]  # fixtures used below


@pytest.mark.asyncio
async def test_proxy_in_front_of_tcp_server(
    fault_proxy: FaultProxyFactory, tcp_server: TCPServerFactory
) -> None:
    server = await tcp_server()
    proxy = await fault_proxy(upstream=server, faults=[Latency(0.01, direction="both")])
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    writer.close()
    await writer.wait_closed()
    assert proxy.traces[0].fired == ["Latency(delay=0.01, direction='both')"]


@pytest.mark.asyncio
async def test_proxy_resets_in_front_of_tcp_server(
    fault_proxy: FaultProxyFactory, tcp_server: TCPServerFactory
) -> None:
    server = await tcp_server()
    proxy = await fault_proxy(
        upstream=server.address,
        faults=[Reset(trigger=Trigger(pattern=b"!"))],
    )
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(b"hi!")
    assert await asyncio.wait_for(reader.readexactly(3), 5) == b"hi!"
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 5)
    writer.close()
    with pytest.raises(ConnectionResetError):
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_proxy_in_front_of_udp_server(
    fault_proxy: FaultProxyFactory, udp_server: UDPServerFactory
) -> None:
    server = await udp_server()
    proxy = await fault_proxy(
        upstream=server,
        kind="udp",
        faults=[Drop(direction="upstream", trigger=Trigger(connection=2))],
    )
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            received.put_nowait(data)

    first, _ = await loop.create_datagram_endpoint(Client, remote_addr=proxy.address)
    second, _ = await loop.create_datagram_endpoint(Client, remote_addr=proxy.address)
    try:
        first.sendto(b"one")
        assert await asyncio.wait_for(received.get(), 5) == b"one"
        second.sendto(b"two")  # the second client's flow drops everything upstream
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(received.get(), 0.2)
    finally:
        first.close()
        second.close()
        await asyncio.sleep(0)
    assert [d.data for d in server.datagrams] == [b"one"]


@pytest.mark.asyncio
async def test_proxy_in_front_of_unix_server(
    fault_proxy: FaultProxyFactory, unix_server: UnixServerFactory
) -> None:
    server = await unix_server()
    proxy = await fault_proxy(upstream=server, faults=[Truncate(2)])
    assert proxy.upstream == server.address
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.read(), 5) == b"pi"
    writer.close()
    await writer.wait_closed()
    assert server.address in repr(proxy)
