"""Settings shared by every capability, set by the pytest plugin from its options."""

from __future__ import annotations

import sys
import threading

#: Seconds every nettest wait allows by default (``--nettest-timeout``).
DEFAULT_TIMEOUT = 10.0

timeout: float = DEFAULT_TIMEOUT

#: Per thread: the thread whose debugger also turns this one's timeouts off.
_followed = threading.local()


def default_timeout() -> float | None:
    """Return the default timeout for nettest's waits, or None under a debugger.

    A test stopped at a breakpoint must not fail because a wait ran out, so the
    timeout is off while a trace function (a debugger or coverage tool in trace
    mode) is active.  The loop thread of a thread-backed server also checks the
    thread that started it (see `follow_debugger`).
    """
    if _is_debugger(sys.gettrace()):
        return None
    followed: threading.Thread | None = getattr(_followed, "thread", None)
    if followed is not None and _is_debugged(followed):
        return None
    return timeout


def follow_debugger(thread: threading.Thread) -> None:
    """Turn this thread's default timeouts off, too, while ``thread`` is being debugged.

    A thread-backed server's loop thread calls it with the test's thread: a
    debugger traces and stops that thread alone, while the server's script steps
    wait on the loop thread.
    """
    _followed.thread = thread


def _is_debugger(trace: object) -> bool:
    """Whether ``trace`` is a debugger's trace function (a coverage tool's is not)."""
    if trace is None:
        return False
    # coverage's C tracer is an object, its Python tracer a bound method.
    owner = getattr(trace, "__self__", trace)
    return "coverage" not in type(owner).__module__


def _is_debugged(thread: threading.Thread) -> bool:
    """Whether a debugger traces one of ``thread``'s frames.

    Another thread's trace function cannot be read, but a debugger sets the
    frames' ``f_trace`` that it traces (pdb sets it on the whole stack when it
    stops), and that can.
    """
    if thread.ident is None or not thread.is_alive():
        return False
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if _is_debugger(frame.f_trace):
            return True
        frame = frame.f_back
    return False
