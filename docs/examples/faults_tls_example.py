"""TLS through the fault proxy: the faults act on the encrypted bytes, handshake included."""

import asyncio
import contextlib
import ssl

import pytest
import pytest_asyncio

from nettest import faults


async def fetch(address, context, request, *, handshake_timeout=None):
    """The code under test: one request over TLS, one line of reply."""
    reader, writer = await asyncio.open_connection(
        *address,
        ssl=context,
        server_hostname="localhost",
        ssl_handshake_timeout=handshake_timeout,
    )
    try:
        writer.write(request)
        return await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


async def echo(reader, writer):
    writer.write(b"echo " + await reader.readline())
    await writer.drain()


@pytest_asyncio.fixture
async def tls_echo(tcp_server, tls_server_context):
    server = await tcp_server(echo, ssl=tls_server_context)
    return server.address


@pytest.mark.asyncio
async def test_the_handshake_survives_one_byte_reads(fault_proxy, tls_echo, tls_client_context):
    proxy = await fault_proxy(upstream=tls_echo, faults=[faults.Slice(1, direction="both")])
    assert await fetch(proxy.address, tls_client_context, b"hi\n") == b"echo hi\n"
    (trace,) = proxy.traces
    assert trace.downstream_bytes > 500  # the certificate chain, one byte per read


@pytest.mark.asyncio
async def test_a_stalled_handshake_times_out(fault_proxy, tls_echo, tls_client_context):
    # The server's hello never arrives: only the handshake timeout ends the wait.
    proxy = await fault_proxy(upstream=tls_echo, faults=[faults.Stall(direction="downstream")])
    with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
        await fetch(proxy.address, tls_client_context, b"hi\n", handshake_timeout=0.2)


@pytest.mark.asyncio
async def test_a_reset_in_the_middle_of_the_handshake(fault_proxy, tls_echo, tls_client_context):
    # 100 bytes into the server's first flight: inside its hello.
    reset = faults.Reset(after_bytes=100, direction="downstream")
    proxy = await fault_proxy(upstream=tls_echo, faults=[reset])
    with pytest.raises(ConnectionResetError):
        await fetch(proxy.address, tls_client_context, b"hi\n")


@pytest.mark.asyncio
async def test_a_connection_cut_in_the_handshake_is_a_reset(
    fault_proxy, tls_echo, tls_client_context
):
    # A FIN, not an RST: asyncio reports an EOF before the handshake finished as
    # ConnectionResetError all the same, on every supported Python.
    proxy = await fault_proxy(
        upstream=tls_echo, faults=[faults.Truncate(100, direction="downstream")]
    )
    with pytest.raises(ConnectionResetError):
        await fetch(proxy.address, tls_client_context, b"hi\n")


async def cut_short(reader, writer):
    """A server that dies mid-reply: its TCP connection ends without close_notify."""
    await reader.readline()
    writer.write(b"Content-Length: 10\r\n\r\nhalf")
    await writer.drain()
    await asyncio.sleep(0.05)  # let the bytes reach the client
    writer.transport.abort()


async def read_body(address, context):
    """The code under test: trust the length header, not the EOF."""
    reader, writer = await asyncio.open_connection(
        *address, ssl=context, server_hostname="localhost"
    )
    try:
        writer.write(b"GET\n")
        length = int((await reader.readline()).split(b":")[1])
        await reader.readline()
        return await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


@pytest.mark.asyncio
async def test_an_eof_without_close_notify_is_caught_by_framing(
    tcp_server, tls_server_context, tls_client_context
):
    # asyncio reads a TLS connection that ends without close_notify as a plain
    # EOF: only the protocol's own framing can tell a truncated reply.
    server = await tcp_server(cut_short, ssl=tls_server_context)
    with pytest.raises(asyncio.IncompleteReadError) as cut:
        await read_body(server.address, tls_client_context)
    assert cut.value.partial == b"half"
