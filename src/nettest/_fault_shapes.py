"""How the pacing and mangling faults reshape the bytes of one TCP chunk.

Pure functions of a stage's state (`_Applied`), the fault, the chunk and the
connection's seeded generator: they stamp each piece with the time it is due and
leave holding, tracing and the pipeline to `nettest._fault_engine_stream`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._fault_engine import _Applied, _Chunk

if TYPE_CHECKING:
    import random

    from ._faults import Bandwidth, Corrupt, Latency, Slice

__all__ = ["corrupted", "delayed", "first_corrupt_offset", "sliced", "throttled"]

#: How many pieces a second `Bandwidth` cuts a chunk into, so that bytes arrive
#: steadily rather than in one burst per chunk.
_PIECES_PER_SECOND = 50


def delayed(applied: _Applied, fault: Latency, at: float, rng: random.Random) -> float:
    """When what reached `fault` at `at` is due: later by the delay and jitter, never
    before what the stage delayed before it (a link does not reorder bytes)."""
    due = at + fault.delay
    if fault.jitter:
        due += rng.uniform(-fault.jitter, fault.jitter)
    due = max(due, at, applied.last)
    applied.last = due
    return due


def throttled(applied: _Applied, fault: Bandwidth, chunk: _Chunk) -> list[_Chunk]:
    """`chunk` in pieces, each due once the link has carried it at the capped rate."""
    rate = fault.bytes_per_second
    quantum = max(1, int(rate / _PIECES_PER_SECOND))
    pieces: list[_Chunk] = []
    data = chunk.data
    due = max(chunk.at, applied.busy)
    for index in range(0, len(data), quantum):
        piece = data[index : index + quantum]
        due += len(piece) / rate
        pieces.append(_Chunk(due, chunk.offset + index, piece, chunk.alone))
    applied.busy = due
    return pieces


def sliced(applied: _Applied, fault: Slice, chunk: _Chunk, rng: random.Random) -> list[_Chunk]:
    """`chunk` in slices of `fault.size` (give or take its jitter), each read alone,
    `fault.delay` apart."""
    pieces: list[_Chunk] = []
    data = chunk.data
    due = max(chunk.at, applied.busy)
    index = 0
    while index < len(data):
        size = fault.size
        if fault.jitter:
            size = max(1, size + rng.randint(-fault.jitter, fault.jitter))
        pieces.append(_Chunk(due, chunk.offset + index, data[index : index + size], True))
        index += size
        due += fault.delay
    applied.busy = due
    return pieces


def first_corrupt_offset(fault: Corrupt, start: int, rng: random.Random) -> int | None:
    """The first stream offset from `start` that `fault.rate` flips, or None for none.

    A geometric gap: the same distribution as one Bernoulli trial per byte, drawn
    once per hit rather than once per byte.
    """
    if fault.rate <= 0:
        return None
    if fault.rate >= 1:
        return start
    return start + int(math.log(1.0 - rng.random()) / math.log(1.0 - fault.rate))


def corrupted(
    applied: _Applied, fault: Corrupt, chunk: _Chunk, rng: random.Random
) -> tuple[_Chunk, list[int]]:
    """`chunk` with the bytes `fault` hits flipped by its mask, and the offsets it flipped."""
    arm = applied.arm or 0
    start = chunk.offset
    end = start + len(chunk.data)
    hits = {arm + p for p in fault.positions if start <= arm + p < end}
    while applied.next_corrupt is not None and applied.next_corrupt < end:
        hits.add(applied.next_corrupt)
        applied.next_corrupt = first_corrupt_offset(fault, applied.next_corrupt + 1, rng)
    if not hits:
        return chunk, []
    data = bytearray(chunk.data)
    for position in hits:
        data[position - start] ^= fault.mask
    return _Chunk(chunk.at, chunk.offset, bytes(data), chunk.alone), sorted(hits)
