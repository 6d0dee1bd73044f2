"""The bad TLS cases, each proven on real loopback connections, with a working twin."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import typing

import pytest

from nettest._tls import (
    TLS_BAD_KINDS,
    TLS_VERSIONS,
    TLSBadKind,
    make_tls_server_context,
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
SERVER_REJECTS: list[TLSBadKind] = [
    "mtls_no_cert",
    "mtls_untrusted_cert",
    "mtls_expired_cert",
    "mtls_wrong_eku",
]
# The server verifies the client's certificate, and the client the server's.
BOTH_SIDES_VERIFY: list[TLSBadKind] = [
    "mtls_untrusted_cert",
    "mtls_expired_cert",
    "mtls_wrong_eku",
]

Side = typing.Literal["client", "server"]

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
    "mtls_expired_cert": 10,
    "mtls_wrong_eku": 26,
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
    assert bad.alerts == (bad.alert,)  # pinned: this version's alert only
    other_side: Side = "server" if bad.rejected_by == "client" else "client"
    assert bad.matches(rejecting, side=bad.rejected_by)
    assert bad.matches(other, side=other_side)
    # Each side's failure is the other side's non-match.
    assert not bad.matches(rejecting, side=other_side)
    assert not bad.matches(other, side=bad.rejected_by)
    if kind in BOTH_SIDES_VERIFY:
        with pytest.raises(ValueError, match="pass side='client' or side='server'"):
            bad.matches(rejecting)
        with pytest.raises(ValueError, match="pass side='client' or side='server'"):
            bad.matches(other)
    else:
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
    assert bad.matches(excinfo.value, side="client")
    assert isinstance(server_result, ssl.SSLError)
    assert bad.matches(server_result, side="server")


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


# -- the side that refuses ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", SERVER_REJECTS)
def test_tls_bad_case_mtls_server_that_refuses_the_client_matches(
    tls_bad_case_factory: TLSBadCaseFactory, tls_version: ssl.TLSVersion, kind: TLSBadKind
) -> None:
    """The twin of the next test: a server that asks for a certificate and refuses it."""
    bad = tls_bad_case_factory(kind)
    server, client = blocking_exchange(bad.server_context, bad.client_context)
    assert isinstance(client, ssl.SSLError), client
    assert isinstance(server, ssl.SSLError), server
    assert bad.matches(client, side="client"), client
    assert bad.matches(server, side="server"), server


@pytest.mark.parametrize("kind", SERVER_REJECTS)
def test_tls_bad_case_mtls_client_refusing_the_server_does_not_match(
    tls_bad_case_factory: TLSBadCaseFactory, tls_version: ssl.TLSVersion, kind: TLSBadKind
) -> None:
    """A server under test that never asks for a certificate fails the mutual-TLS cases.

    It serves a certificate from another CA, so the handshake fails all the same:
    nettest's client refuses the server, with ``verify_code`` 20 as
    ``mtls_untrusted_cert``'s server would.  That is the wrong side refusing.
    """
    bad = tls_bad_case_factory(kind)
    broken_server = tls_bad_case_factory("untrusted_ca").server_context
    assert broken_server.verify_mode == ssl.CERT_NONE
    server, client = blocking_exchange(broken_server, bad.client_context)
    assert isinstance(client, ssl.SSLCertVerificationError), client
    assert client.verify_code == 20
    assert isinstance(server, ssl.SSLError), server
    assert server.reason == "TLSV1_ALERT_UNKNOWN_CA"
    assert not bad.matches(client, side="client")
    assert not bad.matches(server, side="server")
    if kind == "mtls_untrusted_cert":
        # Without a side the same error could be the server's refusal: no guess.
        with pytest.raises(ValueError, match=f"{kind}: both sides verify a certificate"):
            bad.matches(client)
        with pytest.raises(ValueError, match=f"{kind}: both sides verify a certificate"):
            bad.matches(server)
    else:
        assert not bad.matches(client)
        assert not bad.matches(server)


def _verify_error(code: int) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError()
    error.verify_code = code
    error.reason = "CERTIFICATE_VERIFY_FAILED"
    return error


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError()
    error.reason = reason
    return error


@pytest.mark.parametrize("kind", TLS_BAD_KINDS)
def test_tls_bad_case_matches_each_failure_on_its_own_side_only(
    tls_ca: trustme.CA, kind: TLSBadKind
) -> None:
    bad = make_tls_bad_case(tls_ca, kind, tls_version=ssl.TLSVersion.TLSv1_3)
    refusal = _ssl_error(bad.reason) if bad.verify_code is None else _verify_error(bad.verify_code)
    alert = _ssl_error(bad.alert)
    rejecting: Side = bad.rejected_by
    other: Side = "server" if rejecting == "client" else "client"
    assert bad.matches(refusal, side=rejecting)
    assert not bad.matches(refusal, side=other)
    assert bad.matches(alert, side=other)
    assert not bad.matches(alert, side=rejecting)
    for unrelated in (ConnectionResetError(), _verify_error(99), _ssl_error("WRONG_VERSION")):
        for side in (None, rejecting, other):
            assert not bad.matches(unrelated, side=side)
    if kind in BOTH_SIDES_VERIFY:
        for error in (refusal, alert):
            with pytest.raises(ValueError, match="pass side='client' or side='server'"):
                bad.matches(error)
    else:
        # One side only can fail this way: the side need not be given.
        assert bad.matches(refusal)
        assert bad.matches(alert)


def test_tls_bad_case_matches_names_the_sides(tls_ca: trustme.CA) -> None:
    bad = make_tls_bad_case(tls_ca, "expired")
    with pytest.raises(ValueError, match="side must be 'client', 'server' or None; got 'both'"):
        bad.matches(_verify_error(10), side="both")  # type: ignore[arg-type]


def test_tls_bad_case_matches_takes_only_an_exception(tls_ca: trustme.CA) -> None:
    # pytest.raises' ExceptionInfo instead of its value "did not match", so that
    # `assert not bad.matches(...)` passed whatever the error was.
    bad = make_tls_bad_case(tls_ca, "expired")
    with pytest.raises(ssl.SSLError) as excinfo:
        raise _verify_error(10)
    with pytest.raises(TypeError, match=r"error must be an exception, got ExceptionInfo: pass"):
        bad.matches(excinfo)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"error must be an exception, got str$"):
        bad.matches("certificate has expired")  # type: ignore[arg-type]
    assert bad.matches(excinfo.value)


# -- TLS versions: pinned, one alert; not pinned, either ------------------------------------


def test_tls_bad_case_unpinned_accepts_either_versions_alert(tls_ca: trustme.CA) -> None:
    tls12_refusal = _ssl_error("SSLV3_ALERT_HANDSHAKE_FAILURE")
    tls13_refusal = _ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED")
    unpinned = make_tls_bad_case(tls_ca, "mtls_no_cert")
    assert unpinned.alert == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert unpinned.alerts == (
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
    )
    for error in (tls12_refusal, tls13_refusal):
        assert unpinned.matches(error)
        assert unpinned.matches(error, side="client")
        assert not unpinned.matches(error, side="server")
    # Pinned, only that version's alert: the twin.
    tls12 = make_tls_bad_case(tls_ca, "mtls_no_cert", tls_version=ssl.TLSVersion.TLSv1_2)
    tls13 = make_tls_bad_case(tls_ca, "mtls_no_cert", tls_version=ssl.TLSVersion.TLSv1_3)
    assert tls12.alerts == ("SSLV3_ALERT_HANDSHAKE_FAILURE",)
    assert tls13.alerts == ("TLSV13_ALERT_CERTIFICATE_REQUIRED",)
    assert tls12.matches(tls12_refusal)
    assert not tls12.matches(tls13_refusal)
    assert tls13.matches(tls13_refusal)
    assert not tls13.matches(tls12_refusal)
    # Where both versions send the same alert, there is one.
    assert make_tls_bad_case(tls_ca, "mtls_untrusted_cert").alerts == ("TLSV1_ALERT_UNKNOWN_CA",)


@pytest.mark.parametrize(
    "server_version", TLS_VERSIONS, ids=[v.name.replace("v1_", "1.") for v in TLS_VERSIONS]
)
def test_tls_bad_case_unpinned_matches_a_server_of_either_version(
    tls_bad_case_factory: TLSBadCaseFactory,
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
    server_version: ssl.TLSVersion,
) -> None:
    """The test asks for no tls_version; the mutual-TLS server under test allows one."""
    bad = tls_bad_case_factory("mtls_no_cert")
    server_context = make_tls_server_context(
        tls_certificate, client_ca=tls_ca, tls_version=server_version
    )
    server, client = blocking_exchange(server_context, bad.client_context)
    assert isinstance(client, ssl.SSLError), client
    expected = {
        ssl.TLSVersion.TLSv1_2: "SSLV3_ALERT_HANDSHAKE_FAILURE",
        ssl.TLSVersion.TLSv1_3: "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    }
    assert client.reason == expected[server_version]
    assert bad.matches(client, side="client")
    assert bad.matches(client)
    assert isinstance(server, ssl.SSLError), server
    assert bad.matches(server, side="server")


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
