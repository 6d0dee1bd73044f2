"""UDP servers: an asyncio UDP client, a script, a reply function, multicast, broadcast."""

import asyncio
import socket

import pytest

import nettest
from nettest import handlers


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.replies = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.replies.put_nowait(data)


@pytest.mark.asyncio
async def test_udp_client(udp_server):
    server = await udp_server(handlers.echo)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, remote_addr=server.address)
    transport.sendto(b"ping")
    assert await asyncio.wait_for(client.replies.get(), 5) == b"ping"
    transport.close()
    (datagram,) = await server.wait_for_datagrams(1)
    assert datagram.data == b"ping"
    assert datagram.peer == transport.get_extra_info("sockname")


@pytest.mark.asyncio
async def test_scripted_datagrams(udp_server):
    server = await udp_server(
        handlers.script(
            handlers.expect(b"\x01HELLO"),
            handlers.send(b"\x02WELCOME"),
        )
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        sock.sendto(b"\x01HELLO", server.address)
        assert await asyncio.wait_for(loop.sock_recv(sock, 100), 5) == b"\x02WELCOME"


@pytest.mark.asyncio
async def test_a_reply_function(udp_server):
    # A DNS-style server: each answer copies the query's 2-byte id.
    def answer(query, addr):
        return query[:2] + b"\x81\x80" + query[4:]

    server = await udp_server(answer)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        sock.sendto(b"\xbe\xef\x01\x00example", server.address)
        reply = await asyncio.wait_for(loop.sock_recv(sock, 100), 5)
        assert reply == b"\xbe\xef\x81\x80example"


@pytest.mark.asyncio
async def test_multicast_receiver(udp_server):
    # An SSDP-style listener: joins 239.255.255.250 on the loopback interface.
    server = await udp_server(handlers.sink, group="239.255.255.250")
    search = b'M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\n\r\n'
    with nettest.multicast_socket("127.0.0.1") as sender:
        sender.sendto(search, server.address)  # ("239.255.255.250", port)
        (datagram,) = await server.wait_for_datagrams(1)
    assert datagram.data == search


@pytest.mark.asyncio
async def test_broadcast_receiver(udp_server):
    server = await udp_server(handlers.sink, host="127.255.255.255")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(b"anyone there?", server.address)
        (datagram,) = await server.wait_for_datagrams(1)
    assert datagram.data == b"anyone there?"
