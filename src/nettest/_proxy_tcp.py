"""The fault proxy's TCP driver: one `StreamSchedule` between two real sockets.

Each connection `FaultProxy` accepts gets a `_StreamConnection`, which connects
to the upstream and feeds the bytes read from either socket into the
connection's `StreamSchedule` (`nettest._fault_engine_stream`) with ``loop.time()``.
The actions that come out are queued per direction (in an `ActionQueue`: one
FIFO and one timer per direction, because asyncio's timer heap does not keep
equal deadlines in order) and carried out when due.  Resets are real:
``SO_LINGER(1, 0)`` and ``abort()`` make the kernel send an RST.

Flow control is end to end: the driver stops reading from a sender when more
than 256 KiB wait for the receiver (in its queue or in the receiver's
transport), and resumes below 64 KiB, so a `Bandwidth` cap, a `Stall` or a
receiver that does not read pushes back on the real sender as a slow link
would.  Bytes that a `Latency` holds are in flight on the modelled link
instead: they count against a TCP window (4 MiB), not against the 256 KiB, so
that latency delays bytes without capping the rate at 256 KiB per delay
(`_Backlog` tells the two apart by when the bytes are due: bytes due later
than the delay from now wait behind a `Bandwidth` cap or a `Slice`'s pace).
A cap or a pace holds its bytes inside the schedule until they are due (so that
removing it lets them go at once): the connection hands the schedule a
`_Backlog` for each stage that holds bytes (its `HoldLedger`), and flow control
counts those with the queue's.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import math
import typing
from collections.abc import Iterable, Sequence
from typing import Literal

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
from ._fault_backend import ActionQueue, TimedAction
from ._fault_engine_stream import StreamSchedule
from ._faults import FLOWS, Latency, other_flow
from ._hygiene import track
from ._proxy_sockets import (
    _abort,
    _cancel,
    _close_transport,
    _format_address,
    _pending,
    _reset,
    _transport_open,
    _unread_bytes,
    _write_eof,
)
from ._settings import default_timeout

if typing.TYPE_CHECKING:
    from ._faults import Fault, Flow
    from ._proxy import FaultProxy

__all__: list[str] = []

#: Stop reading from a sender when more than this waits for its receiver...
_HIGH = 256 * 1024
#: ...and read again once no more than this waits.
_LOW = 64 * 1024
#: The most one direction holds in flight on its modelled link (bytes a `Latency`
#: delays), like the window of a real connection over a long-delay path: Linux
#: lets one keep up to its largest send buffer in flight (4 MiB, the maximum of
#: ``net.ipv4.tcp_wmem``), and receive windows autotune to about as much.  With
#: only _HIGH, Latency(0.2) capped a connection at 256 KiB per 0.2 s (1.3 MB/s).
#: Memory stays bounded: per direction, at most this plus one read in the queue,
#: and (a receiver that does not read) _HIGH plus one read more in its transport.
_WINDOW = 4 * 1024 * 1024
#: Read again once no more than this is in flight.
_WINDOW_LOW = 3 * 1024 * 1024
#: What one queued piece costs, whatever its size (its `Deliver`, its bytes object
#: and its queue entries take about this much memory): the limits above count each
#: piece as at least this many bytes, so that a `Slice(1)` behind a `Latency`
#: cannot queue millions of one-byte pieces.
_PIECE_COST = 256
#: Loop turns between two pieces to be read alone (see `_StreamConnection._space`):
#: a receiver's transport reads a piece in the first turn after its write, and
#: its StreamReader's read() returns in the second, or, run in a task of its own
#: (as ``asyncio.wait_for()`` runs it before Python 3.12), in the third.
_PIECE_TURNS = 3
#: Seconds a closing connection waits for its peers' EOF before closing anyway.
_CLOSE_GRACE = 1.0


class _Side(asyncio.Protocol):
    """One of the two sockets of a proxied connection."""

    def __init__(self, proxy: FaultProxy, role: Literal["client", "server"]) -> None:
        self.proxy = proxy
        self.role = role
        self.conn: _StreamConnection | None = None
        self.transport: asyncio.Transport | None = None
        self.eof_seen = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # The flow this side sends into, and the one it receives.
    @property
    def sends(self) -> Flow:
        return "upstream" if self.role == "client" else "downstream"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.Transport", transport)
        # Fewer pause/resume round trips than asyncio's 64 KiB default.
        self.transport.set_write_buffer_limits(high=_HIGH, low=_LOW)
        peer = transport.get_extra_info("peername")
        track(
            transport,
            what=f"FaultProxy {self.role} connection {peer}",
            is_open=_transport_open,
            close=_abort,
            on_behalf_of=self.proxy,
        )
        if self.role == "client":
            self.proxy._accepted(self)
        elif self.conn is not None:
            self.conn.server_made(self)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.received(self.sends, data)

    def eof_received(self) -> bool:
        self.eof_seen = True
        if self.conn is not None:
            if self.conn.finished and self.transport is not None:
                self.transport.close()  # the end of a graceful close
            self.conn.eof(self.sends)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.conn is not None:
            self.conn.lost(self, exc)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.pause(other_flow(self.sends), "write")

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.resume(other_flow(self.sends), "write")


def _link_delay(faults: Iterable[Fault], flow: Flow) -> float:
    """The longest time `flow`'s `Latency` faults hold a byte: the delay of its link.

    A fault that may not apply to this connection (a probability, a trigger not
    yet met) counts too: that can only let more bytes be in flight, not fewer.
    """
    return sum(
        fault.delay + fault.jitter
        for fault in faults
        if isinstance(fault, Latency) and fault.direction in (flow, "both")
    )


class _Backlog:
    """The deliveries one direction's queue holds, oldest first, and when each is due.

    Bytes due within the link's delay from now are in flight on the modelled
    link and count against `_WINDOW` only.  The others are late and count
    against `_HIGH` too: bytes due later than that wait for something other
    than the delay (a `Bandwidth` cap, a `Slice`'s pace), and bytes overdue
    wait for the upstream connection or a piece's reader.  A `Latency` alone
    holds every byte for at most the delay, so none of its bytes are late; with
    a cap as well, the cap's bandwidth-delay product is in flight and the queue
    behind the cap pushes back as it does without the `Latency`.  Judging by
    when the bytes were read instead counted the whole queue behind the cap as
    in flight, up to `_WINDOW` (4 MiB: a minute of a 64 KiB/s cap).
    """

    __slots__ = ("_flight", "_last_due", "_later", "_overdue", "_piece_cost", "flight", "size")

    def __init__(self, piece_cost: int = 0) -> None:
        # What a delivery counts at least, whatever its size (see `_PIECE_COST`).
        self._piece_cost = piece_cost
        # (due at, bytes) of each delivery in the queue: overdue, in flight, later.
        self._overdue: collections.deque[tuple[float, int]] = collections.deque()
        self._flight: collections.deque[tuple[float, int]] = collections.deque()
        self._later: collections.deque[tuple[float, int]] = collections.deque()
        self._last_due = -math.inf
        #: Bytes in the queue (each piece counted as at least `_PIECE_COST`).
        self.size = 0
        #: Bytes in the queue in flight when `count_late` last looked.
        self.flight = 0

    def add(self, due: float, size: int) -> None:
        """A delivery of `size` bytes due at `due` joined the queue."""
        # The queue carries deliveries out in order: none goes before the one
        # ahead of it, so due times grow along the queue.
        due = self._last_due = max(due, self._last_due)
        size = max(size, self._piece_cost)
        self._later.append((due, size))
        self.size += size

    def pop(self) -> None:
        """The oldest delivery left the queue."""
        if self._overdue:
            size = self._overdue.popleft()[1]
        elif self._flight:
            size = self._flight.popleft()[1]
            self.flight -= size
        else:
            size = self._later.popleft()[1]
        self.size -= size

    def count_late(self, now: float, delay: float) -> int:
        """Return how many bytes in the queue are not in flight on a link of `delay`."""
        overdue, flight, later = self._overdue, self._flight, self._later
        # A microsecond of slack: the schedule adds the delays up in another order.
        horizon = now + delay + 1e-6
        # The horizon moves back when a Latency is removed: undo first.
        while overdue and overdue[-1][0] > now:
            entry = overdue.pop()
            self.flight += entry[1]
            flight.appendleft(entry)
        while flight and flight[-1][0] > horizon:
            entry = flight.pop()
            self.flight -= entry[1]
            later.appendleft(entry)
        while later and later[0][0] <= horizon:
            entry = later.popleft()
            self.flight += entry[1]
            flight.append(entry)
        while flight and flight[0][0] <= now:
            entry = flight.popleft()
            self.flight -= entry[1]
            overdue.append(entry)
        return self.size - self.flight

    def next_in_flight(self, delay: float) -> float | None:
        """When the next late delivery comes in flight, as `count_late` last saw them."""
        return self._later[0][0] - delay if self._later else None


class _StreamConnection:
    """Drives one `StreamSchedule` with two real sockets."""

    def __init__(self, proxy: FaultProxy, client: _Side, index: int) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.server: _Side | None = None
        assert client.transport is not None
        peer = client.transport.get_extra_info("peername")
        now = self.loop.time()
        # What the schedule's stages hold back until due, per stage (see _backpressure).
        self.held: dict[Flow, list[_Backlog]] = {flow: [] for flow in FLOWS}
        self.schedule = StreamSchedule(
            seed=proxy.seed,
            index=index,
            now=now,
            faults=proxy.faults,
            peer=peer,
            ledger=self._ledger,
        )
        self.trace = self.schedule.trace
        self.queues = {
            flow: ActionQueue(
                self.loop,
                self._perform,
                held=self._waiting,
                due=functools.partial(self.kick, flow),
            )
            for flow in FLOWS
        }
        self.backlogs: dict[Flow, _Backlog] = {flow: _Backlog(_PIECE_COST) for flow in FLOWS}
        self.delays: dict[Flow, float] = {flow: _link_delay(proxy.faults, flow) for flow in FLOWS}
        self.paused: dict[Flow, set[str]] = {"upstream": set(), "downstream": set()}
        self.eof_sent: dict[Flow, bool] = {"upstream": False, "downstream": False}
        # Flows that just wrote a piece to be read alone: the next waits a few turns.
        self.spacing: set[Flow] = set()
        # Each (time, handle): uvloop's call_at() of a time past gives a plain Handle,
        # which has no when().
        self.wakes: list[tuple[float, asyncio.Handle]] = []
        # Per flow, while paused: when bytes behind a cap come in flight (see _backpressure).
        self.rechecks: dict[Flow, tuple[float, asyncio.Handle]] = {}
        self.finished = False
        self.connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.finished:
            return
        actions = self.schedule.start(self.loop.time())
        if actions and isinstance(actions[0], RefuseConnection):
            _reset(self.client.transport)
            self.finish()
            return
        self.connecting = self.loop.create_task(self._connect())
        track(
            self.connecting,
            what=f"FaultProxy connect task #{self.schedule.index}",
            is_open=_pending,
            close=_cancel,
            on_behalf_of=self.proxy,
        )
        self.apply(actions)

    async def _connect(self) -> None:
        upstream = self.proxy.upstream
        try:
            if isinstance(upstream, str):
                connecting = self.loop.create_unix_connection(self._server_side, upstream)
            else:
                connecting = self.loop.create_connection(self._server_side, *upstream)
            await asyncio.wait_for(connecting, default_timeout())
        except (OSError, asyncio.TimeoutError) as exc:
            if not self.finished:
                failure = f"upstream {_format_address(upstream)} failed: {exc!r}; client reset"
                self.trace._record(self.loop.time(), None, failure)
                if self.proxy._on_upstream_failure is not None:
                    self.proxy._on_upstream_failure(self.trace, failure)
                _reset(self.client.transport)
                self.finish()

    def _ledger(self, flow: Flow) -> _Backlog:
        """Count what a stage of the schedule holds back, for flow control."""
        ledger = _Backlog(_PIECE_COST)
        self.held[flow].append(ledger)
        return ledger

    def _server_side(self) -> _Side:
        side = _Side(self.proxy, "server")
        side.conn = self
        return side

    def server_made(self, side: _Side) -> None:
        if self.finished:
            _reset(side.transport)
            return
        self.server = side
        self.proxy._sides.append(side)
        if side.transport is not None:
            self.trace.upstream_local = side.transport.get_extra_info("sockname")
        self.trace._record(self.loop.time(), None, "connected upstream")
        # As in FaultProxy._accepted: pause only once the transport reads.
        self.loop.call_soon(self._server_ready)

    def _server_ready(self) -> None:
        side = self.server
        if self.finished or side is None or side.transport is None:
            return
        if self.paused["downstream"]:
            side.transport.pause_reading()
        for flow in FLOWS:  # what waited for the connection, whichever queue holds it
            self.kick(flow)

    # -- events from the sockets ----------------------------------------------------

    def received(self, flow: Flow, data: bytes) -> None:
        if not self.finished:
            self.apply(self.schedule.data(flow, data, self.loop.time()))

    def eof(self, flow: Flow) -> None:
        if not self.finished:
            self.apply(self.schedule.eof(flow, self.loop.time()))

    def lost(self, side: _Side, exc: Exception | None) -> None:
        if self.finished:
            return
        now = self.loop.time()
        if exc is not None:
            # Pass a reset on, as the network would: behind what was sent before it.
            self.trace._record(now, side.sends, f"{side.role} connection lost: {exc!r}")
            other = self.server if side is self.client else self.client
            # A client that resets while the proxy still connects upstream: the
            # bytes it sent, and then the reset, wait for the upstream connection.
            reaches = other is not None or self._connecting_upstream()
            if reaches and not self.schedule.closed:
                self.apply(self.schedule.peer_reset(side.sends, now, f"{side.role} reset"))
                return
            if other is not None:
                _reset(other.transport)
            self.finish()
            return
        self.trace._record(now, side.sends, f"{side.role} closed")
        # Close the other side once what is queued for it has gone out.
        towards = other_flow(side.sends)
        self.queues[towards].append(Close(now, towards, f"{side.role} closed"))
        self.kick(towards)

    # -- carrying out actions ---------------------------------------------------------

    def apply(self, actions: Iterable[Action]) -> None:
        touched: set[Flow] = set()
        for action in actions:
            if isinstance(action, (Deliver, SendEof, Close, Abort)):
                self.queues[action.flow].append(action)
                if isinstance(action, Deliver):
                    self.backlogs[action.flow].add(action.at, len(action.data))
                touched.add(action.flow)
            elif isinstance(action, JoinPieces):
                self.queues[action.flow].join()
                touched.add(action.flow)
            elif isinstance(action, Pause):
                self.pause(action.flow, "stall")
            elif isinstance(action, Resume):
                self.resume(action.flow, "stall")
            elif isinstance(action, Wake):
                self.wakes.append((action.at, self.loop.call_at(action.at, self._tick)))
        for flow in FLOWS:
            if flow in touched and not self.finished:
                self.kick(flow)

    def _tick(self) -> None:
        if not self.finished:
            now = self.loop.time()
            # A stage that holds bytes asks for a tick each time one falls due.
            self.wakes = [wake for wake in self.wakes if wake[0] > now]
            self.apply(self.schedule.tick(now))

    def _receiver(self, flow: Flow) -> _Side | None:
        return self.server if flow == "upstream" else self.client

    def _sender(self, flow: Flow) -> _Side | None:
        return self.client if flow == "upstream" else self.server

    def kick(self, flow: Flow) -> None:
        self.queues[flow].kick()
        if not self.finished:
            self._backpressure(flow)

    def _waiting(self, action: TimedAction) -> bool:
        """Whether *action* waits: for the upstream connection, or for a piece's reader."""
        if isinstance(action, (Deliver, SendEof)) and self._receiver(action.flow) is None:
            return True
        if isinstance(action, Abort) and "upstream" in action.flows:
            # An RST for the server reaches it once it is connected; one for the
            # client alone goes at once.
            return self._connecting_upstream()
        return isinstance(action, Deliver) and action.alone and action.flow in self.spacing

    def _connecting_upstream(self) -> bool:
        return self.server is None and self.connecting is not None and not self.connecting.done()

    def _space(self, flow: Flow, turns: int) -> None:
        """Let `turns` loop turns pass after a piece was written, then write the next.

        A receiver on this loop reads the piece in the first turn after the write
        (its socket turned readable), and the code above it a turn or two later
        (see `_PIECE_TURNS`); the next piece goes out after that.
        """
        if turns > 1:
            self.loop.call_soon(self._space, flow, turns - 1)
            return
        self.spacing.discard(flow)
        if not self.finished:
            self.kick(flow)

    def _perform(self, action: TimedAction) -> None:
        receiver = self._receiver(action.flow)
        transport = receiver.transport if receiver is not None else None
        if isinstance(action, Deliver):
            self.backlogs[action.flow].pop()
            if transport is not None and not transport.is_closing():
                transport.write(action.data)
                if action.alone:
                    self.spacing.add(action.flow)
                    self.loop.call_soon(self._space, action.flow, _PIECE_TURNS)
        elif isinstance(action, SendEof):
            self.eof_sent[action.flow] = True
            if transport is not None and not transport.is_closing() and transport.can_write_eof():
                error = _write_eof(transport)
                if error is not None:
                    self.trace._record(self.loop.time(), action.flow, f"EOF not sent: {error}")
            if all(self.eof_sent.values()):
                self.close_both()
        elif isinstance(action, Close):
            self.trace._record(self.loop.time(), None, f"closing: {action.reason}")
            self.close_both()
        elif isinstance(action, Abort):
            for flow in action.flows:
                side = self._receiver(flow)
                _reset(side.transport if side is not None else None)
            self.close_both()

    def _backpressure(self, flow: Flow) -> None:
        delay = self.delays[flow]
        now = self.loop.time()
        late = size = 0
        # The queue, and what the schedule's stages hold back until it is due.  A
        # stage drops its ledger once empty (see HoldLedger): forget those.
        held = self.held[flow]
        if held and not all(ledger.size for ledger in held):
            held = self.held[flow] = [ledger for ledger in held if ledger.size]
        backlogs = [self.backlogs[flow], *held]
        for backlog in backlogs:
            late += backlog.count_late(now, delay)
            size += backlog.size
        if late > _HIGH or size > _WINDOW:
            self.pause(flow, "queue")
        elif late <= _LOW and size <= _WINDOW_LOW:
            self.resume(flow, "queue")
        # Bytes behind a cap come in flight as time passes, before the queue's
        # next delivery (a delay away): look again then, or the link idles.
        at = None
        if delay and "queue" in self.paused[flow]:
            times = [backlog.next_in_flight(delay) for backlog in backlogs]
            at = min((time for time in times if time is not None), default=None)
        timer = self.rechecks.get(flow)
        if timer is not None and (at is None or timer[0] != at):
            timer[1].cancel()
            del self.rechecks[flow]
            timer = None
        if at is not None and timer is None:
            self.rechecks[flow] = (at, self.loop.call_at(at, self._recheck, flow))

    def _recheck(self, flow: Flow) -> None:
        self.rechecks.pop(flow, None)
        if not self.finished:
            self._backpressure(flow)

    def pause(self, flow: Flow, reason: str) -> None:
        reasons = self.paused[flow]
        if reason in reasons:
            return
        reasons.add(reason)
        sender = self._sender(flow)
        if len(reasons) == 1 and sender is not None and sender.transport is not None:
            sender.transport.pause_reading()

    def resume(self, flow: Flow, reason: str) -> None:
        reasons = self.paused[flow]
        if reason not in reasons:
            return
        reasons.discard(reason)
        sender = self._sender(flow)
        if not reasons and sender is not None and sender.transport is not None:
            sender.transport.resume_reading()

    def update(self, faults: Sequence[Fault]) -> None:
        if self.finished:
            return
        self.delays = {flow: _link_delay(faults, flow) for flow in FLOWS}
        self.apply(self.schedule.update(faults, self.loop.time()))
        for flow in FLOWS:
            if not self.finished:
                self._backpressure(flow)

    def close_both(self) -> None:
        """Close both sides with a FIN, as a process that exits would.

        A socket closed while unread bytes wait in its receive buffer sends an RST
        instead, so each side is shut down for writing first, its late bytes are
        read and dropped, and it is closed at its EOF (or after a grace period).
        """
        for side in (self.client, self.server):
            transport = side.transport if side is not None else None
            if side is None or transport is None or transport.is_closing():
                continue
            if side.eof_seen or not transport.can_write_eof():
                transport.close()
            elif _write_eof(transport) is not None:
                transport.abort()  # reset by its peer already
            else:
                transport.resume_reading()
                self.loop.call_later(_CLOSE_GRACE, _close_transport, transport)
        self.finish()

    def abort(self) -> None:
        """End at once, as the proxy closes.

        A side that bytes were still on their way to (held by a fault, in the
        proxy's write buffer, or unread in the other side's socket, where a
        `Stall` leaves them) is reset: with a FIN, a client reading to EOF would
        take the cut reply for a whole one.  The others get a FIN.
        """
        lost = {side: self._bytes_on_their_way_to(side) for side in (self.client, self.server)}
        for side, reset in lost.items():
            if side is not None and side.transport is not None:
                if reset:
                    _reset(side.transport)
                side.transport.abort()
        self.finish()

    def _bytes_on_their_way_to(self, side: _Side | None) -> bool:
        if side is None or side.transport is None:
            return False
        towards = other_flow(side.sends)
        held = self.backlogs[towards].size + sum(ledger.size for ledger in self.held[towards])
        sender = self.server if side is self.client else self.client
        unread = sender is not None and _unread_bytes(sender.transport) > 0
        return bool(held or side.transport.get_write_buffer_size() or unread)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        now = self.loop.time()
        for flow, queue in self.queues.items():
            # Bytes the trace showed let go, that no socket took: say so.
            lost = sum(len(action.data) for action in queue.close() if isinstance(action, Deliver))
            if lost:
                self.trace._record(now, flow, f"{lost} bytes not delivered: the connection ended")
        self.trace._record(now, None, "finished")
        for _, timer in [*self.wakes, *self.rechecks.values()]:
            timer.cancel()
        self.wakes.clear()
        self.rechecks.clear()
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        self.proxy._finished(self)
