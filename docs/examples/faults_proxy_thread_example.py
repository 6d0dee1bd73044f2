"""A blocking client behind the fault proxy, from a synchronous test."""

import socket

import pytest

from nettest import handlers
from nettest.faults import Reset, Truncate


def fetch(address, request):
    """A blocking client of an echo service: send, read as many bytes back (or to EOF)."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while len(reply) < len(request) and (chunk := sock.recv(4096)):
            reply += chunk
        return reply


def test_a_cut_reply(tcp_server_thread, fault_proxy_thread):
    server = tcp_server_thread(handlers.echo)
    proxy = fault_proxy_thread(server, faults=[Truncate(4)])  # no await: it blocks
    assert fetch(proxy.address, b"hello world") == b"hell"
    assert proxy.traces[0].fired == ["Truncate(after_bytes=4)"]


def test_faults_changed_during_the_test(tcp_server_thread, fault_proxy_thread):
    server = tcp_server_thread(handlers.echo)
    proxy = fault_proxy_thread(server)
    assert fetch(proxy.address, b"ping") == b"ping"
    # In force when add() returns: the reply is cut by a reset after two bytes.
    proxy.add(Reset(after_bytes=2))
    with pytest.raises(ConnectionResetError):
        fetch(proxy.address, b"ping")
    proxy.clear()
    proxy.down()  # refused until up()
    with pytest.raises(ConnectionRefusedError):
        fetch(proxy.address, b"ping")
    proxy.up()
    assert fetch(proxy.address, b"back") == b"back"
