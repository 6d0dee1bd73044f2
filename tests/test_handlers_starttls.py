"""The start_tls script step: a scripted server that upgrades a plain connection (STARTTLS)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys

import pytest

from nettest import (
    Ending,
    HandlerError,
    TCPServer,
    TCPServerFactory,
    TCPServerThreadFactory,
    handlers,
)

needs_start_tls = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="StreamWriter.start_tls is Python 3.11+"
)


def smtp_like(context: ssl.SSLContext) -> handlers.Script:
    return handlers.script(
        handlers.send(b"220 ready\r\n"),
        handlers.expect_line(b"STARTTLS"),
        handlers.send(b"220 go ahead\r\n"),
        handlers.start_tls(context),
        handlers.expect_line(b"EHLO client"),
        handlers.send(b"250 hello\r\n"),
        handlers.expect_eof(),
    )


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a client's writer; a TLS close the server cut short is no error here."""
    writer.close()
    try:
        await writer.wait_closed()
    except (ssl.SSLError, ConnectionError):
        pass


async def upgrade_and_greet(
    address: tuple[str, int], context: ssl.SSLContext, server_hostname: str = "localhost"
) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    try:
        assert await reader.readline() == b"220 ready\r\n"
        writer.write(b"STARTTLS\r\n")
        assert await reader.readline() == b"220 go ahead\r\n"
        await writer.start_tls(  # type: ignore[attr-defined,unused-ignore]
            context, server_hostname=server_hostname
        )
        writer.write(b"EHLO client\r\n")
        return await reader.readline()  # then close_notify: the script's expect_eof
    finally:
        await close_quietly(writer)


@needs_start_tls
@pytest.mark.asyncio
async def test_a_script_upgrades_to_tls_and_records_in_cleartext(
    tcp_server: TCPServerFactory,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    server = await tcp_server(smtp_like(tls_server_context))
    assert await upgrade_and_greet(server.address, tls_client_context) == b"250 hello\r\n"
    (conn,) = await server.wait_for_connections(1)
    await conn.wait_closed()
    assert conn.received == b"STARTTLS\r\nEHLO client\r\n"
    assert conn.sent == b"220 ready\r\n220 go ahead\r\n250 hello\r\n"
    # Read after the connection closed: from 3.12 the TLS layer no longer says.
    assert conn.tls is not None
    assert conn.tls.version in ("TLSv1.2", "TLSv1.3")


@needs_start_tls
@pytest.mark.asyncio
async def test_a_refused_upgrade_ends_the_script_quietly(
    tcp_server: TCPServerFactory,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    # The client rejects the certificate for the wrong name: the script stops
    # there and the server raises nothing; the server's side of the failure is
    # its handshake_failures entry, its connection the plain part.
    server = await tcp_server(smtp_like(tls_server_context))
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        await upgrade_and_greet(server.address, tls_client_context, "wrong.test")
    assert refused.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    # asyncio's client closes without sending its alert: the server sees the close.
    (failure,) = await server.wait_for_handshake_failures(1)
    assert isinstance(failure.error, ConnectionResetError)
    (conn,) = await server.wait_for_connections(1)
    await conn.wait_closed()
    assert conn.received == b"STARTTLS\r\n"
    assert failure.peer == conn.peer
    with pytest.raises(AssertionError, match="1 arrived") as arrived:
        server.assert_no_connections()
    assert "TLS handshake from 127.0.0.1:" in str(arrived.value)  # the transcript's last line


@needs_start_tls
@pytest.mark.asyncio
async def test_a_stalled_upgrade_is_aborted_by_the_server(
    tcp_server: TCPServerFactory, tls_server_context: ssl.SSLContext
) -> None:
    # The client asks for TLS and never starts its handshake: the server's
    # timeout aborts the connection, which ends ABORTED (the server's doing),
    # not RESET (the client's).
    server = await tcp_server(
        handlers.script(
            handlers.expect_line(b"STARTTLS"), handlers.start_tls(tls_server_context, timeout=0.1)
        )
    )
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(b"STARTTLS\r\n")
        (failure,) = await server.wait_for_handshake_failures(1)
        assert isinstance(failure.error, ConnectionAbortedError)
        assert "taking longer than 0.1 seconds" in str(failure.error)
        (conn,) = server.connections
        assert await conn.wait_closed() is Ending.ABORTED
        assert await reader.read() == b""
    finally:
        writer.close()


@needs_start_tls
@pytest.mark.asyncio
async def test_a_mutual_tls_upgrade_without_a_client_certificate_says_why_on_the_server(
    tcp_server: TCPServerFactory,
    tls_mutual_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    # With TLS 1.3 the client's handshake succeeds before the server checks for
    # a certificate, and it reads only an EOF: the server's side says why.
    server = await tcp_server(smtp_like(tls_mutual_server_context))
    try:
        reply = await upgrade_and_greet(server.address, tls_client_context)
    except (ssl.SSLError, ConnectionError):
        reply = b""
    assert reply == b""
    (failure,) = await server.wait_for_handshake_failures(1)
    assert failure.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    assert str(failure).startswith("TLS handshake from 127.0.0.1:")


@needs_start_tls
@pytest.mark.asyncio
async def test_a_plain_server_without_start_tls_has_no_handshake_to_wait_for(
    tcp_server: TCPServerFactory,
) -> None:
    server = await tcp_server(handlers.script(handlers.send(b"hi\r\n"), handlers.close))
    message = (
        r"records failed handshakes only with ssl= or a script's start_tls step: a handler "
        r"that calls start_tls\(\) itself gets the failure from that call"
    )
    with pytest.raises(RuntimeError, match=message):
        await server.wait_for_handshake_failures(1)


@pytest.mark.parametrize("upgrade", ["ssl=", pytest.param("start_tls", marks=needs_start_tls)])
@pytest.mark.asyncio
async def test_expect_eof_is_not_met_by_a_tls_clients_answer_to_the_servers_close(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext, upgrade: str
) -> None:
    # At teardown the server's close_notify makes asyncio's TLS client answer with its
    # own and close: that EOF is not the client closing, and the script says so.
    if upgrade == "ssl=":
        steps = [handlers.send(b"220 ready\r\n"), handlers.expect_eof()]
        server = await TCPServer(handlers.script(*steps), ssl=tls_server_context).start()
        tls: dict[str, object] = {"ssl": tls_client_context, "server_hostname": "localhost"}
    else:
        steps = [
            handlers.send(b"220 ready\r\n"),
            handlers.expect_line(b"STARTTLS"),
            handlers.send(b"220 go ahead\r\n"),
            handlers.start_tls(tls_server_context),
            handlers.expect_eof(),
        ]
        server = await TCPServer(handlers.script(*steps)).start()
        tls = {}
    kept: list[asyncio.StreamWriter] = []
    try:
        reader, writer = await asyncio.open_connection(*server.address, **tls)  # type: ignore[arg-type]
        kept.append(writer)
        assert await reader.readline() == b"220 ready\r\n"
        if upgrade == "start_tls":
            writer.write(b"STARTTLS\r\n")
            assert await reader.readline() == b"220 go ahead\r\n"
            await writer.start_tls(  # type: ignore[attr-defined,unused-ignore]
                tls_client_context, server_hostname="localhost"
            )
        (conn,) = await server.wait_for_connections(1)
        with pytest.raises(HandlerError) as info:
            await server.aclose()
        message = str(info.value)
        step = len(steps)
        assert (
            f"script step {step} of {step}, expect_eof(): not met when the server closed (the "
            "client's EOF came only in answer to the server's close, as a TLS client answers "
            "close_notify)"
        ) in message
        assert "+0." in conn.transcript()
        assert "client  EOF (answering the server's close)" in conn.transcript()
    finally:
        for writer in kept:
            await close_quietly(writer)


@needs_start_tls
@pytest.mark.parametrize("then", ["expect_eof", "send_then_expect_eof", "expect_line"])
@pytest.mark.asyncio
async def test_a_client_that_closes_as_its_upgrade_ends_is_judged_by_the_rest_of_the_script(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext, then: str
) -> None:
    # The handshake is done and the client closes at once: asyncio's start_tls()
    # then failed with an AttributeError on the closed TLS transport, which the
    # script reported as the handler's own error.
    rest = {
        "expect_eof": [handlers.expect_eof()],
        # What the closed connection cannot carry is dropped, as after any close.
        "send_then_expect_eof": [handlers.send(b"250 hello\r\n"), handlers.expect_eof()],
        "expect_line": [handlers.expect_line(b"EHLO")],
    }[then]
    server = await TCPServer(
        handlers.script(
            handlers.send(b"220 ready\r\n"),
            handlers.expect_line(b"STARTTLS"),
            handlers.send(b"220 go ahead\r\n"),
            handlers.start_tls(tls_server_context),
            *rest,
        )
    ).start()
    reader, writer = await asyncio.open_connection(*server.address)
    assert await reader.readline() == b"220 ready\r\n"
    writer.write(b"STARTTLS\r\n")
    assert await reader.readline() == b"220 go ahead\r\n"
    await writer.start_tls(  # type: ignore[attr-defined,unused-ignore]
        tls_client_context, server_hostname="localhost"
    )
    writer.close()  # and the server closes at once too
    if then != "expect_line":
        await server.aclose()  # the client closed: met
    else:
        with pytest.raises(HandlerError, match="script step 5 of 5, expect_line"):
            await server.aclose()
    await close_quietly(writer)


@needs_start_tls
def test_a_thread_server_upgrades_a_blocking_client(
    tcp_server_thread: TCPServerThreadFactory,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    server = tcp_server_thread(smtp_like(tls_server_context))
    with socket.create_connection(server.address, timeout=5) as plain:
        greeting = plain.makefile("rb")
        assert greeting.readline() == b"220 ready\r\n"
        plain.sendall(b"STARTTLS\r\n")
        assert greeting.readline() == b"220 go ahead\r\n"
        greeting.close()
        with tls_client_context.wrap_socket(plain, server_hostname="localhost") as tls:
            tls.sendall(b"EHLO client\r\n")
            assert tls.recv(100) == b"250 hello\r\n"
            tls.unwrap()
    assert server.wait_for_bytes(b"EHLO client\r\n") == b"STARTTLS\r\nEHLO client\r\n"


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="StreamWriter.start_tls is there")
def test_start_tls_needs_python_3_11(tls_server_context: ssl.SSLContext) -> None:
    with pytest.raises(RuntimeError, match=r"needs Python 3\.11 or newer"):
        handlers.start_tls(tls_server_context)


@needs_start_tls
def test_start_tls_checks_its_arguments(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    with pytest.raises(TypeError, match=r"context must be an ssl\.SSLContext, got None"):
        handlers.start_tls(None)  # type: ignore[arg-type]
    # Taken, a client context failed every client's handshake: a test that expects
    # its client to be refused passed for that.
    with pytest.raises(ValueError, match=r"context must be a server context .* got a client"):
        handlers.start_tls(tls_client_context)
    # None is asyncio's 60 s here, not a wait for ever.
    with pytest.raises(
        ValueError, match=r"^timeout must be > 0 and finite, or None for asyncio's 60 s, got -1$"
    ):
        handlers.start_tls(tls_server_context, timeout=-1)
    with pytest.raises(TypeError, match=r"handlers.start_tls itself, which makes a step"):
        handlers.script(handlers.start_tls)  # type: ignore[arg-type]
    step = handlers.start_tls(tls_server_context)
    assert "start_tls(...)" in repr(handlers.script(step, handlers.close))


@needs_start_tls
@pytest.mark.asyncio
async def test_plaintext_sent_before_the_handshake_is_a_mismatch(
    tcp_server: TCPServerFactory,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    # A client that pipelines a command after STARTTLS, in the clear: a server that
    # read it as TLS input would be open to injection (CVE-2011-0411).
    server = TCPServer(smtp_like(tls_server_context))
    await server.start()
    try:
        reader, writer = await asyncio.open_connection(*server.address)
        assert await reader.readline() == b"220 ready\r\n"
        writer.write(b"STARTTLS\r\nEHLO client\r\n")
        assert await reader.readline() == b"220 go ahead\r\n"
        writer.close()
        await writer.wait_closed()
        (conn,) = await server.wait_for_connections(1)
        await conn.wait_closed()
    finally:
        with pytest.raises(HandlerError) as failed:
            await server.aclose()
    message = str(failed.value)
    assert "script step 4 of 7, start_tls(...): the client sent b'EHLO client\\r\\n'" in message
    assert "in the clear before its TLS handshake" in message


@needs_start_tls
@pytest.mark.asyncio
async def test_a_server_closing_during_the_handshake_ends_the_script_quietly(
    tls_server_context: ssl.SSLContext,
) -> None:
    server = TCPServer(smtp_like(tls_server_context))
    await server.start()
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        assert await reader.readline() == b"220 ready\r\n"
        writer.write(b"STARTTLS\r\n")
        assert await reader.readline() == b"220 go ahead\r\n"
        await server.wait_for_connections(1)
        await server.aclose()  # the step still waits for the client's handshake: no error
    finally:
        writer.close()
        await writer.wait_closed()
    (conn,) = server.connections
    assert conn.received == b"STARTTLS\r\n"
    assert server.handshake_failures == ()  # the server's own closing is no failure
