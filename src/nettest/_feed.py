"""Delivery events, and the drivers that deliver chunks or schedules to a reader.

Theory of operation
-------------------
A *schedule* is a sequence of events, as a peer and a transport would produce
them: reads (`Chunk`, or plain `bytes`), pauses of reading, delays in loop
time, then an end (`Eof`, `ConnectionLost`, or nothing).  The drivers `feed`
and `feed_async` play the transport: they turn each event into the calls the
target expects (``data_received``, ``get_buffer``/``buffer_updated``,
``feed_data``, a plain call...).

While reading is paused, a real transport leaves incoming bytes in the
kernel, and the first read after resuming returns all of them at once.  The
drivers do the same: chunks that arrive while paused are held back and
delivered as one read on `ResumeReading`, so pauses also coalesce reads.  An
end that arrives while paused waits for the resume too, `Eof` and
`ConnectionLost` alike: a kernel keeps its receive queue when an RST arrives,
so the resume delivers what was held back, then the end (one loop turn later
under `feed_async`, as a socket reports the RST on the read after the data).
If reading never resumes, the target never learns of the end, as a paused
transport does not.  Nothing after an end arrives, paused or not.

A real transport stops reading as soon as its protocol closes or aborts it.
The drivers look for the transport a protocol was given in its ``transport``
and ``_transport`` attributes (where asyncio's own protocols and most others
keep it), and deliver nothing more once its ``is_closing()`` returns True.
``connection_lost(None)`` is then the transport's to call, as after any
``close()``: the drivers only play the reading half of a transport.

This module does not import hypothesis: the values are plain data, and the
strategies that draw them live in `nettest._strategies`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import functools
import os
import socket
import sys
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast, runtime_checkable

from ._datagrams import MemoryDatagramTransport
from ._recording import check_seconds
from ._transports import MemoryTransport

if TYPE_CHECKING:
    from ._strategies import MessageStream

__all__ = [
    "Chunk",
    "ConnectionLost",
    "Datagram",
    "Delay",
    "Eof",
    "Event",
    "PauseReading",
    "ResumeReading",
    "feed",
    "feed_async",
]


# Loop turns a memory transport needs to turn what it was fed into one read.
_TURNS = 3


def _check_data(name: str, value: object) -> bytes:
    """Return bytes-like ``value`` as bytes; raise TypeError naming ``name`` if it is not."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes, bytearray or memoryview, got {type(value).__name__}")


@typing.final
@dataclass(frozen=True, slots=True)
class Chunk:
    """One read: ``data`` arrives at once.

    Attributes:
        data: The bytes of the read, at least one.  A `bytearray` or
            `memoryview` is kept as `bytes`.

    Raises:
        TypeError: ``data`` is not bytes-like.
        ValueError: ``data`` is empty.  A stream has no empty reads: a read
            of no bytes is how a socket reports EOF, which is `Eof`.
    """

    data: bytes

    def __post_init__(self) -> None:
        data = _check_data("data", self.data)
        if not data:
            # Delivered, b"" would be data_received(b""), which no transport
            # makes, or an EOF to a sans-IO callable: neither is one read.
            raise ValueError(
                "data must hold at least one byte, got b'': a stream has no empty "
                "reads; write Eof() for an EOF, or leave the chunk out"
            )
        object.__setattr__(self, "data", data)


@typing.final
@dataclass(frozen=True, slots=True)
class PauseReading:
    """Reading stops: later chunks are held back until `ResumeReading`, then arrive as one read."""


@typing.final
@dataclass(frozen=True, slots=True)
class ResumeReading:
    """Reading restarts: the chunks held back since `PauseReading` arrive as one read."""


@typing.final
@dataclass(frozen=True, slots=True)
class Delay:
    """Nothing arrives for ``seconds`` of loop time (`asyncio.sleep`, so looptime skips it).

    Attributes:
        seconds: How long to wait: an int or float, >= 0 and finite.

    Raises:
        TypeError: ``seconds`` is not a number (a bool or a str included).
        ValueError: ``seconds`` is negative, NaN or infinite.
    """

    seconds: float

    def __post_init__(self) -> None:
        check_seconds("seconds", self.seconds, allow_zero=True)


@typing.final
@dataclass(frozen=True, slots=True)
class Eof:
    """The peer closed its side cleanly: ``eof_received()``, ``feed_eof()``, or ``b""``.

    Events after it are not delivered, even while reading is paused: the
    `ResumeReading` then delivers what was held back before the EOF, then the EOF.
    """


def _reset() -> Exception:
    # As a socket raises it: errno and strerror, not just a message.
    return ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))


@typing.final
@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The connection broke: ``connection_lost(error)`` without an EOF first.

    Events after it are not delivered.  While reading is paused it waits for
    the `ResumeReading`, which delivers what was held back, then the loss: a
    kernel keeps what it received when an RST arrives.  Two values compare
    equal when their errors have the same type and arguments.

    Attributes:
        error: The exception the target receives, this very object.  By
            default ``ConnectionResetError(errno.ECONNRESET, 'Connection reset
            by peer')``, as a socket raises it after a TCP reset.

    Raises:
        TypeError: ``error`` is not an `Exception` instance (an exception class
            included: write ``ConnectionLost(OSError())``).
    """

    error: Exception = dataclasses.field(default_factory=_reset, compare=False)

    def __post_init__(self) -> None:
        error: object = self.error
        if isinstance(error, type) and issubclass(error, Exception):
            raise TypeError(
                f"error must be an Exception instance, not the class {error.__name__}; "
                f"write ConnectionLost({error.__name__}())"
            )
        if not isinstance(error, Exception):
            raise TypeError(f"error must be an Exception instance, got {error!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConnectionLost):
            return NotImplemented
        return (type(self.error), self.error.args) == (type(other.error), other.error.args)

    def __hash__(self) -> int:
        return hash((type(self.error), self.error.args))


@typing.final
@dataclass(frozen=True, slots=True)
class Datagram:
    """A datagram as delivered, drawn by `datagram_schedules`.

    Attributes:
        data: The bytes that arrive; shorter than what was sent if truncated.
            A `bytearray` or `memoryview` is kept as `bytes`.
        index: The position of the datagram in the list that was sent, >= 0.

    Raises:
        TypeError: ``data`` is not bytes-like, or ``index`` is not an int.
        ValueError: ``index`` is negative.
    """

    data: bytes
    index: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _check_data("data", self.data))
        index: object = self.index
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int >= 0, got {index!r}")
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index!r}")


#: One step of a delivery schedule.
Event: TypeAlias = Chunk | PauseReading | ResumeReading | Delay | Eof | ConnectionLost


@runtime_checkable
class _MemoryTransportLike(Protocol):
    """The test controls of ``nettest.MemoryTransport`` that the drivers use."""

    def feed_data(self, data: bytes) -> None: ...
    def feed_eof(self) -> None: ...


def _feeds_its_protocol(transport: _MemoryTransportLike) -> bool:
    """Tell a MemoryTransport the test feeds from an end of a pair, which refuses feed_*().

    An end of a pair reads from the other transport; a transport of its own
    reads from the test.  Asked of its incoming link, not by trying
    ``feed_data(b"")``: that raises `RuntimeError` after ``feed_eof()`` too, an
    error the caller must see, not a sign of a pair.
    """
    if isinstance(transport, MemoryTransport):
        return transport._in.sender is None
    return True


def _events(items: object, caller: str) -> Iterator[Event | Datagram]:
    """Normalise ``items`` to events, rejecting anything else with the offending value.

    A `Datagram` stays one, because an empty datagram is a real arrival
    while an empty read of a stream is none.
    """
    # Not imported here, to keep hypothesis optional: a strategy can only
    # exist once hypothesis is imported.
    hypothesis = sys.modules.get("hypothesis.strategies")
    if hypothesis is not None and isinstance(items, hypothesis.SearchStrategy):
        call = "await nst.feed_async" if caller == "feed_async" else "nst.feed"
        raise TypeError(
            f"chunks_or_schedule is a hypothesis strategy, but {caller}() needs the values "
            "it draws: decorate the test with @given(strategy) and pass the drawn argument, "
            f"as in `@given(nst.schedules(DATA))` on `def test(schedule)` calling "
            f"`{call}(target, schedule)`"
        )
    chunks = getattr(items, "chunks", None)
    if isinstance(chunks, tuple) and hasattr(items, "messages"):
        items = chunks  # a MessageStream
    if isinstance(items, (bytes, bytearray, memoryview, str)):
        raise TypeError(
            "chunks_or_schedule must be an iterable of chunks, "
            f"not a single {type(items).__name__}; write [{items!r}]"
        )
    try:
        iterator = iter(typing.cast("Iterable[object]", items))
    except TypeError:
        raise TypeError(
            "chunks_or_schedule must be an iterable of bytes and schedule events, "
            f"a list of Datagram values or a MessageStream, got {items!r}"
        ) from None
    for item in iterator:
        if isinstance(item, (bytes, bytearray, memoryview)):
            if len(item):
                yield Chunk(bytes(item))
        elif isinstance(
            item, (Chunk, Datagram, PauseReading, ResumeReading, Delay, Eof, ConnectionLost)
        ):
            yield item
        else:
            raise TypeError(f"chunks_or_schedule must hold bytes or schedule events, got {item!r}")


# Where protocols keep the transport given to connection_made: asyncio's own
# protocols (StreamReaderProtocol) and nettest.sanitize() use _transport, the
# asyncio documentation's examples use transport.
_TRANSPORT_ATTRIBUTES = ("transport", "_transport")


def _transports_of(protocol: object) -> list[object]:
    return [
        transport
        for name in _TRANSPORT_ATTRIBUTES
        if (transport := getattr(protocol, name, None)) is not None
    ]


def _is_closing(transport: object) -> bool:
    is_closing = getattr(transport, "is_closing", None)
    # `is True`: a Mock's is_closing() returns a Mock, which is truthy.
    return callable(is_closing) and is_closing() is True


class _Sink:
    """Turns reads, EOF and loss into the calls one kind of target expects."""

    def __init__(self, target: object, addr: Any) -> None:
        if isinstance(target, asyncio.StreamWriter):
            # A memory_stream_pair's writer: its transport, which can reset too.
            target = target.transport
        self.target = target
        self.addr = addr
        self.data: Callable[[bytes], None]
        self.eof: Callable[[], None]
        self.lost: Callable[[Exception], None]
        self.datagrams = False
        self.transport = False
        self.protocol = False
        if isinstance(target, asyncio.StreamReader):
            self.data, self.eof, self.lost = (
                target.feed_data,
                target.feed_eof,
                target.set_exception,
            )
        elif hasattr(target, "get_buffer") and hasattr(target, "buffer_updated"):
            self.protocol = True
            self.data, self.eof, self.lost = self._buffered, self._protocol_eof, self._lost
        elif hasattr(target, "data_received"):
            self.protocol = True
            self.data, self.eof, self.lost = self._received, self._protocol_eof, self._lost
        elif hasattr(target, "datagram_received"):
            self.protocol = True
            self.datagrams = True
            self.data, self.eof = self._datagram, self._no_eof
            self.lost = target.error_received  # type: ignore[attr-defined]
        elif isinstance(target, MemoryDatagramTransport):
            self._datagram_transport(target)
        elif isinstance(target, _MemoryTransportLike) and _feeds_its_protocol(target):
            self.transport = True
            self.data, self.eof = target.feed_data, target.feed_eof
            self.lost = self._transport_lost
        elif hasattr(target, "write") and hasattr(target, "write_eof"):
            # An end of a memory_transport_pair (or any write transport): what
            # we write is what the peer's protocol reads.
            self.transport = True
            self.data, self.eof = target.write, target.write_eof
            self.lost = self._writer_lost
        elif callable(target):
            self.data, self.eof, self.lost = target, self._call_eof, self._ignore
        else:
            raise TypeError(
                "target must be an asyncio.Protocol, BufferedProtocol, DatagramProtocol, "
                "StreamReader, StreamWriter, MemoryTransport or a callable taking bytes, "
                f"got {target!r}"
            )
        # The transport the protocol was given, kept in case the protocol drops
        # its reference when it closes it.
        self.given = _transports_of(target) if self.protocol else []

    def _datagram_transport(self, target: MemoryDatagramTransport) -> None:
        """Feed a memory datagram transport's protocol, or its peer's through it."""
        self.transport = True
        self.datagrams = True
        self.eof = self._no_eof
        peer = target._peer
        if peer is not None:
            # An end of a pair: it sends each datagram to its peer, whose protocol
            # receives it from this end's address, and the peer gets the errors.
            if self.addr is not None:
                raise TypeError(
                    f"addr: {target!r} is an end of a memory_datagram_pair, whose "
                    f"peer receives from its address; leave addr out, got {self.addr!r}"
                )
            to = None if target.get_extra_info("peername") else peer.get_extra_info("sockname")
            self.data = functools.partial(target.sendto, addr=to)
            self.lost = peer.feed_error
            return
        source = target.get_extra_info("peername") if self.addr is None else self.addr
        if source is None and target.get_extra_info("socket").family != socket.AF_UNIX:
            raise TypeError(
                f"addr: {target!r} is not connected, so each datagram needs a source "
                "address: pass addr=(host, port)"
            )
        self.data = functools.partial(target.feed_datagram, addr=source)
        self.lost = target.feed_error

    def closing(self) -> bool:
        """Tell whether the protocol closed or aborted its transport, which then reads no more."""
        if not self.protocol:
            return False
        return any(_is_closing(t) for t in (*self.given, *_transports_of(self.target)))

    def _received(self, data: bytes) -> None:
        self.target.data_received(data)  # type: ignore[attr-defined]

    def _buffered(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            # -1, as asyncio's socket transports ask: "any size will do".
            buffer = memoryview(self.target.get_buffer(-1))  # type: ignore[attr-defined]
            if not len(buffer):
                raise RuntimeError("get_buffer() returned an empty buffer")
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            self.target.buffer_updated(n)  # type: ignore[attr-defined]
            view = view[n:]

    def _protocol_eof(self) -> None:
        # A falsy eof_received() makes a real transport close itself; a protocol
        # that closed its transport in it left connection_lost to that transport.
        if not self.target.eof_received() and not self.closing():  # type: ignore[attr-defined]
            self.target.connection_lost(None)  # type: ignore[attr-defined]

    def _lost(self, error: Exception) -> None:
        self.target.connection_lost(error)  # type: ignore[attr-defined]

    def _datagram(self, data: bytes) -> None:
        self.target.datagram_received(data, self.addr)  # type: ignore[attr-defined]

    def _no_eof(self) -> None:
        raise TypeError("a DatagramProtocol has no EOF: remove Eof() from the schedule")

    def _call_eof(self) -> None:
        self.target(b"")  # type: ignore[operator]

    def _transport_lost(self, error: Exception) -> None:
        if isinstance(error, ConnectionResetError) and isinstance(self.target, MemoryTransport):
            # What feed_reset() does, with the schedule's own error object, so that
            # the protocol gets the very error the schedule holds.
            self.target._test_link("in")
            self.target._break_link(error)
        elif isinstance(error, ConnectionResetError):
            self.target.feed_reset()  # type: ignore[attr-defined]
        else:
            self.target.feed_error(error)  # type: ignore[attr-defined]

    def _writer_lost(self, error: Exception) -> None:
        reset = getattr(self.target, "reset", None)
        if callable(reset):
            reset()
        else:
            self.target.abort()  # type: ignore[attr-defined]

    @staticmethod
    def _ignore(error: Exception) -> None:
        """A sans-IO parser sees a lost connection as data that stops."""


class _Driver:
    """The state shared by `feed` and `feed_async`: pauses, and what they hold back.

    `step` is a generator that yields after each call of the target, so that
    `feed_async` can let the loop run between the calls one event makes (the
    reads held back by a pause, then the end that waited for the resume).
    """

    def __init__(self, target: object, addr: Any) -> None:
        self.sink = _Sink(target, addr)
        self.paused = False
        # Reads held back by a pause; for a datagram target, its errors too, in order.
        self.held: list[bytes | ConnectionLost] = []
        # An Eof or ConnectionLost that arrived while reading was paused.
        self.end: Eof | ConnectionLost | None = None
        # A transport already closing when the delivery starts reads nothing.
        self.done = self.sink.closing()

    def stopped(self) -> bool:
        """Tell whether nothing more is delivered: the stream ended or the protocol closed."""
        if not self.done and self.sink.closing():
            self.done = True
        return self.done

    def step(self, event: Event | Datagram) -> Iterator[None]:
        if self.stopped():
            return
        if isinstance(event, (Chunk, Datagram)):
            if self.end is not None or not (event.data or self.sink.datagrams):
                return
            if self.paused:
                self.held.append(event.data)
            else:
                yield from self._read(event.data)
        elif isinstance(event, PauseReading):
            self.paused = True
        elif isinstance(event, ResumeReading):
            self.paused = False
            held, self.held = self.held, []
            if held and not self.sink.datagrams:
                held = [b"".join(cast("list[bytes]", held))]
            for item in held:
                if isinstance(item, ConnectionLost):
                    yield from self._error(item.error)
                else:
                    yield from self._read(item)
            if self.end is not None:
                yield from self._finish(self.end)
        elif isinstance(event, ConnectionLost) and self.sink.datagrams:
            # An ICMP error: it passes, as a datagram does, in its place.
            if self.paused:
                self.held.append(event)
            else:
                yield from self._error(event.error)
        elif isinstance(event, (Eof, ConnectionLost)):
            if self.end is not None:
                return  # the stream already ended, while paused
            if self.paused:
                self.end = event
            else:
                yield from self._finish(event)

    def _read(self, data: bytes) -> Iterator[None]:
        if not self.stopped():
            self.sink.data(data)
            yield

    def _error(self, error: Exception) -> Iterator[None]:
        if not self.stopped():
            self.sink.lost(error)
            yield

    def _finish(self, end: Eof | ConnectionLost) -> Iterator[None]:
        if not self.stopped():
            self.done = True
            if isinstance(end, Eof):
                self.sink.eof()
            else:
                self.sink.lost(end.error)
            yield


def feed(
    target: object,
    chunks_or_schedule: Iterable[bytes | Event | Datagram] | MessageStream,
    *,
    addr: Any = None,
) -> None:
    """Deliver reads, or a schedule without delays, to ``target`` now.

    This is the transport's half of a test: each chunk becomes one read of the
    target.  Use `feed_async` for schedules with `Delay` events, or when the
    target's reaction needs the event loop to run between reads.

    ``target`` must already be connected: call ``connection_made`` yourself
    before feeding a protocol.  Each kind of target gets:

    - `asyncio.Protocol` (anything with ``data_received``): ``data_received``;
      on `Eof`, ``eof_received``, then ``connection_lost(None)`` if that
      returned a false value; on `ConnectionLost`, ``connection_lost(error)``;
    - `asyncio.BufferedProtocol`: ``get_buffer(-1)``, as a socket transport
      calls it, and ``buffer_updated`` as often as the buffers it returns need,
      then the same as a protocol;
    - `asyncio.DatagramProtocol`: ``datagram_received(data, addr)``, and
      ``error_received(error)`` on `ConnectionLost`, which ends nothing: the
      datagrams after it are delivered too, as after an ICMP error;
    - `asyncio.StreamReader`: ``feed_data``, ``feed_eof``, ``set_exception``;
    - a ``nettest.MemoryTransport`` the test plays the peer of (`feed_async`
      only): its ``feed_data``, ``feed_eof`` and ``feed_error`` test controls,
      and for a `ConnectionResetError` the reset ``feed_reset()`` makes, with
      the schedule's own error object, so data reaches its protocol through
      the transport's own reading and flow control;
    - an end of a ``nettest.memory_transport_pair()``, or any other write
      transport (`feed_async` only): ``write``, ``write_eof``, and ``reset()``
      (else ``abort()``) on `ConnectionLost`, so the peer's protocol reads the
      schedule;
    - a ``nettest.MemoryDatagramTransport`` the test plays the peer of
      (`feed_async` only): ``feed_datagram(data, addr)``, from its connected
      peer's address unless ``addr`` says otherwise (an unconnected one needs
      ``addr``), and ``feed_error`` on `ConnectionLost` (not an end either);
    - an end of a ``nettest.memory_datagram_pair()`` (`feed_async` only):
      ``sendto`` to its peer, whose protocol receives each datagram from this
      end's address (so no ``addr``), and the peer's ``feed_error`` on
      `ConnectionLost` (not an end either);
    - any other callable (a sans-IO parser): called with each chunk, and
      with ``b""`` on `Eof`.  A `ConnectionLost` just ends the delivery.

    A protocol that closes or aborts its transport (the one in its
    ``transport`` or ``_transport`` attribute, once its ``is_closing()``
    returns True) gets nothing more, as a real transport stops reading at
    once: no reads, no EOF, no loss.  ``connection_lost(None)`` is then the
    transport's to call, as asyncio's and nettest's transports do on a later
    loop turn (also when the protocol closed it in ``eof_received``); a stub
    transport that only records ``close()`` leaves it to the test.  The
    drivers do not follow the protocol's own ``pause_reading()``: feed a
    ``nettest.MemoryTransport`` to exercise its read backpressure.

    While reading is paused, reads are held back and arrive as one on
    `ResumeReading`; an `Eof` or a `ConnectionLost` waits for the resume too,
    after the reads held back, as a kernel keeps what it received when an RST
    arrives.  If reading never resumes, the target never learns of the end.

    Args:
        target: What receives the data.
        chunks_or_schedule: An iterable of `bytes` chunks and schedule events
            (`Chunk`, `PauseReading`, `ResumeReading`, `Eof`, `ConnectionLost`),
            a list of `Datagram` values, or a `MessageStream`.
        addr: The source address passed to ``datagram_received``, or given
            to a memory datagram transport's ``feed_datagram``.

    Raises:
        TypeError: ``target`` or an item is of no supported kind, ``target``
            is a transport, which needs `feed_async`, ``addr`` is missing for
            an unconnected memory datagram transport or given for an end of a
            pair, the schedule holds an `Eof` for a datagram target, or
            ``chunks_or_schedule`` is a hypothesis strategy rather than what
            it draws (use ``@given``).
        ValueError: The schedule holds a `Delay`; use `feed_async`.  A schedule
            is checked whole before the first read: nothing is delivered.

    Example (in an async test: a StreamReader belongs to the running loop)::

        reader = asyncio.StreamReader()
        feed(reader, [b"GET / HT", b"TP/1.1\\r\\n", Eof()])
        assert await reader.read() == b"GET / HTTP/1.1\\r\\n"
    """
    driver = _Driver(target, addr)
    if driver.sink.transport:
        where = "" if driver.sink.datagrams else ", where reads would coalesce"
        raise TypeError(
            f"{target!r} delivers on later loop turns{where}: use `await feed_async(...)`"
        )
    # Checked whole before the first read: a schedule refused half-way would
    # leave the target with the reads before the refusal.
    events = list(_events(chunks_or_schedule, "feed"))
    for event in events:
        if isinstance(event, Eof) and driver.sink.datagrams:
            driver.sink.eof()  # raises: a datagram target has no EOF
        if isinstance(event, Delay):
            raise ValueError(
                f"chunks_or_schedule holds {event!r}: delays need the event loop, "
                "use `await feed_async(...)` (or draw schedules(delays=False), or "
                "datagram_schedules() without delays=True)"
            )
    for event in events:
        for _ in driver.step(event):
            pass


async def feed_async(
    target: object,
    chunks_or_schedule: Iterable[bytes | Event | Datagram] | MessageStream,
    *,
    addr: Any = None,
) -> None:
    """Deliver reads or a schedule to ``target``, letting the event loop run between reads.

    Like `feed`, but each read is followed by a pass of the event loop, as
    with a real transport (a few passes for a memory transport, so that each
    chunk stays one read), and a `Delay` sleeps for its loop time (so under
    looptime it costs no wall time).  The reads a `ResumeReading` releases and
    an end that waited for it are separate calls, with the loop run between
    them, as a socket reports an RST on the read after the data.

    Args:
        target: What receives the data; see `feed`.
        chunks_or_schedule: Chunks and schedule events; see `feed`.
        addr: The source address passed to ``datagram_received``.

    Raises:
        TypeError: ``target`` or an item is of no supported kind, the schedule
            holds an `Eof` for a datagram target (refused before the first
            read), or ``chunks_or_schedule`` is a hypothesis strategy rather
            than what it draws (use ``@given``).
        RuntimeError: A ``nettest.MemoryTransport`` refused the data, for
            example after its ``feed_eof()``.

    Example::

        await feed_async(protocol, [b"PI", Delay(0.5), b"NG\\r\\n", Eof()])
    """
    driver = _Driver(target, addr)
    turns = _TURNS if driver.sink.transport else 1
    events: Iterable[Event | Datagram] = _events(chunks_or_schedule, "feed_async")
    if driver.sink.datagrams:
        # Checked whole before the first datagram: a datagram target has no EOF.
        # (Other events are read as they come: a generator may look at the
        # target between them.)
        events = list(events)
        if any(isinstance(event, Eof) for event in events):
            driver.sink.eof()  # raises
    for event in events:
        if isinstance(event, Delay):
            await asyncio.sleep(event.seconds)
            continue
        calls = 0
        for _ in driver.step(event):
            calls += 1
            await _turns(turns)
        if not calls:
            await _turns(turns)


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)
