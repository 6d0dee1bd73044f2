"""A server under test in a subprocess, given a socket that was bound all along."""

import socket
import subprocess
import sys

import nettest

CHILD = """
import socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))  # already bound and listening
conn, _ = listener.accept()
conn.sendall(b"hello from pid %d" % 0)
conn.close()
"""


def test_hand_the_socket_to_a_child(bound_tcp_socket):
    # Connecting before the child runs is fine: the socket is listening already.
    client = socket.create_connection(bound_tcp_socket.address, timeout=10)
    fd = bound_tcp_socket.fileno()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(fd)], pass_fds=[fd])
    with client:
        assert client.recv(100).startswith(b"hello from pid")
    assert child.wait(10) == 0


def test_a_cli_that_only_takes_a_port():
    bound = nettest.BoundSocket.tcp(listen=False)
    port = bound.release()  # free it right before the CLI starts, not earlier
    with socket.socket() as cli:  # stands in for `mycli --port {port}`
        cli.bind(("127.0.0.1", port))


# -- not shown in the docs: until nettest's package and plugin export the servers ------
import nettest.plugin as _plugin  # noqa: E402

if not hasattr(_plugin, "tcp_server"):
    from nettest._prebound import (  # noqa: F401
        bound_tcp_socket,
        bound_udp_socket,
        unix_socket_path,
    )
    from nettest._servers import tcp_server, unix_server  # noqa: F401
    from nettest._threads import (  # noqa: F401
        tcp_server_thread,
        udp_server_thread,
        unix_server_thread,
    )
    from nettest._udp import udp_server, unix_datagram_server  # noqa: F401
if not hasattr(nettest, "TCPServer"):
    import types

    from nettest import _handlers, _prebound, _recording, _servers, _threads, _udp

    _modules = (_handlers, _prebound, _recording, _servers, _threads, _udp)
    nettest = types.SimpleNamespace(**{n: getattr(m, n) for m in _modules for n in m.__all__})
