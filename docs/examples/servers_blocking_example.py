"""Blocking clients (socket, http.client, ssl, syslog) against servers on a background thread."""

import http.client
import logging
import logging.handlers
import socket

import pytest

import nettest
from nettest import handlers

HTTP_REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def test_blocking_socket(tcp_server_thread):
    server = tcp_server_thread(handlers.echo)  # a plain factory: no await
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
    (conn,) = server.wait_for_connections(1)  # waits block, with a timeout
    assert server.wait_closed() is nettest.Ending.EOF
    assert conn.received == b"ping"


def test_http_client_against_a_scripted_reply(tcp_server_thread):
    server = tcp_server_thread(
        handlers.script(
            handlers.expect_line(b"GET /health HTTP/1.1"),
            handlers.read_until(b"\r\n\r\n"),  # the headers, whatever they are
            handlers.send(HTTP_REPLY),
            handlers.close,
        )
    )
    client = http.client.HTTPConnection(server.host, server.port, timeout=5)
    client.request("GET", "/health")
    response = client.getresponse()
    assert (response.status, response.read()) == (200, b"ok")
    client.close()
    assert b"Host: 127.0.0.1:" in server.wait_for_bytes(b"\r\n\r\n")


def test_blocking_tls_client(tcp_server_thread, tls_server_context, tls_client_context):
    server = tcp_server_thread(handlers.echo, ssl=tls_server_context)
    with (
        socket.create_connection(server.address, timeout=5) as raw,
        tls_client_context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(b"secret")
        assert sock.recv(6) == b"secret"


def test_blocking_udp_client(udp_server_thread):
    server = udp_server_thread(handlers.echo)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"ping", server.address)
        assert sock.recv(100) == b"ping"
    assert [d.data for d in server.wait_for_datagrams(1)] == [b"ping"]


def test_blocking_syslog_client(unix_datagram_server_thread):
    server = unix_datagram_server_thread(handlers.sink)
    syslog = logging.handlers.SysLogHandler(address=server.path)  # a Unix datagram client
    logger = logging.getLogger("example.syslog")
    logger.addHandler(syslog)
    try:
        logger.error("disk full")
    finally:
        logger.removeHandler(syslog)
        syslog.close()
    (datagram,) = server.wait_for_datagrams(1)
    assert datagram.data == b"<11>disk full\x00"  # facility user, severity error


def test_outside_fixtures():
    with (
        nettest.TCPServerThread(handlers.close) as server,
        socket.create_connection(server.address, timeout=5) as sock,
    ):
        assert sock.recv(10) == b""  # the server closed at once


@pytest.mark.parametrize("handler", [handlers.sink, handlers.hang])
def test_unix_blocking_client(unix_server_thread, handler):
    server = unix_server_thread(handler)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(server.path)
        sock.sendall(b"x")
    server.wait_for_connections(1)
