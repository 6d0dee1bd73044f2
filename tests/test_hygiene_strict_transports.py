"""Strict mode closes the transports over the sockets it reports, and names the task that made one.

The gate closes a socket it reports in strict mode.  The asyncio transport over
it, and the StreamWriter over that, must close too: a failed test's traceback
keeps them alive until the session ends, where their finalisers would warn with
no test to blame.  And a socket made in a task (``asyncio.wait_for`` runs its
awaitable in one before Python 3.12) is described by where that task was made.
"""

from __future__ import annotations

import sys

import pytest

from test_hygiene import MODES, run

#: Turn what a finaliser warns after its test into an error of the session.
WARNINGS_AS_ERRORS = (
    "-W",
    "error::ResourceWarning",
    "-W",
    "error::pytest.PytestUnraisableExceptionWarning",
)

#: Before Python 3.12, ``asyncio.wait_for`` runs its awaitable in a task of its own.
WAIT_FOR_MAKES_A_TASK = sys.version_info < (3, 12)

_HEADER = """
        import asyncio, gc
        import pytest
        from nettest import handlers

        kept = []
"""

#: Connect to a nettest server over plain TCP, or over TLS.
_CONNECTIONS = {
    "tcp": """
        async def connect(tcp_server, request):
            server = await tcp_server(handlers.echo)
            reader, writer = await asyncio.open_connection(*server.address)
            return reader, writer
""",
    # asyncio's server: closing it leaves its connections open (nettest's closes
    # them, and a TLS client answers the close_notify by closing too).  The
    # accepted side is the test's leak as well, with a TLS transport of its own.
    "tls": """
        async def connect(tcp_server, request):
            accepted = asyncio.Event()

            async def handle(reader, writer):
                kept.append(writer)
                accepted.set()

            server = await asyncio.start_server(
                handle, "127.0.0.1", 0, ssl=request.getfixturevalue("tls_server_context")
            )
            reader, writer = await asyncio.open_connection(
                *server.sockets[0].getsockname()[:2],
                ssl=request.getfixturevalue("tls_client_context"),
                server_hostname="localhost",
            )
            await accepted.wait()
            server.close()
            return reader, writer
""",
}


def _no_late_warnings(output: str) -> None:
    for warning in ("unclosed transport", "loop is closed", "unclosed <StreamWriter"):
        assert warning not in output, output


@MODES
@pytest.mark.parametrize("connection", ["tcp", "tls"])
def test_gate_failed_test_connection_closed_with_its_transport(
    pytester: pytest.Pytester, asyncio_mode: str, connection: str
) -> None:
    # pytest keeps the failed test's traceback, and with it the writer and its
    # transport, until the session ends: the gate closed the socket under them,
    # and they warned then, failing the session with an error that named no test.
    result = run(
        pytester,
        _HEADER
        + _CONNECTIONS[connection]
        + """
        @pytest.mark.asyncio
        async def test_fails_with_a_connection_open(tcp_server, request):
            reader, writer = await connect(tcp_server, request)
            assert False, "the real failure"

        @pytest.mark.asyncio
        async def test_next():
            await asyncio.sleep(0)
        """,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
        *WARNINGS_AS_ERRORS,
        subprocess=True,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*nettest hygiene at teardown*",
            "*- open socket <socket.socket *>, created at:",
            "(closed: this test failed already, not again for what it left open)",
        ]
    )
    _no_late_warnings(result.stdout.str() + result.stderr.str())
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@MODES
@pytest.mark.parametrize("connection", ["tcp", "tls"])
@pytest.mark.parametrize("loop_scope", ["function", "module"])
def test_gate_leaked_connection_closed_with_its_transport(
    pytester: pytest.Pytester, asyncio_mode: str, connection: str, loop_scope: str
) -> None:
    # A passing test that leaks a connection it keeps: the gate reports it and
    # closes it, the transport and its writer included (aborted on a module-scoped
    # loop, which is still open; closed under its closed loop otherwise), so that
    # they do not warn when a later test lets them go.
    result = run(
        pytester,
        _HEADER
        + _CONNECTIONS[connection]
        + f"""
        pytestmark = pytest.mark.asyncio(loop_scope="{loop_scope}")

        async def test_leaks_a_connection(tcp_server, request):
            kept.append(await connect(tcp_server, request))

        async def test_later_lets_it_go():
            await asyncio.sleep(0.01)
            kept.clear()
            gc.collect()
            await asyncio.sleep(0)
        """,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
        *WARNINGS_AS_ERRORS,
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_connection*",
            "*left * behind (--nettest-leaks=strict):",
            "*- open socket <socket.socket *>, created at:",
        ]
    )
    _no_late_warnings(result.stdout.str() + result.stderr.str())


def test_gate_transport_close_failure_is_reported(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closing the transports is bookkeeping: a failure there never raises out of
    # the check, and is reported with the leak it released.
    from nettest import _hygiene as hygiene

    def broken(sockets: object) -> None:
        raise RuntimeError("no transports today")

    monkeypatch.setattr(hygiene, "close_transports_over", broken)
    result = run(
        pytester,
        """
        import socket
        kept = []

        def test_leaks_a_socket():
            kept.append(socket.socket())
        """,
        "--nettest-leaks=strict",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*left 2 things behind (--nettest-leaks=strict):",
            "*- open socket <socket.socket *>, created at:",
            "*- the hygiene gate could not close the asyncio transports over the sockets it "
            "closed (a nettest bug*RuntimeError: no transports today",
        ]
    )


@MODES
def test_gate_socket_made_in_a_task_described_by_where_the_task_was_made(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    # Before 3.12, wait_for runs its awaitable in a task of its own: the socket's
    # stack holds none of the test's frames, the stack of the task that made it
    # does.  Nested, the inner task was made by the outer one, itself by the test.
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import handlers

        kept = []

        @pytest.mark.asyncio
        async def test_connects_under_wait_for(tcp_server):
            server = await tcp_server(handlers.echo)
            kept.append(await asyncio.wait_for(asyncio.open_connection(*server.address), 1))

        @pytest.mark.asyncio
        async def test_connects_under_two_wait_fors(tcp_server):
            server = await tcp_server(handlers.echo)
            connecting = asyncio.open_connection(*server.address)
            kept.append(await asyncio.wait_for(asyncio.wait_for(connecting, 1), 1))
        """,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
        *WARNINGS_AS_ERRORS,
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=2)
    if WAIT_FOR_MAKES_A_TASK:
        once = "*- open socket <socket.socket *>, made by task Task-* running open_connection(), "
        twice = once + "made by task Task-* running wait_for(), "
    else:
        once = twice = "*- open socket <socket.socket *>, "
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_connects_under_wait_for*",
            once + "created at:",
            '*File "*test_leaky.py", line *, in test_connects_under_wait_for',
            "*kept.append(await asyncio.wait_for(asyncio.open_connection(*server.address), 1))",
            "*ERROR at teardown of test_connects_under_two_wait_fors*",
            twice + "created at:",
            '*File "*test_leaky.py", line *, in test_connects_under_two_wait_fors',
            "*kept.append(await asyncio.wait_for(asyncio.wait_for(connecting, 1), 1))",
        ]
    )
    assert "none of the test's frames" not in result.stdout.str()


def test_gate_strict_passes_a_tls_server_whose_handshake_just_failed(
    pytester: pytest.Pytester,
) -> None:
    # The README's TLS example.  On Python 3.11 the server's accept task for the
    # refused handshake is still pending as the test ends, though its wait is
    # over: one more turn of the loop ends it, and no test could wait for it.
    result = run(
        pytester,
        """
        import asyncio, ssl
        import pytest

        async def pong(reader, writer):
            writer.close()

        @pytest.mark.asyncio
        async def test_client_rejects_an_expired_certificate(tls_bad_case_factory):
            bad = tls_bad_case_factory("expired")
            server = await asyncio.start_server(pong, "127.0.0.1", 0, ssl=bad.server_context)
            async with server:
                port = server.sockets[0].getsockname()[1]
                with pytest.raises(ssl.SSLCertVerificationError):
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", port, ssl=bad.client_context,
                        server_hostname=bad.server_hostname,
                    )
        """,
        "--nettest-leaks=strict",
        *WARNINGS_AS_ERRORS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1)
