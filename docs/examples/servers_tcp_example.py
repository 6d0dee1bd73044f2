"""TCP servers with asyncio clients: echo and recordings, scripts, errors at teardown."""

import asyncio

import pytest

import nettest
from nettest import handlers


@pytest.mark.asyncio
async def test_echo_and_what_the_server_saw(tcp_server):
    server = await tcp_server(handlers.echo)
    reader, writer = await asyncio.open_connection(*server.address)  # ("127.0.0.1", port)
    writer.write(b"hello ")
    writer.write(b"world")
    assert await reader.readexactly(11) == b"hello world"
    writer.write_eof()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()

    (conn,) = await server.wait_for_connections(1)
    assert await conn.wait_closed() is nettest.Ending.EOF  # the client closed first
    assert conn.received == b"hello world"
    assert conn.sent == b"hello world"
    print(server.transcript())


@pytest.mark.asyncio
async def test_wait_for_bytes_whatever_the_chunking(tcp_server):
    server = await tcp_server(handlers.sink)
    _, writer = await asyncio.open_connection(*server.address)
    for chunk in (b"GET / HT", b"TP/1.1\r\n", b"\r\n"):
        writer.write(chunk)
    (conn,) = await server.wait_for_connections(1)
    await conn.wait_for(b"\r\n\r\n")  # times out with a message showing what came
    assert conn.received == b"GET / HTTP/1.1\r\n\r\n"
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_a_scripted_line_protocol(tcp_server):
    server = await tcp_server(
        handlers.script(
            handlers.send(b"220 ready\r\n"),
            handlers.expect_line(b"HELO client"),
            handlers.send(b"250 hello\r\n"),
            handlers.expect_line(b"QUIT"),
            handlers.send(b"221 bye\r\n"),
            handlers.close,
        )
    )
    reader, writer = await asyncio.open_connection(*server.address)
    assert await reader.readline() == b"220 ready\r\n"
    writer.write(b"HELO client\r\n")
    assert await reader.readline() == b"250 hello\r\n"
    writer.write(b"QUIT\r\n")
    assert await reader.read() == b"221 bye\r\n"
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_handler_errors_come_back_at_teardown():
    async def parse(reader, writer):
        header = await reader.readexactly(4)
        raise ValueError(f"bad magic {header!r}")

    server = await nettest.TCPServer(parse).start()
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"ELF!")
    assert await reader.read() == b""  # the server closed the connection
    writer.close()
    await writer.wait_closed()
    # With the tcp_server fixture this is raised at the test's teardown.
    with pytest.raises(nettest.HandlerError, match=r"bad magic b'ELF!'"):
        await server.aclose()


async def connect_and_read(address):
    reader, writer = await asyncio.open_connection(*address)
    try:
        return await reader.read()
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_client_sees_a_reset(tcp_server):
    server = await tcp_server(handlers.reset)  # accept, then RST via SO_LINGER(1, 0)
    with pytest.raises(ConnectionResetError):  # on connecting or reading: a race
        await connect_and_read(server.address)
    (conn,) = await server.wait_for_connections(1)
    assert await conn.wait_closed() is nettest.Ending.ABORTED


@pytest.mark.asyncio
async def test_tls(tcp_server, tls_server_context, tls_client_context):
    server = await tcp_server(handlers.echo, ssl=tls_server_context)
    reader, writer = await asyncio.open_connection(
        *server.address, ssl=tls_client_context, server_hostname="localhost"
    )
    writer.write(b"secret")
    assert await reader.readexactly(6) == b"secret"
    writer.close()
    await writer.wait_closed()
    assert server.connections[0].received == b"secret"  # recorded in clear
