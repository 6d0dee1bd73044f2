"""STARTTLS: a client that upgrades a plain connection, against a recorded server."""

import asyncio
import ssl
import sys

import pytest

from nettest import handlers

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="StreamWriter.start_tls() is Python 3.11+"
)


def smtp_like(server_context):
    """The server: a plain greeting, then TLS on STARTTLS, then one line echoed."""

    async def handler(reader, writer):
        writer.write(b"220 ready\r\n")
        if await reader.readline() != b"STARTTLS\r\n":
            return
        writer.write(b"220 go ahead\r\n")
        try:
            await writer.start_tls(server_context)
        except (ssl.SSLError, ConnectionError):
            return  # the client refused the certificate: nothing more to say
        writer.write(await reader.readline())
        await writer.drain()

    return handler


async def send_securely(address, client_context, line, server_hostname="localhost"):
    """The client under test: read the greeting, upgrade, send one line over TLS."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        assert await reader.readline() == b"220 ready\r\n"
        writer.write(b"STARTTLS\r\n")
        assert await reader.readline() == b"220 go ahead\r\n"
        await writer.start_tls(client_context, server_hostname=server_hostname)
        writer.write(line)
        return await reader.readline()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass


@pytest.mark.asyncio
async def test_the_line_goes_over_tls(tcp_server, tls_server_context, tls_client_context):
    server = await tcp_server(smtp_like(tls_server_context))
    assert await send_securely(server.address, tls_client_context, b"secret\n") == b"secret\n"
    (conn,) = server.connections
    # The recording is in cleartext on both sides of the upgrade.
    assert conn.received == b"STARTTLS\r\nsecret\n"


@pytest.mark.asyncio
async def test_the_upgrade_checks_the_host_name(
    tcp_server, tls_server_context, tls_client_context
):
    server = await tcp_server(smtp_like(tls_server_context))
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await send_securely(server.address, tls_client_context, b"secret\n", "example.com")
    assert excinfo.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    (conn,) = server.connections
    assert conn.received == b"STARTTLS\r\n"  # the secret was never sent


@pytest.mark.asyncio
async def test_a_scripted_upgrade_says_why_it_refused_a_client(
    tcp_server, tls_mutual_server_context, tls_client_context
):
    server = await tcp_server(
        handlers.script(
            handlers.send(b"220 ready\r\n"),
            handlers.expect_line(b"STARTTLS"),
            handlers.send(b"220 go ahead\r\n"),
            handlers.start_tls(tls_mutual_server_context),  # requires a client certificate
            handlers.expect_line(b"secret"),
            handlers.close,
        )
    )
    try:  # this client has no certificate: with TLS 1.3 it reads only an EOF
        assert await send_securely(server.address, tls_client_context, b"secret\n") == b""
    except (ssl.SSLError, ConnectionError):
        pass
    (failure,) = await server.wait_for_handshake_failures()
    assert failure.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    (conn,) = server.connections
    assert conn.received == b"STARTTLS\r\n"
