"""The hygiene gate: find what a test left behind and blame the test that made it.

Theory of operation
-------------------
Every object nettest creates (servers, transports, proxies, sockets, tasks) is
registered with :func:`track` together with the test that was running when it was
made and the stack that made it.  Objects made while a fixture of wider scope is
being set up belong to that fixture, not to the test that happened to trigger it.

After a test's teardown the plugin calls :meth:`Gate.check`, which reports:

* tracked objects of this test that are still open (``own`` and ``strict``);
* calls to an instrumented loop's exception handler during the test (``own`` and
  ``strict``), charged to the test that created the task they are about (see below);
* socket file descriptors opened during the test and still open, with the stack
  that created the Python socket object where one exists (``strict``);
* asyncio tasks created during the test and still pending, with their creation
  stack (``strict``).

Whatever is reported is then closed or cancelled, so that it can never be blamed
on a later test.  The checks are cheap when nothing leaked: the garbage
collector runs only when something looks leaked, to let unreachable objects
finalise (and warn) inside the test that dropped them.

A task is the exception: one that a test left running in ``own`` mode can fail
after that test ended ("Task exception was never retrieved").  A task factory on
every loop the gate watches notes which test created each task, as an attribute
of the task: unlike a weak mapping, that is still there when the garbage
collector finalises the task in a reference cycle.  The failure is then
reported by the check of the test running at the time, under the name of the
test that made the task.

A StreamWriter dropped without ``close()`` is closed by its own ``__del__`` on
Python >= 3.11.5, which only warns.  Memory stream pairs use a writer that tells
the gate first (`_Gate.writer_dropped`); in strict mode a wrapper round
``asyncio.StreamWriter.__del__`` does the same for real connections.  The gate
marks the entry of the transport (or socket), and reports it although it is
closed by the time of the check.

Strict mode needs instruments: a wrapper round ``socket.socket.__init__`` (and
one round ``asyncio.StreamWriter.__del__``), the task factory's recording of
each task with its stack, and the descriptors open before the test.  With
``--nettest-leaks=strict`` they are installed for the whole session; a test
that a ``nettest_leaks("strict")`` marker makes strict gets the same ones from
:meth:`_Gate.begin` to :meth:`_Gate.end`.  Either way they record only for the
test that is being checked strictly (`_Gate.strict_owner`), so a test marked
``own`` in a strict session is checked as in an ``own`` session.

Where an object was made is the stack that made it, without the frames of
nettest, asyncio and the standard library's socket plumbing.  What shows none of
the test's frames is described by what made it instead: the listening socket
that accepted it, the server it was made for (`track`'s ``on_behalf_of``), or
the server thread it was made on and where that thread was started.

Objects are held by weak references.  An object that refuses one (uvloop's TLS
transport has no ``__weakref__`` slot) is held strongly until its test's check.
Bookkeeping runs inside transport callbacks, socket constructors and task
factories: it never raises there.  A failure is reported at the test's check.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import selectors
import socket
import ssl
import stat
import sys
import threading
import traceback
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

__all__ = ["LeakError", "LeakMode", "track"]

LeakMode = Literal["off", "own", "strict"]
LEAK_MODES: tuple[LeakMode, ...] = ("off", "own", "strict")

_T = TypeVar("_T")
_STACK_LIMIT = 16
_NETTEST_DIR = os.path.dirname(os.path.abspath(__file__))
#: Frames from these places say nothing about who made an object: skip them.  The
#: standard library's socket plumbing too: an accepted socket's stack is otherwise
#: ``socket.py``'s ``accept``, a server thread's ``threading.py``'s ``_bootstrap``.
_PLUMBING = (
    _NETTEST_DIR,
    os.path.dirname(os.path.abspath(asyncio.__file__)),
    *(
        os.path.abspath(str(module.__file__))
        for module in (contextlib, selectors, socket, ssl, threading)
    ),
)
#: Frames from these places called the test: the stack worth showing ends there.
#: (``backports.asyncio.runner`` is pytest-asyncio's ``asyncio.Runner`` on Python 3.10.)
_RUNNERS = (
    *(f"{os.sep}{name}{os.sep}" for name in ("pluggy", "_pytest", "pytest_asyncio")),
    f"{os.sep}backports{os.sep}asyncio{os.sep}",
)
#: Tasks carry the test that created them under this name (None: no test's).
_TASK_OWNER = "_nettest_owner"


class LeakError(Exception):
    """A test left sockets, transports, servers or tasks open, or its loop reported errors.

    Raised by the hygiene gate as a teardown error of the test that made the
    leaked objects.  The message lists each one with the stack that created it.
    """


LeakError.__module__ = "nettest"


#: Where an object was made: (file, line, function) from the outermost frame in.
_Stack = tuple[tuple[str, int, str], ...]


def _creation_stack() -> _Stack:
    """Return the stack that is creating an object, from the test down to the user's call.

    Frames from nettest, asyncio, contextlib and the socket plumbing are left
    out, and so is everything above the frame pytest called: those say how the
    test ran, not who made it.  An object that the event loop made in a callback
    has no frame of the test's: past pytest's frames lies only how the process
    started, and its stack is empty.  Only code locations are kept; source lines
    are read if a leak is reported.
    """
    frames: list[tuple[str, int, str]] = []
    passed_runner = False
    frame: types.FrameType | None = sys._getframe(2)
    while frame is not None and len(frames) < _STACK_LIMIT:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PLUMBING):
            if any(place in filename for place in _RUNNERS):
                if frames:
                    break
                # Made by nettest or the loop under pytest: what called pytest may
                # still be a user's (a hook, an in-process pytester run).
                passed_runner = True
            else:
                frames.append((filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    if passed_runner and frame is None:
        return ()  # runpy and pytest's __main__: nobody's code made it
    return tuple(reversed(frames))


class _StrongRef:
    """A strong reference that is read like a weak one, for objects that refuse weak ones.

    ``uvloop.loop._SSLProtocolTransport`` has no ``__weakref__`` slot.  The gate drops
    the entry, and with it the object, when it forgets the test that owns it.
    """

    __slots__ = ("_obj",)

    def __init__(self, obj: object) -> None:
        self._obj = obj

    def __call__(self) -> Any:
        return self._obj


def _reference(obj: object) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:
        return _StrongRef(obj)


@dataclass(eq=False)
class _Tracked:
    #: A weak reference, or a `_StrongRef` for an object that cannot have one.
    ref: Callable[[], Any]
    what: str
    owner: str | None
    #: The creating frames outside nettest, asyncio and the socket plumbing.
    stack: _Stack
    is_open: Callable[[Any], bool]
    close: Callable[[Any], object]
    #: Set when the object was still open as its event loop closed.
    open_at_loop_close: bool = False
    #: What made it, when that says more than its stack: ("accepted by ...", the listener).
    via: tuple[str, _Tracked] | None = None
    #: Made on a thread other than the test's: its name, and the entry of what
    #: started it (a thread-backed server's loop thread) if the gate knows.
    thread: tuple[str, _Tracked | None] | None = None
    #: Set, to what the report says, when it was dropped while open and something
    #: closed it as it went (a StreamWriter's ``__del__``): reported though closed.
    dropped: str | None = None

    def alive_and_open(self) -> Any | None:
        obj = self.ref()
        if self.open_at_loop_close:
            return True
        if obj is None:
            return None
        try:
            return obj if self.is_open(obj) else None
        except Exception:  # a broken predicate must not hide the leak report
            return obj


class _Unseen:
    """The creator of a task no task factory of the gate's saw made."""


_UNSEEN = _Unseen()


@dataclass
class _LoopError:
    #: The test whose check reports it.
    owner: str | None
    context: dict[str, object]
    #: The test that created the task it is about (None: no test's; `_UNSEEN`: the
    #: gate did not see it made).  For a call about no task, `owner`.
    maker: str | _Unseen | None = _UNSEEN
    #: Its maker had ended and no test was running: the next check reports it.
    for_next_check: bool = False


@dataclass
class _BookkeepingError:
    owner: str
    what: str
    error: str


@dataclass
class _Gate:
    """Process-wide state of the hygiene gate; one instance, `GATE`."""

    owner: str | None = None
    tracked: list[_Tracked] = field(default_factory=list)
    loop_errors: list[_LoopError] = field(default_factory=list)
    exempt_fds: set[tuple[int, int]] = field(default_factory=set)
    #: Tests begun and not yet ended (more than one under pytester).
    running: set[str] = field(default_factory=set)
    #: Tests checked in mode ``off``: what their tasks do later is nobody's business.
    silenced: set[str] = field(default_factory=set)
    #: The thread that runs the tests; objects made on others say so.
    test_thread: int = field(default_factory=threading.get_ident)
    #: The session runs in strict mode: strict mode's instruments stay installed.
    strict: bool = False
    #: The test being checked in strict mode, by the session's mode or by its marker.
    strict_owner: str | None = None
    instrumented: weakref.WeakSet[asyncio.AbstractEventLoop] = field(
        default_factory=weakref.WeakSet
    )
    #: The gate's task factory on each loop it watches.
    task_factories: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    #: The entry of each tracked object, for what it makes later (`track`'s
    #: `on_behalf_of`) and for what a finaliser says of it (`writer_dropped`).
    owners: weakref.WeakKeyDictionary[Any, _Tracked] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    #: Entries of tracked objects that `owners` cannot hold, by id, with the object
    #: itself (so that the id stays its own) until the owner is forgotten.
    owners_by_id: dict[int, tuple[object, _Tracked]] = field(default_factory=dict)
    #: The entry of what started each thread objects were made on (None: unknown).
    thread_origins: weakref.WeakKeyDictionary[threading.Thread, _Tracked | None] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    #: What `track` failed to record, reported with its owner's leaks.
    bookkeeping_errors: list[_BookkeepingError] = field(default_factory=list)
    #: Strict mode: the owner of every socket made while watching (None: nobody's).
    socket_owners: weakref.WeakKeyDictionary[socket.socket, str | None] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    #: Task factories installed for one strict test: (loop, ours, the one it replaced).
    test_task_factories: list[tuple[asyncio.AbstractEventLoop, object, object]] = field(
        default_factory=list
    )
    #: The wrapper round ``socket.socket.__init__`` while it is installed.
    socket_watcher: Callable[..., None] | None = None
    #: The wrapper round ``asyncio.StreamWriter.__del__`` while it is installed.
    writer_watcher: Callable[..., None] | None = None
    #: The socket wrapper was installed for one strict test, not for the session.
    test_watches_sockets: bool = False

    # -- ownership -----------------------------------------------------------

    @contextlib.contextmanager
    def owned_by(self, owner: str | None) -> Iterator[None]:
        """Attribute everything created inside the block to `owner` (None: nobody)."""
        previous, self.owner = self.owner, owner
        try:
            yield
        finally:
            self.owner = previous

    def track(
        self,
        obj: _T,
        *,
        what: str,
        is_open: Callable[[_T], bool],
        close: Callable[[_T], object],
        on_behalf_of: object = None,
        via: tuple[str, _Tracked] | None = None,
    ) -> _T:
        # Called from transport callbacks and task factories: a failure here must
        # never break the user's connection or task, so it is reported at the check.
        try:
            self._track(obj, what, is_open, close, on_behalf_of, via)
        except Exception as error:
            self._bookkeeping_failed(what, error)
        return obj

    def _track(
        self,
        obj: _T,
        what: str,
        is_open: Callable[[_T], bool],
        close: Callable[[_T], object],
        on_behalf_of: object,
        via: tuple[str, _Tracked] | None,
    ) -> None:
        if on_behalf_of is None:
            owner = self.owner
        else:
            parent = self._entry_of(on_behalf_of)
            owner = None if parent is None else parent.owner
            if parent is not None and via is None:
                via = (f"made by {parent.what}", parent)
            # Strict mode's task factory has just tracked a task as the test's.
            for index in range(len(self.tracked) - 1, max(-1, len(self.tracked) - 9), -1):
                if self.tracked[index].ref() is obj:
                    del self.tracked[index]
                    break
            if isinstance(obj, asyncio.Future):
                # The task is the server's, whichever test ran as it was made.
                with contextlib.suppress(AttributeError):
                    setattr(obj, _TASK_OWNER, owner)
        if owner is None:
            return
        if len(self.tracked) > 4096:
            self.tracked = [t for t in self.tracked if t.ref() is not None]
        thread = None if threading.get_ident() == self.test_thread else self._thread_origin()
        entry = _Tracked(
            _reference(obj),
            what,
            owner,
            _creation_stack(),
            cast("Callable[[Any], bool]", is_open),
            cast("Callable[[Any], object]", close),
            via=via,
            thread=thread,
        )
        self.tracked.append(entry)
        try:
            self.owners[obj] = entry
        except TypeError:  # no weak reference, or unhashable: keep it until the check
            self.owners_by_id[id(obj)] = (obj, entry)

    def _entry_of(self, obj: object) -> _Tracked | None:
        """The entry of a tracked object (kept after its owner's check), or None."""
        try:
            return self.owners.get(obj)
        except TypeError:
            held = self.owners_by_id.get(id(obj))
            return held[1] if held is not None and held[0] is obj else None

    def _thread_origin(self) -> tuple[str, _Tracked | None]:
        """The current thread's name, and the entry of what started it if tracked.

        A thread-backed server's loop thread (``_threads._LoopThread``) is tracked,
        with where the test started it, as an object whose ``thread`` is that
        thread.  Looked up once per thread: only objects made off the test's
        thread pay for it.
        """
        thread = threading.current_thread()
        try:
            return thread.name, self.thread_origins[thread]
        except KeyError:
            pass
        origin = None
        for item in reversed(self.tracked):
            if getattr(item.ref(), "thread", None) is thread:
                origin = item
                break
        self.thread_origins[thread] = origin
        return thread.name, origin

    def _bookkeeping_failed(self, what: str, error: BaseException) -> None:
        with contextlib.suppress(Exception):
            if self.owner is not None:
                message = f"{type(error).__name__}: {error}"
                self.bookkeeping_errors.append(_BookkeepingError(self.owner, what, message))

    def writer_dropped(self, writer: asyncio.StreamWriter, transport: object = None) -> None:
        """Note that `writer` is being finalised while its transport is still open.

        Python >= 3.11.5 closes the transport in ``StreamWriter.__del__`` and only
        warns, with a ResourceWarning the default filters hide: by the check the
        transport looks closed.  The entry of `transport` (by default the
        writer's), or of the socket under it, is marked so that its owner's check
        reports it although it is closed.  A writer that was closed is not
        reported.  Called from finalisers: never raises.
        """
        try:
            current = writer.transport
            if current.is_closing():
                return
            sock = current.get_extra_info("socket")
            # asyncio hands out a TransportSocket; the tracked socket is inside it.
            candidates = (
                current if transport is None else transport,
                getattr(sock, "_sock", sock),
            )
            for candidate in candidates:
                entry = self._entry_of(candidate)
                if entry is not None:
                    label = repr(candidate) if isinstance(candidate, socket.socket) else entry.what
                    entry.dropped = f"StreamWriter over {label} dropped without close()"
                    return
        except Exception as error:
            self._bookkeeping_failed("StreamWriter", error)

    # -- loops ---------------------------------------------------------------

    def instrument_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Record the loop's exception-handler calls and which test creates each task.

        In strict mode the task factory also tracks the strict test's tasks.
        """
        if loop in self.instrumented:
            return
        self.instrumented.add(loop)
        previous_handler = loop.get_exception_handler()

        def exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
            self._record_loop_error(context)
            if previous_handler is not None:
                previous_handler(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(exception_handler)
        self._install_task_factory(loop)

    def _record_loop_error(self, context: dict[str, object]) -> None:
        """Charge an exception-handler call to the test that made its task, if known.

        A task's failure that comes after the test that made it ended (a task
        left running in ``own`` mode) is reported by the check of the test
        running now, or by the next check, as that test's; never as this one's.
        """
        with contextlib.suppress(Exception):  # never break the loop's handler
            current = self.owner
            task = context.get("task", context.get("future"))
            if not callable(getattr(task, "get_coro", None)):  # no task: no maker to know
                self.loop_errors.append(_LoopError(current, dict(context), current))
                return
            maker = getattr(task, _TASK_OWNER, _UNSEEN)
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
                task = asyncio.Task(coro, loop=loop, **kwargs)
            owner = gate.owner
            # Which test made it, for a failure that comes after that test ended.
            # An attribute, unlike a weak mapping, is still there when the
            # garbage collector finalises the task in a reference cycle.
            try:
                setattr(task, _TASK_OWNER, owner)
            except Exception:  # another factory's future type without attributes
                pass
            if owner is not None and owner == gate.strict_owner:
                gate.track(task, what="pending task", is_open=_pending, close=_cancel)
            return task

        loop.set_task_factory(task_factory)
        if for_test:
            self.test_task_factories.append((loop, task_factory, previous_factory))
        else:
            self.task_factories[loop] = task_factory

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
        pending: list[asyncio.Future[Any]] = []
        for item in self.tracked:
            obj = item.ref()
            if isinstance(obj, asyncio.Future) and not obj.done() and obj.get_loop() is loop:
                item.open_at_loop_close = True
                item.what = f"pending task {obj!r}"
                pending.append(obj)
        if pending and not loop.is_closed() and not loop.is_running():
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    # -- sockets -------------------------------------------------------------

    def watch_socket_creation(self) -> None:
        """Track every Python socket a strict test creates, with its stack.

        A socket that ``accept()`` makes belongs to whoever owns the listening
        socket: a connection to a module-scoped server is that server's, even
        when a test made it.  Also wraps ``asyncio.StreamWriter.__del__`` (Python
        >= 3.11.5), so that a writer dropped without ``close()`` is reported
        against its socket (`writer_dropped`).  Installed for the session in
        strict mode, and by `begin` for a test that a marker makes strict.
        """
        self._watch_writers()
        if self._watching_sockets():
            return
        original_init = socket.socket.__init__
        gate = self

        def __init__(sock: socket.socket, *args: Any, **kwargs: Any) -> None:
            original_init(sock, *args, **kwargs)
            # Never let bookkeeping break the caller's socket.
            try:
                owner = gate.owner
                via = None
                caller = sys._getframe(1)
                if caller.f_code is _SOCKET_ACCEPT:
                    listener = caller.f_locals.get("self")
                    owner = gate.socket_owners.get(listener)  # type: ignore[arg-type]
                    # Its stack is socket.py's and the loop's: where the listening
                    # socket was made says which server it was.
                    parent = gate._entry_of(listener)
                    if parent is not None:
                        via = ("accepted by a listening socket", parent)
                gate.socket_owners[sock] = owner
            except Exception as error:
                gate._bookkeeping_failed("socket", error)
                return
            if owner is not None and owner == gate.strict_owner:
                with gate.owned_by(owner):
                    gate.track(
                        sock,
                        what="socket",
                        is_open=_socket_open,
                        close=socket.socket.close,
                        via=via,
                    )

        __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
        socket.socket.__init__ = __init__  # type: ignore[method-assign, assignment]
        self.socket_watcher = __init__

    def _watch_writers(self) -> None:
        original_del = getattr(asyncio.StreamWriter, "__del__", None)
        if original_del is None or original_del is self.writer_watcher:
            return  # Python < 3.11.5: a dropped writer leaves its socket open
        gate = self

        def __del__(writer: asyncio.StreamWriter, *args: Any, **kwargs: Any) -> None:
            gate.writer_dropped(writer)
            original_del(writer, *args, **kwargs)

        __del__.__wrapped__ = original_del  # type: ignore[attr-defined]
        asyncio.StreamWriter.__del__ = __del__  # type: ignore[attr-defined]
        self.writer_watcher = __del__

    def unwatch_socket_creation(self) -> None:
        # Only our wrappers are removed: one installed over them stays, and ours,
        # inside it, records nothing outside a strict test.
        if self._watching_sockets():
            socket.socket.__init__ = self.socket_watcher.__wrapped__  # type: ignore[method-assign, union-attr]
        self.socket_watcher = None
        watcher = self.writer_watcher
        installed: object = vars(asyncio.StreamWriter).get("__del__")
        if watcher is not None and installed is watcher:
            asyncio.StreamWriter.__del__ = watcher.__wrapped__  # type: ignore[attr-defined]
        self.writer_watcher = None

    def _watching_sockets(self) -> bool:
        return self.socket_watcher is not None and socket.socket.__init__ is self.socket_watcher

    # -- the check -----------------------------------------------------------

    def begin(self, owner: str, mode: LeakMode = "own") -> frozenset[tuple[int, int]]:
        """Start watching a test; return the socket descriptors open before it (strict).

        A strict test outside a strict session gets strict mode's instruments
        here: the socket wrapper, and a task factory on each loop the gate
        watches whose own factory someone replaced.  `end` removes them.
        """
        self.loop_errors = [e for e in self.loop_errors if e.owner != owner]
        self.running.add(owner)
        self.test_thread = threading.get_ident()
        if mode == "off":
            self.silenced.add(owner)
        else:
            self.silenced.discard(owner)
        if mode != "strict":
            return frozenset()
        self.strict_owner = owner
        if not self.strict:
            if not self._watching_sockets():
                self.watch_socket_creation()
                self.test_watches_sockets = True
            for loop in list(self.instrumented):
                # The gate's own factory tracks the strict test's tasks already.
                ours = self.task_factories.get(loop)
                if not loop.is_closed() and loop.get_task_factory() is not ours:
                    self._install_task_factory(loop, for_test=True)
        return open_socket_fds()

    def end(self, owner: str) -> None:
        """Stop watching a test: remove what `begin` installed for it alone.

        Also releases what `check` did not get to (when the test's teardown
        raised), so that no later test is blamed for it.
        """
        self.running.discard(owner)
        if self.strict_owner == owner:
            self.strict_owner = None
        if self.test_watches_sockets:
            self.test_watches_sockets = False
            self.unwatch_socket_creation()
        if self.test_task_factories:
            self._uninstall_test_task_factories()
        self._release(owner)

    @contextlib.contextmanager
    def wider_fixture(self) -> Iterator[None]:
        """Set up a fixture of wider scope: what it makes is nobody's leak.

        During a strict test, the socket descriptors it opens are exempt from
        every later check too: they may come from outside Python's socket module.
        """
        before = open_socket_fds() if self.strict_owner is not None else None
        with self.owned_by(None):
            yield
        if before is not None:
            self.exempt_fds |= open_socket_fds() - before

    def check(self, owner: str, mode: LeakMode, fds_before: frozenset[tuple[int, int]]) -> None:
        """Report and then release everything `owner` left behind.

        Also reports, under the name of the test that made it, a task that an
        earlier test left running and that failed during this one.

        Raises:
            LeakError: listing each leak with the stack that created it.
        """
        __tracebackhide__ = True
        if mode == "off":
            self._forget(owner)
            return
        leaks = self._find(owner, mode, fds_before)
        if leaks:
            suspects = self._suspects(owner)
            # Let unreachable objects finalise now, inside the test that dropped them.
            finalising = _collect_garbage()
            leaks = self._find(owner, mode, fds_before)
            # Collected while still open: dropped without being closed.
            leaks += [
                _describe(f"{label} dropped while open", item)
                for item, label in suspects
                if item.ref() is None and item.dropped is None
            ]
            leaks += [f"  - while the garbage collector finalised them: {m}" for m in finalising]
        late = self._late_failures(owner, mode)
        self._release(owner)
        sections = late
        if leaks:
            header = (
                f"{owner} left {len(leaks)} thing{'s' if len(leaks) != 1 else ''} behind "
                f"(--nettest-leaks={mode}):"
            )
            sections = [header, *leaks, *late]
        if sections:
            raise LeakError("\n".join(sections))

    def _suspects(self, owner: str) -> list[tuple[_Tracked, str]]:
        """`owner`'s objects that look open, each with what to call it if it is dropped.

        Described now, while they live: a socket's repr names its addresses.
        """
        suspects = []
        for item in self.tracked:
            if item.owner == owner and not item.open_at_loop_close and item.dropped is None:
                obj = item.alive_and_open()
                if obj is not None:
                    suspects.append((item, _label(item, obj)))
        return suspects

    def _find(
        self, owner: str, mode: LeakMode, fds_before: frozenset[tuple[int, int]]
    ) -> list[str]:
        leaks: list[str] = []
        seen_fds = _policy_loop_fds()
        for item in self.tracked:
            if item.owner != owner:
                continue
            if item.dropped is not None:
                leaks.append(_describe(item.dropped, item))
                held = item.ref()
                if isinstance(held, socket.socket) and held.fileno() != -1:
                    seen_fds.add(held.fileno())
                continue
            obj = item.alive_and_open()
            if obj is None:
                continue
            if item.open_at_loop_close:
                leaks.append(_describe(f"{item.what} when its event loop closed", item))
                continue
            if isinstance(obj, socket.socket):
                if obj.fileno() in seen_fds:
                    continue
                seen_fds.add(obj.fileno())
            leaks.append(_describe(f"open {_label(item, obj)}", item))
        for error in self.loop_errors:
            if error.owner == owner and not _is_late(error):
                leaks.append(_describe_loop_error(error.context, error.maker))
        for failure in self.bookkeeping_errors:
            if failure.owner == owner:
                leaks.append(
                    f"  - the hygiene gate could not track a {failure.what} (a nettest bug; "
                    f"it was not checked): {failure.error}"
                )
        if mode == "strict":
            # Sockets someone else owns: a wider-scoped server's accepted connections.
            seen_fds.update(
                sock.fileno()
                for sock, sock_owner in list(self.socket_owners.items())
                if sock_owner != owner and sock.fileno() != -1
            )
            for fd, inode in sorted(open_socket_fds() - fds_before - self.exempt_fds):
                if fd not in seen_fds:
                    what = f"open socket (fd {fd}, inode {inode}){_socket_names(fd)}"
                    leaks.append(_describe(what, None))
        return leaks

    def _late_failures(self, owner: str, mode: LeakMode) -> list[str]:
        """Report the tasks that earlier tests left running and that failed since.

        Those that failed while `owner` ran, and those that failed between
        tests, which the first check to come reports.  One section per test that
        made them: it is to blame, not `owner`.
        """
        late: dict[tuple[str, bool], list[_LoopError]] = {}
        for error in self.loop_errors:
            if _is_late(error) and (error.owner == owner or error.for_next_check):
                late.setdefault((cast("str", error.maker), error.for_next_check), []).append(error)
        if not late:
            return []
        self.loop_errors = [e for e in self.loop_errors if not e.for_next_check]
        sections = []
        for (maker, between_tests), errors in late.items():
            when = "between tests" if between_tests else f"while {owner} ran"
            sections.append(
                f"{maker} left {_count(len(errors), 'task')} running that failed after it "
                f"ended, {when} (--nettest-leaks={mode}); {maker} is to blame, not this test:"
            )
            sections += [_describe_loop_error(error.context, maker) for error in errors]
            sections.append(
                '  --nettest-leaks=strict, or a nettest_leaks("strict") marker on it, fails '
                f"{maker} itself for a task still pending as it ends."
            )
        return sections

    def _release(self, owner: str) -> None:
        """Close what `owner` left open, so that no later test is blamed for it.

        Objects first and plain sockets last, each newest first as an exit stack
        would: a server shuts its own sockets down, on its thread if it has one,
        and a server thread stops before the self-pipe that wakes its loop closes.
        """
        mine = [item for item in reversed(self.tracked) if item.owner == owner]
        for sockets in (False, True):
            for item in mine:
                obj = item.alive_and_open()
                if obj is None or item.open_at_loop_close:
                    continue
                if isinstance(obj, socket.socket) is sockets:
                    with contextlib.suppress(Exception):
                        item.close(obj)
        self._forget(owner)

    def _forget(self, owner: str) -> None:
        self.tracked = [t for t in self.tracked if t.owner != owner and t.ref() is not None]
        self.loop_errors = [e for e in self.loop_errors if e.owner != owner]
        if self.owners_by_id:
            self.owners_by_id = {k: v for k, v in self.owners_by_id.items() if v[1].owner != owner}
        if self.bookkeeping_errors:
            self.bookkeeping_errors = [e for e in self.bookkeeping_errors if e.owner != owner]


def _is_late(error: _LoopError) -> bool:
    """Whether `error` is about a task that a test which had ended made."""
    return isinstance(error.maker, str) and error.maker != error.owner


def _count(n: int, noun: str) -> str:
    return f"a {noun}" if n == 1 else f"{n} {noun}s"


def _label(item: _Tracked, obj: object) -> str:
    """What to call a tracked object in a report: a socket's or task's repr says most."""
    if isinstance(obj, (socket.socket, asyncio.Future)):
        return f"{item.what} {obj!r}"
    return item.what


def _collect_garbage() -> list[str]:
    """Run the garbage collector; return what finalisers raised (a ResourceWarning as error).

    Caught here, rather than by pytest's hook, so that they are reported with
    the test being checked: pytest may have collected this phase's already.
    """
    caught: list[str] = []

    def hook(unraisable: Any) -> None:
        where = unraisable.err_msg or "Exception ignored in"
        error = unraisable.exc_value
        caught.append(f"{where}: {unraisable.object!r}\n    {type(error).__name__}: {error}")

    previous, sys.unraisablehook = sys.unraisablehook, hook
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return caught


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


def _socket_open(sock: socket.socket) -> bool:
    return sock.fileno() != -1


def _cancel(task: asyncio.Future[Any]) -> None:
    loop = task.get_loop()
    if loop.is_closed():
        return
    task.cancel()


def _describe(what: str, item: _Tracked | None) -> str:
    if item is None:
        return f"  - {what}, created outside Python's socket module (no stack known)"
    return f"  - {what}{_provenance(item)}"


def _provenance(item: _Tracked, depth: int = 0) -> str:
    """Where `item` was made, for a report: its stack, or what made it, and its thread.

    Its own frames come first.  Without any (it was made in a loop callback or
    on a server's thread), what made it speaks for it: the listening socket that
    accepted it, the server it was made for, the thread it was made on.
    """
    name, started = item.thread if item.thread is not None else (None, None)
    made = "created" if name is None else f"created on thread {name}"
    if item.stack:
        text = f", {made} at:\n{_format_stack(item.stack)}"
        if started is not None and started.stack:
            text += f"\n    thread {name} was started at:\n{_format_stack(started.stack)}"
        return text
    if item.via is not None and depth < 4:
        how, parent = item.via
        return f", {how}{_provenance(parent, depth + 1)}"
    if started is not None and started.stack:
        return f", {made}, which was started at:\n{_format_stack(started.stack)}"
    if name is not None:
        return f", {made} (none of the test's frames on its stack)"
    return ", created with none of the test's frames on its stack"


def _format_stack(stack: _Stack) -> str:
    summary = traceback.StackSummary.from_list(
        [traceback.FrameSummary(filename, lineno, name) for filename, lineno, name in stack]
    )
    lines = "".join(summary.format()).rstrip("\n")
    return "\n".join("    " + line for line in lines.splitlines())


def _describe_loop_error(context: dict[str, object], maker: str | _Unseen | None) -> str:
    message = context.get("message", "unhandled error in the event loop")
    exception = context.get("exception")
    text = f"  - the loop's exception handler was called: {message}"
    if isinstance(exception, BaseException):
        text += f"\n    {type(exception).__name__}: {exception}"
    task = context.get("task", context.get("future"))
    if callable(getattr(task, "get_coro", None)):
        text += f"\n    task: {task!r}"
        if maker is None:
            text += (
                "\n    (created outside any test: by a fixture of wider scope, or before the "
                "first test)"
            )
        elif isinstance(maker, _Unseen):
            text += (
                "\n    (the gate did not see which test created this task: it was built "
                "directly, by another task factory, or before the gate watched its loop, and "
                "may be an earlier test's; --nettest-leaks=strict fails a test that leaves a "
                "task pending)"
            )
    source = context.get("source_traceback")
    if isinstance(source, traceback.StackSummary):
        text += "\n    created at:\n" + "".join(source.format()).rstrip("\n")
    return text


def _socket_names(fd: int) -> str:
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return ""
    try:
        return f" {sock.getsockname()!r}"
    except OSError:
        return ""
    finally:
        sock.close()


def _fd_dir() -> str | None:
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return path
    return None


_FD_DIR = _fd_dir()
#: The code of ``socket.socket.accept``, which makes the sockets of accepted connections.
_SOCKET_ACCEPT = socket.socket.accept.__code__


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


GATE = _Gate()


def track(
    obj: _T,
    *,
    what: str,
    is_open: Callable[[_T], bool],
    close: Callable[[_T], object],
    on_behalf_of: object = None,
) -> _T:
    """Register an object nettest made, so the hygiene gate can find it if it is left open.

    The object is held by a weak reference, or, if it cannot have one (uvloop's
    TLS transport), by a strong one until its test's check.  `is_open` and
    `close` receive the object; they must not raise.  `track` itself never
    raises: it runs inside transport callbacks, and what it fails to record is
    reported at the test's check.  Objects made outside a test, or while a fixture
    of wider scope is set up, are not tracked.  What a server or proxy makes as
    it runs (`on_behalf_of` it) belongs to that server's owner, not to the test
    running at the time.

    Returns:
        `obj`, so that ``self._sock = track(sock, ...)`` reads naturally.
    """
    return GATE.track(obj, what=what, is_open=is_open, close=close, on_behalf_of=on_behalf_of)


def instrument_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Let the hygiene gate see `loop`'s exception-handler calls (and its tasks in strict mode)."""
    GATE.instrument_loop(loop)


def writer_dropped(writer: asyncio.StreamWriter, transport: object = None) -> None:
    """Tell the hygiene gate that `writer` is being finalised (from its ``__del__``).

    If its transport is still open, the gate reports `transport` (by default the
    writer's) as dropped without ``close()``, against the test that made it.
    Never raises.
    """
    GATE.writer_dropped(writer, transport)
