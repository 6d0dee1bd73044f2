"""The server fixtures inside real pytest runs: modes, loop scopes, teardown errors, xdist."""

from __future__ import annotations

import pytest

# Imported here so that pytester's in-process runs share these modules with us
# (it drops modules first imported during a run).
import nettest._handlers
import nettest._servers  # noqa: F401

MODES = ["strict", "auto"]

_HEADER = """
import asyncio
import pytest
import pytest_asyncio
from nettest import _handlers as handlers
from nettest._servers import tcp_server, unix_server  # noqa: F401
"""


@pytest.mark.parametrize("mode", MODES)
def test_tcp_server_fixture_in_both_modes(pytester: pytest.Pytester, mode: str) -> None:
    marker = "" if mode == "auto" else "@pytest.mark.asyncio"
    pytester.makepyfile(
        _HEADER
        + f"""
{marker}
async def test_echo(tcp_server):
    server = await tcp_server(handlers.echo)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"hi")
    assert await reader.readexactly(2) == b"hi"
    writer.close()
    await writer.wait_closed()
"""
    )
    result = pytester.runpytest(f"--asyncio-mode={mode}")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("mode", MODES)
def test_servers_work_in_a_module_scoped_loop(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makepyfile(
        _HEADER
        + """
from importlib.metadata import version

pytestmark = pytest.mark.asyncio(loop_scope="module")
# Before 1.2, pytest-asyncio ran a module-loop test that requests a function-scoped
# async fixture on a loop of its own; from 1.2 it stays on the module's loop.
SHARES_THE_MODULE_LOOP = tuple(map(int, version("pytest-asyncio").split(".")[:2])) >= (1, 2)
loops = []

async def test_one(tcp_server, unix_server):
    loops.append(asyncio.get_running_loop())
    server = await tcp_server(handlers.echo)
    userver = await unix_server(handlers.echo)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    reader2, writer2 = await asyncio.open_unix_connection(userver.path)
    writer2.write(b"y")
    assert await reader2.readexactly(1) == b"y"
    writer.close()
    writer2.close()
    await writer.wait_closed()
    await writer2.wait_closed()

async def test_two(tcp_server):
    if SHARES_THE_MODULE_LOOP:
        assert asyncio.get_running_loop() is loops[0]
    server = await tcp_server(handlers.hang)
    reader, writer = await asyncio.open_connection(*server.address)
    await server.wait_for_connections(1)
    writer.close()
"""
    )
    # In a subprocess: pytest-asyncio before 1.2 leaves the module's loop unclosed,
    # and in-process its garbage would surface in whichever test runs next.
    result = pytester.runpytest_subprocess(f"--asyncio-mode={mode}")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("mode", MODES)
def test_a_connection_used_from_another_loop_says_so(pytester: pytest.Pytester, mode: str) -> None:
    # A module-loop server and its connection, waited on from a function-loop
    # test: the waits would never wake (timeout=None hung), so they must raise.
    pytester.makepyfile(
        _HEADER
        + """
from nettest._servers import TCPServer

@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared():
    async with TCPServer(handlers.sink) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"hi")
        (conn,) = await server.wait_for_connections(1)
        yield conn
        writer.close()
        await writer.wait_closed()

@pytest.mark.asyncio(loop_scope="module")
async def test_same_loop(shared):
    assert await shared.wait_for(b"hi") == b"hi"

@pytest.mark.asyncio
async def test_other_loop(shared):
    waits = [
        shared.wait_for(b"never", timeout=None),
        shared.wait_for_sent(b"never", timeout=None),
        shared.wait_closed(timeout=None),
    ]
    for wait in waits:
        with pytest.raises(RuntimeError, match="belongs to another event loop"):
            await asyncio.wait_for(wait, 2)
"""
    )
    result = pytester.runpytest_subprocess(f"--asyncio-mode={mode}")
    result.assert_outcomes(passed=2)


def test_handler_error_fails_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        _HEADER
        + """
@pytest.mark.asyncio
async def test_broken(tcp_server):
    async def broken(reader, writer):
        await reader.readexactly(3)
        raise ZeroDivisionError("oops")

    server = await tcp_server(broken)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"abc")
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*HandlerError*", "*ZeroDivisionError: oops*", "*the client had sent b'abc'*"]
    )


def test_script_mismatch_fails_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        _HEADER
        + """
@pytest.mark.asyncio
async def test_wrong_request(tcp_server):
    server = await tcp_server(
        handlers.script(handlers.expect(b"PING\\n"), handlers.send(b"PONG\\n"))
    )
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"PANG\\n")
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ScriptMismatch: script step 1 of 2, expect(b'PING\\n'): the client sent *",
            "*expected: b'PING\\n'",
            "*received: b'PANG\\n'",
            "*^ first difference at byte 1",
        ]
    )


def test_unclosed_server_is_reported_by_the_hygiene_gate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        _HEADER
        + """
from nettest._servers import TCPServer

import socket

@pytest.mark.asyncio
async def test_leaks():
    server = await TCPServer().start()
    test_leaks.server = server

def test_the_gate_closed_the_listener():
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(test_leaks.server.address, timeout=5)
"""
    )
    result = pytester.runpytest("-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*LeakError*", "*open TCPServer 127.0.0.1:*"])


def test_fixture_is_skipped_without_ipv6(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from nettest import _servers

@pytest.fixture(autouse=True)
def _no_ipv6(monkeypatch):
    monkeypatch.setattr(_servers, "has_ipv6_loopback", lambda: False)
"""
    )
    pytester.makepyfile(
        _HEADER
        + """
@pytest.mark.asyncio
async def test_v6(tcp_server):
    await tcp_server(host="::1")
"""
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*IPv6 loopback ::1 is not available*"])


def test_servers_under_xdist_do_not_collide(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        _HEADER
        + """
import socket
from nettest._udp import udp_server  # noqa: F401
from nettest._threads import tcp_server_thread  # noqa: F401

@pytest.mark.asyncio
@pytest.mark.parametrize("i", range(6))
async def test_servers(tcp_server, udp_server, unix_server, i):
    servers = [await tcp_server(handlers.echo) for _ in range(3)]
    assert len({s.port for s in servers}) == 3
    for server in servers:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"%d" % i)
        assert await reader.readexactly(1) == b"%d" % i
        writer.close()
        await writer.wait_closed()
    userver = await unix_server()
    reader, writer = await asyncio.open_unix_connection(userver.path)
    writer.close()
    await writer.wait_closed()
    dserver = await udp_server(handlers.sink)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", dserver.address)
        await dserver.wait_for_datagrams(1)

@pytest.mark.parametrize("i", range(4))
def test_threads(tcp_server_thread, i):
    server = tcp_server_thread(handlers.echo)
    with socket.create_connection(server.address) as sock:
        sock.sendall(b"t")
        assert sock.recv(1) == b"t"
"""
    )
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=10)
