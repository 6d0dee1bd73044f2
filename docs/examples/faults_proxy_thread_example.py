"""A blocking client behind the fault proxy, from a synchronous test."""

import socket

import pytest

from nettest import handlers
from nettest.faults import Reset, Truncate


def fetch(address, request):
    """A blocking client: send the request, half-close, read the reply to EOF."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
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
    proxy.add(Reset())  # in force for the next byte when add() returns
    with pytest.raises(ConnectionResetError):
        fetch(proxy.address, b"ping")
    proxy.clear()
    proxy.down()  # refused until up()
    with pytest.raises(ConnectionRefusedError):
        fetch(proxy.address, b"ping")
    proxy.up()
    assert fetch(proxy.address, b"back") == b"back"
