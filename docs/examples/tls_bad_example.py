"""Every bad certificate is one fixture call away, and fails the way it says."""

import asyncio
import ssl

import pytest

# What a client must refuse.  The mutual-TLS kinds ("mtls_no_cert",
# "mtls_untrusted_cert", "mtls_expired_cert" and "mtls_wrong_eku") give a bad
# client instead: see the TLS guide.
BAD_SERVERS = [
    "expired",
    "not_yet_valid",
    "wrong_host",
    "self_signed",
    "untrusted_ca",
    "cn_only",
    "wrong_eku",
    "incomplete_chain",
]


async def fetch(address, context, server_hostname):
    """The client under test: connect, send a line, return the reply."""
    reader, writer = await asyncio.open_connection(
        *address, ssl=context, server_hostname=server_hostname
    )
    writer.write(b"ping\n")
    reply = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return reply


async def pong(reader, writer):
    await reader.readline()
    writer.write(b"pong\n")
    await writer.drain()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", BAD_SERVERS)
async def test_the_client_refuses_a_bad_server(tcp_server, tls_bad_case_factory, kind):
    bad = tls_bad_case_factory(kind)
    server = await tcp_server(pong, ssl=bad.server_context)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await fetch(server.address, bad.client_context, bad.server_hostname)
    assert excinfo.value.verify_code == bad.verify_code
    assert bad.matches(excinfo.value, side="client"), f"{bad.description}: {excinfo.value}"


@pytest.mark.asyncio
async def test_a_mutual_tls_client_refuses_a_bad_server_too(tcp_server, tls_bad_case_factory):
    # mutual=True: the server asks for a client certificate, the client has one;
    # the server's certificate is still the one thing wrong.
    bad = tls_bad_case_factory("expired", mutual=True)
    server = await tcp_server(pong, ssl=bad.server_context)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await fetch(server.address, bad.client_context, bad.server_hostname)
    assert bad.matches(excinfo.value, side="client")


@pytest.mark.asyncio
async def test_the_same_client_accepts_a_good_server(
    tcp_server, tls_server_context, tls_client_context
):
    # The negative tests' twin: the client code works when the certificate is good.
    server = await tcp_server(pong, ssl=tls_server_context)
    assert await fetch(server.address, tls_client_context, "localhost") == b"pong\n"


@pytest.mark.asyncio
async def test_the_wrong_side_refusing_does_not_count(tcp_server, tls_bad_case_factory):
    # matches() wants each failure on its own side.  In a mutual-TLS case the
    # server must refuse the client.  Here the server never asks for a client
    # certificate and serves one from another CA: the handshake fails because
    # the client refuses the server, with the same verify_code (20) as
    # "mtls_untrusted_cert" -- and that does not match, as the client's error.
    bad = tls_bad_case_factory("mtls_untrusted_cert")
    server_that_never_asks = tls_bad_case_factory("untrusted_ca").server_context
    server = await tcp_server(pong, ssl=server_that_never_asks)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await fetch(server.address, bad.client_context, bad.server_hostname)
    assert excinfo.value.verify_code == bad.verify_code == 20
    assert not bad.matches(excinfo.value, side="client")


def test_python_falls_back_to_the_common_name(tls_bad_case_factory):
    # Why "cn_only" matters: Python's ssl still matches the subject's CN when a
    # certificate has no SAN, unless hostname_checks_common_name is off (as it
    # is in nettest's client contexts).  A client built on
    # ssl.create_default_context() accepts what nettest's client refuses.
    bad = tls_bad_case_factory("cn_only")
    assert not bad.client_context.hostname_checks_common_name
    assert ssl.create_default_context().hostname_checks_common_name
