"""What the hygiene gate knows of each thing it watches, and how it words a report.

Theory of operation
-------------------
The gate (`nettest._hygiene`) keeps an entry, `_Tracked`, for each object a test
made: a reference to it, how to tell that it is open and how to close it, and
what a report says of where it came from.  A call to an instrumented loop's
exception handler is kept as a `_LoopError`, with the test that made the task it
is about (`_UNSEEN` if no task factory of the gate's saw it made), and what the
gate failed to record as a `_BookkeepingError`.

Where an object was made is the stack that made it (`_creation_stack`), without
the frames of nettest, asyncio and the standard library's socket plumbing
(`_PLUMBING`), and without what ran the test (`_RUNNERS`).  Only code locations
are kept; source lines are read if a leak is reported.  What shows none of the
test's frames is described by what made it instead (`_provenance`): the
listening socket that accepted it, the server it was made for (`track`'s
``on_behalf_of``), the plain asyncio server whose connection it serves (a
handler's task, "started at" where the server's listening socket was made),
the task it was made in if strict mode tracked that task (``asyncio.wait_for``
runs its awaitable in one before Python 3.12), or the server thread it was made
on and where that thread was started.  Each is a `_Via`.

Objects are held by weak references.  An object that refuses one (uvloop's TLS
transport has no ``__weakref__`` slot) is held strongly, by a `_StrongRef`,
until its test's check.  A socket strict mode tracks is held by a `_SocketRef`,
whose callback marks the socket's entry dropped while open if the socket was
freed without the program closing it.

What a tracked object made for itself, its listening socket say, or the transport
serving it, is a part of it (`_Tracked.part_of`, `_Tracked.parts`): the report of
the object speaks for its parts, which are listed on their own only once the
object itself is closed.

The rest words the items of a report: one for each thing left behind, with
where it was made (`_describe`), and one for each loop error, with the task it is
about and, when no test made that task or the gate did not see it made, a note
that says so (`_describe_loop_error`).  The check (`_Gate.check`) puts them under
a header that names the test to blame.
"""

from __future__ import annotations

import _socket
import asyncio
import concurrent.futures.thread
import contextlib
import enum
import importlib.util
import os
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

_STACK_LIMIT = 16
_NETTEST_DIR = os.path.dirname(os.path.abspath(__file__))


def _package_dirs(*names: str) -> tuple[str, ...]:
    """The directories of installed packages, found without importing them."""
    dirs: list[str] = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(os.path.abspath(d) + os.sep for d in spec.submodule_search_locations)
    return tuple(dirs)


#: Frames from these places say nothing about who made an object: skip them.  The
#: standard library's socket plumbing too: an accepted socket's stack is otherwise
#: ``socket.py``'s ``accept``, a server thread's ``threading.py``'s ``_bootstrap``,
#: a thread pool worker's (``asyncio.to_thread``) ``concurrent.futures``' ``_worker``;
#: hypothesis and unittest, which run between a ``@given`` test or a state
#: machine's ``TestCase`` and the code that makes things; and anyio, whose pytest
#: plugin runs a ``@pytest.mark.anyio`` test as pytest-asyncio runs the others.
_PLUMBING = (
    _NETTEST_DIR,
    *_package_dirs("hypothesis", "unittest", "anyio"),
    os.path.dirname(os.path.abspath(asyncio.__file__)),
    *(
        os.path.abspath(str(module.__file__))
        for module in (
            concurrent.futures.thread,
            contextlib,
            selectors,
            socket,
            ssl,
            subprocess,
            threading,
        )
    ),
)
#: Frames from these places called the test: the stack worth showing ends there.
#: (``backports.asyncio.runner`` is pytest-asyncio's ``asyncio.Runner`` on Python 3.10.)
_RUNNERS = (
    *(f"{os.sep}{name}{os.sep}" for name in ("pluggy", "_pytest", "pytest_asyncio")),
    f"{os.sep}backports{os.sep}asyncio{os.sep}",
)


#: Where an object was made: (file, line, function) from the outermost frame in.
_Stack = tuple[tuple[str, int, str], ...]


_USER, _PLUMBING_FILE, _RUNNER = "user", "plumbing", "runner"
#: Each source file's kind, worked out once: every tracked object walks the stack.
_KIND_OF_FILE: dict[str, str] = {}


def _kind_of_file(filename: str) -> str:
    """Whether `filename` is plumbing, a runner's or the user's; worked out once per file."""
    kind = _KIND_OF_FILE.get(filename)
    if kind is None:
        if filename.startswith(_PLUMBING):
            kind = _PLUMBING_FILE
        elif any(place in filename for place in _RUNNERS):
            kind = _RUNNER
        else:
            kind = _USER
        _KIND_OF_FILE[filename] = kind
    return kind


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
    try:
        frame: types.FrameType | None = sys._getframe(2)
    except ValueError:  # called with no Python caller (an atexit callback, say)
        return ()
    kinds = _KIND_OF_FILE
    while frame is not None and len(frames) < _STACK_LIMIT:
        filename = frame.f_code.co_filename
        kind = kinds.get(filename) or _kind_of_file(filename)
        if kind is _RUNNER:
            if frames:
                break
            # Made by nettest or the loop under pytest: what called pytest may
            # still be a user's (a hook, an in-process pytester run).
            passed_runner = True
        elif kind is _USER and not _impersonates(frame):
            frames.append((filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    if passed_runner and frame is None:
        return ()  # runpy and pytest's __main__: nobody's code made it
    return tuple(reversed(frames))


def _impersonates(frame: types.FrameType) -> bool:
    """Whether `frame` runs hypothesis's wrapper of a ``@given`` test.

    hypothesis gives its wrappers the test's file, line and name (``@given`` at
    the test's own line, twice): only their globals say whose they are, those of
    ``hypothesis.core`` or of a module it made for one.
    """
    module = frame.f_globals.get("__name__")
    return isinstance(module, str) and module.startswith(
        ("hypothesis.", "hypothesis_temporary_module_")
    )


def _made_by_a_runner(frame: types.FrameType | None) -> bool:
    """Whether what `frame` runs was called by what runs tests, with no user code between.

    pytest-asyncio's runner makes each async test's task, and its fixtures'
    finalisers', before it runs the loop: such a task is how the test runs, not
    something it made, and one still pending (a test timeout interrupted it) is
    not the test's leak.  (A task made in a loop callback has only the loop's
    frames, and then the runner's, on its stack too: ask only of a loop that is
    not running.)
    """
    while frame is not None:
        kind = _kind_of_file(frame.f_code.co_filename)
        if kind is not _PLUMBING_FILE:
            return kind is _RUNNER
        frame = frame.f_back
    return False


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


class _SocketRef(weakref.ref[socket.socket]):
    """A weak reference to a socket strict mode tracks, which tells if it was dropped open.

    A socket freed while open is closed by its C finaliser, which only warns,
    before its weak references are cleared: by the time this reference's callback
    runs, nothing says whether the program closed it.  So the program's own
    closing marks the reference (`closed`, set by strict mode's wrappers round
    ``socket.socket.close``, ``_real_close`` and ``detach``), and the callback
    marks the socket's `entry` dropped while open unless it was closed.

    The report names the socket by its repr as the check last saw it (`label`),
    or as it was made.  A socket made over a descriptor (accepted, ``fromfd``,
    a TLS socket over the socket it wraps) is described in full as it is made:
    its addresses say which it is.  A new socket has none yet, and a repr asks
    the kernel for them: only what its repr would start with is kept (`made`),
    and put into words if it is reported.
    """

    __slots__ = ("closed", "entry", "label", "made")
    closed: bool
    entry: _Tracked
    label: str | None
    made: tuple[type[socket.socket], int, int, int, int]

    def __new__(cls, sock: socket.socket, entry: _Tracked, *, describe: bool) -> _SocketRef:
        return super().__new__(cls, sock, _socket_freed)

    def __init__(self, sock: socket.socket, entry: _Tracked, *, describe: bool) -> None:
        self.closed = False
        self.entry = entry
        self.label = None
        self.made = (
            type(sock),
            sock.fileno(),
            _FAMILY.__get__(sock),
            _KIND.__get__(sock),
            sock.proto,
        )
        if describe:
            with contextlib.suppress(Exception):  # a subclass's repr: `made` will do
                self.label = _label(entry, sock)

    def describe(self) -> str:
        """What a report calls the socket: its label, or its repr without addresses."""
        if self.label is not None:
            return self.label
        cls, fd, family, kind, proto = self.made
        # As socket.socket's repr puts them (an enum's name up to Python 3.10).
        return (
            f"{self.entry.what} <{cls.__module__}.{cls.__qualname__} fd={fd}, "
            f"family={_enum_or_int(socket.AddressFamily, family)}, "
            f"type={_enum_or_int(socket.SocketKind, kind)}, proto={proto}>"
        )


#: ``_socket.socket``'s own fields: ``socket.socket``'s properties make enums of them.
_FAMILY = _socket.socket.family
_KIND = _socket.socket.type


def _enum_or_int(enum_type: type[enum.IntEnum], value: int) -> str:
    """`value` as ``socket.socket``'s repr puts it: its enum member, or the number."""
    try:
        return str(enum_type(value))
    except ValueError:
        return str(value)


def _socket_freed(ref: _SocketRef) -> None:
    """Note that a tracked socket was freed while open, unless the program closed it.

    A weak reference's callback: it runs wherever the socket was freed (by
    reference counting, on any thread, or by the garbage collector), and never
    raises.
    """
    with contextlib.suppress(Exception):
        entry = ref.entry
        if not ref.closed and entry.dropped is None:
            entry.dropped = f"{ref.describe()} dropped while open"


class _Via(NamedTuple):
    """What made an object whose stack says nothing, for a report: how, and its entry.

    A report says `how`, then where `parent` was `made`: "accepted by a listening
    socket, created at:", then that socket's stack.
    """

    how: str
    parent: _Tracked
    #: The verb that introduces `parent`'s stack.
    made: str = "created"


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
    via: _Via | None = None
    #: Made on a thread other than the test's: its name, and the entry of what
    #: started it (a thread-backed server's loop thread) if the gate knows.
    thread: tuple[str, _Tracked | None] | None = None
    #: Set, to what the report says, when it was dropped while open and something
    #: closed it as it went (a StreamWriter's ``__del__``, a socket's finaliser):
    #: reported though closed.
    dropped: str | None = None
    #: The entry of the object it is part of (a server's listening socket is the
    #: server's): not listed while that object is reported, only once it is closed.
    part_of: _Tracked | None = None
    #: Weak references to its parts, tracked or not: the garbage collector's
    #: warnings about them are not listed while it is reported either.
    parts: tuple[weakref.ref[Any], ...] = ()
    #: Its parts that are sockets, held until the check: dropped while open, the
    #: object closes them in its finaliser (`_Gate.dropped_open`) before theirs,
    #: which would run first in some collections, can warn.
    sockets: tuple[socket.socket, ...] = ()

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


def _is_late(error: _LoopError) -> bool:
    """Whether `error` is about a task that a test which had ended made."""
    return isinstance(error.maker, str) and error.maker != error.owner


def _task_of(context: dict[str, object]) -> Any:
    """The task an exception-handler call is about, or None (a plain future, or nothing)."""
    subject = context.get("task", context.get("future"))
    return subject if callable(getattr(subject, "get_coro", None)) else None


def _task_name(task: asyncio.Future[Any]) -> str:
    """A task's name and its coroutine's, as a report names the task that made something."""
    name = task.get_name() if isinstance(task, asyncio.Task) else type(task).__name__
    coro = getattr(task, "get_coro", lambda: None)()
    qualname = getattr(coro, "__qualname__", None)
    return name if not isinstance(qualname, str) else f"{name} running {qualname}()"


def _count(n: int, noun: str) -> str:
    return f"a {noun}" if n == 1 else f"{n} {noun}s"


def _label(item: _Tracked, obj: object) -> str:
    """What to call a tracked object in a report: a socket's or task's repr says most."""
    if isinstance(obj, (socket.socket, asyncio.Future)):
        return f"{item.what} {obj!r}"
    if isinstance(obj, subprocess.Popen):
        return f"child process {obj.pid} {_command(obj.args)}"
    return item.what


#: What a report says of a thread that strict mode finds still running.
THREAD_LEFT_RUNNING = (
    "still running (not a daemon, so the interpreter waits for it as it exits; "
    "join it before the test ends)"
)


#: What a report says of a child process that strict mode finds still running.
CHILD_LEFT_RUNNING = (
    "still running (it would outlive the session: end it and wait() for it before the test ends)"
)


#: Set on an asyncio child's ``Popen`` that the check found running and killed
#: before its collection (see ``end_asyncio_children``): still reported as left running.
KILLED_LEFT_RUNNING = "_nettest_killed_left_running"

#: Set on a ``Popen`` that asyncio's subprocess transport started: its child
#: watcher reaps the child, and its pipe transports own the pipes.
ASYNCIO_CHILD = "_nettest_asyncio_child"
#: Set on such a ``Popen`` to a weak reference to the loop that started it.
ASYNCIO_LOOP = "_nettest_asyncio_loop"

#: What a report says of an asyncio child whose exit its closed loop never took.
CHILD_EXIT_NOT_TAKEN = (
    "ended, but its event loop closed before it took the exit, so its transport was "
    "never closed (asyncio warns 'unclosed transport' when it is freed: await "
    "process.wait())"
)


def exit_not_taken(popen: subprocess.Popen[Any]) -> bool:
    """Whether an asyncio child ended without its loop taking its exit, ever.

    asyncio's transport sets the ``Popen``'s return code as its loop takes the
    exit from the child watcher, and closes once its pipes are closed too: a
    child killed without ``await process.wait()`` may end just as its loop
    closes, leaving its transport open for ever.  On a loop still open, the
    exit is still to come.
    """
    if popen.returncode is not None:
        return False
    loop = getattr(popen, ASYNCIO_LOOP, lambda: None)()
    return loop is None or bool(loop.is_closed())


#: What a report says of a child process that ended but that no wait() reaped.
CHILD_NOT_WAITED_FOR = (
    "ended, but was never waited for (Python warns that it is still running when its "
    "Popen is freed: wait() for it)"
)


def child_running(popen: subprocess.Popen[Any]) -> bool:
    """Whether a child process is still running, without reaping it.

    Whoever started it reaps it (``Popen.wait()``, asyncio's child watcher): a
    reap here would take its exit status from them.
    """
    if popen.returncode is not None:
        return False
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # macOS: a zombie still counts as running
        try:
            os.kill(popen.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    try:
        return waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False  # reaped already


def wait_for_children(children: list[subprocess.Popen[Any]], deadline: float) -> None:
    """Wait, without reaping them, until `children` have ended or `deadline` (monotonic)."""
    while any(child_running(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.005)


def _command(args: object) -> str:
    """A child's command line as a report shows it, cut short."""
    text = repr(args if isinstance(args, (str, bytes)) else list(args))  # type: ignore[call-overload]
    return text if len(text) <= 80 else text[:77] + "..."


def closing_for_ever(obj: object) -> str | None:
    """What a memory transport's close() waits for that only the test could give; else None.

    See ``FlowControlled._unsent_at_close``.
    """
    unsent = getattr(obj, "_unsent_at_close", None)
    return unsent() if callable(unsent) else None


def _left_open(item: _Tracked, obj: object) -> str:
    """What a report says of a tracked object still open at the check."""
    if isinstance(obj, threading.Thread):
        return f"thread {obj.name!r} {THREAD_LEFT_RUNNING}"
    if isinstance(obj, subprocess.Popen):
        if getattr(obj, KILLED_LEFT_RUNNING, False) or child_running(obj):
            left = CHILD_LEFT_RUNNING
        elif getattr(obj, ASYNCIO_CHILD, False):
            left = CHILD_EXIT_NOT_TAKEN
        else:
            left = CHILD_NOT_WAITED_FOR
        return f"child process {obj.pid} {_command(obj.args)} {left}"
    waiting = closing_for_ever(obj)
    if waiting is not None:
        return f"{_label(item, obj)} closing, but connection_lost() never came: {waiting}"
    if isinstance(obj, asyncio.Future):
        return _label(item, obj)  # "pending task <Task pending ...>": not "open"
    if isinstance(obj, socket.socket) and getattr(obj, "_closed", False):
        # close() was called, but its descriptor stays open until its files close.
        return f"{_label(item, obj)} closed, but a makefile() file still holds it open"
    return f"open {_label(item, obj)}"


def _describe(what: str, item: _Tracked | None) -> str:
    if item is None:
        return f"  - {what}, created outside Python's socket module (no stack known)"
    verb = "started" if item.what in ("thread", "process") else "created"
    return f"  - {what}{_provenance(item, verb=verb)}"


def _provenance(item: _Tracked, depth: int = 0, verb: str = "created") -> str:
    """Where `item` was made, for a report: its stack, or what made it, and its thread.

    Its own frames come first.  Without any (it was made in a loop callback, in
    a task, or on a server's thread), what made it speaks for it: the listening
    socket that accepted it, the server it was made for, the task it was made in
    (and what made that task in turn), the thread it was made on.  `verb` says
    how `item` came to be ("started", for a server that made what is reported).
    """
    name, started = item.thread if item.thread is not None else (None, None)
    made = verb if name is None else f"{verb} on thread {name}"
    if item.stack:
        text = f", {made} at:\n{_format_stack(item.stack)}"
        if started is not None and started.stack:
            text += f"\n    thread {name} was started at:\n{_format_stack(started.stack)}"
        return text
    if item.via is not None and depth < 4:
        how, parent, parent_made = item.via
        return f", {how}{_provenance(parent, depth + 1, parent_made)}"
    if started is not None and started.stack:
        return f", {made}, which was started at:\n{_format_stack(started.stack)}"
    if name is not None:
        return f", {made} (none of the test's frames on its stack)"
    return f", {verb} with none of the test's frames on its stack"


def _format_stack(stack: _Stack) -> str:
    summary = traceback.StackSummary.from_list(
        [traceback.FrameSummary(filename, lineno, name) for filename, lineno, name in stack]
    )
    lines = "".join(summary.format()).rstrip("\n")
    return "\n".join("    " + line for line in lines.splitlines())


#: How a report item about a call to the loop's exception handler begins.
LOOP_ERROR_ITEM = "  - the loop's exception handler was called"


def _describe_loop_error(context: dict[str, object], maker: str | _Unseen | None) -> str:
    message = context.get("message", "unhandled error in the event loop")
    exception = context.get("exception")
    text = f"{LOOP_ERROR_ITEM}: {message}"
    if isinstance(exception, BaseException):
        text += f"\n    {type(exception).__name__}: {exception}"
    task = _task_of(context)
    future = context.get("future")
    if task is not None:
        text += f"\n    task: {task!r}"
        if maker is None:
            text += (
                f"\n    {OUTSIDE_ANY_TEST}: by a fixture of wider scope, or before the first test)"
            )
        elif isinstance(maker, _Unseen):
            text += (
                "\n    (the gate did not see which test created this task: it was built "
                "directly, by another task factory, or before the gate watched its loop, and "
                "may be an earlier test's; --nettest-leaks=strict fails a test that leaves a "
                "task pending)"
            )
    elif isinstance(future, asyncio.Future):
        text += f"\n    future: {future!r}"
    source = context.get("source_traceback")
    if isinstance(source, traceback.StackSummary):
        text += "\n    created at:\n" + "".join(source.format()).rstrip("\n")
    return text


def _stream_end(fd: int) -> tuple[bool, int, object, object] | None:
    """``(listening, family, host, port)`` of stream socket *fd*; None for any other socket."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        name = sock.getsockname()
        return listening, int(sock.family), name[0], name[1]
    except OSError:
        return None
    finally:
        sock.close()


def accepted_by_a_listener(fd: int, listeners: list[tuple[int, object, object]]) -> bool:
    """Whether TCP socket *fd* is a connection one of *listeners* accepted.

    *listeners* are ``(family, host, port)``.  An accepted socket is connected, not
    listening, and has its listener's family and port, and its host unless the
    listener took every address (``0.0.0.0``, ``::``).
    """
    end = _stream_end(fd)
    if end is None or end[0]:
        return False
    _, family, host, port = end
    return any(
        family == l_family and port == l_port and (l_host in ("0.0.0.0", "::") or host == l_host)
        for l_family, l_host, l_port in listeners
    )


def listener_of(fd: int) -> tuple[int, object, object] | None:
    """``(family, host, port)`` of *fd* if it is a listening TCP socket; else None."""
    end = _stream_end(fd)
    if end is None or not end[0]:
        return None
    return end[1], end[2], end[3]


#: How a report says that a failed task was made by no test (see `_header`).
OUTSIDE_ANY_TEST = "(created outside any test"


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
