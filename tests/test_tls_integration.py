"""nettest's TLS contexts with nettest's servers and memory transports."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from nettest import (
    Ending,
    ServerTeardownWarning,
    TCPServer,
    TCPServerThread,
    UnixServer,
    _settings,
    _stream_server,
    handlers,
)
from nettest._proxy import FaultProxyFactory, fault_proxy  # noqa: F401
from nettest._servers import TCPServerFactory, tcp_server  # noqa: F401
from nettest._tls import (
    TLS_BAD_KINDS,
    TLSBadKind,
    TLSClientContextFactory,
    make_tls_client_context,
    new_ca,
)
from nettest._tls_bad import TLSBadCaseFactory, tls_bad_case_factory  # noqa: F401
from nettest._transport_pairs import memory_stream_pair, memory_transport_pair
from test_tls import TIMEOUT, asyncio_exchange

T = TypeVar("T")

CLIENT_REJECTS: list[TLSBadKind] = [k for k in TLS_BAD_KINDS if not k.startswith("mtls_")]


async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write((await reader.readline()).upper())
    await writer.drain()
    writer.close()


async def asyncio_client(
    address: tuple[str, int], context: ssl.SSLContext, server_hostname: str = "localhost"
) -> bytes:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(*address, ssl=context, server_hostname=server_hostname), TIMEOUT
    )
    try:
        writer.write(b"ping\n")
        return await asyncio.wait_for(reader.readline(), TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


def blocking_client(
    address: tuple[str, int], context: ssl.SSLContext, server_hostname: str = "localhost"
) -> bytes:
    with (
        socket.create_connection(address, timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(b"ping\n")
        return tls.recv(100)


# -- loopback TLS server, asyncio client ------------------------------------------------------


@pytest.mark.asyncio
async def test_tls_tcp_server_with_asyncio_client(
    tcp_server: TCPServerFactory,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
    tls_version: ssl.TLSVersion,
) -> None:
    server = await tcp_server(upper, ssl=tls_server_context)
    assert await asyncio_client(server.address, tls_client_context) == b"PING\n"
    (conn,) = server.connections
    assert conn.tls is not None
    assert conn.tls.tls_version == tls_version
    assert conn.tls.version == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[tls_version.name]


@pytest.mark.asyncio
async def test_tls_tcp_server_records_the_clients_close_as_eof(
    tcp_server: TCPServerFactory,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
    tls_version: ssl.TLSVersion,
) -> None:
    # The client's close_notify is its EOF, on every Python: 3.10's TLS transport
    # closes on it without calling eof_received.
    from nettest import Ending, handlers

    server = await tcp_server(handlers.echo, ssl=tls_server_context)
    reader, writer = await asyncio.open_connection(
        *server.address, ssl=tls_client_context, server_hostname="localhost"
    )
    writer.write(b"abc")
    assert await reader.readexactly(3) == b"abc"
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    (conn,) = await server.wait_for_connections(1)
    assert await conn.wait_closed(timeout=TIMEOUT) is Ending.EOF
    assert conn.eof_received
    assert [event.kind for event in conn.events][-2:] == ["eof", "closed"]


def test_tls_server_teardown_after_the_client_closes_without_waiting(
    pytester: pytest.Pytester,
) -> None:
    # The client's close_notify and the handler both close the server's TLS
    # transport, which then refuses get_extra_info() until its shutdown ends; and
    # on 3.10 it never says it is closing.  Teardown and the hygiene gate must
    # cope: no error, nothing reported open.
    pytester.makepyfile(
        """
import asyncio
import pytest
from nettest import handlers

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

HANDLERS = {
    "echo": handlers.echo,
    "sink": handlers.sink,
    "script": handlers.script(handlers.expect(b"hi"), handlers.expect_eof()),
    "protocol": Echo,
}

@pytest.mark.asyncio
@pytest.mark.parametrize("name", HANDLERS)
@pytest.mark.parametrize("wait", [False, True])
async def test_client_closes(tcp_server, tls_server_context, tls_client_context, name, wait):
    server = await tcp_server(HANDLERS[name], ssl=tls_server_context)
    reader, writer = await asyncio.open_connection(
        *server.address, ssl=tls_client_context, server_hostname="localhost"
    )
    writer.write(b"hi")
    await server.wait_for_bytes(b"hi")
    writer.close()
    if wait:
        await writer.wait_closed()
        await server.connections[0].wait_closed()
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)


@pytest.mark.asyncio
async def test_tls_tcp_server_rejected_by_an_asyncio_client_trusting_another_ca(
    tcp_server: TCPServerFactory, tls_server_context: ssl.SSLContext
) -> None:
    server = await tcp_server(upper, ssl=tls_server_context)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await asyncio_client(server.address, make_tls_client_context(new_ca()))
    assert excinfo.value.verify_code == 20
    # asyncio's client closes without sending its alert: the server sees the close.
    (failure,) = await server.wait_for_handshake_failures()
    assert isinstance(failure.error, ConnectionResetError)
    assert failure.reason is None
    assert server.connections == ()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", CLIENT_REJECTS)
async def test_tls_tcp_server_serving_a_bad_case(
    tcp_server: TCPServerFactory, tls_bad_case_factory: TLSBadCaseFactory, kind: TLSBadKind
) -> None:
    bad = tls_bad_case_factory(kind)
    server = await tcp_server(upper, ssl=bad.server_context)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await asyncio_client(server.address, bad.client_context, bad.server_hostname)
    assert bad.matches(excinfo.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", CLIENT_REJECTS)
async def test_tls_bad_case_made_mutual_is_refused_by_the_client_all_the_same(
    tcp_server: TCPServerFactory, tls_bad_case_factory: TLSBadCaseFactory, kind: TLSBadKind
) -> None:
    bad = tls_bad_case_factory(kind, mutual=True)
    assert bad.server_context.verify_mode == ssl.CERT_REQUIRED
    server = await tcp_server(upper, ssl=bad.server_context)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await asyncio_client(server.address, bad.client_context, bad.server_hostname)
    assert bad.matches(excinfo.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("mutual", [True, False])
async def test_tls_bad_case_made_mutual_presents_the_client_certificate(
    tcp_server: TCPServerFactory,
    tls_mutual_server_context: ssl.SSLContext,
    tls_bad_case_factory: TLSBadCaseFactory,
    mutual: bool,
) -> None:
    # Its client context, against a good mutual-TLS server: accepted only when
    # the case was made mutual.
    bad = tls_bad_case_factory("expired", mutual=mutual)
    server = await tcp_server(upper, ssl=tls_mutual_server_context)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await loop.run_in_executor(None, blocking_client, server.address, bad.client_context)
    if mutual:
        (conn,) = await server.wait_for_connections()
        assert conn.tls is not None
        assert conn.tls.peer_certificate is not None
        assert server.handshake_failures == ()
    else:
        (failure,) = await server.wait_for_handshake_failures()
        assert failure.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
        assert server.connections == ()


def test_tls_bad_case_mutual_must_be_a_bool(tls_bad_case_factory: TLSBadCaseFactory) -> None:
    with pytest.raises(TypeError, match="mutual must be a bool, got int"):
        tls_bad_case_factory("expired", mutual=1)  # type: ignore[arg-type]


# -- loopback TLS server, blocking ssl client --------------------------------------------------


@pytest.mark.asyncio
async def test_tls_tcp_server_with_blocking_client(
    tcp_server: TCPServerFactory,
    tls_mutual_server_context: ssl.SSLContext,
    tls_mutual_client_context: ssl.SSLContext,
) -> None:
    server = await tcp_server(upper, ssl=tls_mutual_server_context)
    reply = await asyncio.get_running_loop().run_in_executor(
        None, blocking_client, server.address, tls_mutual_client_context
    )
    assert reply == b"PING\n"


@pytest.mark.asyncio
async def test_tls_tcp_server_refuses_a_blocking_client_without_certificate(
    tcp_server: TCPServerFactory,
    tls_mutual_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    server = await tcp_server(upper, ssl=tls_mutual_server_context)
    loop = asyncio.get_running_loop()
    try:
        reply = await loop.run_in_executor(
            None, blocking_client, server.address, tls_client_context
        )
    except (ssl.SSLError, ConnectionError):
        reply = b""
    # With TLS 1.3 the client's handshake succeeds before the server checks for
    # a certificate; asyncio's server then closes without flushing its alert, so
    # the client sees EOF (b"" from a socket that suppresses ragged EOFs).
    assert reply == b""
    assert server.connections == ()  # the handler never ran
    (failure,) = await server.wait_for_handshake_failures()  # the server says why
    assert isinstance(failure.error, ssl.SSLError)
    assert failure.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    assert failure.peer[0] == "127.0.0.1"


@pytest.mark.asyncio
async def test_tls_connection_says_what_the_handshake_negotiated(
    tcp_server: TCPServerFactory,
    tls_version: ssl.TLSVersion,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    tls_server_context.set_alpn_protocols(["h2", "http/1.1"])
    tls_client_context.set_alpn_protocols(["http/1.1"])
    server = await tcp_server(upper, ssl=tls_server_context)
    assert await asyncio_client(server.address, tls_client_context) == b"PING\n"
    (conn,) = server.connections
    await conn.wait_closed()
    assert conn.tls is not None
    assert conn.tls.version == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[tls_version.name]
    assert conn.tls.cipher
    assert conn.tls.alpn_protocol == "http/1.1"
    assert conn.tls.peer_certificate is None  # not mutual TLS


@pytest.mark.asyncio
async def test_tls_connection_says_whether_the_client_resumed_a_session(
    tcp_server: TCPServerFactory,
    tls_version: ssl.TLSVersion,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    # A TLS 1.2 session id or ticket, or a TLS 1.3 ticket (which comes after the
    # handshake: the first connection reads its reply before it takes the session).
    server = await tcp_server(upper, ssl=tls_server_context)

    def connect(session: ssl.SSLSession | None) -> ssl.SSLSession | None:
        with (
            socket.create_connection(server.address, timeout=TIMEOUT) as raw,
            tls_client_context.wrap_socket(
                raw, server_hostname="localhost", session=session
            ) as tls,
        ):
            tls.sendall(b"ping\n")
            assert tls.recv(100) == b"PING\n"
            assert tls.session_reused is (session is not None)
            return tls.session

    session = await asyncio.to_thread(connect, None)
    await asyncio.to_thread(connect, session)
    first, second = await server.wait_for_connections(2)
    assert first.tls is not None
    assert second.tls is not None
    assert not first.tls.session_reused
    assert second.tls.session_reused


@pytest.mark.asyncio
async def test_tls_connection_shows_the_clients_certificate(
    tcp_server: TCPServerFactory,
    tls_mutual_server_context: ssl.SSLContext,
    tls_client_context_factory: TLSClientContextFactory,
) -> None:
    server = await tcp_server(upper, ssl=tls_mutual_server_context)
    assert await asyncio_client(server.address, tls_client_context_factory("alice")) == b"PING\n"
    (conn,) = server.connections
    assert conn.tls is not None
    assert conn.tls.peer_certificate is not None
    subject = dict(rdn[0] for rdn in conn.tls.peer_certificate["subject"])
    assert subject["commonName"] == "alice"


@pytest.mark.asyncio
async def test_plain_connection_has_no_tls(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(upper)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"ping\n")
    assert await reader.readline() == b"PING\n"
    (conn,) = server.connections
    assert conn.tls is None
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_tls_tcp_server_records_the_alert_of_a_blocking_client_trusting_another_ca(
    tcp_server: TCPServerFactory, tls_server_context: ssl.SSLContext
) -> None:
    server = await tcp_server(upper, ssl=tls_server_context)
    loop = asyncio.get_running_loop()
    other = make_tls_client_context(new_ca())
    with pytest.raises(ssl.SSLCertVerificationError):
        await loop.run_in_executor(None, blocking_client, server.address, other)
    (failure,) = await server.wait_for_handshake_failures()
    assert failure.reason == "TLSV1_ALERT_UNKNOWN_CA"  # the alert the client sent
    assert "TLS handshake from 127.0.0.1:" in str(failure)
    assert "TLSV1_ALERT_UNKNOWN_CA" in str(failure)
    assert "1 failed TLS handshake" in repr(server)


@pytest.mark.asyncio
async def test_tls_failure_behind_the_fault_proxy_matches_its_trace(
    tcp_server: TCPServerFactory,
    fault_proxy: FaultProxyFactory,
    tls_server_context: ssl.SSLContext,
) -> None:
    server = await tcp_server(upper, ssl=tls_server_context)
    proxy = await fault_proxy(upstream=server)
    loop = asyncio.get_running_loop()
    other = make_tls_client_context(new_ca())
    with pytest.raises(ssl.SSLCertVerificationError):
        await loop.run_in_executor(None, blocking_client, proxy.address, other)
    (failure,) = await server.wait_for_handshake_failures()
    (trace,) = proxy.traces
    assert failure.peer == trace.upstream_local  # the server's client is the proxy


@pytest.mark.asyncio
async def test_tls_tcp_server_records_a_plaintext_client(
    tcp_server: TCPServerFactory, tls_server_context: ssl.SSLContext
) -> None:
    server = await tcp_server(upper, ssl=tls_server_context)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()
    await writer.wait_closed()
    (failure,) = await server.wait_for_handshake_failures()
    assert failure.reason == "HTTP_REQUEST"
    assert server.connections == ()
    with pytest.raises(
        AssertionError, match=r"(?s)expected no connections; 1 arrived.*HTTP_REQUEST"
    ):
        server.assert_no_connections()
    assert "HTTP_REQUEST" in server.transcript()


@pytest.mark.asyncio
async def test_tls_tcp_server_records_a_tls_layer_that_cannot_start(
    monkeypatch: pytest.MonkeyPatch,
    tcp_server: TCPServerFactory,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    # A context that cannot make a server connection fails as the TLS layer starts,
    # before any handshake: the client must not be left waiting for one.
    def refuse(*args: object, **kwargs: object) -> ssl.SSLObject:
        raise ssl.SSLError("this context cannot make a server connection")

    monkeypatch.setattr(tls_server_context, "wrap_bio", refuse)
    server = await tcp_server(upper, ssl=tls_server_context)
    with pytest.raises((ConnectionError, ssl.SSLError)):
        await asyncio_client(server.address, tls_client_context)
    (failure,) = server.handshake_failures
    assert "cannot make a server connection" in str(failure.error)
    assert server.connections == ()


@pytest.mark.asyncio
async def test_tls_tcp_server_records_a_handshake_that_times_out(
    monkeypatch: pytest.MonkeyPatch,
    tcp_server: TCPServerFactory,
    tls_server_context: ssl.SSLContext,
) -> None:
    monkeypatch.setattr(_settings, "timeout", 0.2)  # the handshake's timeout is the test's
    server = await tcp_server(upper, ssl=tls_server_context)
    reader, writer = await asyncio.open_connection(*server.address)  # and no ClientHello
    (failure,) = await server.wait_for_handshake_failures(timeout=TIMEOUT)
    assert isinstance(failure.error, ConnectionAbortedError)
    assert "SSL handshake is taking longer than 0.2 seconds" in str(failure.error)
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_tls_server_handshake_timeout_is_its_own(
    tcp_server: TCPServerFactory, tls_server_context: ssl.SSLContext
) -> None:
    server = await tcp_server(upper, ssl=tls_server_context, handshake_timeout=0.1)
    reader, writer = await asyncio.open_connection(*server.address)  # and no ClientHello
    (failure,) = await server.wait_for_handshake_failures()  # the default wait: 10 s
    assert isinstance(failure.error, ConnectionAbortedError)
    assert "SSL handshake is taking longer than 0.1 seconds" in str(failure.error)
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"handshake_timeout": 0},
            ValueError,
            "^handshake_timeout must be > 0 and finite, or None for nettest's default timeout, "
            "got 0$",
        ),
        ({"handshake_timeout": "1"}, TypeError, "handshake_timeout must be a number > 0"),
        ({"handshake_timeout": 1.0, "ssl": None}, ValueError, "applies to TLS: pass ssl="),
    ],
)
def test_tls_server_handshake_timeout_is_checked(
    tls_server_context: ssl.SSLContext,
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        TCPServer(upper, **{"ssl": tls_server_context, **kwargs})
    with pytest.raises(error, match=match):
        UnixServer(upper, **{"ssl": tls_server_context, **kwargs})


@pytest.mark.asyncio
async def test_tls_tcp_server_records_no_failure_for_a_handshake_that_works(
    tcp_server: TCPServerFactory,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    server = await tcp_server(upper, ssl=tls_server_context)
    assert await asyncio_client(server.address, tls_client_context) == b"PING\n"
    (conn,) = await server.wait_for_connections()
    assert await conn.wait_closed() is not None
    assert server.handshake_failures == ()
    with pytest.raises(TimeoutError, match=r"expected 1 failed TLS handshake; 0 failed"):
        await server.wait_for_handshake_failures(timeout=0.05)


@pytest.mark.asyncio
async def test_wait_for_handshake_failures_arguments(
    tcp_server: TCPServerFactory, tls_server_context: ssl.SSLContext
) -> None:
    server = await tcp_server(upper, ssl=tls_server_context)
    assert await server.wait_for_handshake_failures(0) == ()
    with pytest.raises(ValueError, match="n must be"):
        await server.wait_for_handshake_failures(-1)
    with pytest.raises(TypeError, match="n must be"):
        await server.wait_for_handshake_failures(1.5)  # type: ignore[arg-type]
    plain = await tcp_server(upper)
    with pytest.raises(RuntimeError, match="records failed handshakes only with ssl="):
        await plain.wait_for_handshake_failures()
    await server.aclose()
    with pytest.raises(TimeoutError, match="the server is closed"):
        await server.wait_for_handshake_failures(timeout=TIMEOUT)  # at once


@pytest.mark.asyncio
async def test_tls_teardown_reads_a_handshake_the_client_began_then_aborts_it(
    tls_server_context: ssl.SSLContext,
) -> None:
    server = await TCPServer(upper, ssl=tls_server_context, close_timeout=TIMEOUT).start()
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"\x16\x03\x01\x02\x00")  # the start of a ClientHello, and no more
    await writer.drain()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ServerTeardownWarning)
        await server.aclose()
    assert server.connections == ()
    assert server.handshake_failures == ()  # ended by teardown, not by the client
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()
    with contextlib.suppress(ConnectionResetError):
        await writer.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [k for k in TLS_BAD_KINDS if k.startswith("mtls_")])
async def test_tls_tcp_server_failure_matches_the_bad_case_on_the_server_side(
    tcp_server: TCPServerFactory, tls_bad_case_factory: TLSBadCaseFactory, kind: TLSBadKind
) -> None:
    bad = tls_bad_case_factory(kind)
    server = await tcp_server(upper, ssl=bad.server_context)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await loop.run_in_executor(None, blocking_client, server.address, bad.client_context)
    (failure,) = await server.wait_for_handshake_failures()
    assert bad.matches(failure.error, side="server")
    assert not bad.matches(failure.error, side="client")


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["close", "abort"])
async def test_tls_teardown_of_a_handler_that_stopped_reading_after_its_client_left(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext, how: str
) -> None:
    # `hang` stops reading; asyncio's TLS layer then neither answered the client's
    # close (3.10) or EOF (3.11+) nor heard the answer to its own close_notify, and
    # teardown waited close_timeout, then aborted with a warning.
    server = await TCPServer(handlers.hang, ssl=tls_server_context, close_timeout=5).start()
    _, writer = await asyncio.open_connection(
        *server.address, ssl=tls_client_context, server_hostname="localhost"
    )
    (conn,) = await server.wait_for_connections()
    if how == "close":
        writer.close()  # close_notify and FIN
    else:
        writer.transport.abort()
    await asyncio.sleep(0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ServerTeardownWarning)
        await server.aclose()
    assert not conn.is_open
    writer.transport.abort()


def test_tls_server_thread_records_failed_handshakes(
    tls_mutual_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    with TCPServerThread(upper, ssl=tls_mutual_server_context) as server:
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            blocking_client(server.address, tls_client_context)
        (failure,) = server.wait_for_handshake_failures()
        assert failure.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
        assert server.handshake_failures == (failure,)
        assert server.connections == ()


# -- TLS in memory ------------------------------------------------------------------------------


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def memory_handshake(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    server_hostname: str = "localhost",
) -> tuple[Any, Any, Collect, Collect]:
    """start_tls on both ends of a memory transport pair; return what each side got."""
    loop = asyncio.get_running_loop()
    client, server = Collect(), Collect()
    c, s = memory_transport_pair(client, server)
    await asyncio.sleep(0)
    results = await asyncio.wait_for(
        asyncio.gather(
            loop.start_tls(c, client, client_context, server_hostname=server_hostname),
            loop.start_tls(s, server, server_context, server_side=True),
            return_exceptions=True,
        ),
        TIMEOUT,
    )
    for transport, result in zip((c, s), results, strict=True):
        if isinstance(result, BaseException):
            transport.abort()
    return results[0], results[1], client, server


@pytest.mark.asyncio
async def test_tls_in_memory(
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
    tls_version: ssl.TLSVersion,
) -> None:
    c_tls, s_tls, client, server = await memory_handshake(tls_server_context, tls_client_context)
    assert c_tls.get_extra_info("ssl_object").version() == tls_version.name.replace("_", ".")
    c_tls.write(b"ping")
    while server.data != b"ping":
        await asyncio.sleep(0.001)
    c_tls.close()
    await asyncio.wait_for(server.lost, TIMEOUT)
    s_tls.close()
    await asyncio.wait_for(client.lost, TIMEOUT)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", CLIENT_REJECTS)
async def test_tls_in_memory_bad_server(
    tls_bad_case_factory: TLSBadCaseFactory, kind: TLSBadKind
) -> None:
    bad = tls_bad_case_factory(kind)
    client_result, _, _, _ = await memory_handshake(
        bad.server_context, bad.client_context, bad.server_hostname
    )
    assert isinstance(client_result, ssl.SSLCertVerificationError)
    assert client_result.verify_code == bad.verify_code


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [k for k in TLS_BAD_KINDS if k.startswith("mtls_")])
async def test_tls_in_memory_bad_client_is_rejected_by_the_server(
    tls_bad_case_factory: TLSBadCaseFactory, tls_version: ssl.TLSVersion, kind: TLSBadKind
) -> None:
    bad = tls_bad_case_factory(kind)
    client_result, server_result, _, _ = await memory_handshake(
        bad.server_context, bad.client_context
    )
    assert isinstance(server_result, ssl.SSLError)
    assert bad.matches(server_result, side="server")
    if tls_version == ssl.TLSVersion.TLSv1_3:
        # The client's handshake ends before the server has checked its certificate.
        client_result.abort()
    else:
        assert isinstance(client_result, (ssl.SSLError, ConnectionError))


@pytest.mark.asyncio
async def test_tls_in_memory_mutual(
    tls_mutual_server_context: ssl.SSLContext, tls_mutual_client_context: ssl.SSLContext
) -> None:
    c_tls, s_tls, _, _ = await memory_handshake(
        tls_mutual_server_context, tls_mutual_client_context
    )
    peer = s_tls.get_extra_info("peercert")
    assert (("commonName", "nettest client"),) in peer["subject"]
    c_tls.abort()
    s_tls.abort()


async def start_tls(
    writer: asyncio.StreamWriter, context: ssl.SSLContext, server_hostname: str | None = None
) -> None:
    # StreamWriter.start_tls is new in 3.11; mypy checks for 3.10.
    method: Any = writer.start_tls  # type: ignore[attr-defined,unused-ignore]
    await method(context, server_hostname=server_hostname)


@pytest.mark.asyncio
@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is 3.11+")
async def test_tls_in_memory_streams(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair()
    await asyncio.sleep(0)
    await asyncio.wait_for(
        asyncio.gather(
            start_tls(c_writer, tls_client_context, server_hostname="localhost"),
            start_tls(s_writer, tls_server_context),
        ),
        TIMEOUT,
    )
    c_writer.write(b"ping\n")
    assert await asyncio.wait_for(s_reader.readline(), TIMEOUT) == b"ping\n"
    for writer in (c_writer, s_writer):
        writer.transport.abort()


@pytest.mark.asyncio
@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is 3.11+")
async def test_tls_in_memory_streams_wrong_host(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    (_, c_writer), (_, s_writer) = memory_stream_pair()
    await asyncio.sleep(0)
    results = await asyncio.wait_for(
        asyncio.gather(
            start_tls(c_writer, tls_client_context, server_hostname="example.com"),
            start_tls(s_writer, tls_server_context),
            return_exceptions=True,
        ),
        TIMEOUT,
    )
    assert isinstance(results[0], ssl.SSLCertVerificationError)
    assert results[0].verify_code == 62
    for writer in (c_writer, s_writer):
        writer.transport.abort()


# -- uvloop ------------------------------------------------------------------------------------


def run_on_uvloop(main: Callable[[], Awaitable[T]]) -> T:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        result: T = loop.run_until_complete(main())
        return result
    finally:
        loop.close()


@pytest.mark.uvloop
def test_tls_contexts_on_uvloop(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    reply, _ = run_on_uvloop(lambda: asyncio_exchange(tls_server_context, tls_client_context))
    assert reply == b"PING\n"


@pytest.mark.uvloop
@pytest.mark.parametrize("kind", CLIENT_REJECTS)
def test_tls_bad_case_on_uvloop(tls_bad_case_factory: TLSBadCaseFactory, kind: TLSBadKind) -> None:
    bad = tls_bad_case_factory(kind)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        run_on_uvloop(
            lambda: asyncio_exchange(bad.server_context, bad.client_context, bad.server_hostname)
        )
    assert bad.matches(excinfo.value)


@pytest.mark.uvloop
def test_tls_tcp_server_on_uvloop_records_failed_handshakes(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    async def main() -> None:
        async with TCPServer(upper, ssl=tls_server_context) as server:
            assert await asyncio_client(server.address, tls_client_context) == b"PING\n"
            loop = asyncio.get_running_loop()
            other = make_tls_client_context(new_ca())
            with pytest.raises(ssl.SSLCertVerificationError):
                await loop.run_in_executor(None, blocking_client, server.address, other)
            (failure,) = await server.wait_for_handshake_failures()
            assert failure.reason == "TLSV1_ALERT_UNKNOWN_CA"
            assert len(server.connections) == 1

    run_on_uvloop(main)


@pytest.mark.asyncio
async def test_tls_tcp_server_on_a_loop_whose_tls_layer_nettest_does_not_know(
    monkeypatch: pytest.MonkeyPatch,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    # The loop's server makes the TLS layer: TLS is served, failures go unseen.
    monkeypatch.setattr(_stream_server, "_tls_layer", lambda loop: None)
    async with TCPServer(upper, ssl=tls_server_context) as server:
        assert await asyncio_client(server.address, tls_client_context) == b"PING\n"
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio_client(server.address, make_tls_client_context(new_ca()))
        assert server.handshake_failures == ()
        with pytest.raises(RuntimeError, match="failed handshakes are not seen on asyncio"):
            await server.wait_for_handshake_failures()


@pytest.mark.uvloop
def test_tls_teardown_on_uvloop_aborts_a_connection_in_the_handshake(
    tls_server_context: ssl.SSLContext,
) -> None:
    # uvloop's servers have no close_clients(): when they made the TLS layer,
    # teardown returned at once, the connection lived on until the handshake
    # timed out, and the loop warned "unclosed resource" as it closed.
    async def main() -> None:
        server = await TCPServer(upper, ssl=tls_server_context, close_timeout=5).start()
        reader, writer = await asyncio.open_connection(*server.address)  # no ClientHello
        while not server._handshaking:
            await asyncio.sleep(0.001)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ServerTeardownWarning)
            await server.aclose()
        assert (server.connections, server.handshake_failures) == ((), ())
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        await writer.wait_closed()

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        run_on_uvloop(main)


async def _reply_and_return(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(b"bye\n")
    await writer.drain()  # the handler returns: nettest closes, and TLS sends close_notify


@pytest.mark.asyncio
async def test_tls_peer_that_never_answers_close_notify_is_aborted_and_reported(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    # From 3.11 asyncio's TLS layer aborts after ssl_shutdown_timeout (nettest sets it
    # to close_timeout) with a TimeoutError; that was recorded as the client's RESET,
    # with no warning.  On 3.10, teardown aborts it (and says so).
    server = await TCPServer(_reply_and_return, ssl=tls_server_context, close_timeout=0.2).start()
    try:
        sock = socket.create_connection(server.address)
        sock.setblocking(False)
        client = tls_client_context.wrap_socket(
            sock, server_hostname="localhost", do_handshake_on_connect=False
        )
        with client:
            while True:
                try:
                    client.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await asyncio.sleep(0.005)
            client.send(b"hi\n")
            (conn,) = await server.wait_for_connections(1)
            if sys.version_info >= (3, 11):
                await conn.wait_closed(timeout=TIMEOUT)  # the client stays silent
                assert conn.ending is Ending.ABORTED
            with pytest.warns(ServerTeardownWarning) as warned:
                await server.aclose()
    finally:
        await server.aclose()
    assert conn.ending is Ending.ABORTED
    (message,) = [str(w.message) for w in warned]
    if sys.version_info >= (3, 11):
        assert "the TLS peer never answered close_notify" in message
        assert "connection #1 from" in message
    else:
        assert "teardown had to abort" in message


class Events(asyncio.Protocol):
    """Records what happens to a connection, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        loop = asyncio.get_running_loop()
        self.made: asyncio.Future[asyncio.Transport] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        if not self.events or self.events[-1] != "data":
            self.events.append("data")

    def eof_received(self) -> bool:
        self.events.append("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(f"lost({type(exc).__name__ if exc else None})")
        self.lost.set_result(None)


@contextlib.asynccontextmanager
async def tls_connection(
    over: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> AsyncIterator[tuple[asyncio.Transport, Events, asyncio.Transport, Events]]:
    """TLS over a memory pair or loopback TCP: client and server transports and protocols."""
    loop = asyncio.get_running_loop()
    client, server = Events(), Events()
    if over == "memory":
        c, s = memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())
        await asyncio.sleep(0)
        c_tls, s_tls = await asyncio.wait_for(
            asyncio.gather(
                loop.start_tls(c, client, client_context, server_hostname="localhost"),
                loop.start_tls(s, server, server_context, server_side=True),
            ),
            TIMEOUT,
        )
        assert c_tls is not None
        assert s_tls is not None
        yield c_tls, client, s_tls, server
        return
    listener = await loop.create_server(lambda: server, "127.0.0.1", 0, ssl=server_context)
    try:
        port = listener.sockets[0].getsockname()[1]
        c_tls, _ = await loop.create_connection(
            lambda: client, "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        yield c_tls, client, await asyncio.wait_for(server.made, TIMEOUT), server
    finally:
        listener.close()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10's TLS close() never ends here")
@pytest.mark.asyncio
@pytest.mark.parametrize("over", ["memory", "loopback"])
@pytest.mark.parametrize("read_ahead", [False, True], ids=["before_reading", "after_reading"])
async def test_tls_close_with_unread_data_ends_alike_in_memory_and_on_loopback(
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
    over: str,
    read_ahead: bool,
) -> None:
    """The server closes while the client floods it: does the client see EOF or a reset?

    asyncio's TLS layer sends close_notify, which the client reads as EOF, only if none
    of the flood had been read into it yet; after it read ahead, its close aborts, and
    the client gets a reset.  Memory pairs must end both ways as loopback TCP does.
    """
    async with tls_connection(over, tls_server_context, tls_client_context) as (
        c_tls,
        client,
        s_tls,
        server,
    ):
        s_tls.pause_reading()
        c_tls.set_write_buffer_limits(high=2**30)
        if read_ahead:
            for _ in range(32):
                c_tls.write(b"x" * 65536)
                await asyncio.sleep(0)
        else:
            c_tls.write(b"x" * 4 * 1024 * 1024)
        s_tls.close()
        await asyncio.wait_for(asyncio.gather(client.lost, server.lost), TIMEOUT)
    if read_ahead:
        assert client.events == ["lost(ConnectionResetError)"]
    else:
        assert client.events[0] == "eof"
