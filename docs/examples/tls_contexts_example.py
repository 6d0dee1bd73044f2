"""A TLS server and client from nettest's contexts, and the handshakes that must fail."""

import asyncio
import ssl

import pytest


async def shout(reader, writer):
    """The server: answer one line in capitals."""
    writer.write((await reader.readline()).upper())
    await writer.drain()


async def ask(address, client_context, server_hostname="localhost"):
    """The client under test: connect over TLS, send one line, return the reply."""
    reader, writer = await asyncio.open_connection(
        *address, ssl=client_context, server_hostname=server_hostname
    )
    writer.write(b"hello\n")
    reply = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return reply


@pytest.mark.asyncio
async def test_client_and_server_shake_hands(tcp_server, tls_server_context, tls_client_context):
    server = await tcp_server(shout, ssl=tls_server_context)
    assert await ask(server.address, tls_client_context) == b"HELLO\n"


@pytest.mark.asyncio
async def test_the_client_checks_the_host_name(tcp_server, tls_server_context, tls_client_context):
    # The certificate names localhost, 127.0.0.1 and ::1, and nothing else.
    server = await tcp_server(shout, ssl=tls_server_context)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await ask(server.address, tls_client_context, "example.com")
    assert excinfo.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH


@pytest.mark.asyncio
async def test_the_client_trusts_only_the_test_ca(tcp_server, tls_server_context):
    server = await tcp_server(shout, ssl=tls_server_context)
    stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts no CA at all
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await ask(server.address, stranger)
    assert excinfo.value.verify_code == 20  # unable to get local issuer certificate


@pytest.mark.asyncio
async def test_over_tls_12_and_13(tcp_server, tls_version, tls_server_context, tls_client_context):
    # Requesting tls_version runs this test twice and pins both contexts.
    assert tls_client_context.maximum_version == tls_version
    server = await tcp_server(shout, ssl=tls_server_context)
    assert await ask(server.address, tls_client_context) == b"HELLO\n"
