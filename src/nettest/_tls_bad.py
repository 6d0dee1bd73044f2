"""The bad TLS cases: contexts for handshakes that must fail, and how each one fails.

Each case pairs a server context and a client context such that exactly one
thing is wrong.  Use one side against the code under test: the server context
to check that your client rejects a bad server, the client context to check
that your server rejects a bad client.  The case also says which side rejects
the handshake, with which ``verify_code`` or ``reason``, and which alert the other
side receives, as measured with OpenSSL 3 on real loopback connections.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, final

import pytest

from ._tls import (
    TLS_BAD_KINDS,
    TLSBadKind,
    _authority,
    _build,
    _cadata,
    _check_trustme,
    _client_context,
    _leaf_identity,
    _server_context,
    requested_tls_version,
)

if TYPE_CHECKING:
    import trustme

__all__ = ["TLSBadCase", "TLSBadCaseFactory", "make_tls_bad_case"]

# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code.
_NOT_YET_VALID = 9
_EXPIRED = 10
_SELF_SIGNED = 18
_UNKNOWN_ISSUER = 20
_INVALID_PURPOSE = 26
_HOSTNAME_MISMATCH = 62

_VERIFY_FAILED = "CERTIFICATE_VERIFY_FAILED"
_UNKNOWN_CA = "TLSV1_ALERT_UNKNOWN_CA"
_BAD_CERTIFICATE = "SSLV3_ALERT_BAD_CERTIFICATE"


@dataclass(frozen=True, slots=True)
class _Expectation:
    rejected_by: Literal["client", "server"]
    verify_code: int | None
    reason: str
    alert: str
    description: str


_EXPECTED: dict[TLSBadKind, _Expectation] = {
    "expired": _Expectation(
        "client",
        _EXPIRED,
        _VERIFY_FAILED,
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "the server's certificate expired in 2001",
    ),
    "not_yet_valid": _Expectation(
        "client",
        _NOT_YET_VALID,
        _VERIFY_FAILED,
        _BAD_CERTIFICATE,
        "the server's certificate is valid from 2999",
    ),
    "wrong_host": _Expectation(
        "client",
        _HOSTNAME_MISMATCH,
        _VERIFY_FAILED,
        _BAD_CERTIFICATE,
        "the server's certificate names only wrong-host.nettest.invalid",
    ),
    "self_signed": _Expectation(
        "client",
        _SELF_SIGNED,
        _VERIFY_FAILED,
        _UNKNOWN_CA,
        "the server's certificate is signed by its own key",
    ),
    "untrusted_ca": _Expectation(
        "client",
        _UNKNOWN_ISSUER,
        _VERIFY_FAILED,
        _UNKNOWN_CA,
        "the server's certificate is issued by a CA the client does not trust",
    ),
    "cn_only": _Expectation(
        "client",
        _HOSTNAME_MISMATCH,
        _VERIFY_FAILED,
        _BAD_CERTIFICATE,
        "the server's certificate names localhost in its common name only, with no SAN",
    ),
    "wrong_eku": _Expectation(
        "client",
        _INVALID_PURPOSE,
        _VERIFY_FAILED,
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "the server presents a client-only certificate (extended key usage clientAuth)",
    ),
    "incomplete_chain": _Expectation(
        "client",
        _UNKNOWN_ISSUER,
        _VERIFY_FAILED,
        _UNKNOWN_CA,
        "the server sends its certificate without the intermediate CA",
    ),
    "mtls_no_cert": _Expectation(
        "server",
        None,
        "PEER_DID_NOT_RETURN_A_CERTIFICATE",
        # TLS 1.2 fails the handshake; TLS 1.3 sends a dedicated alert (RFC 8446, 4.4.2.4).
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "the server requires a client certificate and the client has none",
    ),
    "mtls_untrusted_cert": _Expectation(
        "server",
        _UNKNOWN_ISSUER,
        _VERIFY_FAILED,
        _UNKNOWN_CA,
        "the client presents a certificate from a CA the server does not trust",
    ),
    "mtls_expired_cert": _Expectation(
        "server",
        _EXPIRED,
        _VERIFY_FAILED,
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "the client presents a certificate that expired in 2001",
    ),
    "mtls_wrong_eku": _Expectation(
        "server",
        _INVALID_PURPOSE,
        _VERIFY_FAILED,
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "the client presents a server-only certificate (extended key usage serverAuth)",
    ),
}

# Where TLS 1.2 sends another alert than TLS 1.3 (the alerts in _EXPECTED).
_TLS12_ALERTS: dict[TLSBadKind, str] = {"mtls_no_cert": "SSLV3_ALERT_HANDSHAKE_FAILURE"}


@final
@dataclass(frozen=True, slots=True, eq=False, init=False)
class TLSBadCase:
    """A server context and a client context whose handshake must fail, and how.

    This type has no public constructor: get one from the ``tls_bad_case_factory``
    fixture or from `make_tls_bad_case`.  Exactly one thing is wrong in each case;
    the other side is the same as ``tls_server_context`` or ``tls_client_context``.

    The side named by `rejected_by` fails the handshake itself: with an
    `ssl.SSLCertVerificationError` whose ``verify_code`` is `verify_code`, or, when
    that is None, an `ssl.SSLError` whose ``reason`` is `reason`.  The other side
    receives the TLS alert `alert` as an `ssl.SSLError` with that ``reason``
    (`alerts` when the version is not pinned and the versions differ).  With
    TLS 1.3 a client learns that the server rejected its certificate only when
    it next reads, because its handshake completes first (RFC 8446, 4.4.2.4).
    `matches` checks an error against this, for the side that raised it.

    Attributes:
        kind: Which case this is, one of `TLS_BAD_KINDS`.
        server_context: A new server-side context for this case.
        client_context: A new client-side context for this case; it checks host
            names, and matches them against the subject alternative names only.
        server_hostname: The name the client must ask for (``"localhost"``).
        rejected_by: ``"client"`` when the server's certificate is bad,
            ``"server"`` for the mutual-TLS cases.
        verify_code: OpenSSL's ``X509_V_ERR_*`` code on the rejecting side, or
            None when it fails without verifying a certificate.
        reason: The ``reason`` of the rejecting side's `ssl.SSLError`.
        alert: The ``reason`` of the error the other side gets; when the case
            is not pinned to a TLS version, the TLS 1.3 one.
        alerts: Every ``reason`` the other side may get: `alert` alone, or,
            when the case is not pinned and TLS 1.2 sends another alert
            (``mtls_no_cert``), the TLS 1.3 alert and then the TLS 1.2 one.
        description: What is wrong, in words.
    """

    kind: TLSBadKind
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    server_hostname: str
    rejected_by: Literal["client", "server"]
    verify_code: int | None
    reason: str
    alert: str
    alerts: tuple[str, ...]
    description: str

    def __init__(self) -> None:
        raise TypeError(
            "TLSBadCase has no public constructor: use the tls_bad_case_factory fixture "
            "or make_tls_bad_case()"
        )

    @classmethod
    def _create(
        cls,
        kind: TLSBadKind,
        server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
        tls_version: ssl.TLSVersion | None,
    ) -> TLSBadCase:
        expected = _EXPECTED[kind]
        tls12_alert = _TLS12_ALERTS.get(kind, expected.alert)
        if tls_version == ssl.TLSVersion.TLSv1_2:
            alerts: tuple[str, ...] = (tls12_alert,)
        elif tls_version == ssl.TLSVersion.TLSv1_3 or tls12_alert == expected.alert:
            alerts = (expected.alert,)
        else:
            # Not pinned: the peer under test may speak either version.
            alerts = (expected.alert, tls12_alert)
        return _build(
            cls,
            kind=kind,
            server_context=server_context,
            client_context=client_context,
            server_hostname="localhost",
            rejected_by=expected.rejected_by,
            verify_code=expected.verify_code,
            reason=expected.reason,
            alert=alerts[0],
            alerts=alerts,
            description=expected.description,
        )

    def matches(
        self, error: BaseException, *, side: Literal["client", "server"] | None = None
    ) -> bool:
        """Return whether *error* is how this case fails on the side that raised it.

        The side named by `rejected_by` must fail with its own refusal: an
        `ssl.SSLCertVerificationError` with `verify_code`, or, when that is None,
        an `ssl.SSLError` whose ``reason`` is `reason`.  The other side must get
        one of `alerts`.  Anything else does not match: a connection reset, a
        different verification error, or a refusal on the wrong side, such as
        a client refusing the server's certificate in a mutual-TLS case, where
        the server must be the one that refuses.

        Pass *side*, the side that raised *error*, to have that checked.
        Without it the side is worked out from the error, which works wherever
        only one side can fail that way: in the cases the client rejects, only
        the client verifies a certificate, and in ``mtls_no_cert`` only the
        server fails with `reason` or sends the alerts.  In the other mutual-TLS
        cases both sides verify certificates: a client that refuses a server's
        certificate from another CA fails just as the server must fail in
        ``mtls_untrusted_cert``, with the same ``verify_code`` and alert (and
        likewise for an expired certificate, or one for the wrong use).  So
        without *side*, an error that would match on one side and not on the
        other raises `ValueError` in those cases.

        Args:
            error: The exception one side of the handshake raised.
            side: ``"client"`` or ``"server"``: which side raised *error*.

        Returns:
            True when *error* is this case's failure on that side.

        Raises:
            TypeError: *error* is not an exception (pytest's ``ExceptionInfo``,
                say, rather than its ``value``).
            ValueError: *side* is not ``"client"``, ``"server"`` or None, or it
                is None and the answer depends on the side.

        Example::

            bad = tls_bad_case_factory("mtls_untrusted_cert")
            with pytest.raises(ssl.SSLError) as excinfo:
                await my_exchange(my_server_port, ssl=bad.client_context)
            # The server under test must refuse: the client gets its alert.
            assert bad.matches(excinfo.value, side="client"), excinfo.value
        """
        given: object = error  # typed, but not always so given
        if not isinstance(given, BaseException):
            # Else any non-exception "does not match", and `assert not` passes.
            hint = ": pass its .value" if hasattr(given, "value") else ""
            raise TypeError(f"error must be an exception, got {type(given).__name__}{hint}")
        if side is not None and side not in ("client", "server"):
            raise ValueError(f"side must be 'client', 'server' or None; got {side!r}")
        if side is not None:
            return self._refused(error) if side == self.rejected_by else self._alerted(error)
        refused, alerted = self._refused(error), self._alerted(error)
        if (refused or alerted) and self.rejected_by == "server" and self.verify_code is not None:
            raise ValueError(
                f"{self.kind}: both sides verify a certificate, so {error!r} may be the "
                "server refusing the client (a match) or the client refusing the server "
                "(not one); pass side='client' or side='server', the side that raised it"
            )
        return refused or alerted

    def _refused(self, error: BaseException) -> bool:
        """Whether *error* is the rejecting side's own refusal."""
        if isinstance(error, ssl.SSLCertVerificationError):
            return self.verify_code is not None and error.verify_code == self.verify_code
        if isinstance(error, ssl.SSLError):
            return self.verify_code is None and getattr(error, "reason", None) == self.reason
        return False

    def _alerted(self, error: BaseException) -> bool:
        """Whether *error* is the alert the other side gets."""
        if isinstance(error, ssl.SSLCertVerificationError) or not isinstance(error, ssl.SSLError):
            return False
        return getattr(error, "reason", None) in self.alerts


def make_tls_bad_case(
    ca: trustme.CA,
    kind: TLSBadKind,
    *,
    tls_version: ssl.TLSVersion | None = None,
    mutual: bool = False,
) -> TLSBadCase:
    """Return new contexts for the bad case *kind*, built around *ca*.

    The clients trust *ca*; the servers present certificates from the same
    intermediate as the ``tls_certificate`` fixture unless the case says
    otherwise.  The bad certificates are made on first use and cached with *ca*;
    the contexts are new on every call.

    Args:
        ca: The CA that the good side trusts, normally the ``tls_ca`` fixture.
        kind: One of `TLS_BAD_KINDS`.
        tls_version: Allow only this version, one of `TLS_VERSIONS`.
        mutual: In the cases where the client refuses the server, make the
            server require a client certificate too, and the client present
            ``tls_client_certificate``'s, as for a mutual-TLS client under test.
            The ``mtls_*`` cases are mutual TLS whatever it says.

    Returns:
        The case, with fresh contexts.

    Raises:
        TypeError: *ca* is not a ``trustme.CA``, or *mutual* not a bool.
        ValueError: *kind* is not one of `TLS_BAD_KINDS`, or *tls_version* is not
            TLS 1.2 or TLS 1.3.

    Example::

        bad = nettest.make_tls_bad_case(tls_ca, "wrong_host")
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=bad.server_context)
    """
    _check_trustme("ca", ca, "CA")
    if not isinstance(mutual, bool):
        raise TypeError(f"mutual must be a bool, got {type(mutual).__name__}")
    if kind not in TLS_BAD_KINDS:
        raise ValueError(f"kind must be one of {', '.join(TLS_BAD_KINDS)}; got {kind!r}")
    authority = _authority(ca)
    cadata = _cadata(ca)
    server = _leaf_identity(authority.server)
    if kind == "mtls_no_cert":
        server_context = _server_context(server, cadata, tls_version)
        client_context = _client_context(cadata, None, tls_version)
    elif kind in ("mtls_untrusted_cert", "mtls_expired_cert", "mtls_wrong_eku"):
        server_context = _server_context(server, cadata, tls_version)
        client_context = _client_context(cadata, authority.bad(kind), tls_version)
    else:
        client = _leaf_identity(authority.client) if mutual else None
        server_context = _server_context(
            authority.bad(kind), cadata if mutual else None, tls_version
        )
        client_context = _client_context(cadata, client, tls_version)
    return TLSBadCase._create(kind, server_context, client_context, tls_version)


class TLSBadCaseFactory(Protocol):
    """The type of the ``tls_bad_case_factory`` fixture: call it with a kind."""

    def __call__(self, kind: TLSBadKind, *, mutual: bool = False) -> TLSBadCase:
        """Return new contexts for the bad case *kind*, one of `TLS_BAD_KINDS`.

        With ``mutual=True`` a case in which the client refuses the server is
        mutual TLS too (see `make_tls_bad_case`).
        """
        ...


@pytest.fixture
def tls_bad_case_factory(tls_ca: trustme.CA, request: pytest.FixtureRequest) -> TLSBadCaseFactory:
    """Make contexts for a handshake that must fail: call it with a kind from TLS_BAD_KINDS.

    Each call returns a new `nettest.TLSBadCase` built around ``tls_ca``, pinned to
    ``tls_version`` when the test requests that.  The bad certificates are made
    once per session.
    """
    tls_version = requested_tls_version(request)

    def factory(kind: TLSBadKind, *, mutual: bool = False) -> TLSBadCase:
        return make_tls_bad_case(tls_ca, kind, tls_version=tls_version, mutual=mutual)

    return factory
