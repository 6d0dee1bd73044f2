"""The bad TLS cases, each proven on real loopback connections, with a working twin."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import typing

import pytest

from nettest._tls import (
    TLS_BAD_KINDS,
    TLSBadKind,
)
from nettest._tls_bad import (
    TLSBadCase,
    TLSBadCaseFactory,
    make_tls_bad_case,
)
from test_tls import (
    TIMEOUT,
    BlockingServer,
    asyncio_exchange,
    blocking_exchange,
)

if typing.TYPE_CHECKING:
    import trustme

CLIENT_REJECTS: list[TLSBadKind] = [k for k in TLS_BAD_KINDS if not k.startswith("mtls_")]
SERVER_REJECTS: list[TLSBadKind] = ["mtls_no_cert", "mtls_untrusted_cert"]

EXPECTED_CODES = {
    "expired": 10,
    "not_yet_valid": 9,
    "wrong_host": 62,
    "self_signed": 18,
    "untrusted_ca": 20,
    "cn_only": 62,
    "wrong_eku": 26,
    "incomplete_chain": 20,
    "mtls_no_cert": None,
    "mtls_untrusted_cert": 20,
}


def test_tls_bad_kinds_are_all_covered() -> None:
    assert set(EXPECTED_CODES) == set(TLS_BAD_KINDS) == set(typing.get_args(TLSBadKind))
    assert set(CLIENT_REJECTS) | set(SERVER_REJECTS) == set(TLS_BAD_KINDS)


@pytest.mark.parametrize("kind", TLS_BAD_KINDS)
def test_tls_bad_case_describes_its_failure(
    tls_bad_case_factory: TLSBadCaseFactory, kind: TLSBadKind
) -> None:
    bad = tls_bad_case_factory(kind)
    assert bad.kind == kind
    assert bad.verify_code == EXPECTED_CODES[kind]
    assert bad.rejected_by == ("server" if kind in SERVER_REJECTS else "client")
    assert bad.server_hostname == "localhost"
    assert bad.description
    assert bad.client_context.check_hostname
    assert bad.client_context.verify_mode == ssl.CERT_REQUIRED


# -- negatives: each case fails as it says ---------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", CLIENT_REJECTS)
async def test_tls_bad_case_asyncio_client_rejects_the_server(
    tls_bad_case_factory: TLSBadCaseFactory, tls_version: ssl.TLSVersion, kind: TLSBadKind
) -> None:
    bad = tls_bad_case_factory(kind)
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await asyncio_exchange(bad.server_context, bad.client_context, bad.server_hostname)
    assert excinfo.value.verify_code == bad.verify_code
    assert bad.matches(excinfo.value)


@pytest.mark.parametrize("kind", TLS_BAD_KINDS)
def test_tls_bad_case_blocking_sockets_fail_on_both_sides(
    tls_bad_case_factory: TLSBadCaseFactory, tls_version: ssl.TLSVersion, kind: TLSBadKind
) -> None:
    bad = tls_bad_case_factory(kind)
    server, client = blocking_exchange(bad.server_context, bad.client_context, bad.server_hostname)
    rejecting, other = (client, server) if bad.rejected_by == "client" else (server, client)
    if bad.verify_code is None:
        assert isinstance(rejecting, ssl.SSLError), rejecting
        assert not isinstance(rejecting, ssl.SSLCertVerificationError)
        assert rejecting.reason == bad.reason
    else:
        assert isinstance(rejecting, ssl.SSLCertVerificationError), rejecting
        assert rejecting.verify_code == bad.verify_code
        assert rejecting.reason == bad.reason == "CERTIFICATE_VERIFY_FAILED"
    assert isinstance(other, ssl.SSLError), other
    assert other.reason == bad.alert
    assert bad.matches(rejecting)
    assert bad.matches(other)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_REJECTS)
async def test_tls_bad_case_asyncio_client_gets_the_alert(
    tls_bad_case_factory: TLSBadCaseFactory, tls_version: ssl.TLSVersion, kind: TLSBadKind
) -> None:
    """A blocking server rejects the asyncio client; the client reads the alert."""
    bad = tls_bad_case_factory(kind)
    server = BlockingServer(bad.server_context)
    try:
        with pytest.raises(ssl.SSLError) as excinfo:
            await _connect_and_read(bad, server.port, tls_version)
    finally:
        server_result = await asyncio.get_running_loop().run_in_executor(None, server.finish)
    assert excinfo.value.reason == bad.alert
    assert bad.matches(excinfo.value)
    assert isinstance(server_result, ssl.SSLError)
    assert bad.matches(server_result)


async def _connect_and_read(bad: TLSBadCase, port: int, tls_version: ssl.TLSVersion) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=bad.client_context, server_hostname=bad.server_hostname
    )
    try:
        # TLS 1.3: the client's handshake is over before the server checks the
        # client's certificate; the alert arrives with the next read.
        assert tls_version == ssl.TLSVersion.TLSv1_3
        await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SERVER_REJECTS)
async def test_tls_bad_case_asyncio_server_rejects_the_client(
    tls_bad_case_factory: TLSBadCaseFactory, tls_version: ssl.TLSVersion, kind: TLSBadKind
) -> None:
    bad = tls_bad_case_factory(kind)
    handled: list[object] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.append(writer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=bad.server_context)
    try:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await _connect_and_exchange(bad, port)
    finally:
        server.close()
        await server.wait_closed()
    assert handled == [], "the server accepted a client it must reject"


async def _connect_and_exchange(bad: TLSBadCase, port: int) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=bad.client_context, server_hostname=bad.server_hostname
    )
    try:
        writer.write(b"ping\n")
        await asyncio.wait_for(reader.readexactly(5), TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


# -- positives: the other side of every case works ---------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", TLS_BAD_KINDS)
async def test_tls_bad_case_good_side_works(
    tls_bad_case_factory: TLSBadCaseFactory,
    tls_server_context: ssl.SSLContext,
    tls_mutual_client_context: ssl.SSLContext,
    kind: TLSBadKind,
) -> None:
    """Only one thing is wrong: the case's good side shakes hands with a good peer."""
    bad = tls_bad_case_factory(kind)
    if bad.rejected_by == "client":
        reply, _ = await asyncio_exchange(tls_server_context, bad.client_context)
    else:
        reply, _ = await asyncio_exchange(bad.server_context, tls_mutual_client_context)
    assert reply == b"PING\n"


@pytest.mark.parametrize(
    ("kind", "relax"),
    [
        ("wrong_host", "check_hostname"),
        ("cn_only", "hostname_checks_common_name"),
        ("untrusted_ca", "trust_other_ca"),
        ("incomplete_chain", "send_chain"),
    ],
)
def test_tls_bad_case_is_bad_in_one_way_only(
    tls_ca: trustme.CA, kind: TLSBadKind, relax: str
) -> None:
    """Undo the one defect and the handshake succeeds, with strict verification on."""
    from nettest._tls import (
        _authority,
        _cadata,
        _client_context,
        _leaf_identity,
        _server_context,
    )

    bad = make_tls_bad_case(tls_ca, kind)
    server_context, client_context = bad.server_context, bad.client_context
    if relax == "check_hostname":
        client_context.check_hostname = False
    elif relax == "hostname_checks_common_name":
        # Python's default: fall back to the subject's CN when there is no SAN.
        client_context.hostname_checks_common_name = True
    elif relax == "trust_other_ca":
        client_context.load_verify_locations(
            cadata=_authority(tls_ca).other_ca.cert_pem.bytes().decode()
        )
    else:
        server_context = _server_context(_leaf_identity(_authority(tls_ca).server), None, None)
        client_context = _client_context(_cadata(tls_ca), None, None)
    assert client_context.verify_flags & ssl.VERIFY_X509_STRICT
    assert blocking_exchange(server_context, client_context) == (b"ping\n", b"PING\n")


# -- matches() and arguments -----------------------------------------------------------------


def test_tls_bad_case_matches_only_its_own_failure(tls_ca: trustme.CA) -> None:
    expired = make_tls_bad_case(tls_ca, "expired")
    other = ssl.SSLCertVerificationError()
    other.verify_code = 20
    assert not expired.matches(other)
    assert not expired.matches(ConnectionResetError())
    assert not expired.matches(ssl.SSLError())
    no_cert = make_tls_bad_case(tls_ca, "mtls_no_cert")
    assert not no_cert.matches(other)


def test_tls_bad_case_alert_follows_the_tls_version(tls_ca: trustme.CA) -> None:
    tls12 = make_tls_bad_case(tls_ca, "mtls_no_cert", tls_version=ssl.TLSVersion.TLSv1_2)
    tls13 = make_tls_bad_case(tls_ca, "mtls_no_cert", tls_version=ssl.TLSVersion.TLSv1_3)
    assert tls12.alert == "SSLV3_ALERT_HANDSHAKE_FAILURE"
    assert tls13.alert == make_tls_bad_case(tls_ca, "mtls_no_cert").alert
    assert tls13.alert == "TLSV13_ALERT_CERTIFICATE_REQUIRED"


def test_tls_bad_case_rejects_unknown_kinds(tls_ca: trustme.CA) -> None:
    with pytest.raises(ValueError, match=r"kind must be one of expired, not_yet_valid, .*; got"):
        make_tls_bad_case(tls_ca, "revoked")  # type: ignore[arg-type]


def test_tls_bad_case_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        TLSBadCase()
