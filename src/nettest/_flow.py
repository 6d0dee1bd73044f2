"""Write flow control for nettest's memory transports, as a sans-IO state machine.

Theory of operation
-------------------
A transport buffers what its protocol writes and cannot send yet.  asyncio keeps
the protocol from filling memory with two water marks (``_FlowControlMixin`` in
``asyncio/transports.py``):

* after the buffer *grows*, the protocol is paused when ``size > high`` (strictly
  greater) and it is not paused already;
* after the buffer *shrinks*, the protocol is resumed when ``size <= low`` and it
  is paused;
* ``set_write_buffer_limits()`` only ever pauses: raising the limits never resumes
  a paused protocol, the next shrink does;
* the defaults are 64 KiB and ``high // 4``; given only ``low``, ``high`` is
  ``4 * low``; ``high >= low >= 0`` is required (``high == 0`` pauses whenever the
  buffer is not empty).

The paused flag changes *before* the protocol's callback runs, so a callback that
writes sees the new state, and callbacks strictly alternate.

:class:`WriteFlow` holds only that state and the timeline of what happened.  It
performs no I/O and calls nothing: its ``grew``/``shrank`` methods tell the
transport whether to call ``pause_writing()`` or ``resume_writing()``, and record a
:class:`FlowEvent` with the buffer size at that moment, so a test can read the
whole pause/resume history afterwards.

The reading side has no water marks here: the protocol (a ``StreamReader``, say)
calls ``pause_reading()`` and ``resume_reading()`` itself.  Memory transports
record each as a :class:`ReadingEvent`, with the bytes waiting to be read, so
that a consumer that never resumes explains a writer stuck in ``drain()``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_HIGH_WATER", "FlowEvent", "ReadingEvent", "WriteFlow", "resolve_limits"]

#: asyncio's default high-water mark for socket transports.
DEFAULT_HIGH_WATER = 64 * 1024


@typing.final
@dataclass(frozen=True, slots=True)
class FlowEvent:
    """One pause or resume of a protocol's writing, as a memory transport recorded it.

    Read them from :attr:`MemoryTransport.flow_events
    <nettest.MemoryTransport.flow_events>`; this type has no use on its own.

    Attributes:
        kind: ``"pause"`` or ``"resume"``.
        buffer_size: The transport's write buffer size when the event fired.
        high: The high-water mark in force.
        low: The low-water mark in force.
        time: ``loop.time()`` when the event fired.
    """

    kind: Literal["pause", "resume"]
    buffer_size: int
    high: int
    low: int
    time: float


@typing.final
@dataclass(frozen=True, slots=True)
class ReadingEvent:
    """One pause or resume of a transport's reading, as a memory transport recorded it.

    Read them from :attr:`MemoryTransport.reading_events
    <nettest.MemoryTransport.reading_events>`; this type has no use on its own.

    Attributes:
        kind: ``"pause"`` (``pause_reading()`` stopped reading) or ``"resume"``
            (``resume_reading()`` started it again).
        waiting: Bytes that had arrived and were not read yet (for a datagram
            transport, the bytes of the datagrams waiting).
        time: ``loop.time()`` when it happened.
    """

    kind: Literal["pause", "resume"]
    waiting: int
    time: float


def resolve_limits(high: int | None = None, low: int | None = None) -> tuple[int, int]:
    """Apply asyncio's defaulting rules to a pair of water marks.

    Returns:
        ``(high, low)``.

    Raises:
        ValueError: unless ``high >= low >= 0``; the message names both.
    """
    if high is None:
        high = DEFAULT_HIGH_WATER if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


class WriteFlow:
    """The pause/resume state of one transport's writer, and its timeline."""

    __slots__ = ("_events", "high", "low", "paused", "peak")

    def __init__(self, high: int | None = None, low: int | None = None) -> None:
        self.high, self.low = resolve_limits(high, low)
        self.paused = False
        #: Largest write buffer size seen.
        self.peak = 0
        # Plain tuples: a frozen dataclass costs a microsecond to build, on a hot path.
        self._events: list[tuple[Literal["pause", "resume"], int, int, int, float]] = []

    @property
    def events(self) -> tuple[FlowEvent, ...]:
        """The timeline: every pause and resume so far, in order."""
        return tuple(FlowEvent(*event) for event in self._events)

    def set_limits(self, high: int | None, low: int | None) -> None:
        """Change the water marks; the caller then calls :meth:`grew` (limits only pause)."""
        self.high, self.low = resolve_limits(high, low)

    def grew(self, size: int, clock: Callable[[], float]) -> bool:
        """Note that the buffer is now ``size`` bytes after growing; ``clock`` dates events.

        Returns:
            True if the caller must now call ``pause_writing()``.
        """
        if size > self.peak:
            self.peak = size
        if size <= self.high or self.paused:
            return False
        self.paused = True
        self._events.append(("pause", size, self.high, self.low, clock()))
        return True

    def shrank(self, size: int, clock: Callable[[], float]) -> bool:
        """Note that the buffer is now ``size`` bytes after shrinking; ``clock`` dates events.

        Returns:
            True if the caller must now call ``resume_writing()``.
        """
        if not self.paused or size > self.low:
            return False
        self.paused = False
        self._events.append(("resume", size, self.high, self.low, clock()))
        return True
