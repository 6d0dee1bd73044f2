"""The hygiene gate: each kind of leak is caught and blamed on the test that made it."""

from __future__ import annotations

import gc
import warnings

import pytest

MODES = pytest.mark.parametrize("asyncio_mode", ["strict", "auto"])


def run(
    pytester: pytest.Pytester, source: str, *args: str, subprocess: bool = False
) -> pytest.RunResult:
    pytester.makepyfile(test_leaky=source)
    # Inner sessions leave event loops that pytest plugins created implicitly as
    # garbage; finalise them now, so the gate's own collection cannot meet them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    if subprocess:
        # The gate collects garbage when it finds a leak; in-process, that garbage
        # would include what earlier inner sessions left in this process.
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    return pytester.runpytest("-p", "no:cacheprovider", *args)


@MODES
def test_gate_clean_tests_pass_in_strict_mode(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    result = run(
        pytester,
        """
        import asyncio, socket
        import pytest

        def test_sync_socket():
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))

        @pytest.mark.asyncio
        async def test_async_server():
            server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

        @pytest.mark.asyncio
        async def test_finished_task():
            await asyncio.create_task(asyncio.sleep(0))
        """,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
    )
    result.assert_outcomes(passed=3)


def test_gate_socket_leak_blamed_on_its_test_in_strict_mode(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import socket
        kept = []

        def test_before():
            pass

        def test_leaks():
            kept.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))

        def test_after():
            assert kept[0].fileno() == -1, "the gate closes what it reported"
        """,
        "--nettest-leaks=strict",
        subprocess=True,
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*LeakError: test_leaky.py::test_leaks left 1 thing behind (--nettest-leaks=strict):",
            "*open socket <socket.socket fd=*, laddr=(*0.0.0.0*, 0)>, created at:",
            '*File "*test_leaky.py", line 8, in test_leaks',
            "*kept.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))",
        ]
    )
    assert "ERROR at teardown of test_after" not in result.stdout.str()
    assert "ERROR at teardown of test_before" not in result.stdout.str()


def test_gate_raw_descriptor_leak_in_strict_mode(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import os, socket
        fds = []

        def test_leaks_raw_fd():
            a, b = socket.socketpair()
            fds.append(a.detach())
            b.close()

        def test_after():
            os.close(fds[0])
        """,
        "--nettest-leaks=strict",
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_raw_fd*",
            "*open socket (fd *, inode *) ''*created outside Python's socket module*",
        ]
    )


def test_gate_own_mode_ignores_sockets_nettest_did_not_make(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import socket
        kept = []

        def test_leaks():
            kept.append(socket.socket())

        def test_closes():
            kept.pop().close()
        """,
    )
    result.assert_outcomes(passed=2)


def test_gate_tracked_object_left_open_in_own_mode(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        from nettest._hygiene import track

        class Thing:
            closed = False
            def close(self):
                self.closed = True

        kept = []

        def test_leaks_thing():
            kept.append(track(Thing(), what="Thing", is_open=lambda t: not t.closed,
                              close=Thing.close))

        def test_closes_thing():
            thing = track(Thing(), what="Thing", is_open=lambda t: not t.closed,
                          close=Thing.close)
            thing.close()

        def test_after():
            assert kept[0].closed, "the gate closes what it reported"
        """,
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_thing*",
            "*left 1 thing behind (--nettest-leaks=own):",
            "*- open Thing, created at:",
            "*kept.append(track(Thing()*",
        ]
    )


@MODES
def test_gate_pending_task_with_function_loop(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        async def forever():
            await asyncio.Event().wait()

        @pytest.mark.asyncio
        async def test_leaks_task():
            asyncio.create_task(forever(), name="the-leak")
            await asyncio.sleep(0)

        @pytest.mark.asyncio
        async def test_clean():
            await asyncio.sleep(0)
        """,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_task*",
            "*pending task <Task pending name='the-leak'*when its event loop closed, created at:",
            '*asyncio.create_task(forever(), name="the-leak")',
        ]
    )


@MODES
def test_gate_pending_task_with_module_loop(pytester: pytest.Pytester, asyncio_mode: str) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        pytestmark = pytest.mark.asyncio(loop_scope="module")
        tasks = []

        async def forever():
            await asyncio.Event().wait()

        async def test_leaks_task():
            tasks.append(asyncio.create_task(forever(), name="module-leak"))
            await asyncio.sleep(0)

        async def test_after():
            await asyncio.sleep(0)
            assert tasks[0].cancelled(), "the gate cancels what it reported"
        """,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_task*",
            "*- open pending task <Task pending name='module-leak'*, created at:",
        ]
    )
    assert "ERROR at teardown of test_after" not in result.stdout.str()


@MODES
def test_gate_loop_exception_handler_calls(pytester: pytest.Pytester, asyncio_mode: str) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        def explode():
            raise KeyError("boom")

        @pytest.mark.asyncio
        async def test_callback_raises():
            asyncio.get_running_loop().call_soon(explode)
            await asyncio.sleep(0.01)

        @pytest.mark.asyncio
        async def test_clean():
            await asyncio.sleep(0)
        """,
        f"--asyncio-mode={asyncio_mode}",
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_callback_raises*",
            "*the loop's exception handler was called: Exception in callback explode()*",
            "*KeyError: 'boom'",
        ]
    )


def test_gate_wider_scoped_fixture_is_not_blamed(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import socket
        import pytest

        @pytest.fixture(scope="module")
        def shared_socket():
            sock = socket.socket()
            yield sock
            sock.close()

        def test_first(shared_socket):
            pass

        def test_second(shared_socket):
            pass
        """,
        "--nettest-leaks=strict",
    )
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("warnings_as_errors", [True, False])
def test_gate_blames_a_dropped_open_transport_on_its_test(
    pytester: pytest.Pytester, warnings_as_errors: bool
) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import memory_transport_pair

        @pytest.mark.asyncio
        async def test_drops_a_pair():
            # Kept alive only by reference cycles: the garbage collector finalises it.
            memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())

        def test_next():
            pass
        """,
        *(["-W", "error::ResourceWarning"] if warnings_as_errors else []),
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_drops_a_pair*",
            "*- MemoryTransport * dropped while open, created at:",
            "*memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())",
        ]
    )


#: A test module's header: a module-scoped echo server on a module-scoped loop.
_SHARED_SERVER = """
        import asyncio
        import pytest
        import pytest_asyncio
        from nettest import TCPServer, handlers

        @pytest_asyncio.fixture(loop_scope="module", scope="module")
        async def shared_server():
            async with TCPServer(handlers.echo) as server:
                yield server
"""


def test_gate_strict_leaves_a_wider_scoped_servers_connections_to_it(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        _SHARED_SERVER
        + """
        @pytest.mark.asyncio(loop_scope="module")
        async def test_talks_to_it(shared_server):
            reader, writer = await asyncio.open_connection(*shared_server.address)
            writer.write(b"a")
            assert await reader.readexactly(1) == b"a"
            writer.close()
            await writer.wait_closed()

        kept = []

        @pytest.mark.asyncio(loop_scope="module")
        async def test_leaves_a_client_open(shared_server):
            # The client's socket is this test's leak; the server's end and its
            # handler task are the server's.
            kept.append(await asyncio.open_connection(*shared_server.address))
            await shared_server.wait_for_connections(2)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_after(shared_server):
            # The gate closed the client's socket; the server saw the end.
            await shared_server.connections[1].wait_closed()
            kept[0][1].close()
        """,
        "--nettest-leaks=strict",
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_client_open*",
            "*left 1 thing behind*",
            "*- open socket <socket.socket * raddr=('127.0.0.1', *)>, created at:",
        ]
    )


def test_gate_leaves_a_wider_scoped_servers_open_connections_to_it(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        _SHARED_SERVER
        + """
        @pytest.mark.asyncio(loop_scope="module")
        async def test_connects(shared_server):
            reader, writer = await asyncio.open_connection(*shared_server.address)
            await shared_server.wait_for_connections(1)
            writer.close()  # the server's end is still open as the test ends: not its leak

        @pytest.mark.asyncio(loop_scope="module")
        async def test_after(shared_server):
            await shared_server.connections[0].wait_closed()
        """,
    )
    result.assert_outcomes(passed=2)


def test_gate_marker_overrides_mode(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import socket
        import pytest

        kept = []

        @pytest.mark.nettest_leaks("off")
        def test_leaks_on_purpose():
            kept.append(socket.socket())

        @pytest.mark.nettest_leaks("strict")
        def test_strict_here():
            kept.append(socket.socket())

        def test_cleanup():
            for sock in kept:
                sock.close()

        @pytest.mark.nettest_leaks("sometimes")
        def test_bad_marker():
            pass
        """,
    )
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_strict_here*",
            "*ERROR at teardown of test_bad_marker*",
            "*mode must be one of off, own, strict; got 'sometimes'*",
        ]
    )


def test_gate_off_reports_nothing(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        @pytest.mark.asyncio
        async def test_callback_raises():
            asyncio.get_running_loop().call_soon(lambda: 1 / 0)
            await asyncio.sleep(0.01)
        """,
        "--nettest-leaks=off",
    )
    result.assert_outcomes(passed=1)
