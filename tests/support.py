"""Waits the test modules share: loop turns, and a condition polled until it holds."""

from __future__ import annotations

import asyncio
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
