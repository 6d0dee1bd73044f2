"""Sweeping the directories that dead processes left in a temporary directory."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable

__all__ = ["process_is_gone", "remove_dead_processes_dirs"]


def remove_dead_processes_dirs(parent: str, pid_of: Callable[[str], int | None]) -> None:
    """Remove the directories in `parent` named after a process that is gone.

    `pid_of` reads the process ID from a directory's name (None: not one of
    ours).  Only this user's directories, never this process's nor a symlink,
    and only on POSIX, where `process_is_gone` can probe (on Windows
    ``os.kill`` would kill).
    """
    if os.name != "posix":
        return
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = pid_of(name)
        if pid is None or pid == os.getpid():
            continue
        path = os.path.join(parent, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue  # gone already
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and process_is_gone(pid):
            shutil.rmtree(path, ignore_errors=True)


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
