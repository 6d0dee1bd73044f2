"""The sans-IO fault engine: what the TCP and UDP schedules share.

Theory of operation
-------------------
A fault (`nettest._faults`) is a frozen value: it says *what* goes wrong, holds
no state and does no IO.  What happens to the bytes of one connection (or, for
UDP, of one flow: the datagrams from one client address) is decided by a
*schedule*: `StreamSchedule` (`nettest._fault_engine_stream`) for TCP,
`DatagramSchedule` (`nettest._fault_engine_datagram`) for UDP; both build on
`_Schedule` and `_Applied` here.  A schedule is a pure state machine.
Its driver (the proxy, `nettest._proxy`, or the memory transports,
`nettest._memory_faults`) feeds it events with the time they happened::

    data(flow, bytes, now)    eof(flow, now)    tick(now)    update(faults, now)

and gets back a list of *actions* (`nettest._fault_actions`) to carry out::

    Deliver(at, flow, data)   "write these bytes to the receiver at time `at`"
    SendEof(at, flow)         "half-close towards the receiver at `at`"
    Close(at)                 "close both sides (FIN) at `at`"
    Abort(at, flows)          "reset (RST) the receivers of `flows` at `at`"
    Pause(flow) / Resume(flow)  "stop / start reading from the sender"
    Wake(at)                  "call tick() at `at`"
    Refuse()                  "reset this connection before connecting upstream"
    Unreachable(at, flow)     "tell the sender of `flow` its datagram was refused"

A *flow* is one direction: ``"upstream"`` carries what the client sends to the
server, ``"downstream"`` what the server sends back.  Times are absolute, on the
driver's clock (``loop.time()``), so a fast-forwarding clock makes every delay
free.  For TCP, the actions of one flow are in non-decreasing `at` order and must
be carried out in list order: the driver keeps one FIFO per flow and one timer.

Each flow runs a pipeline: the faults that apply to it, in the order they were
added.  Equal faults are stages of their own, each with its own state, so
``[Latency(0.1), Latency(0.1)]`` delays by 0.2 s; when the faults change, the Nth
of equal faults keeps the state of the Nth before (`FaultsInForce.remove` removes
the last of them).  An item (a chunk with its stream offset, an EOF, or a
close/reset decided by an earlier fault) goes through each stage in turn; a stage
may delay it, cut it, change it, hold it or drop it.  A fault does nothing until
it is *armed*: its trigger names the connection number, a byte offset or a byte
pattern, and a fault added in mid-connection counts from the moment it was
added.  Every trigger sees the sender's bytes as they arrive, whatever the stages
before it do with them.  A fault that acts on a timer (`CloseAfter`, a `Reset`
with ``after_seconds`` or no limit) arms, and starts its timer, when the item
that meets its trigger reaches it, or when the sender sends that item if an
earlier stage holds or drops it.  A chunk that straddles the arming offset is split, so
that the bytes before it pass untouched.  Byte counts inside a fault
(``Truncate(10)``, ``Reset(after_bytes=10)``) are relative to the arming offset.

All randomness comes from one `random.Random` per connection, seeded from the
proxy's seed and the connection's number: the same seed and the same traffic
give the same actions whatever other connections do.  Whether a fault with
``probability < 1`` applies to a connection is drawn once, when the connection
first sees the fault.

Every decision is also recorded in the connection's `ConnectionTrace`
(`nettest._fault_trace`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from ._fault_trace import ConnectionTrace
from ._faults import (
    _NO_TRIGGER,
    FLOWS,
    Fault,
    Flow,
    check_faults,
)

__all__: list[str] = []

_INF = math.inf

# -- the schedule's pipeline items ---------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    at: float
    offset: int
    data: bytes
    #: A piece of a `Slice`: the receiver must read it apart from what came before.
    alone: bool = False


@dataclass(slots=True)
class _Eof:
    at: float


@dataclass(slots=True)
class _Ctl:
    """A close or reset decided by a stage; later stages may delay it."""

    at: float
    reset: bool
    flows: tuple[Flow, ...]
    reason: str


_Item: TypeAlias = _Chunk | _Eof | _Ctl


#: A fault in force and how many equal faults come before it: one stage per occurrence.
_Key: TypeAlias = tuple[Fault, int]


def _connection_rng(seed: int, kind: str, index: int) -> random.Random:
    return random.Random(f"nettest:{seed}:{kind}:{index}")


def _occurrences(faults: Iterable[Fault]) -> list[_Key]:
    """Number each fault among those equal to it, so that equal faults stay apart."""
    seen: dict[Fault, int] = {}
    keys: list[_Key] = []
    for fault in faults:
        count = seen.get(fault, 0)
        seen[fault] = count + 1
        keys.append((fault, count))
    return keys


class _Applied:
    """One fault's state on one flow of one connection (each of equal faults has its own)."""

    __slots__ = (
        "arm",
        "armed",
        "busy",
        "deadline",
        "fault",
        "fired",
        "flow",
        "held",
        "key",
        "last",
        "next_corrupt",
        "pattern",
        "scanned",
        "selected",
        "tail",
        "target",
    )

    def __init__(self, key: _Key, flow: Flow, selected: bool, consumed: int) -> None:
        fault = key[0]
        trigger = fault.trigger or _NO_TRIGGER
        self.key = key
        self.fault = fault
        self.flow: Flow = flow
        self.selected = selected
        self.pattern = trigger.pattern
        # The stream offset where the fault starts to act (None: pattern not seen yet).
        self.arm: int | None = (
            max(trigger.after_bytes, consumed) if trigger.pattern is None else None
        )
        self.scanned = consumed
        self.tail = b""
        self.armed = False
        self.fired = False
        self.last = -_INF
        self.busy = -_INF
        self.deadline: float | None = None
        self.held: list[_Item] = []
        self.next_corrupt: int | None = None
        self.target: int | None = None

    def scan(self, offset: int, data: bytes, *, joined: bool = True) -> None:
        """Look for the trigger's pattern in raw bytes starting at stream `offset`.

        `joined`: `data` follows on from the bytes scanned before, as in a stream, so
        the pattern may begin in them.  A datagram is scanned alone: a pattern split
        across two datagrams is not in either.
        """
        if self.pattern is None or self.arm is not None:
            return
        trigger = self.fault.trigger or _NO_TRIGGER
        window = self.tail + data
        found = window.find(self.pattern)
        if found >= 0:
            end = offset - len(self.tail) + found + len(self.pattern)
            self.arm = max(trigger.after_bytes, end)
            self.tail = b""
        elif joined and len(self.pattern) > 1:
            self.tail = window[-(len(self.pattern) - 1) :]


class _Schedule:
    """What the stream and datagram schedules share: faults, draws, traces."""

    _kind: ClassVar[str] = ""

    def __init__(
        self,
        *,
        seed: int,
        index: int,
        now: float,
        faults: Sequence[Fault] = (),
        peer: object = None,
    ) -> None:
        self.index = index
        self.rng = _connection_rng(seed, self._kind, index)
        self.trace = ConnectionTrace(
            _index=index, _kind="tcp" if self._kind == "stream" else "udp", _peer=peer, _start=now
        )
        self._faults: tuple[Fault, ...] = ()
        # Keyed by occurrence: equal faults draw apart, and a fault removed and added
        # again keeps its draw.
        self._draws: dict[_Key, bool] = {}
        self._pipes: dict[Flow, list[_Applied]] = {"upstream": [], "downstream": []}
        self._consumed: dict[Flow, int] = {"upstream": 0, "downstream": 0}
        self._initial = tuple(faults)

    def _check_kind(self, faults: Iterable[Fault]) -> None:
        other = "TCP" if self._kind == "datagram" else "UDP"
        check_faults(
            faults, self._kind, lambda fault: f"{fault!r} applies to {other} traffic only"
        )

    def _selected(self, key: _Key) -> bool:
        drawn = self._draws.get(key)
        if drawn is None:
            fault = key[0]
            trigger = fault.trigger or _NO_TRIGGER
            # Always draw, so that later draws do not depend on this fault's probability.
            chance = self.rng.random()
            drawn = chance < fault.probability and trigger.connection in (None, self.index)
            self._draws[key] = drawn
        return drawn

    def _reconcile(self, faults: Sequence[Fault], now: float) -> list[_Applied]:
        """Bring the pipelines in line with *faults*; return the newly applied stages.

        Each occurrence of a fault is a stage of its own.  The Nth of equal faults
        keeps the state of the Nth before the change: `FaultsInForce` only appends
        and removes the last of equal faults, so that is the same stage.
        """
        self._check_kind(faults)
        self._faults = tuple(faults)
        keys = _occurrences(faults)
        added: list[_Applied] = []
        for flow in FLOWS:
            old = {applied.key: applied for applied in self._pipes[flow]}
            pipe: list[_Applied] = []
            for key in keys:
                if key[0].direction not in (flow, "both"):
                    continue
                applied = old.pop(key, None)
                if applied is None:
                    applied = _Applied(key, flow, self._selected(key), self._consumed[flow])
                    if applied.selected:
                        added.append(applied)
                if applied.selected:
                    pipe.append(applied)
            before = self._pipes[flow]
            self._pipes[flow] = pipe
            self._removed(flow, list(old.values()), before, now)
        return added

    def _removed(
        self, flow: Flow, stages: list[_Applied], before: list[_Applied], now: float
    ) -> None:
        """Hook: `stages` left `flow`'s pipeline, which was `before`."""
