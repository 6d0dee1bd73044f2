"""The server fixtures inside real pytest runs: modes, loop scopes, teardown errors, xdist."""

from __future__ import annotations

import pathlib

import pytest

# Imported here so that pytester's in-process runs share these modules with us
# (it drops modules first imported during a run).
import nettest._handlers
import nettest._servers  # noqa: F401
from nettest import _server_base

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


@pytest.mark.parametrize("mode", MODES)
def test_a_synchronous_test_calling_an_async_server_fixture_fails_at_once(
    pytester: pytest.Pytester, mode: str
) -> None:
    # Not a coroutine never awaited (a warning) and a test that passes.
    pytester.makepyfile(
        _HEADER
        + """
from nettest._udp import unix_datagram_server  # noqa: F401

def test_tcp(tcp_server):
    tcp_server(handlers.echo)

def test_unix_datagram(unix_datagram_server):
    unix_datagram_server()

def test_proxy(fault_proxy):
    fault_proxy(("127.0.0.1", 9))
"""
    )
    result = pytester.runpytest(
        f"--asyncio-mode={mode}", "-p", "no:cacheprovider", "-W", "error::RuntimeWarning"
    )
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*RuntimeError: tcp_server(...) starts its server on the running event loop, and "
            "there is none: await it in an async test; a synchronous test can use "
            "tcp_server_thread",
            "*RuntimeError: unix_datagram_server(...) starts its server on the running event "
            "loop, and there is none: await it in an async test",
            "*RuntimeError: fault_proxy(...) starts its server on the running event loop, and "
            "there is none: await it in an async test; a synchronous test can use "
            "fault_proxy_thread",
        ]
    )
    result.stdout.no_fnmatch_line("*never awaited*")


@pytest.mark.parametrize("mode", MODES)
def test_a_datagram_servers_fatal_error_is_reported_once(
    pytester: pytest.Pytester, mode: str
) -> None:
    # The server raises it (HandlerError); the hygiene gate does not report the
    # loop's exception-handler call about it a second time.
    pytester.makepyfile(
        _HEADER
        + """
import socket
from nettest import HandlerError
from nettest._udp import udp_server  # noqa: F401

class ForgetsTheAddress(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data)  # no address: asyncio's fatal error

@pytest.mark.asyncio
async def test_fatal(udp_server):
    server = await udp_server(ForgetsTheAddress)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"x", server.address)
        await server.wait_for_datagrams(1)
    for _ in range(5):
        await asyncio.sleep(0)
    with pytest.raises(HandlerError, match="it closed the server's transport"):
        await server.aclose()
"""
    )
    result = pytester.runpytest(f"--asyncio-mode={mode}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*LeakError*")


def test_gate_closing_a_tls_server_in_a_handshake_is_no_handshake_failure(
    pytester: pytest.Pytester,
) -> None:
    # The gate ends the leaked server's connection still in the handshake: its client
    # did not fail, so the server's handshake_failures stay empty.
    pytester.makepyfile(
        _HEADER
        + """
from nettest._servers import TCPServer

import socket

@pytest.mark.asyncio
async def test_leaks(tls_server_context):
    server = await TCPServer(handlers.echo, ssl=tls_server_context).start()
    client = socket.create_connection(server.address)  # and no ClientHello
    while not server._handshaking:
        await asyncio.sleep(0.001)
    test_leaks.ends = (server, client)

def test_the_gate_ended_it_as_teardown():
    server, client = test_leaks.ends
    with client:
        client.settimeout(5)
        assert client.recv(1) == b""
    assert server.closed
    assert (server.connections, server.handshake_failures) == ((), ())
"""
    )
    result = pytester.runpytest("-W", "ignore::ResourceWarning", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*LeakError*", "*in the TLS handshake*"])


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


# -- the fixtures' loop and the test's loop -------------------------------------

_ON_THE_TESTS_LOOP = """
import asyncio
import os
import pytest
from nettest import _handlers as handlers
from nettest._servers import tcp_server, unix_server  # noqa: F401
from nettest._udp import udp_server  # noqa: F401

SERVERS = []

async def boom(reader, writer):
    await reader.read(1)
    raise RuntimeError("handler failed on the test's loop")

@pytest.mark.asyncio
async def test_handler_error(tcp_server):
    server = await tcp_server(boom)
    SERVERS.append(server)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"x")
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()

@pytest.mark.asyncio
async def test_script_mismatch(udp_server):
    SERVERS.append(await udp_server(handlers.script(handlers.expect(b"never"))))

@pytest.mark.asyncio
async def test_clean(tcp_server, unix_server, udp_server):
    tcp, unix = await tcp_server(), await unix_server()
    SERVERS.extend([tcp, unix])
    for reader, writer in [
        await asyncio.open_connection(*tcp.address),
        await asyncio.open_unix_connection(unix.path),
    ]:
        writer.write(b"ok")
        assert await reader.readexactly(2) == b"ok"
        writer.close()
        await writer.wait_closed()
    SERVERS.append(await udp_server())

def test_every_server_was_closed():
    assert len(SERVERS) == 5
    assert [s for s in SERVERS if not s.closed] == []
    assert not os.path.exists(os.path.dirname(SERVERS[3].path))
"""


def _on_the_tests_loop(pytester: pytest.Pytester, fixture_loop_scope: str) -> None:
    """Write the tests above, with the fixtures on a loop of ``fixture_loop_scope``."""
    pytester.makeini(
        f"""\
[pytest]
asyncio_default_fixture_loop_scope = {fixture_loop_scope}
addopts = -p no:looptime_plugin
"""
    )
    pytester.makepyfile(_ON_THE_TESTS_LOOP)


@pytest.mark.parametrize("fixture_loop_scope", ["function", "module", "session"])
@pytest.mark.parametrize("mode", MODES)
def test_servers_on_the_tests_loop_are_closed_whatever_the_fixture_loop_scope(
    pytester: pytest.Pytester, mode: str, fixture_loop_scope: str
) -> None:
    # With a fixture loop scope wider than the test's, the factory runs on the wider
    # loop and the servers on the test's function loop, which pytest-asyncio closes
    # before the factory's teardown: they were dropped open, their errors unseen.
    _on_the_tests_loop(pytester, fixture_loop_scope)
    result = pytester.runpytest_subprocess(f"--asyncio-mode={mode}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_handler_error*",
            "*RuntimeError: handler failed on the test's loop*",
            "*ERROR at teardown of test_script_mismatch*",
            "*ScriptMismatch: script step 1 of 1, expect(b'never'): not met when the server clo*",
        ]
    )
    result.stdout.no_fnmatch_line("*LeakError*")
    # The report starts at the handler: not in nettest's teardown, nor in the loop's
    # run_until_complete that ran the close (some 70 lines more).
    result.stdout.no_fnmatch_line("*_close_elsewhere*")
    result.stdout.no_fnmatch_line("*def run_until_complete*")


@pytest.mark.parametrize("mode", MODES)
def test_servers_on_the_tests_loop_raise_their_errors_with_the_gate_off(
    pytester: pytest.Pytester, mode: str
) -> None:
    # The hygiene gate used to be what closed them: without it, they stayed open.
    _on_the_tests_loop(pytester, "module")
    result = pytester.runpytest_subprocess(
        f"--asyncio-mode={mode}", "--nettest-leaks=off", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        ["*RuntimeError: handler failed on the test's loop*", "*ScriptMismatch*"]
    )


@pytest.mark.parametrize("mode", MODES)
def test_server_whose_loop_closed_before_teardown_is_closed_and_raises(
    pytester: pytest.Pytester, mode: str
) -> None:
    # A loop the test ran itself is closed by the time teardown comes: nothing can
    # run on it, so the socket is closed and the handler's errors raised as they are.
    pytester.makepyfile(
        _HEADER
        + """
import socket

SERVERS = []

async def boom(reader, writer):
    await reader.read(1)
    raise RuntimeError("handler failed on a loop now closed")

def test_own_loop(tcp_server):
    async def main():
        server = await tcp_server(boom)
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"x")
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        return server

    SERVERS.append(asyncio.run(main()))

def test_it_was_closed():
    (server,) = SERVERS
    assert server.closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=5)
"""
    )
    result = pytester.runpytest_subprocess(f"--asyncio-mode={mode}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*HandlerError: TCPServer 127.0.0.1:*: 1 handler error (its event loop had closed*",
            "*RuntimeError: handler failed on a loop now closed*",
        ]
    )
    result.stdout.no_fnmatch_line("*LeakError*")


@pytest.mark.parametrize("mode", MODES)
def test_connections_open_as_their_loop_closes_are_aborted_without_a_warning(
    pytester: pytest.Pytester, mode: str
) -> None:
    # asyncio.run returned with a client still connected.  On 3.10 the server's side
    # stayed open, on a loop where nothing can run: the hygiene gate failed the test
    # ("dropped while open") and its transport warned as it was collected.  From 3.11
    # the cancelled handler's StreamWriter warned as it was collected.  Now a handler
    # cancelled with its loop aborts its connection, and teardown closes those a
    # protocol handler held (its loop having closed) under their transports.
    pytester.makepyfile(
        _HEADER
        + """
import gc
import socket
from nettest import Ending

SERVERS = []

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

HANDLERS = {"stream": handlers.echo, "protocol": Echo}

@pytest.mark.parametrize("handler", ["stream", "protocol"])
@pytest.mark.parametrize("kind", ["tcp", "unix", "tls"])
def test_own_loop(
    kind, handler, tcp_server, unix_server, tls_server_context, tls_client_context
):
    # The client is a blocking socket of the test's own, closed after the loop:
    # every warning left would be the server's.
    async def main():
        if kind == "unix":
            server = await unix_server(HANDLERS[handler])
            client = socket.socket(socket.AF_UNIX)
        else:
            context = tls_server_context if kind == "tls" else None
            server = await tcp_server(HANDLERS[handler], ssl=context)
            client = socket.socket()
        client.settimeout(10)
        await asyncio.to_thread(client.connect, server.address)
        if kind == "tls":
            client = await asyncio.to_thread(
                tls_client_context.wrap_socket, client, server_hostname="localhost"
            )
        SERVERS.append((server, client))
        await asyncio.to_thread(client.sendall, b"ping")
        assert await asyncio.to_thread(client.recv, 4) == b"ping"

    asyncio.run(main())
    SERVERS[-1][1].close()

def test_own_loop_in_the_handshake(tcp_server, tls_server_context):
    async def main():
        server = await tcp_server(handlers.echo, ssl=tls_server_context)
        client = socket.socket()
        client.settimeout(10)
        await asyncio.to_thread(client.connect, server.address)  # and no ClientHello
        while not server._handshaking:
            await asyncio.sleep(0.001)
        SERVERS.append((server, client))

    asyncio.run(main())

def test_they_were_aborted_and_closed():
    assert len(SERVERS) == 7
    *served, (handshaking, client) = SERVERS
    endings = [[c.ending for c in server.connections] for server, _ in served]
    assert endings == [[Ending.ABORTED]] * 6
    assert all(server.closed for server, _ in SERVERS)
    assert (handshaking.connections, handshaking.handshake_failures) == ((), ())
    assert client.recv(1) == b""  # its socket was closed
    client.close()
    SERVERS.clear()
    gc.collect()  # the transports warned here, when collected

def test_nothing_warned_meanwhile():
    gc.collect()
"""
    )
    result = pytester.runpytest_subprocess(
        f"--asyncio-mode={mode}",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error::ResourceWarning",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
    )
    result.assert_outcomes(passed=9)
    result.stdout.no_fnmatch_line("*LeakError*")
    result.stdout.no_fnmatch_line("*unclosed*")


@pytest.mark.parametrize("leaks", ["own", "off"])
def test_server_teardown_warning_points_at_the_test(pytester: pytest.Pytester, leaks: str) -> None:
    # The fixture closes the server from nettest's code: the warning points at
    # the test's line that made the server, or that closed it, not at nettest.
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        async def stuck(reader, writer):
            await asyncio.sleep(3600)

        async def connect(server):
            _, writer = await asyncio.open_connection(*server.address)
            await server.wait_for_connections(1)
            writer.close()

        @pytest.mark.asyncio
        async def test_closed_by_the_fixture(tcp_server):
            server = await tcp_server(stuck, close_timeout=0.05)
            await connect(server)

        @pytest.mark.asyncio
        async def test_closed_by_the_test(tcp_server):
            server = await tcp_server(stuck, close_timeout=0.05)
            await connect(server)
            await server.aclose()
        """
    )
    # In a subprocess: in-process, the outer test's frames would be on the stack.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "always", f"--nettest-leaks={leaks}"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_closed_by_the_fixture",
            "*test_server_teardown_warning_points_at_the_test.py:14: ServerTeardownWarning:*",
            "*server = await tcp_server(stuck, close_timeout=0.05)",
            "*test_closed_by_the_test",
            "*test_server_teardown_warning_points_at_the_test.py:21: ServerTeardownWarning:*",
            "*await server.aclose()",
        ]
    )


def test_a_thread_servers_teardown_warning_points_at_the_test(pytester: pytest.Pytester) -> None:
    # Raised on the server's own loop thread, where no frame is the test's, it
    # pointed into asyncio's events.py.
    pytester.makepyfile(
        """
        import asyncio
        import socket

        async def stubborn(reader, writer):
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    continue

        def test_closed_by_the_fixture(tcp_server_thread):
            server = tcp_server_thread(stubborn, close_timeout=0.05)
            with socket.create_connection(server.address):
                server.wait_for_connections(1)

        def test_closed_by_the_test(tcp_server_thread):
            server = tcp_server_thread(stubborn, close_timeout=0.05)
            with socket.create_connection(server.address):
                server.wait_for_connections(1)
                server.close()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "always")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_closed_by_the_fixture",
            "*test_a_thread_servers_teardown_warning_points_at_the_test.py:12: "
            "ServerTeardownWarning:*ignored cancellation*",
            "*server = tcp_server_thread(stubborn, close_timeout=0.05)",
            "*test_closed_by_the_test",
            "*test_a_thread_servers_teardown_warning_points_at_the_test.py:20: "
            "ServerTeardownWarning:*ignored cancellation*",
            "*server.close()",
        ]
    )


def test_udp_server_whose_loop_closed_first_leaves_no_warning(pytester: pytest.Pytester) -> None:
    # asyncio.run returned with the server open: teardown closes its socket under its
    # transport, which must not then warn "unclosed transport" when collected.
    pytester.makepyfile(
        """
        import asyncio, gc
        from nettest import handlers

        SERVERS = []

        def test_own_loop(udp_server, unix_datagram_server):
            async def main():
                SERVERS.append(await udp_server(handlers.echo))
                SERVERS.append(await unix_datagram_server(handlers.echo))

            asyncio.run(main())

        def test_collected():
            assert all(server.closed for server in SERVERS)
            SERVERS.clear()
            gc.collect()
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error::ResourceWarning",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
    )
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*unclosed*")


# -- several failing servers ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_failing_server_is_reported(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makepyfile(
        _HEADER
        + """
def failing(name):
    async def handler(reader, writer):
        await reader.read(1)
        raise RuntimeError(f"handler {name} failed")
    return handler

@pytest.mark.asyncio
async def test_three(tcp_server, unix_server):
    servers = [await tcp_server(failing("A")), await unix_server(failing("B"))]
    servers.append(await tcp_server(failing("C")))
    for server in servers:
        if isinstance(server.address, str):
            reader, writer = await asyncio.open_unix_connection(server.address)
        else:
            reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"x")
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
"""
    )
    result = pytester.runpytest(f"--asyncio-mode={mode}")
    result.assert_outcomes(passed=1, errors=1)
    # unix_server's one error is raised as it is; tcp_server's two as a group.
    result.stdout.fnmatch_lines(
        [
            "*ExceptionGroup: tcp_server: 2 servers failed at teardown (2 sub-exceptions)",
            "*RuntimeError: handler A failed",
            "*RuntimeError: handler C failed",
        ]
    )
    result.stdout.fnmatch_lines(["*HandlerError: UnixServer */s: 1 handler error:"])
    result.stdout.fnmatch_lines(["*RuntimeError: handler B failed"])


# -- servers dropped while open ---------------------------------------------------


def test_unix_server_dropped_after_its_loop_closed_leaves_nothing_on_disk(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        _HEADER
        + """
import os
from nettest._servers import UnixServer
from nettest._udp import UnixDatagramServer

PATHS = []

@pytest.mark.asyncio
async def test_leaks(tmp_path):
    PATHS.append((await UnixServer().start()).path)
    PATHS.append((await UnixDatagramServer().start()).path)
    PATHS.append((await UnixServer(path=tmp_path / "u").start()).path)

def test_nothing_is_left():
    assert len(PATHS) == 3
    assert [p for p in PATHS if os.path.exists(p)] == []
    assert [p for p in PATHS[:2] if os.path.exists(os.path.dirname(p))] == []
"""
    )
    result = pytester.runpytest()
    # The leak is still reported, without the servers' ResourceWarnings: the
    # report says it, with where each was made.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*LeakError: *::test_leaks left 3 things behind*",
            "*UnixServer /tmp/nt-*/s dropped while open*",
        ]
    )
    result.stdout.no_fnmatch_line("*ResourceWarning*")


def test__remove_unix_files_removes_only_what_the_server_made(tmp_path: pathlib.Path) -> None:
    _file_id, _remove_unix_files = _server_base._file_id, _server_base._remove_unix_files
    made = tmp_path / "made"
    made.mkdir()
    made_id = _file_id(str(made))
    made.rename(tmp_path / "moved")
    made.mkdir()  # someone else's now, at the same path
    (made / "s").touch()
    assert made_id is not None
    _remove_unix_files(str(made), made_id, str(made / "s"), made_id)
    assert (made / "s").exists()
    sock = tmp_path / "sock"
    sock.touch()
    _remove_unix_files(None, None, str(sock), (0, 0))
    assert sock.exists()
    sock_id = _file_id(str(sock))
    assert sock_id is not None
    _remove_unix_files(None, None, str(sock), sock_id)
    assert not sock.exists()
    _remove_unix_files(str(made), _file_id(str(made)), str(made / "s"), (0, 0))
    assert not made.exists()


def test_a_handler_error_is_reported_without_nettests_frames(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        _HEADER
        + """
import socket

async def bad(reader, writer):
    await reader.readexactly(2)
    raise ValueError("handler exploded")

@pytest.mark.asyncio
async def test_async(tcp_server):
    server = await tcp_server(bad)
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"ab")
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()

def test_thread(tcp_server_thread):
    server = tcp_server_thread(bad)
    with socket.create_connection(server.address) as sock:
        sock.sendall(b"ab")
        assert sock.recv(1) == b""
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*nettest.HandlerError: TCPServer*: 1 handler error:"] * 2)
    result.stdout.no_fnmatch_line("*src/nettest/*")
    result.stdout.no_fnmatch_line("*def _raise_errors*")
