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
