"""Servers as async context managers: in a hypothesis example or a plain script."""

import asyncio

import nettest
from nettest import handlers


async def ask(line: bytes) -> tuple[bytes, str]:
    async with nettest.TCPServer(handlers.echo) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(line)
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
        (conn,) = await server.wait_for_connections(1)
        await conn.wait_closed()
    return reply, server.transcript()  # closed on leaving the block


def test_in_a_plain_function():
    reply, transcript = asyncio.run(ask(b"hi\n"))
    assert reply == b"hi\n"
    assert "client  b'hi\\n'" in transcript


async def udp_roundtrip() -> bytes:
    async with nettest.UDPServer(handlers.echo) as server:
        loop = asyncio.get_running_loop()
        received = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                received.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=server.address)
        transport.sendto(b"dgram")
        try:
            return await asyncio.wait_for(received, 5)
        finally:
            transport.close()


def test_udp_in_a_plain_function():
    assert asyncio.run(udp_roundtrip()) == b"dgram"
