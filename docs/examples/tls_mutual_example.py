"""Mutual TLS: the server requires a client certificate, the client presents one."""

import asyncio
import ssl

import pytest


async def start_server(context, served):
    async def greet(reader, writer):
        peer = writer.get_extra_info("peercert")
        served.append(dict(rdn[0] for rdn in peer["subject"]))
        writer.write(b"welcome\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(greet, "127.0.0.1", 0, ssl=context)


@pytest.mark.asyncio
async def test_the_server_sees_who_the_client_is(
    tls_mutual_server_context, tls_mutual_client_context
):
    served = []
    async with await start_server(tls_mutual_server_context, served) as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls_mutual_client_context, server_hostname="localhost"
        )
        assert await reader.readline() == b"welcome\n"
        writer.close()
        await writer.wait_closed()
    assert [subject["commonName"] for subject in served] == ["nettest client"]


@pytest.mark.asyncio
async def test_a_client_without_certificate_is_turned_away(
    tls_version, tls_mutual_server_context, tls_client_context
):
    served = []
    async with await start_server(tls_mutual_server_context, served) as server:
        port = server.sockets[0].getsockname()[1]
        if tls_version == ssl.TLSVersion.TLSv1_2:
            # The handshake fails.  asyncio's server closes without sending
            # its alert, so an asyncio client sees a reset.
            with pytest.raises(ConnectionResetError):
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=tls_client_context, server_hostname="localhost"
                )
        else:
            # TLS 1.3: the client's handshake is over before the server checks
            # for a certificate; the refusal shows on the next read.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls_client_context, server_hostname="localhost"
            )
            assert await reader.read() == b""
            writer.close()
    assert served == []  # the greeting handler never ran
