"""The sans-IO fault engine: the schedule that applies faults to one TCP connection.

Theory of operation
-------------------
A fault (`nettest._faults`) is a frozen value: it says *what* goes wrong, holds
no state and does no IO.  What happens to the bytes of one connection (or, for
UDP, of one flow: the datagrams from one client address) is decided by a
*schedule*: `StreamSchedule` here for TCP, `DatagramSchedule`
(`nettest._fault_engine_datagram`) for UDP.  A schedule is a pure state machine.
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
before it do with them.  A chunk that straddles the arming offset is split, so
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

from ._fault_actions import (
    Abort,
    Action,
    Close,
    Deliver,
    Pause,
    RefuseConnection,
    Resume,
    SendEof,
    Wake,
)
from ._fault_trace import ConnectionTrace
from ._faults import (
    _NO_TRIGGER,
    FLOWS,
    Bandwidth,
    Blackhole,
    CloseAfter,
    Corrupt,
    Fault,
    Flow,
    HalfClose,
    Latency,
    Refuse,
    Reset,
    Slice,
    SlowClose,
    Stall,
    Truncate,
    check_faults,
)

__all__ = ["StreamSchedule"]

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


class StreamSchedule(_Schedule):
    """The faults of one TCP connection: bytes and time in, actions out.

    See the module's theory of operation.  Not thread-safe; one per connection.

    Args:
        seed: The proxy's seed.
        index: The connection's number, from 1.
        now: The driver's clock when the connection was accepted.
        faults: The faults in force.
        peer: The client's address, for the trace.

    Raises:
        ValueError: A UDP-only fault.
    """

    _kind = "stream"

    def __init__(
        self,
        *,
        seed: int,
        index: int,
        now: float,
        faults: Sequence[Fault] = (),
        peer: object = None,
    ) -> None:
        super().__init__(seed=seed, index=index, now=now, faults=faults, peer=peer)
        self._last_at: dict[Flow, float] = {"upstream": -_INF, "downstream": -_INF}
        self._eof_in: dict[Flow, bool] = {"upstream": False, "downstream": False}
        self._eof_out: dict[Flow, bool] = {"upstream": False, "downstream": False}
        self._released: list[Action] = []
        self.closed = False
        #: Bytes of each flow that will never be delivered (dropped, or cut off by a
        #: close), so that a driver holding them "in flight" can let them go.
        self.discarded: dict[Flow, int] = {"upstream": 0, "downstream": 0}

    # -- the driver's calls -------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Apply the initial faults; call once, before any data.

        Returns:
            The actions to carry out; `RefuseConnection` first if the connection
            must be refused.
        """
        self.trace.record(now, None, "accepted")
        self._check_kind(self._initial)
        for key in _occurrences(self._initial):
            fault = key[0]
            if isinstance(fault, Refuse) and self._selected(key):
                self.trace.fire(now, fault, None, "connection refused (reset)")
                self.closed = True
                return [RefuseConnection(repr(fault))]
        return self.update(self._initial, now)

    def update(self, faults: Sequence[Fault], now: float) -> list[Action]:
        """The faults in force changed (added, removed, cleared)."""
        actions: list[Action] = []
        if self.closed:
            self._faults = tuple(faults)
            return actions
        added = self._reconcile([f for f in faults if not isinstance(f, Refuse)], now)
        actions.extend(self._released)
        self._released = []
        for applied in added:
            if applied.arm is not None and self._consumed[applied.flow] >= applied.arm:
                items = self._arm(applied, now)
                found = self._run_from(applied, items)
                actions.extend(self._released)
                self._released = []
                actions.extend(found)
        return actions

    def data(self, flow: Flow, data: bytes, now: float) -> list[Action]:
        """Bytes arrived from the sender of `flow`."""
        if self.closed or not data:
            self.discarded[flow] += len(data)
            return []
        offset = self._consumed[flow]
        self._consumed[flow] = offset + len(data)
        pipe = self._pipes[flow]
        if not pipe:
            return self._finish(flow, [_Chunk(now, offset, data)])
        for applied in pipe:
            applied.scan(offset, data)
        return self._run(flow, 0, [_Chunk(now, offset, data)])

    def eof(self, flow: Flow, now: float) -> list[Action]:
        """The sender of `flow` half-closed (or closed) its side."""
        if self.closed or self._eof_in[flow]:
            return []
        self._eof_in[flow] = True
        self.trace.record(now, flow, "EOF received")
        return self._run(flow, 0, [_Eof(now)])

    def tick(self, now: float) -> list[Action]:
        """Time passed; carry out timers that are due (see `Wake`)."""
        actions: list[Action] = []
        if self.closed:
            return actions
        for flow in FLOWS:
            for applied in list(self._pipes[flow]):
                if applied.deadline is None or applied.fired or applied.deadline > now:
                    continue
                applied.fired = True
                fault = applied.fault
                reset = isinstance(fault, Reset)
                what = "reset" if reset else "close"
                self.trace.fire(now, fault, flow, f"{what} after {applied.deadline - now:+.3f}s")
                flows = _reset_flows(fault, flow)
                # A close or reset ends the connection: nothing else is due.
                return self._finish(flow, [_Ctl(now, reset, flows, repr(fault))])
        return actions

    # -- the pipeline -----------------------------------------------------------------

    def _run_from(self, applied: _Applied, items: list[_Item]) -> list[Action]:
        pipe = self._pipes[applied.flow]
        return self._run(applied.flow, pipe.index(applied) + 1, items)

    def _run(self, flow: Flow, start: int, items: list[_Item]) -> list[Action]:
        return self._run_through(flow, self._pipes[flow][start:], items)

    def _run_through(self, flow: Flow, stages: list[_Applied], items: list[_Item]) -> list[Action]:
        """Pass `items` through `stages` in order, then turn what is left into actions."""
        extra: list[Action] = []
        for applied in stages:
            if not items:
                break
            out: list[_Item] = []
            for item in items:
                out.extend(self._stage(applied, item, extra))
            items = out
        return extra + self._finish(flow, items)

    def _finish(self, flow: Flow, items: list[_Item]) -> list[Action]:
        """Turn the items that left the pipeline into actions, in order."""
        actions: list[Action] = []
        for item in items:
            if self.closed or (self._eof_out[flow] and not isinstance(item, _Ctl)):
                # Nothing follows a close, nor a FIN in the same direction.
                if isinstance(item, _Chunk):
                    self.discarded[flow] += len(item.data)
                continue
            at = max(item.at, self._last_at[flow])
            self._last_at[flow] = at
            if isinstance(item, _Chunk):
                self.trace._forwarded(at, flow, item.data)
                actions.append(Deliver(at, flow, item.data, item.alone))
            elif isinstance(item, _Eof):
                self._eof_out[flow] = True
                self.trace.record(at, flow, "EOF forwarded")
                actions.append(SendEof(at, flow))
            else:
                self.closed = True
                if item.reset:
                    self.trace.record(at, flow, f"reset {'+'.join(item.flows)}: {item.reason}")
                    actions.append(Abort(at, flow, item.flows, item.reason))
                else:
                    self.trace.record(at, flow, f"close: {item.reason}")
                    actions.append(Close(at, flow, item.reason))
        return actions

    def _arm(self, applied: _Applied, at: float) -> list[_Item]:
        """`applied` reached its arming offset at time `at`; return the items it emits."""
        applied.armed = True
        fault = applied.fault
        arm = applied.arm if applied.arm is not None else 0
        flow = applied.flow
        if isinstance(fault, (Truncate, Reset)):
            limit = fault.after_bytes
            if isinstance(fault, Reset) and fault.after_seconds is not None:
                applied.deadline = at + fault.after_seconds
                self._released.append(Wake(applied.deadline))
                if limit is None:
                    return []
            applied.target = arm + (limit or 0)
            # A positive limit is reached by later bytes (see `_act`).
            return self._fire_end(applied, at) if not limit else []
        if isinstance(fault, CloseAfter):
            applied.deadline = at + fault.seconds
            self._released.append(Wake(applied.deadline))
            self.trace.fire(at, fault, flow, f"armed; closing at +{fault.seconds}s")
            return []
        if isinstance(fault, HalfClose):
            applied.fired = True
            self.trace.fire(at, fault, flow, "half-closed")
            return [_Eof(at)]
        if isinstance(fault, Stall):
            self.trace.fire(at, fault, flow, "stopped reading")
            self._released.append(Pause(flow))
            return []
        if isinstance(fault, Corrupt):
            applied.next_corrupt = self._next_corrupt(applied, arm)
        return []

    def _fire_end(self, applied: _Applied, at: float) -> list[_Item]:
        applied.fired = True
        fault = applied.fault
        reset = isinstance(fault, Reset)
        what = "reset" if reset else "closed"
        self.trace.fire(at, fault, applied.flow, f"{what} after {applied.target} bytes")
        return [_Ctl(at, reset, _reset_flows(fault, applied.flow), repr(fault))]

    def _next_corrupt(self, applied: _Applied, start: int) -> int | None:
        fault = applied.fault
        assert isinstance(fault, Corrupt)
        if fault.rate <= 0:
            return None
        if fault.rate >= 1:
            return start
        # Geometric gap: the same draws as one Bernoulli trial per byte, in O(hits).
        gap = int(math.log(1.0 - self.rng.random()) / math.log(1.0 - fault.rate))
        return start + gap

    def _stage(self, applied: _Applied, item: _Item, extra: list[Action]) -> list[_Item]:
        """Pass one item through one fault."""
        out: list[_Item] = []
        if isinstance(item, _Chunk):
            arm = applied.arm
            end = item.offset + len(item.data)
            before: _Chunk | None
            if applied.armed:
                before, after = None, item
            elif arm is None or arm > end:
                return [item]
            else:
                # The fault arms inside this chunk, or right at its end.
                cut = max(0, arm - item.offset)
                alone = item.alone
                before = _Chunk(item.at, item.offset, item.data[:cut], alone) if cut else None
                after = _Chunk(item.at, item.offset + cut, item.data[cut:], alone)
            if before is not None:
                out.append(before)
            if not applied.armed:
                out.extend(self._arm_inline(applied, item.at, extra))
            if after.data:
                out.extend(self._act(applied, after))
            return out
        if not applied.armed:
            consumed = self._consumed[applied.flow]
            if applied.arm is not None and consumed >= applied.arm:
                out.extend(self._arm_inline(applied, item.at, extra))
            else:
                return [item]
        out.extend(self._act_other(applied, item))
        return out

    def _arm_inline(self, applied: _Applied, at: float, extra: list[Action]) -> list[_Item]:
        items = self._arm(applied, at)
        extra.extend(self._released)
        self._released = []
        return items

    def _act(self, applied: _Applied, chunk: _Chunk) -> list[_Item]:
        """Apply an armed fault to a chunk."""
        fault = applied.fault
        flow = applied.flow
        if applied.held or isinstance(fault, Stall):
            applied.held.append(chunk)
            return []
        if isinstance(fault, (Truncate, Reset)):
            target = applied.target
            if applied.fired:
                self.discarded[flow] += len(chunk.data)
                return []
            if target is None:
                return [chunk]
            end = chunk.offset + len(chunk.data)
            if end < target:
                return [chunk]
            keep = max(0, target - chunk.offset)
            self.discarded[flow] += len(chunk.data) - keep
            out: list[_Item] = []
            if keep > 0:
                out.append(_Chunk(chunk.at, chunk.offset, chunk.data[:keep], chunk.alone))
            out.extend(self._fire_end(applied, chunk.at))
            return out
        if isinstance(fault, Latency):
            at = chunk.at + fault.delay
            if fault.jitter:
                at += self.rng.uniform(-fault.jitter, fault.jitter)
            chunk.at = max(at, chunk.at, applied.last)
            applied.last = chunk.at
            if not applied.fired:
                applied.fired = True
                self.trace.fire(chunk.at, fault, flow, "delaying")
            return [chunk]
        if isinstance(fault, Bandwidth):
            return self._throttle(applied, fault, chunk)
        if isinstance(fault, Slice):
            return self._slice(applied, fault, chunk)
        if isinstance(fault, Corrupt):
            return [self._corrupt(applied, fault, chunk)]
        if isinstance(fault, (Blackhole, HalfClose)):
            self.trace.fire(chunk.at, fault, flow, f"dropped {len(chunk.data)} bytes")
            self.discarded[flow] += len(chunk.data)
            return []
        return [chunk]

    def _act_other(self, applied: _Applied, item: _Item) -> list[_Item]:
        """Apply an armed fault to an EOF or a close/reset from an earlier stage."""
        fault = applied.fault
        if applied.held or isinstance(fault, Stall):
            applied.held.append(item)
            return []
        if isinstance(fault, Latency):
            item.at = max(item.at + fault.delay, applied.last)
            applied.last = item.at
        elif isinstance(fault, (Bandwidth, Slice)):
            item.at = max(item.at, applied.busy, applied.last)
        elif isinstance(fault, SlowClose) and isinstance(item, _Eof):
            item.at += fault.delay
            self.trace.fire(item.at, fault, applied.flow, f"FIN held {fault.delay}s")
        elif isinstance(fault, (Blackhole, HalfClose)) and isinstance(item, _Eof):
            return []
        return [item]

    def _throttle(self, applied: _Applied, fault: Bandwidth, chunk: _Chunk) -> list[_Item]:
        rate = fault.bytes_per_second
        quantum = max(1, int(rate / 50))
        out: list[_Item] = []
        data = chunk.data
        start = max(chunk.at, applied.busy)
        for index in range(0, len(data), quantum):
            piece = data[index : index + quantum]
            start = start + len(piece) / rate
            out.append(_Chunk(start, chunk.offset + index, piece, chunk.alone))
        applied.busy = start
        if not applied.fired:
            applied.fired = True
            self.trace.fire(chunk.at, fault, applied.flow, "throttling")
        return out

    def _slice(self, applied: _Applied, fault: Slice, chunk: _Chunk) -> list[_Item]:
        out: list[_Item] = []
        data = chunk.data
        at = max(chunk.at, applied.busy)
        index = 0
        while index < len(data):
            size = fault.size
            if fault.jitter:
                size = max(1, size + self.rng.randint(-fault.jitter, fault.jitter))
            out.append(_Chunk(at, chunk.offset + index, data[index : index + size], True))
            index += size
            at += fault.delay
        applied.busy = at
        if not applied.fired:
            applied.fired = True
            self.trace.fire(chunk.at, fault, applied.flow, "slicing")
        return out

    def _corrupt(self, applied: _Applied, fault: Corrupt, chunk: _Chunk) -> _Chunk:
        arm = applied.arm or 0
        start = chunk.offset
        end = start + len(chunk.data)
        hits = [arm + p for p in fault.positions if start <= arm + p < end]
        while applied.next_corrupt is not None and applied.next_corrupt < end:
            hits.append(applied.next_corrupt)
            applied.next_corrupt = self._next_corrupt(applied, applied.next_corrupt + 1)
        if not hits:
            return chunk
        data = bytearray(chunk.data)
        for position in sorted(set(hits)):
            data[position - start] ^= fault.mask
        self.trace.fire(chunk.at, fault, applied.flow, f"flipped offsets {sorted(set(hits))}")
        return _Chunk(chunk.at, chunk.offset, bytes(data), chunk.alone)

    def _removed(
        self, flow: Flow, stages: list[_Applied], before: list[_Applied], now: float
    ) -> None:
        pipe = self._pipes[flow]
        stalled = any(isinstance(a.fault, Stall) and a.armed for a in pipe)
        # The last stage's held bytes are the earliest in the stream: release them first.
        for applied in reversed(stages):
            if isinstance(applied.fault, Stall) and applied.armed:
                if not stalled:
                    self._released.append(Resume(flow))
                self.trace.fire(now, applied.fault, flow, "removed; reading again")
            if applied.held:
                held, applied.held = applied.held, []
                for item in held:
                    item.at = max(item.at, now)
                # The held items went through the stages before this one already; they
                # go on through those after it that are still in force.
                after = before[before.index(applied) + 1 :]
                rest = [stage for stage in pipe if any(stage is a for a in after)]
                self._released.extend(self._run_through(flow, rest, held))


def _reset_flows(fault: Fault, flow: Flow) -> tuple[Flow, ...]:
    return FLOWS if fault.direction == "both" else (flow,)
