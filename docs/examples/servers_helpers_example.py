"""A UDP server given a pre-bound socket, an IPv6 skip, and a script that waits for EOF."""

import asyncio

import pytest

import nettest
from nettest import handlers


class Receiver(asyncio.DatagramProtocol):
    """Echoes every datagram (as a server under test), or collects them (as a client)."""

    def __init__(self, echo=False):
        self.echo = echo
        self.datagrams = asyncio.Queue()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams.put_nowait(data)
        if self.echo:
            self.transport.sendto(data, addr)

    def connection_lost(self, exc):
        self.closed.set_result(exc)


@pytest.mark.asyncio
async def test_a_udp_server_on_a_pre_bound_socket(bound_udp_socket):
    loop = asyncio.get_running_loop()
    # The server under test takes the socket: the port was never free for anyone else.
    server, _ = await loop.create_datagram_endpoint(
        lambda: Receiver(echo=True), sock=bound_udp_socket.socket
    )
    client, replies = await loop.create_datagram_endpoint(
        Receiver, remote_addr=bound_udp_socket.address
    )
    client.sendto(b"ping")
    assert await asyncio.wait_for(replies.datagrams.get(), 5) == b"ping"
    for transport in (client, server):
        transport.close()
        await transport.get_protocol().closed
    assert bound_udp_socket.closed  # the transport closed the socket it was given


needs_ipv6 = pytest.mark.skipif(
    not nettest.has_ipv6_loopback(), reason="this host has no IPv6 loopback (::1)"
)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
async def test_a_server_of_your_own_on_both_families(host):
    # nettest's fixtures skip by themselves where ::1 is missing; code of your
    # own that binds ::1 needs the check.
    async def greet(reader, writer):
        writer.write(b"hello\n")
        writer.close()
        await writer.wait_closed()

    async with await asyncio.start_server(greet, host, 0) as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(host, port)
        assert await reader.read() == b"hello\n"
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_the_client_half_closes_before_the_reply(tcp_server):
    # An upload protocol: the client sends everything, shuts down its side, then
    # reads the server's verdict.  expect_eof() fails the test if it sends more.
    server = await tcp_server(
        handlers.script(
            handlers.expect(b"upload:1234"),
            handlers.expect_eof(),
            handlers.send(b"stored 4 bytes\n"),
        )
    )
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"upload:1234")
    writer.write_eof()
    assert await reader.read() == b"stored 4 bytes\n"
    writer.close()
    await writer.wait_closed()
    (conn,) = await server.wait_for_connections(1)
    assert await conn.wait_closed() is nettest.Ending.EOF


@pytest.mark.asyncio
async def test_a_client_that_never_half_closes_is_caught():
    script = handlers.script(handlers.expect(b"upload:1234"), handlers.expect_eof(timeout=0.1))
    server = await nettest.TCPServer(script).start()
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"upload:1234")  # ...and waits for a verdict without write_eof()
    assert await reader.read() == b""  # the script gave up and closed
    writer.close()
    await writer.wait_closed()
    # With the tcp_server fixture this is raised at the test's teardown.
    with pytest.raises(nettest.HandlerError, match=r"expect_eof\(\): nothing matching arrived"):
        await server.aclose()
