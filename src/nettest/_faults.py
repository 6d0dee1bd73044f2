"""The fault vocabulary: frozen, validated values that say what goes wrong on the wire.

A fault is a frozen value (`Latency`, `Reset`, `Drop`, ...).  It says *what*
goes wrong; it holds no state and does no IO, so the same value can be handed to
the loopback proxy (`nettest._proxy`) and to the memory transports
(`nettest._memory_faults`).  Every fault takes the same keyword-only options:
a ``direction``, a ``probability`` and a `Trigger` that says when it starts to
act.  Bad values are refused when the fault is built, with an error naming the
field and the accepted range.

What a fault does to the bytes of one connection is decided by a *schedule*,
the sans-IO state machines in `nettest._fault_engine_stream` (TCP) and
`nettest._fault_engine_datagram` (UDP).  The public namespace is
`nettest.faults`.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

__all__ = [
    "Bandwidth",
    "Blackhole",
    "CloseAfter",
    "Corrupt",
    "Direction",
    "Drop",
    "Duplicate",
    "Fault",
    "Flow",
    "HalfClose",
    "Latency",
    "Refuse",
    "Reorder",
    "Reset",
    "Slice",
    "SlowClose",
    "Stall",
    "Trigger",
    "Truncate",
    "TruncateDatagram",
    "Unreachable",
]

Direction = Literal["upstream", "downstream", "both"]
Flow = Literal["upstream", "downstream"]
DIRECTIONS: tuple[Direction, ...] = ("upstream", "downstream", "both")
FLOWS: tuple[Flow, ...] = ("upstream", "downstream")


def other_flow(flow: Flow) -> Flow:
    """Return the flow going the other way."""
    return "downstream" if flow == "upstream" else "upstream"


_INF = math.inf


# -- validation ------------------------------------------------------------------


def _number(name: str, value: object) -> float:
    """`value` as a float; NaN falls outside every range its caller checks (and says)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int too large for a float: out of every range here
        return _INF if value > 0 else -_INF


def _non_negative(name: str, value: object, unit: str = "") -> None:
    number = _number(name, value)
    if not 0 <= number < _INF:
        suffix = f" {unit}" if unit else ""
        raise ValueError(f"{name} must be >= 0{suffix} and finite, got {value!r}")


def _unit_interval(name: str, value: object) -> None:
    number = _number(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def _integer(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{name} must be in {minimum}..{maximum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _datagram_numbers(fault: Drop | Duplicate | TruncateDatagram) -> None:
    """Check and normalise a datagram fault's *datagrams*: sorted, each number once."""
    numbers: object = fault.datagrams
    if isinstance(numbers, (str, bytes)) or not isinstance(numbers, Iterable):
        raise TypeError(f"datagrams must be ints >= 1 (a tuple or a range), got {numbers!r}")
    numbers = tuple(numbers)
    for number in numbers:
        _integer("each number in datagrams", number, 1)
    object.__setattr__(fault, "datagrams", tuple(sorted(set(numbers))))


# -- the vocabulary ----------------------------------------------------------------


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Trigger:
    """When a fault starts to act: the Nth connection, after N bytes, after a pattern.

    Conditions combine: ``Trigger(connection=2, pattern=b"\\r\\n\\r\\n")`` arms the
    fault on the second connection only, once the end of the HTTP headers has
    passed.  Byte counts are per direction, counted in the fault's direction
    from the start of the connection, as the sender sent them (whatever the
    faults before this one do).  For UDP, a flow's datagrams count end to end,
    a pattern must lie inside one datagram, and the fault acts on the datagrams
    sent after the one that armed it.

    Args:
        connection: Only this connection (1 is the first the proxy accepted; for
            UDP, the first client address it heard from; a memory pair's is the
            ``connection`` given to ``inject_faults``).  None: every connection.
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

    def __repr__(self) -> str:
        # As the code that makes it, as a fault's repr is: what differs from the defaults.
        given = [
            f"{item.name}={getattr(self, item.name)!r}"
            for item in fields(self)
            if getattr(self, item.name) != item.default
        ]
        return f"Trigger({', '.join(given)})"

    def _repr_pretty_(self, printer: _Printer, cycle: bool) -> None:
        printer.text(repr(self))


class _Printer(typing.Protocol):
    """The part of a pretty printer (hypothesis's, IPython's) that `Fault` uses."""

    def text(self, obj: str, /) -> None: ...


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

    #: Which kinds of traffic the fault applies to.  Not annotated: an annotated
    #: ClassVar is still listed in ``__dataclass_fields__``, which printers such as
    #: hypothesis's read as a constructor argument.
    _applies_to = _ANY

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

    def _repr_pretty_(self, printer: _Printer, cycle: bool) -> None:
        # hypothesis (and IPython) print a drawn fault as its repr, as its trace does.
        printer.text(repr(self))


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Latency(Fault):
    """Delay every chunk (or datagram) by *delay* seconds, give or take *jitter*.

    Each delay is drawn from ``delay - jitter`` to ``delay + jitter``, and never
    less than none: with *jitter* above *delay*, some draw no delay at all.  TCP
    order is kept: jitter never lets a later chunk overtake an earlier one.
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
            raise ValueError(
                f"bytes_per_second must be > 0 and finite, got {self.bytes_per_second!r}"
            )


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Slice(Fault):
    """Fragment the stream into pieces of about *size* bytes, *delay* seconds apart.

    This is how parsers meet a delimiter split across two reads.  Piece sizes are
    drawn from ``size - jitter`` to ``size + jitter`` (at least 1).  Each piece is
    its own read (``data_received``, ``buffer_updated``, and a StreamReader's
    ``read()``): a piece goes out only once the receiver has read the one
    before, even with no *delay*.  Memory pairs guarantee it, however the reader
    awaits its reads (after ``start_tls()`` the pieces are of the TLS records,
    each its own read of the TLS layer).  The proxy guarantees it to a receiver on the same event
    loop that keeps reading, directly or through one task of its own (as
    ``asyncio.wait_for()`` reads before Python 3.12); one in another thread or
    process, or further removed, may find pieces joined, as TCP joins segments,
    unless *delay* gives it time.  It cuts the
    stream, not each write: the writes of one loop turn (those the proxy reads in
    one ``recv``) are cut as one run of bytes.

    Raises:
        ValueError: ``size < 1``, a negative *jitter* or *delay*.

    Example::

        Slice(1)  # one byte per read
    """

    _applies_to = _STREAM

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

    _applies_to = _STREAM

    after_bytes: int

    def _validate(self) -> None:
        _integer("after_bytes", self.after_bytes, 0)


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Reset(Fault):
    """Reset the connection (a real RST) after some bytes, after some time, or at once.

    The receiver in the fault's direction gets the RST (the client, by default):
    its reads raise `ConnectionResetError` (and its writes, through asyncio
    streams).  The other side gets a FIN, and what it sends afterwards is dropped;
    a memory pair resets both ends.
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

    _applies_to = _STREAM

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

    Unlike `Blackhole`, nothing is lost: remove the fault and the held bytes flow
    on, through the faults listed after it (those before it acted on them already).
    A sender awaiting ``drain()`` blocks.  ``direction="upstream"`` stalls the
    client's writes.

    Example::

        Stall(direction="upstream")
    """

    _applies_to = _STREAM


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class SlowClose(Fault):
    """Hold each FIN for *delay* seconds before passing it on.

    Only the sender's own FIN: the close that `Truncate` or `CloseAfter` makes
    is passed on at once (a `Latency` listed after them still delays it).

    Raises:
        ValueError: A negative *delay*.

    Example::

        SlowClose(2.0)
    """

    _applies_to = _STREAM

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

    _applies_to = _STREAM

    seconds: float

    def _validate(self) -> None:
        _non_negative("seconds", self.seconds)


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Refuse(Fault):
    """Reset each new connection before it reaches the server.

    The kernel completes the TCP handshake before any program sees a
    connection, so what the client sees is a reset right after connecting (on a
    proxy's Unix socket, which has no RST, EOF unless it had sent bytes).  For a
    true "connection refused" take the whole proxy down with ``proxy.down()``.
    Only ``probability`` and ``Trigger(connection=N)`` apply.

    Raises:
        ValueError: A trigger with ``after_bytes`` or a pattern.

    Example::

        Refuse(trigger=Trigger(connection=1))  # the first attempt fails
    """

    _applies_to = _STREAM

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

    _applies_to = _STREAM


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
        _integer("mask", self.mask, 1, 0xFF)
        if not self.positions and self.rate == 0:
            raise ValueError("Corrupt needs positions or a rate > 0")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Drop(Fault):
    """Lose each datagram with probability *rate* (UDP only).

    TCP cannot lose bytes: its "loss" shows as latency or a stall.  With
    *datagrams*, only those are at risk: numbered from 1 in the fault's
    direction, as the sender sent them (``Drop(datagrams=(3,))`` loses the third).

    Raises:
        ValueError: *rate* outside [0, 1], or a datagram number below 1.
        TypeError: *datagrams* is not a collection of ints.

    Example::

        Drop(0.1)
        Drop(datagrams=range(1, 3), direction="upstream")  # the first two are lost
    """

    _applies_to = _DATAGRAM

    rate: float = 1.0
    datagrams: Sequence[int] = ()

    def _validate(self) -> None:
        _unit_interval("rate", self.rate)
        _datagram_numbers(self)


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Duplicate(Fault):
    """Deliver each datagram twice with probability *rate* (UDP only).

    With *datagrams*, only those (numbered as `Drop` numbers them).

    Raises:
        ValueError: *rate* outside [0, 1], or a datagram number below 1.
        TypeError: *datagrams* is not a collection of ints.

    Example::

        Duplicate(0.5)
    """

    _applies_to = _DATAGRAM

    rate: float = 1.0
    datagrams: Sequence[int] = ()

    def _validate(self) -> None:
        _unit_interval("rate", self.rate)
        _datagram_numbers(self)


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class Reorder(Fault):
    """Shuffle datagrams within groups of *window* (UDP only).

    Datagrams are held until *window* have arrived, or for at most *max_hold*
    seconds, then released in a seeded random order that is never the order
    they came in (a group of two always swaps).

    Raises:
        ValueError: ``window < 2`` or a negative *max_hold*.

    Example::

        Reorder(4)
    """

    _applies_to = _DATAGRAM

    window: int = 2
    max_hold: float = 0.05

    def _validate(self) -> None:
        _integer("window", self.window, 2)
        _non_negative("max_hold", self.max_hold, "seconds")


@typing.final
@dataclass(frozen=True, slots=True, repr=False)
class TruncateDatagram(Fault):
    """Cut each datagram to at most *max_size* bytes, as a small MTU would (UDP only).

    ``TruncateDatagram(0)`` delivers every datagram empty: a receiver must
    survive a zero-length datagram, which UDP allows.  With *datagrams*, only
    those (numbered as `Drop` numbers them).

    Raises:
        ValueError: ``max_size < 0``, or a datagram number below 1.
        TypeError: *datagrams* is not a collection of ints.

    Example::

        TruncateDatagram(512)
    """

    _applies_to = _DATAGRAM

    max_size: int
    datagrams: Sequence[int] = ()

    def _validate(self) -> None:
        _integer("max_size", self.max_size, 0)
        _datagram_numbers(self)


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

    _applies_to = _DATAGRAM

    direction: Direction = field(default="upstream", kw_only=True)


# -- checking a list of faults -------------------------------------------------------


def check_faults(
    faults: Iterable[Fault], kind: str, wrong_kind: Callable[[Fault], str]
) -> tuple[Fault, ...]:
    """Return *faults* as a tuple, refusing anything that is not a fault of *kind*.

    The proxy, the memory transports and the schedules refuse the same things;
    each says in its own words (*wrong_kind*) why a fault of the other kind of
    traffic does not apply to it.

    Args:
        faults: What the caller was given.
        kind: ``"stream"`` or ``"datagram"``.
        wrong_kind: The error message for a fault that does not apply to *kind*.

    Raises:
        TypeError: *faults* is not an iterable of faults (a single fault included).
        ValueError: A fault that does not apply to *kind*.
    """
    if isinstance(faults, Fault):
        raise TypeError(f"faults must be a list of faults, got one fault: use [{faults!r}]")
    given: object = faults  # what a caller passes need not be what the type says
    if isinstance(given, (str, bytes)):
        # The command line's syntax ("latency=100ms") is for `nettest proxy` alone.
        raise TypeError(f"faults must be a list of faults such as [Latency(0.1)], got {faults!r}")
    try:
        result = tuple(faults)
    except TypeError:
        raise TypeError(
            f"faults must be a list of faults such as [Latency(0.1)], got {faults!r}"
        ) from None
    for fault in result:
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a fault such as Latency(0.1), got {fault!r}")
        if kind not in fault._applies_to:
            raise ValueError(wrong_kind(fault))
    return result
