"""Strict mode charges what is made off the test's own path to whoever started that path.

A socket made on a thread belongs to whoever started the thread; a task that a
plain asyncio server's connection starts, and what it makes, belong to whoever
owns the server; a task made in a task is that task's owner's.  A wider-scoped
fixture's are nobody's leak, whichever test runs as they are made.  A plain
server's handler task that its test left pending is described by that server.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from nettest import _hygiene as hygiene
from nettest._hygiene_instruments import _finishing_by_itself, cancelled_by_gate
from test_hygiene import MODES, run

STRICT = (
    "--nettest-leaks=strict",
    "-W",
    "error::ResourceWarning",
    "-W",
    "error::pytest.PytestUnraisableExceptionWarning",
)


def test_socket_made_on_a_wider_fixtures_thread_is_not_the_tests(
    pytester: pytest.Pytester,
) -> None:
    # test_one runs while the session fixture's thread opens a socket and keeps it
    # open: it is the fixture's, and the gate must neither report nor close it.
    result = run(
        pytester,
        """
        import socket, threading
        import pytest

        class Worker:
            def __init__(self):
                self.go = threading.Event()
                self.made = threading.Event()
                self.release = threading.Event()
                self.done = threading.Event()
                self.open_until_released = None

            def run(self):
                self.go.wait(10)
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    self.made.set()
                    self.release.wait(10)
                    self.open_until_released = sock.fileno() != -1
                self.done.set()

        @pytest.fixture(scope="session")
        def worker():
            worker = Worker()
            thread = threading.Thread(target=worker.run)
            thread.start()
            yield worker
            worker.release.set()
            thread.join()

        def test_one(worker):
            worker.go.set()
            assert worker.made.wait(10)

        def test_two(worker):
            worker.release.set()
            worker.go.set()

        def test_three(worker):
            assert worker.done.wait(10)
            assert worker.open_until_released
        """,
        *STRICT,
        subprocess=True,
    )
    result.assert_outcomes(passed=3)


def test_socket_left_open_on_a_tests_thread_is_the_tests(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import socket, threading

        held = []

        def test_leaky():
            thread = threading.Thread(target=lambda: held.append(socket.socket()))
            thread.start()
            thread.join()

        def test_after():
            pass
        """,
        *STRICT,
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*test_leaky left 1 thing behind*", "*open socket <socket*"])


def test_thread_left_running_is_reported_against_its_test(pytester: pytest.Pytester) -> None:
    # A thread that is not a daemon keeps the interpreter from exiting: one a test
    # leaves running is its leak.  Not reported: a daemon thread, a thread that
    # ends within the grace period after teardown, a thread pool's workers, and
    # any of these in own mode.
    result = run(
        pytester,
        """
        import concurrent.futures, threading, time
        import pytest

        release = threading.Event()

        def test_leaky():
            threading.Thread(target=release.wait, args=(30,), name="poller").start()

        def test_nested():
            def starter():
                threading.Thread(target=release.wait, args=(30,), name="inner").start()
            outer = threading.Thread(target=starter)
            outer.start()
            outer.join()

        def test_daemon():
            threading.Thread(target=release.wait, args=(30,), daemon=True).start()

        @pytest.fixture
        def slow_to_stop():
            stop = threading.Event()
            thread = threading.Thread(target=lambda: (stop.wait(30), time.sleep(0.2)))
            thread.start()
            yield
            stop.set()

        def test_ending(slow_to_stop):
            pass

        def test_pool():
            concurrent.futures.ThreadPoolExecutor().submit(time.sleep, 0)

        @pytest.mark.nettest_leaks("own")
        def test_own_mode():
            threading.Thread(target=release.wait, args=(30,)).start()

        def test_fails():
            threading.Thread(target=release.wait, args=(30,), name="failed's").start()
            assert False

        def test_release():
            release.set()
        """,
        *STRICT,
        subprocess=True,
    )
    result.assert_outcomes(passed=7, failed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_leaky left 1 thing behind (--nettest-leaks=strict):",
            "*- thread 'poller' still running (not a daemon, so the interpreter waits for it "
            "as it exits; join it before the test ends), started at:",
            "*test_leaky.py*, in test_leaky",
            '*threading.Thread(target=release.wait, args=(30,), name="poller").start()',
        ]
    )
    result.stdout.fnmatch_lines(
        ["*test_nested left 1 thing behind*", "*- thread 'inner' still running*"]
    )
    # Listed under the failure, not closed: Python cannot stop a thread.
    result.stdout.fnmatch_lines(
        [
            "*test_fails left 1 thing behind*",
            '*- thread "failed\'s" still running*',
            "(closed, threads aside: this test failed already, not again for what it left*",
        ]
    )
    # Counted above the short summary, which repeats the messages in full under CI.
    report = result.stdout.str().split("short test summary info")[0]
    items = [line for line in report.splitlines() if line.lstrip().startswith("- thread ")]
    assert len(items) == 3, items


def test_the_policys_loop_is_left_open(pytester: pytest.Pytester) -> None:
    # A plugin that calls asyncio.get_event_loop() in a synchronous test makes
    # the policy's loop, which the process keeps: it is nobody's leak, and its
    # self-pipe must not be closed under it (its __del__ then failed on fd -1).
    result = run(
        pytester,
        """
        import asyncio, warnings

        loops = []

        def test_makes_the_loop():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                loops.append(asyncio.get_event_loop_policy().get_event_loop())

        def test_its_self_pipe_is_open():
            loop = loops.pop()
            try:
                assert loop._ssock.fileno() != -1
                assert loop._csock.fileno() != -1
            finally:
                loop.close()
                asyncio.set_event_loop(None)
        """,
        *STRICT,
        subprocess=True,
    )
    result.assert_outcomes(passed=2)


def test_socket_closed_during_the_check_is_not_dropped_open(pytester: pytest.Pytester) -> None:
    # The check finds the socket open; its garbage collection runs a finaliser
    # that closes the socket and lets it go, as another thread might: the program
    # closed it, so it was not dropped while open.
    result = run(
        pytester,
        """
        import gc, socket

        held = []

        class Closer:
            def __init__(self):
                self.me = self

            def __del__(self):
                held.pop().close()

        def test_cycle():
            gc.disable()
            held.append(socket.socket())
            Closer()

        def test_after():
            gc.enable()
        """,
        *STRICT,
        subprocess=True,
    )
    result.assert_outcomes(passed=2)


def test_plain_servers_connection_tasks_are_the_servers(pytester: pytest.Pytester) -> None:
    # A module-scoped asyncio server (not nettest's) whose handler opens an
    # upstream connection and waits, in a task it makes, until test_two: its
    # tasks and sockets are the fixture's, not test_one's.
    result = run(
        pytester,
        """
        import asyncio, contextlib
        import pytest
        import pytest_asyncio

        pytestmark = pytest.mark.asyncio(loop_scope="module")

        class Proxy:
            pass

        @pytest_asyncio.fixture(loop_scope="module", scope="module")
        async def proxy():
            state = Proxy()
            state.release = asyncio.Event()
            state.done = asyncio.Event()

            async def upstream_handler(reader, writer):
                await state.release.wait()
                writer.close()

            upstream = await asyncio.start_server(upstream_handler, "127.0.0.1", 0)

            async def handler(reader, writer):
                up_reader, up_writer = await asyncio.open_connection(
                    *upstream.sockets[0].getsockname()[:2]
                )
                waiter = asyncio.ensure_future(state.release.wait())
                writer.write(b"ok")
                await writer.drain()
                await waiter
                up_writer.close()
                writer.close()
                with contextlib.suppress(OSError):
                    await up_writer.wait_closed()
                    await writer.wait_closed()
                state.done.set()

            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            state.address = server.sockets[0].getsockname()[:2]
            yield state
            state.release.set()
            server.close()
            upstream.close()
            await server.wait_closed()
            await upstream.wait_closed()

        async def test_one(proxy):
            reader, writer = await asyncio.open_connection(*proxy.address)
            assert await reader.readexactly(2) == b"ok"
            writer.close()
            await writer.wait_closed()

        async def test_two(proxy):
            proxy.release.set()
            await asyncio.wait_for(proxy.done.wait(), 10)
        """,
        *STRICT,
        subprocess=True,
    )
    result.assert_outcomes(passed=2)


def test_task_made_in_a_wider_fixtures_task_is_not_the_tests(pytester: pytest.Pytester) -> None:
    # The module fixture's task makes a task and a socket while test_one runs.
    result = run(
        pytester,
        """
        import asyncio, socket
        import pytest
        import pytest_asyncio

        pytestmark = pytest.mark.asyncio(loop_scope="module")

        @pytest_asyncio.fixture(loop_scope="module", scope="module")
        async def background():
            go, stop = asyncio.Event(), asyncio.Event()
            made = asyncio.Event()
            held = []

            async def worker():
                await go.wait()
                held.append(socket.socket())
                inner = asyncio.ensure_future(stop.wait())
                made.set()
                await inner
                held.pop().close()

            task = asyncio.ensure_future(worker())
            yield go, made, stop
            stop.set()
            await task

        async def test_one(background):
            go, made, _ = background
            go.set()
            await asyncio.wait_for(made.wait(), 10)

        async def test_two(background):
            background[2].set()
        """,
        *STRICT,
        subprocess=True,
    )
    result.assert_outcomes(passed=2)


def test_datagram_transport_never_closed_is_dropped_open(pytester: pytest.Pytester) -> None:
    # Freed with its loop, the transport closes its socket in its ``__del__`` and
    # only warns: that is not the program closing it.  Without the -W error
    # filters: with them, that warning raises before the socket is closed, and
    # pytest reports it as an unraisable exception whatever the gate says.
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        @pytest.mark.asyncio
        async def test_leaky():
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )

        def test_after():
            pass
        """,
        "--nettest-leaks=strict",
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_leaky left 1 thing behind*", "*socket <socket.socket *dropped while open*"]
    )


#: A test that leaves a plain asyncio server, and a connection to it whose
#: handler waits for ever, open: strict mode reports the handler's task pending.
_PENDING_HANDLER = """
        import asyncio
        import pytest

        pytestmark = pytest.mark.asyncio(loop_scope="{loop_scope}")

        kept = []

        async def test_leaves_a_handler_waiting():
            async def handle(reader, writer):
                await reader.read()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            kept.append(server)
            kept.append(await asyncio.open_connection(*server.sockets[0].getsockname()[:2]))
            await asyncio.sleep(0.01)

        async def test_after():
            await asyncio.sleep(0.01)
        """


@MODES
@pytest.mark.parametrize("loop_scope", ["function", "module"])
def test_plain_servers_pending_handler_task_is_described_by_its_server_alone(
    pytester: pytest.Pytester, asyncio_mode: str, loop_scope: str
) -> None:
    # StreamReaderProtocol.connection_made makes the handler's task in a loop
    # callback: its own stack holds none of the test's frames.  The report names
    # the server, where the test started it, and the client it serves.
    result = run(
        pytester,
        _PENDING_HANDLER.format(loop_scope=loop_scope),
        *STRICT,
        f"--asyncio-mode={asyncio_mode}",
        subprocess=True,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_handler_waiting*",
            "*- *pending task <Task *handle() running at *test_leaky.py:10*>*, the handler "
            "task for the connection from ('127.0.0.1', *) of an asyncio server, started at:",
            '*File "*test_leaky.py", line 12, in test_leaves_a_handler_waiting',
            '*server = await asyncio.start_server(handle, "127.0.0.1", 0)',
        ]
    )
    output = result.stdout.str()
    assert "none of the test's frames" not in output
    # Python 3.10 and 3.11 leave the connection open when its task is cancelled:
    # its socket's item speaks for its transport and StreamWriter as they warn.
    assert "while the garbage collector finalised them" not in output
    # The connection it names is the test's client: the peer is its address.
    peer = re.search(r"the connection from \('127\.0\.0\.1', (\d+)\)", output)
    assert peer is not None
    result.stdout.fnmatch_lines([f"*- open socket <*laddr=('127.0.0.1', {peer[1]}), raddr=*"])
    # On Python 3.11, the done callback that StreamReaderProtocol adds to the
    # handler's task asks a cancelled task for its exception: CancelledError
    # reaches the loop's exception handler.  The gate cancelled the task: that
    # call is its own doing, neither an item of this test's report nor, on a
    # module-scoped loop, where the callback runs during test_after, of the next.
    assert "ERROR at teardown of test_after" not in output
    assert "exception handler was called" not in output
    assert "CancelledError" not in output


def test__gate_ignores_only_what_its_own_cancelling_raises_in_a_done_callback() -> None:
    # The exception-handler call Python 3.11's StreamReaderProtocol makes once the
    # handler's task is cancelled, made here by hand on any Python: for the task
    # the gate cancelled, nothing is recorded, nor passed on to the loop's own
    # handler; for a task someone else cancelled, it is, as before.
    gate = hygiene._Gate()
    loop = asyncio.new_event_loop()
    passed_on: list[dict[str, object]] = []
    try:
        loop.set_exception_handler(lambda loop, context: passed_on.append(context))
        gate.instrument_loop(loop)
        with gate.owned_by("test_x"):
            ours = loop.create_task(asyncio.sleep(10))
            theirs = loop.create_task(asyncio.sleep(10))
        cancelled_by_gate(ours)
        handles = []
        for task in (ours, theirs):
            task.cancel()
            handle = asyncio.Handle(lambda task: None, (task,), loop)
            handles.append(handle)
            loop.call_exception_handler(
                {
                    "message": "Exception in callback",
                    "exception": asyncio.CancelledError(),
                    "handle": handle,
                }
            )
        assert [error.context["handle"] for error in gate.loop_errors] == [handles[1]]
        assert [context["handle"] for context in passed_on] == [handles[1]]
        loop.run_until_complete(asyncio.gather(ours, theirs, return_exceptions=True))
    finally:
        loop.close()


@pytest.mark.asyncio
async def test_the_gates_task_factory_keeps_task_names() -> None:
    # Python 3.13.0 names every task 'None' when a task factory is installed
    # (it calls set_name(None)); the gate installs one in every mode.
    assert asyncio.get_running_loop().get_task_factory() is not None
    unnamed = asyncio.create_task(asyncio.sleep(0))
    named = asyncio.create_task(asyncio.sleep(0), name="mine")
    await asyncio.gather(unnamed, named)
    assert unnamed.get_name().startswith("Task-"), unnamed.get_name()
    assert named.get_name() == "mine"
    assert repr(named).startswith("<Task finished name='mine'")


@pytest.mark.asyncio
async def test_only_the_accept_task_is_taken_to_end_by_itself_once_its_wait_is_over() -> None:
    # A task whose wait is over may wait again: read() reads until EOF.  Only
    # asyncio's accept task, which waits once, ends on the loop's next turn.
    reader = asyncio.StreamReader()
    reading = asyncio.ensure_future(reader.read())
    await asyncio.sleep(0)
    assert not _finishing_by_itself(reading)  # waiting
    reader.feed_data(b"more to come")  # the wait is over; the task has not run yet
    assert reading._fut_waiter is None or reading._fut_waiter.done()  # type: ignore[attr-defined]
    assert not _finishing_by_itself(reading)
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)

    waiter = asyncio.get_running_loop().create_future()

    async def _accept_connection2() -> None:  # the name alone is not asyncio's task
        await waiter

    impostor = asyncio.ensure_future(_accept_connection2())
    await asyncio.sleep(0)
    waiter.set_result(None)
    assert not _finishing_by_itself(impostor)
    await impostor


def test_gate_strict_reports_and_kills_a_child_process_left_running(
    pytester: pytest.Pytester,
) -> None:
    # A child left running outlived the session, holding its ports and files:
    # nothing reported it (asyncio's transport for a running child is never freed).
    result = run(
        pytester,
        """
        import asyncio, gc, os, subprocess, sys
        import pytest

        SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
        GRACEFUL = [
            sys.executable,
            "-c",
            "import signal, sys, time\\n"
            "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.2), sys.exit(0)))\\n"
            "print('ready', flush=True)\\n"
            "time.sleep(60)\\n",
        ]
        CHILDREN = []
        PIDS = []

        def test_popen():
            CHILDREN.append(subprocess.Popen(SLEEP, stdout=subprocess.PIPE))

        @pytest.mark.asyncio
        async def test_asyncio_child():
            process = await asyncio.create_subprocess_exec(*SLEEP, stdout=subprocess.PIPE)
            PIDS.append(process.pid)

        @pytest.mark.asyncio
        async def test_asyncio_child_on_its_way_out():
            # It ends as asked, but after its loop closed: its transport is never closed.
            process = await asyncio.create_subprocess_exec(*GRACEFUL, stdout=subprocess.PIPE)
            await process.stdout.readline()
            process.terminate()

        @pytest.mark.asyncio
        async def test_asyncio_child_waited():
            process = await asyncio.create_subprocess_exec(*GRACEFUL, stdout=subprocess.PIPE)
            await process.stdout.readline()
            process.terminate()
            await process.wait()

        def test_not_waited():
            child = subprocess.Popen(SLEEP)
            CHILDREN.append(child)
            child.terminate()  # on its way out as the check begins: given a moment

        @pytest.fixture
        def daemon():
            child = subprocess.Popen(SLEEP)
            yield child
            child.terminate()
            child.wait()

        def test_ended_in_teardown(daemon):
            pass

        def test_waited():
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        def test_killed():
            popen, not_waited = CHILDREN
            assert popen.returncode == -9  # killed and reaped
            assert popen.stdout.closed
            assert not_waited.returncode == -15  # reaped
            (pid,) = PIDS
            try:  # ended: a zombie (no one reaps it once its loop is closed) or reaped
                assert os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                pass
            # What asyncio made for the children was freed in their tests' checks:
            # nothing of them is left to warn here, nor held by the gate.
            gc.collect()
            assert not [
                o for o in gc.get_objects() if isinstance(o, subprocess.Popen) and o.pid == pid
            ]
        """,
        *STRICT,
        subprocess=True,
    )
    result.assert_outcomes(passed=8, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*test_popen left 1 thing behind (--nettest-leaks=strict):",
            "*- child process * '-c', 'import time; time.sleep(60)'] still running (it would "
            "outlive the session: end it and wait() for it before the test ends), started at:",
            "*test_leaky.py*, in test_popen",
            "*CHILDREN.append(subprocess.Popen(SLEEP, stdout=subprocess.PIPE))",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*test_asyncio_child left * things behind (--nettest-leaks=strict):",
            "*- child process * still running (it would outlive the session*",
            "*test_leaky.py*, in test_asyncio_child",
            "*process = await asyncio.create_subprocess_exec(*SLEEP, stdout=subprocess.PIPE)",
            "*while the garbage collector finalised them: *",
            "*ResourceWarning: unclosed transport <_UnixSubprocessTransport pid=*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*test_asyncio_child_on_its_way_out left * behind (--nettest-leaks=strict):",
            "*- child process * ended, but its event loop closed before it took the exit, so "
            "its transport was never closed (asyncio warns 'unclosed transport' when it is "
            "freed: await process.wait()), started at:",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*test_not_waited left 1 thing behind (--nettest-leaks=strict):",
            "*- child process * ended, but was never waited for (Python warns that it is still "
            "running when its Popen is freed: wait() for it), started at:",
        ]
    )
    out = result.stdout.str()
    for clean in ("test_ended_in_teardown", "test_waited", "test_asyncio_child_waited"):
        assert f"{clean} left" not in out
    assert "left open at the end of the session" not in out


_LAZY_POOL = """
import asyncio
import pytest
import pytest_asyncio
import nettest
from nettest import handlers

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def service_factory():
    # A pool that starts each server the first time a test asks for it.
    cache = {}

    async def get(name):
        if name not in cache:
            cache[name] = server = nettest.TCPServer(handlers.echo)
            await server.start()
        return cache[name]

    yield get
    for server in cache.values():
        await server.aclose()


class Odd:
    # A proxy whose __class__ raises, and a class with no module: the walk goes on.
    __module__ = None

    @property
    def __class__(self):
        raise RuntimeError("no context")


class Meta(type):
    @property
    def __module__(cls):
        raise RuntimeError("no module")


class Weird(metaclass=Meta):
    # A class whose __module__ raises: the walk goes on.
    pass


@pytest.fixture(scope="session")
def odd():
    return [Odd(), Weird()]


async def test_first_user(service_factory, odd):
    await service_factory("p")


async def test_next_user(service_factory):
    server = await service_factory("p")
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"ping\\n")
    assert await reader.readline() == b"ping\\n"
    writer.close()
    await writer.wait_closed()


async def test_leaks_a_server_of_its_own(service_factory):
    server = nettest.TCPServer(handlers.echo)
    await server.start()
    test_leaks_a_server_of_its_own.server = server  # out of the pool's reach


async def test_last(service_factory):
    await service_factory("q")
"""


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_what_a_wider_fixture_keeps_of_a_tests_objects_is_the_fixtures(
    pytester: pytest.Pytester, mode: str
) -> None:
    # The pool's server is made while test_first_user runs: reported and closed at
    # its check, it failed test_next_user with ConnectionRefusedError.
    result = run(pytester, _LAZY_POOL, *STRICT[1:], f"--nettest-leaks={mode}")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_server_of_its_own*",
            f"*test_leaks_a_server_of_its_own left 1 thing behind (--nettest-leaks={mode}):",
            "*- open TCPServer *, created at:",
        ]
    )
    assert "test_first_user left" not in result.stdout.str()


def test_a_failure_of_the_wider_fixture_walk_is_reported_not_silent(
    pytester: pytest.Pytester,
) -> None:
    # The walk runs at the check, when no test is running: its bookkeeping error
    # was recorded for nobody and never shown.
    pytester.makeconftest(
        """
import pytest
import nettest._hygiene

def broken(roots):
    raise RuntimeError("walk broke")

@pytest.fixture(scope="session", autouse=True)
def break_the_walk():
    with pytest.MonkeyPatch.context() as patch:  # the run is in this process
        patch.setattr(nettest._hygiene, "_reachable_ids", broken)
        yield
"""
    )
    result = run(pytester, _LAZY_POOL, *STRICT[1:], "-k", "user")
    result.assert_outcomes(passed=1, failed=1, errors=1)  # the server was closed as a leak
    result.stdout.fnmatch_lines(
        [
            "*test_first_user left 2 things behind*",
            "*- open TCPServer *, created at:",
            "*- the hygiene gate could not track a wider fixture's objects (a nettest bug;"
            " it was not checked): RuntimeError: walk broke",
        ]
    )


_LAZY_CLIENT_POOL = """
import asyncio
import pytest
import pytest_asyncio
import nettest
from nettest import handlers

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server():
    async with nettest.TCPServer(handlers.echo) as server:
        yield server


class Pool:
    def __init__(self, address):
        self.address = address
        self.idle = []

    async def request(self, line):
        if not self.idle:
            self.idle.append(await asyncio.open_connection(*self.address))
        reader, writer = self.idle[0]
        writer.write(line)
        return await reader.readline()

    async def aclose(self):
        for _, writer in self.idle:
            writer.close()
            await writer.wait_closed()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(server):
    pool = Pool(server.address)
    yield pool
    await pool.aclose()


async def test_one(pool):
    assert await pool.request(b"a\\n") == b"a\\n"


async def test_two(pool):
    assert await pool.request(b"b\\n") == b"b\\n"
"""


def test_a_wider_fixtures_lazily_opened_connection_is_the_fixtures_in_strict_mode(
    pytester: pytest.Pytester,
) -> None:
    # The pool opens its connection while test_one runs: strict mode charged the
    # socket to test_one and closed it, and test_two failed on it.
    result = run(pytester, _LAZY_CLIENT_POOL, *STRICT)
    result.assert_outcomes(passed=2)


_NOT_THE_FIXTURES = """
import asyncio
import logging
import logging.handlers

import pytest
import pytest_asyncio
import nettest
from nettest import handlers

pytestmark = pytest.mark.asyncio(loop_scope="module")
log = logging.getLogger("app")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shutdown():
    return asyncio.Event()


@pytest.fixture(scope="module")
def log_buffer():
    handler = logging.handlers.MemoryHandler(10_000, flushLevel=logging.CRITICAL + 1)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)


async def serve_until(event):
    server = nettest.TCPServer(handlers.echo)
    await server.start()
    log.info("started %s", server)  # the log record keeps the server
    await event.wait()  # and the Event reaches this task's locals
    await server.aclose()


async def test_leaks(shutdown, log_buffer):
    asyncio.ensure_future(serve_until(shutdown))
    await asyncio.sleep(0.05)


async def test_after(shutdown, log_buffer):
    pass
"""


@pytest.mark.parametrize("mode", ["own", "strict"])
def test_what_a_wider_fixture_reaches_only_through_tasks_or_logs_is_still_the_tests(
    pytester: pytest.Pytester, mode: str
) -> None:
    # In a process of its own: before 1.4, pytest-asyncio closes the module's loop
    # with the leaked task pending, which this process would free later.
    result = run(
        pytester, _NOT_THE_FIXTURES, *STRICT[1:], f"--nettest-leaks={mode}", subprocess=True
    )
    # Before 1.4 pytest-asyncio does not cancel the task as the module's loop closes:
    # its late failure is then a second error, at test_after's teardown, and blames
    # test_leaks, as a late failure does.
    assert result.parseoutcomes()["passed"] == 2
    if any(line.startswith("ERROR") and "test_after" in line for line in result.outlines):
        result.stdout.fnmatch_lines(["*test_leaks is to blame, not this test*"])
    result.stdout.fnmatch_lines(
        [f"*test_leaks left * behind (--nettest-leaks={mode}):", "*- open TCPServer *"]
    )
