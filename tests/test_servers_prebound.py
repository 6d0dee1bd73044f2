"""Pre-bound sockets handed to server subprocesses."""

# ruff: noqa: F811  (fixtures imported from their module are redefined as parameters)

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import typing
from pathlib import Path

import pytest

import nettest
from nettest import _server_base
from nettest._prebound import (
    BoundSocket,
    bound_tcp_socket,  # noqa: F401
    bound_udp_socket,  # noqa: F401
    unix_socket_path,  # noqa: F401
)
from nettest._processes import _pid_namespace as _namespace
from nettest._processes import process_is_gone, process_tag
from nettest._servers import has_ipv6_loopback
from support import dead_pid

TCP_CHILD = textwrap.dedent(
    """
    import socket, sys
    listener = socket.socket(fileno=int(sys.argv[1]))
    conn, _ = listener.accept()
    with conn:
        conn.sendall(conn.recv(100).upper())
    """
)

UDP_CHILD = textwrap.dedent(
    """
    import socket, sys
    sock = socket.socket(fileno=int(sys.argv[1]))
    data, peer = sock.recvfrom(100)
    sock.sendto(data[::-1], peer)
    """
)


def _spawn(code: str, fd: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code, str(fd)], pass_fds=[fd])


def test_tcp_socket_handed_to_a_subprocess(bound_tcp_socket: BoundSocket) -> None:
    # The socket listens already: connecting before the child runs is not refused.
    client = socket.create_connection(bound_tcp_socket.address, timeout=10)
    child = _spawn(TCP_CHILD, bound_tcp_socket.fileno())
    try:
        with client:
            client.sendall(b"from the parent")
            assert client.recv(100) == b"FROM THE PARENT"
    finally:
        assert child.wait(10) == 0


def test_udp_socket_handed_to_a_subprocess(bound_udp_socket: BoundSocket) -> None:
    child = _spawn(UDP_CHILD, bound_udp_socket.fileno())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            client.sendto(b"abc", bound_udp_socket.address)
            assert client.recv(100) == b"cba"
    finally:
        assert child.wait(10) == 0


def test_the_port_is_reserved_while_held(bound_tcp_socket: BoundSocket) -> None:
    with socket.socket() as other, pytest.raises(OSError, match="Address already in use"):
        other.bind(bound_tcp_socket.address)


def test_release_frees_the_port_for_a_cli() -> None:
    bound = BoundSocket.tcp(listen=False)
    port = bound.release()
    assert bound.closed
    with socket.socket() as cli:
        cli.bind(("127.0.0.1", port))  # the CLI can take it now
    # A released socket has no descriptor: -1 handed to Popen(pass_fds=...) failed
    # with "bad value(s) in fds_to_keep", naming no socket.
    with pytest.raises(ValueError, match=r"<BoundSocket tcp 127\.0\.0\.1:\d+ closed> has no desc"):
        bound.fileno()
    assert bound.release() == port  # released already: the same port


def test_bound_socket_properties_and_errors() -> None:
    with BoundSocket.udp() as bound:
        assert bound.kind == "udp"
        assert bound.host == "127.0.0.1"
        assert bound.address == ("127.0.0.1", bound.port)
        assert bound.socket.get_inheritable()
        assert "open" in repr(bound)
    assert bound.closed
    with pytest.raises(ValueError, match="allow_remote=True"):
        BoundSocket.tcp("0.0.0.0")
    with pytest.raises(TypeError, match=r"BoundSocket\.tcp\(\)"):
        BoundSocket()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_bound_socket() -> None:
    with BoundSocket.tcp("::1") as bound:
        assert bound.socket.family == socket.AF_INET6
        with socket.create_connection(bound.address, timeout=5):
            pass


@pytest.mark.nettest_leaks("off")  # it drops one open on purpose
def test_dropped_bound_socket_warns() -> None:
    bound = BoundSocket.udp()
    with pytest.warns(ResourceWarning, match="unclosed <BoundSocket udp"):
        bound.__del__()
    assert bound.closed


def test_unix_socket_path_is_short_private_and_removed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import os, socket, stat
from nettest._prebound import unix_socket_path  # noqa: F401

seen = []

def test_path(unix_socket_path):
    seen.append(unix_socket_path)
    assert len(os.fsencode(unix_socket_path)) <= 107
    assert not os.path.exists(unix_socket_path)
    assert stat.S_IMODE(os.stat(os.path.dirname(unix_socket_path)).st_mode) == 0o700
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(unix_socket_path)

def test_removed_after_teardown():
    assert not os.path.exists(os.path.dirname(seen[0]))
"""
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


# -- the directories of killed sessions ------------------------------------------------


def test_unix_socket_path_directory_is_named_after_the_process(unix_socket_path: str) -> None:
    """The name lets the next session remove it if this process is killed."""
    directory = os.path.dirname(unix_socket_path)
    assert os.path.basename(directory).startswith(f"nt-{process_tag()}-")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="tells a zombie by /proc")
def test__a_process_that_exited_unreaped_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kill -9 of an xdist run leaves its workers as zombies until their parent
    # reaps them: their directories were kept by the next session's sweep.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(500):
            with open(f"/proc/{child.pid}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.01)
        assert not process_is_gone(os.getpid())
        assert process_is_gone(child.pid)  # exited, not yet reaped
        (tmp_path / f"nt-{child.pid}-{_namespace()}-abc123_x").mkdir(mode=0o700)
        monkeypatch.setattr(_server_base, "_unix_dirs_parent", lambda: str(tmp_path))
        _server_base.remove_dead_processes_unix_dirs()
        assert list(tmp_path.iterdir()) == []
    finally:
        child.wait()
    assert process_is_gone(child.pid)


@pytest.mark.skipif(os.name != "posix", reason="probes processes with os.kill(pid, 0)")
def test__remove_dead_processes_unix_dirs_removes_only_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = dead_pid()
    ns = _namespace()
    directories = {
        "dead": f"nt-{dead}-{ns}-abc123_x",
        "alive": f"nt-{os.getppid()}-{ns}-abc123_x",
        "own": f"nt-{os.getpid()}-{ns}-abc123_x",
        # Another PID namespace's (a container sharing /tmp): its pids are not
        # this one's to probe, and the process that made it may still run.
        "another namespace's": f"nt-{dead}-{int(ns) + 1}-abc123_x",
        "older nettest's": f"nt-{dead}-abc123_x",  # no namespace: not probed
        "not mkdtemp's": f"nt-{dead}-{ns}-abc-def",
        "other": f"nettest-{dead}-abc",
    }
    for name in directories.values():
        (tmp_path / name).mkdir(mode=0o700)
        (tmp_path / name / "s").write_bytes(b"")
    (tmp_path / f"nt-{dead}-{ns}-file").write_bytes(b"not a directory")
    (tmp_path / f"nt-{dead}-{ns}-link").symlink_to(tmp_path / directories["alive"])
    monkeypatch.setattr(_server_base, "_unix_dirs_parent", lambda: str(tmp_path))
    everything = sorted(p.name for p in tmp_path.iterdir())
    with monkeypatch.context() as another_user:
        another_user.setattr(os, "getuid", lambda: os.geteuid() + 1)
        _server_base.remove_dead_processes_unix_dirs()
    assert sorted(p.name for p in tmp_path.iterdir()) == everything
    _server_base.remove_dead_processes_unix_dirs()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        name for name in everything if name != directories["dead"]
    )
    assert (tmp_path / directories["alive"] / "s").exists()


@pytest.mark.skipif(os.name != "posix", reason="probes processes with os.kill(pid, 0)")
def test_unix_socket_directories_of_a_killed_process_are_removed_by_the_next_session(
    pytester: pytest.Pytester,
) -> None:
    """A session that uses no Unix socket removes a killed one's, and keeps a live one's."""
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal\n"
            "from nettest._server_base import _private_dir\n"
            "print(_private_dir(), flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr
    left = killed.stdout.strip()
    assert os.path.isdir(left)
    alive = _server_base._private_dir()  # this process's: it is alive
    try:
        pytester.makepyfile(
            f"""
            import os

            def test_swept_as_the_session_started():
                assert not os.path.exists({left!r})
                assert os.path.isdir({alive!r})
            """
        )
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
        result.assert_outcomes(passed=1)
        assert not os.path.exists(left)
        assert os.path.isdir(alive)
    finally:
        shutil.rmtree(left, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)


@pytest.mark.asyncio
async def test_a_server_on_a_bound_socket_turns_nagle_off_as_start_server_does(
    bound_tcp_socket: BoundSocket,
) -> None:
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, as
    # getaddrinfo makes them for start_server(host, port); an accepted socket takes
    # its listener's.  With proto 0 each small write waited for a delayed ACK.
    assert bound_tcp_socket.socket.proto == socket.IPPROTO_TCP
    udp = BoundSocket.udp()
    try:
        assert udp.socket.proto == socket.IPPROTO_UDP
    finally:
        udp.close()
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(handle, sock=bound_tcp_socket.socket)
    _, writer = await asyncio.open_connection(*bound_tcp_socket.address)
    assert await asyncio.wait_for(accepted, 10) == 1
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_what_binds_ipv6_outside_a_fixture_raises_a_named_oserror_without_ipv6(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each module that binds ::1 asks has_ipv6_loopback as it sees it.
    from nettest import _blackhole, _prebound, _proxy, _servers, _udp

    for module in (_blackhole, _prebound, _proxy, _servers, _udp):
        monkeypatch.setattr(module, "has_ipv6_loopback", lambda: False)
    binds: list[typing.Callable[[], object]] = [
        lambda: BoundSocket.tcp("::1"),
        lambda: BoundSocket.udp("::1"),
        lambda: nettest.BlackholePort("::1"),
        lambda: nettest.TCPServerThread(host="::1").start(),
        lambda: nettest.UDPServerThread(host="::1").start(),
    ]
    for bind in binds:
        with pytest.raises(nettest.NoIPv6LoopbackError, match=r"::1 is not available"):
            bind()
    for server in (
        nettest.TCPServer(host="::1"),
        nettest.UDPServer(host="::1"),
        nettest.FaultProxy(("::1", 9), host="::1"),
    ):
        with pytest.raises(nettest.NoIPv6LoopbackError, match=r"::1 is not available"):
            await server.start()
        assert server.closed
    assert issubclass(nettest.NoIPv6LoopbackError, OSError)
