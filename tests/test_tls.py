"""TLS fixtures and contexts: real loopback handshakes, each success with a failing twin."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import socket
import ssl
import subprocess
import sys
import threading
import unittest.mock
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import nettest
from nettest._tls import (
    TLS_VERSIONS,
    TLSClientContextFactory,
    _authority,
    _leaf_identity,
    make_tls_client_context,
    make_tls_server_context,
    new_ca,
)
from support import dead_pid

if TYPE_CHECKING:
    from collections.abc import Callable

    import trustme

TIMEOUT = 10.0


# -- helpers: one request and one reply over a real loopback connection ----------


async def asyncio_exchange(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    server_hostname: str = "localhost",
    host: str = "127.0.0.1",
) -> tuple[bytes, dict[str, object]]:
    """Serve TLS with asyncio.start_server, connect with open_connection, echo one line.

    Returns the reply and the client's view of the connection (version, peer
    certificate).  Raises whatever the client sees.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, 0, ssl=server_context)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=client_context, server_hostname=server_hostname
            ),
            TIMEOUT,
        )
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            info = {"version": ssl_object.version(), "peercert": ssl_object.getpeercert()}
            writer.write(b"ping\n")
            reply = await asyncio.wait_for(reader.readline(), TIMEOUT)
            if not reply:
                raise ConnectionResetError("the server closed without replying")
            return reply, info
        finally:
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


class BlockingServer:
    """A blocking TLS server in a thread: one connection, one line echoed upper-cased."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port: int = self.listener.getsockname()[1]
        self.results: list[bytes | BaseException] = []
        self.peer_subjects: list[object] = []
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError as error:
            self.results.append(error)
            return
        connection.settimeout(TIMEOUT)
        with connection, connection.dup() as raw:
            raw.settimeout(TIMEOUT)
            try:
                with self.context.wrap_socket(connection, server_side=True) as tls:
                    peer = tls.getpeercert()
                    if peer:
                        self.peer_subjects.extend(
                            rdn for rdn in peer["subject"] if rdn[0][0] == "commonName"
                        )
                    line = tls.recv(100)
                    tls.sendall(line.upper())
                    self.results.append(line)
            except Exception as error:
                self.results.append(error)
                # The alert is out.  Read until the client closes: closing with
                # unread bytes would reset the connection and could destroy the
                # alert before the client reads it.
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)
                    while raw.recv(4096):
                        pass

    def finish(self) -> bytes | BaseException:
        """Wait for the connection to end; return what the server read, or its error."""
        self.thread.join(TIMEOUT)
        self.listener.close()
        assert not self.thread.is_alive(), "the blocking server is stuck"
        return self.results[0]


def blocking_exchange(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    server_hostname: str = "localhost",
) -> tuple[bytes | BaseException, bytes | BaseException]:
    """Serve with a blocking ssl socket in a thread and connect a blocking ssl client.

    Returns (what the server got, what the client got): the bytes exchanged or
    the exception each side raised.
    """
    server = BlockingServer(server_context)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw:
            try:
                with client_context.wrap_socket(raw, server_hostname=server_hostname) as tls:
                    tls.sendall(b"ping\n")
                    client_result: bytes | BaseException = tls.recv(100)
            except Exception as error:
                client_result = error
    finally:
        server_result = server.finish()
    return server_result, client_result


def other_ca_client_context() -> ssl.SSLContext:
    return make_tls_client_context(new_ca())


# -- the fixtures ---------------------------------------------------------------------


def test_tls_ca_is_ecdsa_and_session_scoped(tls_ca: trustme.CA) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    certificate = x509.load_pem_x509_certificate(tls_ca.cert_pem.bytes())
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_tls_ca_is_the_same_in_every_test(pytester: pytest.Pytester) -> None:
    # In an inner run: under xdist two tests of this file may run in two workers.
    pytester.makepyfile(
        """
        seen = []

        def test_first(tls_ca):
            seen.append(tls_ca)

        def test_second(tls_ca):
            seen.append(tls_ca)
            assert len(seen) == 2 and seen[0] is seen[1]
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_tls_certificate_names_localhost_and_both_loopback_addresses(
    tls_certificate: trustme.LeafCert,
) -> None:
    import ipaddress

    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(tls_certificate.cert_chain_pems[0].bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert len(tls_certificate.cert_chain_pems) == 2, "leaf and intermediate"


@pytest.mark.asyncio
@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
async def test_tls_contexts_handshake_over_asyncio(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext, server_hostname: str
) -> None:
    reply, info = await asyncio_exchange(tls_server_context, tls_client_context, server_hostname)
    assert reply == b"PING\n"
    assert info["peercert"]


@pytest.mark.asyncio
async def test_tls_contexts_handshake_over_ipv6(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("::1 is not available")
    probe.close()
    reply, _ = await asyncio_exchange(tls_server_context, tls_client_context, "::1", host="::1")
    assert reply == b"PING\n"


@pytest.mark.asyncio
async def test_tls_client_context_rejects_another_ca(
    tls_server_context: ssl.SSLContext,
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await asyncio_exchange(tls_server_context, other_ca_client_context())
    assert excinfo.value.verify_code == 20  # unable to get local issuer certificate


@pytest.mark.asyncio
@pytest.mark.parametrize(("server_hostname", "code"), [("example.com", 62), ("127.0.0.2", 64)])
async def test_tls_client_context_checks_the_host_name(
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
    server_hostname: str,
    code: int,
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await asyncio_exchange(tls_server_context, tls_client_context, server_hostname)
    assert excinfo.value.verify_code == code


def test_tls_contexts_handshake_over_blocking_sockets(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    assert blocking_exchange(tls_server_context, tls_client_context) == (b"ping\n", b"PING\n")


def test_tls_blocking_client_rejects_another_ca(tls_server_context: ssl.SSLContext) -> None:
    server, client = blocking_exchange(tls_server_context, other_ca_client_context())
    assert isinstance(client, ssl.SSLCertVerificationError)
    assert client.verify_code == 20
    assert isinstance(server, ssl.SSLError)
    assert server.reason == "TLSV1_ALERT_UNKNOWN_CA"


def test_tls_client_context_settings(
    tls_client_context: ssl.SSLContext, tls_ca: trustme.CA
) -> None:
    assert tls_client_context.verify_mode == ssl.CERT_REQUIRED
    assert tls_client_context.check_hostname
    assert tls_client_context.verify_flags & ssl.VERIFY_X509_STRICT
    assert not tls_client_context.hostname_checks_common_name
    # Only the test CA: the system's store was never loaded.
    assert tls_client_context.cert_store_stats() == {"x509": 1, "crl": 0, "x509_ca": 1}
    ca_der = ssl.PEM_cert_to_DER_cert(tls_ca.cert_pem.bytes().decode())
    assert tls_client_context.get_ca_certs(binary_form=True) == [ca_der]


def test_tls_server_context_settings(
    tls_server_context: ssl.SSLContext, tls_mutual_server_context: ssl.SSLContext
) -> None:
    assert tls_server_context.verify_mode == ssl.CERT_NONE
    assert tls_mutual_server_context.verify_mode == ssl.CERT_REQUIRED
    assert tls_mutual_server_context.verify_flags & ssl.VERIFY_X509_STRICT
    assert tls_mutual_server_context.cert_store_stats()["x509_ca"] == 1


def test_tls_contexts_are_new_for_each_use(tls_ca: trustme.CA) -> None:
    first, second = make_tls_client_context(tls_ca), make_tls_client_context(tls_ca)
    assert first is not second
    first.check_hostname = False
    assert second.check_hostname


_contexts: list[ssl.SSLContext] = []


@pytest.mark.parametrize("run", [1, 2])
def test_tls_client_context_fixture_is_new_in_each_test(
    tls_client_context: ssl.SSLContext, run: int
) -> None:
    assert all(context is not tls_client_context for context in _contexts)
    _contexts.append(tls_client_context)
    assert tls_client_context.verify_mode == ssl.CERT_REQUIRED
    # Weaken this test's context; the next test's must be unaffected.
    tls_client_context.check_hostname = False
    tls_client_context.verify_mode = ssl.CERT_NONE


# -- mutual TLS --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tls_mutual_contexts_handshake(
    tls_mutual_server_context: ssl.SSLContext, tls_mutual_client_context: ssl.SSLContext
) -> None:
    reply, _ = await asyncio_exchange(tls_mutual_server_context, tls_mutual_client_context)
    assert reply == b"PING\n"


def test_tls_mutual_server_sees_the_client_certificate(
    tls_mutual_server_context: ssl.SSLContext, tls_mutual_client_context: ssl.SSLContext
) -> None:
    server = BlockingServer(tls_mutual_server_context)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    with raw, tls_mutual_client_context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"who am i\n")
        assert tls.recv(100) == b"WHO AM I\n"
    assert server.finish() == b"who am i\n"
    # The server verified the chain; its peer certificate is the client's leaf.
    assert server.peer_subjects == [(("commonName", "nettest client"),)]


def test_tls_mutual_server_rejects_a_client_without_certificate(
    tls_mutual_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    server, _ = blocking_exchange(tls_mutual_server_context, tls_client_context)
    assert isinstance(server, ssl.SSLError)
    assert server.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


def test_tls_client_context_factory_presents_the_name_asked_for(
    tls_ca: trustme.CA,
    tls_certificate: trustme.LeafCert,
    tls_client_context_factory: TLSClientContextFactory,
) -> None:
    strict = make_tls_server_context(tls_certificate, client_ca=tls_ca)
    strict.verify_flags |= ssl.VERIFY_X509_STRICT  # explicit, whatever the Python
    for name in ("alice", "bob"):
        server = BlockingServer(strict)
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        context = tls_client_context_factory(name)
        with raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hi\n")
            assert tls.recv(100) == b"HI\n"
        server.finish()
        assert server.peer_subjects == [(("commonName", name),)]
    # One certificate per name for the session; a new context each call.
    assert tls_client_context_factory("alice") is not tls_client_context_factory("alice")
    authority = _authority(tls_ca)
    assert authority.client_named("alice") is authority.client_named("alice")


def test_tls_client_context_factory_is_pinned_to_tls_version(
    tls_version: ssl.TLSVersion, tls_client_context_factory: TLSClientContextFactory
) -> None:
    context = tls_client_context_factory("alice")
    assert context.minimum_version == context.maximum_version == tls_version


def test_tls_client_context_factory_untrusted_by_another_ca(
    tls_certificate: trustme.LeafCert, tls_client_context_factory: TLSClientContextFactory
) -> None:
    # The negative twin: a server that trusts another CA refuses the named client.
    server = make_tls_server_context(tls_certificate, client_ca=new_ca())
    server_error, _ = blocking_exchange(server, tls_client_context_factory("alice"))
    assert isinstance(server_error, ssl.SSLCertVerificationError)


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        (b"alice", TypeError, "common_name must be a str, got bytes"),
        ("", ValueError, "common_name must be 1 to 64 bytes long in UTF-8, got 0"),
        ("x" * 65, ValueError, "common_name must be 1 to 64 bytes long in UTF-8, got 65"),
        # Counted as the certificate library counts it, not in characters.
        (
            "é" * 40,
            ValueError,
            r"common_name must be 1 to 64 bytes long in UTF-8, got 80 \(40 characters\)",
        ),
    ],
)
def test_tls_client_context_factory_refuses_bad_names(
    tls_client_context_factory: TLSClientContextFactory,
    name: object,
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        tls_client_context_factory(name)  # type: ignore[arg-type]


# -- TLS versions -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tls_version_pins_both_contexts(
    tls_version: ssl.TLSVersion,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    for context in (tls_server_context, tls_client_context):
        assert context.minimum_version == context.maximum_version == tls_version
    _, info = await asyncio_exchange(tls_server_context, tls_client_context)
    assert info["version"] == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[tls_version.name]


def test_tls_version_mismatch_fails_the_handshake(tls_ca: trustme.CA) -> None:
    certificate = _authority(tls_ca).server
    server_context = make_tls_server_context(certificate, tls_version=ssl.TLSVersion.TLSv1_2)
    client_context = make_tls_client_context(tls_ca, tls_version=ssl.TLSVersion.TLSv1_3)
    server, client = blocking_exchange(server_context, client_context)
    assert isinstance(server, ssl.SSLError)
    assert server.reason == "UNSUPPORTED_PROTOCOL"
    assert isinstance(client, ssl.SSLError)
    assert client.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


def test_tls_version_rejects_other_versions(tls_ca: trustme.CA) -> None:
    with pytest.raises(ValueError, match=r"tls_version must be one of TLSv1_2, TLSv1_3"):
        make_tls_client_context(tls_ca, tls_version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ValueError, match=r"tls_version must be one of"):
        make_tls_server_context(_authority(tls_ca).server, tls_version=ssl.TLSVersion.TLSv1)


def test_tls_builders_name_an_argument_of_the_wrong_type(
    tls_ca: trustme.CA, tls_certificate: trustme.LeafCert, tmp_path: Path
) -> None:
    # The easy mistake: the CA where its certificate belongs, and the reverse.
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: make_tls_server_context(tls_ca), "certificate must be a trustme.LeafCert"),  # type: ignore[arg-type]
        (lambda: make_tls_server_context(None), "certificate must be a trustme.LeafCert"),  # type: ignore[arg-type]
        (
            lambda: make_tls_server_context(tls_certificate, client_ca=tls_certificate),  # type: ignore[arg-type]
            "client_ca must be a trustme.CA",
        ),
        (lambda: make_tls_client_context(None), "ca must be a trustme.CA"),  # type: ignore[arg-type]
        (lambda: make_tls_client_context(tls_certificate), "ca must be a trustme.CA"),  # type: ignore[arg-type]
        (
            lambda: make_tls_client_context(tls_ca, certificate=tls_ca),  # type: ignore[arg-type]
            r"certificate must be a trustme.LeafCert \(from CA.issue_cert\(\)\), got <trustme",
        ),
        (lambda: nettest.make_tls_bad_case(tls_certificate, "expired"), "ca must be a trustme.CA"),  # type: ignore[arg-type]
        (
            lambda: nettest.write_tls_files(tmp_path, tls_certificate, tls_certificate),  # type: ignore[arg-type]
            "ca must be a trustme.CA",
        ),
        (
            lambda: nettest.write_tls_files(tmp_path, tls_ca, tls_ca),  # type: ignore[arg-type]
            "certificate must be a trustme.LeafCert",
        ),
    ]
    for call, message in cases:
        with pytest.raises(TypeError, match=message):
            call()
    assert not hasattr(tls_certificate, "_nettest_tls_authority")
    assert list(tmp_path.iterdir()) == []


def test_tls_versions_are_12_and_13() -> None:
    assert (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3) == TLS_VERSIONS


# Until nettest's plugin provides the TLS fixtures, the inner sessions import them.
PYTESTER_CONFTEST = """
import nettest.plugin

if not hasattr(nettest.plugin, "tls_ca"):
    from nettest._tls import (
        tls_ca, tls_certificate, tls_client_certificate, tls_client_context,
        tls_mutual_client_context, tls_mutual_server_context, tls_server_context, tls_version,
    )
    from nettest._tls_bad import tls_bad_case_factory
    from nettest._tls_files import tls_files
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_tls_version_parametrizes_only_the_tests_that_ask(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makeconftest(PYTESTER_CONFTEST)
    pytester.makepyfile(
        """
        import asyncio, ssl
        import pytest

        def test_plain(tls_client_context):
            assert tls_client_context.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED

        @pytest.mark.asyncio
        async def test_pinned(tls_version, tls_server_context, tls_client_context):
            assert tls_client_context.maximum_version == tls_version
            server = await asyncio.start_server(
                lambda r, w: w.close(), "127.0.0.1", 0, ssl=tls_server_context
            )
            async with server:
                port = server.sockets[0].getsockname()[1]
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=tls_client_context, server_hostname="localhost"
                )
                version = writer.get_extra_info("ssl_object").version()
                writer.close()
            assert version == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[tls_version.name]
        """
    )
    result = pytester.runpytest(f"--asyncio-mode={mode}", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_pinned?TLS1.2?*PASSED*", "*test_pinned?TLS1.3?*PASSED*"])


def test_tls_fixtures_show_a_standalone_first_line(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PYTESTER_CONFTEST)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--fixtures", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes()
    result.stdout.fnmatch_lines(
        [
            "tls_ca [[]session scope[]] -- *_tls.py:*",
            "    The session's certificate authority: a trustme.CA with an ECDSA key.",
            "tls_client_context -- *_tls.py:*",
            "    A new client-side ssl.SSLContext for each test, trusting tls_ca and nothing"
            " else.",
        ]
    )


# -- strict X.509 verification --------------------------------------------------------------


def strict_client(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # explicit, whatever the Python
    return context


def test_tls_chain_passes_strict_verification(
    tls_ca: trustme.CA, tls_server_context: ssl.SSLContext
) -> None:
    assert blocking_exchange(tls_server_context, strict_client(tls_ca)) == (b"ping\n", b"PING\n")


def test_tls_client_certificate_passes_strict_verification(
    tls_ca: trustme.CA,
    tls_mutual_client_context: ssl.SSLContext,
    tls_certificate: trustme.LeafCert,
) -> None:
    server = make_tls_server_context(tls_certificate)
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cadata=tls_ca.cert_pem.bytes().decode())
    server.verify_flags |= ssl.VERIFY_X509_STRICT
    assert blocking_exchange(server, tls_mutual_client_context) == (b"ping\n", b"PING\n")


def _leaf_without_authority_key_identifier(ca: trustme.CA) -> tuple[bytes, bytes]:
    """A leaf that strict mode rejects and OpenSSL's default accepts (no AKI)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2000, 1, 1))
        .not_valid_after(datetime.datetime(3000, 1, 1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def test_tls_strict_verification_rejects_a_chain_without_key_identifiers(
    tls_ca: trustme.CA, tmp_path: object
) -> None:
    import pathlib

    key_pem, cert_pem = _leaf_without_authority_key_identifier(tls_ca)
    path = pathlib.Path(str(tmp_path)) / "key-and-cert.pem"
    path.write_bytes(key_pem + cert_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(path)
    lenient = strict_client(tls_ca)
    lenient.verify_flags &= ~ssl.VERIFY_X509_STRICT
    assert blocking_exchange(server, lenient)[1] == b"PING\n"
    _, client = blocking_exchange(server, strict_client(tls_ca))
    assert isinstance(client, ssl.SSLCertVerificationError)
    assert "Authority Key Identifier" in client.verify_message


# -- import cost -------------------------------------------------------------------------------


def test_tls_modules_do_not_import_trustme_or_cryptography() -> None:
    code = (
        "import sys, nettest._tls, nettest._tls_bad, nettest._tls_files\n"
        "assert 'trustme' not in sys.modules and 'cryptography' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the cache -------------------------------------------------------------------------------


def test_tls_cached_material_goes_with_its_ca() -> None:
    import gc
    import os
    import weakref

    from nettest._tls_bad import make_tls_bad_case

    ca = new_ca()
    server = make_tls_server_context(_authority(ca).server)
    bad = make_tls_bad_case(ca, "expired")
    files = [
        _leaf_identity(_authority(ca).server).key_and_chain_file(),
        _authority(ca).bad("expired").key_and_chain_file(),
    ]
    assert all(os.stat(path).st_mode & 0o777 == 0o600 for path in files)
    assert os.stat(os.path.dirname(files[0])).st_mode & 0o777 == 0o700
    alive = weakref.ref(ca)
    del ca, server, bad
    gc.collect()
    assert alive() is None
    assert not any(os.path.exists(path) for path in files)


@pytest.mark.skipif(os.name != "posix", reason="probes processes with os.kill(pid, 0)")
def test_tls_key_directories_of_dead_processes_are_removed(tmp_path: Path) -> None:
    from nettest._processes import _pid_namespace
    from nettest._tls import _remove_dead_processes_dirs

    dead = dead_pid()
    ns = _pid_namespace()
    names = {
        "dead": f"nettest-tls-{dead}-{ns}-abc",
        "alive": f"nettest-tls-{os.getppid()}-{ns}-abc",
        "own": f"nettest-tls-{os.getpid()}-{ns}-abc",
        "another namespace's": f"nettest-tls-{dead}-{int(ns) + 1}-abc",  # not probed
        "files": "nettest-tls-files-abc",  # an older nettest's: no process to probe
        "older nettest's": f"nettest-tls-{dead}-files-abc",
        "dead files": f"nettest-tls-{dead}-{ns}-files-abc",
        "other": "unrelated-123-abc",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "identity-0.pem").write_bytes(b"key")
    with unittest.mock.patch("tempfile.gettempdir", return_value=str(tmp_path)):
        _remove_dead_processes_dirs()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        name for kind, name in names.items() if not kind.startswith("dead")
    )


def test__write_file_removes_what_it_could_not_write(tmp_path: Path) -> None:
    from nettest._tls import _write_file

    path = tmp_path / "key.pem"
    with pytest.raises(TypeError):
        _write_file(path, "not bytes", private=True)  # type: ignore[arg-type]
    assert not path.exists()
    _write_file(path, b"key", private=True)
    assert path.read_bytes() == b"key"
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        _write_file(path, b"other", private=True)
    assert path.read_bytes() == b"key"


def test_tls_client_context_factory_takes_a_name_of_64_bytes(
    tls_client_context_factory: TLSClientContextFactory,
) -> None:
    # The positive twin of the bound: 32 two-byte characters fit exactly.
    assert isinstance(tls_client_context_factory("é" * 32), ssl.SSLContext)
