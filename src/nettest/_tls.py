"""TLS for tests: a session CA, fresh contexts for every test, and the bad cases.

Theory of operation
-------------------
Key generation and signing are the slow part of TLS set-up, and loading the
system's CA store is the slow part of ``ssl.create_default_context()``.  A test
needs neither: it trusts exactly one test CA.  So the certificates are made once
per session (per xdist worker) with ECDSA keys, their bytes are cached, and
each test builds new :class:`ssl.SSLContext` objects from those bytes.  A test
can change its contexts freely without touching any other test's.

What a pair of contexts still costs is OpenSSL's own work, and nettest adds
a few percent at most to it (``benchmarks/bench_tls.py`` prints the breakdown): creating
each context, and decoding the server's key and three certificates (the leaf
and the intermediate for the server, the root for the client).  OpenSSL 3.0
decodes every key, even a certificate's public key, through its provider
decoders, which dominate.  The root goes to ``load_verify_locations`` as DER,
which skips PEM parsing.

:func:`ssl.SSLContext.load_cert_chain` only reads files (bpo-16487), so each
certificate's key and chain are written once to a private directory (mode 0700,
keys 0600) that is removed when the process exits.

Every certificate made here carries what ``VERIFY_X509_STRICT`` asks for (it is on
by default from Python 3.13, python/cpython#107361): a critical basicConstraints,
a critical keyUsage, subject and authority key identifiers.  nettest's verifying
contexts set the flag on every Python, so a chain that passes on 3.10 passes on
3.13 too.  A deliberately bad certificate is bad in exactly one way.

trustme and cryptography are imported inside functions: ``import nettest`` and
loading the plugin must stay cheap for tests that never use TLS.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import ipaddress
import itertools
import os
import shutil
import ssl
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, get_args

import pytest

from ._processes import pid_of_tag, process_tag, remove_dead_processes_dirs

if TYPE_CHECKING:
    from collections.abc import Sequence

    import trustme
    from cryptography import x509

__all__ = [
    "TLS_BAD_KINDS",
    "TLS_VERSIONS",
    "TLSBadKind",
    "TLSClientContextFactory",
    "make_tls_client_context",
    "make_tls_server_context",
]

#: The identities nettest's server certificates are valid for.
DEFAULT_IDENTITIES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

#: The TLS versions the ``tls_version`` fixture runs a test with.
TLS_VERSIONS: tuple[ssl.TLSVersion, ...] = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)

TLSBadKind = Literal[
    "expired",
    "not_yet_valid",
    "wrong_host",
    "self_signed",
    "untrusted_ca",
    "cn_only",
    "wrong_eku",
    "incomplete_chain",
    "mtls_no_cert",
    "mtls_untrusted_cert",
    "mtls_expired_cert",
    "mtls_wrong_eku",
]

#: Every kind of bad TLS set-up :func:`make_tls_bad_case` knows, in a stable order.
TLS_BAD_KINDS: tuple[TLSBadKind, ...] = get_args(TLSBadKind)

# Fixed dates keep the bad certificates deterministic.  trustme's own default
# expiry is the year 3000: OpenSSL on Windows rejects dates after ~3001-01-19
# (pyca/cryptography#3194).
_PAST = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
_EXPIRED_AT = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
_FUTURE = datetime.datetime(2999, 1, 1, tzinfo=datetime.timezone.utc)
_FAR_FUTURE = datetime.datetime(3000, 1, 1, tzinfo=datetime.timezone.utc)

_WRONG_HOST = "wrong-host.nettest.invalid"
_CLIENT_IDENTITY = "client.nettest.invalid"


_T = TypeVar("_T")


def _build(cls: type[_T], **fields: object) -> _T:
    """Make an instance of a frozen dataclass whose ``__init__`` refuses callers."""
    instance = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(instance, name, value)
    return instance


# -- PEM material and its cache ------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Identity:
    """A private key and the certificate chain that goes with it, as PEM bytes."""

    key_pem: bytes
    #: The leaf first, then the intermediates up to (not including) the root.
    chain_pems: tuple[bytes, ...]
    _file: list[str] = field(default_factory=list, repr=False)

    def key_and_chain_file(self) -> str:
        """Return a file holding the key and the chain, written on first use.

        The file goes when this object does, or when the process exits.
        """
        if not self._file:
            path = _write_private(self.key_pem + b"".join(self.chain_pems))
            weakref.finalize(self, _unlink, path)
            self._file.append(path)
        return self._file[0]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


_lock = threading.Lock()
_private_dir: list[str] = []
_counter = itertools.count()
_leaf_identities: weakref.WeakKeyDictionary[object, _Identity] = weakref.WeakKeyDictionary()
_ca_data: weakref.WeakKeyDictionary[object, bytes] = weakref.WeakKeyDictionary()
_sweep_lock = threading.Lock()
_swept: list[bool] = []


def _write_private(data: bytes) -> str:
    with _lock:
        if not _private_dir:
            directory = _make_key_dir()
            atexit.register(shutil.rmtree, directory, True)
            _private_dir.append(directory)
        path = os.path.join(_private_dir[0], f"identity-{next(_counter)}.pem")
    _write_file(path, data, private=True)
    return path


def _make_key_dir(label: str = "") -> str:
    """Make a new private directory (mode 0700) for keys, named after this process.

    Every directory that holds nettest's keys is named
    ``nettest-tls-<pid>-<PID namespace>-<label>…`` (`process_tag`) in the
    temporary directory, so that `_remove_dead_processes_dirs` finds it if this
    process is killed before it can remove it; each session runs that sweep as
    it starts, and so does the first call in a process outside pytest.
    """
    remove_dead_processes_key_dirs()
    return tempfile.mkdtemp(prefix=f"nettest-tls-{process_tag()}-{label}")


def remove_dead_processes_key_dirs() -> None:
    """Sweep the key directories of dead processes, once per process (see `_make_key_dir`)."""
    with _sweep_lock:
        if not _swept:
            _remove_dead_processes_dirs()
            _swept.append(True)


def _remove_dead_processes_dirs() -> None:
    """Remove the key directories of processes that died before they could remove them.

    Those are the ``nettest-tls-<pid>-<namespace>-…`` directories made by
    `_make_key_dir`, for the contexts' key files and for the ``tls_files``
    fixture: only this user's, named after a process of this PID namespace that
    no longer lives (`remove_dead_processes_dirs`).
    """
    remove_dead_processes_dirs(tempfile.gettempdir(), _key_dir_pid)


def _key_dir_pid(name: str) -> int | None:
    parts = name.split("-")
    if len(parts) < 5 or parts[:2] != ["nettest", "tls"]:
        return None
    return pid_of_tag(parts[2], parts[3])


def _write_file(path: str | os.PathLike[str], data: bytes, *, private: bool) -> None:
    """Create *path* (it must not exist) with *data*; remove it again if writing fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        with open(fd, "wb") as file:
            file.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _leaf_identity(leaf: trustme.LeafCert) -> _Identity:
    identity = _leaf_identities.get(leaf)
    if identity is None:
        identity = _Identity(
            leaf.private_key_pem.bytes(), tuple(blob.bytes() for blob in leaf.cert_chain_pems)
        )
        _leaf_identities[leaf] = identity
    return identity


def _cadata(ca: trustme.CA) -> bytes:
    """The CA's certificate as DER, which ``load_verify_locations`` reads without PEM parsing."""
    data = _ca_data.get(ca)
    if data is None:
        data = _ca_data[ca] = ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode("ascii"))
    return data


# -- contexts ----------------------------------------------------------------------


def _pin(context: ssl.SSLContext, tls_version: ssl.TLSVersion | None) -> None:
    if tls_version is None:
        return
    if tls_version not in TLS_VERSIONS:
        raise ValueError(
            f"tls_version must be one of {', '.join(v.name for v in TLS_VERSIONS)}; "
            f"got {tls_version!r}"
        )
    context.minimum_version = context.maximum_version = tls_version


def _server_context(
    identity: _Identity, client_ca: bytes | None, tls_version: ssl.TLSVersion | None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.key_and_chain_file())
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.load_verify_locations(cadata=client_ca)
    _pin(context, tls_version)
    return context


def _client_context(
    cadata: bytes, identity: _Identity | None, tls_version: ssl.TLSVersion | None
) -> ssl.SSLContext:
    # PROTOCOL_TLS_CLIENT turns on CERT_REQUIRED and check_hostname, and unlike
    # create_default_context() it does not load the system's CA store.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    # Match host names against the SAN only, as browsers and RFC 9525 do.
    context.hostname_checks_common_name = False
    context.load_verify_locations(cadata=cadata)
    if identity is not None:
        context.load_cert_chain(identity.key_and_chain_file())
    _pin(context, tls_version)
    return context


def _check_trustme(name: str, value: object, expected: Literal["CA", "LeafCert"]) -> None:
    """Raise TypeError naming `name` unless `value` is a ``trustme.CA`` or ``LeafCert``."""
    import trustme

    if not isinstance(value, getattr(trustme, expected)):
        made_by = "trustme.CA() or the tls_ca fixture" if expected == "CA" else "CA.issue_cert()"
        raise TypeError(f"{name} must be a trustme.{expected} (from {made_by}), got {value!r}")


def make_tls_server_context(
    certificate: trustme.LeafCert,
    *,
    client_ca: trustme.CA | None = None,
    tls_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """Return a new server-side context that presents *certificate* and its chain.

    The key and chain are loaded from PEM bytes cached per certificate, so making
    a context costs a fraction of a millisecond.  This is what the
    ``tls_server_context`` and ``tls_mutual_server_context`` fixtures return; call
    it directly for certificates of your own or outside pytest.

    Args:
        certificate: The certificate to serve, from `trustme.CA.issue_cert`.
        client_ca: Require every client to present a certificate that chains to
            this CA (mutual TLS), verified with ``VERIFY_X509_STRICT``.
        tls_version: Allow only this version, one of `TLS_VERSIONS`.

    Returns:
        A new `ssl.SSLContext` for ``ssl.PROTOCOL_TLS_SERVER``.

    Raises:
        TypeError: *certificate* is not a ``trustme.LeafCert``, or *client_ca*
            not a ``trustme.CA``.
        ValueError: *tls_version* is not TLS 1.2 or TLS 1.3.

    Example::

        context = nettest.make_tls_server_context(tls_ca.issue_cert("db.test"))
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    """
    _check_trustme("certificate", certificate, "LeafCert")
    if client_ca is not None:
        _check_trustme("client_ca", client_ca, "CA")
    return _server_context(
        _leaf_identity(certificate),
        None if client_ca is None else _cadata(client_ca),
        tls_version,
    )


def make_tls_client_context(
    ca: trustme.CA,
    *,
    certificate: trustme.LeafCert | None = None,
    tls_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """Return a new client-side context that trusts *ca* and nothing else.

    Verification and host-name checking are on.  ``VERIFY_X509_STRICT`` is set on
    every Python, as Python 3.13's default context does, and host names match the
    subject alternative names only (``hostname_checks_common_name`` is off).  The
    system's CA store is never loaded: it is slow, and a test must not trust it.

    Args:
        ca: The only CA to trust.
        certificate: Present this certificate when the server asks for one
            (mutual TLS).
        tls_version: Allow only this version, one of `TLS_VERSIONS`.

    Returns:
        A new `ssl.SSLContext` for ``ssl.PROTOCOL_TLS_CLIENT``.

    Raises:
        TypeError: *ca* is not a ``trustme.CA``, or *certificate* not a
            ``trustme.LeafCert``.
        ValueError: *tls_version* is not TLS 1.2 or TLS 1.3.

    Example::

        context = nettest.make_tls_client_context(tls_ca)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
    """
    _check_trustme("ca", ca, "CA")
    if certificate is not None:
        _check_trustme("certificate", certificate, "LeafCert")
    return _client_context(
        _cadata(ca), None if certificate is None else _leaf_identity(certificate), tls_version
    )


# -- certificates ----------------------------------------------------------------------


def new_ca() -> trustme.CA:
    """Return a new root CA with an ECDSA key, as the ``tls_ca`` fixture does."""
    import trustme

    return trustme.CA(organization_name="nettest", key_type=trustme.KeyType.ECDSA)


@dataclass(eq=False)
class _Authority:
    """Everything made once from one root CA: the intermediate and the leaves."""

    ca: trustme.CA
    _intermediate: trustme.CA | None = None
    _server: trustme.LeafCert | None = None
    _client: trustme.LeafCert | None = None
    _clients: dict[str, trustme.LeafCert] = field(default_factory=dict)
    _bad: dict[str, _Identity] = field(default_factory=dict)
    _other_ca: trustme.CA | None = None

    @property
    def intermediate(self) -> trustme.CA:
        if self._intermediate is None:
            self._intermediate = self.ca.create_child_ca()
        return self._intermediate

    @property
    def server(self) -> trustme.LeafCert:
        if self._server is None:
            self._server = self.intermediate.issue_cert(
                *DEFAULT_IDENTITIES, common_name="localhost"
            )
        return self._server

    @property
    def client(self) -> trustme.LeafCert:
        if self._client is None:
            self._client = self.intermediate.issue_cert(
                _CLIENT_IDENTITY, common_name="nettest client"
            )
        return self._client

    def client_named(self, common_name: str) -> trustme.LeafCert:
        """A client certificate whose subject's common name is `common_name`."""
        with _lock:
            leaf = self._clients.get(common_name)
            if leaf is None:
                leaf = self._clients[common_name] = self.intermediate.issue_cert(
                    _CLIENT_IDENTITY, common_name=common_name
                )
            return leaf

    @property
    def other_ca(self) -> trustme.CA:
        """A root nobody trusts."""
        if self._other_ca is None:
            self._other_ca = new_ca()
        return self._other_ca

    def bad(self, kind: TLSBadKind) -> _Identity:
        identity = self._bad.get(kind)
        if identity is None:
            identity = self._bad[kind] = self._make_bad(kind)
        return identity

    def _make_bad(self, kind: TLSBadKind) -> _Identity:
        issuer = self.intermediate
        if kind == "expired":
            return _issue(issuer, DEFAULT_IDENTITIES, not_before=_PAST, not_after=_EXPIRED_AT)
        if kind == "not_yet_valid":
            return _issue(issuer, DEFAULT_IDENTITIES, not_before=_FUTURE, not_after=_FAR_FUTURE)
        if kind == "wrong_host":
            return _issue(issuer, (_WRONG_HOST,))
        if kind == "self_signed":
            return _issue(None, DEFAULT_IDENTITIES)
        if kind == "untrusted_ca":
            return _issue(self.other_ca, DEFAULT_IDENTITIES)
        if kind == "cn_only":
            return _issue(issuer, (), common_name="localhost")
        if kind == "wrong_eku":
            return _issue(issuer, DEFAULT_IDENTITIES, server_auth=False)
        if kind == "incomplete_chain":
            full = _leaf_identity(self.server)
            return _Identity(full.key_pem, full.chain_pems[:1])
        if kind == "mtls_untrusted_cert":
            return _issue(self.other_ca, (_CLIENT_IDENTITY,), server_auth=False)
        if kind == "mtls_expired_cert":
            return _issue(
                issuer,
                (_CLIENT_IDENTITY,),
                not_before=_PAST,
                not_after=_EXPIRED_AT,
                server_auth=False,
            )
        if kind == "mtls_wrong_eku":
            return _issue(issuer, (_CLIENT_IDENTITY,), client_auth=False)
        raise AssertionError(kind)  # pragma: no cover - mtls_no_cert has no certificate


def _authority(ca: trustme.CA) -> _Authority:
    # Kept on the CA itself, so that both go together.  A weak-keyed cache would
    # keep them for ever: the intermediate holds its parent, the key, strongly.
    with _lock:
        authority = getattr(ca, _AUTHORITY_ATTRIBUTE, None)
        if not isinstance(authority, _Authority):
            authority = _Authority(ca)
            setattr(ca, _AUTHORITY_ATTRIBUTE, authority)
        return authority


_AUTHORITY_ATTRIBUTE = "_nettest_tls_authority"


def _general_name(identity: str) -> x509.GeneralName:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(identity))
    except ValueError:
        return x509.DNSName(identity)


def _issue(
    issuer: trustme.CA | None,
    identities: Sequence[str],
    *,
    common_name: str | None = None,
    not_before: datetime.datetime = _PAST,
    not_after: datetime.datetime = _FAR_FUTURE,
    server_auth: bool = True,
    client_auth: bool = True,
) -> _Identity:
    """Make a leaf that trustme cannot: no SAN, a one-sided EKU, or self-signed.

    Apart from what the caller asks for, the certificate is what
    ``VERIFY_X509_STRICT`` wants, so that it fails for the one intended reason.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nettest")]
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    subject = x509.Name(attributes)
    if issuer is None:
        signing_key: ec.EllipticCurvePrivateKey = key
        issuer_name = subject
        issuer_ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        chain: tuple[bytes, ...] = ()
    else:
        loaded = serialization.load_pem_private_key(issuer.private_key_pem.bytes(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey), "nettest's CAs use ECDSA keys"
        signing_key = loaded
        issuer_cert = x509.load_pem_x509_certificate(issuer.cert_pem.bytes())
        issuer_name = issuer_cert.subject
        issuer_ski = issuer_cert.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        chain = _chain_of(issuer)
    usages = [
        usage
        for usage, wanted in (
            (ExtendedKeyUsageOID.SERVER_AUTH, server_auth),
            (ExtendedKeyUsageOID.CLIENT_AUTH, client_auth),
        )
        if wanted
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
    )
    if identities:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(i) for i in identities]), critical=False
        )
    certificate = builder.sign(signing_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _Identity(key_pem, (certificate.public_bytes(serialization.Encoding.PEM), *chain))


def _chain_of(ca: trustme.CA) -> tuple[bytes, ...]:
    """The certificates a server sends for a leaf issued by *ca*: every CA but the root."""
    chain = []
    while ca.parent_cert is not None:
        chain.append(ca.cert_pem.bytes())
        ca = ca.parent_cert
    return tuple(chain)


# -- fixtures ----------------------------------------------------------------------------


def requested_tls_version(request: pytest.FixtureRequest) -> ssl.TLSVersion | None:
    """Return the test's ``tls_version`` if it asked for one, else None (any version)."""
    if "tls_version" not in request.fixturenames:
        return None
    version = request.getfixturevalue("tls_version")
    if not isinstance(version, ssl.TLSVersion):
        raise TypeError(f"the tls_version fixture must be an ssl.TLSVersion; got {version!r}")
    return version


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """The session's certificate authority: a trustme.CA with an ECDSA key.

    Made once per session, so once per xdist worker.  Every certificate the other
    ``tls_*`` fixtures use chains to it, through one intermediate CA.  Override
    this fixture to bring your own CA: the contexts and bad cases follow it.
    """
    return new_ca()


@pytest.fixture(scope="session")
def tls_certificate(tls_ca: trustme.CA) -> trustme.LeafCert:
    """The server certificate: a trustme.LeafCert for localhost, 127.0.0.1 and ::1.

    Issued once per session by an intermediate CA under ``tls_ca``;
    ``cert_chain_pems`` holds the leaf and then the intermediate, which a server
    must send along with the leaf.
    """
    return _authority(tls_ca).server


@pytest.fixture(scope="session")
def tls_client_certificate(tls_ca: trustme.CA) -> trustme.LeafCert:
    """The client certificate for mutual TLS, a trustme.LeafCert issued under tls_ca.

    Its subject's common name is ``nettest client``; it is made once per session.
    """
    return _authority(tls_ca).client


@pytest.fixture(params=TLS_VERSIONS, ids=[v.name.replace("v1_", "1.") for v in TLS_VERSIONS])
def tls_version(request: pytest.FixtureRequest) -> ssl.TLSVersion:
    """Run the test once with TLS 1.2 and once with TLS 1.3, pinning nettest's contexts.

    Only the tests that request this fixture are parametrized.  In those tests,
    every context a ``tls_*`` fixture or ``tls_bad_case_factory`` returns allows
    exactly this version.
    """
    version = request.param
    assert isinstance(version, ssl.TLSVersion)
    return version


@pytest.fixture
def tls_server_context(
    tls_certificate: trustme.LeafCert, request: pytest.FixtureRequest
) -> ssl.SSLContext:
    """A new server-side ssl.SSLContext for each test, presenting tls_certificate.

    Loaded from PEM bytes cached for the session; change it as you like, no other
    test sees it.  Pinned to ``tls_version`` when the test requests that.
    """
    return _server_context(_leaf_identity(tls_certificate), None, requested_tls_version(request))


@pytest.fixture
def tls_client_context(tls_ca: trustme.CA, request: pytest.FixtureRequest) -> ssl.SSLContext:
    """A new client-side ssl.SSLContext for each test, trusting tls_ca and nothing else.

    Verification and host-name checking are on, with ``VERIFY_X509_STRICT`` on
    every Python.  The system's CA store is never loaded.  Connect to 127.0.0.1,
    ::1 or localhost with ``server_hostname="localhost"`` or the address itself.
    """
    return _client_context(_cadata(tls_ca), None, requested_tls_version(request))


@pytest.fixture
def tls_mutual_server_context(
    tls_ca: trustme.CA, tls_certificate: trustme.LeafCert, request: pytest.FixtureRequest
) -> ssl.SSLContext:
    """A new server-side ssl.SSLContext for mutual TLS: it requires a client certificate.

    Like ``tls_server_context``, and it also demands a certificate from every
    client that chains to tls_ca (``ssl.CERT_REQUIRED``).
    """
    return _server_context(
        _leaf_identity(tls_certificate), _cadata(tls_ca), requested_tls_version(request)
    )


class TLSClientContextFactory(Protocol):
    """The type of the ``tls_client_context_factory`` fixture: call it with a name."""

    def __call__(self, common_name: str) -> ssl.SSLContext:
        """Return a new mutual-TLS client context presenting a certificate for *common_name*."""
        ...


@pytest.fixture
def tls_client_context_factory(
    tls_ca: trustme.CA, request: pytest.FixtureRequest
) -> TLSClientContextFactory:
    """Make mutual-TLS client contexts for clients of your choosing, by common name.

    ``factory("alice")`` returns a new client context like
    ``tls_mutual_client_context``, presenting a certificate issued under tls_ca
    (with its intermediate) whose subject's common name is ``alice``: for a
    server that authorizes clients by name.  Each name's certificate is made once
    per session.  Pinned to ``tls_version`` when the test requests that.
    """
    tls_version = requested_tls_version(request)

    def factory(common_name: str) -> ssl.SSLContext:
        if not isinstance(common_name, str):
            raise TypeError(f"common_name must be a str, got {type(common_name).__name__}")
        size = len(common_name.encode("utf-8", "surrogatepass"))
        if not 1 <= size <= 64:
            # RFC 5280's upper bound for a common name, in bytes as the
            # certificate library counts it; an empty name names no one.
            raise ValueError(
                f"common_name must be 1 to 64 bytes long in UTF-8, got {size}"
                + (f" ({len(common_name)} characters)" if size != len(common_name) else "")
            )
        leaf = _authority(tls_ca).client_named(common_name)
        return _client_context(_cadata(tls_ca), _leaf_identity(leaf), tls_version)

    return factory


@pytest.fixture
def tls_mutual_client_context(
    tls_ca: trustme.CA, tls_client_certificate: trustme.LeafCert, request: pytest.FixtureRequest
) -> ssl.SSLContext:
    """A new client-side ssl.SSLContext for mutual TLS: it presents tls_client_certificate.

    Like ``tls_client_context``, and it also answers the server's certificate
    request with ``tls_client_certificate`` and its chain.
    """
    return _client_context(
        _cadata(tls_ca),
        _leaf_identity(tls_client_certificate),
        requested_tls_version(request),
    )
