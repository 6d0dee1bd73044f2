"""A TLS server in another process, configured from nettest's PEM files."""

import asyncio
import ssl
import sys

import pytest

import nettest

# The server under test: any program that reads a certificate chain and a key
# from files.  This one is Python, run as a separate process.
SERVER = """
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certfile=sys.argv[1], keyfile=sys.argv[2])
with socket.create_server(("127.0.0.1", 0)) as listener:
    print(listener.getsockname()[1], flush=True)
    while True:
        connection, _ = listener.accept()
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(tls.recv(100).upper())
        except OSError:
            pass
"""


async def ask(certfile, keyfile, client_context):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, str(certfile), str(keyfile), stdout=asyncio.subprocess.PIPE
    )
    try:
        port = int(await process.stdout.readline())
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        writer.write(b"hello\n")
        reply = await reader.read()
        writer.close()
        await writer.wait_closed()
        return reply
    finally:
        process.kill()
        await process.wait()
        await process.stdout.read()


@pytest.mark.asyncio
async def test_a_subprocess_serves_the_full_chain(tls_files, tls_client_context):
    assert await ask(tls_files.fullchain, tls_files.key, tls_client_context) == b"HELLO\n"


@pytest.mark.asyncio
async def test_a_subprocess_serving_the_leaf_alone_is_refused(tls_files, tls_client_context):
    # cert.pem lacks the intermediate CA: the classic misconfiguration.
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await ask(tls_files.cert, tls_files.key, tls_client_context)
    assert excinfo.value.verify_code == 20  # unable to get local issuer certificate


def test_the_files_are_private(tls_files):
    assert tls_files.directory.stat().st_mode & 0o777 == 0o700
    assert tls_files.key.stat().st_mode & 0o777 == 0o600


@pytest.mark.asyncio
async def test_a_subprocess_with_another_hosts_certificate_is_refused(
    tmp_path, tls_ca, tls_client_context
):
    # The bad cases are contexts; a server in another process gets one as files.
    files = nettest.write_tls_files(tmp_path, tls_ca, tls_ca.issue_cert("wrong.example"))
    with pytest.raises(ssl.SSLCertVerificationError) as excinfo:
        await ask(files.fullchain, files.key, tls_client_context)
    assert excinfo.value.verify_code == 62  # hostname mismatch
