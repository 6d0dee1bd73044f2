"""TLS without the context fixtures: your own CA, your own names, the functions behind them."""

import asyncio
import ssl

import pytest
import trustme

import nettest
from nettest import handlers


async def echo(reader, writer):
    writer.write(await reader.readline())
    await writer.drain()
    writer.close()  # not awaited: before 3.12, start_server does not wait for its handlers


async def ask(address, client_context, server_hostname):
    """The client: send a line over TLS; return the reply and the connection's SSLObject."""
    reader, writer = await asyncio.open_connection(
        *address, ssl=client_context, server_hostname=server_hostname
    )
    try:
        writer.write(b"ping\n")
        return await reader.readline(), writer.get_extra_info("ssl_object")
    finally:
        writer.close()
        await writer.wait_closed()


async def handshake(server_context, client_context, server_hostname):
    """Serve `echo` on a loopback port with server_context, and ask it once."""
    async with await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_context) as server:
        return await ask(server.sockets[0].getsockname(), client_context, server_hostname)


@pytest.mark.asyncio
async def test_a_ca_of_your_own():
    ca = trustme.CA()
    server_context = nettest.make_tls_server_context(ca.issue_cert("db.test"))
    client_context = nettest.make_tls_client_context(ca, tls_version=ssl.TLSVersion.TLSv1_2)
    reply, tls = await handshake(server_context, client_context, "db.test")
    assert reply == b"ping\n"
    assert tls.version() == "TLSv1.2"
    assert ("DNS", "db.test") in tls.getpeercert()["subjectAltName"]


@pytest.mark.asyncio
async def test_a_bad_case_from_your_own_ca(tcp_server):
    ca = trustme.CA()
    bad = nettest.make_tls_bad_case(ca, "untrusted_ca")
    # tcp_server, not start_server: it cleans up after the handshake the server
    # side is still finishing when the client has given up.
    server = await tcp_server(handlers.echo, ssl=bad.server_context)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await ask(server.address, bad.client_context, bad.server_hostname)
    assert bad.matches(excinfo.value, side="client"), bad.description


@pytest.mark.asyncio
async def test_files_for_any_tls_stack(tmp_path):
    ca = trustme.CA()
    directory = tmp_path / "tls"
    directory.mkdir(mode=0o700)
    files = nettest.write_tls_files(directory, ca, ca.issue_cert("localhost"))
    # Plain ssl, as a server configured from files would do it.
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.fullchain, files.key)
    client_context = ssl.create_default_context(cafile=files.ca_bundle)
    reply, _ = await handshake(server_context, client_context, "localhost")
    assert reply == b"ping\n"
    with pytest.raises(FileExistsError):  # never overwrites a key
        nettest.write_tls_files(directory, ca, ca.issue_cert("localhost"))


@pytest.mark.asyncio
async def test_the_session_ca_issues_more_names(tls_ca):
    # The session's CA, with a certificate for a name of the test's choosing.
    server_context = nettest.make_tls_server_context(tls_ca.issue_cert("api.test"))
    client_context = nettest.make_tls_client_context(tls_ca)
    reply, _ = await handshake(server_context, client_context, "api.test")
    assert reply == b"ping\n"


@pytest.mark.asyncio
async def test_the_session_certificate_names_loopback(tls_ca, tls_certificate):
    assert len(tls_certificate.cert_chain_pems) == 2  # the leaf, then the intermediate
    server_context = nettest.make_tls_server_context(tls_certificate)
    _, tls = await handshake(server_context, nettest.make_tls_client_context(tls_ca), "127.0.0.1")
    assert {("DNS", "localhost"), ("IP Address", "127.0.0.1")} <= set(
        tls.getpeercert()["subjectAltName"]
    )


@pytest.mark.asyncio
async def test_mutual_tls_from_the_session_certificates(
    tls_ca, tls_certificate, tls_client_certificate
):
    peers = []

    async def who_is_it(reader, writer):
        subject = dict(rdn[0] for rdn in writer.get_extra_info("peercert")["subject"])
        peers.append(subject["commonName"])
        writer.close()

    server_context = nettest.make_tls_server_context(tls_certificate, client_ca=tls_ca)
    client_context = nettest.make_tls_client_context(tls_ca, certificate=tls_client_certificate)
    async with await asyncio.start_server(who_is_it, "127.0.0.1", 0, ssl=server_context) as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        assert await reader.read() == b""  # the server closes once it has looked
        writer.close()
        await writer.wait_closed()
    assert peers == ["nettest client"]


async def protocol(reader, writer):
    """Answer with the protocol agreed by ALPN."""
    writer.write(f"{writer.get_extra_info('ssl_object').selected_alpn_protocol()}\n".encode())
    await writer.drain()


@pytest.mark.asyncio
async def test_two_host_names_on_one_server(
    tcp_server, tls_ca, tls_server_context, tls_client_context
):
    # A leaf for another name, served by SNI beside tls_certificate's.
    api = nettest.make_tls_server_context(tls_ca.issue_cert("api.test"))
    for context in (tls_server_context, api):
        context.set_alpn_protocols(["h2", "http/1.1"])  # the switched-to context's count
    asked = []

    def pick(tls, name, context):
        asked.append(name)
        if name == "api.test":
            tls.context = api

    tls_server_context.sni_callback = pick
    server = await tcp_server(protocol, ssl=tls_server_context)
    tls_client_context.set_alpn_protocols(["h2"])
    for name in ("localhost", "api.test"):
        reader, writer = await asyncio.open_connection(
            *server.address, ssl=tls_client_context, server_hostname=name
        )
        assert await reader.readline() == b"h2\n"
        assert ("DNS", name) in writer.get_extra_info("peercert")["subjectAltName"]
        writer.close()
        await writer.wait_closed()
    assert asked == ["localhost", "api.test"]
