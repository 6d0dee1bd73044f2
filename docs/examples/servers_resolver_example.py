"""Host names for loopback servers, and a resolver that fails or is slow."""

import asyncio
import socket

import pytest

import nettest
from nettest import handlers


async def connect(host, port, *, attempts=3, timeout=1.0):
    """The code under test: resolve and connect, retrying what may pass."""
    for attempt in range(1, attempts + 1):
        try:
            return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except socket.gaierror as error:
            if error.errno != socket.EAI_AGAIN or attempt == attempts:
                raise  # no such name: retrying will not help
    raise AssertionError("unreachable")


@pytest.mark.asyncio
async def test_the_client_reaches_the_server_by_name(fake_resolver, tcp_server):
    server = await tcp_server(handlers.echo)
    fake_resolver.add("db.internal", "127.0.0.1")
    reader, writer = await connect("db.internal", server.port)
    writer.write(b"ping\n")
    assert await reader.readline() == b"ping\n"
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_a_name_that_does_not_exist_is_not_retried(fake_resolver):
    fake_resolver.fail("db.internal")  # EAI_NONAME
    with pytest.raises(socket.gaierror):
        await connect("db.internal", 5432)
    assert fake_resolver.lookups == ("db.internal",)


@pytest.mark.asyncio
async def test_a_temporary_failure_is_retried(fake_resolver):
    fake_resolver.fail("db.internal", socket.EAI_AGAIN)
    with pytest.raises(socket.gaierror):
        await connect("db.internal", 5432, attempts=3)
    assert fake_resolver.lookups == ("db.internal",) * 3


@pytest.mark.asyncio
async def test_a_slow_resolver_counts_against_the_connect_timeout(fake_resolver, tcp_server):
    server = await tcp_server(handlers.echo)
    fake_resolver.add("db.internal", "127.0.0.1", delay=5)  # loop time: asyncio.sleep
    with pytest.raises((TimeoutError, asyncio.TimeoutError)):
        await connect("db.internal", server.port, attempts=1, timeout=0.1)


@pytest.mark.asyncio
async def test_tls_checks_the_name_the_client_asked_for(
    fake_resolver, tcp_server, tls_ca, tls_client_context
):
    certificate = tls_ca.issue_cert("db.internal")
    server = await tcp_server(handlers.echo, ssl=nettest.make_tls_server_context(certificate))
    fake_resolver.add("db.internal", "127.0.0.1")
    # server_hostname defaults to the host connected to: the name, not the address.
    reader, writer = await asyncio.open_connection(
        "db.internal", server.port, ssl=tls_client_context
    )
    writer.write(b"secret\n")
    assert await reader.readline() == b"secret\n"
    writer.close()
    await writer.wait_closed()
