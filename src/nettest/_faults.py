"""Fault values, and the sans-IO schedule that applies them to traffic.

Theory of operation
-------------------
A fault is a frozen value (`Latency`, `Reset`, `Drop`, ...).  It says *what*
goes wrong; it holds no state and does no IO, so the same value can be handed to
the loopback proxy (`nettest._proxy`) and to the memory transports
(`nettest._memory_faults`).

What happens to the bytes of one connection (or, for UDP, of one flow: the
datagrams from one client address) is decided by a *schedule*:
`StreamSchedule` for TCP, `DatagramSchedule` for UDP.  A schedule is a pure
state machine.  Its driver feeds it events with the time they happened::

    data(flow, bytes, now)    eof(flow, now)    tick(now)    update(faults, now)

and gets back a list of *actions* to carry out::

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
added.  An item (a chunk with its stream offset, an EOF, or a close/reset
decided by an earlier fault) goes through each stage in turn; a stage may delay
it, cut it, change it, hold it or drop it.  A fault does nothing until it is
*armed*: its trigger names the connection number, a byte offset or a byte
pattern, and a fault added in mid-connection counts from the moment it was
added.  A chunk that straddles the arming offset is split, so that the bytes
before it pass untouched.  Byte counts inside a fault (``Truncate(10)``,
``Reset(after_bytes=10)``) are relative to the arming offset.

All randomness comes from one `random.Random` per connection, seeded from the
proxy's seed and the connection's number: the same seed and the same traffic
give the same actions whatever other connections do.  Whether a fault with
``probability < 1`` applies to a connection is drawn once, when the connection
first sees the fault.
"""

from __future__ import annotations

import math
import random
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal, TypeAlias

__all__ = [
    "Abort",
    "Action",
    "Bandwidth",
    "Blackhole",
    "Close",
    "CloseAfter",
    "ConnectionTrace",
    "Corrupt",
    "DatagramSchedule",
    "Deliver",
    "Direction",
    "Drop",
    "Duplicate",
    "Fault",
    "Flow",
    "HalfClose",
    "Latency",
    "Pause",
    "Refuse",
    "RefuseConnection",
    "Reorder",
    "Reset",
    "Resume",
    "SendEof",
    "Slice",
    "SlowClose",
    "Stall",
    "StreamSchedule",
    "TraceEvent",
    "Trigger",
    "Truncate",
    "TruncateDatagram",
    "Unreachable",
    "UnreachableAction",
    "Wake",
]

Direction = Literal["upstream", "downstream", "both"]
Flow = Literal["upstream", "downstream"]
DIRECTIONS: tuple[Direction, ...] = ("upstream", "downstream", "both")
FLOWS: tuple[Flow, ...] = ("upstream", "downstream")

_INF = math.inf


# -- validation ------------------------------------------------------------------


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    return float(value)


def _non_negative(name: str, value: object, unit: str = "") -> None:
    number = _number(name, value)
    if not 0 <= number < _INF:
        suffix = f" {unit}" if unit else ""
        raise ValueError(f"{name} must be >= 0{suffix} and finite, got {value!r}")


def _unit_interval(name: str, value: object) -> None:
    number = _number(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def _integer(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


# -- the vocabulary ----------------------------------------------------------------


@typing.final
@dataclass(frozen=True, slots=True)
class Trigger:
    """When a fault starts to act: the Nth connection, after N bytes, after a pattern.

    Conditions combine: ``Trigger(connection=2, pattern=b"\\r\\n\\r\\n")`` arms the
    fault on the second connection only, once the end of the HTTP headers has
    passed.  Byte counts are per direction, counted in the fault's direction
    from the start of the connection.

    Args:
        connection: Only this connection (1 is the first the proxy accepted; for
            UDP, the first client address it heard from).  None: every connection.
        after_bytes: Arm the fault once this many bytes have passed.
        pattern: Arm the fault once these bytes have passed (the first time).

    Raises:
        ValueError: ``connection < 1``, ``after_bytes < 0`` or an empty pattern.

    Example::

        Reset(trigger=Trigger(pattern=b"\\r\\n\\r\\n"))  # reset after the headers
    """

    connection: int | None = None
    after_bytes: int = 0
    pattern: bytes | None = None

    def __post_init__(self) -> None:
        if self.connection is not None:
            _integer("connection", self.connection, 1)
        _integer("after_bytes", self.after_bytes, 0)
        if self.pattern is not None:
            if not isinstance(self.pattern, bytes):
                raise TypeError(f"pattern must be bytes, got {self.pattern!r}")
            if not self.pattern:
                raise ValueError("pattern must not be empty")


_NO_TRIGGER = Trigger()
_STREAM = frozenset({"stream"})
_DATAGRAM = frozenset({"datagram"})
_ANY = frozenset({"stream", "datagram"})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Fault:
    """Base class of every fault; use one of its subclasses.

    Every fault takes these keyword-only options.

    Args:
        direction: ``"downstream"`` (server to client, the default, as in
            toxiproxy), ``"upstream"`` (client to server) or ``"both"``.
        probability: The chance that the fault applies to a given connection,
            drawn once per connection from the seeded generator.  (Faults that act
            on single datagrams or bytes have their own ``rate``.)
        trigger: When the fault starts to act; see `Trigger`.

    Raises:
        ValueError: An unknown direction, or a probability outside [0, 1].
    """

    direction: Direction = "downstream"
    probability: float = 1.0
    trigger: Trigger | None = None

    #: Which kinds of traffic the fault applies to.
    _applies_to: ClassVar[frozenset[str]] = _ANY

    def __post_init__(self) -> None:
        if type(self) is Fault:
            raise TypeError("Fault is a base class; use one of its subclasses, e.g. Latency")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"direction must be one of 'upstream', 'downstream', 'both'; "
                f"got {self.direction!r}"
            )
        _unit_interval("probability", self.probability)
        if self.trigger is not None and not isinstance(self.trigger, Trigger):
            raise TypeError(f"trigger must be a Trigger, got {self.trigger!r}")
        self._validate()

    def _validate(self) -> None:
        """Check the fault's own fields."""

    def __repr__(self) -> str:
        own: list[str] = []
        common: list[str] = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("direction", "probability", "trigger"):
                if value != item.default:
                    common.append(f"{item.name}={value!r}")
            elif item.default is not value and value != item.default:
                own.append(f"{item.name}={value!r}")
        return f"{type(self).__name__}({', '.join(own + common)})"


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Latency(Fault):
    """Delay every chunk (or datagram) by *delay* seconds, give or take *jitter*.

    TCP order is kept: jitter never lets a later chunk overtake an earlier one.
    Datagrams are delayed independently, so jitter may reorder them.

    Raises:
        ValueError: A negative *delay* or *jitter*.

    Example::

        Latency(0.1, jitter=0.02)
    """

    delay: float
    jitter: float = 0.0

    def _validate(self) -> None:
        _non_negative("delay", self.delay, "seconds")
        _non_negative("jitter", self.jitter, "seconds")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Bandwidth(Fault):
    """Cap the rate at *bytes_per_second*; bytes are delivered when they would have arrived.

    Raises:
        ValueError: *bytes_per_second* is not > 0.

    Example::

        Bandwidth(64 * 1024)  # a 64 KiB/s link
    """

    bytes_per_second: float

    def _validate(self) -> None:
        value = _number("bytes_per_second", self.bytes_per_second)
        if not 0 < value < _INF:
            raise ValueError(f"bytes_per_second must be > 0, got {self.bytes_per_second!r}")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Slice(Fault):
    """Fragment the stream into pieces of about *size* bytes, *delay* seconds apart.

    This is how parsers meet a delimiter split across two reads.  Piece sizes are
    drawn from ``size - jitter`` to ``size + jitter`` (at least 1).

    Raises:
        ValueError: ``size < 1``, a negative *jitter* or *delay*.

    Example::

        Slice(1)  # one byte per read
    """

    _applies_to: ClassVar[frozenset[str]] = _STREAM

    size: int
    jitter: int = 0
    delay: float = 0.0

    def _validate(self) -> None:
        _integer("size", self.size, 1)
        _integer("jitter", self.jitter, 0)
        _non_negative("delay", self.delay, "seconds")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Truncate(Fault):
    """Pass *after_bytes* bytes, then close the connection (FIN both ways).

    The client reads the first bytes of the response and then EOF, as when a
    server dies mid-response.

    Raises:
        ValueError: ``after_bytes < 0``.

    Example::

        Truncate(100)
    """

    _applies_to: ClassVar[frozenset[str]] = _STREAM

    after_bytes: int

    def _validate(self) -> None:
        _integer("after_bytes", self.after_bytes, 0)


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Reset(Fault):
    """Reset the connection (a real RST) after some bytes, after some time, or at once.

    The receiver in the fault's direction gets the RST (the client, by default):
    its reads and writes raise `ConnectionResetError`.  The other side is closed.
    With both limits, whichever comes first wins; with neither, the reset comes as
    soon as the fault is armed.

    Args:
        after_bytes: Pass this many bytes, then reset.
        after_seconds: Reset this long after the fault was armed.

    Raises:
        ValueError: A negative limit.

    Example::

        Reset(after_bytes=1024)
    """

    _applies_to: ClassVar[frozenset[str]] = _STREAM

    after_bytes: int | None = None
    after_seconds: float | None = None

    def _validate(self) -> None:
        if self.after_bytes is not None:
            _integer("after_bytes", self.after_bytes, 0)
        if self.after_seconds is not None:
            _non_negative("after_seconds", self.after_seconds, "seconds")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Blackhole(Fault):
    """Forward nothing: bytes (and the FIN) vanish, and the connection stays open.

    A cable pulled out: the reader waits until its own timeout.  Use
    ``direction="both"`` to cut both ways.

    Example::

        Blackhole(direction="both")
    """


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Stall(Fault):
    """Stop reading from the sender, so its buffers and then its TCP window fill up.

    Unlike `Blackhole`, nothing is lost: remove the fault and the held bytes flow.
    A sender awaiting ``drain()`` blocks.  ``direction="upstream"`` stalls the
    client's writes.

    Example::

        Stall(direction="upstream")
    """

    _applies_to: ClassVar[frozenset[str]] = _STREAM


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class SlowClose(Fault):
    """Hold each FIN for *delay* seconds before passing it on.

    Raises:
        ValueError: A negative *delay*.

    Example::

        SlowClose(2.0)
    """

    _applies_to: ClassVar[frozenset[str]] = _STREAM

    delay: float

    def _validate(self) -> None:
        _non_negative("delay", self.delay, "seconds")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class CloseAfter(Fault):
    """Close the connection (FIN both ways) *seconds* after it was armed.

    Raises:
        ValueError: A negative *seconds*.

    Example::

        CloseAfter(1.5)
    """

    _applies_to: ClassVar[frozenset[str]] = _STREAM

    seconds: float

    def _validate(self) -> None:
        _non_negative("seconds", self.seconds, "seconds")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Refuse(Fault):
    """Reset each new connection before it reaches the server.

    The kernel completes the TCP handshake before any program sees a
    connection, so what the client sees is a reset right after connecting.  For a
    true "connection refused" take the whole proxy down with ``proxy.down()``.
    Only ``probability`` and ``Trigger(connection=N)`` apply.

    Raises:
        ValueError: A trigger with ``after_bytes`` or a pattern.

    Example::

        Refuse(trigger=Trigger(connection=1))  # the first attempt fails
    """

    _applies_to: ClassVar[frozenset[str]] = _STREAM

    def _validate(self) -> None:
        trigger = self.trigger or _NO_TRIGGER
        if trigger.after_bytes or trigger.pattern is not None:
            raise ValueError("trigger: Refuse acts before any byte; only connection= applies")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class HalfClose(Fault):
    """Send a FIN in the fault's direction once armed, and drop what follows that way.

    The other direction stays open: with the default ``"downstream"``, the client
    reads EOF but can still send.

    Example::

        HalfClose(direction="upstream")  # the server reads EOF
    """

    _applies_to: ClassVar[frozenset[str]] = _STREAM


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Corrupt(Fault):
    """XOR bytes with *mask* at chosen offsets, or each byte with a probability *rate*.

    For TCP, *positions* count from the moment the fault is armed; for UDP they
    are offsets inside each datagram.

    Raises:
        ValueError: Negative positions, *rate* outside [0, 1], a *mask* outside
            1..255, or neither positions nor a rate.

    Example::

        Corrupt(positions=(0,))  # damage the first byte
    """

    positions: tuple[int, ...] = ()
    rate: float = 0.0
    mask: int = 0xFF

    def _validate(self) -> None:
        positions: object = self.positions
        if not isinstance(positions, tuple):
            if isinstance(positions, (str, bytes)) or not isinstance(positions, Iterable):
                raise TypeError(f"positions must be a tuple of ints, got {positions!r}")
            object.__setattr__(self, "positions", tuple(positions))
        for position in self.positions:
            _integer("positions", position, 0)
        _unit_interval("rate", self.rate)
        _integer("mask", self.mask, 1)
        if self.mask > 0xFF:
            raise ValueError(f"mask must be in 1..255, got {self.mask!r}")
        if not self.positions and self.rate == 0:
            raise ValueError("Corrupt needs positions or a rate > 0")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Drop(Fault):
    """Lose each datagram with probability *rate* (UDP only).

    TCP cannot lose bytes: its "loss" shows as latency or a stall.

    Raises:
        ValueError: *rate* outside [0, 1].

    Example::

        Drop(0.1)
    """

    _applies_to: ClassVar[frozenset[str]] = _DATAGRAM

    rate: float = 1.0

    def _validate(self) -> None:
        _unit_interval("rate", self.rate)


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Duplicate(Fault):
    """Deliver each datagram twice with probability *rate* (UDP only).

    Raises:
        ValueError: *rate* outside [0, 1].

    Example::

        Duplicate(0.5)
    """

    _applies_to: ClassVar[frozenset[str]] = _DATAGRAM

    rate: float = 1.0

    def _validate(self) -> None:
        _unit_interval("rate", self.rate)


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Reorder(Fault):
    """Shuffle datagrams within groups of *window* (UDP only).

    Datagrams are held until *window* have arrived, or for at most *max_hold*
    seconds, then released in a seeded random order.

    Raises:
        ValueError: ``window < 2`` or a negative *max_hold*.

    Example::

        Reorder(4)
    """

    _applies_to: ClassVar[frozenset[str]] = _DATAGRAM

    window: int = 2
    max_hold: float = 0.05

    def _validate(self) -> None:
        _integer("window", self.window, 2)
        _non_negative("max_hold", self.max_hold, "seconds")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class TruncateDatagram(Fault):
    """Cut each datagram to at most *max_size* bytes, as a small MTU would (UDP only).

    Raises:
        ValueError: ``max_size < 0``.

    Example::

        TruncateDatagram(512)
    """

    _applies_to: ClassVar[frozenset[str]] = _DATAGRAM

    max_size: int

    def _validate(self) -> None:
        _integer("max_size", self.max_size, 0)


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Unreachable(Fault):
    """Refuse datagrams as a closed port does (UDP only).

    The datagram is lost and its sender's protocol gets
    ``error_received(ConnectionRefusedError)``.  Unlike other faults the default
    direction is ``"upstream"``: the client's datagrams are refused.

    Example::

        Unreachable()
    """

    _applies_to: ClassVar[frozenset[str]] = _DATAGRAM

    direction: Direction = field(default="upstream", kw_only=True)


# -- actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deliver:
    """Write `data` to the receiver of `flow` at time `at`."""

    at: float
    flow: Flow
    data: bytes


@dataclass(frozen=True, slots=True)
class SendEof:
    """Half-close towards the receiver of `flow` at time `at`."""

    at: float
    flow: Flow


@dataclass(frozen=True, slots=True)
class Close:
    """Close both sides of the connection (FIN) at time `at`."""

    at: float
    flow: Flow
    reason: str


@dataclass(frozen=True, slots=True)
class Abort:
    """Reset (RST) the receivers of `flows` at `at`, and close the other side."""

    at: float
    flow: Flow
    flows: tuple[Flow, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Pause:
    """Stop reading from the sender of `flow`."""

    flow: Flow


@dataclass(frozen=True, slots=True)
class Resume:
    """Read from the sender of `flow` again."""

    flow: Flow


@dataclass(frozen=True, slots=True)
class Wake:
    """Call the schedule's ``tick()`` at time `at`."""

    at: float


@dataclass(frozen=True, slots=True)
class RefuseConnection:
    """Reset the new connection at once; do not connect upstream."""

    reason: str


@dataclass(frozen=True, slots=True)
class UnreachableAction:
    """Report ``ConnectionRefusedError`` to the sender of `flow` at `at`."""

    at: float
    flow: Flow


Action: TypeAlias = (
    Deliver
    | SendEof
    | Close
    | Abort
    | Pause
    | Resume
    | Wake
    | RefuseConnection
    | UnreachableAction
)


# -- traces ----------------------------------------------------------------------------


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
    what: str


_MAX_EVENTS = 400
_PREVIEW = 24


@typing.final
class ConnectionTrace:
    """What one proxied connection (or UDP flow) carried, and which faults fired.

    This type has no public constructor; get traces from
    ``FaultProxy.traces``.  ``str(trace)`` is the text printed in the report of a
    failing test.
    """

    __slots__ = (
        "_omitted",
        "_start",
        "downstream_bytes",
        "events",
        "fired",
        "index",
        "kind",
        "peer",
        "upstream_bytes",
    )

    def __init__(self, *, _index: int, _kind: str, _peer: object, _start: float) -> None:
        #: 1 for the first connection the proxy accepted (or UDP flow it heard).
        self.index = _index
        #: ``"tcp"`` or ``"udp"``.
        self.kind = _kind
        #: The client's address.
        self.peer = _peer
        #: Events in order (at most a few hundred; later ones are counted only).
        self.events: list[TraceEvent] = []
        #: The faults that acted on this connection, in the order they first did.
        self.fired: list[str] = []
        #: Bytes forwarded in each direction.
        self.upstream_bytes = 0
        self.downstream_bytes = 0
        self._start = _start
        self._omitted = 0

    def record(self, now: float, flow: str | None, what: str) -> None:
        """Append an event (times are absolute; they are stored relative to the start)."""
        if len(self.events) >= _MAX_EVENTS:
            self._omitted += 1
            return
        self.events.append(TraceEvent(round(now - self._start, 6), flow, what))

    def fire(self, now: float, fault: Fault, flow: str | None, what: str) -> None:
        """Record that `fault` acted."""
        name = repr(fault)
        if name not in self.fired:
            self.fired.append(name)
        self.record(now, flow, f"{name}: {what}")

    def __str__(self) -> str:
        peer = self.peer
        if isinstance(peer, tuple) and len(peer) >= 2:
            peer = f"{peer[0]}:{peer[1]}"
        head = (
            f"{self.kind} connection #{self.index} from {peer}: "
            f"{self.upstream_bytes} bytes up, {self.downstream_bytes} bytes down; "
            f"faults fired: {', '.join(self.fired) or 'none'}"
        )
        lines = [head]
        for event in self.events:
            arrow = {"upstream": "->", "downstream": "<-"}.get(event.flow or "", "  ")
            lines.append(f"  {event.time:9.6f} {arrow} {event.what}")
        if self._omitted:
            lines.append(f"  ... {self._omitted} more events not recorded")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ConnectionTrace {self.kind} #{self.index} from {self.peer}>"


def _preview(data: bytes) -> str:
    if len(data) <= _PREVIEW:
        return repr(data)
    return f"{data[:_PREVIEW]!r}..."


# -- the schedule's pipeline items ---------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    at: float
    offset: int
    data: bytes


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


def _connection_rng(seed: int, kind: str, index: int) -> random.Random:
    return random.Random(f"nettest:{seed}:{kind}:{index}")


class _Applied:
    """One fault's state on one flow of one connection."""

    __slots__ = (
        "arm",
        "armed",
        "busy",
        "deadline",
        "fault",
        "fired",
        "flow",
        "held",
        "last",
        "next_corrupt",
        "pattern",
        "scanned",
        "selected",
        "tail",
        "target",
    )

    def __init__(self, fault: Fault, flow: Flow, selected: bool, consumed: int) -> None:
        trigger = fault.trigger or _NO_TRIGGER
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

    def scan(self, offset: int, data: bytes) -> None:
        """Look for the trigger's pattern in raw bytes starting at stream `offset`."""
        if self.pattern is None or self.arm is not None:
            return
        trigger = self.fault.trigger or _NO_TRIGGER
        window = self.tail + data
        found = window.find(self.pattern)
        if found >= 0:
            end = offset - len(self.tail) + found + len(self.pattern)
            self.arm = max(trigger.after_bytes, end)
            self.tail = b""
        else:
            self.tail = window[-(len(self.pattern) - 1) :] if len(self.pattern) > 1 else b""


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
        self._draws: dict[Fault, bool] = {}
        self._pipes: dict[Flow, list[_Applied]] = {"upstream": [], "downstream": []}
        self._consumed: dict[Flow, int] = {"upstream": 0, "downstream": 0}
        self._initial = tuple(faults)

    def _check_kind(self, faults: Iterable[Fault]) -> None:
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected a fault such as Latency(0.1), got {fault!r}")
            if self._kind not in fault._applies_to:
                other = "TCP" if self._kind == "datagram" else "UDP"
                raise ValueError(f"{fault!r} applies to {other} traffic only")

    def _selected(self, fault: Fault) -> bool:
        drawn = self._draws.get(fault)
        if drawn is None:
            trigger = fault.trigger or _NO_TRIGGER
            # Always draw, so that later draws do not depend on this fault's probability.
            chance = self.rng.random()
            drawn = chance < fault.probability and trigger.connection in (None, self.index)
            self._draws[fault] = drawn
        return drawn

    def _reconcile(self, faults: Sequence[Fault], now: float) -> list[_Applied]:
        """Bring the pipelines in line with *faults*; return the newly applied stages."""
        self._check_kind(faults)
        unique = tuple(dict.fromkeys(faults))
        self._faults = unique
        added: list[_Applied] = []
        for flow in FLOWS:
            old = {applied.fault: applied for applied in self._pipes[flow]}
            pipe: list[_Applied] = []
            for fault in unique:
                if fault.direction not in (flow, "both"):
                    continue
                applied = old.pop(fault, None)
                if applied is None:
                    applied = _Applied(fault, flow, self._selected(fault), self._consumed[flow])
                    if applied.selected:
                        added.append(applied)
                if applied.selected:
                    pipe.append(applied)
            self._pipes[flow] = pipe
            self._removed(flow, list(old.values()), now)
        return added

    def _removed(self, flow: Flow, stages: list[_Applied], now: float) -> None:
        """Hook: stages that left `flow`'s pipeline."""


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
        for fault in self._initial:
            if isinstance(fault, Refuse) and self._selected(fault):
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
                found = self._run_from(applied, items, now)
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
        return self._run(flow, 0, [_Chunk(now, offset, data)], now)

    def eof(self, flow: Flow, now: float) -> list[Action]:
        """The sender of `flow` half-closed (or closed) its side."""
        if self.closed or self._eof_in[flow]:
            return []
        self._eof_in[flow] = True
        self.trace.record(now, flow, "EOF received")
        return self._run(flow, 0, [_Eof(now)], now)

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

    def _run_from(self, applied: _Applied, items: list[_Item], now: float) -> list[Action]:
        pipe = self._pipes[applied.flow]
        return self._run(applied.flow, pipe.index(applied) + 1, items, now)

    def _run(self, flow: Flow, start: int, items: list[_Item], now: float) -> list[Action]:
        pipe = self._pipes[flow]
        extra: list[Action] = []
        for applied in pipe[start:]:
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
                if flow == "upstream":
                    self.trace.upstream_bytes += len(item.data)
                else:
                    self.trace.downstream_bytes += len(item.data)
                self.trace.record(at, flow, f"{len(item.data)} bytes {_preview(item.data)}")
                actions.append(Deliver(at, flow, item.data))
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
                before = _Chunk(item.at, item.offset, item.data[:cut]) if cut else None
                after = _Chunk(item.at, item.offset + cut, item.data[cut:])
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
                out.append(_Chunk(chunk.at, chunk.offset, chunk.data[:keep]))
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
            out.append(_Chunk(start, chunk.offset + index, piece))
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
            out.append(_Chunk(at, chunk.offset + index, data[index : index + size]))
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
        return _Chunk(chunk.at, chunk.offset, bytes(data))

    def _removed(self, flow: Flow, stages: list[_Applied], now: float) -> None:
        for applied in stages:
            if isinstance(applied.fault, Stall) and applied.armed:
                self._released.append(Resume(flow))
                self.trace.fire(now, applied.fault, flow, "removed; reading again")
            if applied.held:
                held, applied.held = applied.held, []
                for item in held:
                    item.at = max(item.at, now)
                # The held items go on through the stages that are still in force.
                self._released.extend(self._run(flow, 0, held, now))


def _reset_flows(fault: Fault, flow: Flow) -> tuple[Flow, ...]:
    return FLOWS if fault.direction == "both" else (flow,)


@dataclass(slots=True)
class _Dgram:
    at: float
    data: bytes


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
        self._held: dict[int, tuple[float, list[_Dgram]]] = {}
        self._pending: list[Action] = []
        self.trace.record(now, None, "first datagram")
        self.update(self._initial, now)

    def update(self, faults: Sequence[Fault], now: float) -> list[Action]:
        """The faults in force changed (added, removed, cleared)."""
        self._reconcile(faults, now)
        actions, self._pending = self._pending, []
        return actions

    def datagram(self, flow: Flow, data: bytes, now: float) -> list[Action]:
        """A datagram arrived from the sender of `flow`."""
        offset = self._consumed[flow]
        self._consumed[flow] = offset + len(data)
        items = [_Dgram(now, data)]
        actions: list[Action] = []
        for applied in list(self._pipes[flow]):
            if not items:
                break
            if not applied.armed:
                applied.scan(offset, data)
                if applied.arm is None or applied.arm > offset:
                    continue
                applied.armed = True
            items = self._stage(applied, items, actions)
        return actions + self._finish(flow, items)

    def tick(self, now: float) -> list[Action]:
        """Release the datagrams `Reorder` has held for too long."""
        actions: list[Action] = []
        for flow in FLOWS:
            for stage, applied in enumerate(list(self._pipes[flow])):
                key = id(applied)
                held = self._held.get(key)
                if held is None or held[0] > now:
                    continue
                del self._held[key]
                items = self._shuffle(applied, held[1], now)
                for later in self._pipes[flow][stage + 1 :]:
                    items = self._stage(later, items, actions) if later.armed else items
                actions.extend(self._finish(flow, items))
        return actions

    def _finish(self, flow: Flow, items: list[_Dgram]) -> list[Action]:
        actions: list[Action] = []
        for item in items:
            if flow == "upstream":
                self.trace.upstream_bytes += len(item.data)
            else:
                self.trace.downstream_bytes += len(item.data)
            self.trace.record(
                item.at, flow, f"datagram {len(item.data)} bytes {_preview(item.data)}"
            )
            actions.append(Deliver(item.at, flow, item.data))
        return actions

    def _shuffle(self, applied: _Applied, items: list[_Dgram], now: float) -> list[_Dgram]:
        order = list(range(len(items)))
        self.rng.shuffle(order)
        self.trace.fire(now, applied.fault, applied.flow, f"released in order {order}")
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
            if isinstance(fault, Drop):
                if self.rng.random() < fault.rate:
                    self.trace.fire(item.at, fault, flow, f"dropped {len(item.data)} bytes")
                    continue
            elif isinstance(fault, Duplicate):
                if self.rng.random() < fault.rate:
                    self.trace.fire(item.at, fault, flow, "duplicated")
                    out.append(_Dgram(item.at, item.data))
            elif isinstance(fault, TruncateDatagram):
                if len(item.data) > fault.max_size:
                    self.trace.fire(item.at, fault, flow, f"cut {len(item.data)} bytes")
                    item = _Dgram(item.at, item.data[: fault.max_size])
            elif isinstance(fault, Blackhole):
                self.trace.fire(item.at, fault, flow, f"dropped {len(item.data)} bytes")
                continue
            elif isinstance(fault, Unreachable):
                self.trace.fire(item.at, fault, flow, "refused (port unreachable)")
                actions.append(UnreachableAction(item.at, flow))
                continue
            elif isinstance(fault, Latency):
                at = item.at + fault.delay
                if fault.jitter:
                    at += self.rng.uniform(-fault.jitter, fault.jitter)
                item.at = max(at, item.at)
            elif isinstance(fault, Bandwidth):
                start = max(item.at, applied.busy)
                applied.busy = start + len(item.data) / fault.bytes_per_second
                item.at = applied.busy
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
            hits.update(i for i in range(len(data)) if self.rng.random() < fault.rate)
        if not hits:
            return item
        for position in hits:
            data[position] ^= fault.mask
        self.trace.fire(item.at, fault, applied.flow, f"flipped offsets {sorted(hits)}")
        return _Dgram(item.at, bytes(data))

    def _removed(self, flow: Flow, stages: list[_Applied], now: float) -> None:
        for applied in stages:
            held = self._held.pop(id(applied), None)
            if held is not None:
                self._pending.extend(self._finish(flow, held[1]))
