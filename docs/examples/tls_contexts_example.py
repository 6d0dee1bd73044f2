"""A TLS server and client from nettest's contexts, and the handshakes that must fail."""

import asyncio
import ssl

import pytest


async def serve_and_ask(server_context, client_context, server_hostname="localhost"):
    """Serve TLS on 127.0.0.1, connect, send one line and return the reply."""

    async def shout(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(shout, "127.0.0.1", 0, ssl=server_context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname=server_hostname
        )
        writer.write(b"hello\n")
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return reply


@pytest.mark.asyncio
async def test_client_and_server_shake_hands(tls_server_context, tls_client_context):
    assert await serve_and_ask(tls_server_context, tls_client_context) == b"HELLO\n"


@pytest.mark.asyncio
async def test_the_client_checks_the_host_name(tls_server_context, tls_client_context):
    # The certificate names localhost, 127.0.0.1 and ::1, and nothing else.
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await serve_and_ask(tls_server_context, tls_client_context, "example.com")
    assert excinfo.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH


@pytest.mark.asyncio
async def test_the_client_trusts_only_the_test_ca(tls_server_context):
    stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts no CA at all
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await serve_and_ask(tls_server_context, stranger)
    assert excinfo.value.verify_code == 20  # unable to get local issuer certificate


@pytest.mark.asyncio
async def test_over_tls_12_and_13(tls_version, tls_server_context, tls_client_context):
    # Requesting tls_version runs this test twice and pins both contexts.
    assert tls_client_context.maximum_version == tls_version
    assert await serve_and_ask(tls_server_context, tls_client_context) == b"HELLO\n"
