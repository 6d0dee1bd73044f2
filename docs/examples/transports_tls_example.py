"""TLS in memory: a real handshake with real ssl contexts, and no socket."""

import asyncio
import ssl
import sys

import pytest
import trustme

from nettest import memory_stream_pair, memory_transport_pair


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def contexts(ca):
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("db.example").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


@pytest.mark.asyncio
@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is new in 3.11")
async def test_starttls_upgrades_both_ends(contexts):
    server_context, client_context = contexts
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair()
    c_writer.write(b"STARTTLS\r\n")
    assert await s_reader.readline() == b"STARTTLS\r\n"
    # Both sides shake hands over the memory pair.
    await asyncio.gather(
        c_writer.start_tls(client_context, server_hostname="db.example"),
        s_writer.start_tls(server_context),
    )
    assert c_writer.get_extra_info("peercert")["subjectAltName"] == (("DNS", "db.example"),)
    c_writer.write(b"PASSWORD hunter2\r\n")
    assert await s_reader.readline() == b"PASSWORD hunter2\r\n"
    for writer in (c_writer, s_writer):
        writer.close()
    await asyncio.gather(c_writer.wait_closed(), s_writer.wait_closed())


@pytest.mark.asyncio
async def test_a_wrong_host_name_fails_the_handshake(contexts):
    server_context, client_context = contexts
    loop = asyncio.get_running_loop()
    client, server = asyncio.Protocol(), asyncio.Protocol()
    client_transport, server_transport = memory_transport_pair(client, server)
    await asyncio.sleep(0)  # connection_made
    results = await asyncio.gather(
        loop.start_tls(client_transport, client, client_context, server_hostname="evil.example"),
        loop.start_tls(server_transport, server, server_context, server_side=True),
        return_exceptions=True,
    )
    assert isinstance(results[0], ssl.SSLCertVerificationError)
    assert results[0].verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    # The failed handshake closed the memory transports, as it closes sockets.
    assert client_transport.is_closing()
    assert server_transport.is_closing()
