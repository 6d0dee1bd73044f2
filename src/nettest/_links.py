"""One direction of an in-memory connection, and the seam where faults interpose.

Theory of operation
-------------------
Every byte a memory transport sends crosses exactly one :class:`Link`, the
stand-in for the kernel buffers and the wire between two sockets::

    sender._buffer --Link.move()--> carry(data) --> arrive(data) --> receiver rx queue
    (write buffer,                  (the wire:       (kernel receive   (delivered to the
     counts for                      the seam)        buffer)           protocol on the
     pause_writing)                                                      next loop turn)

* :meth:`Link.move` is how bytes leave a sender's write buffer.  It takes as
  much as the link's free ``capacity`` and the partial-write policy allow (a real
  ``send()`` accepts what fits in the kernel buffer), counts it as in flight and
  hands it to :attr:`Link.carry`.  ``write()`` on an empty buffer offers its data
  to ``move(offered=data)`` directly and buffers the rest, the same first
  attempt a socket transport's ``send()`` makes.
* The shortcut: when a link is *plain* (a transport receives, no partial-write
  policy, no manual pumping) and ``carry`` is still the default, the sending
  transport does what ``move()`` then ``arrive()`` would do itself, in
  ``write()`` and when its buffer drains: the same accounting and the same rx
  queue, a few calls fewer per send.  Buffered writes then reach the receiver
  as they were written; its read joins them once, just before delivery (or,
  for a plain ``StreamReader``, hands them over one by one: see
  ``_transport_reading``).  A
  fault layer that replaces ``carry`` turns the shortcut off for its link.
* Bytes stay *in flight* until the receiving protocol has been given them (or they
  are lost), so a receiver that stops reading fills the link, and then the
  sender's write buffer grows, exactly as with a socket.
* The end of the stream travels the same way: :meth:`Link.send_fin` calls
  :attr:`Link.carry_eof`, which by default calls :meth:`Link.arrive_eof`.  So
  does an RST, which the sender sends when it closes with bytes unread, or when
  bytes reach it closed: :meth:`Link.send_reset` calls :attr:`Link.carry_reset`,
  by default :meth:`Link.arrive_reset`, which ends the receiver's connection
  once it has read what arrived before.

The fault seam
--------------
``carry``, ``carry_eof`` and ``carry_reset`` are plain instance attributes, by
default the bound methods :meth:`arrive`, :meth:`arrive_eof` and
:meth:`arrive_reset`.  A fault layer replaces them on one
link (``transport._out`` is the link a transport sends on, ``transport._in`` the
one it receives on) and then, possibly later with ``loop.call_later``:

* delays: calls ``link.arrive(data)`` / ``link.arrive_eof()`` /
  ``link.arrive_reset()`` later (keep the order: an RST follows the bytes before it);
* slices: calls ``link.arrive()`` several times with pieces of ``data``;
* drops: calls ``link.lose(len(data))`` instead, freeing the capacity;
* resets: calls ``link.reset()`` (both ends get ``ConnectionResetError``).

A fault layer that must not deliver a piece before the receiver has read the
one before sets :attr:`Link.on_read`, which the receiving transport calls after
each read, once the protocol has the data.  A memory stream pair records its
protocol and StreamReader in :attr:`Link.reader_above`, for a fault layer to
ask what the reader holds unread while that protocol reads the link.

``arrive`` copes with a receiver that has closed meanwhile, as a kernel does: the
receiver sends the sender an RST, on its own link back.  Nothing else needs to
know a fault layer exists.
"""

from __future__ import annotations

import asyncio
import errno
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._endpoint import os_error

if TYPE_CHECKING:
    from ._transports import MemoryTransport

__all__ = ["ByteQueue", "Link", "PartialWrites", "connection_reset"]

#: How much of an offered send the "kernel" accepts: a fixed maximum, or a function
#: of the number of bytes offered returning how many it takes (0 means "try later").
PartialWrites = int | Callable[[int], int] | None


def connection_reset(code: int = errno.ECONNRESET) -> OSError:
    """Return the exception a socket operation raises after the peer reset it.

    `ConnectionResetError` for ``ECONNRESET``, `BrokenPipeError` for ``EPIPE``.
    """
    return os_error(code)


class ByteQueue:
    """A FIFO of bytes that keeps the written objects, so that moving them copies nothing."""

    __slots__ = ("_chunks", "_size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes) -> None:
        """Add ``data`` (not copied: pass an immutable object)."""
        self._chunks.append(data)
        self._size += len(data)

    def take(self, n: int) -> bytes:
        """Remove and return the first `n` bytes (``0 < n <= len(self)``)."""
        chunks = self._chunks
        first = chunks[0]
        if len(first) == n:
            chunks.popleft()
        elif len(first) > n:
            chunks[0] = first[n:]
            first = first[:n]
        else:
            parts = []
            need = n
            while need:
                chunk = chunks.popleft()
                if len(chunk) > need:
                    chunks.appendleft(chunk[need:])
                    chunk = chunk[:need]
                parts.append(chunk)
                need -= len(chunk)
            first = b"".join(parts)
        self._size -= n
        return first

    def clear(self) -> None:
        """Forget everything."""
        self._chunks.clear()
        self._size = 0


class Link:
    """One direction of a memory connection; see the module docstring."""

    __slots__ = (
        "_arrive",
        "_plain",
        "_waiters",
        "broken",
        "capacity",
        "carry",
        "carry_eof",
        "carry_reset",
        "fin_sent",
        "in_flight",
        "manual",
        "on_read",
        "partial_writes",
        "reader_above",
        "receiver",
        "reset_sent",
        "sender",
        "unread",
        "unread_eof",
    )

    def __init__(
        self,
        sender: MemoryTransport | None,
        receiver: MemoryTransport | None,
        *,
        capacity: int,
        manual: bool = False,
        partial_writes: int | Callable[[int], int] | None = None,
    ) -> None:
        #: The transport whose write buffer feeds this link; None when the test writes.
        self.sender = sender
        #: The transport that reads from this link; None when the test reads.
        self.receiver = receiver
        self.capacity = capacity
        self.manual = manual
        self.partial_writes = partial_writes
        #: Bytes that left the sender and were neither delivered nor lost yet.
        self.in_flight = 0
        self.fin_sent = False
        self.reset_sent = False
        #: Set once the connection was reset: nothing arrives any more.
        self.broken = False
        #: Arrived bytes and EOF waiting for the test, when the test is the receiver.
        self.unread = bytearray()
        self.unread_eof = False
        self._waiters: list[asyncio.Future[None]] = []
        # The default carrier, kept so that a sender can tell that no fault layer
        # interposes (``carry is _arrive``) and, when the link is also plain (a
        # transport receives, every send is taken whole, no pumping), hand bytes to
        # the receiver itself: see MemoryTransport.write() and _write_ready().
        self._arrive: Callable[[bytes], None] = self.arrive
        self._plain = receiver is not None and partial_writes is None and not manual
        self.carry: Callable[[bytes], None] = self._arrive
        self.carry_eof: Callable[[], None] = self.arrive_eof
        self.carry_reset: Callable[[], None] = self.arrive_reset
        #: Called after each read by the receiving transport (a fault layer's hook).
        self.on_read: Callable[[], None] | None = None
        #: A memory stream pair's protocol and the StreamReader it feeds.
        self.reader_above: tuple[asyncio.BaseProtocol, asyncio.StreamReader] | None = None

    @property
    def room(self) -> int:
        """Bytes the link can still take."""
        return self.capacity - self.in_flight

    # -- the sender's side ---------------------------------------------------

    def move(self, limit: int | None = None, offered: bytes | None = None) -> int:
        """Move bytes from the sender's write buffer onto the wire; return how many.

        At most `limit` bytes, the link's free capacity and what the partial-write
        policy accepts of what is offered.  ``write()`` with an empty buffer passes
        its data as `offered` instead, and buffers what was not taken: the same
        first ``send()`` attempt a socket transport makes, without a copy.
        """
        assert self.sender is not None
        buffer = self.sender._buffer
        n = buffer._size if offered is None else len(offered)
        room = self.capacity - self.in_flight
        if room < n:
            n = room
        if limit is not None and limit < n:
            n = limit
        policy = self.partial_writes
        if policy is not None and n > 0:
            if isinstance(policy, int):
                n = min(n, policy)
            else:
                accepted = policy(n)
                if isinstance(accepted, bool) or not isinstance(accepted, int):
                    raise TypeError(
                        f"partial_writes must return an int, got {accepted!r} from {policy!r}"
                    )
                n = min(n, max(0, accepted))
        if n <= 0:
            return 0
        self.in_flight += n
        if offered is None:
            self.carry(buffer.take(n))
        else:
            self.carry(offered if n == len(offered) else offered[:n])
        return n

    def send_fin(self) -> None:
        """Send the end of the stream after everything moved so far (once)."""
        if self.fin_sent:
            return
        self.fin_sent = True
        self.carry_eof()

    def send_reset(self) -> None:
        """Send an RST after everything moved so far (once): the sender closed.

        Nothing the sender sends arrives after it.
        """
        if self.reset_sent:
            return
        self.reset_sent = True
        self.carry_reset()

    # -- the receiver's side -------------------------------------------------

    def arrive(self, data: bytes) -> None:
        """Hand in-flight ``data`` to the receiver (the default :attr:`carry`)."""
        receiver = self.receiver
        if receiver is not None and not self.broken and not receiver._closed:
            receiver._rx_push(data)
            return
        if self.broken:
            self.in_flight -= len(data)
            return
        if receiver is None:
            self.unread += data
            self._wake()
        elif receiver._closed:
            # A kernel answers data for a closed socket with a reset.
            self.in_flight -= len(data)
            receiver._out.send_reset()

    def arrive_eof(self) -> None:
        """Hand the end of the stream to the receiver (the default :attr:`carry_eof`)."""
        if self.broken:
            return
        if self.receiver is None:
            self.unread_eof = True
            self._wake()
        else:
            self.receiver._rx_eof_arrived()

    def arrive_reset(self) -> None:
        """Hand the sender's RST to the receiver (the default :attr:`carry_reset`).

        The receiver reads what arrived before it, then its connection ends in
        an error; nothing arrives on this link any more.
        """
        if self.broken:
            return
        self.broken = True
        if self.receiver is None:
            self._wake()
        else:
            self.receiver._rx_break_by_peer()

    def lose(self, nbytes: int) -> None:
        """Forget ``nbytes`` in-flight bytes that will never arrive (a dropped segment)."""
        self.in_flight -= nbytes
        self.consumed(0)

    def consumed(self, nbytes: int) -> None:
        """Note that the receiver took ``nbytes``; the sender may send more."""
        self.in_flight -= nbytes
        sender = self.sender
        if sender is not None and sender._writing:
            sender._schedule_write()

    def take_unread(self, max_bytes: int | None = None) -> bytes:
        """Take arrived bytes off the link on behalf of a test playing the receiver.

        `max_bytes` is None or at least 1 (the caller checks it).
        """
        n = len(self.unread) if max_bytes is None else min(max_bytes, len(self.unread))
        data = bytes(self.unread[:n])
        del self.unread[:n]
        if n:
            self.consumed(n)
        return data

    async def wait_unread(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, re-checking whenever something arrives."""
        loop = asyncio.get_running_loop()
        while not predicate():
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- resets --------------------------------------------------------------

    def reset(self) -> None:
        """Reset the connection this link belongs to: both ends get ConnectionResetError."""
        for end in (self.sender, self.receiver):
            if end is not None:
                end._reset_connection()
        if self.sender is None or self.receiver is None:
            self.broken = True
            self._wake()
