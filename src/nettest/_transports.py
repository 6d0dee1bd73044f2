"""In-memory stream transports that behave like asyncio's selector socket transports.

:class:`MemoryTransport` follows ``_SelectorSocketTransport`` (CPython
``asyncio/selector_events.py``) callback for callback: ``connection_made`` and the
first read are scheduled with ``call_soon``; one read per loop turn of at most
256 KiB; ``write()`` sends what the "kernel" accepts at once and buffers the rest;
water marks pause and resume the protocol (see :mod:`nettest._flow`); ``close()``
waits for the buffer to drain and ``connection_lost`` always comes from the loop.
Bytes move between the two ends of a pair through :class:`nettest._links.Link`,
which holds the in-flight capacity and the seam for fault injection.

Where CPython versions differ, the newer behaviour is used when it fixes a bug
that real sockets do not have (a paused reader is never woken by
``connection_made``, as in 3.12+).

This module holds the transport's construction, its sending side, closing and
resets.  The receiving side is in ``_transport_reading``, the methods for a test
playing the peer in ``_transport_controls``, and the pair makers
(`memory_transport_pair`, `memory_stream_pair`) in ``_transport_pairs``.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import socket
import sys
import typing
from asyncio import constants as _asyncio_constants
from collections.abc import Callable, Sequence
from typing import Any

from ._endpoint import (
    AF_UNIX,
    FlowControlled,
    MemorySocket,
    check_bool,
    check_count,
    check_protocol,
    connection_addresses,
    os_error,
    released,
)
from ._hygiene import track
from ._links import ByteQueue, Link, PartialWrites, connection_reset
from ._transport_controls import _PeerControls
from ._transport_reading import _MAX_READ, _Chunker, _Receiving, _unjoined_reads_invisible
from ._transport_reading import Chunks as Chunks

__all__ = [
    "DEFAULT_CAPACITY",
    "Chunks",
    "MemorySocket",
    "MemoryTransport",
]

logger = logging.getLogger("asyncio")

#: Bytes in flight per direction by default: a stand-in for the kernel's buffers, the
#: default receive buffer of a Linux TCP socket (``net.ipv4.tcp_rmem``).
DEFAULT_CAPACITY = 128 * 1024
#: As in asyncio: the connection-lost write warning threshold.
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5
#: From 3.12 asyncio's selector transport has a ``writelines()`` of its own.
_WRITELINES_OF_ITS_OWN = sys.version_info >= (3, 12)
#: Until 3.12.9 and 3.13.2 that ``writelines()`` never pauses the protocol (gh-127655).
_WRITELINES_NEVER_PAUSES = any(
    first <= sys.version_info < fixed
    for first, fixed in (((3, 12), (3, 12, 9)), ((3, 13), (3, 13, 2)))
)


def _check_capacity(capacity: int) -> int:
    """Raise unless `capacity` is an int of at least 1 byte."""
    return check_count("capacity", capacity)


def _check_partial_writes(policy: PartialWrites) -> PartialWrites:
    """Raise unless `policy` is None, a function, or an int of at least 1 byte."""
    if policy is None or callable(policy):
        return policy
    if isinstance(policy, bool) or not isinstance(policy, int):
        raise TypeError(
            f"partial_writes must be an int >= 1 (bytes per send), a function or None, "
            f"got {policy!r}"
        )
    return check_count("partial_writes", policy, unit=" byte per send")


@typing.final
class MemoryTransport(FlowControlled, _Receiving, _PeerControls, asyncio.Transport):
    """An `asyncio.Transport` in memory, for one protocol, where the test plays the peer.

    The transport behaves like a TCP socket transport of the default event loop:
    ``connection_made`` comes from the loop, data is delivered one read per loop
    turn, water marks pause and resume the protocol's writing, ``close()`` lets the
    write buffer drain first, and ``loop.start_tls()`` works over it.  The test
    sees everything the protocol writes (:meth:`take_written`), which frees the
    in-flight ``capacity`` the way a reading peer would, and feeds the protocol data,
    EOF, a reset or an error (:meth:`feed_data` and friends).

    Made directly, the test is the peer; :func:`memory_transport_pair` makes two
    transports connected to each other instead, and the ``feed_*``/``*_written``
    methods then raise `RuntimeError`.  Must be created while the loop runs.

    Args:
        protocol: The protocol to connect (`asyncio.Protocol` or
            `asyncio.BufferedProtocol`).
        capacity: Bytes the peer accepts before the protocol's writes stay in the
            write buffer (the kernel buffers of a real connection).
        manual: If true, nothing the protocol writes leaves the write buffer until
            :meth:`pump`.
        partial_writes: How much of each send the peer accepts: a maximum number of
            bytes or a function of the bytes offered.
        chunks: How received data is cut into ``data_received`` calls: a list of
            sizes used once each, in order (then reads are whole), or a function
            of the bytes available returning the next size (0 waits for more).
        sockname: The local address (default: a loopback address with an ephemeral
            port).
        peername: The peer's address (default: ``127.0.0.1:8080``).
        family: `socket.AF_INET`, `socket.AF_INET6` or `socket.AF_UNIX`
            (default: the family of the addresses given, else IPv4).

    Raises:
        TypeError: a protocol without the methods of an `asyncio.Protocol` (or
            `asyncio.BufferedProtocol`), or ``capacity``, ``partial_writes``,
            ``chunks`` or ``family`` of the wrong type, or an address that is not
            one of ``family``.
        ValueError: ``capacity``, ``partial_writes`` or a chunk size below 1, an
            unknown ``family``, an address out of range, or the two addresses of
            different families.

    Example:
        A test reading what a protocol wrote and answering it::

            transport = MemoryTransport(protocol)
            await asyncio.sleep(0)  # connection_made
            transport.feed_data(b"PING\\n")
            assert await transport.receive_written(5) == b"PONG\\n"
            transport.close()
    """

    _start_tls_compatible = True
    # No sendfile() system call to offer: loop.sendfile() uses its fallback.
    _sendfile_compatible = _asyncio_constants._SendfileMode.FALLBACK
    max_size = _MAX_READ

    # The state every write and read touches lives in slots: on Python 3.13 the
    # instance dict of a subclass of asyncio's slotted transport classes is about
    # three times slower to read.  The instance keeps a dict (from the mixins), so a
    # test can still patch a method or set an attribute of its own.
    __slots__ = (
        "_buffer",
        "_buffered",
        "_chunker",
        "_closed",
        "_closing",
        "_conn_lost",
        "_drained",
        "_eof",
        "_eof_seen",
        "_flow",
        "_in",
        "_in_writelines",
        "_info",
        "_out",
        "_paused",
        "_peer",
        "_protocol",
        "_read_context",
        "_read_event",
        "_read_handle",
        "_reader_on",
        "_reading_log",
        "_ready",
        "_rx",
        "_rx_eof",
        "_rx_error",
        "_rx_stalled",
        "_tx_error",
        "_unix",
        "_unjoined",
        "_write_context",
        "_write_handle",
        "_writing",
    )

    _out: Link
    _in: Link

    def __init__(
        self,
        protocol: asyncio.BaseProtocol,
        *,
        capacity: int = DEFAULT_CAPACITY,
        manual: bool = False,
        partial_writes: int | Callable[[int], int] | None = None,
        chunks: Sequence[int] | Callable[[int], int] | None = None,
        sockname: Any = None,
        peername: Any = None,
        family: int | None = None,
    ) -> None:
        check_protocol("protocol", protocol, "stream")
        check_bool("manual", manual)
        _check_capacity(capacity)
        _check_partial_writes(partial_writes)
        _Chunker(chunks)
        family, sockname, peername = connection_addresses(
            family, sockname, peername, ("sockname", "peername")
        )
        self._setup(
            protocol,
            sockname=sockname,
            peername=peername,
            family=family,
            chunks=chunks,
        )
        self._out = Link(
            self,
            None,
            capacity=capacity,
            manual=manual,
            partial_writes=partial_writes,
        )
        self._in = Link(None, self, capacity=sys.maxsize)
        self._start()

    @classmethod
    def _create_unlinked(
        cls,
        protocol: asyncio.BaseProtocol,
        *,
        sockname: Any,
        peername: Any,
        family: int,
        chunks: Chunks,
    ) -> MemoryTransport:
        """Make an end of a pair; the caller sets ``_out`` and ``_in`` then calls ``_start``."""
        self = cls.__new__(cls)
        self._setup(protocol, sockname=sockname, peername=peername, family=family, chunks=chunks)
        return self

    def _setup(
        self,
        protocol: asyncio.BaseProtocol,
        *,
        sockname: Any,
        peername: Any,
        family: int,
        chunks: Chunks,
    ) -> None:
        self._start_endpoint(
            protocol, family=family, kind=socket.SOCK_STREAM, sockname=sockname, peername=peername
        )
        self._chunker = None if chunks is None else _Chunker(chunks)
        self._buffered = False
        self._unjoined = False
        self.set_protocol(protocol)
        self._buffer = ByteQueue()
        self._closing = False
        self._closed = False
        self._conn_lost = 0
        self._drained = False
        self._eof = False  # write_eof() called
        self._in_writelines = False  # a writelines() that never pauses is writing
        self._paused = False  # pause_reading() in force
        self._reader_on = False  # the first read was allowed (after connection_made)
        self._eof_seen = False  # eof_received() was called
        self._writing = False  # the write buffer waits for room ("add_writer")
        self._write_handle: asyncio.Handle | None = None
        # Where _write_ready() runs, and so resume_writing(): the context of the write
        # that found the buffer empty, as loop.add_writer() captures it for a socket.
        self._write_context = contextvars.copy_context()
        self._init_reading()
        self._rx = ByteQueue()
        self._rx_eof = False
        self._rx_stalled = False
        self._rx_error: Exception | None = None
        # What the next send fails with once the link we send on is broken (the
        # socket's pending error, or EPIPE once a Unix peer has closed).
        self._tx_error: OSError | None = None
        self._unix = family == AF_UNIX
        self._peer: MemoryTransport | None = None

    def _start(self) -> None:
        self._loop.call_soon(self._protocol.connection_made, self)
        self._loop.call_soon(self._start_reading)
        track(
            self,
            what=f"MemoryTransport {self._info['sockname']!r} -> {self._info['peername']!r}",
            is_open=FlowControlled._hygiene_is_open,
            close=FlowControlled._hygiene_close,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return (
            f"<MemoryTransport {state} {self._info.get('sockname')!r} -> "
            f"{self._info.get('peername')!r} bufsize={len(self._buffer)} "
            f"in_flight={self._out.in_flight if hasattr(self, '_out') else 0}>"
        )

    # -- protocol and flow control ------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Switch protocols; the next read uses the new one's delivery path."""
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)
        self._unjoined = _unjoined_reads_invisible(protocol)

    def get_write_buffer_size(self) -> int:
        """Return the number of bytes waiting in the write buffer."""
        return len(self._buffer)

    def _bytes_waiting(self) -> int:
        return self._rx._size

    def _reading_peer(self) -> MemoryTransport | None:
        return self._peer

    # -- writing -------------------------------------------------------------------

    def _write_discontiguous(self, data: memoryview) -> None:
        """Fail as sending a non-contiguous memoryview fails: a fatal error.

        Before 3.12, with bytes already buffered, asyncio appends it to its
        bytearray buffer instead, which raises `TypeError` from ``write()``.
        """
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._conn_lost or not data:
            self.write(bytes(data))  # dropped (and logged) or ignored, as any data
            return
        if self._buffer._size and sys.version_info < (3, 12):
            raise TypeError("can't set bytearray slice from memoryview")
        error = BufferError("memoryview: underlying buffer is not C-contiguous")
        self._fatal_error(error, "Fatal write error on socket transport")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``: what the peer accepts now leaves, the rest is buffered.

        Raises:
            TypeError: ``data`` is not bytes-like.
            RuntimeError: after ``write_eof()``.
        """
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"data argument must be a bytes-like object, not {type(data).__name__!r}"
                )
            if isinstance(data, memoryview) and not data.c_contiguous:
                self._write_discontiguous(data)
                return
            data = bytes(data)
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._drained:
            raise released("call_exception_handler")
        if self._conn_lost:
            if self._conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        buffer = self._buffer
        if buffer._size:
            buffer._chunks.append(data)
            buffer._size += len(data)
        else:
            out = self._out
            if (
                out._plain
                and not out.broken
                and out.carry is out._arrive
                and len(data) <= out.capacity - out.in_flight
            ):
                receiver = out.receiver
                assert receiver is not None  # the link is plain
                if not receiver._closed:
                    # The common case, as Link.move(offered=data) then Link.arrive()
                    # would do it: all of it fits, nothing interposes, the peer takes it.
                    out.in_flight += len(data)
                    receiver._rx_push(data)
                    return
            if out.broken and self._tx_error is not None:
                self._fatal_error(self._tx_error, "Fatal write error on socket transport")
                return
            # Without room (or when pumped by hand) Link.move() would take nothing.
            full = out.manual or out.in_flight >= out.capacity
            sent = 0 if full else out.move(offered=data)
            if sent == len(data):
                return
            rest = data[sent:] if sent else data
            buffer._chunks.append(rest)
            buffer._size = len(rest)
            self._writing = True
            self._write_context = contextvars.copy_context()
            if not full or out.broken:  # else _schedule_write() finds no room
                self._schedule_write()
        flow = self._flow
        size = buffer._size
        if size > flow.peak:
            flow.peak = size
        if (
            size > flow.high
            and not flow.paused
            and not self._in_writelines
            and flow.grew(size, self._loop.time)
        ):
            self._call_flow_callback("pause_writing")

    def writelines(self, list_of_data: Any) -> None:
        """Write each item of ``list_of_data``, as one write.

        As asyncio's does, on Python 3.12.0 to 3.12.8 and 3.13.0 to 3.13.1 it never
        calls ``pause_writing`` (CPython gh-127655): the next ``write()`` does.

        Raises:
            RuntimeError: after ``write_eof()`` (naming ``writelines()`` from 3.12,
                as asyncio's selector transport does).
        """
        if not _WRITELINES_OF_ITS_OWN:
            self.write(b"".join(list_of_data))
            return
        if self._eof:
            raise RuntimeError("Cannot call writelines() after write_eof()")
        chunks = list(list_of_data)
        if chunks and self._drained:
            raise TypeError("'NoneType' object is not callable")  # its _write_ready
        if not _WRITELINES_NEVER_PAUSES:
            self.write(b"".join(chunks))
            return
        self._in_writelines = True
        try:
            self.write(b"".join(chunks))
        finally:
            self._in_writelines = False

    def _schedule_write(self) -> None:
        if self._writing and self._write_handle is None and not self._conn_lost:
            out = self._out
            if out.broken or (not out.manual and out.in_flight < out.capacity):
                self._write_handle = self._loop.call_soon(
                    self._write_ready, context=self._write_context
                )

    def _write_ready(self) -> None:
        self._write_handle = None
        buffer = self._buffer
        if self._conn_lost or not buffer._size:
            return
        out = self._out
        if out.broken and self._tx_error is not None:
            self._writing = False
            buffer.clear()
            self._fatal_error(self._tx_error, "Fatal write error on socket transport")
            return
        receiver = out.receiver
        if out._plain and not out.broken and out.carry is out._arrive:
            assert receiver is not None  # the link is plain
        else:
            receiver = None
        if receiver is not None and not receiver._closed:
            # The common case, as Link.move() then Link.arrive() would do it.
            room = out.capacity - out.in_flight
            n = buffer._size
            if n <= room:
                # All of it, as written: the receiver's read joins what it needs.
                out.in_flight += n
                rx = receiver._rx
                rx._chunks.extend(buffer._chunks)
                rx._size += n
                buffer._chunks.clear()
                buffer._size = 0
                receiver._rx_stalled = False
                if receiver._read_handle is None:
                    receiver._want_read()
            elif room > 0:
                out.in_flight += room
                receiver._rx_push(buffer.take(room))
        else:
            out.move()
        self._after_send()
        if self._writing:
            self._schedule_write()

    def _after_send(self) -> None:
        if self._conn_lost:
            return
        flow = self._flow
        size = self._buffer._size
        if flow.paused and size <= flow.low and flow.shrank(size, self._loop.time):
            self._call_flow_callback("resume_writing")  # may write
        if not self._buffer._size and self._writing:
            self._writing = False
            if self._closing:
                self._call_connection_lost(None)
            elif self._eof:
                self._out.send_fin()

    def pump(self, max_bytes: int | None = None) -> int:
        """Move up to ``max_bytes`` of the write buffer to the peer (manual mode).

        Bytes move now; ``resume_writing`` and a pending close or EOF follow on the
        next loop turn, as after a real send.  The link's capacity still applies,
        and so does ``partial_writes``: each call is one send, which it may cut
        short, so call again (``while transport.pump(): ...``) to move the rest.
        Outside manual mode it sends at once what still waits in the buffer (after a
        partial write, or while the link was full), which would have gone on the
        next loop turn; the peer reads on a later turn either way.  Made directly,
        the transport's peer is the test: what moves waits for :meth:`take_written`.

        Returns:
            The number of bytes moved.

        Raises:
            TypeError: ``max_bytes`` is not an int.
            ValueError: ``max_bytes`` below 1.
        """
        if max_bytes is not None:
            check_count("max_bytes", max_bytes)
        if self._conn_lost:
            return 0
        n = self._out.move(max_bytes)
        self._loop.call_soon(self._after_send, context=self._write_context)
        return n

    def write_eof(self) -> None:
        """Half-close: send EOF once the write buffer has drained.

        Raises:
            OSError: ``ENOTCONN``, with an empty buffer after the connection was
                reset, as ``shutdown(SHUT_WR)`` fails on a TCP socket then
                (asyncio does not catch it); EOF counts as written all the same.
                A Unix socket's shutdown never fails this way.
        """
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            if self._out.broken and not self._unix:
                # After an RST the socket is no longer connected, whether or not a
                # read has noticed yet; a deferred shutdown fails on its send first.
                raise os_error(errno.ENOTCONN)
            self._out.send_fin()

    def can_write_eof(self) -> bool:
        """Return True: memory transports can half-close."""
        return True

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading now; ``connection_lost(None)`` follows once the buffer drained."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._conn_lost += 1
            self._writing = False
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close at once, discarding whatever is buffered.

        Raises:
            AttributeError: the first call after a ``close()`` that ended once
                the buffer drained, as asyncio's selector transport raises it.
        """
        if self._drained:
            self._drained = False  # asyncio counts the loss before it fails
            raise released("call_soon")
        self._force_close(None)

    def _unsent_at_close(self) -> str | None:
        if not self._closing or self._closed or self._conn_lost or not self._buffer:
            return None
        receiver = self._out.receiver
        if receiver is not None and not self._out.manual and not self._loop.is_closed():
            return None  # the peer may yet read, or its reset end the close
        n = len(self._buffer)
        what, it = ("a byte", "it") if n == 1 else (f"{n} bytes", "them")
        if self._out.manual:
            how = f"pump() {it}, or abort()"
        elif receiver is None:
            how = f"take_written() {it}, or abort()"
        elif receiver._closing:
            how = "its peer closed without reading them: abort() it"
        else:
            how = f"let the other end read {it}, or abort()"
        return f"{what} never left its write buffer ({how})"

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._buffer.clear()
        self._writing = False
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        if not self._closing:
            self._closing = True
            self._stop_reading()
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        try:
            self._protocol.connection_lost(typing.cast("Exception | None", exc))
        finally:
            self._close_socket()

    def _close_socket(self) -> None:
        """Release the "socket": FIN to the peer, or a reset if data was left unread."""
        self._closed = True
        if not self._conn_lost:
            # Closed after draining the buffer.  asyncio's selector transport then
            # lets go of its loop and socket without counting the connection lost,
            # so a later abort() or write() fails on them (see `released`).
            self._conn_lost = 1
            self._drained = True
        self._stop_reading()
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        # Unread: arrived and not read.  Bytes a fault still holds on their way are
        # not, as a kernel counts only its receive queue: when they arrive, the
        # closed end answers them with a reset (`Link.arrive`).
        unread = len(self._rx) > 0 and not self._in.broken
        self._in.in_flight -= len(self._rx)  # received, and now never read
        self._rx.clear()
        if self._unix:
            self._close_unix(unread)
        elif (unread or self._info["socket"]._lingers_zero()) and not self._out.broken:
            # Closing a TCP socket with unread received data, or with SO_LINGER set
            # to (on, 0 seconds), makes the kernel send RST instead of FIN.
            self._in.in_flight = 0
            self._out.send_reset()
        elif not self._out.broken:
            self._out.send_fin()
        self._in._wake()
        self._out._wake()
        self._info["socket"]._close()

    def _close_unix(self, unread: bool) -> None:
        """Close as a Unix socket closes: never with an RST, whatever ``SO_LINGER`` says.

        The peer's sends fail with ``EPIPE`` from now on (its first write, too);
        it reads what it was sent, then ``ECONNRESET`` if this end left bytes
        unread, or else EOF.
        """
        if not self._out.broken:
            if not unread:
                self._out.send_fin()
            elif self._out.receiver is None:
                self._out.broken = True  # the test, reading, gets ConnectionResetError
        if not self._in.broken:
            self._in.broken = True  # nothing the peer sends arrives any more
            self._in.in_flight = 0
            if self._in.sender is not None:
                # After the FIN: a peer that reads and writes gets EOF first.
                self._in.sender._unix_peer_closed(unread)

    def _unix_peer_closed(self, unread: bool) -> None:
        """The peer's Unix socket closed: see `_close_unix`."""
        self._tx_error = connection_reset(errno.EPIPE)
        if unread:
            self._rx_eof = False  # a Unix socket reports the error before the EOF
            self._rx_break(connection_reset())
        elif self._writing:
            self._schedule_write()

    # -- resets ----------------------------------------------------------------------

    def _rx_break(self, exc: Exception) -> None:
        """An error arrives: reads fail with it once what already arrived is read.

        As a kernel keeps the receive queue when an RST or an error arrives,
        bytes received before it (and a FIN, over TCP) are still delivered
        first, once reading is or becomes active.  A pending send fails too if
        the caller has set ``_tx_error``.
        """
        if self._closed:
            return
        self._rx_error = exc
        self._want_read()
        if self._writing and self._tx_error is not None:
            # A socket with bytes to send is watched for writability as well, and a
            # reset makes it writable: the next send() fails and ends the connection
            # (_write_ready), even when nothing reads any more: close() waiting for
            # the buffer, a paused reader, or after EOF.
            self._schedule_write()

    def _rx_break_by_peer(self) -> None:
        # The peer closed with bytes unread.  Linux reports the RST as ECONNRESET,
        # or as EPIPE in CLOSE_WAIT (after the peer's FIN).  (A Unix peer never
        # resets: see _close_unix.)
        code = errno.EPIPE if self._rx_eof or self._eof_seen else errno.ECONNRESET
        self._break_link(connection_reset(code))

    def _reset_connection(self) -> None:
        self._break_link(connection_reset())

    def _break_link(self, exc: OSError) -> None:
        """The connection was reset: nothing arrives any more, sends fail with `exc`."""
        self._out.broken = True
        self._in.broken = True
        self._tx_error = exc
        self._rx_break(exc)

    def reset(self) -> None:
        """Reset the connection: both ends get ``connection_lost(ConnectionResetError)``.

        As after a TCP RST, there is no ``eof_received``, and what is still in a
        write buffer is lost; bytes an end has already received are delivered
        first (with reading paused, once it resumes), as a kernel keeps them.
        An end with bytes in its write buffer notices on the next loop turn, as
        its pending send fails, even while closing or with reading paused (its
        unread bytes are then never delivered); any other end whose reading is
        paused notices at its next read or write, and one that closes before
        either gets ``connection_lost(None)``, as a socket's close would give it.
        This works the same on an
        ``AF_UNIX`` pair, although a Unix socket cannot be reset.
        """
        self._out.reset()
