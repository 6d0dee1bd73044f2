"""A server that authorizes mutual-TLS clients by their certificate's common name."""

import asyncio

import pytest

ALLOWED = {"alice"}


async def serve(reader, writer):
    subject = dict(rdn[0] for rdn in writer.get_extra_info("peercert")["subject"])
    name = subject["commonName"]
    writer.write(b"hello %s\n" % name.encode() if name in ALLOWED else b"denied\n")
    await writer.drain()
    writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "reply"), [("alice", b"hello alice\n"), ("mallory", b"denied\n")]
)
async def test_only_named_clients_are_served(
    tls_mutual_server_context, tls_client_context_factory, name, reply
):
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls_mutual_server_context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=tls_client_context_factory(name),
            server_hostname="localhost",
        )
        assert await reader.readline() == reply
        writer.close()
        await writer.wait_closed()
