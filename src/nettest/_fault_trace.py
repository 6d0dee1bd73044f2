"""Traces: what one proxied connection (or UDP flow) carried, and which faults fired.

A schedule (`nettest._fault_engine`) records into its connection's
`ConnectionTrace` as it decides; the proxy prints the traces in the report of a
failing test.  Traces keep a bounded number of events, so a long connection
costs a bounded amount of memory.
"""

from __future__ import annotations

import bisect
import operator
import typing
from dataclasses import dataclass

from ._recording import format_address

if typing.TYPE_CHECKING:
    from ._faults import Fault

__all__ = ["TRACES_SHOWN", "ConnectionTrace", "TraceEvent"]


@typing.final
@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One line of a `ConnectionTrace`: what happened, when, in which direction.

    This type has no public constructor; proxies record it.
    """

    #: Seconds since the connection started.
    time: float
    #: ``"upstream"``, ``"downstream"`` or None for the whole connection.
    flow: str | None
    #: The event, in words, such as ``"accepted"`` or ``"EOF forwarded"``.
    what: str


#: A trace keeps its connection's first and last events, and counts those between:
#: a failure is usually at the end, and what led to it at the start.
_HEAD_EVENTS = 200
_TAIL_EVENTS = 200
#: How many traces a failure report shows, for each proxy and for a test's memory
#: fault layers: the last ones, nearest the failure (under hypothesis, the replay
#: of the failing example).
TRACES_SHOWN = 10
_BY_TIME = operator.attrgetter("time")
_PREVIEW = 24


@typing.final
class ConnectionTrace:
    """What one proxied connection (or UDP flow) carried, and which faults fired.

    This type has no public constructor; get traces from
    ``FaultProxy.traces``.  ``str(trace)`` is the text printed in the report of a
    failing test.
    """

    __slots__ = (
        "_head",
        "_in_memory",
        "_omitted",
        "_start",
        "_tail",
        "downstream_bytes",
        "fired",
        "index",
        "kind",
        "peer",
        "upstream_bytes",
        "upstream_local",
    )

    def __init__(self, *, _index: int, _kind: str, _peer: object, _start: float) -> None:
        #: 1 for the first connection the proxy accepted (or UDP flow it heard).
        self.index = _index
        #: ``"tcp"`` or ``"udp"``.
        self.kind = _kind
        #: The client's address.
        self.peer = _peer
        #: The proxy's own address on its connection (or socket) to the upstream:
        #: the client address the upstream server sees, as in its
        #: ``server.connections[i].peer`` or ``server.handshake_failures[i].peer``.
        #: None until the proxy has connected upstream.
        self.upstream_local: object = None
        self._head: list[TraceEvent] = []
        self._tail: list[TraceEvent] = []
        #: The faults that acted on this connection, in the order they first did.
        self.fired: list[str] = []
        #: Bytes forwarded from the client to the server.
        self.upstream_bytes = 0
        #: Bytes forwarded from the server to the client.
        self.downstream_bytes = 0
        self._start = _start
        self._omitted = 0
        #: A memory pair's (`nettest.inject_faults`), which its header says.
        self._in_memory = False

    @property
    def events(self) -> list[TraceEvent]:
        """The connection's events in time order, or the first and last 200 of them.

        ``str(trace)`` says how many came between.
        """
        return [*self._head, *self._tail]

    def _record(self, now: float, flow: str | None, what: str) -> None:
        """Add an event at its time (absolute; stored relative to the start).

        A fault decides ahead of time when held bytes will go, so events are not
        recorded in time order: each goes in after every event of the same time
        or earlier, and the trace reads as the connection happened.  Past the
        first events, the earliest of the rest are dropped, and counted.
        """
        event = TraceEvent(round(now - self._start, 6), flow, what)
        head = self._head
        if len(head) < _HEAD_EVENTS:
            bisect.insort(head, event, key=_BY_TIME)
            return
        tail = self._tail
        if event.time < head[-1].time:
            # Earlier than the last event kept at the start: it takes that one's place,
            # and that one goes first among the tail's events of its time, which were
            # all recorded after it.
            bisect.insort(head, event, key=_BY_TIME)
            bisect.insort_left(tail, head.pop(), key=_BY_TIME)
        else:
            bisect.insort(tail, event, key=_BY_TIME)
        if len(tail) > _TAIL_EVENTS:
            del tail[0]
            self._omitted += 1

    def _fire(self, now: float, fault: Fault, flow: str | None, what: str) -> None:
        """Record that `fault` acted."""
        name = repr(fault)
        if name not in self.fired:
            self.fired.append(name)
        self._record(now, flow, f"{name}: {what}")

    def _forwarded(self, now: float, flow: str, data: bytes) -> None:
        """Count and record bytes passed on to the receiver of `flow` (a chunk or a datagram)."""
        if flow == "upstream":
            self.upstream_bytes += len(data)
        else:
            self.downstream_bytes += len(data)
        if self.kind == "udp":
            self._record(now, flow, datagram_shown(data))
        else:
            self._record(now, flow, f"{_bytes(len(data))} {_preview(data)}")

    def __str__(self) -> str:
        peer = self.peer
        if isinstance(peer, tuple) and len(peer) >= 2:
            peer = f"{peer[0]}:{peer[1]}"
        elif isinstance(peer, (str, bytes)):  # a Unix client: unnamed, a path or abstract
            peer = format_address(peer)
        head = (
            f"{'memory pair: ' if self._in_memory else ''}"
            f"{self.kind} connection #{self.index} from {peer}: "
            f"{self.upstream_bytes} bytes up, {self.downstream_bytes} bytes down; "
            f"faults fired: {', '.join(self.fired) or 'none'}"
        )
        lines = [head, *map(_event_line, self._head)]
        if self._omitted:
            lines.append(f"  ... {self._omitted} more events not recorded")
        lines.extend(map(_event_line, self._tail))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ConnectionTrace {self.kind} #{self.index} from {self.peer}>"


def _event_line(event: TraceEvent) -> str:
    arrow = {"upstream": "->", "downstream": "<-"}.get(event.flow or "", "  ")
    return f"  {event.time:9.6f} {arrow} {event.what}"


def datagram_shown(data: bytes) -> str:
    """A datagram as a trace shows it: its size and its first bytes."""
    return f"datagram {_bytes(len(data))} {_preview(data)}"


def _bytes(count: int) -> str:
    return "1 byte" if count == 1 else f"{count} bytes"


def _preview(data: bytes) -> str:
    if len(data) <= _PREVIEW:
        return repr(data)
    return f"{data[:_PREVIEW]!r}..."
