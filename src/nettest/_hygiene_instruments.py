"""The hygiene gate's instruments: what it installs to see tasks, loop errors and sockets.

Theory of operation
-------------------
The gate (`nettest._hygiene`) learns of most objects because nettest registers
them with `track`.  What it cannot learn that way it watches with the
instruments here, which `_Gate` inherits from `_Instruments`; the state they keep
is the gate's.

Every loop the gate watches (`_Instruments.instrument_loop`) gets an exception
handler that records each call, and a task factory that notes which test created
each task, as an attribute of the task (`_TASK_OWNER`): unlike a weak mapping,
that is still there when the garbage collector finalises the task in a reference
cycle.  A task that a test left running in ``own`` mode can fail after that test
ended ("Task exception was never retrieved"); the handler charges the failure to
the test that made the task, and the check of the test running at the time (or
the next check, between tests) reports it under that test's name.

Strict mode needs more: a wrapper round ``socket.socket.__init__`` that tracks
every Python socket with its stack (a socket that ``accept()`` makes belongs to
whoever owns the listening socket), wrappers round its ``close``, ``_real_close``
and ``detach`` that mark a tracked socket closed by the program, so that one
freed without them is reported as dropped while open (`_SocketRef`; its C
finaliser closes it, and only warns), the task factory's tracking of each
task with its stack, a wrapper round ``threading.Thread.start`` that notes who
started each thread, and the socket descriptors open before the test
(`open_socket_fds`).  A socket or task made on a thread other than the test's
is its thread's owner's, one made in a task its task's owner's, and the task
that ``asyncio.start_server`` makes for a connection is its socket's owner's
(`_Instruments.maker`): a wider-scoped fixture's thread or server works for
nobody's leak while a test runs.  That task, made in a loop callback, has none
of the test's frames on its stack: it is described by its server, where the
listening socket was made, and by its client (`_Instruments._served_connection`).
A socket that an asyncio transport's ``__del__`` closes was not closed by the
program.

Every session wraps ``asyncio.StreamWriter.__del__`` (`watch_writers`): Python
>= 3.11.5 closes a dropped writer's transport there and only warns.  The wrapper
tells the gate of the writer, which closes it without the warning when its test's
check will report it, or its test failed already (see `_Gate.writer_dropped`).
Older Pythons have no such finaliser; their TLS transport's, which warns the same
way, is wrapped instead.  Every session also wraps ``asyncio.BaseEventLoop``'s
``__init__`` and ``close`` (`watch_loops`) to note the test each loop is
made in: a connection found open on a loop the gate never watched
(``asyncio.run``'s) is that test's, and one open as a test's own loop closes is
reported against it.

With ``--nettest-leaks=strict`` they are installed for the whole session; a test
that a ``nettest_leaks("strict")`` marker makes strict gets the same ones from
``_Gate.begin`` to ``_Gate.end``.  Either way they record only for the test that is
being checked strictly (``_Gate.strict_owner``), so a test marked ``own`` in a
strict session is checked as in an ``own`` session.  When the gate closes a socket
it reports, `close_transports_over` closes the asyncio transports over it too, found
by what refers to the socket: a failed test's traceback keeps them alive, and they
would warn when collected.

Removing them takes out only the gate's own wrappers and factories: one that
someone installed over them stays, and ours, inside it, tracks nothing outside a
strict test.  The instruments run inside socket constructors, finalisers,
exception handlers and task factories: they never raise there.  A failure is
reported at the test's check.  A task the gate cancels is marked
(`cancelled_by_gate`): what its cancellation raises in a done callback (Python
3.11's streams do) is the gate's doing, and the exception handler drops it.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import concurrent.futures.thread
import contextlib
import functools
import gc
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import types
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._hygiene_report import (
    _UNSEEN,
    ASYNCIO_CHILD,
    ASYNCIO_LOOP,
    KILLED_LEFT_RUNNING,
    _describe,
    _LoopError,
    _made_by_a_runner,
    _socket_names,
    _SocketRef,
    _task_of,
    _Via,
    child_running,
    exit_not_taken,
    wait_for_children,
)

if TYPE_CHECKING:
    from ._hygiene_report import _Tracked

_T = TypeVar("_T")
#: Tasks carry the test that created them under this name (None: no test's).
_TASK_OWNER = "_nettest_owner"
#: Tasks the gate cancelled (or ended) carry True under this name (see `cancelled_by_gate`).
_GATE_CANCELLED = "_nettest_cancelled"


#: Seconds a cancelled task has to end before nettest ends it by force.
CANCEL_GRACE = 1.0


def force_end(task: asyncio.Task[Any]) -> str:
    """End a task that ignored its cancellation; say how, for a report.

    Its coroutine is closed (its ``finally`` blocks run, with `GeneratorExit`),
    then the task is cancelled again: its next step finds the coroutine closed
    and the task ends.  A coroutine that swallows `GeneratorExit` cannot be ended.
    """
    try:
        task.get_coro().close()
    except RuntimeError:
        return "ignored cancellation and GeneratorExit, and could not be ended"
    # Its step now fails for want of a coroutine: that failure is nettest's doing.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    cancelled_by_gate(task)
    task.cancel()
    return "ignored cancellation: nettest closed its coroutine"


def end_tasks(
    loop: asyncio.AbstractEventLoop, tasks: Iterable[asyncio.Future[Any]]
) -> tuple[set[asyncio.Future[Any]], dict[asyncio.Future[Any], str]]:
    """Cancel `tasks` on the stopped `loop` and run them to their end, as `asyncio.run` does.

    Each gets `CANCEL_GRACE` seconds; one that ignores its cancellation would
    hold the loop's close for ever, and is ended by force (`force_end`).
    Returns the tasks that ended, and how each one ended by force was ended.
    """
    tasks = set(tasks)
    for task in tasks:
        task.cancel()
    done, stuck = loop.run_until_complete(asyncio.wait(tasks, timeout=CANCEL_GRACE))
    forced = {task: force_end(cast("asyncio.Task[Any]", task)) for task in stuck}
    if stuck:
        done |= loop.run_until_complete(asyncio.wait(stuck, timeout=CANCEL_GRACE))[0]
    return done, forced


class _LastTest:
    """The last test that made a task on a loop (None: none yet)."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name: str | None = None


class _Instruments:
    """The hygiene gate's instruments, as methods that `_Gate` inherits.

    What they read and keep of the gate's state, and call of its methods, is
    `_Gate`'s: it is declared here for the type checker only.
    """

    if TYPE_CHECKING:
        owner: str | None
        acting_for: list[tuple[int, str | None]]
        tracked: list[_Tracked]
        loop_errors: list[_LoopError]
        running: set[str]
        silenced: set[str]
        strict_owner: str | None
        strict_fds_before: frozenset[tuple[int, int]]
        closed_with_loop: dict[str, list[str]]
        exempt_fds: set[tuple[int, int]]
        test_thread: int
        thread_owners: weakref.WeakKeyDictionary[threading.Thread, str | None]
        instrumented: weakref.WeakSet[asyncio.AbstractEventLoop]
        loop_tests: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LastTest]
        task_factories: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]
        socket_owners: weakref.WeakKeyDictionary[socket.socket, str | None]
        test_task_factories: list[tuple[asyncio.AbstractEventLoop, object, object]]
        socket_watcher: Callable[..., None] | None
        writer_watcher: Callable[..., None] | None
        loop_watchers: dict[str, Callable[..., None]]
        thread_starter: Callable[..., None] | None
        process_starter: Callable[..., None] | None
        socket_closers: dict[str, Callable[..., Any]]

        def owned_by(self, owner: str | None) -> contextlib.AbstractContextManager[None]: ...

        def track(
            self,
            obj: _T,
            *,
            what: str,
            is_open: Callable[[_T], bool],
            close: Callable[[_T], object],
            on_behalf_of: object = None,
            via: _Via | None = None,
        ) -> _T: ...

        def _track(
            self,
            obj: _T,
            what: str,
            is_open: Callable[[_T], bool],
            close: Callable[[_T], object],
            on_behalf_of: object,
            via: _Via | None,
        ) -> _Tracked | None: ...

        def _entry_of(self, obj: object) -> _Tracked | None: ...

        def _bookkeeping_failed(
            self, what: str, error: BaseException, owner: str | None = None
        ) -> None: ...

        def writer_dropped(
            self, writer: asyncio.StreamWriter, transport: object = None
        ) -> bool: ...

        def tls_transport_dropped(self, transport: asyncio.BaseTransport) -> bool: ...

        def left_on_closing_loop(
            self, loop: asyncio.BaseEventLoop, owner: str
        ) -> list[asyncio.BaseTransport]: ...

        def close_left_on_closed_loop(
            self, left: list[asyncio.BaseTransport], owner: str
        ) -> None: ...

        def listening_on_closing_loop(
            self, loop: asyncio.BaseEventLoop, owner: str
        ) -> list[socket.socket]: ...

        def close_listening_on_closed_loop(
            self, listening: list[socket.socket], owner: str
        ) -> None: ...

        def pending_on_closing_loop(
            self, loop: asyncio.BaseEventLoop, owner: str
        ) -> list[asyncio.Task[Any]]: ...

        def end_pending_on_closed_loop(
            self, tasks: list[asyncio.Task[Any]], owner: str
        ) -> None: ...

        failed: set[str]

    # -- loops ---------------------------------------------------------------

    def instrument_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Record the loop's exception-handler calls and which test creates each task.

        In strict mode the task factory also tracks the strict test's tasks.
        """
        if loop in self.instrumented:
            return
        self.instrumented.add(loop)
        previous_handler = loop.get_exception_handler()
        # Held by the handler too: a cycle's collection clears the weak mapping's
        # entry before the failed future in it calls the handler.
        last_test = self.loop_tests[loop] = _LastTest()

        def exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
            if _raised_by_the_gates_cancelling(context):
                return  # the gate's own doing: neither a test's failure nor worth a log line
            if not _a_handler_task_cancelled(context):  # asyncio's own, logged as ever
                self._record_loop_error(context, loop, last_test.name)
            if previous_handler is not None:
                previous_handler(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(exception_handler)
        self._install_task_factory(loop)

    def _record_loop_error(
        self, context: dict[str, object], loop: asyncio.AbstractEventLoop, last_test: str | None
    ) -> None:
        """Charge an exception-handler call to the test that made its task, if known.

        A task's failure that comes after the test that made it ended (a task
        left running in ``own`` mode) is reported by the check of the test
        running now, or by the next check, as that test's; never as this one's.
        So is a call on a loop that has closed (a failed future the garbage
        collector finalised late): it is the last test's that ran on that loop;
        and one made while no test runs (a collection between a test's phases).
        """
        with contextlib.suppress(Exception):  # never break the loop's handler
            if getattr(context.get("protocol"), "reports_its_fatal_errors", False):
                return  # a nettest server's: it records the error, and raises it itself
            current = self.owner
            task = _task_of(context)
            if task is not None:
                maker = getattr(task, _TASK_OWNER, _UNSEEN)
            elif (loop.is_closed() or current is None) and last_test is not None:
                # Or between a test's phases, as an automatic collection may free
                # it before the test's teardown: the last test that ran on it.
                maker = last_test
            else:  # on a live loop, with no task: no maker to know
                self.loop_errors.append(_LoopError(current, dict(context), current))
                return
            if not isinstance(maker, str) or maker == current or maker in self.running:
                owner = maker if isinstance(maker, str) else current
                self.loop_errors.append(_LoopError(owner, dict(context), maker))
            elif maker not in self.silenced:
                late = _LoopError(current, dict(context), maker, for_next_check=current is None)
                self.loop_errors.append(late)

    def _install_task_factory(
        self, loop: asyncio.AbstractEventLoop, *, for_test: bool = False
    ) -> None:
        previous_factory = loop.get_task_factory()
        gate = self

        def task_factory(
            loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
        ) -> asyncio.Future[Any]:
            if previous_factory is not None:
                task = previous_factory(loop, coro, **kwargs)
            else:
                task = _TASK_CLASS(coro, loop=loop, **kwargs)
            via = None
            served = gate._served_connection(sys._getframe(1))
            if served is not None:
                owner, via = served
            else:
                try:
                    owner = gate.maker()
                except Exception:  # never break the caller's task
                    owner = gate.owner
            # Which test made it, for a failure that comes after that test ended.
            # An attribute, unlike a weak mapping, is still there when the
            # garbage collector finalises the task in a reference cycle.
            try:
                setattr(task, _TASK_OWNER, owner)
            except Exception:  # another factory's future type without attributes
                pass
            if owner is not None and loop in gate.loop_tests:
                gate.loop_tests[loop].name = owner
            if (
                owner is not None
                and owner == gate.strict_owner
                # Made by the runner before it runs the loop: how the test runs.
                and (loop.is_running() or not _made_by_a_runner(sys._getframe(1)))
            ):
                gate.track(task, what="pending task", is_open=_pending, close=_cancel, via=via)
            return task

        loop.set_task_factory(task_factory)
        if for_test:
            self.test_task_factories.append((loop, task_factory, previous_factory))
        else:
            self.task_factories[loop] = task_factory

    def maker(self) -> str | None:
        """Who owns what is being made now: the test running, unless made elsewhere.

        On a thread other than the test's, the owner of the thread (`watch_threads`,
        `serves_on`); in a task, the task's owner (`_TASK_OWNER`): a wider-scoped
        fixture's background task, or a plain asyncio server's connection task,
        makes what it makes for its own owner, whichever test runs at the time.
        Inside `_Gate.made_for`, the owner of the object it names, before all.
        """
        for thread, owner in reversed(self.acting_for):
            if thread == threading.get_ident():
                return owner
        owner = self.owner
        if threading.get_ident() != self.test_thread:
            owner = self.thread_owners.get(threading.current_thread(), owner)
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no loop running on this thread
            return owner
        task_owner = getattr(task, _TASK_OWNER, _UNSEEN)
        return owner if task_owner is _UNSEEN else cast("str | None", task_owner)

    def _served_connection(
        self, frame: types.FrameType | None
    ) -> tuple[str | None, _Via | None] | None:
        """Whose task `frame`'s callers make, and what made it, if it runs a connection's handler.

        ``asyncio.start_server``'s ``client_connected_cb`` runs in a task that
        ``StreamReaderProtocol.connection_made`` makes, in a loop callback: no task
        is current there, and none of the test's frames is on the stack.  So does
        a task that any protocol's ``connection_made`` starts (a
        ``loop.create_server`` protocol's, aiohttp's request handler's).  The
        connection's socket knows who owns the server (an accepted socket is its
        listening socket's owner's, strict mode), and that listening socket's
        entry where the server was started: the report says so, with the client
        the task serves.  Returns None for any other task, or a socket strict
        mode did not see made.
        """
        try:  # never let bookkeeping break the caller's task
            for _ in range(4):  # another factory, or the loop's create_task, in between
                if frame is None:
                    break
                transport = _connection_made_transport(frame)
                if transport is not None:
                    sock = transport.get_extra_info("socket")
                    # asyncio hands out a TransportSocket; the watched socket is inside.
                    sock = getattr(sock, "_sock", sock)
                    owner = self.socket_owners.get(sock, _UNSEEN)
                    if owner is _UNSEEN:
                        return None
                    if owner is None or owner != self.strict_owner:
                        return cast("str | None", owner), None  # not tracked: nothing to say
                    return owner, self._server_of(sock, transport)
                frame = frame.f_back
        except Exception:
            pass
        return None

    def _server_of(self, sock: socket.socket, transport: asyncio.BaseTransport) -> _Via | None:
        """What a report says made a connection's handler task: the server, and its client.

        The entry of the listening socket that accepted `sock` has the stack of
        the ``start_server`` call (or of the socket passed to it as ``sock``).
        """
        accepted = self._entry_of(sock)
        if accepted is None or accepted.via is None:
            return None
        peer = transport.get_extra_info("peername")
        if peer:
            how = f"the handler task for the connection from {peer!r} of an asyncio server"
        else:  # a Unix socket's client has no name
            how = "the handler task for a connection to an asyncio server"
        return _Via(how, accepted.via.parent, made="started")

    def _uninstall_test_task_factories(self) -> None:
        """Give each loop back the task factory it had before the strict test."""
        for loop, ours, previous in self.test_task_factories:
            # Someone who replaced ours since keeps theirs; ours, if they call it, is
            # inert outside a strict test.
            with contextlib.suppress(Exception):
                if loop.get_task_factory() is ours:
                    loop.set_task_factory(previous)  # type: ignore[arg-type]
        self.test_task_factories.clear()

    def note_pending_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        """Mark `loop`'s tracked tasks that are still pending, then cancel them.

        Called just before pytest-asyncio closes the loop.  The tasks are cancelled
        and run to completion here (as `asyncio.run` does), so that none is left
        to be destroyed pending, and reported again, during a later test.
        """
        pending: dict[asyncio.Future[Any], _Tracked] = {}
        for item in self.tracked:
            obj = item.ref()
            if isinstance(obj, asyncio.Future) and not obj.done() and obj.get_loop() is loop:
                if _finishing_by_itself(obj):
                    continue  # the runner cancels it as the loop closes: not reported
                item.open_at_loop_close = True
                item.what = f"pending task {obj!r}"
                pending[obj] = item
        if pending and not loop.is_closed() and not loop.is_running():
            for task in pending:
                cancelled_by_gate(task)
            _, forced = end_tasks(loop, pending)
            for task, how in forced.items():
                pending[task].what += f" that {how}"
        self.note_sockets_closing_with(loop)

    def note_sockets_closing_with(self, loop: asyncio.AbstractEventLoop) -> None:
        """Before uvloop's loop closes, report and close the strict test's sockets on it.

        uvloop's ``close()`` closes every handle still open, warning for each:
        the check after the test would find nothing open, and under
        ``error::ResourceWarning`` the warning stops uvloop's close half-way (it
        then fails with EBUSY, or hangs).  So the transports and servers over the
        sockets the strict test opened and left open are noted for its check
        (`closed_with_loop`) and closed here, as the gate closes what it reports.
        Only when a socket looks leaked does this look for them.
        """
        owner = self.strict_owner
        if owner is None or loop.is_closed() or not is_uvloop(loop):
            return
        leaked = dict(self.sockets_opened_since(self.strict_fds_before))
        if not leaked:
            return
        items = self.closed_with_loop.setdefault(owner, [])
        try:
            for kind, fd, inode in close_uvloop_handles_over(leaked):
                what = (
                    f"{kind} over an open socket (fd {fd}, inode {inode}){_socket_names(fd)}, "
                    "left open on its uvloop event loop"
                )
                items.append(_describe(what, None))
        except Exception as error:  # never raise from a fixture's finaliser
            self._bookkeeping_failed("uvloop transport", error)

    # -- sockets -------------------------------------------------------------

    def sockets_opened_since(
        self, fds_before: frozenset[tuple[int, int]]
    ) -> frozenset[tuple[int, int]]:
        """``(fd, inode)`` of the sockets open now that were not before, nor are exempt."""
        return open_socket_fds() - fds_before - self.exempt_fds

    def watch_socket_creation(self) -> None:
        """Track every Python socket a strict test creates, with its stack.

        A socket that ``accept()`` makes belongs to whoever owns the listening
        socket: a connection to a module-scoped server is that server's, even
        when a test made it.  A tracked socket freed while open is reported as
        dropped while open (see `_watch_closing`), and who starts each thread
        (`_watch_threads`).  Installed for the session in strict mode, and by
        `begin` for a test that a marker makes strict.  The wrapper round
        ``asyncio.StreamWriter.__del__`` that reports a writer dropped without
        ``close()`` against its socket is every session's (`watch_writers`).
        """
        self._watch_closing()
        self._watch_threads()
        self._watch_processes()
        if self._watching_sockets():
            return
        original_init = socket.socket.__init__
        gate = self

        def __init__(sock: socket.socket, *args: Any, **kwargs: Any) -> None:
            original_init(sock, *args, **kwargs)
            # Never let bookkeeping break the caller's socket.
            try:
                owner = gate.maker()
                via = None
                caller = sys._getframe(1)
                if caller.f_code is _SOCKET_ACCEPT:
                    listener = caller.f_locals.get("self")
                    owner = gate.socket_owners.get(listener)  # type: ignore[arg-type]
                    # Its stack is socket.py's and the loop's: where the listening
                    # socket was made says which server it was.
                    parent = gate._entry_of(listener)
                    if parent is not None:
                        via = _Via("accepted by a listening socket", parent)
                gate.socket_owners[sock] = owner
            except Exception as error:
                gate._bookkeeping_failed("socket", error)
                return
            if owner is not None and owner == gate.strict_owner:
                with gate.owned_by(owner):
                    try:
                        close = socket.socket.close
                        entry = gate._track(sock, "socket", _socket_open, close, None, via)
                        if entry is not None:
                            # Tells the entry if the socket is freed open (`_SocketRef`).
                            fileno = kwargs.get("fileno", args[3] if len(args) > 3 else None)
                            entry.ref = _SocketRef(sock, entry, describe=fileno is not None)
                    except Exception as error:
                        gate._bookkeeping_failed("socket", error)

        __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
        socket.socket.__init__ = __init__  # type: ignore[method-assign, assignment]
        self.socket_watcher = __init__

    def watch_writers(self) -> None:
        """Wrap ``asyncio.StreamWriter.__del__`` (Python >= 3.11.5): see `writer_dropped`.

        A writer dropped without ``close()`` is then reported against its socket
        (strict mode), and one that its test's check reports, or that a failed
        test dropped, is closed without the ResourceWarning (every mode).  Older
        Pythons have no such finaliser: a dropped writer's transport stays alive
        while its loop watches its socket, except a TLS transport, whose own
        ``__del__`` is wrapped instead (`tls_transport_dropped`).
        """
        original_del = vars(_FINALISED).get("__del__")
        if original_del is None or original_del is self.writer_watcher:
            return
        writers = _FINALISED is asyncio.StreamWriter
        closed_quietly = self.writer_dropped if writers else self.tls_transport_dropped

        def __del__(obj: Any, *args: Any, **kwargs: Any) -> None:
            if not closed_quietly(obj):  # unless the gate closed it quietly
                original_del(obj, *args, **kwargs)

        # Named as the original (and __wrapped__ set): a warning it raises is
        # reported as raised in the original's ``__del__``, as without the gate.
        functools.update_wrapper(__del__, original_del)
        _FINALISED.__del__ = __del__  # type: ignore[attr-defined]
        self.writer_watcher = __del__

    def watch_loops(self) -> None:
        """Wrap ``asyncio.BaseEventLoop``'s ``__init__`` and ``close``: know each test's loops.

        A loop made in a test, on the test's thread, is that test's own: one
        pytest-asyncio makes for it, or `asyncio.run` in it.  What is found open on
        one the gate never watched is then that test's, not the test that happens
        to run as it turns up (see `_test_of`); and what is still open as it closes
        is closed and reported against its test (`left_on_closing_loop`).  A wider
        fixture's loop, or one made on another thread, is no test's.
        """
        original_init = vars(asyncio.BaseEventLoop)["__init__"]
        original_close = vars(asyncio.BaseEventLoop)["close"]
        if self.loop_watchers.get("close") is original_close:
            return
        gate = self

        def __init__(loop: asyncio.BaseEventLoop) -> None:
            original_init(loop)
            owner = gate.owner
            if owner is not None and threading.get_ident() == gate.test_thread:
                with contextlib.suppress(Exception):
                    setattr(loop, _MADE_IN, owner)

        def close(loop: asyncio.BaseEventLoop) -> None:
            owner = gate.owner
            left: list[asyncio.BaseTransport] = []
            listening: list[socket.socket] = []
            pending: list[asyncio.Task[Any]] = []
            if owner is not None and not loop.is_closed() and made_in_test(loop) == owner:
                left = gate.left_on_closing_loop(loop, owner)
                listening = gate.listening_on_closing_loop(loop, owner)
                # pytest-asyncio 1.0 closes an interrupted test's loop with the task
                # that ran the test still pending: that follows from its failure.
                # And close() on a running loop raises, and the loop goes on.
                interrupted = owner in gate.failed and _closed_by_a_runner(sys._getframe(1))
                if not loop.is_running() and not interrupted:
                    pending = gate.pending_on_closing_loop(loop, owner)
            original_close(loop)
            if owner is not None and loop.is_closed():
                if left:
                    gate.close_left_on_closed_loop(left, owner)
                if listening:
                    gate.close_listening_on_closed_loop(listening, owner)
                if pending:
                    gate.end_pending_on_closed_loop(pending, owner)

        for name, wrapper, original in (
            ("__init__", __init__, original_init),
            ("close", close, original_close),
        ):
            functools.update_wrapper(wrapper, original)
            setattr(asyncio.BaseEventLoop, name, wrapper)
            self.loop_watchers[name] = wrapper

    def unwatch_loops(self) -> None:
        # Only our wrappers are removed: one installed over them stays.
        for name, wrapper in self.loop_watchers.items():
            if vars(asyncio.BaseEventLoop).get(name) is wrapper:
                setattr(asyncio.BaseEventLoop, name, vars(wrapper)["__wrapped__"])
        self.loop_watchers.clear()

    def _watch_closing(self) -> None:
        """Mark each tracked socket that the program closes, for `_SocketRef`.

        A socket's C finaliser closes one freed while open before the weak
        reference's callback runs: only these wrappers tell one the program
        closed.  ``close()`` (and so a ``with`` block, and a transport's closing),
        ``_real_close()`` (``close()``'s, once its ``makefile()`` files are
        closed, and `ssl.SSLSocket`'s, which calls it), and ``detach()`` (its
        descriptor handed elsewhere: `ssl.SSLContext.wrap_socket` detaches the
        socket it wraps).  Each only sets a flag on the socket's `_SocketRef`, if
        it has one, before calling the original.
        """
        for name in _CLOSERS:
            original = vars(socket.socket)[name]
            if original is not self.socket_closers.get(name):
                closer = self.socket_closers[name] = _closer(original)
                setattr(socket.socket, name, closer)

    def _watch_threads(self) -> None:
        """Note who starts each thread: what is made on it is theirs (see `maker`).

        A thread started by a test is the test's; one that a wider-scoped
        fixture starts as it is set up is nobody's, whichever test runs as it
        makes sockets and tasks.  A thread started on another thread is that
        thread's owner's.  Not recorded: a thread that nettest noted already (a
        server's loop thread, `serves_on`), and a thread pool's worker, which
        runs whatever is submitted to it, for whichever test submits it.

        A strict test's own threads that are not daemons are tracked too: one
        still running after the test keeps the interpreter from exiting, so the
        session hangs at its end, blamed on no test.
        """
        original_start = threading.Thread.start
        if original_start is self.thread_starter:
            return
        gate = self

        def start(thread: threading.Thread, *args: Any, **kwargs: Any) -> None:
            try:  # never let bookkeeping break the caller's thread
                if (
                    thread not in gate.thread_owners
                    and getattr(thread, "_target", None) is not _POOL_WORKER
                ):
                    owner = gate.thread_owners[thread] = gate.maker()
                    if owner is not None and owner == gate.strict_owner and not thread.daemon:
                        with gate.owned_by(owner):
                            gate._track(thread, "thread", _is_running, _unstoppable, None, None)
            except Exception as error:
                gate._bookkeeping_failed("thread", error)
            original_start(thread, *args, **kwargs)

        functools.update_wrapper(start, original_start)
        threading.Thread.start = start  # type: ignore[method-assign, assignment]
        self.thread_starter = start

    def _watch_processes(self) -> None:
        """Track the child processes a strict test starts, with their stacks.

        A child left running outlives the test, and the session: it holds its
        ports and files, and nothing reports it (Python warns only once its
        ``Popen`` is freed, and asyncio's transport for one that runs is never
        freed).  ``subprocess.Popen`` starts them all, asyncio's included.
        """
        original_init = vars(subprocess.Popen)["__init__"]
        if original_init is self.process_starter:
            return
        gate = self

        def __init__(popen: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            original_init(popen, *args, **kwargs)
            try:  # never let bookkeeping break the caller's process
                owner = gate.maker()
                if owner is not None and owner == gate.strict_owner:
                    if _started_by_asyncio(sys._getframe(1)):
                        setattr(popen, ASYNCIO_CHILD, True)
                        with contextlib.suppress(RuntimeError):  # no loop: none to wait for
                            setattr(popen, ASYNCIO_LOOP, weakref.ref(asyncio.get_running_loop()))
                    with gate.owned_by(owner):
                        gate._track(popen, "process", child_left, end_child, None, None)
            except Exception as error:
                gate._bookkeeping_failed("process", error)

        functools.update_wrapper(__init__, original_init)
        subprocess.Popen.__init__ = __init__  # type: ignore[method-assign, assignment]
        self.process_starter = __init__

    def unwatch_socket_creation(self) -> None:
        # Only our wrappers are removed: one installed over them stays, and ours,
        # inside it, records nothing outside a strict test.
        if self._watching_sockets():
            socket.socket.__init__ = self.socket_watcher.__wrapped__  # type: ignore[method-assign, union-attr]
        self.socket_watcher = None
        for name, closer in self.socket_closers.items():
            if vars(socket.socket).get(name) is closer:
                setattr(socket.socket, name, closer.__wrapped__)
        self.socket_closers.clear()
        starter = self.thread_starter
        if starter is not None and vars(threading.Thread).get("start") is starter:
            threading.Thread.start = vars(starter)["__wrapped__"]  # type: ignore[method-assign]
        self.thread_starter = None
        process_starter = self.process_starter
        if process_starter is not None and vars(subprocess.Popen)["__init__"] is process_starter:
            subprocess.Popen.__init__ = vars(process_starter)["__wrapped__"]  # type: ignore[method-assign]
        self.process_starter = None

    def unwatch_writers(self) -> None:
        # Only our wrapper is removed: one installed over it stays.
        watcher = self.writer_watcher
        if watcher is not None and vars(_FINALISED).get("__del__") is watcher:
            _FINALISED.__del__ = vars(watcher)["__wrapped__"]  # type: ignore[attr-defined]
        self.writer_watcher = None

    def watching_writers(self) -> bool:
        watcher = self.writer_watcher
        return watcher is not None and vars(_FINALISED).get("__del__") is watcher

    def _watching_sockets(self) -> bool:
        return self.socket_watcher is not None and socket.socket.__init__ is self.socket_watcher


def _closer(original: Callable[..., _T]) -> Callable[..., _T]:
    """Wrap a method of ``socket.socket`` that closes a socket: mark it closed first."""

    def closer(sock: socket.socket, *args: Any, **kwargs: Any) -> _T:
        try:  # never let bookkeeping break the caller's close
            if not _closed_by_transport_finaliser(sys._getframe(1)):
                for ref in weakref.getweakrefs(sock):
                    if type(ref) is _SocketRef:
                        ref.closed = True
        except Exception:
            pass
        return original(sock, *args, **kwargs)

    # Named as the original (and __wrapped__ set), for tracebacks and help().
    functools.update_wrapper(closer, original)
    return closer


def _closed_by_transport_finaliser(frame: types.FrameType | None) -> bool:
    """Whether an asyncio transport's ``__del__`` is closing the socket, past socket.py's frames.

    A transport dropped while open closes its socket as it is freed, and only
    warns: that is not the program closing it.
    """
    while frame is not None and frame.f_code in _CLOSING_CODES:
        frame = frame.f_back
    return (
        frame is not None
        and frame.f_code.co_name == "__del__"
        and isinstance(frame.f_locals.get("self"), asyncio.BaseTransport)
    )


def open_transports_on(loop: asyncio.BaseEventLoop) -> list[asyncio.BaseTransport]:
    """The socket transports still open on `loop`.

    A connection or endpoint open as its loop closes can never be closed by the
    program now: it warns "unclosed transport" when the garbage collector frees
    it, in whichever test runs then.  Read from the loop's own weak map of its
    transports by descriptor (a selector loop's ``_transports``; its selector
    no longer watches a connection that has read its EOF), so finding them
    costs nothing like a heap scan.
    """
    transports = getattr(loop, "_transports", None)
    if transports is None:  # not a selector loop
        return []
    return [
        transport
        for transport in list(transports.values())
        if isinstance(transport, asyncio.BaseTransport)
        and not transport.is_closing()
        and isinstance(getattr(transport, "_sock", None), socket.socket)
    ]


def listening_sockets_on(loop: asyncio.BaseEventLoop) -> list[socket.socket]:
    """The listening sockets `loop` accepts connections on for its servers.

    A server the program never closed is freed with its loop, and its listening
    socket warns "unclosed" from the selector's ``close()``, with no stack.  A
    selector loop watches each one with a reader whose callback is its
    ``_accept_connection``, the socket among the arguments.
    """
    selector = getattr(loop, "_selector", None)
    accept = getattr(asyncio.selector_events.BaseSelectorEventLoop, "_accept_connection", None)
    if selector is None or accept is None:  # not a selector loop
        return []
    found: list[socket.socket] = []
    for key in list(selector.get_map().values()):
        reader = key.data[0] if isinstance(key.data, tuple) else None
        callback = getattr(reader, "_callback", None)
        if getattr(callback, "__func__", None) is accept:
            found.extend(
                arg
                for arg in getattr(reader, "_args", ())
                if isinstance(arg, socket.socket) and arg.fileno() != -1
            )
    return found


def transport_stack(transport: asyncio.BaseTransport) -> list[asyncio.BaseTransport]:
    """`transport`, then the TLS transport over it, if any."""
    stack = [transport]
    protocol = transport.get_protocol()
    if isinstance(protocol, asyncio.sslproto.SSLProtocol):
        app = getattr(protocol, "_app_transport", None)
        if isinstance(app, asyncio.BaseTransport):
            stack.append(app)
    return stack


def close_transports_over(sockets: Sequence[socket.socket]) -> None:
    """Close the asyncio transports over `sockets`, which the gate is about to close.

    The gate closes a socket it reports with ``socket.socket.close``: the transport
    over it, and a StreamWriter over that, would still look open.  A failed test's
    traceback keeps them alive until the session ends, when the transport's
    finaliser warns "unclosed transport" and the writer's "loop is closed", blamed
    on no test.  So each transport over one of `sockets` is closed too, with the
    TLS transport over it, if any: aborted, on its loop's thread, while its loop is
    open; left closed as `close_transports_after_their_loop` leaves it (its socket
    closed under it) once its loop has closed.

    The transports are found by the objects that refer to each socket, in one scan
    of the heap for all of `sockets` (this runs only when a leak is released).
    """
    from ._server_base import _loop_thread_call, close_transports_after_their_loop  # a cycle

    transports = _transports_over(sockets)
    for transport in transports:
        stack = transport_stack(transport)
        loop = getattr(transport, "_loop", None)
        if not isinstance(loop, asyncio.AbstractEventLoop) or loop.is_closed():
            close_transports_after_their_loop(stack)
        else:  # aborted, the socket's first, on the thread that runs the loop
            _loop_thread_call(loop, functools.partial(_abort_all, stack))


def _abort_all(transports: Sequence[asyncio.BaseTransport]) -> None:
    """Abort `transports` in order: the socket's own first, then the TLS one over it."""
    for transport in transports:
        with contextlib.suppress(Exception):
            cast("asyncio.WriteTransport", transport).abort()


def _transports_over(sockets: Sequence[socket.socket]) -> list[asyncio.BaseTransport]:
    """The asyncio transports whose socket is one of `sockets`, found by their referrers.

    A transport refers to its socket itself, or (Python 3.10, or once its
    ``__dict__`` was asked for) through its instance dictionary.
    """
    wanted = {id(sock): sock for sock in sockets}

    def holds(candidate: object) -> bool:
        return wanted.get(id(getattr(candidate, "_sock", None))) is getattr(
            candidate, "_sock", None
        )

    found: dict[int, asyncio.BaseTransport] = {}
    dicts = []
    for referrer in gc.get_referrers(*sockets):
        if isinstance(referrer, asyncio.BaseTransport) and holds(referrer):
            found[id(referrer)] = referrer
        elif isinstance(referrer, dict):
            held = referrer.get("_sock")
            if held is not None and wanted.get(id(held)) is held:
                dicts.append(referrer)
    if dicts:
        for referrer in gc.get_referrers(*dicts):
            if isinstance(referrer, asyncio.BaseTransport) and holds(referrer):
                found[id(referrer)] = referrer
    return list(found.values())


def open_transports_on_closed(
    loops: Sequence[asyncio.AbstractEventLoop], unwatched: Callable[[object], bool]
) -> list[asyncio.BaseTransport]:
    """The transports on closed loops still open: they will warn as they are freed.

    Socket transports that hold an open socket, and TLS transports never closed
    (the one under them may be: the peer closed it), on `loops` and on any loop
    for which `unwatched` is true (one the gate never watched: ``asyncio.run``'s,
    say).  Nothing closes them now: each warns "unclosed transport" when the
    garbage collector frees it, in whatever test runs then.  Found by one scan of
    the heap.
    """
    wanted = {id(loop) for loop in loops if loop.is_closed()}
    found = []
    for obj in gc.get_objects():
        if not isinstance(obj, asyncio.BaseTransport):
            continue
        loop = getattr(obj, "_loop", None)
        sock = getattr(obj, "_sock", None)
        still_open = (isinstance(sock, socket.socket) and sock.fileno() != -1) or (
            isinstance(obj, asyncio.sslproto._SSLProtocolTransport) and not obj.is_closing()
        )
        if (
            still_open
            and isinstance(loop, asyncio.AbstractEventLoop)
            and (id(loop) in wanted or (loop.is_closed() and unwatched(loop)))
        ):
            found.append(obj)
    return found


def close_after_their_loop(transports: Sequence[asyncio.BaseTransport]) -> None:
    """Leave `transports`, on closed loops, closed (see `close_transports_after_their_loop`).

    For TLS transports whose own socket transport has closed already (the peer
    closed it): only the mark is missing, or each warns "unclosed transport".
    """
    from ._server_base import close_transports_after_their_loop  # a cycle

    for transport in transports:
        with contextlib.suppress(Exception):
            close_transports_after_their_loop([transport])


def _pending(task: asyncio.Future[Any]) -> bool:
    return not task.done()


def _policy_loop_fds() -> set[int]:
    """The self-pipe descriptors of the thread's current event loop.

    ``asyncio.get_event_loop()`` creates that loop implicitly (pytest plugins call
    it), and the policy keeps it for the whole process: it is nobody's leak.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
    loop = getattr(getattr(policy, "_local", None), "_loop", None)
    fds: set[int] = set()
    for name in ("_ssock", "_csock"):
        sock = getattr(loop, name, None)
        if isinstance(sock, socket.socket) and sock.fileno() != -1:
            fds.add(sock.fileno())
    return fds


#: Seconds a killed child process is given to end.
CHILD_END_WAIT = 5.0


_ASYNCIO_DIR = os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep


def _started_by_asyncio(frame: types.FrameType | None) -> bool:
    """Whether the ``Popen`` being made is an asyncio subprocess transport's."""
    return frame is not None and frame.f_code.co_filename.startswith(_ASYNCIO_DIR)


#: asyncio's accept task for a new connection: it waits once, until the connection
#: is made (a TLS server's handshake), and ends as soon as it runs after that.
_ACCEPT_TASK = "_accept_connection2"


def _finishing_by_itself(task: asyncio.Future[Any]) -> bool:
    """Whether `task` is asyncio's accept task whose wait is over.

    On Python 3.11, a TLS server's accept task (``_accept_connection2``) whose
    handshake just failed is still pending as the test ends: one more turn of
    the loop ends it, and no test holds it or could wait for it.  Any other
    task whose wait is over may wait again (``StreamReader.read()`` does until
    EOF): it is reported as usual.
    """
    get_coro = getattr(task, "get_coro", None)
    code = getattr(get_coro() if get_coro is not None else None, "cr_code", None)
    if code is None or code.co_name != _ACCEPT_TASK:
        return False
    if not code.co_filename.startswith(_ASYNCIO_DIR):
        return False
    waiting = getattr(task, "_fut_waiter", None)
    return waiting is None or bool(waiting.done())


def end_asyncio_children(children: Iterable[subprocess.Popen[Any]]) -> None:
    """Kill the asyncio children still running after their grace.

    Each is marked so that the report still says it was left running.  The
    check kills them before its garbage collection, and waits there for asyncio's
    watcher to let go of them (`child_watchers`).  Never raises.
    """
    for popen in children:
        with contextlib.suppress(Exception):
            if getattr(popen, ASYNCIO_CHILD, False) and child_running(popen):
                os.kill(popen.pid, signal.SIGKILL)
                setattr(popen, KILLED_LEFT_RUNNING, True)


def child_watchers(pids: set[int]) -> list[threading.Thread]:
    """asyncio's child watcher threads still waiting for the children `pids`.

    On Python 3.10 and 3.11, asyncio's child watcher waits for each child on a
    thread of its own (``waitpid-N``), which holds the child's transport, pipes
    and ``Popen`` until the child ends, and lets go of them (warning "unclosed
    transport" if their loop is closed) as it ends.  A pidfd watcher (3.12+)
    has no threads.
    """
    found = []
    with contextlib.suppress(Exception):
        for thread in threading.enumerate():
            args = getattr(thread, "_args", ())  # (loop, pid, callback, args)
            if "waitpid-" in thread.name and pids.intersection(args[:2]):
                found.append(thread)
    return found


def join_all(threads: Iterable[threading.Thread], deadline: float) -> None:
    """Wait until `threads` have ended, or until `deadline` (monotonic) for them all."""
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def child_left(popen: subprocess.Popen[Any]) -> bool:
    """Whether a test left a child process behind: running, or never waited for.

    A ``Popen`` whose child ended unreaped warns "subprocess N is still
    running" as it is freed, in whichever test runs then.  asyncio's child
    watcher waits for its transports' children itself: one is left if it still
    runs, or if it ended after its loop closed, so that its transport can never
    close (`exit_not_taken`).
    """
    if getattr(popen, KILLED_LEFT_RUNNING, False):
        return True
    if getattr(popen, ASYNCIO_CHILD, False):
        return child_running(popen) or exit_not_taken(popen)
    return popen.returncode is None


def end_child(popen: subprocess.Popen[Any]) -> None:
    """End a child process a test left running: kill it and wait until it has ended.

    Killed only while it is a child not yet reaped, whose pid cannot have been
    reused.  A ``Popen`` the test made itself is then reaped and its pipes
    closed; asyncio's child watcher reaps one of its transports, whose pipe
    transports own its pipes.  Never raises.
    """
    with contextlib.suppress(Exception):
        if getattr(popen, KILLED_LEFT_RUNNING, False):
            delattr(popen, KILLED_LEFT_RUNNING)  # killed by the check already, now reported
        if child_running(popen):
            os.kill(popen.pid, signal.SIGKILL)
            wait_for_children([popen], time.monotonic() + CHILD_END_WAIT)
        if not getattr(popen, ASYNCIO_CHILD, False):
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(CHILD_END_WAIT)
            for pipe in (popen.stdin, popen.stdout, popen.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()


def socket_transport_under(transport: object) -> asyncio.BaseTransport | None:
    """The socket transport under a TLS transport (None for any other)."""
    return getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)


def finalised_open(transport: asyncio.BaseTransport) -> bool:
    """Whether a TLS transport looks closed only because its finaliser has run.

    A garbage collection that frees a dropped writer runs the finalisers of
    everything in its cycle, in an order of its own.  When the TLS transport's
    comes first (Python 3.11+), it marks the transport closed, warning
    "unclosed transport", and leaves the connection up: its protocol is still
    wrapped (or in its handshake).  ``close()`` or ``abort()``, or the
    connection's loss, would have moved the protocol on.
    """
    if not transport.is_closing():
        return False
    state = getattr(getattr(transport, "_ssl_protocol", None), "_state", None)
    return getattr(state, "name", None) in ("DO_HANDSHAKE", "WRAPPED")


#: The attribute naming the test a loop was made in, on its thread (`watch_loops`):
#: on the loop itself, as a weak mapping loses it when the loop is freed in one
#: garbage collection with the connections whose finalisers ask.
_MADE_IN = "_nettest_made_in"


def _closed_by_a_runner(frame: types.FrameType | None) -> bool:
    """Whether the ``close()`` called from `frame` is a runner's (not the test's).

    The loop's class's own ``close()`` (the selector loop's, looptime's) calls
    ``BaseEventLoop.close()``: whose call it is, is the first frame past those.
    """
    while frame is not None and frame.f_code.co_name == "close":
        frame = frame.f_back
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    return isinstance(module, str) and (
        module == "asyncio.runners"
        or module.startswith("backports.asyncio.runner")  # pytest-asyncio's, on 3.10
        or module.partition(".")[0] == "pytest_asyncio"
    )


def made_in_test(loop: object) -> str | None:
    """The test `loop` was made in, on its thread, if any (see `watch_loops`)."""
    name = getattr(loop, _MADE_IN, None)
    return name if isinstance(name, str) else None


def close_dropped(
    transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop | None
) -> None:
    """Close a connection being finalised (a writer's transport), without a warning.

    Its test's check lists it (under its failure, if it failed), and the
    finaliser's ResourceWarning would fail the test first, or a second time.  On
    a closed `loop` nothing can close the transport: the socket under a real
    connection is closed, and its transports left closed
    (`close_transports_after_their_loop`), or the transport would warn
    "unclosed transport" as it is freed next.  Never raises.
    """
    from ._server_base import close_transports_after_their_loop  # a cycle

    with contextlib.suppress(Exception):
        if loop is not None and not loop.is_closed():
            transport.close()
            return
        # Over TLS, the transport that owns the socket is under the writer's.
        under = socket_transport_under(transport)
        stack = [transport] if under is None else [under, transport]
        if isinstance(getattr(stack[0], "_sock", None), socket.socket):
            close_transports_after_their_loop(stack)


def _is_running(thread: threading.Thread) -> bool:
    return thread.is_alive()


def _unstoppable(thread: threading.Thread) -> None:
    """Python cannot stop a thread: the gate only reports one left running."""


def _socket_open(sock: socket.socket) -> bool:
    return sock.fileno() != -1


def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel `task` on its loop's thread: a server thread's loop runs on its own."""
    from ._server_base import _loop_thread_call  # a cycle

    _loop_thread_call(task.get_loop(), task.cancel)


def cancelled_by_gate(task: asyncio.Future[Any]) -> None:
    """Note that the gate is cancelling `task`: what its cancellation raises is not a leak.

    An attribute, as `_TASK_OWNER` is: the task's done callbacks run after the
    check, on a module-scoped loop during the next test.
    """
    with contextlib.suppress(Exception):  # another factory's future type without attributes
        setattr(task, _GATE_CANCELLED, True)


def _raised_by_the_gates_cancelling(context: dict[str, object]) -> bool:
    """Whether an exception-handler call is a task's done callback failing for its cancellation.

    Python 3.11's ``StreamReaderProtocol.connection_made`` gives the handler task
    it makes a done callback that asks it for its exception: once the task is
    cancelled, that raises CancelledError, and the loop calls its exception
    handler with "Exception in callback" (fixed in 3.12, cpython#113538).  When
    the gate cancelled that task, the call is its own doing.
    """
    try:  # never break the loop's handler
        if not isinstance(context.get("exception"), asyncio.CancelledError):
            return False
        args = getattr(context.get("handle"), "_args", None)
        return isinstance(args, tuple) and any(
            getattr(arg, _GATE_CANCELLED, False) is True for arg in args
        )
    except Exception:
        return False


def _a_handler_task_cancelled(context: dict[str, object]) -> bool:
    """Whether an exception-handler call is Python 3.11's for a cancelled handler task.

    The done callback of an ``asyncio.start_server`` handler's task asks it for
    its exception, which raises CancelledError once the task is cancelled
    (cpython#113538): by the test, or by pytest-asyncio's runner or
    `asyncio.run` cancelling what is still pending as the loop closes.  That is
    asyncio's bug, not the test's: own mode does not report a task left
    pending, and strict mode reports the task itself.
    """
    try:  # never break the loop's handler
        if not isinstance(context.get("exception"), asyncio.CancelledError):
            return False
        handle = context.get("handle")
        callback = getattr(handle, "_callback", None)
        if callback is not None:
            return getattr(callback, "__code__", None) in _CONNECTION_MADE_CALLBACKS
        # uvloop's handles keep their callback to themselves; their repr names it.
        shown = repr(handle)
        return any(f" {name}" in shown for name in _CONNECTION_MADE_CALLBACK_NAMES)
    except Exception:
        return False


class _NameKeepingTask(asyncio.Task[Any]):
    """A task whose name survives Python 3.13.0's ``create_task``.

    With a task factory installed, 3.13.0 calls ``task.set_name(name)`` even when
    no name was given, and every task is named ``'None'`` (fixed in 3.13.1); the
    gate's factory must not change a program's task names.
    """

    def set_name(self, value: object) -> None:
        if value is not None:
            super().set_name(value)


# Shown as asyncio's in its repr (``<Task pending name=...>``), as it stands for it.
_NameKeepingTask.__name__ = _NameKeepingTask.__qualname__ = "Task"

#: The class of the tasks the gate's factory makes, when no other factory does.
_TASK_CLASS: type[asyncio.Task[Any]] = (
    _NameKeepingTask if sys.version_info[:3] == (3, 13, 0) else asyncio.Task
)


def _fd_dir() -> str | None:
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return path
    return None


_FD_DIR = _fd_dir()
#: The methods of ``socket.socket`` by which a program closes a socket, or hands
#: its descriptor elsewhere (``close()`` and ``__exit__`` call ``close``).
_CLOSERS = ("close", "_real_close", "detach")
#: The code of ``socket.socket.accept``, which makes the sockets of accepted connections.
_SOCKET_ACCEPT = socket.socket.accept.__code__
#: The code of socket.py's methods that close a socket, and of `_closer`'s wrappers:
#: who closes a socket is the first caller outside them.
_CLOSING_CODES = frozenset(
    [
        *(getattr(vars(socket.socket)[name], "__code__", None) for name in _CLOSERS),
        socket.socket.__exit__.__code__,
        _closer(socket.socket.close).__code__,
    ]
)
#: The code of the method that makes an ``asyncio.start_server`` connection's task.
_CONNECTION_MADE = asyncio.StreamReaderProtocol.connection_made.__code__


def _connection_made_transport(frame: types.FrameType) -> asyncio.BaseTransport | None:
    """The transport a protocol's ``connection_made(self, transport)`` frame was given."""
    code = frame.f_code
    if code.co_name != "connection_made" or code.co_argcount < 2:
        return None
    transport = frame.f_locals.get(code.co_varnames[1])
    return transport if isinstance(transport, asyncio.BaseTransport) else None


#: The code of the done callback that method puts on the task (Python 3.11: see
#: `_a_handler_task_cancelled`).
_CONNECTION_MADE_CALLBACKS = frozenset(
    const for const in _CONNECTION_MADE.co_consts if isinstance(const, types.CodeType)
)
#: Their qualified names, as uvloop's handle shows its callback.
_CONNECTION_MADE_CALLBACK_NAMES = frozenset(
    name
    for code in _CONNECTION_MADE_CALLBACKS
    if isinstance(name := getattr(code, "co_qualname", None), str)
)
#: The class whose finaliser closes a dropped connection and warns (`watch_writers`):
#: StreamWriter's from Python 3.11.5, the TLS transport's before.
_FINALISED: type = (
    asyncio.StreamWriter
    if "__del__" in vars(asyncio.StreamWriter)
    else asyncio.sslproto._SSLProtocolTransport
)
#: What a thread pool's worker threads run (`concurrent.futures.ThreadPoolExecutor`).
_POOL_WORKER = getattr(concurrent.futures.thread, "_worker", None)


def close_uvloop_handles_over(fds: dict[int, int]) -> list[tuple[str, int, int]]:
    """Close the uvloop transports and servers over the descriptors `fds` (fd: inode).

    Their sockets were made in C, out of the gate's sight: they are found among
    the objects the garbage collector knows, only when `fds` is not empty and
    uvloop is in use.  A transport is aborted and a server closed, as their owner
    should have; uvloop then closes the handle on its loop's next turn (or as the
    loop closes) without a warning.  Returns ``(class name, fd, inode)`` for each
    descriptor one of them held.
    """
    if not fds or "uvloop" not in sys.modules:
        return []
    closed = []
    for obj in gc.get_objects():
        if type(obj).__module__ != "uvloop.loop":
            continue
        if hasattr(obj, "get_extra_info"):
            sock = obj.get_extra_info("socket")
            held = [] if sock is None or obj.is_closing() else [sock.fileno()]
            end = obj.abort
        elif hasattr(obj, "sockets") and hasattr(obj, "get_loop"):
            held = [sock.fileno() for sock in obj.sockets or ()]
            end = obj.close
        else:
            continue
        held = [fd for fd in held if fd in fds]
        if held:
            closed += [(type(obj).__name__, fd, fds[fd]) for fd in held]
            end()
    return closed


def is_uvloop(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether `loop` is uvloop's: its ``close()`` closes the transports still open
    on it, and its TLS layer is its own."""
    return type(loop).__module__.split(".")[0] == "uvloop"


def open_socket_fds() -> frozenset[tuple[int, int]]:
    """Return ``(fd, inode)`` for every socket descriptor open in this process."""
    if _FD_DIR is None:  # pragma: no cover - no descriptor listing on this platform
        return frozenset()
    found: set[tuple[int, int]] = set()
    for name in os.listdir(_FD_DIR):
        try:
            fd = int(name)
            info = os.fstat(fd)
        except (ValueError, OSError):
            continue
        if stat.S_ISSOCK(info.st_mode):
            found.add((fd, info.st_ino))
    return frozenset(found)
