"""Whether a process is gone: for sweeping what dead processes left in temporary dirs."""

from __future__ import annotations

import os

__all__ = ["process_is_gone"]


def process_is_gone(pid: int) -> bool:
    """Whether no live process has `pid` (POSIX only: ``os.kill(pid, 0)`` probes).

    Gone: no such process, or one that has exited and waits for its parent to
    reap it (a zombie, told by Linux's ``/proc``), whose pid cannot be reused
    until then.  A process that exists but is not this user's counts as alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read()
    except OSError:
        return False
    # "pid (comm) state ...": the name may hold spaces and parentheses.
    after_name = fields[fields.rfind(b")") + 1 :].split()
    return bool(after_name) and after_name[0] == b"Z"
