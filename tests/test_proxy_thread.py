"""The fault proxy on a background thread, for synchronous tests and blocking clients."""

from __future__ import annotations

import select
import socket

import pytest

from nettest import (
    FaultProxyThread,
    FaultProxyThreadFactory,
    TCPServerThreadFactory,
    UDPServerThreadFactory,
    handlers,
)
from nettest.faults import Drop, Reset, Truncate
from test_hygiene import run


def echo_once(address: tuple[str, int], data: bytes) -> bytes:
    """Send `data` with a blocking client; read as many bytes back, or until EOF.

    No half-close: a reset that comes as the echo does would make ``shutdown()``
    fail with ENOTCONN, before the read that reports it.
    """
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while len(received) < len(data) and (chunk := sock.recv(4096)):
            received += chunk
        return received


def test_a_blocking_client_meets_the_faults_of_a_thread_proxy(
    tcp_server_thread: TCPServerThreadFactory,
    fault_proxy_thread: FaultProxyThreadFactory,
    nettest_seed: int,
) -> None:
    server = tcp_server_thread(handlers.echo)
    proxy = fault_proxy_thread(server, faults=[Truncate(3)])
    assert proxy.seed == nettest_seed  # the first proxy's, as fault_proxy's
    assert proxy.kind == "tcp"
    assert echo_once(proxy.address, b"hello") == b"hel"
    assert proxy.traces[0].fired == ["Truncate(after_bytes=3)"]

    # Changes block until the proxy's loop has made them: the next connection meets them.
    proxy.clear()
    assert echo_once(proxy.address, b"hello") == b"hello"
    # A reset after the reply's first bytes: the client has sent and half-closed by then.
    proxy.add(Reset(after_bytes=2))
    with pytest.raises(ConnectionResetError):
        echo_once(proxy.address, b"hello")
    proxy.remove(Reset(after_bytes=2))
    assert proxy.faults == ()

    proxy.down()
    assert not proxy.is_up
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=5).close()
    proxy.up()
    assert echo_once(proxy.address, b"back") == b"back"


@pytest.mark.parametrize("recv_first", [False, True])
def test_a_plain_socket_after_a_reset_gets_what_the_docs_say(
    tcp_server_thread: TCPServerThreadFactory,
    fault_proxy_thread: FaultProxyThreadFactory,
    recv_first: bool,
) -> None:
    # faults.rst, Reset: the first send() raises ConnectionResetError unless a
    # recv() took that error first; later ones raise BrokenPipeError.
    proxy = fault_proxy_thread(tcp_server_thread(handlers.echo), faults=[Reset(after_bytes=0)])
    # A blocking connect returns on the handshake; with a timeout it polls, and an
    # RST that comes first fails the connect itself.
    with socket.create_connection(proxy.address) as sock:
        sock.settimeout(5)
        readable, _, _ = select.select([sock], [], [], 5)  # the RST has come: takes no error
        assert readable
        if recv_first:
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
        else:
            with pytest.raises(ConnectionResetError):
                sock.send(b"x")
        for _ in range(2):
            with pytest.raises(BrokenPipeError):
                sock.send(b"x")


def test_a_thread_proxy_listens_where_asked(
    tcp_server_thread: TCPServerThreadFactory, fault_proxy_thread: FaultProxyThreadFactory
) -> None:
    server = tcp_server_thread(handlers.echo)
    with socket.socket() as probe:  # a free port, given back for the proxy to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = fault_proxy_thread(server, port=port)
    assert proxy.address == ("127.0.0.1", port)
    assert echo_once(proxy.address, b"hello") == b"hello"
    with pytest.raises(ValueError, match="Pass allow_remote=True if you mean it"):
        fault_proxy_thread(server, host="0.0.0.0")
    remote = fault_proxy_thread(server, host="0.0.0.0", allow_remote=True)
    assert remote.address[0] == "0.0.0.0"
    assert echo_once(("127.0.0.1", remote.address[1]), b"hello") == b"hello"


def test_a_thread_proxy_in_front_of_a_udp_thread_server(
    udp_server_thread: UDPServerThreadFactory, fault_proxy_thread: FaultProxyThreadFactory
) -> None:
    server = udp_server_thread(handlers.echo)
    proxy = fault_proxy_thread(server)
    assert proxy.kind == "udp"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"ping", proxy.address)
        assert sock.recvfrom(100)[0] == b"ping"
        proxy.add(Drop(1.0))
        sock.sendto(b"lost", proxy.address)
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recvfrom(100)


def test_a_thread_proxy_checks_its_arguments_at_once_and_must_be_started() -> None:
    with pytest.raises(ValueError, match="does not apply to a TCP proxy"):
        FaultProxyThread(("127.0.0.1", 9), faults=[Drop(0.5)])
    with pytest.raises(ValueError, match="seed"):
        FaultProxyThread(("127.0.0.1", 9), seed=-1)
    proxy = FaultProxyThread(("127.0.0.1", 9))
    with pytest.raises(RuntimeError, match="is not started"):
        proxy.add(Reset())
    proxy.close()  # never started: nothing to close
    with FaultProxyThread(("127.0.0.1", 9)) as started:
        with pytest.raises(RuntimeError, match="already started"):
            started.start()
        assert started.port > 0
    assert started.closed


def test_a_failed_synchronous_test_prints_its_thread_proxys_traces(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import socket
        from nettest import handlers
        from nettest.faults import Truncate

        def test_fails(tcp_server_thread, fault_proxy_thread):
            server = tcp_server_thread(handlers.echo)
            proxy = fault_proxy_thread(server, faults=[Truncate(2)])
            with socket.create_connection(proxy.address, timeout=5) as sock:
                sock.sendall(b"abc")
            assert False, "failed"
        """,
        "-W",
        "error::ResourceWarning",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*nettest fault proxy*",
            "*<FaultProxy tcp 127.0.0.1:* -> 127.0.0.1:*> seed=* faults=[Truncate(after_bytes=2*",
        ]
    )


@pytest.mark.parametrize("leaks", ["own", "strict"])
def test_a_thread_proxy_left_running_is_reported_and_closed(
    pytester: pytest.Pytester, leaks: str
) -> None:
    result = run(
        pytester,
        """
        import socket
        from nettest import FaultProxyThread, TCPServerThread, handlers

        kept = []

        def test_leaks_a_proxy():
            server = TCPServerThread(handlers.echo).start()
            kept.append(server)
            proxy = FaultProxyThread(server).start()
            kept.append(proxy)
            with socket.create_connection(proxy.address, timeout=5) as sock:
                sock.sendall(b"x")
                assert sock.recv(1) == b"x"

        def test_after():
            assert kept[1].closed
            kept[0].close()
        """,
        f"--nettest-leaks={leaks}",
        "-W",
        "error::ResourceWarning",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_proxy*",
            f"*test_leaks_a_proxy left * behind (--nettest-leaks={leaks}):",
        ]
    )
    out = result.stdout.str()
    assert "open FaultProxy tcp 127.0.0.1:" in out
    assert "ResourceWarning" not in out


def test_a_closed_thread_server_or_proxy_refuses_calls_plainly(
    tcp_server_thread: TCPServerThreadFactory,
) -> None:
    server = tcp_server_thread(handlers.echo)
    proxy = FaultProxyThread(server).start()
    proxy.close()
    server.close()
    with pytest.raises(RuntimeError, match=r"<FaultProxyThread .*> is closed"):
        proxy.add(Reset())
    with pytest.raises(RuntimeError, match=r"<TCPServerThread .*> is closed"):
        server.wait_for_connections(1)
