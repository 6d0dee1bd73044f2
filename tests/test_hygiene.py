"""The hygiene gate: each kind of leak is caught and blamed on the test that made it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import ssl
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio.plugin

from nettest import LeakError, TCPServer, handlers
from nettest import _hygiene as hygiene

MODES = pytest.mark.parametrize("asyncio_mode", ["strict", "auto"])
STRICT_MARK = '@pytest.mark.nettest_leaks("strict")'


def collect_garbage() -> None:
    """Finalise what earlier tests left as garbage, so the gate's own collection cannot meet it.

    Inner sessions leave event loops that pytest plugins created implicitly.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def run(
    pytester: pytest.Pytester, source: str, *args: str, subprocess: bool = False
) -> pytest.RunResult:
    pytester.makepyfile(test_leaky=source)
    collect_garbage()
    if subprocess:
        # The gate collects garbage when it finds a leak; in-process, that garbage
        # would include what earlier inner sessions left in this process.
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_gate_strict_lets_go_of_what_each_passed_test_made(pytester: pytest.Pytester) -> None:
    # A server's entry held its listening socket until the check, and then for the
    # whole session: the socket's own entry, the value of a weak mapping keyed by the
    # socket, reached it back through the server's entry.  Every check walked them.
    result = run(
        pytester,
        """
        import asyncio, gc
        import pytest
        from nettest import handlers
        from nettest._hygiene import GATE

        @pytest.mark.asyncio
        @pytest.mark.parametrize("n", range(30))
        async def test_serves(tcp_server, n):
            server = await tcp_server(handlers.echo)
            reader, writer = await asyncio.open_connection(*server.address)
            writer.close()
            await writer.wait_closed()

        def test_none_kept():
            gc.collect()
            assert [s for s in GATE.socket_owners if s.fileno() == -1] == []
            assert len(GATE.owners) < 5
        """,
        "--nettest-leaks=strict",
        subprocess=True,
    )
    result.assert_outcomes(passed=31)


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


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_gate_reports_a_memory_transport_whose_close_waits_for_ever(
    pytester: pytest.Pytester, mode: str
) -> None:
    # close() waits for the write buffer to drain, as asyncio's does; in memory only
    # the test drains it (take_sent(), pump(), reading the other end).  A transport
    # closed with a buffer the test never drained never calls connection_lost().
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import MemoryDatagramTransport, memory_datagram_pair, memory_transport_pair

        kept = []

        @pytest.mark.asyncio
        async def test_datagram_never_taken():
            transport = MemoryDatagramTransport(
                asyncio.DatagramProtocol(), remote_addr=("127.0.0.1", 53)
            )
            transport.sendto(b"query")
            transport.close()
            kept.append(transport)

        @pytest.mark.asyncio
        async def test_manual_pair_never_pumped():
            a, b = memory_datagram_pair(
                asyncio.DatagramProtocol(), asyncio.DatagramProtocol(), manual=True
            )
            a.sendto(b"one")
            a.sendto(b"two")
            a.close()
            b.close()

        @pytest.mark.asyncio
        async def test_manual_stream_pair_never_pumped():
            client, server = memory_transport_pair(
                asyncio.Protocol(), asyncio.Protocol(), manual=True
            )
            client.write(b"0123456789")
            client.close()
            server.close()

        @pytest.mark.asyncio
        async def test_taken_then_closed():
            transport = MemoryDatagramTransport(
                asyncio.DatagramProtocol(), remote_addr=("127.0.0.1", 53)
            )
            transport.sendto(b"query")
            transport.close()
            assert transport.take_sent() == [(b"query", ("127.0.0.1", 53))]
            await asyncio.sleep(0)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_peer_s_reset_on_its_way_on_a_module_loop():
            # The server's RST ends the client's close on the loop's next turn,
            # which comes in a later test: not a leak.
            client, server = memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())
            await asyncio.sleep(0)
            client.write(b"x" * 1_000_000)
            client.close()
            server.close()
            kept.append(client)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_later_on_the_module_loop():
            await asyncio.sleep(0)
            assert not kept[1].get_write_buffer_size()

        @pytest.mark.asyncio(loop_scope="module")
        async def test_manual_pair_never_pumped_on_a_module_loop():
            # Only the test could pump it: reported though the loop stays open.
            client, server = memory_transport_pair(
                asyncio.Protocol(), asyncio.Protocol(), manual=True
            )
            client.write(b"abc")
            client.close()
            server.close()

        def test_after():
            assert repr(kept[0]).startswith("<MemoryDatagramTransport closed "), "the gate"
        """,
        f"--nettest-leaks={mode}",
    )
    result.assert_outcomes(passed=8, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_datagram_never_taken*",
            "*- MemoryDatagramTransport ('127.0.0.1', *) closing, but connection_lost() never "
            "came: a datagram (5 bytes) never left its write buffer (take_sent() it, or "
            "abort()), created at:",
            "*ERROR at teardown of test_manual_pair_never_pumped*",
            "*- MemoryDatagramTransport * closing, but connection_lost() never came: "
            "2 datagrams (6 bytes) never left its write buffer (pump() them, or abort())*",
            "*ERROR at teardown of test_manual_stream_pair_never_pumped*",
            "*- MemoryTransport * closing, but connection_lost() never came: 10 bytes never "
            "left its write buffer (pump() them, or abort()), created at:",
            "*ERROR at teardown of test_manual_pair_never_pumped_on_a_module_loop*",
            "*- MemoryTransport * closing, but connection_lost() never came: 3 bytes never "
            "left its write buffer (pump() them, or abort()), created at:",
        ]
    )


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_gate_does_not_fail_a_failed_test_again_for_what_it_left_open(
    pytester: pytest.Pytester, mode: str
) -> None:
    result = run(
        pytester,
        """
        import socket
        import pytest
        from nettest import memory_stream_pair

        pair = []

        @pytest.fixture
        def broken():
            raise RuntimeError("setup failed")

        @pytest.mark.asyncio
        async def test_fails_before_its_clean_up():
            pair.append(memory_stream_pair())
            assert False, "the real failure"

        @pytest.mark.asyncio
        @pytest.mark.xfail(reason="known bug")
        async def test_known_bug():
            pair.append(memory_stream_pair())
            assert False

        @pytest.mark.asyncio
        async def test_setup_fails(broken):
            pass

        def test_after():
            for (_, writer), (_, other) in pair:
                assert writer.transport.is_closing() and other.transport.is_closing()
        """,
        f"--nettest-leaks={mode}",
    )
    # No teardown errors: a failed test's clean-up code did not run.  What it left
    # open is closed all the same, and listed under its failure.
    result.assert_outcomes(passed=1, failed=1, xfailed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_setup_fails*",
            "*RuntimeError: setup failed",
            "*_ test_fails_before_its_clean_up _*",
            "*AssertionError: the real failure",
            "*- nettest hygiene at teardown -*",
            f"test_leaky.py::test_fails_before_its_clean_up left 2 things behind "
            f"(--nettest-leaks={mode}):",
            "  - open MemoryTransport *, created at:",
            "(closed: this test failed already, not again for what it left open)",
        ]
    )
    assert "LeakError" not in result.stdout.str()


def test_gate_ends_a_task_that_ignores_cancellation_before_its_loop_closes(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        async def stubborn():
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass

        @pytest.mark.asyncio
        async def test_leaves_a_stubborn_task():
            asyncio.ensure_future(stubborn())
            await asyncio.sleep(0)

        def test_after():
            pass
        """,
        "--nettest-leaks=strict",
        subprocess=True,
    )
    # The loop's close would wait on the task for ever; the gate ends it first.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_stubborn_task*",
            "*- pending task <Task * coro=<stubborn() *> that ignored cancellation: nettest "
            "closed its coroutine when its event loop closed, created at:",
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
            "*- pending task <Task pending name='module-leak'*, created at:",
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


@pytest.mark.parametrize("leaks", ["own", "strict"])
def test_a_nettest_object_dropped_open_mid_test_is_reported_without_its_warning(
    pytester: pytest.Pytester, leaks: str
) -> None:
    # A state machine's examples each run on a loop of their own: a server one
    # leaves open is garbage once that loop closes, and an automatic collection
    # in a later example freed it.  Its finaliser's ResourceWarning (and its
    # listening socket's, freed first in some collections) failed the test as
    # pytest's unraisable-exception group, pointing wherever the collector ran,
    # with the gate's report below it.  The report is the failure now.
    result = run(
        pytester,
        """
        import asyncio, gc
        from nettest import BoundSocket, FaultProxy, TCPServer, memory_transport_pair

        def test_examples():
            for _ in range(3):
                async def main():
                    await TCPServer().start()
                    await FaultProxy(("127.0.0.1", 9)).start()
                    memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())

                asyncio.run(main())
                BoundSocket.tcp()
                gc.collect()  # as an automatic collection in the next example would

        def test_after():
            pass
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
            "*ERROR at teardown of test_examples*",
            "*LeakError: *test_examples left 15 things behind*",
            "*- TCPServer 127.0.0.1:* dropped while open, created at:",
        ]
    )
    out = result.stdout.str()
    assert "Unraisable" not in out
    assert "ResourceWarning" not in out


@pytest.mark.parametrize("leaks", ["own", "strict"])
def test_gate_reports_what_the_garbage_collector_freed_before_the_check(
    pytester: pytest.Pytester, leaks: str
) -> None:
    # Collected during the test (by the test, or by an automatic collection), an
    # object left open used to leave the gate nothing to report: a collection of
    # a cycle clears the gate's weak references before the object's __del__ runs.
    result = run(
        pytester,
        """
        import asyncio
        import gc
        import pytest
        from nettest import BoundSocket, FaultProxy, TCPServer, memory_transport_pair

        def test_server():
            async def main():
                await TCPServer().start()

            asyncio.run(main())
            gc.collect()

        def test_proxy():
            async def main():
                await FaultProxy(("127.0.0.1", 9)).start()

            asyncio.run(main())
            gc.collect()

        @pytest.mark.asyncio
        async def test_memory_pair():
            memory_transport_pair(asyncio.Protocol(), asyncio.Protocol())
            gc.collect()

        def test_bound_socket():
            bound = BoundSocket.tcp()
            del bound
        """,
        f"--nettest-leaks={leaks}",
        "-W",
        "ignore::ResourceWarning",
        "-W",
        "ignore::pytest.PytestUnraisableExceptionWarning",
        subprocess=True,
    )
    result.assert_outcomes(passed=4, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*test_server left*",
            "*- TCPServer 127.0.0.1:* dropped while open, created at:",
            "*test_proxy left*",
            "*- FaultProxy tcp 127.0.0.1:* -> 127.0.0.1:9 dropped while open, created at:",
            "*test_memory_pair left*",
            "*- MemoryTransport * dropped while open, created at:",
            "*test_bound_socket left*",
            "*- bound TCP socket 127.0.0.1:* dropped while open, created at:",
        ],
        consecutive=False,
    )


def test_gate_stacks_leave_out_hypothesis_and_unittest(pytester: pytest.Pytester) -> None:
    # A state machine's leak came with some fifteen frames of hypothesis's engine
    # and unittest's runner in front of the one line that made it.
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from hypothesis import given, settings, strategies as st
        from hypothesis.stateful import initialize, rule
        from nettest import memory_stream_pair
        from nettest import strategies as nst

        class LeakyMachine(nst.AsyncRuleBasedStateMachine):
            @initialize()
            async def connect(self):
                self.pairs = memory_stream_pair()

            @rule()
            async def wait(self):
                await asyncio.sleep(0)

        TestLeaky = LeakyMachine.TestCase
        TestLeaky.settings = settings(max_examples=1, stateful_step_count=1, database=None)

        PAIRS = []

        @pytest.mark.asyncio
        @settings(max_examples=1, database=None)
        @given(st.just(1))
        async def test_given(one):
            PAIRS.append(memory_transport_pair_of(one))

        def memory_transport_pair_of(one):
            return memory_stream_pair()

        @settings(max_examples=1, database=None)
        @given(st.just(1))
        def test_given_sync(one):
            asyncio.run(keep_a_pair(one))

        async def keep_a_pair(one):
            PAIRS.append(memory_transport_pair_of(one))
        """,
        subprocess=True,
    )
    result.assert_outcomes(passed=3, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*TestLeaky::runTest left 2 things behind*",
            "*, created at:",
            '*File "*test_leaky.py", line *, in connect',
            "*self.pairs = memory_stream_pair()",
            "*test_given left 2 things behind*",
            "*, created at:",
            '*File "*test_leaky.py", line *, in test_given',
            "*PAIRS.append(memory_transport_pair_of(one))",
            '*File "*test_leaky.py", line *, in memory_transport_pair_of',
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        [
            "*test_given_sync left * behind*",
            "*, created at:",
            '*File "*test_leaky.py", line *, in test_given_sync',
            "*asyncio.run(keep_a_pair(one))",
        ],
        consecutive=True,
    )
    for path in ("hypothesis", "unittest"):
        result.stdout.no_fnmatch_line(f"*{os.sep}{path}{os.sep}*")
    # hypothesis's wrappers take the test's file, line and name: @given's line.
    result.stdout.no_fnmatch_line("*@given(*")


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


def test_gate_strict_leaves_a_wider_protocol_servers_tasks_to_it(
    pytester: pytest.Pytester,
) -> None:
    # A loop.create_server protocol (aiohttp's web server is one) that starts a task
    # in connection_made: the task serves the module's server, not the test that
    # connected, and is still running at that test's check.
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        import pytest_asyncio

        class Serving(asyncio.Protocol):
            def connection_made(self, transport):
                self.closed = asyncio.get_running_loop().create_future()
                self.task = asyncio.get_running_loop().create_task(self.serve())

            async def serve(self):
                await self.closed

            def connection_lost(self, exc):
                self.closed.set_result(None)

        @pytest_asyncio.fixture(loop_scope="module", scope="module")
        async def server():
            server = await asyncio.get_running_loop().create_server(Serving, "127.0.0.1", 0)
            yield server
            server.close()
            await server.wait_closed()

        @pytest.mark.asyncio(loop_scope="module")
        async def test_connects_and_closes(server):
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.close()
            await writer.wait_closed()

        @pytest.mark.asyncio(loop_scope="module")
        async def test_after(server):
            pass
        """,
        "--nettest-leaks=strict",
    )
    result.assert_outcomes(passed=2)


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
            raise AssertionError("the body of a test with a bad marker ran")

        # Two modes are one too many, whichever way given: the first used to win.
        @pytest.mark.nettest_leaks("strict", "off")
        def test_two_modes():
            raise AssertionError("the body of a test with a bad marker ran")

        @pytest.mark.nettest_leaks("strict", mode="off")
        def test_a_mode_twice():
            raise AssertionError("the body of a test with a bad marker ran")
        """,
    )
    result.assert_outcomes(passed=3, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_strict_here*",
            "*ERROR at setup of test_bad_marker*",
            "*mode must be one of off, own, strict; got 'sometimes'*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*nettest_leaks marker on *test_two_modes: takes one mode, as "
            "nettest_leaks(\"strict\"), got ('strict', 'off') {}*",
        ]
    )
    result.stdout.fnmatch_lines(["*test_a_mode_twice: takes one mode*"])
    result.stdout.no_fnmatch_line("*the body of a test with a bad marker ran*")


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


# -- the strict marker: the same gate as a strict session, for the marked tests alone ----------

#: How a test module asks for strict mode: the session's mode, or a marker on the
#: module, the class or each test.
STRICT_BY = pytest.mark.parametrize(
    "strict_by", ["session", "module marker", "class marker", "test marker"]
)


def strict_source(source: str, strict_by: str) -> tuple[str, list[str]]:
    """Fill `source`'s ``{module_mark}``, ``{class_mark}`` and ``{test_mark}``; add the options."""
    marks = {"module_mark": "", "class_mark": "", "test_mark": ""}
    if strict_by == "module marker":
        marks["module_mark"] = f"pytestmark = {STRICT_MARK[1:]}"
    elif strict_by == "class marker":
        marks["class_mark"] = STRICT_MARK
    elif strict_by == "test marker":
        marks["test_mark"] = STRICT_MARK
    return source.format(**marks), ["--nettest-leaks=strict"] if strict_by == "session" else []


@STRICT_BY
def test_gate_strict_marker_blames_only_what_the_test_made(
    pytester: pytest.Pytester, strict_by: str
) -> None:
    source, options = strict_source(
        """
        import socket
        import pytest

        {module_mark}
        MADE_AT_IMPORT = socket.socket()  # nobody's leak
        leaked = []

        @pytest.fixture(scope="module")
        def module_listener():
            sock = socket.create_server(("127.0.0.1", 0))
            yield sock
            sock.close()

        {class_mark}
        class TestGate:
            {test_mark}
            def test_does_nothing(self):
                pass

            {test_mark}
            def test_uses_a_module_fixture(self, module_listener):
                with socket.create_connection(module_listener.getsockname()):
                    pass
                module_listener.accept()[0].close()

            {test_mark}
            def test_leaks(self):
                leaked.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))

            def test_after(self):
                assert leaked[0].fileno() == -1, "the gate closes what it reported"
                MADE_AT_IMPORT.close()
        """,
        strict_by,
    )
    result = run(pytester, source, *options, subprocess=True)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of TestGate.test_leaks*",
            "*TestGate::test_leaks left 1 thing behind (--nettest-leaks=strict):",
            "*- open socket <socket.socket fd=*, laddr=(*0.0.0.0*, 0)>, created at:",
            "*leaked.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))",
        ]
    )


@MODES
@pytest.mark.parametrize(
    ("loop_scope", "reported"),
    [
        (
            "function",
            "*- pending task <Task pending name='marked-leak'*when its event loop closed*",
        ),
        ("module", "*- pending task <Task pending name='marked-leak'*, created at:"),
    ],
)
def test_gate_strict_marker_reports_a_pending_task_and_comes_off_after(
    pytester: pytest.Pytester, asyncio_mode: str, loop_scope: str, reported: str
) -> None:
    result = run(
        pytester,
        f"""
        import asyncio, socket
        import pytest
        from nettest._hygiene import GATE

        pytestmark = pytest.mark.asyncio(loop_scope="{loop_scope}")
        tasks = []

        async def forever():
            await asyncio.Event().wait()

        def only_the_gates_own_task_factory():
            loop = asyncio.get_running_loop()
            ours = GATE.task_factories[loop]
            return loop.get_task_factory() is ours and not GATE.test_task_factories

        async def test_before():
            assert only_the_gates_own_task_factory()

        {STRICT_MARK}
        async def test_leaks_a_task():
            tasks.append(asyncio.create_task(forever(), name="marked-leak"))
            await asyncio.sleep(0)

        async def test_after():
            assert tasks[0].cancelled(), "the gate cancels what it reported"
            # The marked test's instruments are gone: this test is checked in 'own' mode.
            assert only_the_gates_own_task_factory()
            assert not hasattr(socket.socket.__init__, "__wrapped__")
            tasks.append(asyncio.create_task(forever(), name="not-a-leak-in-own-mode"))
            await asyncio.sleep(0)
        """,
        f"--asyncio-mode={asyncio_mode}",
        subprocess=True,
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_task*",
            "*left 1 thing behind (--nettest-leaks=strict):",
            reported,
            '*tasks.append(asyncio.create_task(forever(), name="marked-leak"))',
        ]
    )


@pytest.mark.parametrize("strict_by", ["session", "module marker"])
def test_gate_strict_marker_leaves_wider_scoped_servers_to_them(
    pytester: pytest.Pytester, strict_by: str
) -> None:
    source, options = strict_source(
        _SHARED_SERVER
        + """
        import socket
        from nettest import TCPServerThread

        {module_mark}

        @pytest.fixture(scope="module")
        def thread_server():
            with TCPServerThread(handlers.echo) as server:
                yield server

        @pytest.mark.asyncio(loop_scope="module")
        async def test_talks_to_it(shared_server):
            reader, writer = await asyncio.open_connection(*shared_server.address)
            writer.write(b"a")
            assert await reader.readexactly(1) == b"a"
            writer.close()
            await writer.wait_closed()

        @pytest.mark.asyncio(loop_scope="module")
        async def test_talks_to_it_again(shared_server):
            reader, writer = await asyncio.open_connection(*shared_server.address)
            writer.write(b"b")
            assert await reader.readexactly(1) == b"b"
            writer.close()
            await writer.wait_closed()

        def test_talks_to_a_thread(thread_server):
            with socket.create_connection(thread_server.address) as sock:
                sock.sendall(b"x")
                assert sock.recv(1) == b"x"

        def test_talks_to_a_thread_again(thread_server):
            with socket.create_connection(thread_server.address) as sock:
                sock.sendall(b"y")
                assert sock.recv(1) == b"y"
            thread_server.wait_closed(connection=2, timeout=5)
        """,
        strict_by,
    )
    result = run(pytester, source, *options)
    result.assert_outcomes(passed=4)


def test_gate_own_marker_in_a_strict_session_checks_as_own(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import socket
        import pytest

        kept = []

        @pytest.mark.nettest_leaks("own")
        def test_leaks_a_plain_socket():
            kept.append(socket.socket())

        @pytest.mark.nettest_leaks("own")
        def test_closes_it():
            kept.pop().close()
        """,
        "--nettest-leaks=strict",
    )
    result.assert_outcomes(passed=2)


def test_gate_strict_marker_comes_off_after_a_failing_teardown(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import socket
        import pytest

        INIT_AT_IMPORT = socket.socket.__init__

        @pytest.fixture
        def breaks_at_teardown():
            yield
            raise RuntimeError("teardown broke")

        @pytest.mark.nettest_leaks("strict")
        def test_strict(breaks_at_teardown):
            pass

        def test_after():
            assert socket.socket.__init__ is INIT_AT_IMPORT
        """,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_strict*", "*teardown broke*"])


# -- objects that cannot be weakly referenced ----------------------------------------------------


def run_on_uvloop(main: Callable[[], Awaitable[None]]) -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.uvloop
@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "wrong.test"])
def test_gate_tls_server_on_uvloop(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext, server_hostname: str
) -> None:
    # uvloop's TLS transport cannot be weakly referenced; the gate tracks this test's
    # server's connections all the same, without failing them.
    async def main() -> None:
        async with TCPServer(handlers.echo, ssl=tls_server_context) as server:
            connecting = asyncio.open_connection(
                *server.address, ssl=tls_client_context, server_hostname=server_hostname
            )
            if server_hostname == "wrong.test":
                with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
                    await asyncio.wait_for(connecting, 5)
                return
            reader, writer = await asyncio.wait_for(connecting, 5)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
            (conn,) = await server.wait_for_connections(1, timeout=5)
            writer.close()
            await writer.wait_closed()
            await conn.wait_closed()

    run_on_uvloop(main)


_HAS_LOOP_FACTORIES = hasattr(
    getattr(pytest_asyncio.plugin, "PytestAsyncioSpecs", None), "pytest_asyncio_loop_factories"
)
_NEEDS_LOOP_FACTORIES = pytest.mark.skipif(
    not _HAS_LOOP_FACTORIES, reason="pytest-asyncio has no pytest_asyncio_loop_factories hook"
)
#: An inner session's conftest that runs its async tests on uvloop.
_ON_UVLOOP = """
import uvloop

def pytest_asyncio_loop_factories(config, item):
    return {"uvloop": uvloop.new_event_loop}
"""


def _run_strict_with_warnings_as_errors(pytester: pytest.Pytester) -> pytest.RunResult:
    """Run the inner session in strict mode, under the filters the docs recommend."""
    return pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--nettest-leaks=strict",
        "-W",
        "error::ResourceWarning",
        "-W",
        "error::pytest.PytestUnraisableExceptionWarning",
        timeout=120,  # uvloop's close hung for ever before
    )


@pytest.mark.uvloop
@_NEEDS_LOOP_FACTORIES
@MODES
@pytest.mark.parametrize("leaks", ["own", "strict"])
def test_gate_tls_server_fixture_on_uvloop(
    pytester: pytest.Pytester, asyncio_mode: str, leaks: str
) -> None:
    pytest.importorskip("uvloop")
    pytester.makeconftest(_ON_UVLOOP)
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        import uvloop
        from nettest import handlers

        @pytest.mark.asyncio
        async def test_tls_echo(tcp_server, tls_server_context, tls_client_context):
            assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
            server = await tcp_server(handlers.echo, ssl=tls_server_context)
            reader, writer = await asyncio.open_connection(
                *server.address, ssl=tls_client_context, server_hostname="localhost"
            )
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            (conn,) = await server.wait_for_connections(1)
            writer.close()
            await writer.wait_closed()
            await conn.wait_closed()

        @pytest.mark.asyncio
        async def test_tls_connection_left_open(tcp_server, tls_server_context,
                                                tls_client_context):
            server = await tcp_server(handlers.echo, ssl=tls_server_context)
            reader, writer = await asyncio.open_connection(
                *server.address, ssl=tls_client_context, server_hostname="localhost"
            )
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            # The server closes its end at teardown; this test closes the client's.
            writer.transport.abort()
        """,
        f"--asyncio-mode={asyncio_mode}",
        f"--nettest-leaks={leaks}",
    )
    result.assert_outcomes(passed=2)
    assert "Fatal error on transport" not in result.stdout.str()


@pytest.mark.uvloop
@_NEEDS_LOOP_FACTORIES
def test_gate_strict_on_uvloop_leaves_a_session_servers_accepted_connection_to_it(
    pytester: pytest.Pytester,
) -> None:
    # uvloop accepts in C: no Python socket says whose the connection is.  One
    # whose local address is a listener open before the test is a wider-scoped
    # server's, still closing after the client's close, and not the test's leak.
    pytest.importorskip("uvloop")
    pytester.makeconftest(
        _ON_UVLOOP
        + """
import asyncio
import nettest
import pytest_asyncio

async def lingering(reader, writer):
    while await reader.read(100):
        pass
    await asyncio.sleep(0.3)  # closes its end a moment after the client's EOF
    writer.close()

@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def session_server():
    async with nettest.TCPServer(lingering) as server:
        yield server
"""
    )
    pytester.makepyfile(
        test_session="""
        import asyncio
        import pytest

        pytestmark = pytest.mark.asyncio(loop_scope="session")

        async def test_a_client_that_closes(session_server):
            reader, writer = await asyncio.open_connection(*session_server.address)
            writer.write(b"hi")
            writer.close()
            await writer.wait_closed()

        async def test_then(session_server):
            await asyncio.sleep(0.5)
            assert [c.received for c in session_server.connections] == [b"hi"]

        KEEP = []

        async def test_leaks_a_udp_socket_at_the_servers_address(session_server):
            # The same address, but no stream the listener accepted: the test's leak.
            KEEP.append(
                await asyncio.get_running_loop().create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=session_server.address
                )
            )
        """
    )
    result = _run_strict_with_warnings_as_errors(pytester)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_leaks_a_udp_socket_at_the_servers_address left 1 thing behind*"]
    )


@pytest.mark.uvloop
@_NEEDS_LOOP_FACTORIES
def test_gate_strict_reports_and_closes_what_a_test_left_on_uvloop(
    pytester: pytest.Pytester,
) -> None:
    # uvloop's close() closes every handle left open, warning for each: the check
    # after the test found nothing, and under error::ResourceWarning that warning
    # stopped uvloop's close half-way (EBUSY), or hung the session.  The gate now
    # reports them, as this test's, and closes them before the loop closes.
    pytest.importorskip("uvloop")
    pytester.makeconftest(_ON_UVLOOP)
    pytester.makepyfile(
        test_leaky="""
        import asyncio
        import pytest

        KEEP = []

        # Protocols, not streams: a StreamWriter dropped open warns as it is freed.
        @pytest.mark.asyncio
        async def test_leaves_a_client_open():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            address = server.sockets[0].getsockname()
            KEEP.append(await loop.create_connection(asyncio.Protocol, *address))
            server.close()

        @pytest.mark.asyncio
        async def test_leaves_a_server_and_an_endpoint_open():
            loop = asyncio.get_running_loop()
            KEEP.append(await loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
            KEEP.append(
                await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
                )
            )

        def test_innocent():
            pass
        """
    )
    result = _run_strict_with_warnings_as_errors(pytester)
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_leaves_a_client_open left 2 things behind (--nettest-leaks=strict):",
            "*- TCPTransport over an open socket (fd *), left open on its uvloop event loop*",
            "*test_leaves_a_server_and_an_endpoint_open left 2 things behind*",
        ]
    )
    output = result.stdout.str()
    assert "- Server over an open socket" in output
    assert "- UDPTransport over an open socket" in output
    assert "Errno 16" not in output  # uvloop's close finished: nothing was left to it


@pytest.mark.uvloop
@_NEEDS_LOOP_FACTORIES
def test_gate_strict_closes_what_a_test_left_on_a_module_scoped_uvloop(
    pytester: pytest.Pytester,
) -> None:
    # The loop outlives the test: the check sees the sockets, reports them, and
    # closes their transports, so that the module's loop closes without a warning.
    pytest.importorskip("uvloop")
    pytester.makeconftest(_ON_UVLOOP)
    pytester.makepyfile(
        test_leaky="""
        import asyncio
        import pytest

        KEEP = []

        @pytest.mark.asyncio(loop_scope="module")
        async def test_leaves_a_connection_open():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            address = server.sockets[0].getsockname()
            KEEP.append(await loop.create_connection(asyncio.Protocol, *address))
            server.close()

        @pytest.mark.asyncio(loop_scope="module")
        async def test_innocent():
            await asyncio.sleep(0)
        """
    )
    result = _run_strict_with_warnings_as_errors(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*test_leaves_a_connection_open left 2 things behind*"])
    assert "Errno 16" not in result.stdout.str()


class Unreferenceable:
    """A closable object without a ``__weakref__`` slot, like uvloop's TLS transport."""

    __slots__ = ("closed", "finalised")

    def __init__(self, finalised: list[bool]) -> None:
        self.closed = False
        self.finalised = finalised

    def close(self) -> None:
        self.closed = True

    def is_open(self) -> bool:
        return not self.closed

    def __del__(self) -> None:
        self.finalised.append(self.closed)


def test__gate_tracks_an_object_without_weak_references() -> None:
    gate = hygiene._Gate()
    finalised: list[bool] = []
    with pytest.raises(TypeError):
        weakref.ref(Unreferenceable([]))
    with gate.owned_by("test_closes_it"):
        kept = gate.track(
            Unreferenceable(finalised),
            what="Unreferenceable",
            is_open=Unreferenceable.is_open,
            close=Unreferenceable.close,
        )
    kept.close()
    gate.check("test_closes_it", "own", frozenset())
    del kept
    assert finalised == [True], "the gate let go of it at the check"

    with gate.owned_by("test_leaves_it"):
        parent = gate.track(
            Unreferenceable(finalised),
            what="parent",
            is_open=Unreferenceable.is_open,
            close=Unreferenceable.close,
        )
    # What it makes later belongs to its owner (a server's connections, say).
    with gate.owned_by(None):
        child = gate.track(
            Unreferenceable(finalised),
            what="child",
            is_open=Unreferenceable.is_open,
            close=Unreferenceable.close,
            on_behalf_of=parent,
        )
    collect_garbage()  # the check's own collection then finds nothing of other tests'
    with pytest.raises(LeakError, match=r"test_leaves_it left") as excinfo:
        gate.check("test_leaves_it", "own", frozenset())
    assert "open parent, created at:" in str(excinfo.value)
    assert "open child, created at:" in str(excinfo.value)
    assert parent.closed, "the gate closes what it reported"
    assert child.closed
    del parent, child, excinfo  # the traceback's frames hold them too
    assert finalised == [True, True, True]
    assert not gate.tracked
    assert not gate.owners_by_id


def test__gate_track_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> hygiene._Stack:
        raise RuntimeError("bookkeeping broke")

    monkeypatch.setattr(hygiene, "_creation_stack", broken)

    class Thing:
        pass

    gate = hygiene._Gate()
    thing = Thing()
    with gate.owned_by("test_x"):
        assert gate.track(thing, what="thing", is_open=bool, close=id) is thing
    with pytest.raises(
        LeakError, match=r"could not track a thing .*RuntimeError: bookkeeping broke"
    ):
        gate.check("test_x", "own", frozenset())
    gate.check("test_x", "own", frozenset())  # reported once


def test__gate_task_factory_records_only_for_a_strict_test() -> None:
    gate = hygiene._Gate()
    loop = asyncio.new_event_loop()
    try:
        gate.instrument_loop(loop)
        # In every mode: it notes which test made each task.
        ours = loop.get_task_factory()
        assert ours is not None
        assert gate.task_factories[loop] is ours
        fds_before = gate.begin("test_strict", "strict")
        try:
            assert loop.get_task_factory() is ours, "it tracks the strict test's tasks itself"
            with gate.owned_by("test_strict"):
                task = loop.create_task(asyncio.sleep(0))
            with gate.owned_by("test_own"):  # not the strict test's: not recorded
                other = loop.create_task(asyncio.sleep(0))
            assert [item.ref() for item in gate.tracked] == [task]
            loop.run_until_complete(asyncio.gather(task, other))
            gate.check("test_strict", "strict", fds_before)
        finally:
            gate.end("test_strict")
        assert loop.get_task_factory() is ours
        assert not gate._watching_sockets()
    finally:
        loop.close()


def test__gate_copies_a_mapping_that_another_thread_changes_meanwhile() -> None:
    # A server thread adds a socket as the check copies the owners: copy again.
    class Changing(dict[str, int]):
        tries = 0

        def items(self) -> Any:
            self.tries += 1
            if self.tries == 1:
                raise RuntimeError("dictionary changed size during iteration")
            return super().items()

    mapping = Changing(a=1)
    assert hygiene._items(mapping) == [("a", 1)]
    assert mapping.tries == 2


def test__cancel_reaches_a_task_on_a_loop_running_in_another_thread() -> None:
    # The gate closes what a test left from the test's thread; a server thread's
    # loop sleeps in select() meanwhile, and a plain task.cancel() from outside
    # neither wakes it nor is safe there.
    from nettest._hygiene_instruments import _cancel

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        started = concurrent.futures.Future[asyncio.Task[None]]()
        ended = threading.Event()

        async def forever() -> None:
            await loop.create_future()

        def start() -> None:
            task = loop.create_task(forever())
            task.add_done_callback(lambda _: ended.set())
            started.set_result(task)

        loop.call_soon_threadsafe(start)
        task = started.result(timeout=5)
        _cancel(task)
        assert ended.wait(timeout=5), "the loop never ran the cancellation"
        assert task.cancelled()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
