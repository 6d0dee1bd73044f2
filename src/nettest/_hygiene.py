"""The hygiene gate: find what a test left behind and blame the test that made it.

Theory of operation
-------------------
This module holds the gate itself, `_Gate` (one instance, `GATE`): who owns what
is made, and the check after each test.  What it installs to watch loops, tasks
and sockets is in `nettest._hygiene_instruments`; its records, the creation
stacks, and the wording of each item it reports are in `nettest._hygiene_report`.

Every object nettest creates (servers, transports, proxies, sockets, tasks) is
registered with :func:`track` together with the test that was running when it was
made and the stack that made it.  Objects made while a fixture of wider scope is
being set up belong to that fixture, not to the test that happened to trigger it.
What a server or proxy makes as it runs (`track`'s ``on_behalf_of``) belongs to
that server's owner, and an object made on a thread other than the test's notes
the thread, and the entry of what started it if the gate tracks that.  Strict
mode's sockets and tasks made on another thread, or in a task, are the thread's
or the task's owner's (`_Instruments.maker`).  An object
whose stack shows none of the test's frames, made in a task that strict mode
tracks, notes that task's entry (`_Gate._task_origin`): where it was made says
which test line made the object.  What a
nettest object made for itself (its listening socket, the transport that serves
it, a proxy's listener) it registers with :func:`parts_of` once it is tracked:
those are its parts, which strict mode's socket watcher tracks as sockets too.

After a test's teardown the plugin calls :meth:`_Gate.check`, which reports:

* tracked objects of this test that are still open (``own`` and ``strict``);
* calls to an instrumented loop's exception handler during the test (``own`` and
  ``strict``), charged to the test that created the task they are about;
* socket file descriptors opened during the test and still open, with the stack
  that created the Python socket object where one exists (``strict``);
* Python sockets made during the test that were freed while open, closed by
  their finalisers (``strict``, see `nettest._hygiene_report._SocketRef`);
* asyncio tasks created during the test and still pending, with their creation
  stack (``strict``).

It also reports, under the name of the test that made it, a task that an earlier
test left running in ``own`` mode and that failed since (see
`nettest._hygiene_instruments`).

An object that is reported speaks for its parts: they are not listed, and
neither is what their finalisers raise as the garbage collector frees them (a
socket's "unclosed" warning).  A socket strict mode reports speaks so for the
asyncio transport over it, and for that transport's StreamWriter.  A part still
open when its object is closed is listed on its own (a nettest bug: closing an
object closes its parts).

Whatever is reported is then closed or cancelled, so that it can never be blamed
on a later test: a socket with the asyncio transports over it, which would
otherwise warn "unclosed transport" as they are collected, after their test.
The checks are cheap when nothing leaked: the garbage collector runs only when
something looks leaked, to let unreachable objects finalise (and warn) inside
the test that dropped them.

A StreamWriter dropped without ``close()`` is closed by its own ``__del__`` on
Python >= 3.11.5, which only warns.  Memory stream pairs use a writer that tells
the gate first (`_Gate.writer_dropped`), and so, in every session, does a wrapper
round ``asyncio.StreamWriter.__del__`` for real connections (before 3.11.5, round
the TLS transport's ``__del__``, which warns the same way:
`_Gate.tls_transport_dropped`).  The gate marks the entry of the transport (or
socket), and reports it although it is closed by the time of the check.

Strict mode's instruments are installed for the session, or by :meth:`_Gate.begin`
for one test that a marker makes strict and removed by :meth:`_Gate.end`.
Bookkeeping runs inside transport callbacks, socket constructors and task
factories: it never raises there.  A failure is reported at the test's check.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
import types
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from ._hygiene_instruments import (
    _TASK_OWNER,
    CHILD_END_WAIT,
    _Instruments,
    _LastTest,
    _policy_loop_fds,
    cancelled_by_gate,
    child_left,
    child_watchers,
    close_after_their_loop,
    close_dropped,
    close_transports_over,
    close_uvloop_handles_over,
    end_asyncio_children,
    finalised_open,
    join_all,
    listening_sockets_on,
    made_in_test,
    open_socket_fds,
    open_transports_on,
    open_transports_on_closed,
    socket_transport_under,
    transport_stack,
)
from ._hygiene_report import (
    LOOP_ERROR_ITEM,
    OUTSIDE_ANY_TEST,
    _BookkeepingError,
    _count,
    _creation_stack,
    _describe,
    _describe_loop_error,
    _is_late,
    _label,
    _left_open,
    _LoopError,
    _reference,
    _socket_names,
    _SocketRef,
    _task_name,
    _task_of,
    _Tracked,
    _Via,
    accepted_by_a_listener,
    closing_for_ever,
    listener_of,
    wait_for_children,
)

# Tests annotate with `_Stack`, and replace `_creation_stack` here: `_Gate._track` calls it.
from ._hygiene_report import _Stack as _Stack

__all__ = ["LeakError", "LeakMode", "left_at_the_end", "track"]

LeakMode = Literal["off", "own", "strict"]
LEAK_MODES: tuple[LeakMode, ...] = ("off", "own", "strict")

#: Seconds a strict test's threads still running at its check get to end, in all.
THREAD_GRACE = 1.0

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")


class LeakError(Exception):
    """A test left sockets, transports, servers or tasks open, or its loop reported errors.

    Raised by the hygiene gate as a teardown error of the test that made the
    leaked objects.  The message lists each one with the stack that created it.
    """


LeakError.__module__ = "nettest"


#: How many of a test's calls to the loop's exception handler its report lists.
LOOP_ERRORS_SHOWN = 10

#: A report's line for a task pending as its loop closed, and what makes two such
#: tasks alike: the coroutine and the line it waits at (not the name, nor what it
#: waits for, whose repr may hold an address, a descriptor or a port).
PENDING_TASK_ITEM = "  - pending task "
_TASK_CORO = re.compile(r" coro=<[^>]*>")


@dataclass
class _Gate(_Instruments):
    """Process-wide state of the hygiene gate; one instance, `GATE`.

    Its instruments (loops, tasks, sockets) are the methods of `_Instruments`.
    """

    owner: str | None = None
    #: Whose objects a thread is making now, whatever task makes them (`made_for`):
    #: (thread ident, owner), innermost last.
    acting_for: list[tuple[int, str | None]] = field(default_factory=list)
    tracked: list[_Tracked] = field(default_factory=list)
    loop_errors: list[_LoopError] = field(default_factory=list)
    exempt_fds: set[tuple[int, int]] = field(default_factory=set)
    #: Tasks pending as their loop closed whose coroutines would not close: kept for
    #: the session, as freed they would fail whichever test ran then.
    unending: list[asyncio.Task[Any]] = field(default_factory=list)
    #: The tasks pending as a test marked "off" closed its own loop, to end once it ran.
    left_by_off_tests: dict[str, list[weakref.ref[asyncio.Task[Any]]]] = field(
        default_factory=dict
    )
    #: Tests begun and not yet ended (more than one under pytester).
    running: set[str] = field(default_factory=set)
    #: Tests checked in mode ``off``, and tests that failed: what their tasks do
    #: later is nobody's business, or follows from that failure.
    silenced: set[str] = field(default_factory=set)
    #: Tests whose setup or body failed (until a rerun begins): their leaks are
    #: listed, not raised, and a StreamWriter they drop is listed under that
    #: failure, or if it is freed after their check, is the failure's consequence;
    #: either way it is closed without its ResourceWarning, which would fail that
    #: test again, or blame another.
    failed: set[str] = field(default_factory=set)
    #: The test whose check runs now.
    checking: str | None = None
    #: The test that ended last, until the next one begins: what pytest's own
    #: garbage collection at the end of a teardown frees is most likely its.
    ended_last: str | None = None
    #: The thread that runs the tests; objects made on others say so.
    test_thread: int = field(default_factory=threading.get_ident)
    #: The session runs in strict mode: strict mode's instruments stay installed.
    strict: bool = False
    #: The test being checked in strict mode, by the session's mode or by its marker.
    strict_owner: str | None = None
    #: The socket descriptors open as the strict test began.
    strict_fds_before: frozenset[tuple[int, int]] = frozenset()
    #: Strict mode: what a loop that closes its own handles (uvloop's) still had
    #: open as it closed, by owner, as report items (`note_sockets_closing_with`).
    closed_with_loop: dict[str, list[str]] = field(default_factory=dict)
    #: Real connections' StreamWriters (own mode) that a test dropped before its
    #: check, closed quietly: each a report item if the test failed, and the
    #: ResourceWarning held back from ``StreamWriter.__del__`` if it passed.
    undecided_writers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    instrumented: weakref.WeakSet[asyncio.AbstractEventLoop] = field(
        default_factory=weakref.WeakSet
    )
    #: The last test that made a task on each loop it watches: a future finalised
    #: after its loop closed (its exception never retrieved) is that test's.
    loop_tests: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LastTest] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    #: What the session's last collection freed open, for the session's summary.
    left_at_the_end: list[str] = field(default_factory=list)
    #: The same, as `sys.unraisablehook` was given it, for pytest's own hook.
    left_for_pytest: list[Unraisable] = field(default_factory=list)
    #: The unraisable hook `catch_until_the_end` put in place, and the one it replaced.
    _catching: Callable[[Any], object] | None = None
    _until_the_end: Callable[[Any], object] | None = None
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
    #: The owner of each nettest server loop thread (`serves_on`), and in strict
    #: mode of each thread started (None: a wider fixture's): the tasks, and
    #: sockets, made on it are its owner's, whichever test runs as they are made.
    thread_owners: weakref.WeakKeyDictionary[threading.Thread, str | None] = field(
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
    #: The wrapper round ``asyncio.StreamWriter.__del__`` (before Python 3.11.5,
    #: the TLS transport's) while it is installed.
    writer_watcher: Callable[..., None] | None = None
    #: The wrappers round ``asyncio.BaseEventLoop.__init__`` and ``close``, by name,
    #: while they are installed.
    loop_watchers: dict[str, Callable[..., None]] = field(default_factory=dict)
    #: The wrappers round ``socket.socket``'s methods that close a socket (by name)
    #: while they are installed: they mark a tracked socket closed by the program.
    socket_closers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    #: The wrapper round ``threading.Thread.start`` while it is installed.
    thread_starter: Callable[..., None] | None = None
    #: The wrapper round ``subprocess.Popen.__init__`` while it is installed.
    process_starter: Callable[..., None] | None = None
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

    @contextlib.contextmanager
    def made_for(self, obj: object) -> Iterator[None]:
        """Attribute everything created inside the block to whoever owns `obj`.

        Nobody, if `obj` is not tracked (a wider fixture made it).  For what a
        server or proxy makes when a test calls one of its methods (a proxy's
        ``up()`` binds a new listener): it is the server's, not the test's.  The
        block must not await, as `owned_by`'s.
        """
        entry = self._entry_of(obj)
        owner = None if entry is None else entry.owner
        acting = (threading.get_ident(), owner)
        self.acting_for.append(acting)
        try:
            with self.owned_by(owner):
                yield
        finally:
            self.acting_for.remove(acting)

    def track(
        self,
        obj: _T,
        *,
        what: str,
        is_open: Callable[[_T], bool],
        close: Callable[[_T], object],
        on_behalf_of: object = None,
        via: _Via | None = None,
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
        via: _Via | None,
    ) -> _Tracked | None:
        """Track `obj` (see `track`); return its entry, or None if it is nobody's."""
        if on_behalf_of is None:
            owner = self.owner
        else:
            parent = self._entry_of(on_behalf_of)
            owner = None if parent is None else parent.owner
            if parent is not None and via is None:
                via = _Via(f"made by {parent.what}", parent)
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
            return None
        if len(self.tracked) > 4096:
            self.tracked = [t for t in self.tracked if _kept(t)]
        thread = None if threading.get_ident() == self.test_thread else self._thread_origin()
        stack = _creation_stack()
        if not stack and via is None:
            via = self._task_origin()
        entry = _Tracked(
            _reference(obj),
            what,
            owner,
            stack,
            cast("Callable[[Any], bool]", is_open),
            cast("Callable[[Any], object]", close),
            via=via,
            thread=thread,
        )
        self.tracked.append(entry)
        if hasattr(type(obj), "_gate_entry"):
            # For its finaliser, which runs after a collection cleared weak references.
            obj._gate_entry = entry  # type: ignore[attr-defined]
        try:
            self.owners[obj] = entry
        except TypeError:  # no weak reference, or unhashable: keep it until the check
            self.owners_by_id[id(obj)] = (obj, entry)
        return entry

    def _entry_of(self, obj: object) -> _Tracked | None:
        """The entry of a tracked object (kept after its owner's check), or None."""
        try:
            return self.owners.get(obj)
        except TypeError:
            held = self.owners_by_id.get(id(obj))
            return held[1] if held is not None and held[0] is obj else None

    def _task_origin(self) -> _Via | None:
        """The task making an object, if the gate tracked it (strict mode), with what to say.

        An object made in a task has only the task's frames on its stack: one that
        ``asyncio.wait_for`` runs (before Python 3.12) shows none of the test's.
        Where that task was made does, or its own maker's in turn.  Asked only for
        an object whose stack is empty.
        """
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no loop running on this thread
            return None
        if task is None:
            return None
        entry = self._entry_of(task)
        if entry is None:
            return None
        return _Via(f"made by task {_task_name(task)}", entry)

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

    def _bookkeeping_failed(
        self, what: str, error: BaseException, owner: str | None = None
    ) -> None:
        """Record that tracking `what` failed, for the report of `owner` (the running test)."""
        with contextlib.suppress(Exception):
            owner = owner or self.owner
            if owner is not None:
                message = f"{type(error).__name__}: {error}"
                self.bookkeeping_errors.append(_BookkeepingError(owner, what, message))

    def parts_of(self, parent: object, *parts: object) -> None:
        """Note that `parts` are `parent`'s own: a report of `parent` speaks for them.

        `parent` must be tracked already.  A part that the gate tracks too (strict
        mode's sockets) is listed on its own only while `parent` is not reported;
        the garbage collector's warnings about any part are not listed while it
        is.  Never raises.
        """
        try:
            entry = self._entry_of(parent)
            if entry is None:  # nobody's (a wider fixture's), or not tracked
                return
            refs = [ref for ref in entry.parts if ref() is not None]
            for part in parts:
                if part is None:
                    continue
                with contextlib.suppress(TypeError):  # no weak reference: warnings stay
                    refs.append(weakref.ref(part))
                own = self._entry_of(part)
                if own is not None and own.owner == entry.owner:
                    own.part_of = entry
            entry.parts = tuple(refs)
            entry.sockets += tuple(part for part in parts if isinstance(part, socket.socket))
        except Exception as error:
            self._bookkeeping_failed("part", error)

    def writer_dropped(self, writer: asyncio.StreamWriter, transport: object = None) -> bool:
        """Note that `writer` is being finalised while its transport is still open.

        Python >= 3.11.5 closes the transport in ``StreamWriter.__del__`` and only
        warns, with a ResourceWarning the default filters hide: by the check the
        transport looks closed.  The entry of `transport` (by default the
        writer's), or of the socket under it, is marked so that its owner's check
        reports it although it is closed.  A writer that was closed is not
        reported.  Called from finalisers: never raises.

        A writer whose test's check is still to come is closed here, without the
        warning ``__del__`` would give: the check reports it, with the stack that
        made it, where the warning (an error under the recommended filters) would
        say less, and fail the test first.  So is one whose test failed already
        (pytest-timeout interrupted it, say), whenever it is freed: its check lists
        it under that failure, and the warning would fail the test again.  Only a
        writer freed after its test's check, or in mode ``off``, still warns.

        Returns:
            Whether it closed the writer: then ``__del__`` must not run.
        """
        try:
            current = writer.transport
            return self._dropped(
                current,
                getattr(writer, "_loop", None),  # what StreamWriter.__del__ checks too
                current if transport is None else transport,
                "StreamWriter",
                f"StreamWriter over {current!r}",
                f"unclosed {writer!r}",
            )
        except Exception as error:
            self._bookkeeping_failed("StreamWriter", error)
        return False

    def tls_transport_dropped(self, transport: asyncio.BaseTransport) -> bool:
        """Note that a TLS transport is being finalised while open (Python < 3.11.5).

        Those Pythons have no ``StreamWriter.__del__``: the TLS transport's own
        finaliser warns "unclosed transport" (a plain socket transport's stays
        alive while its loop watches its socket).  It is decided as a dropped
        writer is (`writer_dropped`), unless its connection was lost already:
        then it is marked closed quietly, as Python 3.11+ marks it.  Returns whether
        the gate closed it quietly: then ``__del__`` must not run.  Never raises.
        """
        try:
            under = socket_transport_under(transport)
            if not _over_an_open_socket(transport):
                # Its connection was lost (the peer reset it, say): Python 3.11+
                # marks it closed then, and a writer over it never warns; 3.10
                # marks it only before the handshake is done, and its warning
                # failed whichever later test the collector freed it in.
                transport._closed = True  # type: ignore[attr-defined]
                return True
            loop = getattr(transport, "_loop", None)
            return self._dropped(
                transport,
                loop,
                transport,
                "TLS transport",
                f"TLS transport over {under!r}",
                f"unclosed transport {transport!r}",
            )
        except Exception as error:
            self._bookkeeping_failed("TLS transport", error)
        return False

    def _dropped(
        self,
        current: asyncio.BaseTransport,
        loop: asyncio.AbstractEventLoop | None,
        transport: object,
        kind: str,
        shown: str,
        warning: str,
    ) -> bool:
        """Decide on `current`, an open connection being finalised: see `writer_dropped`.

        `transport` is the object whose entry is marked (else the socket's under
        it), `kind` what it is, `shown` how a report item shows it untracked,
        `warning` the ResourceWarning held back.  Returns whether it closed
        `current` quietly.
        """
        tls = socket_transport_under(current)
        if tls is not None and finalised_open(current):
            # Its finaliser ran first in this collection: the connection under it
            # is open, and what the test dropped.
            current = tls
        closing = current.is_closing()
        # A closed TLS transport has let go of what answers get_extra_info().
        sock = None if closing else current.get_extra_info("socket")
        # asyncio hands out a TransportSocket; the tracked socket is inside it.
        for candidate in (transport, getattr(sock, "_sock", sock)):
            # Freed in one collection with the writer, the transport has lost its
            # weak references already: nettest's keep their entry themselves.
            entry = self._entry_of(candidate) or getattr(candidate, "_gate_entry", None)
            if isinstance(entry, _Tracked):
                if closing and entry.dropped is None:
                    return False  # closed, as it should be
                # Closing only because the collection that frees the writer has just
                # freed the transport under it (its finaliser ran first, and marked it
                # dropped): what the test dropped is the writer, so say that.
                label = repr(candidate) if isinstance(candidate, socket.socket) else entry.what
                if kind == "StreamWriter" and tls is not None:
                    label = f"TLS over {label}"  # start_tls() put it over the connection
                entry.dropped = f"{kind} over {label} dropped without close()"
                if self._reports(entry.owner):
                    if not closing:
                        close_dropped(current, loop)
                    return True
                return False
        if closing:
            return False
        # Tracked by no entry (a real connection in own mode): only a failed
        # test's is the gate's business, closed quietly all the same.
        owner, failed = self._test_of(loop)
        # Freed by its test's check (as the gate closes what it reports): the
        # check's own collection reports the warning, or leaves it to the
        # socket that the gate reports.
        if owner is not None and (failed or owner != self.checking):
            if owner in self.running:
                # Its check is still to come (and the test may yet fail: the
                # timeout's exception unwinding it): it lists the connection if
                # the test failed, and gives the warning held back here if not.
                untracked = self._untracked(owner)
                self.undecided_writers.setdefault(owner, []).append(
                    (f"  - {shown} dropped without close(){untracked}", f"{warning}{untracked}")
                )
            close_dropped(current, loop)
            return True
        return False

    def _reports(self, owner: str | None) -> bool:
        """Whether `owner`'s check will list what it left: still to come, or it failed."""
        return owner in self.failed or (owner in self.running and owner not in self.silenced)

    def _unwatched_of(self, owner: str) -> Callable[[object], bool]:
        """Whether a loop is one the gate never watched, made in `owner` or in no test.

        What is open on one another test made (``asyncio.run`` in a synchronous
        test that passed) is not `owner`'s to answer for.
        """

        def unwatched(loop: object) -> bool:
            if loop in self.instrumented:
                return False
            made_in = made_in_test(loop)
            return made_in is None or made_in == owner

        return unwatched

    def _other_test_of(self, owner: str) -> Callable[[object], str | None]:
        """The test other than `owner` whose event loop an object (a connection) is on."""

        def other_test(obj: object) -> str | None:
            maker = self.loop_test(getattr(obj, "_loop", None))
            return maker if maker != owner else None

        return other_test

    def _untracked(self, owner: str) -> str:
        """What a report item says of a connection the gate closed and does not track."""
        if owner == self.strict_owner:
            return ", created outside Python's socket module (no stack known)"
        return " (own mode does not track it: --nettest-leaks=strict gives its stack)"

    def _test_of(self, loop: asyncio.AbstractEventLoop | None) -> tuple[str | None, bool]:
        """The test an untracked connection on `loop` is taken to be from, and whether it failed.

        Its loop's test, if known: the last test that made a task on it, or the
        one it was made in (a loop the gate never watched, such as `asyncio.run`'s).
        Else the test whose phase runs as it is freed, or between tests the one
        that ended last.  That test if it failed, or if it is still running
        (checked in a mode but ``off``); else None, as for a test that passed
        and ended: own mode leaves its connections to their ResourceWarning.
        (A connection freed in one collection with its loop, by pytest's own
        garbage collection after a teardown, has lost its loop's entry and has no
        phase to run in.)
        """
        name = self.loop_test(loop)
        if name is None:
            name = self.owner if self.owner is not None else self.ended_last
        if name in self.failed:
            return name, True
        if name in self.running and name not in self.silenced:
            return name, False
        return None, False

    def loop_test(self, loop: asyncio.AbstractEventLoop | None) -> str | None:
        """The test `loop` is known to be, if any: the last to make a task on it, or made in."""
        if loop is None:
            return None
        last_test = self.loop_tests.get(loop)
        if last_test is not None and last_test.name is not None:
            return last_test.name
        return made_in_test(loop)

    # -- the check -----------------------------------------------------------

    def dropped_open(self, obj: object) -> bool:
        """Note that `obj` is being finalised while open (called from its ``__del__``).

        Its test's check reports it, however long before the check it was
        collected.  The entry comes from the object itself (see `_track`): a
        collection of a reference cycle clears weak references before it calls
        finalisers.  Never raises.

        When that check is still to come, or the test failed already, the gate
        closes the sockets among its parts (a server's listening socket, which
        the entry holds so that it is not freed first, with a warning of its
        own) and the finaliser must not warn: as for
        a dropped writer (`writer_dropped`), its ResourceWarning, raised wherever
        the garbage collector happened to run (a state machine's next example),
        would fail the test first, as pytest's unraisable-exception error with
        no stack, and the report would say the rest only underneath.

        Returns:
            Whether the gate reports it: then the finaliser must not warn.
        """
        try:
            entry = getattr(obj, "_gate_entry", None)
            if not isinstance(entry, _Tracked):
                return False
            if entry.dropped is None:
                entry.dropped = f"{_label(entry, obj)} dropped while open"
            if self._reports(entry.owner):
                for sock in entry.sockets:
                    sock.close()
                return True
        except Exception as error:
            self._bookkeeping_failed("finaliser", error)
        return False

    def begin(self, owner: str, mode: LeakMode = "own") -> frozenset[tuple[int, int]]:
        """Start watching a test; return the socket descriptors open before it (strict).

        A strict test outside a strict session gets strict mode's instruments
        here: the socket wrapper, and a task factory on each loop the gate
        watches whose own factory someone replaced.  `end` removes them.
        """
        self.loop_errors = [e for e in self.loop_errors if e.owner != owner]
        self.failed.discard(owner)
        self.running.add(owner)
        self.ended_last = None
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
        self.strict_fds_before = open_socket_fds()
        return self.strict_fds_before

    def end(self, owner: str) -> None:
        """Stop watching a test: remove what `begin` installed for it alone.

        Also releases what `check` did not get to (when the test's teardown
        raised), so that no later test is blamed for it.
        """
        self.running.discard(owner)
        self.ended_last = owner
        self.closed_with_loop.pop(owner, None)
        self.undecided_writers.pop(owner, None)
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

    def check(
        self,
        owner: str,
        mode: LeakMode,
        fds_before: frozenset[tuple[int, int]],
        *,
        failed: bool = False,
        last: bool = False,
        wider: Callable[[], list[object]] | None = None,
    ) -> str | None:
        """Report and then release everything `owner` left behind.

        Also reports, under the name of the test that made it, a task that an
        earlier test left running and that failed during this one.  A test that
        `failed` already is not failed again for its leaks (its clean-up code did
        not run): they are released all the same, and returned as text.  The
        `last` test of the session (of an xdist worker's) has the garbage
        collector run in its check, leaks or none: a failed future left in a
        reference cycle reports "exception was never retrieved" only as it is
        freed, and with no collection to come it would never be reported.
        `wider` gives the values of the test's fixtures of wider scope: what they
        still hold of the test's objects is theirs (`_hand_to_wider_fixtures`).

        Raises:
            LeakError: listing each leak with the stack that created it.
        """
        __tracebackhide__ = True
        if mode == "off":
            self.end_left_by_an_off_test(owner)
            self._forget(owner)
            return None
        self.checking = owner
        # The check's own collection (`_collect_garbage`) is the one that frees
        # garbage in it: one that fell due as it ran would raise the finalisers'
        # warnings past the check, and pytest would give them to the next test.
        collecting = gc.isenabled()
        gc.disable()
        try:
            if wider is not None:
                self._hand_to_wider_fixtures(owner, wider)
            return self._check(owner, mode, fds_before, failed=failed, last=last)
        finally:
            self.checking = None
            if collecting:
                gc.enable()

    def _hand_to_wider_fixtures(self, owner: str, wider: Callable[[], list[object]]) -> None:
        """Give the fixtures of wider scope what they hold of `owner`'s open objects.

        A session fixture that hands out servers and keeps them (a factory with a
        cache) makes each one while the first test that asks for it runs: the
        server is that test's by when it was made, but the fixture closes it, and
        a later test uses it.  Reported and closed at this test's check, it failed
        the next test.  An object a wider fixture's value refers to (through its
        attributes, containers and closures) is not reported or closed, here or
        later: it is nobody's, as what such a fixture makes as it is set up.
        Never raises.
        """
        try:
            mine = [
                item
                for item in self.tracked
                if item.owner == owner and item.dropped is None and not item.open_at_loop_close
            ]
            candidates = {id(obj): item for item in mine if (obj := item.alive_and_open())}
            if not candidates:
                return
            reachable = _reachable_ids(wider())
            handed = {item for key, item in candidates.items() if key in reachable}
            # And their parts (a server's listening socket), which go with them.
            handed.update(item for item in mine if item.part_of in handed)
            numbers: set[int] = set()
            for item in handed:
                item.owner = None
                for sock in (item.alive_and_open(), *item.sockets):
                    if isinstance(sock, socket.socket) and sock.fileno() != -1:
                        numbers.add(sock.fileno())
            if numbers:  # their descriptors are the fixture's too (strict mode)
                self.exempt_fds |= {fd for fd in open_socket_fds() if fd[0] in numbers}
        except Exception as error:
            self._bookkeeping_failed("wider fixture's objects", error, owner)

    def catch_until_the_end(self) -> None:
        """Take what finalisers raise from now until `collect_at_the_end`, for the summary.

        When the last test's teardown failed, its error (the frames of its
        traceback) held what its fixtures left open through that test's check;
        pytest lets go of it after the session, and what it held is freed then,
        whenever that is: its warnings came out of pytest's unconfigure as an
        internal error.  They are taken here instead, and listed as a last
        check's collection lists what it freed.  Called again as the session
        finishes: pytest before 8.4 puts back, as each phase ends, the hook it
        found as the phase began.
        """
        if self._catching is not None and sys.unraisablehook is self._catching:
            return

        def hook(unraisable: Any) -> None:
            self.left_at_the_end.append(f"  - {_unraisable_message(unraisable)}")
            self.left_for_pytest.append(Unraisable.of(unraisable))

        self._until_the_end, sys.unraisablehook = sys.unraisablehook, hook
        self._catching = hook

    @property
    def catching_until_the_end(self) -> bool:
        """Whether `catch_until_the_end` was called, and `collect_at_the_end` not yet."""
        return self._catching is not None

    def hand_to_pytest(self, pytest_takes_them: bool) -> bool:
        """Give pytest's unraisable hook what the session's last collection freed open.

        Without the gate, pytest's own collection as the session ends (from
        pytest 8.4) would have freed it, and judged it under the session's
        filters: handed over, pytest judges it as it would have.  Where pytest
        takes none (`pytest_takes_them` false: ``-p no:unraisableexception``;
        or its hook is not in place, before pytest 8.4) the summary's list is
        all.  Returns whether anything was handed over.  Never raises.
        """
        left, self.left_for_pytest = self.left_for_pytest, []
        hook = sys.unraisablehook
        if (
            not left
            or not pytest_takes_them
            or hook is sys.__unraisablehook__
            or hook is self._catching
        ):
            return False
        for unraisable in left:
            with contextlib.suppress(Exception):
                hook(cast("sys.UnraisableHookArgs", unraisable))  # duck-typed: it reads the fields
        return True

    def collect_at_the_end(self) -> None:
        """Free what is left (see `catch_until_the_end`), then give the hook back."""
        if self._catching is None:
            return
        try:
            for _ in range(5):  # as pytest's own check does: one may free more
                gc.collect()
        finally:
            # Unless someone put another in its place meanwhile.
            if sys.unraisablehook is self._catching and self._until_the_end is not None:
                sys.unraisablehook = self._until_the_end
            self._catching = self._until_the_end = None

    def _check(
        self,
        owner: str,
        mode: LeakMode,
        fds_before: frozenset[tuple[int, int]],
        *,
        failed: bool,
        last: bool,
    ) -> str | None:
        __tracebackhide__ = True
        untracked = []
        if failed:  # its tasks failing later (at its teardown, say) follow from that
            self.silenced.add(owner)
            # Before the garbage collector runs: it would free them with a warning.
            untracked = self._close_left_on_closed_loops(owner)
        watchers = self._let_threads_end(owner)
        leaks, _ = self._find(owner, mode, fds_before)
        others: list[str] = []
        # A failed test's garbage too: what it dropped in a reference cycle (a
        # client whose finaliser warns, say) would fail whichever test the
        # collector next ran in.
        # And a child's transport and pipes, once asyncio's watcher lets go of them.
        if leaks or last or failed or watchers:
            only_last = not leaks and not failed and not watchers
            suspects = self._suspects(owner)
            parts = self._parts(owner)
            # Let unreachable objects finalise now, inside the test that dropped them.
            finalising = _collect_garbage(
                parts,
                self._other_test_of(owner),
                before=lambda: join_all(watchers, time.monotonic() + CHILD_END_WAIT),
                for_pytest=only_last,
            )
            # Collected while still open: dropped without being closed.  Not a
            # socket that the program closed meanwhile (a finaliser, another thread).
            gone = {
                item: label
                for item, label in suspects
                if item.ref() is None
                and item.dropped is None
                and not (isinstance(item.ref, _SocketRef) and item.ref.closed)
            }
            leaks, reported = self._find(owner, mode, fds_before, gone)
            if only_last:
                # Garbage of the whole session, most of it no test's that the gate
                # can name: shown after the session, as it would have warned then
                # without the gate, failing no test.
                self.left_at_the_end += [
                    f"  - {item.message}" for item in finalising if item.parent is None
                ]
                self.left_for_pytest += [
                    item.unraisable
                    for item in finalising
                    if item.parent is None and item.unraisable is not None
                ]
                finalising = [item for item in finalising if item.parent is not None]
            leaks += [
                f"  - while the garbage collector finalised them: {item.message}"
                for item in finalising
                if item.maker is None
                and item.parent not in reported
                and (item.parent is None or item.parent.part_of not in reported)
            ]
            others = _others_garbage(finalising, strict=mode == "strict")
        late = self._late_failures(owner, mode)
        leaks += self._release(owner)
        leaks += untracked
        if mode == "strict" and leaks:
            leaks += self._release_uvloop_handles(fds_before)
        undecided = self.undecided_writers.pop(owner, [])
        # Listed with the rest, and always in strict mode (on uvloop no Python
        # socket is under a writer); else warned, as StreamWriter.__del__ would.
        if failed or leaks or mode == "strict":
            leaks += [line for line, _ in undecided]
        own = (
            [_header(owner, leaks, mode), *_fewer_repeats(_fewer_loop_errors(leaks))]
            if leaks
            else []
        )
        own += others
        if failed:
            # Not failed again for its own leaks; another test's late failure is an error.
            if late:
                raise LeakError("\n".join([*late, *own]))
            return "\n".join(own) or None
        if own or late:
            raise LeakError("\n".join([*own, *late]))
        if undecided:
            # One warning for them all: under an error filter, a second would never show.
            # The first is its headline, and one of the ten alike listed.
            warning = undecided[0][1]
            if len(undecided) > 1:
                more = "\n".join(_fewer_repeats([line for line, _ in undecided])[1:])
                warning += f"\nand {len(undecided) - 1} more:\n{more}"
            warnings.warn(warning, ResourceWarning, stacklevel=1)
        return None

    def left_on_closing_loop(
        self, loop: asyncio.BaseEventLoop, owner: str
    ) -> list[asyncio.BaseTransport]:
        """The connections open on `loop` as it closes during `owner`: never to be closed now.

        Its own loop (one a test fixture or `asyncio.run` made), unless the test
        is checked in mode ``off``.  Not those the gate tracks (a nettest
        object's, a socket strict mode tracks): their own reports say more.
        Python 3.11.5+ closes a dropped StreamWriter's connection as it is
        freed; 3.10's stays open until its loop closes, and then warned
        "unclosed transport" in whichever later test the collector freed it.
        Never raises.
        """
        try:
            if owner in self.silenced:
                return []
            left = open_transports_on(loop)
            if not left:
                return []
            parts = self._part_ids()
            return [
                transport
                for transport in left
                if self._entry_of(transport) is None
                and self._entry_of(getattr(transport, "_sock", None)) is None
                and id(transport) not in parts
                and id(getattr(transport, "_sock", None)) not in parts
            ]
        except Exception as error:
            self._bookkeeping_failed("connection left on a closing loop", error)
            return []

    def close_left_on_closed_loop(self, left: list[asyncio.BaseTransport], owner: str) -> None:
        """Close `left` (see `left_on_closing_loop`), for `owner`'s check to report.

        Listed under the test's failure, or if it passed, warned at its check
        as the finaliser would have warned, but under its name.  Never raises.
        """
        from ._server_base import close_transports_after_their_loop  # a cycle

        untracked = self._untracked(owner)
        for transport in left:
            try:
                shown = repr(transport)  # before it lets go of its socket
                close_transports_after_their_loop(transport_stack(transport))
                self.undecided_writers.setdefault(owner, []).append(
                    (
                        f"  - {shown} open when its event loop closed{untracked}",
                        f"unclosed transport {shown}: open when its event loop closed{untracked}",
                    )
                )
            except Exception as error:
                self._bookkeeping_failed("connection left on a closed loop", error)

    def listening_on_closing_loop(
        self, loop: asyncio.BaseEventLoop, owner: str
    ) -> list[socket.socket]:
        """The listening sockets of servers still serving on `loop` as it closes during `owner`.

        A server never closed (``asyncio.start_server``'s, say) would be freed with
        its loop, its socket warning "unclosed" from the selector with no stack,
        and fail the test that way under the recommended filters.  Not a nettest
        server's: its fixture closes it.  Never raises.
        """
        try:
            if owner in self.silenced:
                return []
            listening = listening_sockets_on(loop)
            if not listening:
                return []
            parts = self._part_ids()

            def left_by_owner(sock: socket.socket) -> bool:
                if id(sock) in parts:
                    return False
                entry = self._entry_of(sock)  # strict mode's, with its stack
                return entry is None or (entry.owner == owner and entry.part_of is None)

            return [sock for sock in listening if left_by_owner(sock)]
        except Exception as error:
            self._bookkeeping_failed("server left on a closing loop", error)
            return []

    def pending_on_closing_loop(
        self, loop: asyncio.BaseEventLoop, owner: str
    ) -> list[asyncio.Task[Any]]:
        """The tasks still pending on `loop` as it closes during `owner`: never to run again.

        A test that closes its own loop (``run_until_complete``, then ``close()``)
        may leave tasks pending, and so may `asyncio.run` or pytest-asyncio for a
        task started as they cancel the others.  Freed later, such a task logs
        "Task was destroyed but it is pending!", and its coroutine's clean-up
        fails on the closed loop, in whichever test runs then.  A task the gate
        tracks is left to its own entry's report.  A test marked ``"off"`` has its
        tasks ended all the same, as its teardown begins, and not reported: their
        clean-up would fail an innocent test.  Never raises.
        """
        try:
            parts = self._part_ids()
            # Not one the gate tracks (a nettest server's handler, a strict test's
            # task): its own entry reports it, and says more.
            return [
                task
                for task in asyncio.all_tasks(loop)
                if self._entry_of(task) is None and id(task) not in parts
            ]
        except Exception as error:
            self._bookkeeping_failed("task left on a closing loop", error)
            return []

    def end_pending_on_closed_loop(self, tasks: list[asyncio.Task[Any]], owner: str) -> None:
        """End `tasks` (see `pending_on_closing_loop`) now, for `owner`'s check to report.

        Each task's coroutine is closed here, and the task is not logged as
        destroyed pending when freed: nothing of it is left for a later test (one
        whose coroutine will not close is kept).  Listed under the test's failure,
        and in strict mode; else warned.  A test marked ``"off"`` has them as they
        are until its teardown begins (`end_left_by_an_off_test`).  Never raises.
        """
        if owner in self.silenced:  # marked "off": left alone while it runs
            with contextlib.suppress(Exception):
                self.left_by_off_tests.setdefault(owner, []).extend(map(weakref.ref, tasks))
            return
        for task in tasks:
            try:
                shown = repr(task)  # before its coroutine is closed
                how = self._end(task)
                self.undecided_writers.setdefault(owner, []).append(
                    (
                        f"{PENDING_TASK_ITEM}{shown} when its event loop closed",
                        f"task {shown} was still pending when its event loop closed ({how})",
                    )
                )
            except Exception as error:
                self._bookkeeping_failed("task left on a closed loop", error)

    def _end(self, task: asyncio.Task[Any]) -> str:
        """Close the coroutine of `task`, pending on a closed loop; say how it went."""
        coro = task.get_coro()
        # Its clean-up, on a closed loop, may raise anything: CancelledError (a
        # finally that awaits a cancelled task), SystemExit or KeyboardInterrupt,
        # which asyncio would have reported, as the task was freed, and gone on.
        with contextlib.suppress(BaseException):
            coro.close()
        if getattr(coro, "cr_frame", None) is not None:
            # It would not end (it ignores GeneratorExit): kept, never freed, so
            # that it fails no later test as it is.
            self.unending.append(task)
            return "its coroutine would not close; nettest keeps it"
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        return "nettest closed its coroutine"

    def end_left_by_an_off_test(self, owner: str) -> None:
        """End the tasks pending as `owner`'s own loop closed, now that it has run.

        The test, marked ``"off"``, had them as they were while it ran (to see
        asyncio's "Task was destroyed but it is pending!", or a clean-up yet to
        run); left pending, their clean-up would fail a later test as they are
        freed.  Called as its teardown begins, so that what ending them raises
        is its teardown's (and at its check, for what its teardown left).  Not
        reported.  Never raises.
        """
        for ref in self.left_by_off_tests.pop(owner, []):
            task = ref()
            with contextlib.suppress(Exception):
                if task is not None and not task.done():
                    self._end(task)

    def _part_ids(self) -> set[int]:
        """The ids of the parts of nettest's objects (a server's endpoint, say).

        What is open on a closing loop among them is not the test's to answer
        for: the object's fixture closes it.
        """
        return {id(ref()) for item in self.tracked for ref in item.parts}

    def close_listening_on_closed_loop(self, listening: list[socket.socket], owner: str) -> None:
        """Close `listening` (see `listening_on_closing_loop`), for `owner`'s check to report.

        A socket strict mode tracks is reported with its stack, as open when its
        event loop closed; one it does not, as a transport left open is (see
        `close_left_on_closed_loop`).  Never raises.
        """
        untracked = self._untracked(owner)
        for sock in listening:
            try:
                shown = f"{sock!r}, listening for a server,"  # before it closes
                entry = self._entry_of(sock)
                sock.close()
                if entry is not None:
                    entry.open_at_loop_close = True
                    entry.what = f"socket {shown} open"
                    continue
                self.undecided_writers.setdefault(owner, []).append(
                    (
                        f"  - socket {shown} open when its event loop closed{untracked}",
                        f"unclosed {shown} open when its event loop closed{untracked}",
                    )
                )
            except Exception as error:
                self._bookkeeping_failed("server left on a closed loop", error)

    def _close_left_on_closed_loops(self, owner: str) -> list[str]:
        """Close the connections a failed test left open on its loops, closed now; list them.

        Its traceback keeps them alive: freed later, each transport would warn
        "unclosed transport" in whichever test runs then.  Its loops are those it
        last made a task on, and any closed one the gate never watched (one a
        synchronous test ran with `asyncio.run`).  Those over sockets that
        strict mode tracks are left to `_find` and `_release`, which say where they
        were made: these are the rest, real connections in own mode.  Only a
        failed test's: a passing test's connections are not own mode's business.
        """
        try:
            loops = [loop for loop, last in _items(self.loop_tests) if last.name == owner]
            # And those of loops the gate never watched (asyncio.run's in a
            # synchronous test): the failed test's, most likely.
            found = open_transports_on_closed(loops, self._unwatched_of(owner))
            over_sockets = [
                transport
                for transport in found
                if hasattr(transport, "_sock") and self._entry_of(transport._sock) is None
            ]
            # A TLS transport over an open socket closes with it (here, or in
            # strict mode's release).  One whose own socket transport has let go
            # of its socket lost its connection (the peer ended it): Python 3.11+
            # marks it closed then, and 3.10 only before the handshake is done;
            # it is marked closed here, unlisted, as later Pythons leave it.
            tls_alone = [
                transport
                for transport in found
                if not hasattr(transport, "_sock") and not _over_an_open_socket(transport)
            ]
            items = [  # described as found, before they are closed
                f"  - {transport!r} open when its event loop closed{self._untracked(owner)}"
                for transport in over_sockets
            ]
            close_transports_over([transport._sock for transport in over_sockets])
            close_after_their_loop(tls_alone)
            return items
        except Exception as error:
            return [
                "  - the hygiene gate could not close the connections left on its closed "
                f"event loop (a nettest bug; they may warn later, blamed on no test): {error!r}"
            ]

    def _let_threads_end(self, owner: str) -> list[threading.Thread]:
        """Give `owner`'s threads and child processes (strict mode's) a moment to end.

        A thread told to stop in the test's teardown, or a process signalled
        there, may still be on its way out as the check begins: it is reported
        only if it still runs `THREAD_GRACE` seconds later (in all, however many
        there are).  An asyncio child still running is killed then (see
        `end_asyncio_children`).  Returns asyncio's watcher threads still
        holding `owner`'s children, for the check's collection to wait for.
        """
        deadline = time.monotonic() + THREAD_GRACE
        threads = []
        children = []
        for item in self.tracked:
            made = item.ref() if item.owner == owner else None
            if isinstance(made, threading.Thread) and made.is_alive():
                threads.append(made)
            elif isinstance(made, subprocess.Popen):
                children.append(made)
        join_all(threads, deadline)
        # So are its child processes (strict mode's): one the teardown signalled
        # may still be on its way out.
        wait_for_children(children, deadline)
        end_asyncio_children(children)
        return child_watchers({child.pid for child in children if child_left(child)})

    def _suspects(self, owner: str) -> list[tuple[_Tracked, str]]:
        """`owner`'s objects that look open, each with what to say of it if it is dropped.

        Described now, while they live: a socket's repr names its addresses.  A
        socket strict mode tracks is described so for its weak reference's
        callback too, which the garbage collector may call next (`_SocketRef`).
        """
        suspects = []
        for item in self.tracked:
            if item.owner == owner and not item.open_at_loop_close and item.dropped is None:
                obj = item.alive_and_open()
                if obj is None:
                    continue
                if item.what == "process" or closing_for_ever(obj) is not None:
                    # Its whole state: a child's Popen may be freed with what asyncio
                    # made for it in the collection to come, and a transport whose
                    # close never ended is freed closing.
                    suspects.append((item, _left_open(item, obj)))
                    continue
                label = _label(item, obj)
                suspects.append((item, f"{label} dropped while open"))
                if isinstance(item.ref, _SocketRef):
                    item.ref.label = label
        return suspects

    def _parts(self, owner: str) -> dict[int, tuple[type, _Tracked]]:
        """The live parts of `owner`'s objects, and the objects, by id: type, and whose.

        Taken before the garbage collector runs, to know a part when its finaliser
        raises (`_collect_garbage`); ids, so that the parts can still be freed.
        A socket strict mode tracks is its own: freed open, it is reported as
        dropped while open, which says what its finaliser's warning would.
        """
        parts: dict[int, tuple[type, _Tracked]] = {}
        sockets = []
        for item in self.tracked:
            if item.owner == owner:
                if isinstance(item.ref, _SocketRef):
                    sockets.append(item)
                # The object itself: a memory transport, under the TLS transport
                # that start_tls() put over it (see `_collect_garbage`).
                for part in (item.ref(), *(ref() for ref in item.parts)):
                    if part is not None:
                        parts[id(part)] = (type(part), item)
        for item in sockets:
            sock = item.ref()
            if sock is not None:
                parts[id(sock)] = (type(sock), item)
        return parts

    def _find(
        self,
        owner: str,
        mode: LeakMode,
        fds_before: frozenset[tuple[int, int]],
        gone: Mapping[_Tracked, str] | None = None,
    ) -> tuple[list[str], set[_Tracked]]:
        """List what `owner` left behind; return it, and the entries it reports.

        `gone` are `owner`'s objects that the garbage collector freed while they
        were open, with what to call them.  A part of a reported object is left
        out: the object's own item says it all.
        """
        gone = gone or {}
        found: dict[_Tracked, str] = {}
        seen_fds = _policy_loop_fds()
        for item in self.tracked:
            if item.owner != owner:
                continue
            if item.dropped is not None:
                found[item] = item.dropped
                held = item.ref()
                if isinstance(held, socket.socket) and held.fileno() != -1:
                    seen_fds.add(held.fileno())
                continue
            obj = item.alive_and_open()
            if obj is None:
                continue
            if item.open_at_loop_close:
                found[item] = f"{item.what} when its event loop closed"
                continue
            if isinstance(obj, socket.socket):
                if obj.fileno() in seen_fds:
                    continue
                seen_fds.add(obj.fileno())
            found[item] = _left_open(item, obj)
        reported = found.keys() | gone.keys()
        leaks = [
            _describe(what, item) for item, what in found.items() if item.part_of not in reported
        ]
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
                for sock, sock_owner in _items(self.socket_owners)
                if sock_owner != owner and sock.fileno() != -1
            )
            with_loop = self.closed_with_loop.get(owner, [])
            unknown = [
                (fd, inode)
                for fd, inode in sorted(self.sockets_opened_since(fds_before))
                if fd not in seen_fds
                # Listed already, with the transport over it (uvloop's).
                and not any(f"(fd {fd}, inode {inode})" in line for line in with_loop)
            ]
            # Made in C (uvloop's accept), sharing the address of a listener open
            # before the test: a wider-scoped server's accepted connections.
            if unknown:
                earlier = fds_before | self.exempt_fds  # a wider fixture's too
                listeners = [end for fd, _ in earlier if (end := listener_of(fd)) is not None]
                unknown = [
                    (fd, inode)
                    for fd, inode in unknown
                    if not accepted_by_a_listener(fd, listeners)
                ]
            for fd, inode in unknown:
                what = f"open socket (fd {fd}, inode {inode}){_socket_names(fd)}"
                leaks.append(_describe(what, None))
            leaks += with_loop
        leaks += [
            _describe(dropped, item)
            for item, dropped in gone.items()
            if item.part_of not in reported
        ]
        return leaks, reported

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
            tasks = [e for e in errors if _task_of(e.context) is not None]
            futures = [e for e in errors if _task_of(e.context) is None]
            if tasks:
                sections.append(
                    f"{maker} left {_count(len(tasks), 'task')} running that failed after it "
                    f"ended, {when} (--nettest-leaks={mode}); {maker} is to blame, not this test:"
                )
                sections += _fewer_loop_errors(
                    [_describe_loop_error(error.context, maker) for error in tasks]
                )
                sections.append(
                    '  --nettest-leaks=strict, or a nettest_leaks("strict") marker on it, fails '
                    f"{maker} itself for a task still pending as it ends."
                )
            if futures:
                sections.append(
                    f"{maker} dropped {_count(len(futures), 'failed future')} whose exception "
                    f"was never retrieved; the garbage collector finalised "
                    f"{'it' if len(futures) == 1 else 'them'} after its event loop closed, "
                    f"{when} (--nettest-leaks={mode}); {maker}, the last test that ran on "
                    "that loop, is to blame, not this test:"
                )
                sections += _fewer_loop_errors(
                    [_describe_loop_error(error.context, maker) for error in futures]
                )
        return sections

    def _release(self, owner: str) -> list[str]:
        """Close what `owner` left open, so that no later test is blamed for it.

        Objects first and plain sockets last, each newest first as an exit stack
        would: a server shuts its own sockets down, on its thread if it has one,
        and a server thread stops before the self-pipe that wakes its loop closes.
        The asyncio transports over those sockets (strict mode's) are closed with
        them, or they would warn "unclosed transport" when collected, blamed on no
        test.  Returns a report item for each thing the gate failed to close.
        """
        mine = [
            item
            for item in reversed(self.tracked)
            if item.owner == owner and not item.open_at_loop_close
        ]
        sockets = []
        for item in mine:
            obj = item.alive_and_open()
            if isinstance(obj, socket.socket):
                sockets.append((item, obj))
            elif obj is not None:
                if isinstance(obj, asyncio.Future):
                    cancelled_by_gate(obj)
                with contextlib.suppress(Exception):
                    item.close(obj)
        # Those that an object's close() closed (its own) are not closed again, nor
        # the self-pipe of the policy's loop, which `_find` does not report either.
        policy_loop = _policy_loop_fds()
        sockets = [
            (item, obj)
            for item, obj in sockets
            if item.alive_and_open() is not None and obj.fileno() not in policy_loop
        ]
        failures = []
        if sockets:
            try:
                close_transports_over([obj for _, obj in sockets])
            except Exception as error:
                failures.append(
                    "  - the hygiene gate could not close the asyncio transports over the "
                    f"sockets it closed (a nettest bug; they may warn later, blamed on no "
                    f"test): {type(error).__name__}: {error}"
                )
        for item, obj in sockets:
            with contextlib.suppress(Exception):
                item.close(obj)
        self._forget(owner)
        return failures

    def _release_uvloop_handles(self, fds_before: frozenset[tuple[int, int]]) -> list[str]:
        """Close the uvloop transports and servers over the sockets strict mode reported.

        The gate cannot close a socket made in C under its transport; left open,
        it would make its loop's close (a wider-scoped loop's, later) warn, and
        under ``error::ResourceWarning`` fail with EBUSY or hang.
        """
        try:
            python_sockets = {sock.fileno() for sock, _ in _items(self.socket_owners)}
            close_uvloop_handles_over(
                {
                    fd: inode
                    for fd, inode in self.sockets_opened_since(fds_before)
                    if fd not in python_sockets
                }
            )
        except Exception as error:
            return [
                "  - the hygiene gate could not close the uvloop transports over the sockets "
                f"it reported (a nettest bug): {type(error).__name__}: {error}"
            ]
        return []

    def _forget(self, owner: str) -> None:
        for entry in self.tracked:
            if entry.owner == owner:
                # Held until the check (see `_Tracked.sockets`), and no longer: the entry
                # lives on in `owners` as long as its object, and a strict socket's entry,
                # the value of a weak mapping keyed by that socket, reaches it back
                # through `part_of`, which kept every such socket for the session.
                entry.sockets = ()
        self.tracked = [t for t in self.tracked if t.owner != owner and _kept(t)]
        self.loop_errors = [e for e in self.loop_errors if e.owner != owner]
        if self.owners_by_id:
            self.owners_by_id = {k: v for k, v in _items(self.owners_by_id) if v[1].owner != owner}
        if self.bookkeeping_errors:
            self.bookkeeping_errors = [e for e in self.bookkeeping_errors if e.owner != owner]


def _kept(entry: _Tracked) -> bool:
    """Whether an entry is worth keeping until its owner's check: alive, or a drop to report."""
    return entry.dropped is not None or entry.ref() is not None


#: What `_reachable_ids` does not look into.
_OPAQUE: tuple[type, ...] = (
    types.ModuleType,
    type,
    types.FrameType,
    # A task's coroutine refers to its locals (from 3.11), and a future's callbacks
    # to the tasks that wait on it: a shared Event would reach every waiter's.
    types.CoroutineType,
    types.GeneratorType,
    types.AsyncGeneratorType,
    asyncio.Future,
    asyncio.AbstractEventLoop,
    asyncio.AbstractEventLoopPolicy,
    threading.Thread,
    # A log record keeps its arguments: a server the test logged is not kept.
    logging.Handler,
    logging.Logger,
    logging.LogRecord,
)
if sys.version_info >= (3, 11):
    _OPAQUE += (asyncio.Runner,)
#: How far `_reachable_ids` looks from a fixture's value, in references and objects
#: (an attribute is two references away: the object's ``__dict__``, then the value).
_REACH_DEPTH = 10
_REACH_LIMIT = 50_000
#: pytest's own objects, which `_reachable_ids` does not look into either: from
#: the config, its plugins, the session, a request, every test's fixtures are near.
_PYTEST_MODULES = ("_pytest", "pytest", "pluggy", "pytest_asyncio")


def _reachable_ids(roots: list[object]) -> set[int]:
    """The ids of the objects `roots` refer to, directly or through others.

    Not through modules, classes, frames, a module's globals (a function's
    ``__globals__``), event loops, futures and tasks, coroutines, threads, logging
    or pytest's objects: from them much of the process is reachable, the test's
    own objects included.  Bounded in depth and in the objects visited.
    """
    # sys.modules may hold None (a module import refuses), which has no __dict__.
    module_dicts = {id(getattr(module, "__dict__", None)) for module in list(sys.modules.values())}
    seen: set[int] = set()
    frontier = list(roots)
    for _ in range(_REACH_DEPTH):
        following: list[object] = []
        for obj in frontier:
            key = id(obj)
            if key in seen or key in module_dicts:
                continue
            seen.add(key)
            if len(seen) >= _REACH_LIMIT:
                return seen
            try:
                # type(obj), not obj.__class__, which a proxy object may make raise;
                # and a metaclass may make __module__ raise anything.
                kind = type(obj)
                module = getattr(kind, "__module__", None)
                if issubclass(kind, _OPAQUE) or (
                    isinstance(module, str) and module.partition(".")[0] in _PYTEST_MODULES
                ):
                    continue
                following.extend(gc.get_referents(obj))
            except Exception:  # an object that will not say what it is: not followed
                continue
        frontier = following
    for obj in frontier[: _REACH_LIMIT - len(seen)]:
        seen.add(id(obj))
    return seen


def _items(mapping: Mapping[_K, _V]) -> list[tuple[_K, _V]]:
    """A copy of `mapping`'s items, taken again if another thread changed it meanwhile.

    Server threads record the sockets and objects they make as the test thread
    reads the same mappings: copying one can fail with "changed size during
    iteration".
    """
    while True:
        try:
            return list(mapping.items())
        except RuntimeError:
            continue


def _over_an_open_socket(tls: object) -> bool:
    """Whether the socket transport under a TLS transport still holds an open socket."""
    sock = getattr(socket_transport_under(tls), "_sock", None)
    return isinstance(sock, socket.socket) and sock.fileno() != -1


def _header(owner: str, leaks: list[str], mode: str) -> str:
    """The first line of a report: how many things `owner` left, and calls to the handler.

    A call to the loop's exception handler is not a thing left behind: a test
    that ran out of file descriptors may make thousands of them.
    """
    errors = [leak for leak in leaks if leak.startswith(LOOP_ERROR_ITEM)]
    calls = len(errors)
    things = len(leaks) - calls
    parts = [f"left {things} thing{'s' if things != 1 else ''} behind"] if things else []
    times = "once" if calls == 1 else f"{calls} times"
    if errors and all(OUTSIDE_ANY_TEST in error for error in errors):
        # Charged to the test that ran, but made by none: it did not make them.
        if not parts:
            return (
                f"the loop's exception handler ran {times} while {owner} ran "
                f"(--nettest-leaks={mode}):"
            )
        parts.append(f"the loop's exception handler ran {times} while it ran")
    elif calls:
        parts.append(f"made the loop's exception handler run {times}")
    return f"{owner} {', and '.join(parts)} (--nettest-leaks={mode}):"


def _fewer_loop_errors(leaks: list[str]) -> list[str]:
    """`leaks` with the first `LOOP_ERRORS_SHOWN` calls to the loop's exception handler.

    A property-based test repeats its failure in every example it runs: the rest
    are counted in one line at the end.
    """
    shown, calls = [], 0
    for leak in leaks:
        if leak.startswith(LOOP_ERROR_ITEM):
            calls += 1
            if calls > LOOP_ERRORS_SHOWN:
                continue
        shown.append(leak)
    more = calls - LOOP_ERRORS_SHOWN
    if more > 0:
        shown.append(
            f"  - and {more} more call{'s' if more != 1 else ''} to the loop's exception "
            f"handler (the first {LOOP_ERRORS_SHOWN} are shown)"
        )
    return shown


def _fewer_repeats(leaks: list[str]) -> list[str]:
    """`leaks` with at most `LOOP_ERRORS_SHOWN` items made at each place (the same stack).

    A property-based test that leaks repeats it in every example it runs: the
    rest are counted in one line at the end.  So are the tasks pending as a loop
    closed, which have no stack, beyond `LOOP_ERRORS_SHOWN` alike (the same
    coroutine waiting at the same line: a test that started thousands).  Other
    items without a stack are all kept.
    """
    shown: list[str] = []
    made_at: dict[str, int] = {}
    alike: dict[str, int] = {}
    for leak in leaks:
        _, newline, stack = leak.partition("\n")
        if newline:
            made_at[stack] = made_at.get(stack, 0) + 1
            if made_at[stack] > LOOP_ERRORS_SHOWN:
                continue
        elif leak.startswith(PENDING_TASK_ITEM):
            coro = _TASK_CORO.search(leak)
            key = coro.group() if coro else leak
            alike[key] = alike.get(key, 0) + 1
            if alike[key] > LOOP_ERRORS_SHOWN:
                continue
        shown.append(leak)
    more = sum(
        count - LOOP_ERRORS_SHOWN for count in made_at.values() if count > LOOP_ERRORS_SHOWN
    )
    if more:
        shown.append(
            f"  - and {more} more thing{'s' if more != 1 else ''} made at the same places "
            "as those above "
            f"(the first {LOOP_ERRORS_SHOWN} made at each place are shown)"
        )
    more = sum(count - LOOP_ERRORS_SHOWN for count in alike.values() if count > LOOP_ERRORS_SHOWN)
    if more:
        shown.append(
            f"  - and {more} more pending task{'s' if more != 1 else ''} like those above "
            f"(the first {LOOP_ERRORS_SHOWN} of each coroutine at each line are shown)"
        )
    return shown


def left_at_the_end(strict: bool) -> str:
    """What the session's summary says of what its last collection freed open.

    In a strict session, a strict test's socket is reported by its own check:
    what is left was made outside every test.
    """
    freed = (
        "The garbage collection at the end of the session (in the last test's check, "
        "or after the session when the last teardown failed) freed these open, "
    )
    if strict:
        return freed + (
            "made outside every test (by a wider fixture, a plugin, or code run "
            "at import), or of a kind strict mode does not track (a subprocess or pipe "
            "transport), which no test's check could answer for."
        )
    return freed + (
        "left by tests or fixtures that own mode cannot name: "
        "--nettest-leaks=strict names the test that made each socket."
    )


def _others_garbage(finalising: list[_Finalised], *, strict: bool) -> list[str]:
    """The report's sections for what the check's collection freed of other tests'.

    In a strict session, what it frees of another test's is of a kind strict
    mode does not track (an aiohttp connector, say), or that test's marker
    chose another mode.
    """
    untracked = (
        "strict mode does not track what this is, or that test was not checked in strict mode"
        if strict
        else "own mode does not track real connections, --nettest-leaks=strict reports "
        "them against their test"
    )
    by_maker: dict[str, list[str]] = {}
    for item in finalising:
        if item.maker is not None:
            by_maker.setdefault(item.maker, []).append(f"  - {item.message}")
    return [
        line
        for maker, items in by_maker.items()
        for line in (
            f"The garbage collection for this check also freed what {maker} left open "
            f"on its event loop ({maker} is to blame, not this test; {untracked}):",
            *items,
        )
    ]


@dataclass
class Unraisable:
    """What `sys.unraisablehook` was given, kept to hand to another hook later.

    The object is kept as its repr, and its traceback's frames without their
    local variables: either would keep alive what the garbage collector just
    freed.  The traceback's lines stay, for the hook to show (and a warning
    filter to match) as it would have.
    """

    exc_type: type[BaseException]
    exc_value: BaseException | None
    exc_traceback: types.TracebackType | None
    err_msg: str | None
    object: _Shown

    @classmethod
    def of(cls, unraisable: Any) -> Unraisable:
        tb = unraisable.exc_traceback
        if tb is not None:
            traceback.clear_frames(tb)
        return cls(
            unraisable.exc_type,
            unraisable.exc_value,
            tb,
            unraisable.err_msg,
            _Shown(repr(unraisable.object)),
        )


class _Shown:
    """An object as its repr, for a hook that shows it after it was freed."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


@dataclass
class _Finalised:
    """What a finaliser raised in the check's garbage collection (see `_collect_garbage`)."""

    message: str
    #: The same, for pytest's hook, should it be left for the session's end.
    unraisable: Unraisable | None = None
    #: The entry of the tracked object whose part raised it, if any.
    parent: _Tracked | None = None
    #: The other test whose event loop it ran on, if known: its leak, not this test's.
    maker: str | None = None


def _unraisable_message(unraisable: Any) -> str:
    """What a finaliser raised, as `sys.unraisablehook` was given it, in a report's words."""
    where = unraisable.err_msg or "Exception ignored in"
    error = unraisable.exc_value
    return f"{where}: {unraisable.object!r}\n    {type(error).__name__}: {error}"


def _collect_garbage(
    parts: Mapping[int, tuple[type, _Tracked]],
    maker_of: Callable[[object], str | None],
    *,
    before: Callable[[], None] = lambda: None,
    for_pytest: bool = False,
) -> list[_Finalised]:
    """Run the garbage collector; return what finalisers raised (a ResourceWarning as error).

    What `before` lets go of (an asyncio child watcher's thread) is caught too.
    With `for_pytest` (the session's last collection) each comes as it was
    raised too, for `_Gate.hand_to_pytest`.

    Caught here, rather than by pytest's hook, so that they are reported with
    the test being checked: pytest may have collected this phase's already.
    Each comes with the entry of the tracked object that raised it, or whose
    part did, or under the TLS transport that did, if one of `parts` (by id, see
    `_Gate._parts`): a report of that object leaves it out.
    So does the report of a socket strict mode tracks (one of `parts` too) for the
    asyncio transport over it, and the StreamWriter over that: Python 3.10 and
    3.11 leave a connection open when its handler's task is cancelled, and
    collected with it, each warns of the same connection.  Else, with the other
    test it came from (`maker_of`: a connection on another test's event loop,
    and the socket under it), if known: garbage a passing test left, which this
    check's collection happens to free.
    """
    caught: list[tuple[_Finalised, int]] = []
    sockets_of: dict[int, str] = {}  # the sockets under other tests' connections

    def hook(unraisable: Any) -> None:
        item = _Finalised(_unraisable_message(unraisable))
        finalised = None
        with contextlib.suppress(Exception):
            finalised = _finalised(unraisable)
            sock = _socket_under(finalised)
            for candidate in (finalised, sock, socket_transport_under(finalised)):
                part = parts.get(id(candidate))
                # Still alive as its finaliser runs: the id is its own.
                if part is not None and type(candidate) is part[0]:
                    item.parent = part[1]
                    break
            else:
                item.maker = maker_of(finalised)
                if item.maker is not None and sock is not None:
                    sockets_of[id(sock)] = item.maker
        if for_pytest:  # last: it clears the traceback's frames, where `_finalised` looks
            with contextlib.suppress(Exception):
                item.unraisable = Unraisable.of(unraisable)
        # Garbage is freed only once every finaliser has run: ids stay their own.
        caught.append((item, id(finalised)))

    previous, sys.unraisablehook = sys.unraisablehook, hook
    try:
        before()
        gc.collect()
    finally:
        sys.unraisablehook = previous
    for item, finalised_id in caught:
        if item.parent is None and item.maker is None:
            item.maker = sockets_of.get(finalised_id)
    return [item for item, _ in caught]


def _finalised(unraisable: Any) -> object:
    """The object whose finaliser raised what `sys.unraisablehook` was given.

    A finaliser written in C (a socket's) hands the hook the object itself; a
    ``__del__`` method (a transport's, or strict mode's wrapper round a
    StreamWriter's) hands it the function, whose frame, the first of the
    traceback, holds the object as its first argument.
    """
    obj = unraisable.object
    traceback = unraisable.exc_traceback
    code = getattr(obj, "__code__", None)
    if (
        code is not None
        and code.co_argcount > 0
        and traceback is not None
        and traceback.tb_frame.f_code is code
    ):
        return traceback.tb_frame.f_locals.get(code.co_varnames[0], obj)
    return obj


def _socket_under(obj: object) -> socket.socket | None:
    """The socket under an asyncio transport, or under a StreamWriter's transport, or None.

    A TLS transport's is under the transport its protocol writes to.
    """
    for _ in range(3):
        if isinstance(obj, asyncio.StreamWriter):
            obj = obj.transport
        elif isinstance(obj, asyncio.BaseTransport):
            sock = getattr(obj, "_sock", None)
            if isinstance(sock, socket.socket):
                return sock
            obj = getattr(getattr(obj, "_ssl_protocol", None), "_transport", None)
        else:
            break
    return None


GATE = _Gate()


def creation_site(obj: object) -> _Stack:
    """The innermost frame of the test's code that made a tracked object, or ``()``.

    Read from the gate's entry, whose stack it took as it tracked the object:
    walking the stack again costs every server a few microseconds.
    """
    entry = GATE._entry_of(obj)
    return entry.stack[-1:] if entry is not None else ()


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


def tracked_as(obj: object, what: str) -> None:
    """Call a tracked object `what` in reports from now on (it has an address now, say)."""
    entry = GATE._entry_of(obj)
    if entry is not None:
        entry.what = what


def parts_of(parent: object, *parts: object) -> None:
    """Tell the hygiene gate that `parts` are what the tracked `parent` made for itself.

    A server's listening socket, the transport asyncio serves it with, a proxy's
    listener: closing `parent` closes them.  While `parent` is reported (left
    open, dropped while open), they are not listed on their own, in strict mode
    as sockets, nor are the garbage collector's warnings about them; one still
    open once `parent` is closed is.  Call it after `track`; None parts are
    skipped.  Never raises.
    """
    GATE.parts_of(parent, *parts)


def made_for(obj: object) -> contextlib.AbstractContextManager[None]:
    """Attribute what the block makes to whoever owns the tracked `obj` (see `_Gate.made_for`)."""
    return GATE.made_for(obj)


def instrument_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Let the hygiene gate see `loop`'s exception-handler calls (and its tasks in strict mode)."""
    GATE.instrument_loop(loop)


def dropped_open(obj: object) -> bool:
    """Tell the hygiene gate that `obj` is being finalised while open (from its ``__del__``).

    `obj`'s class must have a ``_gate_entry`` attribute (None) for `track` to
    fill in.  The gate reports it against the test that made it, even when the
    garbage collector freed it long before that test's check.  Returns whether
    the gate reports it, closing its sockets: then the finaliser must not warn
    (see `_Gate.dropped_open`).  Never raises.
    """
    return GATE.dropped_open(obj)


def serves_on(thread: threading.Thread) -> None:
    """Tell the hygiene gate that `thread` runs a nettest server's event loop.

    Call before the thread starts.  The tasks made on it (an accepted
    connection's, a handler's) belong to whoever is starting the server now, not
    to the test that happens to run when they are made: a module-scoped server's
    are nobody's.
    """
    GATE.thread_owners[thread] = GATE.owner


def writer_dropped(writer: asyncio.StreamWriter, transport: object = None) -> bool:
    """Tell the hygiene gate that `writer` is being finalised (from its ``__del__``).

    If its transport is still open, the gate reports `transport` (by default the
    writer's) as dropped without ``close()``, against the test that made it.
    Returns whether the gate closed it quietly (to report it itself, or because
    its test failed already), in which case ``__del__`` must not warn.  Never
    raises.
    """
    return GATE.writer_dropped(writer, transport)
