"""The hygiene gate names the right culprit: late task failures, where things were made, writers.

A task a test left running can fail after that test ended; an object made in a
loop callback or on a server's thread has none of the test's frames on its
stack; a StreamWriter dropped without ``close()`` closes its transport as it
goes.  Each is still reported against, or under the name of, the test that made it.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import importlib.metadata
import sys
import textwrap
import threading
from typing import Any

import pytest

from nettest import LeakError
from nettest import _hygiene as hygiene
from test_hygiene import MODES, run

#: Python >= 3.11.5: ``StreamWriter.__del__`` closes the transport of a writer
#: dropped open (and only warns).  Before, the transport stays open.
WRITER_DEL_CLOSES = hasattr(asyncio.StreamWriter, "__del__")

#: The warning filters getting-started recommends, as command-line options.
FILTERS = ("-W", "error::ResourceWarning", "-W", "error::pytest.PytestUnraisableExceptionWarning")
PYTEST_VERSION = tuple(int(part) for part in pytest.__version__.split(".")[:2])
PYTEST_ASYNCIO_VERSION = tuple(
    int(part) for part in importlib.metadata.version("pytest-asyncio").split(".")[:2]
)

# -- a task that fails after the test that made it ended --------------------------------------

#: test_a leaves a task running that fails 50 ms later, while test_b runs.
_LATE_FAILURE = """
        import asyncio, gc
        import pytest

        pytestmark = pytest.mark.asyncio(loop_scope="module")
        held = []

        class Cycle:
            def __init__(self, task):
                self.me = self
                self.task = task

        async def fail_later():
            await asyncio.sleep(0.05)
            raise RuntimeError("late failure from test_a")

        {mark}
        async def test_a_leaves_a_task():
            task = asyncio.create_task(fail_later(), name="late")
            held.append(Cycle(task) if {in_cycle} else task)

        async def test_b_clean():
            await asyncio.sleep(0.2)
            held.clear()  # the task, failed and unretrieved, is finalised: the handler runs
            gc.collect()
            await asyncio.sleep(0)

        async def test_c_clean():
            await asyncio.sleep(0)
"""


@MODES
@pytest.mark.parametrize("in_cycle", [False, True], ids=["refcount", "reference-cycle"])
def test_gate_own_blames_a_late_task_failure_on_the_test_that_made_the_task(
    pytester: pytest.Pytester, asyncio_mode: str, in_cycle: bool
) -> None:
    result = run(
        pytester,
        _LATE_FAILURE.format(mark="", in_cycle=in_cycle),
        f"--asyncio-mode={asyncio_mode}",
        subprocess=True,
    )
    # The failure surfaces as test_b runs, so it is test_b's check that reports it,
    # under test_a's name: test_a has passed by then.
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_b_clean*",
            "*LeakError: test_leaky.py::test_a_leaves_a_task left a task running that failed "
            "after it ended, while test_leaky.py::test_b_clean ran (--nettest-leaks=own); "
            "test_leaky.py::test_a_leaves_a_task is to blame, not this test:",
            "*- the loop's exception handler was called: Task exception was never retrieved",
            "*RuntimeError: late failure from test_a",
            "*task: <Task finished name='late' coro=<fail_later() done, defined at *",
            '*--nettest-leaks=strict, or a nettest_leaks("strict") marker on it, fails '
            "test_leaky.py::test_a_leaves_a_task itself*",
        ]
    )
    assert "test_b_clean left" not in result.stdout.str()


#: test_a drops a failed future in a reference cycle; test_b's collection finalises it.
_LATE_FUTURE = """
        import asyncio, gc
        import pytest

        class Cycle:
            def __init__(self):
                self.me = self
                self.done = asyncio.get_running_loop().create_future()
                self.done.set_exception(ConnectionResetError("lost before done"))

        {mark}
        @pytest.mark.asyncio
        async def test_a_drops_a_failed_future():
            gc.disable()  # an automatic collection would finalise it as test_a runs
            Cycle()

        @pytest.mark.asyncio
        async def test_b_clean():
            gc.collect()
            gc.enable()
            await asyncio.sleep(0)
"""


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_gate_blames_a_failed_future_finalised_after_its_loop_closed_on_that_loops_test(
    pytester: pytest.Pytester, mode: str
) -> None:
    result = run(
        pytester, _LATE_FUTURE.format(mark=""), f"--nettest-leaks={mode}", subprocess=True
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_b_clean*",
            "*LeakError: test_leaky.py::test_a_drops_a_failed_future dropped a failed future "
            "whose exception was never retrieved; the garbage collector finalised it after its "
            "event loop closed, while test_leaky.py::test_b_clean ran "
            f"(--nettest-leaks={mode}); test_leaky.py::test_a_drops_a_failed_future, the last "
            "test that ran on that loop, is to blame, not this test:",
            "*- the loop's exception handler was called: Future exception was never retrieved",
            "*ConnectionResetError: lost before done",
            "*future: <Future finished exception=ConnectionResetError('lost before done')>",
        ]
    )
    assert "test_b_clean left" not in result.stdout.str()


def test_gate_a_test_marked_off_is_not_reported_for_its_late_failed_future(
    pytester: pytest.Pytester,
) -> None:
    mark = '@pytest.mark.nettest_leaks("off")'
    result = run(pytester, _LATE_FUTURE.format(mark=mark), subprocess=True)
    result.assert_outcomes(passed=2)


def test_gate_does_not_blame_a_failed_test_again_for_its_task_failing_later(
    pytester: pytest.Pytester,
) -> None:
    # As when pytest-timeout interrupts a test, and its own task fails later.
    result = run(
        pytester,
        """
        import asyncio, gc
        import pytest

        pytestmark = pytest.mark.asyncio(loop_scope="module")
        held = []

        async def fail_later():
            await asyncio.sleep(0.05)
            raise RuntimeError("late failure from test_a")

        async def test_a_fails():
            held.append(asyncio.create_task(fail_later()))
            assert False, "the real failure"

        async def test_b_clean():
            await asyncio.sleep(0.2)
            held.clear()
            gc.collect()
            await asyncio.sleep(0)
        """,
        subprocess=True,
    )
    result.assert_outcomes(passed=1, failed=1)
    assert "LeakError" not in result.stdout.str()


def test_gate_strict_blames_the_task_left_pending_on_its_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        _LATE_FAILURE.format(mark="", in_cycle=False),
        "--nettest-leaks=strict",
        subprocess=True,
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_a_leaves_a_task*",
            "*- pending task <Task pending name='late'*, created at:",
        ]
    )
    assert "late failure from test_a" not in result.stdout.str(), "cancelled at test_a's check"


def test_a_late_failure_shown_under_a_failed_teardown_is_not_called_this_tests_leak(
    pytester: pytest.Pytester,
) -> None:
    # test_a's task fails while test_b runs, and test_b's teardown fails too: the
    # late failure is listed under it, without the note about what test_b left.
    pytester.makepyfile(
        test_late="""
        import asyncio
        import time
        import pytest

        @pytest.mark.asyncio(loop_scope="module")
        async def test_a_leaves_a_failing_task():
            async def fail_later():
                await asyncio.sleep(0.05)
                raise RuntimeError("late failure of test_a's task")
            asyncio.get_running_loop().create_task(fail_later())

        @pytest.fixture
        def broken_teardown():
            yield
            time.sleep(0.2)
            raise ValueError("fixture teardown failed")

        @pytest.mark.asyncio(loop_scope="module")
        async def test_b(broken_teardown):
            await asyncio.sleep(0.2)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *FILTERS)
    out = result.stdout.str()
    assert "nettest hygiene at teardown" in out
    assert "late failure of test_a's task" in out
    assert "not again for what it left open" not in out


def test_a_wider_fixtures_task_failing_during_a_test_is_not_said_to_be_that_tests_doing(
    pytester: pytest.Pytester,
) -> None:
    # Charged to the test that runs (nothing else can answer for it), but the
    # first line does not say that test made the loop's exception handler run.
    pytester.makeconftest(
        """
        import asyncio
        import pytest_asyncio

        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def flaky_background():
            async def ticker():
                await asyncio.sleep(0.1)
                raise RuntimeError("session ticker crashed")
            asyncio.create_task(ticker())  # fire and forget
            yield
        """
    )
    pytester.makepyfile(
        test_late="""
        import asyncio
        import pytest

        @pytest.mark.asyncio(loop_scope="session")
        async def test_b_clean(flaky_background):
            await asyncio.sleep(0.3)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *FILTERS)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*LeakError: the loop's exception handler ran once while "
            "test_late.py::test_b_clean ran (--nettest-leaks=own):",
            "*(created outside any test: by a fixture of wider scope, or before the first test)",
        ]
    )
    assert "test_b_clean made the loop's exception handler run" not in result.stdout.str()


def test_gate_a_test_marked_off_is_not_reported_for_its_tasks_late_failure(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        _LATE_FAILURE.format(mark='@pytest.mark.nettest_leaks("off")', in_cycle=False),
        subprocess=True,
    )
    result.assert_outcomes(passed=3)


def test_gate_does_not_list_the_task_an_interrupted_test_runs_in(
    pytester: pytest.Pytester,
) -> None:
    # A test timeout (pytest-timeout's signal method) interrupts the loop: the
    # task pytest-asyncio runs the test in is left pending.  It is how the test
    # ran, not something the test made; what the test made is listed.
    result = run(
        pytester,
        """
        import asyncio, signal
        import pytest
        from nettest import memory_stream_pair

        def interrupt(signum, frame):
            pytest.fail("interrupted")

        @pytest.mark.asyncio
        async def test_interrupted():
            (reader, writer), _ = memory_stream_pair()
            signal.signal(signal.SIGALRM, interrupt)
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            await reader.readline()
        """,
        "--nettest-leaks=strict",
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_interrupted left 2 things behind (--nettest-leaks=strict):",
            "*- open MemoryTransport*",
        ]
    )
    assert "pending task" not in result.stdout.str()


def test_gate_a_task_it_did_not_see_made_is_reported_as_such(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        pytestmark = pytest.mark.asyncio(loop_scope="module")
        held = []

        async def fail_later():
            await asyncio.sleep(0.05)
            raise RuntimeError("late failure")

        async def test_a_makes_a_task_behind_the_gates_back():
            # Built directly, no task factory sees it.
            held.append(asyncio.Task(fail_later(), name="unseen"))

        async def test_b():
            await asyncio.sleep(0.2)
            held.clear()
            await asyncio.sleep(0)
        """,
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_b*",
            "*test_b made the loop's exception handler run once (--nettest-leaks=own):",
            "*Task exception was never retrieved",
            "*task: <Task finished name='unseen'*",
            "*(the gate did not see which test created this task*may be an earlier test's*",
        ]
    )


async def _fail() -> None:
    raise RuntimeError("failed between tests")


def test__gate_reports_a_failure_between_tests_at_the_next_check() -> None:
    gate = hygiene._Gate()
    loop = asyncio.new_event_loop()
    try:
        gate.instrument_loop(loop)
        gate.begin("test_a")
        with gate.owned_by("test_a"):
            failing = loop.create_task(_fail())
        gate.check("test_a", "own", frozenset())  # pending: nothing to say in own mode
        gate.end("test_a")
        # It fails, unretrieved, while no test runs: the next check reports it.
        loop.run_until_complete(asyncio.wait([failing]))
        del failing
        gc.collect()
        gate.begin("test_b")
        with pytest.raises(LeakError) as excinfo:
            gate.check("test_b", "own", frozenset())
        gate.end("test_b")
        message = str(excinfo.value)
        assert message.startswith(
            "test_a left a task running that failed after it ended, between tests"
        ), message
        assert "RuntimeError: failed between tests" in message
        gate.begin("test_c")
        gate.check("test_c", "own", frozenset())  # reported once
        gate.end("test_c")
    finally:
        loop.close()


def test__gate_own_task_factory_keeps_another_factory_and_is_replaced_for_a_strict_test() -> None:
    gate = hygiene._Gate()
    loop = asyncio.new_event_loop()
    made: list[object] = []

    def theirs(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    try:
        loop.set_task_factory(theirs)
        gate.instrument_loop(loop)
        with gate.owned_by("test_x"):
            task = loop.create_task(asyncio.sleep(0))
        assert made == [task], "the previous factory still makes the tasks"
        assert getattr(task, "_nettest_owner", None) == "test_x"
        loop.run_until_complete(task)
        # A test replaces the gate's factory; a strict test after it still gets one.
        loop.set_task_factory(theirs)
        fds_before = gate.begin("test_strict", "strict")
        try:
            assert loop.get_task_factory() is not theirs
            with gate.owned_by("test_strict"):
                strict_task = loop.create_task(asyncio.sleep(0))
            assert [item.ref() for item in gate.tracked] == [strict_task]
            loop.run_until_complete(strict_task)
            gate.check("test_strict", "strict", fds_before)
        finally:
            gate.end("test_strict")
        assert loop.get_task_factory() is theirs
    finally:
        loop.close()


# -- where an object was made -------------------------------------------------------------------


def test_gate_names_the_listening_socket_of_an_accepted_socket(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        @pytest.mark.nettest_leaks("strict")
        @pytest.mark.asyncio
        async def test_server_side_socket_dropped():
            server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            await asyncio.sleep(0.01)
            writer.close()
            await writer.wait_closed()
            server.close()  # not wait_closed(): from 3.12 it waits for the leaked connection
        """,
        subprocess=True,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_server_side_socket_dropped*",
            # Found as a socket, or (as its writer's __del__ runs) as its StreamWriter.
            "*- *<socket.socket fd=*, laddr=('127.0.0.1', *), raddr=('127.0.0.1', *)> "
            "dropped *, accepted by a listening socket, created at:",
            '*File "*test_leaky.py", line 7, in test_server_side_socket_dropped',
            '*server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)',
        ]
    )
    output = result.stdout.str()
    assert "socket.py" not in output
    assert "runpy" not in output


@pytest.mark.parametrize("leaks", ["own", "strict"])
def test_gate_points_at_where_a_server_thread_was_started(
    pytester: pytest.Pytester, leaks: str
) -> None:
    result = run(
        pytester,
        """
        import socket
        from nettest import TCPServerThread, handlers

        kept = []

        def test_leaves_a_server_thread():
            server = TCPServerThread(handlers.echo)
            kept.append(server.start())
            with socket.create_connection(server.address) as sock:
                sock.sendall(b"x")
                assert sock.recv(1) == b"x"

        def test_after():
            assert kept[0].closed, "the gate closed it"
        """,
        f"--nettest-leaks={leaks}",
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_server_thread*",
            "*- open TCPServer 127.0.0.1:*, created on thread nettest-TCPServer, which was "
            "started at:",
            '*File "*test_leaky.py", line 8, in test_leaves_a_server_thread',
            "*kept.append(server.start())",
        ]
    )
    assert "threading.py" not in result.stdout.str()
    assert "ERROR at teardown of test_after" not in result.stdout.str()
    # The thread's loop wakes itself through a socket pair: the thread's, not the test's.
    assert "family=1" not in result.stdout.str()


def test_gate_names_the_thread_a_socket_was_made_on(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import socket, threading

        kept = []

        def make_one():
            kept.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))

        def test_leaks_from_a_thread():
            worker = threading.Thread(target=make_one, name="the-worker")
            worker.start()
            worker.join()
        """,
        "--nettest-leaks=strict",
        subprocess=True,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*- open socket <socket.socket *>, created on thread the-worker at:",
            '*File "*test_leaky.py", line 6, in make_one',
        ]
    )
    assert "threading.py" not in result.stdout.str()


def test_gate_shows_a_thread_pool_worker_s_socket_from_the_work_it_ran(
    pytester: pytest.Pytester,
) -> None:
    # The pool's own frames (concurrent.futures' _worker and run) say nothing of
    # who made the socket: the stack starts at the function the test handed over.
    result = run(
        pytester,
        """
        import asyncio, socket
        import pytest

        kept = []

        def make_one():
            kept.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))

        @pytest.mark.asyncio
        async def test_leaks_from_a_pool_worker():
            await asyncio.to_thread(make_one)
        """,
        "--nettest-leaks=strict",
        subprocess=True,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*- open socket <socket.socket *>, created on thread asyncio_0 at:",
            '*File "*test_leaky.py", line 7, in make_one',
        ]
    )
    assert "concurrent" not in result.stdout.str()


# -- a StreamWriter dropped without close() -----------------------------------------------------


@MODES
@pytest.mark.parametrize("leaks", ["own", "strict"])
def test_gate_reports_memory_stream_writers_dropped_without_close(
    pytester: pytest.Pytester, asyncio_mode: str, leaks: str
) -> None:
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import memory_stream_pair

        @pytest.mark.asyncio
        async def test_forgets_to_close():
            (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
            c_writer.write(b"x")
            assert await s_reader.read(1) == b"x"

        @pytest.mark.asyncio
        async def test_closes_and_waits():
            (_, c_writer), (_, s_writer) = memory_stream_pair()
            c_writer.close()
            s_writer.close()
            await c_writer.wait_closed()
            await s_writer.wait_closed()

        @pytest.mark.asyncio
        async def test_closes_without_waiting():
            (_, c_writer), (_, s_writer) = memory_stream_pair()
            c_writer.close()
            s_writer.transport.abort()

        @pytest.mark.asyncio
        async def test_after():
            await asyncio.sleep(0)
        """,
        f"--asyncio-mode={asyncio_mode}",
        f"--nettest-leaks={leaks}",
        # The recommended filters: the gate reports the writers, with the stack that
        # made them, before StreamWriter.__del__'s warning can fail the test.
        *(FILTERS if WRITER_DEL_CLOSES else ()),
        subprocess=True,
    )
    result.assert_outcomes(passed=4, errors=1)
    if WRITER_DEL_CLOSES:
        assert "ResourceWarning" not in result.stdout.str()
    dropped = (
        "*- StreamWriter over MemoryTransport ('127.0.0.1', *) -> ('127.0.0.1', *) dropped "
        "without close(), created at:"
        if WRITER_DEL_CLOSES
        else "*- MemoryTransport ('127.0.0.1', *) -> ('127.0.0.1', *) dropped while open, "
        "created at:"
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_forgets_to_close*",
            "*test_leaky.py::test_forgets_to_close left 2 things behind "
            f"(--nettest-leaks={leaks}):",
            dropped,
            "*(c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()",
            dropped,
        ]
    )


def test_gate_strict_leaves_a_wider_thread_servers_tasks_to_it(pytester: pytest.Pytester) -> None:
    # A task made on a module-scoped thread server's loop while a strict test ran
    # (an accepted connection's, still pending at the check under load) was
    # blamed on that test.  A test that starts its own thread server owns its tasks.
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import TCPServerThread, handlers

        @pytest.fixture(scope="module")
        def thread_server():
            with TCPServerThread(handlers.echo) as server:
                yield server

        def make_a_task(loop, seconds):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(seconds), loop)
            # Callbacks run in order: once this one ran, the task above exists.
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)

        @pytest.mark.nettest_leaks("strict")
        def test_leaves_a_task_on_the_servers_loop(thread_server):
            make_a_task(thread_server.loop, 0.2)

        @pytest.mark.nettest_leaks("strict")
        def test_its_own_server():
            server = TCPServerThread(handlers.echo).start()
            make_a_task(server.loop, 30)
            test_its_own_server.server = server

        def test_after():
            assert test_its_own_server.server.closed
        """,
        subprocess=True,
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_its_own_server left * behind*",
            "*pending task <Task pending*sleep*",
        ]
    )
    result.stdout.no_fnmatch_line("*test_leaves_a_task_on_the_servers_loop left*")


@pytest.mark.parametrize("loop_scope", ["function", "module"])
def test_gate_strict_reports_a_real_stream_writer_dropped_without_close(
    pytester: pytest.Pytester, loop_scope: str
) -> None:
    result = run(
        pytester,
        f"""
        import asyncio
        import pytest
        from nettest import TCPServerThread, handlers

        DEL_AT_IMPORT = vars(asyncio.StreamWriter).get("__del__")
        pytestmark = pytest.mark.asyncio(loop_scope="{loop_scope}")

        @pytest.fixture(scope="module")
        def thread_server():
            with TCPServerThread(handlers.echo) as server:
                yield server

        # First: before Python 3.11.5 the gate closes the dropped client's socket
        # under its transport, and a module-scoped loop's selector keeps the stale fd.
        @pytest.mark.nettest_leaks("strict")
        async def test_closes_its_client(thread_server):
            reader, writer = await asyncio.open_connection(*thread_server.address)
            writer.close()
            await writer.wait_closed()

        @pytest.mark.nettest_leaks("strict")
        async def test_drops_a_client(thread_server):
            reader, writer = await asyncio.open_connection(*thread_server.address)
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"

        async def test_after():
            # The marked tests' instruments are gone.
            assert vars(asyncio.StreamWriter).get("__del__") is DEL_AT_IMPORT
        """,
        subprocess=True,
    )
    result.assert_outcomes(passed=3, errors=1)
    # Before Python 3.11.5 nothing closes the socket: the gate finds it open, or
    # dropped while open with its loop.
    dropped = (
        "*- StreamWriter over <socket.socket fd=*, raddr=('127.0.0.1', *)> dropped without "
        "close(), created at:"
        if WRITER_DEL_CLOSES
        else "*- *socket <socket.socket fd=*, raddr=('127.0.0.1', *)>*, created at:"
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_drops_a_client*",
            "*left 1 thing behind (--nettest-leaks=strict):",
            dropped,
            "*reader, writer = await asyncio.open_connection(*thread_server.address)",
        ]
    )


@pytest.mark.skipif(not WRITER_DEL_CLOSES, reason="no StreamWriter.__del__ before 3.11.5")
def test_gate_lists_a_failed_tests_dropped_writers_without_failing_it_again(
    pytester: pytest.Pytester,
) -> None:
    # A test interrupted mid-read (pytest-timeout, here an assertion in its body)
    # leaves its writers to a task that its loop's teardown cancels: each is
    # freed there, open.  Listed under the failure, each is closed without the
    # ResourceWarning that failed the test a second time, as an error at teardown.
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import handlers, memory_stream_pair

        @pytest.mark.asyncio
        async def test_interrupted(tcp_server):
            server = await tcp_server(handlers.hang)

            async def client():
                reader, writer = await asyncio.open_connection(*server.address)
                (memory_reader, memory_writer), _ = memory_stream_pair()
                await reader.readline()

            asyncio.get_running_loop().create_task(client())
            await server.wait_for_connections(1)
            await asyncio.sleep(0.05)
            assert False, "interrupted"

        def test_after():
            pass
        """,
        "--nettest-leaks=strict",
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*nettest hygiene at teardown*",
            "*test_interrupted left * things behind*(--nettest-leaks=strict):",
            "*(closed: this test failed already, not again for what it left open)",
        ]
    )
    report = result.stdout.str()
    assert "- StreamWriter over <socket.socket" in report
    assert "- StreamWriter over MemoryTransport" in report
    assert "ResourceWarning" not in report


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_gate_closes_what_a_failed_test_left_open_in_own_mode(
    pytester: pytest.Pytester, tls: bool
) -> None:
    # Own mode tracks no real connection, but a failed test's are its failure's
    # consequence: one whose writer is dropped in the test's teardown (a task the
    # loop cancels, as after pytest-timeout), and one its traceback keeps alive
    # past its loop's closing, are closed and listed under that failure instead
    # of warning, as they are freed, in a later test that runs under
    # error::ResourceWarning.  The server outlives the tests, so that nothing
    # closes their connections from its side.
    result = run(
        pytester,
        f"""
        import asyncio, gc
        import pytest
        from nettest import TCPServerThread, handlers, make_tls_server_context

        TLS = {tls}

        @pytest.fixture(scope="module")
        def server(tls_certificate):
            context = make_tls_server_context(tls_certificate) if TLS else None
            with TCPServerThread(handlers.hang, ssl=context) as server:
                yield server

        @pytest.fixture
        def client_tls(request):
            if not TLS:
                return {{}}
            return {{"ssl": request.getfixturevalue("tls_client_context")}}

        @pytest.mark.asyncio
        async def test_interrupted(server, client_tls):
            async def client():
                reader, writer = await asyncio.open_connection(*server.address, **client_tls)
                await reader.readline()

            asyncio.get_running_loop().create_task(client())
            await asyncio.to_thread(server.wait_for_connections, 1)
            await asyncio.sleep(0.05)
            assert False, "interrupted"

        @pytest.mark.asyncio
        async def test_fails_holding_a_connection(server, client_tls):
            reader, writer = await asyncio.open_connection(*server.address, **client_tls)
            assert False, "failed"

        def test_after():
            gc.collect()
        """,
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1, failed=2)
    untracked = "*(own mode does not track it: --nettest-leaks=strict gives its stack)"
    result.stdout.fnmatch_lines(
        [
            # and, where its client task is destroyed pending, a call to the handler
            "*test_interrupted left * behind*(--nettest-leaks=own):",
            # Freed as its task is cancelled, with its loop (Python >= 3.11.5 closes
            # a dropped writer's transport in StreamWriter.__del__, with a warning:
            # the gate closes it first); or kept alive past its loop's closing.
            "*- *Transport*" + untracked,
            "*(closed: this test failed already, not again for what it left open)",
            "*test_fails_holding_a_connection left 1 thing behind (--nettest-leaks=own):",
            "*- <*Transport*> open when its event loop closed" + untracked,
            "*(closed: this test failed already, not again for what it left open)",
        ]
    )
    assert "ResourceWarning" not in result.stdout.str()


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_a_failed_tests_tls_connection_its_server_ended_is_not_listed(
    pytester: pytest.Pytester, mode: str
) -> None:
    # The server's teardown ends the connection a failed test held: Python 3.11+
    # marks the TLS transport closed as its connection is lost, 3.10 did not,
    # and its item said "open", in strict mode "created outside Python's socket
    # module (no stack known)" (the socket was Python's, and closed).
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import handlers

        @pytest.mark.asyncio
        async def test_fails(tcp_server, tls_server_context, tls_client_context):
            server = await tcp_server(handlers.hang, ssl=tls_server_context)
            reader, writer = await asyncio.open_connection(
                *server.address, ssl=tls_client_context, server_hostname="localhost"
            )
            assert False, "deliberate"
        """,
        f"--nettest-leaks={mode}",
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "deliberate" in out
    assert "nettest hygiene" not in out
    assert "ResourceWarning" not in out


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_a_failed_tests_dropped_tls_connection_fails_it_only_once(
    pytester: pytest.Pytester, mode: str
) -> None:
    # A TLS client interrupted mid-read (pytest-timeout, here an assertion while
    # its task reads) against a server whose teardown ends the connection: its
    # TLS transport is freed during that teardown, open.  Python 3.10 has no
    # StreamWriter finaliser, and the TLS transport's own warned "unclosed
    # transport", failing the test a second time; the gate closes it first, on
    # every Python, and lists it under the failure.
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import handlers

        @pytest.mark.asyncio
        async def test_interrupted(tcp_server, tls_server_context, tls_client_context):
            server = await tcp_server(handlers.hang, ssl=tls_server_context)

            async def client():
                reader, writer = await asyncio.open_connection(
                    *server.address, ssl=tls_client_context, server_hostname="localhost"
                )
                await reader.readline()

            asyncio.get_running_loop().create_task(client())
            await server.wait_for_connections(1)
            await asyncio.sleep(0.05)
            assert False, "interrupted"

        def test_after():
            pass
        """,
        f"--nettest-leaks={mode}",
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1, failed=1)
    # Whether it is listed depends on timing, on every Python: the server's
    # teardown may end the connection before the writer or TLS transport is
    # freed, and then nothing is left open.  (A server that outlives the test,
    # in test_gate_closes_what_a_failed_test_left_open_in_own_mode, makes the
    # listing certain.)  Either way nothing warns and the test fails once.
    out = result.stdout.str()
    assert "ResourceWarning" not in out
    assert "ERROR at teardown" not in out


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_a_tls_connection_the_peer_reset_never_warns_in_a_later_test(
    pytester: pytest.Pytester, mode: str
) -> None:
    # The server resets the connection after the handshake; the test drops its
    # writer without close().  Python 3.11+ marks the TLS transport closed as the
    # connection is lost; 3.10 did not, and its "unclosed transport" failed
    # whichever later test the garbage collector freed it in (5 runs in 5).
    result = run(
        pytester,
        """
        import asyncio, gc
        import pytest
        from nettest import handlers

        @pytest.mark.asyncio
        async def test_a_reset_after_handshake(tcp_server, tls_server_context, tls_client_context):
            server = await tcp_server(handlers.reset, ssl=tls_server_context)
            reader, writer = await asyncio.open_connection(
                *server.address, ssl=tls_client_context, server_hostname="localhost"
            )
            with pytest.raises(ConnectionResetError):
                await reader.read()

        def test_b_innocent_bystander():
            gc.collect()
        """,
        f"--nettest-leaks={mode}",
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=2)


@pytest.mark.skipif(
    not WRITER_DEL_CLOSES,
    reason="before 3.11.5 the TLS transport is freed once the server has ended its "
    "connection, and a lost connection never warns (as from 3.11)",
)
def test_a_passing_tests_dropped_tls_connection_still_warns_in_own_mode(
    pytester: pytest.Pytester,
) -> None:
    # Closed by the gate as it is freed (the test may yet fail), a TLS connection
    # a passing test drops gets the warning StreamWriter's finaliser would have
    # given, under the test's name.
    result = run(
        pytester,
        """
        import asyncio, gc
        import pytest
        from nettest import handlers

        @pytest.mark.asyncio
        async def test_drops_a_tls_connection(tcp_server, tls_server_context, tls_client_context):
            server = await tcp_server(handlers.echo, ssl=tls_server_context)
            reader, writer = await asyncio.open_connection(
                *server.address, ssl=tls_client_context, server_hostname="localhost"
            )
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            del reader, writer
            gc.collect()

        def test_after():
            pass
        """,
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    unclosed = "<StreamWriter transport=*" if WRITER_DEL_CLOSES else "transport <asyncio.sslproto*"
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_drops_a_tls_connection*",
            f"*ResourceWarning: unclosed {unclosed}",
        ]
    )
    result.stdout.no_fnmatch_line("*left * behind*")


@pytest.mark.skipif(not WRITER_DEL_CLOSES, reason="no StreamWriter.__del__ before 3.11.5")
def test_a_passing_tests_dropped_real_writer_still_warns_in_own_mode(
    pytester: pytest.Pytester,
) -> None:
    # Own mode does not report a real connection: the gate closes a writer the test
    # drops as it runs (it may yet fail) and, the test passed, gives the warning
    # StreamWriter.__del__ would have given, under the test's name.
    result = run(
        pytester,
        """
        import asyncio, gc
        import pytest
        from nettest import handlers

        @pytest.mark.asyncio
        async def test_drops_a_writer(tcp_server):
            server = await tcp_server(handlers.echo)
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            del reader, writer
            gc.collect()

        def test_after():
            pass
        """,
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_drops_a_writer*",
            "*ResourceWarning: unclosed <StreamWriter transport=*> (own mode does not track "
            "it: --nettest-leaks=strict gives its stack)",
        ]
    )
    result.stdout.no_fnmatch_line("*left * behind*")


def test_a_failed_tests_leaks_are_listed_with_a_late_failure_that_errors_it(
    pytester: pytest.Pytester,
) -> None:
    # Another test's task fails while a failing test runs: that failure is raised
    # at this test's teardown, and what this test left is listed with it.
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import memory_transport_pair

        tasks, kept = [], []

        async def fail_later():
            await asyncio.sleep(0.05)
            raise RuntimeError("late failure")

        @pytest.mark.asyncio(loop_scope="module")
        async def test_a_leaves_a_task():
            tasks.append(asyncio.ensure_future(fail_later()))

        @pytest.mark.asyncio(loop_scope="module")
        async def test_b_fails_and_leaks():
            kept.append(memory_transport_pair(asyncio.Protocol(), asyncio.Protocol()))
            await asyncio.sleep(0.2)
            tasks.clear()
            assert False, "boom"

        def test_c_after():
            assert all(end.is_closing() for pair in kept for end in pair)
        """,
    )
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_b_fails_and_leaks*",
            "*test_a_leaves_a_task left a task running that failed after it ended*",
            "*test_b_fails_and_leaks left 2 things behind (--nettest-leaks=own):",
            "*- open MemoryTransport*",
            "*- open MemoryTransport*",
        ]
    )


def test_a_late_failures_section_lists_ten_calls_and_counts_the_rest(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import asyncio, gc
        import pytest

        tasks = []

        async def fail_later(n):
            await asyncio.sleep(0.05)
            raise RuntimeError(f"late failure {n}")

        @pytest.mark.asyncio(loop_scope="module")
        async def test_a_leaves_tasks():
            tasks.extend(asyncio.ensure_future(fail_later(n)) for n in range(13))

        @pytest.mark.asyncio(loop_scope="module")
        async def test_b_runs_meanwhile():
            await asyncio.sleep(0.2)
            tasks.clear()
            gc.collect()
        """,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_a_leaves_tasks left 13 tasks running that failed after it ended*",
            "*- and 3 more calls to the loop's exception handler (the first 10 are shown)",
        ]
    )
    report = result.stdout.str().split("ERROR at teardown")[1].split("Captured")[0]
    assert report.count("the loop's exception handler was called") == 10


@pytest.mark.uvloop
@pytest.mark.skipif(not WRITER_DEL_CLOSES, reason="no StreamWriter.__del__ before 3.11.5")
def test_gate_strict_reports_a_dropped_writer_over_a_uvloop_transport(
    pytester: pytest.Pytester,
) -> None:
    # No Python socket is under a uvloop transport: the writer is still reported.
    pytest.importorskip("uvloop")
    result = run(
        pytester,
        """
        import asyncio, gc
        import uvloop
        from nettest import TCPServerThread, handlers

        def test_drops_a_writer():
            with TCPServerThread(handlers.echo) as server:
                async def main():
                    reader, writer = await asyncio.open_connection(*server.address)
                    writer.write(b"x")
                    assert await reader.readexactly(1) == b"x"
                    del reader, writer
                    gc.collect()

                uvloop.run(main())
        """,
        "--nettest-leaks=strict",
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_drops_a_writer left 1 thing behind (--nettest-leaks=strict):",
            "*- StreamWriter over <TCPTransport * dropped without close(), created outside "
            "Python's socket module (no stack known)",
        ]
    )


def test_gate_closes_a_failed_synchronous_tests_connection_on_asyncio_runs_loop(
    pytester: pytest.Pytester,
) -> None:
    # asyncio.run() makes a loop the gate never watched: a failed test's
    # connection left on it is closed and listed all the same.
    result = run(
        pytester,
        """
        import asyncio, gc
        from nettest import handlers

        held = []

        def test_fails_after_asyncio_run(tcp_server_thread):
            server = tcp_server_thread(handlers.echo)

            async def main():
                held.append(await asyncio.open_connection(*server.address))

            asyncio.run(main())
            assert False, "failed"

        def test_after():
            held.clear()
            gc.collect()
        """,
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_fails_after_asyncio_run left 1 thing behind (--nettest-leaks=own):",
            "*- <_SelectorSocketTransport fd=*> open when its event loop closed (own mode*",
        ]
    )
    assert "ResourceWarning" not in result.stdout.str()


_PASSING_TEST_LEAVES_A_CONNECTION = """
        import asyncio, gc
        import pytest

        class Client:
            def __init__(self):
                self.me = self  # a cycle: freed by a garbage collection only

        {leaker}

        @pytest.mark.asyncio
        async def test_b_fails_for_its_own_reason():
            await asyncio.sleep(0)
            {collect}
            assert False, "its own reason"
        """

_LEAKERS = {
    "asyncio.run": """
        def test_a_leaves_a_connection(tcp_server_thread):
            server = tcp_server_thread()

            async def main():
                client = Client()
                client.reader, client.writer = await asyncio.open_connection(*server.address)

            asyncio.run(main())
        """,
    "pytest-asyncio": """
        @pytest.mark.asyncio
        async def test_a_leaves_a_connection(tcp_server):
            server = await tcp_server()
            client = Client()
            client.reader, client.writer = await asyncio.open_connection(*server.address)
        """,
}


@pytest.mark.parametrize("collect", ["gc.collect()", "pass"])
@pytest.mark.parametrize("loop", list(_LEAKERS))
def test_gate_does_not_list_a_passing_tests_connection_under_a_later_failure(
    pytester: pytest.Pytester, loop: str, collect: str
) -> None:
    # Own mode tracks no real connection: one a passing test left in a cycle
    # gives its ResourceWarning when it is freed.  The failed test after it
    # did not make it, and its report must not list it as its own, whether
    # the leaker's loop was asyncio.run's (never watched) or pytest-asyncio's,
    # and whether it is freed during the failed test (its writer's finaliser)
    # or found on its closed loop by the failed test's check.
    source = _PASSING_TEST_LEAVES_A_CONNECTION.format(
        leaker=_LEAKERS[loop].strip(), collect=collect
    )
    result = run(pytester, source, subprocess=True)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "its own reason" in out
    assert "nettest hygiene" not in out
    assert "left 1 thing behind" not in out


_LEFT_OPEN_AS_THE_LOOP_CLOSES = {
    "pytest-asyncio": """
        @pytest.mark.asyncio
        async def test_x_leaves_a_connection(tcp_server):
            server = await tcp_server(handlers.echo)
            KEPT.append(await exchange(server.address))
        """,
    "asyncio.run": """
        def test_x_leaves_a_connection(tcp_server_thread):
            server = tcp_server_thread(handlers.echo)
            KEPT.append(asyncio.run(exchange(server.address)))
        """,
    "datagram endpoint": """
        @pytest.mark.asyncio
        async def test_x_leaves_a_connection(udp_server):
            server = await udp_server()
            KEPT.append(
                await asyncio.get_running_loop().create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=server.address
                )
            )
        """,
}


@pytest.mark.parametrize("loop", list(_LEFT_OPEN_AS_THE_LOOP_CLOSES))
def test_gate_warns_of_a_connection_open_as_its_tests_loop_closes(
    pytester: pytest.Pytester, loop: str
) -> None:
    # Own mode: a connection the test dropped or kept open can never be closed
    # once its loop has: it warned as it was freed, in whichever later test the
    # collector ran (on 3.10, where no StreamWriter.__del__ closes it, the next
    # test's setup).  It is warned at its own test's check now, on every Python.
    leaker = textwrap.dedent(_LEFT_OPEN_AS_THE_LOOP_CLOSES[loop])
    program = textwrap.dedent(
        """
        import asyncio, gc
        import pytest
        from nettest import handlers

        KEPT = []

        async def exchange(address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            return reader, writer  # kept open, until the next test lets go of it
        """
    )
    innocent = "def test_y_innocent():\n    KEPT.clear()\n    gc.collect()\n"
    pytester.makepyfile(test_leaky=f"{program}\n{leaker}\n{innocent}")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *FILTERS)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_x_leaves_a_connection*",
            "*ResourceWarning: unclosed*",
        ]
    )
    out = result.stdout.str()
    assert "test_y_innocent" not in out.split("short test summary")[0]
    if "open when its event loop closed" in out:  # the gate's warning, not a writer's
        assert "--nettest-leaks=strict gives its stack" in out


def test_every_connection_left_open_as_the_loop_closes_is_in_the_one_warning(
    pytester: pytest.Pytester,
) -> None:
    # Two warnings would show one under an error filter: the first raised, the second lost.
    pytester.makepyfile(
        test_leaky="""
        import asyncio
        import pytest

        KEPT = []

        @pytest.mark.asyncio
        async def test_x_leaves_both_ends_open():
            accepted = asyncio.get_running_loop().create_future()
            server = await asyncio.start_server(
                lambda r, w: accepted.set_result(w), "127.0.0.1", 0
            )
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            KEPT.append((reader, writer, await accepted))
            server.close()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *FILTERS)
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*ResourceWarning: unclosed transport <_SelectorSocketTransport fd=*>: open when "
            "its event loop closed (own mode*",
            "*and 1 more:",
            "*- <_SelectorSocketTransport fd=*> open when its event loop closed (own mode*",
        ]
    )
    # Counted above pytest's summary, which repeats the first line (whole under CI=1).
    assert out.split("short test summary info")[0].count("open when its event loop closed") == 2


_SERVER_LEFT_SERVING = {
    "pytest-asyncio": """
        @pytest.mark.asyncio
        async def test_x_leaves_a_server():
            await serve()
            assert FAIL is False
        """,
    "asyncio.run": """
        def test_x_leaves_a_server():
            asyncio.run(serve())
            assert FAIL is False
        """,
}


@pytest.mark.parametrize("loop", list(_SERVER_LEFT_SERVING))
@pytest.mark.parametrize("mode", ["own", "strict"])
@pytest.mark.parametrize("fails", [False, True], ids=["passing", "failing"])
def test_gate_reports_a_server_left_serving_as_its_tests_loop_closes(
    pytester: pytest.Pytester, loop: str, mode: str, fails: bool
) -> None:
    # A server never closed is freed with its loop: its listening socket warned
    # "unclosed" from the selector's close(), with no stack and no test named,
    # and under the recommended filters that warning was the test's failure.
    program = textwrap.dedent(
        f"""
        import asyncio, gc
        import pytest

        FAIL = {fails}

        async def serve():
            async def handle(reader, writer):
                writer.close()

            return await asyncio.start_server(handle, "127.0.0.1", 0)
        """
    )
    leaker = textwrap.dedent(_SERVER_LEFT_SERVING[loop])
    innocent = "def test_y_innocent():\n    gc.collect()\n"
    pytester.makepyfile(test_leaky=f"{program}\n{leaker}\n{innocent}")
    args = ("-p", "no:cacheprovider", f"--nettest-leaks={mode}", *FILTERS)
    result = pytester.runpytest_subprocess(*args)
    out = result.stdout.str()
    assert "PytestUnraisableExceptionWarning" not in out
    assert "test_y_innocent" not in out.split("short test summary")[0]
    shown = "socket <socket.socket fd=*laddr=('127.0.0.1', *)>, listening for a server, open"
    if fails:
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines([f"*- {shown} when its event loop closed*"])
    elif mode == "own":
        result.assert_outcomes(passed=2, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*ERROR at teardown of test_x_leaves_a_server*",
                "*ResourceWarning: unclosed <socket.socket fd=*>, listening for a server, open "
                "when its event loop closed (own mode does not track it: "
                "--nettest-leaks=strict gives its stack)",
            ]
        )
    else:
        result.assert_outcomes(passed=2, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*LeakError: test_leaky.py::test_x_leaves_a_server left 1 thing behind*",
                f"*- {shown} when its event loop closed, created at:",
                "*return await asyncio.start_server(handle, *",
            ]
        )


def test_own_mode_leaves_a_plain_servers_cancelled_handler_task_to_asyncio(
    pytester: pytest.Pytester,
) -> None:
    # Before 3.12 Server.wait_closed() does not wait for the handlers: one still
    # closing is cancelled with the loop, and on 3.11 the done callback asyncio
    # puts on it raises CancelledError into the loop's exception handler
    # (cpython#113538).  Own mode reports no pending task, so nor that call.
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        async def handler(reader, writer):
            await reader.read()
            writer.close()
            await writer.wait_closed()

        @pytest.mark.asyncio
        async def test_own_server():
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
        """,
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1)


#: A failed future in a reference cycle: only a collection frees it, and reports it.
_FAILED_FUTURE_IN_A_CYCLE = """
        import asyncio
        import pytest

        @pytest.mark.asyncio
        async def test_leaves_a_failed_future_in_a_cycle():
            future = asyncio.get_running_loop().create_future()
            try:
                raise ConnectionError("boom")
            except ConnectionError as exc:
                future.set_exception(exc)  # its traceback holds this frame: a cycle
"""


@pytest.mark.parametrize("xdist", [False, True])
def test_the_last_tests_check_collects_garbage(pytester: pytest.Pytester, xdist: bool) -> None:
    # A failed future in a reference cycle reports its never retrieved exception
    # only as it is freed: with no collection to come, the session passed silently.
    result = run(
        pytester,
        _FAILED_FUTURE_IN_A_CYCLE,
        *(("-n", "1") if xdist else ()),
        subprocess=True,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_leaves_a_failed_future_in_a_cycle made the loop's exception handler run once*",
            "*the loop's exception handler was called: Future exception was never retrieved",
        ]
    )


def test_a_failed_future_freed_between_a_tests_phases_is_that_tests(
    pytester: pytest.Pytester,
) -> None:
    # An automatic collection that ran as the teardown began, before the gate's own
    # hook, found the loop still open and no test running: the call was charged
    # to nobody, and reported by no check (seen on 3.13, by chance of allocation).
    pytester.makeconftest(
        """
        import gc
        import pytest

        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_runtest_teardown(item):
            gc.collect()  # as an automatic collection may, before the gate's hook
            return (yield)
        """
    )
    result = run(
        pytester,
        _FAILED_FUTURE_IN_A_CYCLE
        + """
        def test_after():
            pass
        """,
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_failed_future_in_a_cycle*",
            "*the loop's exception handler was called: Future exception was never retrieved",
        ]
    )


#: A socket in a reference cycle, freed only by the last check's collection.
_SOCKET_IN_A_CYCLE = """
        import gc, socket

        gc.disable()  # freed by the last check's collection only, not by chance earlier

        class Holder:
            def __init__(self):
                self.me = self
                self.sock = socket.socket()
"""


def test_the_session_summary_of_a_strict_session_says_what_was_left(
    pytester: pytest.Pytester,
) -> None:
    # In a strict session a test's socket is its check's: what the last
    # collection frees was made outside every test, and no option names it.
    result = run(
        pytester,
        _SOCKET_IN_A_CYCLE
        + """
        import pytest

        @pytest.fixture(scope="session")
        def holder():
            Holder()

        def test_a(holder):
            pass
        """,
        "--nettest-leaks=strict",
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*= nettest: left open at the end of the session =*",
            "*freed these open, made outside every test (by a wider fixture, a plugin, or code"
            " run at import), or of a kind strict mode does not track (a subprocess or pipe "
            "transport), which no test's check could answer for.",
            "  - Exception ignored in: <socket.socket *",
        ]
    )
    assert "--nettest-leaks=strict names" not in result.stdout.str()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(FILTERS, id="recommended-filters"),
        pytest.param((), id="default-filters"),
        pytest.param(("-W", "error"), id="W-error"),
        pytest.param(
            ("-W", "error", "-W", "ignore::pytest.PytestUnraisableExceptionWarning"),
            id="W-error-but-unraisable",
        ),
        pytest.param(
            (*FILTERS, "-W", "ignore:Exception ignored:pytest.PytestUnraisableExceptionWarning"),
            id="message-filter",
        ),
        pytest.param((*FILTERS, "-n", "2"), id="xdist"),
        pytest.param((*FILTERS, "-p", "no:unraisableexception"), id="no-unraisableexception"),
        pytest.param((*FILTERS, "-p", "no:terminal", "-p", "no:xdist"), id="no-terminal"),
    ],
)
def test_what_is_left_at_the_end_fails_the_session_as_it_would_without_the_gate(
    pytester: pytest.Pytester, options: tuple[str, ...]
) -> None:
    # The gate's last collection frees the socket before pytest's own collection
    # as the session ends (from pytest 8.4), which fails the session for it under
    # filters that make it an error.  The session passed: the gate kept it.  It
    # hands what it lists to pytest's hook, which decides as it would have.
    pytester.makepyfile(
        test_leaky=_SOCKET_IN_A_CYCLE
        + """
        def test_first():
            pass

        def test_leaves_a_socket_in_a_cycle():
            Holder()
        """
    )
    common = ("-p", "no:cacheprovider", "-p", "no:rerunfailures", *options)
    with_gate = pytester.runpytest_subprocess(*common)
    without_gate = pytester.runpytest_subprocess(*common, "-p", "no:nettest")
    assert with_gate.ret == without_gate.ret
    if "no:terminal" not in options:
        with_gate.assert_outcomes(passed=2)


_RAISES_IN_A_CYCLE = """
        import gc

        gc.disable()  # freed by the last check's collection only, not by chance earlier

        class Raiser:
            def __init__(self):
                self.me = self

            def __del__(self):
                raise ValueError("boom in __del__")

        def test_leaves_a_raiser_in_a_cycle():
            Raiser()
"""


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param(
            ["error:(?s).*test_leaky\\.py:pytest.PytestUnraisableExceptionWarning"],
            id="error-if-its-traceback-names-the-file",
        ),
        pytest.param(
            [
                "error::pytest.PytestUnraisableExceptionWarning",
                "ignore:(?s).*test_leaky\\.py:pytest.PytestUnraisableExceptionWarning",
            ],
            id="ignored-if-its-traceback-names-the-file",
        ),
        pytest.param([], id="no-filter"),
    ],
)
def test_what_is_left_at_the_end_is_judged_with_its_traceback(
    pytester: pytest.Pytester, filters: list[str]
) -> None:
    # Handed over without its traceback, a filter that matched the traceback's
    # lines matched no more; and a warning that was no error was shown twice.
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:looptime_plugin\n"
        + ("filterwarnings =\n" + "".join(f"    {f}\n" for f in filters) if filters else "")
    )
    pytester.makepyfile(test_leaky=_RAISES_IN_A_CYCLE)
    with_gate = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    without_gate = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:nettest")
    assert with_gate.ret == without_gate.ret
    with_gate.stdout.fnmatch_lines(
        ["*= nettest: left open at the end of the session =*", "    ValueError: boom in __del__"]
    )
    assert "warnings summary" not in with_gate.stdout.str()


def test_what_is_left_at_the_end_with_another_plugins_hook_fails_no_session(
    pytester: pytest.Pytester,
) -> None:
    # pytest's own unraisable plugin off, and another hook in place: what the gate
    # hands over goes to that hook, and pytest's check (its queue never made) is
    # no failure.
    pytester.makeconftest(
        """
        import sys

        def pytest_configure(config):
            sys.unraisablehook = lambda unraisable: None
        """
    )
    pytester.makepyfile(
        test_leaky=_SOCKET_IN_A_CYCLE
        + """
        def test_leaves_a_socket_in_a_cycle():
            Holder()
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:unraisableexception", *FILTERS
    )
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("after", [False, True], ids=["last", "not-last"])
def test_a_session_fixtures_leak_goes_to_the_summary_whichever_test_is_last(
    pytester: pytest.Pytester, after: bool
) -> None:
    # When the test that used the fixture ran last, its funcargs still held the
    # server at the last check: pytest let go of it after, and its warnings
    # came out of pytest's unconfigure as an internal error, the session failed.
    program = """
        import pytest, pytest_asyncio
        import nettest
        from nettest import handlers

        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def leaky_session_server():
            server = await nettest.TCPServer(handlers.echo).start()
            yield server  # never closed

        @pytest.mark.asyncio(loop_scope="session")
        async def test_uses_it(leaky_session_server):
            pass
        """
    if after:
        program += "\n        def test_after():\n            pass\n"
    result = run(pytester, program, *FILTERS, subprocess=True)
    result.assert_outcomes(passed=2 if after else 1)
    # Failed as pytest from 8.4 fails it for what its own last collection frees.
    failed = PYTEST_VERSION >= (8, 4)
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if failed else pytest.ExitCode.OK)
    result.stdout.fnmatch_lines(
        [
            "*= nettest: left open at the end of the session =*",
            "*",
            "  - Exception ignored in: <function _LoopbackServer.__del__ *",
            "    ResourceWarning: unclosed <TCPServer 127.0.0.1:* open, 0 connections>",
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("xdist", [False, True])
def test_a_leak_of_a_fixture_whose_teardown_failed_last_goes_to_the_summary(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    # The teardown's error held the server through the last check; freed after
    # it (as the session ends, or by pytest's unconfigure), its warnings crashed
    # the session at pytest's unconfigure.
    pytester.makepyfile(
        fixtures_elsewhere="""
        import pytest_asyncio
        import nettest
        from nettest import handlers

        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def fails_in_teardown():
            server = await nettest.TCPServer(handlers.echo).start()
            yield server
            raise RuntimeError("teardown failed")  # the server is never closed
        """,
        test_leaky="""
        import pytest
        from fixtures_elsewhere import fails_in_teardown

        @pytest.mark.asyncio(loop_scope="module")
        async def test_uses_it(fails_in_teardown):
            pass
        """,
    )
    # pytest-rerunfailures, where installed, holds the error until the process ends.
    # Under xdist the worker collects as its session finishes, and the controller
    # shows its list: the worker's own summary is never shown.
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:rerunfailures",
        *FILTERS,
        *(("-n", "1") if xdist else ()),
        "test_leaky.py",
    )
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "Exception Group" not in result.stdout.str() + result.stderr.str()
    if PYTEST_VERSION < (8, 4) and not xdist:
        return  # no collection of its own after the session: the server is never freed
    result.stdout.fnmatch_lines(
        [
            "*= nettest: left open at the end of the session =*",
            "*",
            f"  - {'[[]gw0] ' if xdist else ''}Exception ignored in: "
            "<function _LoopbackServer.__del__ *",
            "    ResourceWarning: unclosed <TCPServer 127.0.0.1:* open, 0 connections>",
        ]
    )


@pytest.mark.parametrize("xdist", [False, True])
def test_the_last_collection_does_not_blame_the_last_test(
    pytester: pytest.Pytester, xdist: bool
) -> None:
    # Own mode tracks no plain socket: one an earlier test left in a cycle is
    # freed by the last test's collection.  Not "test_b left 1 thing behind",
    # nor a failure of test_b: shown after the session, as it warned without the
    # gate (pytest-asyncio before 1.4 leaves an event loop so, in every session).
    result = run(
        pytester,
        _SOCKET_IN_A_CYCLE
        + """
        def test_a_leaves_a_socket_in_a_cycle():
            Holder()

        def test_b_clean():
            pass
        """,
        *FILTERS,
        *(("-n", "1") if xdist else ()),  # a worker's summary is the controller's to show
        subprocess=True,
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= nettest: left open at the end of the session =*",
            "The garbage collection at the end of the session (in the last test's check, *"
            "--nettest-leaks=strict names the test that made each socket.",
            # Under xdist, named with its worker: two workers' leaks may read the same.
            f"  - {'[[]gw0] ' if xdist else ''}Exception ignored in: <socket.socket *",
            "    ResourceWarning: unclosed <socket.socket *",
        ]
    )
    assert "left 1 thing behind" not in result.stdout.str()


def test_gate_leaves_a_wider_fixtures_loop_to_it(pytester: pytest.Pytester) -> None:
    # A session fixture's loop closes in the last test's teardown: what is open
    # on it then is the fixture's, not that test's.
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import TCPServerThread, handlers

        @pytest.fixture(scope="session")
        def connected():
            with TCPServerThread(handlers.hang) as server:
                loop = asyncio.new_event_loop()
                yield loop.run_until_complete(asyncio.open_connection(*server.address))
                loop.close()  # a sloppy fixture: its connection is still open

        def test_first(connected):
            pass

        def test_last(connected):
            pass
        """,
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=2)
    assert "open when its event loop closed" not in result.stdout.str()


def test_gate_leaves_pytest_asyncios_module_loop_to_it(pytester: pytest.Pytester) -> None:
    # A module-scoped loop closes in its last test's teardown: what is open on it
    # then is not that test's (the loop was made in no test).
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        pytestmark = pytest.mark.asyncio(loop_scope="module")
        KEPT = []

        async def test_first():
            KEPT.append(await asyncio.get_running_loop().create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)))

        async def test_last():
            await asyncio.sleep(0)
        """,
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=2)
    assert "open when its event loop closed" not in result.stdout.str()


def test_a_collection_due_during_the_check_frees_nothing_for_the_next_test(
    pytester: pytest.Pytester,
) -> None:
    # An automatic collection that fell due in the middle of the gate's check
    # freed what the test dropped: the check reported it dropped, and the
    # finalisers' warnings, raised outside the check's own collection, failed
    # the next test (on 3.10 a plain server's cancelled handler did so, 3 in 3,
    # once an import changed when collections fell due).
    result = run(
        pytester,
        """
        import gc, socket
        from nettest import _hygiene

        gc.set_threshold(10**9)  # no collection comes by chance...
        _let_threads_end = _hygiene.GATE._let_threads_end

        def due_now(owner):  # ...until one falls due as the gate's check begins
            gc.set_threshold(1)
            return _let_threads_end(owner)

        _hygiene.GATE._let_threads_end = due_now

        class Holder:
            def __init__(self):
                self.me = self
                self.sock = socket.socket()

        def test_a_leaves_a_socket_in_a_cycle():
            Holder()

        def test_after():
            pass
        """,
        "--nettest-leaks=strict",
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_a_leaves_a_socket_in_a_cycle*",
            "*- socket <socket.socket fd=*> dropped while open, created at:",
        ]
    )
    assert "test_after - " not in result.stdout.str()


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_gate_names_the_test_whose_garbage_its_collection_frees(
    pytester: pytest.Pytester, mode: str
) -> None:
    # test_b leaks, so its check collects garbage, which frees the connection
    # that test_a (passing, unchecked) left in a cycle: test_a's, not test_b's.
    result = run(
        pytester,
        """
        import asyncio, gc
        import pytest
        from nettest import memory_stream_pair

        gc.disable()  # freed by the check's collection only, not by chance earlier

        class Client:
            def __init__(self):
                self.me = self

        @pytest.mark.nettest_leaks("off")
        @pytest.mark.asyncio
        async def test_a_leaves_a_connection(tcp_server):
            server = await tcp_server()
            client = Client()
            client.reader, client.writer = await asyncio.open_connection(*server.address)

        held = []

        @pytest.mark.asyncio
        async def test_b_leaves_a_memory_pair():
            held.append(memory_stream_pair())
        """,
        *FILTERS,
        f"--nettest-leaks={mode}",
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    # Strict mode would have tracked test_a's socket, had its marker not said off.
    hint = (
        "strict mode does not track what this is, or that test was not checked in strict mode"
        if mode == "strict"
        else "own mode does not track real connections, --nettest-leaks=strict reports them "
        "against their test"
    )
    result.stdout.fnmatch_lines(
        [
            f"*test_b_leaves_a_memory_pair left 2 things behind (--nettest-leaks={mode}):",
            "*- open MemoryTransport*",
            "*- open MemoryTransport*",
            "*The garbage collection for this check also freed what "
            "test_leaky.py::test_a_leaves_a_connection left open on its event loop "
            f"(test_leaky.py::test_a_leaves_a_connection is to blame, not this test; {hint}):",
            "*unclosed transport <_SelectorSocketTransport fd=*",
        ]
    )
    out = result.stdout.str()
    assert "while the garbage collector finalised them" not in out
    assert "Exception Group" not in out + result.stderr.str()


def test_gate_lists_what_a_test_left_when_a_fixtures_teardown_fails(
    pytester: pytest.Pytester,
) -> None:
    # The failing teardown is the test's error: what it left open is listed under
    # it (it was released unreported).
    result = run(
        pytester,
        """
        import pytest
        from nettest import memory_stream_pair

        held = []

        @pytest.fixture
        def breaks():
            yield
            raise RuntimeError("fixture teardown failed")

        @pytest.mark.asyncio
        async def test_leaky(breaks):
            held.append(memory_stream_pair())

        def test_after():
            held.clear()
        """,
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaky*",
            "*RuntimeError: fixture teardown failed",
            "*nettest hygiene at teardown*",
            "*test_leaky left 2 things behind (--nettest-leaks=own):",
            "*- open MemoryTransport*",
        ]
    )


@pytest.mark.skipif(not WRITER_DEL_CLOSES, reason="no StreamWriter.__del__ before 3.11.5")
def test__gate_writer_watcher_is_named_as_the_original() -> None:
    # A warning raised in it is reported "in StreamWriter.__del__", as without the gate.
    original = vars(asyncio.StreamWriter)["__del__"]
    gate = hygiene._Gate()
    gate.watch_writers()
    try:
        watcher = vars(asyncio.StreamWriter)["__del__"]
        assert watcher is not original
        assert watcher.__qualname__ == original.__qualname__ == "StreamWriter.__del__"
        assert watcher.__wrapped__ is original
    finally:
        gate.unwatch_writers()
    assert vars(asyncio.StreamWriter)["__del__"] is original


@pytest.mark.skipif(not WRITER_DEL_CLOSES, reason="no StreamWriter.__del__ before 3.11.5")
def test_writer_watcher_outlives_an_in_process_session(pytester: pytest.Pytester) -> None:
    # Every session wraps StreamWriter.__del__; an inner one (pytester's, in this
    # process) must leave the outer session's wrapper in place as it ends.
    assert hygiene.GATE.watching_writers()
    result = run(
        pytester,
        """
        import asyncio
        from nettest import _hygiene

        def test_inner():
            assert _hygiene.GATE.watching_writers()
        """,
    )
    result.assert_outcomes(passed=1)
    assert hygiene.GATE.watching_writers()


def test__gate_notes_the_test_each_loop_is_made_in() -> None:
    gate = hygiene.GATE  # every session's wrappers, with the owner it knows
    assert vars(asyncio.BaseEventLoop)["close"] is gate.loop_watchers["close"]
    assert vars(asyncio.BaseEventLoop)["__init__"] is gate.loop_watchers["__init__"]
    with gate.owned_by("test_x"):
        in_test = asyncio.new_event_loop()
    with gate.owned_by("test_y"):
        in_test.close()  # closed in another test: still test_x's
    with gate.owned_by(None):
        outside = asyncio.new_event_loop()
    with gate.owned_by("test_y"):
        outside.close()
    on_a_thread: list[asyncio.AbstractEventLoop] = []
    with gate.owned_by("test_z"):
        thread = threading.Thread(target=lambda: on_a_thread.append(asyncio.new_event_loop()))
        thread.start()
        thread.join()
    on_a_thread[0].close()
    assert gate.loop_test(in_test) == "test_x"
    assert gate.loop_test(outside) is None
    assert gate.loop_test(on_a_thread[0]) is None  # a thread's: maybe a wider fixture's


def test__gate_loop_wrappers_come_off_as_they_went_on() -> None:
    names = ("__init__", "close")
    before = {name: vars(asyncio.BaseEventLoop)[name] for name in names}
    gate = hygiene._Gate()
    gate.unwatch_loops()  # not installed by this gate: nothing to remove
    assert {name: vars(asyncio.BaseEventLoop)[name] for name in names} == before
    gate.watch_loops()
    try:
        for name in names:
            wrapper = vars(asyncio.BaseEventLoop)[name]
            assert wrapper is not before[name]
            assert wrapper.__wrapped__ is before[name]
            assert wrapper.__qualname__ == f"BaseEventLoop.{name}"
        gate.watch_loops()  # once only
        assert vars(asyncio.BaseEventLoop)["close"] is gate.loop_watchers["close"]
        loop = asyncio.new_event_loop()  # both wrappers run, and the loop works
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
        loop.close()
    finally:
        gate.unwatch_loops()
    assert {name: vars(asyncio.BaseEventLoop)[name] for name in names} == before


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is new in 3.11")
def test_a_dropped_tls_memory_pair_is_listed_once_per_writer(pytester: pytest.Pytester) -> None:
    # Python 3.11 and 3.12 free the TLS transports that start_tls() put over the
    # pair in the check's collection, and each warned "unclosed transport": two
    # more items for the same two writers.  Whatever order the collector runs
    # the finalisers in (it changes with the process's memory layout), the items
    # name the writers (see test__gate_names_the_writer_whose_tls_transport_was_finalised_first).
    result = run(
        pytester,
        """
        import asyncio
        import pytest
        from nettest import memory_stream_pair

        @pytest.mark.asyncio
        async def test_drops_a_tls_pair(tls_server_context, tls_client_context):
            (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
            await asyncio.gather(
                c_writer.start_tls(tls_client_context, server_hostname="localhost"),
                s_writer.start_tls(tls_server_context),
            )
            c_writer.write(b"x")
            assert await s_reader.readexactly(1) == b"x"
        """,
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_drops_a_tls_pair left 2 things behind (--nettest-leaks=own):",
            "*- StreamWriter over TLS over MemoryTransport * dropped without close(), created at:",
        ]
    )
    assert "dropped while open" not in result.stdout.str()
    assert "garbage collector" not in result.stdout.str()


class _SSLState(enum.Enum):
    WRAPPED = 1


class _SSLProtocol:
    """What the gate reads of asyncio's TLS protocol: the transport under it, its state."""

    def __init__(self, transport: object) -> None:
        self._transport = transport
        self._state = _SSLState.WRAPPED


class _FakeTransport:
    """A transport as the gate sees a dropped writer's: open or closing, TLS or not."""

    _gate_entry = None

    def __init__(self, under: object = None) -> None:
        self.open = True
        if under is not None:  # a TLS transport over `under`
            self._ssl_protocol = _SSLProtocol(under)

    def is_closing(self) -> bool:
        return not self.open

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


class _FakeWriter:
    def __init__(self, transport: _FakeTransport) -> None:
        self.transport = transport


def _gate_tracking_a_memory_transport() -> tuple[hygiene._Gate, _FakeTransport]:
    gate = hygiene._Gate()
    gate.begin("test_x")
    under = _FakeTransport()
    with gate.owned_by("test_x"):
        gate.track(
            under,
            what="MemoryTransport a -> b",
            is_open=lambda t: t.open,
            close=lambda t: setattr(t, "open", False),
        )
    return gate, under


def test__gate_names_the_writer_whose_tls_transport_was_finalised_first() -> None:
    # The order of finalisers that named the memory transports instead: the TLS
    # transport's (which marks it closed, and leaves its protocol wrapped), then
    # the writer's, then the memory transport's.
    if sys.version_info >= (3, 11):  # what the gate reads on asyncio's own
        assert {"DO_HANDSHAKE", "WRAPPED"} <= set(asyncio.sslproto.SSLProtocolState.__members__)
    gate, under = _gate_tracking_a_memory_transport()
    over = _FakeTransport(under)
    over.open = False  # its finaliser ran first
    assert gate.writer_dropped(_FakeWriter(over), under)  # type: ignore[arg-type]
    gate.dropped_open(under)
    with pytest.raises(LeakError) as info:
        gate.check("test_x", "own", frozenset())
    assert "StreamWriter over TLS over MemoryTransport a -> b dropped without close()" in str(
        info.value
    )


def test__gate_names_the_writer_whose_transport_was_freed_first() -> None:
    # One collection frees a dropped pair's writer and the transport under it, in
    # an order of the collector's choosing.  When the transport's finaliser runs
    # first, the writer's own transport (start_tls()'s) is closing by the time the
    # writer's runs: the report must still name the writer, whichever came first.
    for transport_first in (True, False):
        gate, under = _gate_tracking_a_memory_transport()
        over = _FakeTransport()  # what start_tls() put over it, closing once it is freed
        if transport_first:
            gate.dropped_open(under)
            over.open = False
        gate.writer_dropped(_FakeWriter(over), under)  # type: ignore[arg-type]
        with pytest.raises(LeakError) as info:
            gate.check("test_x", "own", frozenset())
        assert "StreamWriter over MemoryTransport a -> b dropped without close()" in str(
            info.value
        ), transport_first


def test__gate_writer_dropped_never_raises() -> None:
    class Broken:
        @property
        def transport(self) -> object:
            raise RuntimeError("no transport")

    gate = hygiene._Gate()
    with gate.owned_by("test_x"):
        gate.writer_dropped(Broken())  # type: ignore[arg-type]
    with pytest.raises(LeakError, match=r"could not track a StreamWriter .*no transport"):
        gate.check("test_x", "own", frozenset())


@pytest.mark.skipif(not WRITER_DEL_CLOSES, reason="no StreamWriter.__del__ before 3.11.5")
@pytest.mark.nettest_leaks("off")  # it drops a writer on purpose
def test__memory_stream_writer_dropped_open_still_closes_its_transport() -> None:
    async def main() -> None:
        from nettest import memory_stream_pair

        (_, c_writer), (_, s_writer) = memory_stream_pair()
        transport = c_writer.transport
        with pytest.warns(ResourceWarning, match="unclosed <StreamWriter transport="):
            del c_writer
        assert transport.is_closing(), "asyncio's own __del__ still ran"
        s_writer.close()

    asyncio.run(main())


def test_a_failed_tests_garbage_is_collected_at_its_own_check(pytester: pytest.Pytester) -> None:
    # A test that failed dropped a client in a reference cycle (aiohttp's session
    # and connector): its finaliser's warning failed the next test that collected.
    result = run(
        pytester,
        """
        import gc
        import warnings

        gc.disable()  # freed by a collection the test or the gate runs, not by chance

        class Client:
            def __init__(self):
                self.me = self

            def __del__(self):
                warnings.warn("Unclosed client", ResourceWarning)

        def test_a_fails_and_drops_a_client():
            Client()
            assert False

        def test_b_collects():
            gc.collect()
        """,
        *FILTERS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_a_fails_and_drops_a_client left 1 thing behind*",
            "*- while the garbage collector finalised them: *Client.__del__*",
            "*ResourceWarning: Unclosed client",
        ]
    )


# -- a task left pending on a loop the test closed itself ------------------------------------

_PENDING_ON_OWN_LOOP = """
import asyncio
import gc

import pytest


def run_and_close(fail):
    # The loop looptime's users make: run_until_complete, then close(), with no
    # asyncio.run to cancel what is left.
    loop = asyncio.new_event_loop()
    queue = asyncio.Queue()

    async def scenario():
        asyncio.ensure_future(queue.get())  # a receiver task, left waiting
        await asyncio.sleep(0)
        assert not fail, "the protocol under test failed"

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def test_a_passes(request):
    run_and_close(fail=False)


def test_b_fails():
    run_and_close(fail=True)


def test_c_innocent():
    gc.collect()  # frees the tasks, were they still pending
"""


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_a_task_pending_as_the_tests_own_loop_closes_is_the_tests(
    pytester: pytest.Pytester, mode: str
) -> None:
    # Freed later, each task logged "Task was destroyed but it is pending!", and its
    # coroutine's clean-up raised on the closed loop: an unraisable exception that
    # failed test_c_innocent.
    result = run(pytester, _PENDING_ON_OWN_LOOP, f"--nettest-leaks={mode}", *FILTERS)
    pending = "*- pending task <Task pending name=*Queue.get()*> when its event loop closed"
    result.assert_outcomes(passed=2, failed=1, errors=1)
    if mode == "own":  # as asyncio's own finalisers warn of a transport, but now
        result.stdout.fnmatch_lines(
            [
                "*ERROR at teardown of test_a_passes*",
                "*ResourceWarning: task <Task pending name=*Queue.get()*> was still pending "
                "when its event loop closed (nettest closed its coroutine)",
            ]
        )
    else:
        result.stdout.fnmatch_lines(
            ["*test_a_passes left 1 thing behind (--nettest-leaks=strict):", pending]
        )
    result.stdout.fnmatch_lines(
        [f"*test_b_fails left 1 thing behind (--nettest-leaks={mode}):", pending]
    )
    assert "Task was destroyed but it is pending" not in result.stdout.str()
    assert "test_c_innocent FAILED" not in result.stdout.str()
    assert "ERROR at teardown of test_c_innocent" not in result.stdout.str()


_PENDING_ON_AN_OFF_TESTS_LOOP = """
import asyncio
import gc

import pytest


@pytest.mark.nettest_leaks("off")
def test_a_leaks_on_purpose():
    loop = asyncio.new_event_loop()

    async def scenario():
        asyncio.ensure_future(asyncio.Queue().get())
        await asyncio.sleep(0)

    loop.run_until_complete(scenario())
    loop.close()


CLEANED = []


async def cleans_up():
    try:
        await asyncio.Event().wait()
    finally:
        CLEANED.append(1)
        raise SystemExit(3)  # a clean-up that raises anything, on the closed loop


@pytest.mark.nettest_leaks("off")
def test_c_sees_its_task_as_asyncio_leaves_it():
    loop = asyncio.new_event_loop()

    async def scenario():
        task = asyncio.ensure_future(cleans_up())
        await asyncio.sleep(0)
        return task

    task = loop.run_until_complete(scenario())
    loop.close()
    assert CLEANED == [] and not task.done()  # untouched while the test runs


def test_b_innocent():
    gc.collect()  # frees the tasks, were they still pending
    assert CLEANED == [1]  # ended at test_c's check
"""


def test_a_task_pending_as_an_off_tests_own_loop_closes_fails_no_later_test(
    pytester: pytest.Pytester,
) -> None:
    # The marked test is not checked, but its task, freed in test_b_innocent, logged
    # "Task was destroyed but it is pending!" and its clean-up raised there.  The
    # gate ends it at the test's check, not as the loop closes: until then the
    # test has it as asyncio leaves it.
    result = run(pytester, _PENDING_ON_AN_OFF_TESTS_LOOP, *FILTERS, "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert "Task was destroyed" not in result.stdout.str()


_THOUSANDS_PENDING = """
import asyncio
import socket


def test_starts_thousands():
    loop = asyncio.new_event_loop()
    events = []  # else each task is garbage in a cycle, and may be freed pending
    pairs = [socket.socketpair() for _ in range(15)]

    async def scenario():
        for i in range(2000):
            events.append(asyncio.Event())
            loop.create_task(events[-1].wait(), name=f"client's {i}")
        loop.create_task(asyncio.Queue().get(), name="the-odd-one")
        for a, _ in pairs:
            a.setblocking(False)
            loop.create_task(loop.sock_recv(a, 100))  # its repr names the socket
        await asyncio.sleep(0)

    loop.run_until_complete(scenario())
    loop.close()
    for a, b in pairs:
        a.close()
        b.close()
"""


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_thousands_of_alike_pending_tasks_are_counted_not_listed(
    pytester: pytest.Pytester, mode: str
) -> None:
    # Each one was a line of its own: 2,000 lines of the same task.  Ten of each
    # coroutine at each line are listed (whatever their names, or what they wait
    # for), the odd one among them; in own mode's warning, its headline is one.
    result = run(pytester, _THOUSANDS_PENDING, f"--nettest-leaks={mode}", *FILTERS)
    result.assert_outcomes(passed=1, errors=1)
    # The report, not the summary line, which pytest does not cut where CI is set.
    output = result.stdout.str().split("short test summary info")[0]
    assert output.count("Event.wait()") == 10
    assert output.count("Queue.get()") == 1
    assert output.count("sock_recv()") == 10
    result.stdout.fnmatch_lines(
        [
            "*- and 1995 more pending tasks like those above (the first 10 of each "
            "coroutine at each line are shown)"
        ]
    )


_PENDING_IN_HARDER_WAYS = """
import asyncio
import gc

import pytest


async def hands_its_clean_up_to_a_task():
    async def worker():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            asyncio.ensure_future(asyncio.sleep(10))  # started as the runner cancels
            raise

    asyncio.ensure_future(worker())
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_a_pytest_asyncio():
    await hands_its_clean_up_to_a_task()


def test_b_asyncio_run():
    asyncio.run(hands_its_clean_up_to_a_task())


def test_c_clean_up_raises_cancelled_error():
    loop = asyncio.new_event_loop()

    async def supervisor():
        child = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        child.cancel()
        await asyncio.sleep(0)
        try:
            await asyncio.Event().wait()
        finally:
            await child  # CancelledError, as the gate closes the coroutine

    async def scenario():
        asyncio.ensure_future(supervisor())
        asyncio.ensure_future(asyncio.Queue().get())  # ended all the same
        await asyncio.sleep(0.01)

    loop.run_until_complete(scenario())
    loop.close()


def test_d_will_not_close():
    loop = asyncio.new_event_loop()

    async def stubborn():
        done = loop.create_future()
        while not done.done():
            try:
                await done
            except GeneratorExit:
                pass

    async def scenario():
        asyncio.ensure_future(stubborn())
        await asyncio.sleep(0)

    loop.run_until_complete(scenario())
    loop.close()


def test_e_innocent():
    gc.collect()
"""


@pytest.mark.skipif(
    PYTEST_ASYNCIO_VERSION < (1, 4),
    reason="before 1.4 pytest-asyncio leaves a loop unclosed beside asyncio.run (getting-started)",
)
def test_tasks_pending_as_a_runner_closes_the_loop_or_hard_to_end_are_their_tests(
    pytester: pytest.Pytester,
) -> None:
    # Each failed test_e_innocent, or made the test's loop.close() raise.
    result = run(pytester, _PENDING_IN_HARDER_WAYS, *FILTERS)
    result.assert_outcomes(passed=5, errors=4)
    closed = "(nettest closed its coroutine)"
    result.stdout.fnmatch_lines_random(
        [
            "*ERROR at teardown of test_a_pytest_asyncio*",
            "*ERROR at teardown of test_b_asyncio_run*",
            "*ERROR at teardown of test_c_clean_up_raises_cancelled_error*",
            "*ERROR at teardown of test_d_will_not_close*",
            f"*task <Task pending name=*sleep()*> was still pending when its event loop closed "
            f"{closed}",
            "*task <Task pending name=*stubborn()*> was still pending when its event loop closed "
            "(its coroutine would not close; nettest keeps it)",
            "*and 1 more:*",
        ]
    )
    assert "test_e_innocent FAILED" not in result.stdout.str()
    assert "ERROR at teardown of test_e_innocent" not in result.stdout.str()
    assert "Task was destroyed but it is pending" not in result.stdout.str()
