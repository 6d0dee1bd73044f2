"""The TCP fault schedule: `StreamSchedule`, one connection's faults as a pure state machine.

See `nettest._fault_engine` for the theory of operation: the events a driver
feeds in, the actions it gets back, the pipeline of stages and their triggers.
Here each item of a flow (a chunk with its stream offset, an EOF, or a close or
reset an earlier stage decided) goes through the stages in order; how the
pacing and mangling faults cut and stamp a chunk is in `nettest._fault_shapes`.

`Bandwidth`, `Slice` and `SlowClose` hold what they pace (`_Applied.queue`)
until it is due, and only then pass it on to the stages after them, so that
removing one lets what it holds go on at once.  A driver that must know how much
they hold (the proxy, for flow control) passes a `HoldLedger` factory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._fault_actions import (
    Abort,
    Action,
    Close,
    Deliver,
    JoinPieces,
    Pause,
    RefuseConnection,
    Resume,
    SendEof,
    Wake,
)
from ._fault_engine import (
    _INF,
    _SLACK,
    HoldLedger,
    _Applied,
    _Chunk,
    _Ctl,
    _Eof,
    _Item,
    _occurrences,
    _Paced,
    _Schedule,
)
from ._fault_shapes import corrupted, delayed, first_corrupt_offset, sliced, throttled
from ._faults import (
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
)

__all__ = ["StreamSchedule"]


class StreamSchedule(_Schedule):
    """The faults of one TCP connection: bytes and time in, actions out.

    See the module's theory of operation.  Not thread-safe; one per connection.

    Args:
        seed: The proxy's seed.
        index: The connection's number, from 1.
        now: The driver's clock when the connection was accepted.
        faults: The faults in force.
        peer: The client's address, for the trace.
        ledger: Makes the `HoldLedger` of a stage of `flow` the first time it
            holds bytes back; None: the driver does not count them.

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
        ledger: Callable[[Flow], HoldLedger] | None = None,
    ) -> None:
        super().__init__(seed=seed, index=index, now=now, faults=faults, peer=peer)
        self._ledger = ledger
        #: The driver's clock at its latest call.
        self._now = now
        #: The earliest `Wake` asked for and not yet seen, for what stages hold.
        self._wake = _INF
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
        self.trace._record(now, None, "accepted")
        self._check_kind(self._initial)
        for key in _occurrences(self._initial):
            fault = key[0]
            if isinstance(fault, Refuse) and self._selected(key):
                self.trace._fire(now, fault, None, "connection refused (reset)")
                self.closed = True
                return [RefuseConnection(repr(fault))]
        return self.update(self._initial, now)

    def update(self, faults: Sequence[Fault], now: float) -> list[Action]:
        """The faults in force changed (added, removed, cleared)."""
        actions: list[Action] = []
        if self.closed:
            self._faults = tuple(faults)
            return actions
        self._now = now
        added = self._reconcile([f for f in faults if not isinstance(f, Refuse)], now)
        actions.extend(self._released)
        self._released = []
        for applied in added:
            # A stage added just before may have armed this one already, inline
            # (its EOF or close passed through): arm each stage once.
            if self._due_to_arm(applied):
                actions.extend(self._arm_now(applied, now))
        # Bytes a removed stage let go, then a later one dropped, may arm a timed fault.
        for flow in FLOWS:
            actions.extend(self._arm_unreached(flow, now))
        return actions + self._wake_for_held()

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
        self._now = now
        for applied in pipe:
            applied.scan(offset, data)
        actions = self._run(flow, 0, [_Chunk(now, offset, data)])
        return actions + self._arm_unreached(flow, now) + self._wake_for_held()

    def eof(self, flow: Flow, now: float) -> list[Action]:
        """The sender of `flow` half-closed (or closed) its side."""
        if self.closed or self._eof_in[flow]:
            return []
        self._eof_in[flow] = True
        self.trace._record(now, flow, "EOF received")
        self._now = now
        return self._run(flow, 0, [_Eof(now)]) + self._wake_for_held()

    def peer_reset(self, flow: Flow, now: float, reason: str) -> list[Action]:
        """The sender of `flow` reset the connection.

        The RST follows the bytes sent before it, through the same faults (a
        `Latency` delays it, a `Bandwidth` cap queues it behind what it holds), and
        resets the receiver of `flow` when it gets there: a kernel lets the
        bytes that arrived before an RST be read first.
        """
        if self.closed:
            return []
        self._now = now
        rst = _Ctl(now, True, (flow,), reason, by_peer=True)
        return self._run(flow, 0, [rst]) + self._wake_for_held()

    def tick(self, now: float) -> list[Action]:
        """Time passed: let go what the stages hold that is due, and fire timers (see `Wake`)."""
        if self.closed:
            return []
        self._now = now
        due = now + _SLACK
        if self._wake <= due:
            self._wake = _INF
        actions = self._let_go(due)
        # What a stage let go, then dropped, may have armed a timed fault after it.
        for flow in FLOWS:
            actions += self._arm_unreached(flow, now)
        actions += self._fire_timers(now)
        return actions + self._wake_for_held()

    # -- the pipeline -----------------------------------------------------------------

    def _arm_unreached(self, flow: Flow, now: float) -> list[Action]:
        """Arm the timed faults whose trigger the sender's bytes met, but no item reached.

        A stage before such a fault held or dropped the bytes that arm it (`Stall`,
        `Blackhole`); its timer starts when the sender sent them, as it would if the
        fault were first in the list.  Faults that act on bytes wait for them.  A
        byte that a `Bandwidth` cap or a `Slice` holds until it is due does reach
        the fault, late, as after a `Latency`: the timer starts then.
        """
        actions: list[Action] = []
        for applied in list(self._pipes[flow]):
            if self.closed:
                break
            if (
                _timed(applied.fault)
                and self._due_to_arm(applied)
                and not self._paced_before(applied)
            ):
                actions.extend(self._arm_now(applied, now))
        return actions

    def _paced_before(self, applied: _Applied) -> bool:
        """Whether a stage before `applied` holds the byte that arms it until it is due."""
        arm = applied.arm
        if not arm:
            return False
        pipe = self._pipes[applied.flow]
        for stage in pipe[: pipe.index(applied)]:
            held = stage.held_range()
            # The byte that arms the fault is the one at offset arm - 1.
            if held is not None and held[0] < arm <= held[1]:
                return True
        return False

    def _due_to_arm(self, applied: _Applied) -> bool:
        """Whether the sender's bytes have met `applied`'s trigger and it is not armed yet."""
        arm = applied.arm
        return not applied.armed and arm is not None and self._consumed[applied.flow] >= arm

    def _arm_now(self, applied: _Applied, now: float) -> list[Action]:
        """Arm `applied` at `now` and run what it emits through the stages after it.

        Returns the actions, those the arming released (a `Wake`, say) first.
        """
        found = self._run_from(applied, self._arm(applied, now))
        released, self._released = self._released, []
        return released + found

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
                self.trace._record(at, flow, "EOF forwarded")
                actions.append(SendEof(at, flow))
            else:
                self.closed = True
                if item.reset:
                    self.trace._record(at, flow, f"reset {'+'.join(item.flows)}: {item.reason}")
                    actions.append(Abort(at, flow, item.flows, item.reason, item.by_peer))
                else:
                    self.trace._record(at, flow, f"close: {item.reason}")
                    actions.append(Close(at, flow, item.reason))
                self._drop_held()
        return actions

    # -- what the stages hold until it is due ----------------------------------------

    def _hold(
        self, applied: _Applied, entry: float, alone: bool, items: list[_Item]
    ) -> list[_Item]:
        """Return the items `applied` lets go now; hold the others until due, in order.

        `items` are what `applied` made of one item that reached it at `entry`,
        each stamped with the time it is due; `alone` is whether that item was to
        be read alone.  An item due no later than it arrived (or than now) goes on
        at once, unless items held before it are still waiting.
        """
        queue = applied.queue
        index = 0
        if not queue:
            limit = max(entry, self._now)
            # Due times grow along `items`: if the last is due, all are.
            if not items or items[-1].at <= limit:
                return items
            while items[index].at <= limit:
                index += 1
        ledger = None
        lag = 0.0
        if self._ledger is not None:
            if applied.ledger is None:
                applied.ledger = self._ledger(applied.flow)
            ledger = applied.ledger
            lag = self._delay_after(applied)
        first = True
        for item in items[index:]:
            queue.append(_Paced(entry, alone, first, item))
            first = False
            if ledger is not None and isinstance(item, _Chunk):
                ledger.add(item.at + lag, len(item.data))
        return items[:index]

    def _delay_after(self, applied: _Applied) -> float:
        """How long the `Latency` stages after `applied` delay what it lets go."""
        pipe = self._pipes[applied.flow]
        after = pipe[pipe.index(applied) + 1 :] if applied in pipe else []
        return sum(stage.fault.delay for stage in after if isinstance(stage.fault, Latency))

    def _let_go(self, due: float) -> list[Action]:
        """Pass on what each stage holds that is due by `due`, through the stages after it."""
        actions: list[Action] = []
        for flow in FLOWS:
            pipe = list(self._pipes[flow])
            for index, applied in enumerate(pipe):
                queue = applied.queue
                if self.closed:
                    return actions
                if not queue or queue[0].item.at > due:
                    continue
                items: list[_Item] = []
                while queue and queue[0].item.at <= due:
                    items.append(applied.take().item)
                actions.extend(self._run_through(flow, pipe[index + 1 :], items))
        return actions

    def _fire_timers(self, now: float) -> list[Action]:
        """Close or reset the connection if a fault's timer is due (after what was due)."""
        if self.closed:
            return []
        for flow in FLOWS:
            for applied in list(self._pipes[flow]):
                if applied.deadline is None or applied.fired or applied.deadline > now:
                    continue
                applied.fired = True
                fault = applied.fault
                assert isinstance(fault, (Reset, CloseAfter))  # the faults with a timer
                reset = isinstance(fault, Reset)
                seconds = fault.after_seconds if isinstance(fault, Reset) else fault.seconds
                assert seconds is not None  # the timer was set from it
                late = now - applied.deadline
                # As the byte limits say theirs ("closed after 2 bytes"), and how late
                # the timer ran when the loop was busy.
                what = f"{'reset' if reset else 'closed'} after {round(seconds, 6)}s"
                if late >= 0.0005:
                    what += f" (the timer ran {late:.3f}s late)"
                self.trace._fire(now, fault, flow, what)
                flows = _reset_flows(fault, flow)
                # A close or reset ends the connection: nothing else is due.
                return self._finish(flow, [_Ctl(now, reset, flows, repr(fault))])
        return []

    def _wake_for_held(self) -> list[Action]:
        """A `Wake` for the first held item that falls due, unless one is asked for already."""
        due = _INF
        for pipe in self._pipes.values():
            for applied in pipe:
                if applied.queue:
                    due = min(due, applied.queue[0].item.at)
        if due < self._wake:
            self._wake = due
            return [Wake(due)]
        return []

    def _drop_held(self) -> None:
        """The connection closed: nothing the stages hold will be delivered."""
        for flow in FLOWS:
            for applied in self._pipes[flow]:
                while applied.queue:
                    item = applied.take().item
                    if isinstance(item, _Chunk):
                        self.discarded[flow] += len(item.data)

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
            self.trace._fire(at, fault, flow, f"armed; closing at +{fault.seconds}s")
            return []
        if isinstance(fault, HalfClose):
            applied.fired = True
            self.trace._fire(at, fault, flow, "half-closed")
            return [_Eof(at)]
        if isinstance(fault, Stall):
            self.trace._fire(at, fault, flow, "stopped reading")
            self._released.append(Pause(flow))
            return []
        if isinstance(fault, Corrupt):
            applied.next_corrupt = first_corrupt_offset(fault, arm, applied.rng)
        return []

    def _fire_end(self, applied: _Applied, at: float) -> list[_Item]:
        applied.fired = True
        fault = applied.fault
        reset = isinstance(fault, Reset)
        what = "reset" if reset else "closed"
        self.trace._fire(at, fault, applied.flow, f"{what} after {applied.target} bytes")
        return [_Ctl(at, reset, _reset_flows(fault, applied.flow), repr(fault))]

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
            if self._due_to_arm(applied):
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
            self._fire_once(applied, chunk.at, "delaying")
            chunk.at = delayed(applied, fault, chunk.at, applied.rng)
            return [chunk]
        if isinstance(fault, Bandwidth):
            self._fire_once(applied, chunk.at, "throttling")
            pieces = throttled(applied, fault, chunk)
            return self._hold(applied, chunk.at, chunk.alone, list(pieces))
        if isinstance(fault, Slice):
            self._fire_once(applied, chunk.at, "slicing")
            pieces = sliced(applied, fault, chunk, applied.rng)
            return self._hold(applied, chunk.at, chunk.alone, list(pieces))
        if isinstance(fault, Corrupt):
            chunk, flipped = corrupted(applied, fault, chunk, applied.rng)
            if flipped:
                self.trace._fire(chunk.at, fault, flow, f"flipped offsets {flipped}")
            return [chunk]
        if isinstance(fault, (Blackhole, HalfClose)):
            self.trace._fire(chunk.at, fault, flow, f"dropped {len(chunk.data)} bytes")
            self.discarded[flow] += len(chunk.data)
            return []
        return [chunk]

    def _act_other(self, applied: _Applied, item: _Item) -> list[_Item]:
        """Apply an armed fault to an EOF or a close/reset from an earlier stage."""
        fault = applied.fault
        if applied.held or isinstance(fault, Stall):
            applied.held.append(item)
            return []
        entry = item.at
        if applied.queue or isinstance(fault, (Bandwidth, Slice)):
            # After the bytes held before it, and once the link is free.
            behind = applied.queue[-1].item.at if applied.queue else -_INF
            item.at = max(item.at, applied.busy, behind)
            return self._hold(applied, entry, False, [item])
        if isinstance(fault, Latency):
            self._fire_once(applied, item.at, "delaying")
            item.at = max(item.at + fault.delay, applied.last)
            applied.last = item.at
        elif isinstance(fault, SlowClose) and isinstance(item, _Eof):
            self.trace._fire(item.at, fault, applied.flow, f"FIN held {fault.delay}s")
            item.at += fault.delay
            return self._hold(applied, entry, False, [item])
        elif isinstance(fault, (Blackhole, HalfClose)) and isinstance(item, _Eof):
            return []
        return [item]

    def _removed(
        self, flow: Flow, stages: list[_Applied], before: list[_Applied], now: float
    ) -> None:
        """Let what the removed `stages` hold go on, from `now`, through those that remain."""
        pipe = self._pipes[flow]
        stalled = any(isinstance(a.fault, Stall) and a.armed for a in pipe)
        # Once no Slice is left, nothing wants pieces read alone: the driver may
        # join those it queued, and the stages let theirs go joined too.
        alone = not any(isinstance(a.fault, Slice) for a in stages) or any(
            isinstance(a.fault, Slice) for a in pipe
        )
        if not alone:
            self._released.append(JoinPieces(flow))
            for applied in pipe:
                for paced in applied.queue:
                    paced.alone = False
                    if isinstance(paced.item, _Chunk):
                        paced.item.alone = False
                for item in applied.held:
                    if isinstance(item, _Chunk):
                        item.alone = False
        # The last stage's held bytes are the earliest in the stream: release them first.
        for applied in reversed(stages):
            if isinstance(applied.fault, Stall) and applied.armed:
                if not stalled:
                    self._released.append(Resume(flow))
                self.trace._fire(now, applied.fault, flow, "removed; reading again")
            held: list[_Item] = []
            if applied.queue:
                held = applied.let_go_all(now, alone)
                size = sum(len(item.data) for item in held if isinstance(item, _Chunk))
                what = f"{size} bytes" if size else "the FIN"
                self.trace._fire(now, applied.fault, flow, f"removed; let go {what} it held")
            elif applied.held:
                held, applied.held = applied.held, []
                for item in held:
                    item.at = max(item.at, now)
                    if not alone and isinstance(item, _Chunk):
                        item.alone = False
            if held:
                # The held items went through the stages before this one already; they
                # go on through those after it that are still in force.
                after = before[before.index(applied) + 1 :]
                rest = [stage for stage in pipe if any(stage is a for a in after)]
                # Run first, then extend: a stage the held bytes arm moves what is in
                # `self._released` into the run's actions and rebinds the list.
                released = self._run_through(flow, rest, held)
                self._released.extend(released)


def _timed(fault: Fault) -> bool:
    """Whether `fault` acts at a time counted from its arming, not on the bytes it sees.

    A `Reset` with no byte limit to wait for (none, or 0), and ``Truncate(0)``,
    act the moment they arm: a timer of zero seconds.
    """
    if isinstance(fault, Reset):
        return fault.after_seconds is not None or not fault.after_bytes
    if isinstance(fault, Truncate):
        return not fault.after_bytes
    return isinstance(fault, CloseAfter)


def _reset_flows(fault: Fault, flow: Flow) -> tuple[Flow, ...]:
    return FLOWS if fault.direction == "both" else (flow,)
