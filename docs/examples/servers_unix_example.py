"""Unix servers: short private paths, the abstract namespace, Unix datagrams."""

import asyncio
import socket
import sys

import pytest

import nettest
from nettest import handlers


@pytest.mark.asyncio
async def test_unix_stream(unix_server):
    server = await unix_server(handlers.echo)
    assert len(server.path.encode()) <= 107  # under /tmp, whatever tmp_path is
    reader, writer = await asyncio.open_unix_connection(server.path)
    writer.write(b"local")
    assert await reader.readexactly(5) == b"local"
    writer.close()
    await writer.wait_closed()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
@pytest.mark.asyncio
async def test_abstract_namespace(unix_server):
    server = await unix_server(handlers.echo, abstract=True)
    assert server.path.startswith("\0")  # nothing on disk to clean up
    _, writer = await asyncio.open_unix_connection(server.path)
    writer.close()
    await writer.wait_closed()


def test_a_path_too_long_names_the_limit():
    with pytest.raises(ValueError, match="byte limit of sun_path"):
        nettest.UnixServer(path="/tmp/" + "x" * 200)


@pytest.mark.asyncio
async def test_a_server_of_your_own(unix_socket_path):
    async def hello(reader, writer):
        writer.write(b"hello")
        writer.close()

    server = await asyncio.start_unix_server(hello, unix_socket_path)
    async with server:
        reader, writer = await asyncio.open_unix_connection(unix_socket_path)
        assert await reader.read() == b"hello"
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_unix_datagrams(unix_datagram_server):
    server = await unix_datagram_server(handlers.sink)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"<13>log line", server.path)
        (datagram,) = await server.wait_for_datagrams(1)
    assert datagram.data == b"<13>log line"
