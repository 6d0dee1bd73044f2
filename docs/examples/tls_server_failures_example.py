"""A TLS server records who came in and how, and each handshake it refused, and why."""

import asyncio
import socket
import ssl

import pytest
import trustme

from nettest import handlers, make_tls_client_context


@pytest.mark.asyncio
async def test_the_server_records_who_came_in(
    tcp_server, tls_mutual_server_context, tls_client_context_factory
):
    server = await tcp_server(handlers.echo, ssl=tls_mutual_server_context)
    reader, writer = await asyncio.open_connection(
        *server.address, ssl=tls_client_context_factory("alice"), server_hostname="localhost"
    )
    writer.write(b"hi")
    assert await reader.readexactly(2) == b"hi"
    writer.close()
    (conn,) = server.connections
    assert conn.tls.version in ("TLSv1.2", "TLSv1.3")
    subject = dict(rdn[0] for rdn in conn.tls.peer_certificate["subject"])
    assert subject["commonName"] == "alice"


@pytest.mark.asyncio
async def test_the_server_says_why_it_turned_a_client_away(
    tcp_server, tls_mutual_server_context, tls_client_context
):
    server = await tcp_server(handlers.echo, ssl=tls_mutual_server_context)
    try:  # a client with no certificate, for a server that requires one
        reader, writer = await asyncio.open_connection(
            *server.address, ssl=tls_client_context, server_hostname="localhost"
        )
    except ConnectionResetError:  # TLS 1.2: during the handshake
        pass
    else:
        try:  # TLS 1.3: the refusal comes after the client's handshake
            writer.write(b"hello")
            await reader.read()  # b"", or a reset (through a proxy that slices, say)
        except ConnectionResetError:
            pass
        finally:
            writer.close()
    (failure,) = await server.wait_for_handshake_failures()
    assert failure.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    assert server.connections == ()  # the handler never saw it


@pytest.mark.asyncio
async def test_a_client_that_distrusts_the_server_says_so_in_an_alert(
    tcp_server, tls_server_context
):
    server = await tcp_server(handlers.echo, ssl=tls_server_context)
    stranger = make_tls_client_context(trustme.CA())  # trusts another CA

    def connect():  # a blocking client sends its alert (asyncio's drops it)
        with socket.create_connection(server.address) as sock:
            stranger.wrap_socket(sock, server_hostname="localhost")

    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.to_thread(connect)
    (failure,) = await server.wait_for_handshake_failures()
    assert failure.reason == "TLSV1_ALERT_UNKNOWN_CA"
