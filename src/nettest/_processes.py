"""Sweeping the directories that dead processes left in a temporary directory.

Such a directory is named after the process that made it (`process_tag`): its
pid, and its PID namespace.  A sweep probes only the pids of its own namespace:
a session in a container that shares ``/tmp`` with the host (or another
container) sees other pids, where the one in a name may belong to no process, or
to another, while the process that made the directory still runs.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
from collections.abc import Callable

__all__ = ["pid_of_tag", "process_is_gone", "process_tag", "remove_dead_processes_dirs"]


@functools.lru_cache(maxsize=1)
def _pid_namespace() -> str:
    """This process's PID namespace: its inode on Linux, ``"0"`` where there is none."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def process_tag() -> str:
    """``<pid>-<PID namespace>``: what a directory's name says of the process that made it."""
    return f"{os.getpid()}-{_pid_namespace()}"


def pid_of_tag(pid: str, namespace: str) -> int | None:
    """The pid of a `process_tag`'s two parts, if it is one of this namespace's (else None)."""
    if not pid.isdigit() or namespace != _pid_namespace():
        return None
    return int(pid)


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
