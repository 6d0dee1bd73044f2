"""The sans-IO fault engine for datagrams: the schedule of one UDP flow.

`DatagramSchedule` is the datagram twin of `StreamSchedule`
(`nettest._fault_engine`, whose theory of operation applies here too): the
same faults, pipelines, triggers, seeded draws and traces, with datagrams in
place of a byte stream.  The differences: there is no EOF, close or reset, each
datagram goes through the pipeline whole, and delivery times are not kept in
order, since a real network may reorder datagrams too.  `Reorder` holds
datagrams inside the schedule until its window fills or a `Wake` releases them;
`Bandwidth` holds each until it is due, and a `Wake` releases it then.  Removing
either lets what it holds go on at once, through the stages after it.

Triggers count a flow's datagrams as sent, end to end: a datagram's offset is
where its first byte falls in that count.  As on TCP, every trigger sees each
datagram as it arrives, even one that an earlier stage holds, drops or changes;
a pattern must lie inside one datagram.  A datagram is never split: an armed
fault acts on the datagrams whose offset is at or past its arming offset,
whenever they reach it, so the datagram that carries the pattern or completes
the byte count passes untouched, even if `Reorder` lets it out after later ones.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from ._fault_actions import Action, Deliver, UnreachableAction, Wake
from ._fault_engine import _INF, _SLACK, _Applied, _Schedule
from ._fault_trace import datagram_shown
from ._faults import (
    FLOWS,
    Bandwidth,
    Blackhole,
    Corrupt,
    Drop,
    Duplicate,
    Fault,
    Flow,
    Latency,
    Reorder,
    TruncateDatagram,
    Unreachable,
)

__all__ = ["DatagramSchedule"]


@dataclass(slots=True)
class _Dgram:
    at: float
    #: Where the datagram started in the flow's bytes as sent (see the triggers).
    offset: int
    data: bytes
    #: Its number in its direction, from 1, as sent (a fault's ``datagrams``).
    number: int


def _is_among(number: int, chosen: Sequence[int]) -> bool:
    """Whether `number` is in `chosen`, sorted as a fault's ``datagrams`` are."""
    at = bisect.bisect_left(chosen, number)
    return at < len(chosen) and chosen[at] == number


class DatagramSchedule(_Schedule):
    """The faults of one UDP flow (the datagrams from one client address).

    Datagrams and time in, actions out (`Deliver`, `UnreachableAction`, `Wake`).
    Unlike TCP, delivery times are not kept in order: latency with jitter and
    `Reorder` reorder datagrams, as a real network may.

    Args:
        seed: The proxy's seed.
        index: The flow's number, from 1.
        now: The driver's clock when the first datagram arrived.
        faults: The faults in force.
        peer: The client's address, for the trace.

    Raises:
        ValueError: A TCP-only fault.
    """

    _kind = "datagram"

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
        self._sent = dict.fromkeys(FLOWS, 0)
        self._held: dict[int, tuple[float, list[_Dgram]]] = {}
        # What each `Bandwidth` stage holds until it is due: (when it reached the
        # stage, the datagram stamped with the time it is due), in order.
        self._paced: dict[int, collections.deque[tuple[float, _Dgram]]] = {}
        self._pending: list[Action] = []
        self._now = now
        #: The earliest `Wake` asked for and not yet seen, for what `_paced` holds.
        self._wake = _INF
        self.trace._record(now, None, "first datagram")
        self.update(self._initial, now)

    def update(self, faults: Sequence[Fault], now: float) -> list[Action]:
        """The faults in force changed (added, removed, cleared)."""
        self._now = now
        self._reconcile(faults, now)
        actions, self._pending = self._pending, []
        return actions + self._wake_for_paced()

    def datagram(self, flow: Flow, data: bytes, now: float) -> list[Action]:
        """A datagram arrived from the sender of `flow`."""
        self._now = now
        offset = self._consumed[flow]
        self._consumed[flow] = offset + len(data)
        self._sent[flow] += 1
        pipe = self._pipes[flow]
        # Every trigger sees the datagram as sent, whatever the stages before it do.
        for applied in pipe:
            applied.scan(offset, data, joined=False)
        actions: list[Action] = []
        items = self._run_through(
            list(pipe), [_Dgram(now, offset, data, self._sent[flow])], actions
        )
        return actions + self._finish(flow, items) + self._wake_for_paced()

    def tick(self, now: float) -> list[Action]:
        """Release the datagrams `Reorder` has held for too long, and those `Bandwidth` let go."""
        self._now = now
        due = now + _SLACK
        if self._wake <= due:
            self._wake = _INF
        actions: list[Action] = []
        for flow in FLOWS:
            for stage, applied in enumerate(list(self._pipes[flow])):
                key = id(applied)
                items: list[_Dgram] = []
                held = self._held.get(key)
                if held is not None and held[0] <= now:
                    del self._held[key]
                    items = self._shuffle(applied, held[1], now)
                queue = self._paced.get(key)
                while queue and queue[0][1].at <= due:
                    items.append(queue.popleft()[1])
                if queue is not None and not queue:
                    del self._paced[key]
                if items:
                    items = self._run_through(self._pipes[flow][stage + 1 :], items, actions)
                    actions.extend(self._finish(flow, items))
        return actions + self._wake_for_paced()

    def _wake_for_paced(self) -> list[Action]:
        """A `Wake` for the first held datagram that falls due, unless one is asked for."""
        due = min((queue[0][1].at for queue in self._paced.values()), default=_INF)
        if due < self._wake:
            self._wake = due
            return [Wake(due)]
        return []

    def _run_through(
        self, stages: list[_Applied], items: list[_Dgram], actions: list[Action]
    ) -> list[_Dgram]:
        """Pass `items` through `stages` in order; return what comes out of the last."""
        for applied in stages:
            if not items:
                break
            items = self._stage(applied, items, actions)
        return items

    def _finish(self, flow: Flow, items: list[_Dgram]) -> list[Action]:
        actions: list[Action] = []
        for item in items:
            self.trace._forwarded(item.at, flow, item.data)
            actions.append(Deliver(item.at, flow, item.data))
        return actions

    def _shuffle(self, applied: _Applied, items: list[_Dgram], now: float) -> list[_Dgram]:
        order = list(range(len(items)))
        applied.rng.shuffle(order)
        if order == sorted(order):
            # Never the order they came in: a test of reordering must see one.
            order = order[1:] + order[:1]
        self.trace._fire(now, applied.fault, applied.flow, f"released in order {order}")
        out = [items[i] for i in order]
        for item in out:
            item.at = max(item.at, now)
        return out

    def _stage(
        self, applied: _Applied, items: list[_Dgram], actions: list[Action]
    ) -> list[_Dgram]:
        fault = applied.fault
        flow = applied.flow
        out: list[_Dgram] = []
        for item in items:
            if applied.arm is None or item.offset < applied.arm:
                # Sent before the fault armed: it passes this stage untouched.
                out.append(item)
                continue
            chosen: Sequence[int] = getattr(fault, "datagrams", ())
            if chosen and not _is_among(item.number, chosen):
                out.append(item)  # not one of the datagrams it acts on
                continue
            if isinstance(fault, Drop):
                if applied.rng.random() < fault.rate:
                    self.trace._fire(item.at, fault, flow, f"dropped {datagram_shown(item.data)}")
                    continue
            elif isinstance(fault, Duplicate):
                if applied.rng.random() < fault.rate:
                    self.trace._fire(item.at, fault, flow, "duplicated")
                    out.append(dataclasses.replace(item))
            elif isinstance(fault, TruncateDatagram):
                if len(item.data) > fault.max_size:
                    cut = f"cut {datagram_shown(item.data)} to {fault.max_size}"
                    self.trace._fire(item.at, fault, flow, cut)
                    item = dataclasses.replace(item, data=item.data[: fault.max_size])
            elif isinstance(fault, Blackhole):
                self.trace._fire(item.at, fault, flow, f"dropped {datagram_shown(item.data)}")
                continue
            elif isinstance(fault, Unreachable):
                self.trace._fire(item.at, fault, flow, "refused (port unreachable)")
                actions.append(UnreachableAction(item.at, flow))
                continue
            elif isinstance(fault, Latency):
                self._fire_once(applied, item.at, "delaying")
                at = item.at + fault.delay
                if fault.jitter:
                    at += applied.rng.uniform(-fault.jitter, fault.jitter)
                item.at = max(at, item.at)
            elif isinstance(fault, Bandwidth):
                self._fire_once(applied, item.at, "throttling")
                start = max(item.at, applied.busy)
                applied.busy = start + len(item.data) / fault.bytes_per_second
                entry, item.at = item.at, applied.busy
                # Held until due (or behind those held before it), so that removing
                # the cap lets it go at once.
                queue = self._paced.get(id(applied))
                if queue or item.at > max(entry, self._now):
                    self._paced.setdefault(id(applied), collections.deque()).append((entry, item))
                    continue
            elif isinstance(fault, Corrupt):
                item = self._corrupt(applied, fault, item)
            elif isinstance(fault, Reorder):
                key = id(applied)
                due, held = self._held.get(key, (item.at + fault.max_hold, []))
                held.append(item)
                if len(held) >= fault.window:
                    self._held.pop(key, None)
                    out.extend(self._shuffle(applied, held, item.at))
                else:
                    if key not in self._held:
                        actions.append(Wake(due))
                    self._held[key] = (due, held)
                continue
            out.append(item)
        return out

    def _corrupt(self, applied: _Applied, fault: Corrupt, item: _Dgram) -> _Dgram:
        data = bytearray(item.data)
        hits = {p for p in fault.positions if p < len(data)}
        if fault.rate:
            hits.update(i for i in range(len(data)) if applied.rng.random() < fault.rate)
        if not hits:
            return item
        for position in hits:
            data[position] ^= fault.mask
        self.trace._fire(item.at, fault, applied.flow, f"flipped offsets {sorted(hits)}")
        return dataclasses.replace(item, data=bytes(data))

    def _removed(
        self, flow: Flow, stages: list[_Applied], before: list[_Applied], now: float
    ) -> None:
        pipe = self._pipes[flow]
        for applied in stages:
            items: list[_Dgram] = []
            held = self._held.pop(id(applied), None)
            if held is not None:
                items = held[1]
                for item in items:
                    item.at = max(item.at, now)
            # What `Bandwidth` held goes on as it came, from when it reached the cap.
            for entry, item in self._paced.pop(id(applied), ()):
                item.at = max(entry, now)
                items.append(item)
            if not items:
                continue
            # As with a removed `Stall`, what `Reorder` or `Bandwidth` held goes on, in
            # the order it came, through the stages after it that are still in force.
            after = before[before.index(applied) + 1 :]
            rest = [stage for stage in pipe if any(stage is a for a in after)]
            items = self._run_through(rest, items, self._pending)
            self._pending.extend(self._finish(flow, items))
