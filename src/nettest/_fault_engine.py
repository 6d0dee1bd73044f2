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
    JoinPieces(flow)          "the queued pieces need no longer be read alone"
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
may delay it, cut it, change it, hold it or drop it.  A stage that *holds* an
item keeps it until it lets it go: `Stall` until it is removed; `Bandwidth`,
`Slice` (TCP) and `SlowClose` (an EOF) until the item is due, when a `Wake` the
schedule asked for has the driver call ``tick()``.  Removing a stage lets
everything it holds go on at once, in order, through the stages after it that
remain.  `Latency` holds nothing: it stamps each item with the later time it is
due and passes it on, so what it has delayed is on its way (in flight on the
modelled link) and keeps its time when the fault is removed.

A fault does nothing until it is *armed*: its trigger names the connection
number, a byte offset or a byte pattern, and a fault added in mid-connection
counts from the moment it was added.  Every trigger sees the sender's bytes as
they arrive, whatever the stages before it do with them.  A fault that acts on a
timer (`CloseAfter`, a `Reset` with ``after_seconds`` or no limit) arms, and
starts its timer, when the item that meets its trigger reaches it (late, if a
`Latency` or a pace before it holds it until due), or when the sender sends that
item if an earlier stage stalls or drops it.  A chunk that straddles the arming offset is split, so
that the bytes before it pass untouched.  Byte counts inside a fault
(``Truncate(10)``, ``Reset(after_bytes=10)``) are relative to the arming offset.

All randomness comes from `random.Random` objects seeded from the proxy's seed
and the connection's number: one per connection for whether a fault with
``probability < 1`` applies to it (drawn once, when the connection first sees the
fault), and one per stage (a fault on one flow) for what the fault does.  A
stage's draws depend on nothing but the items it sees: the same seed and the same
traffic give the same actions whatever other connections, the other direction, or
the other faults do meanwhile.

Every decision is also recorded in the connection's `ConnectionTrace`
(`nettest._fault_trace`).
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeAlias

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
#: A timer may fire this much before its time (asyncio runs callbacks up to the
#: clock's resolution early): a tick lets go what is due that soon.
_SLACK = 1e-6

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
    by_peer: bool = False


_Item: TypeAlias = _Chunk | _Eof | _Ctl


@dataclass(slots=True)
class _Paced:
    """An item a stage holds until it is due (its ``item.at``): see `_Applied.queue`."""

    #: When the item reached the stage: it goes on from then if the stage is removed.
    entry: float
    #: Whether the item came in to be read alone, before the stage cut it up.
    alone: bool
    #: Whether no piece of the same item comes before this one in the stage's queue.
    first: bool
    item: _Item


class HoldLedger(Protocol):
    """Where a driver counts the bytes a stage of a schedule holds back until they are due.

    The schedule calls `add` for each chunk a stage starts holding and `pop` for
    each one it lets go (or drops), oldest first.  A stage that holds nothing
    drops its ledger, empty, and asks for a new one when it holds bytes again:
    a driver may forget its empty ledgers.
    """

    def add(self, due: float, size: int) -> None:
        """A held chunk of `size` bytes is expected to reach the receiver at `due`."""

    def pop(self) -> None:
        """The oldest held chunk left the stage."""


#: A fault in force and how many equal faults come before it: one stage per occurrence.
_Key: TypeAlias = tuple[Fault, int]


def _connection_rng(seed: int, kind: str, index: int) -> random.Random:
    return random.Random(f"nettest:{seed}:{kind}:{index}")


def _stage_rng(seed: int, kind: str, index: int, key: _Key, flow: Flow) -> random.Random:
    """The draws of one stage: one fault (the Nth of equal ones) on one flow."""
    return random.Random(f"nettest:{seed}:{kind}:{index}:{flow}:{key[0]!r}:{key[1]}")


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
        "ledger",
        "next_corrupt",
        "pattern",
        "queue",
        "rng",
        "scanned",
        "selected",
        "tail",
        "target",
    )

    def __init__(
        self, key: _Key, flow: Flow, selected: bool, consumed: int, rng: random.Random
    ) -> None:
        fault = key[0]
        trigger = fault.trigger or _NO_TRIGGER
        self.key = key
        self.fault = fault
        self.flow: Flow = flow
        self.selected = selected
        #: What this stage draws from: its draws depend on nothing but what it sees.
        self.rng = rng
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
        #: What a `Stall` holds until it is removed.
        self.held: list[_Item] = []
        #: What a pacing stage holds until it is due, in stream order (see `_Paced`).
        self.queue: collections.deque[_Paced] = collections.deque()
        self.ledger: HoldLedger | None = None
        self.next_corrupt: int | None = None
        self.target: int | None = None

    # -- what a stage holds until it is due (a TCP schedule's `queue`) ----------------

    def take(self) -> _Paced:
        """Take the oldest item the stage holds."""
        paced = self.queue.popleft()
        if self.ledger is not None:
            if isinstance(paced.item, _Chunk):
                self.ledger.pop()
            if not self.queue:
                self.ledger = None  # empty for good: the next hold gets a new one
        return paced

    def let_go_all(self, now: float, alone: bool) -> list[_Item]:
        """Take everything the stage holds, as it came in, to go on from `now`.

        The pieces of one item are joined again, and so are consecutive chunks
        that need not be read alone: without the stage nothing cuts them.
        `alone`: False once no `Slice` is left to want pieces read alone.
        """
        out: list[_Item] = []
        run: _Chunk | None = None
        parts: list[bytes] = []
        end = 0
        while self.queue:
            paced = self.take()
            item = paced.item
            at = max(paced.entry, now)
            if not isinstance(item, _Chunk):
                if run is not None:
                    run.data = b"".join(parts)
                    run = None
                item.at = at
                out.append(item)
                continue
            keep = paced.alone and alone
            # A piece to be read alone joins only the other pieces of its own item.
            joins = run is not None and run.offset + end == item.offset and run.alone == keep
            if run is not None and joins and not (keep and paced.first):
                parts.append(item.data)
                end += len(item.data)
                run.at = max(run.at, at)
                continue
            if run is not None:
                run.data = b"".join(parts)
            run = _Chunk(at, item.offset, b"", keep)
            out.append(run)
            parts = [item.data]
            end = len(item.data)
        if run is not None:
            run.data = b"".join(parts)
        return out

    def held_range(self) -> tuple[int, int] | None:
        """The stream offsets [start, end) of the bytes the stage holds until due."""
        queue = self.queue
        first = queue[0].item if queue else None
        if not isinstance(first, _Chunk):
            return None
        # Only an EOF or a close (at most both) may follow the last chunk.
        last = next(p.item for p in reversed(queue) if isinstance(p.item, _Chunk))
        return first.offset, last.offset + len(last.data)

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
        self._seed = seed
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

    def _fire_once(self, applied: _Applied, at: float, what: str) -> None:
        """Trace the first time `applied` acts: a fault that acts on all alike (a delay)."""
        if not applied.fired:
            applied.fired = True
            self.trace._fire(at, applied.fault, applied.flow, what)

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
                    rng = _stage_rng(self._seed, self._kind, self.index, key, flow)
                    applied = _Applied(key, flow, self._selected(key), self._consumed[flow], rng)
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
