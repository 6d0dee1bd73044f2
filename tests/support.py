"""What the test modules share: loop turns, a condition polled until it holds, a dead pid."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable


async def turns(n: int = 5) -> None:
    """Let `n` loop turns pass: enough for memory transports' callbacks to run."""
    for _ in range(n):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `predicate` every millisecond until it holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def dead_pid() -> int:
    """The process ID of a process that has ended (its number may be reused later)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(done.stdout)
