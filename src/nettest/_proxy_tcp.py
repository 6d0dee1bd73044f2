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
(`_Backlog` tells the two apart by how long ago the proxy read them).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import typing
from collections.abc import Iterable, Sequence
from typing import Literal

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
#: Loop turns between two pieces to be read alone (see `_StreamConnection._space`).
_PIECE_TURNS = 2
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
    """The deliveries one direction's queue holds, oldest first, and when their bytes were read.

    Bytes read less than the link's delay ago are in flight on the modelled link
    and count against `_WINDOW` only.  Older ones are late: they wait for
    something other than the delay (a `Bandwidth` cap, a `Slice`'s pace, the
    upstream connection) and count against `_HIGH` too, as they always did.
    `Latency` keeps the order of the bytes, so the late ones come first.
    """

    __slots__ = ("_late", "_recent", "late", "size")

    def __init__(self) -> None:
        # (read at, bytes) of each delivery in the queue: the late ones, then the rest.
        self._late: collections.deque[tuple[float, int]] = collections.deque()
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        #: Bytes in the queue.
        self.size = 0
        #: Bytes in the queue read at or before the cutoff `count_late` last saw.
        self.late = 0

    def add(self, read_at: float, size: int) -> None:
        """A delivery of `size` bytes read at `read_at` joined the queue."""
        self._recent.append((read_at, size))
        self.size += size

    def pop(self) -> None:
        """The oldest delivery left the queue."""
        if self._late:
            size = self._late.popleft()[1]
            self.late -= size
        else:
            size = self._recent.popleft()[1]
        self.size -= size

    def count_late(self, cutoff: float) -> int:
        """Return how many bytes in the queue were read at or before `cutoff`."""
        late, recent = self._late, self._recent
        # The cutoff moves back when a Latency is added: late bytes may be recent again.
        while late and late[-1][0] > cutoff:
            entry = late.pop()
            self.late -= entry[1]
            recent.appendleft(entry)
        while recent and recent[0][0] <= cutoff:
            entry = recent.popleft()
            self.late += entry[1]
            late.append(entry)
        return self.late


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
        self.schedule = StreamSchedule(
            seed=proxy.seed, index=index, now=now, faults=proxy.faults, peer=peer
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
        self.backlogs: dict[Flow, _Backlog] = {flow: _Backlog() for flow in FLOWS}
        self.delays: dict[Flow, float] = {flow: _link_delay(proxy.faults, flow) for flow in FLOWS}
        self.paused: dict[Flow, set[str]] = {"upstream": set(), "downstream": set()}
        self.eof_sent: dict[Flow, bool] = {"upstream": False, "downstream": False}
        # Flows that just wrote a piece to be read alone: the next waits a few turns.
        self.spacing: set[Flow] = set()
        self.wakes: list[asyncio.TimerHandle] = []
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
                where = _format_address(upstream)
                self.trace.record(
                    self.loop.time(), None, f"upstream {where} failed: {exc!r}; client reset"
                )
                _reset(self.client.transport)
                self.finish()

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
        self.trace.record(self.loop.time(), None, "connected upstream")
        # As in FaultProxy._accepted: pause only once the transport reads.
        self.loop.call_soon(self._server_ready)

    def _server_ready(self) -> None:
        side = self.server
        if self.finished or side is None or side.transport is None:
            return
        if self.paused["downstream"]:
            side.transport.pause_reading()
        self.kick("upstream")

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
            # Pass a reset on, as the network would.
            self.trace.record(now, side.sends, f"{side.role} connection lost: {exc!r}")
            other = self.server if side is self.client else self.client
            if other is not None:
                _reset(other.transport)
            self.finish()
            return
        self.trace.record(now, side.sends, f"{side.role} closed")
        # Close the other side once what is queued for it has gone out.
        towards = other_flow(side.sends)
        self.queues[towards].append(Close(now, towards, f"{side.role} closed"))
        self.kick(towards)

    # -- carrying out actions ---------------------------------------------------------

    def apply(self, actions: Iterable[Action]) -> None:
        touched: set[Flow] = set()
        now = self.loop.time()
        for action in actions:
            if isinstance(action, (Deliver, SendEof, Close, Abort)):
                self.queues[action.flow].append(action)
                if isinstance(action, Deliver):
                    self.backlogs[action.flow].add(now, len(action.data))
                touched.add(action.flow)
            elif isinstance(action, Pause):
                self.pause(action.flow, "stall")
            elif isinstance(action, Resume):
                self.resume(action.flow, "stall")
            elif isinstance(action, Wake):
                self.wakes.append(self.loop.call_at(action.at, self._tick))
        for flow in FLOWS:
            if flow in touched and not self.finished:
                self.kick(flow)

    def _tick(self) -> None:
        if not self.finished:
            self.apply(self.schedule.tick(self.loop.time()))

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
        return isinstance(action, Deliver) and action.alone and action.flow in self.spacing

    def _space(self, flow: Flow, turns: int) -> None:
        """Let `turns` loop turns pass after a piece was written, then write the next.

        A receiver on this loop reads the piece in the first turn after the write
        (its socket turned readable); the next piece goes out after that read.
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
                transport.write_eof()
            if all(self.eof_sent.values()):
                self.close_both()
        elif isinstance(action, Close):
            self.trace.record(self.loop.time(), None, f"closing: {action.reason}")
            self.close_both()
        elif isinstance(action, Abort):
            for flow in action.flows:
                side = self._receiver(flow)
                _reset(side.transport if side is not None else None)
            self.close_both()

    def _backpressure(self, flow: Flow) -> None:
        backlog = self.backlogs[flow]
        late = backlog.count_late(self.loop.time() - self.delays[flow])
        if late > _HIGH or backlog.size > _WINDOW:
            self.pause(flow, "queue")
        elif late <= _LOW and backlog.size <= _WINDOW_LOW:
            self.resume(flow, "queue")

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
            else:
                transport.write_eof()
                transport.resume_reading()
                self.loop.call_later(_CLOSE_GRACE, _close_transport, transport)
        self.finish()

    def abort(self) -> None:
        for side in (self.client, self.server):
            if side is not None and side.transport is not None:
                side.transport.abort()
        self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.trace.record(self.loop.time(), None, "finished")
        for queue in self.queues.values():
            queue.close()
        for timer in self.wakes:
            timer.cancel()
        self.wakes.clear()
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        self.proxy._finished(self)
