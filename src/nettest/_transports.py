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
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import typing
from asyncio import constants as _asyncio_constants
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ._endpoint import FlowControlled, MemorySocket, stream_addresses
from ._flow import WriteFlow
from ._hygiene import track
from ._links import ByteQueue, Link, PartialWrites, connection_reset
from ._settings import default_timeout

__all__ = [
    "DEFAULT_CAPACITY",
    "Chunks",
    "MemorySocket",
    "MemoryTransport",
    "memory_stream_pair",
    "memory_transport_pair",
]

logger = logging.getLogger("asyncio")

#: Bytes in flight per direction by default: a stand-in for the kernel's buffers, the
#: default receive buffer of a Linux TCP socket (``net.ipv4.tcp_rmem``).
DEFAULT_CAPACITY = 128 * 1024
#: As in asyncio: ``recv()`` size, and the connection-lost write warning threshold.
_MAX_READ = 256 * 1024
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

#: How the receiver's reads are cut: a list of sizes used in turn (then everything
#: available), or a function of the number of bytes available returning the size
#: of the next read (0 waits for more, unless the stream has ended).
Chunks = Sequence[int] | Callable[[int], int] | None

_DEFAULT = object()


def _check_capacity(capacity: int) -> int:
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity!r}")
    return capacity


def _check_partial_writes(policy: PartialWrites) -> PartialWrites:
    if isinstance(policy, int) and policy < 1:
        raise ValueError(f"partial_writes must be >= 1 byte per send, got {policy!r}")
    return policy


class _Chunker:
    """Decides the size of each read from the bytes available."""

    __slots__ = ("_function", "_sizes")

    def __init__(self, chunks: Chunks) -> None:
        self._sizes: deque[int] = deque()
        self._function: Callable[[int], int] | None = None
        if callable(chunks):
            self._function = chunks
        elif chunks is not None:
            for size in chunks:
                if size < 1:
                    raise ValueError(f"chunk sizes must be >= 1, got {size!r}")
            self._sizes.extend(chunks)

    def next_size(self, available: int, ended: bool) -> int:
        """Return how many bytes to deliver now (0: wait for more)."""
        if self._function is not None:
            size = self._function(available)
            if size < 0:
                raise ValueError(f"chunk sizes must be >= 0, got {size!r} from {self._function!r}")
            if size == 0:
                return min(available, _MAX_READ) if ended else 0
            return min(size, available, _MAX_READ)
        if self._sizes:
            return min(self._sizes.popleft(), available)
        return min(available, _MAX_READ)


@typing.final
class MemoryTransport(FlowControlled, asyncio.Transport):
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
            sizes used in turn, or a function of the bytes available returning the
            next size (0 waits for more).
        sockname: The local address (default: a loopback address with an ephemeral
            port).
        peername: The peer's address (default: ``127.0.0.1:8080``).
        family: `socket.AF_INET`, `socket.AF_INET6` or `socket.AF_UNIX`.

    Raises:
        ValueError: ``capacity``, ``partial_writes`` or a chunk size below 1.

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
        family: int = socket.AF_INET,
    ) -> None:
        _check_capacity(capacity)
        _check_partial_writes(partial_writes)
        _Chunker(chunks)
        client, server = stream_addresses(family)
        self._setup(
            protocol,
            sockname=client if sockname is None else sockname,
            peername=server if peername is None else peername,
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
        loop = asyncio.get_running_loop()
        self._chunker = None if chunks is None else _Chunker(chunks)
        self._flow = WriteFlow()
        self._info: dict[str, Any] = {
            "peername": peername,
            "sockname": sockname,
            "socket": MemorySocket._create(family, socket.SOCK_STREAM, sockname, peername),
        }
        asyncio.Transport.__init__(self, self._info)
        self._loop = loop
        self._protocol = protocol
        self._buffered = False
        self.set_protocol(protocol)
        self._buffer = ByteQueue()
        self._closing = False
        self._closed = False
        self._conn_lost = 0
        self._eof = False  # write_eof() called
        self._paused = False  # pause_reading() in force
        self._reader_on = False  # the first read was allowed (after connection_made)
        self._eof_seen = False  # eof_received() was called
        self._writing = False  # the write buffer waits for room ("add_writer")
        self._write_handle: asyncio.Handle | None = None
        self._read_handle: asyncio.Handle | None = None
        self._rx = ByteQueue()
        self._rx_eof = False
        self._rx_stalled = False
        self._rx_error: Exception | None = None
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

    def get_write_buffer_size(self) -> int:
        """Return the number of bytes waiting in the write buffer."""
        return len(self._buffer)

    # -- writing -------------------------------------------------------------------

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
            data = bytes(data)
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
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
            if out.broken and self._rx_error is not None:
                self._fatal_error(self._rx_error, "Fatal write error on socket transport")
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
            if not full or out.broken:  # else _schedule_write() finds no room
                self._schedule_write()
        flow = self._flow
        size = buffer._size
        if size > flow.peak:
            flow.peak = size
        if size > flow.high and not flow.paused and flow.grew(size, self._loop.time):
            self._call_flow_callback("pause_writing")

    def writelines(self, list_of_data: Any) -> None:
        """Write each item of ``list_of_data``, as one write."""
        self.write(b"".join(list_of_data))

    def _schedule_write(self) -> None:
        if self._writing and self._write_handle is None and not self._conn_lost:
            out = self._out
            if out.broken or (not out.manual and out.in_flight < out.capacity):
                self._write_handle = self._loop.call_soon(self._write_ready)

    def _write_ready(self) -> None:
        self._write_handle = None
        buffer = self._buffer
        if self._conn_lost or not buffer._size:
            return
        out = self._out
        if out.broken and self._rx_error is not None:
            self._writing = False
            buffer.clear()
            self._fatal_error(self._rx_error, "Fatal write error on socket transport")
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
        next loop turn, as after a real send.  The link's capacity still applies.

        Returns:
            The number of bytes moved.

        Raises:
            ValueError: ``max_bytes`` below 1.
        """
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}")
        if self._conn_lost:
            return 0
        n = self._out.move(max_bytes)
        self._loop.call_soon(self._after_send)
        return n

    def write_eof(self) -> None:
        """Half-close: send EOF once the write buffer has drained."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            self._out.send_fin()

    def can_write_eof(self) -> bool:
        """Return True: memory transports can half-close."""
        return True

    # -- reading -------------------------------------------------------------------

    def is_reading(self) -> bool:
        """Return True unless reading is paused or the transport is closing."""
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        """Stop delivering data; arriving bytes wait (and fill the link's capacity)."""
        if self._closing or self._paused:
            return
        self._paused = True
        if self._read_handle is not None:
            self._read_handle.cancel()
            self._read_handle = None

    def resume_reading(self) -> None:
        """Deliver again, from the next loop turn (never inside this call)."""
        if self._closing or not self._paused:
            return
        self._paused = False
        self._want_read()

    def _start_reading(self) -> None:
        self._reader_on = True
        self._want_read()

    def _want_read(self) -> None:
        if (
            self._read_handle is None
            and self._reader_on
            and not self._paused
            and not self._closing
            and not self._eof_seen
            and not self._conn_lost
            and (
                (self._rx._size and not self._rx_stalled)
                or self._rx_eof
                or self._rx_error is not None
            )
        ):
            self._read_handle = self._loop.call_soon(self._read_ready)

    def _rx_push(self, data: bytes) -> None:
        rx = self._rx
        rx._chunks.append(data)
        rx._size += len(data)
        self._rx_stalled = False
        if (  # _want_read(), knowing that there is something to read
            self._read_handle is None
            and self._reader_on
            and not self._paused
            and not self._closing
            and not self._eof_seen
            and not self._conn_lost
        ):
            self._read_handle = self._loop.call_soon(self._read_ready)

    def _rx_eof_arrived(self) -> None:
        self._rx_eof = True
        self._want_read()

    def _read_ready(self) -> None:
        self._read_handle = None
        if self._conn_lost or self._closing or self._paused or self._eof_seen:
            return
        if self._rx_error is not None:
            self._fatal_error(self._rx_error, "Fatal read error on socket transport")
            return
        rx = self._rx
        if not rx._size:
            if self._rx_eof:
                self._read_eof()
        elif self._chunker is not None or self._buffered:
            self._read_data()
        else:
            # The common case of _read_data(): everything available, up to _MAX_READ,
            # to data_received().
            chunks = rx._chunks
            n = rx._size
            if n > _MAX_READ:
                n = _MAX_READ
                data = rx.take(n)
            elif len(chunks) == 1:
                data = chunks.popleft()
                rx._size = 0
            else:
                data = b"".join(chunks)
                chunks.clear()
                rx._size = 0
            link = self._in
            link.in_flight -= n
            sender = link.sender
            if sender is not None and sender._writing:
                sender._schedule_write()
            try:
                self._protocol.data_received(data)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
        if rx._size or self._rx_eof or self._rx_error is not None:
            self._want_read()

    def _read_data(self) -> None:
        available = self._rx._size
        if self._chunker is None:
            n = available if available < _MAX_READ else _MAX_READ
        else:
            try:
                n = self._chunker.next_size(available, self._rx_eof)
            except ValueError as exc:
                self._fatal_error(exc, "Fatal error: the chunks policy failed.")
                return
        if n == 0:
            self._rx_stalled = True  # the chunks policy waits for more bytes
            return
        if self._buffered:
            protocol: Any = self._protocol
            try:
                buf = memoryview(protocol.get_buffer(-1)).cast("B")
                if not len(buf):
                    raise RuntimeError("get_buffer() returned an empty buffer")
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
                return
            n = min(n, len(buf))
            try:
                buf[:n] = self._rx.take(n)  # what recv_into() does
            except (TypeError, ValueError) as exc:  # a read-only buffer, say
                self._fatal_error(exc, "Fatal read error on socket transport")
                return
            self._in.consumed(n)
            try:
                protocol.buffer_updated(n)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
            return
        rx = self._rx
        if n == rx._size and len(rx._chunks) == 1:  # the common case: one piece, all of it
            data = rx._chunks.popleft()
            rx._size = 0
        else:
            data = rx.take(n)
        self._in.consumed(n)
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _read_eof(self) -> None:
        self._eof_seen = True
        try:
            keep_open = typing.cast("asyncio.Protocol", self._protocol).eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # -- closing ---------------------------------------------------------------------

    def is_closing(self) -> bool:
        """Return True once ``close()`` or ``abort()`` was called or the connection failed."""
        return self._closing

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
        """Close at once, discarding the write buffer."""
        self._force_close(None)

    def _stop_reading(self) -> None:
        if self._read_handle is not None:
            self._read_handle.cancel()
            self._read_handle = None

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

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
            # Closed after draining the buffer: later writes are dropped, not sent.
            self._conn_lost = 1
        self._stop_reading()
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        # Closing a socket with unread received data, or with SO_LINGER set to
        # (on, 0 seconds), makes the kernel send RST instead of FIN.
        unread = self._in.in_flight > 0 and not self._in.broken
        self._rx.clear()
        if (unread or self._info["socket"]._lingers_zero()) and not self._out.broken:
            self._in.in_flight = 0
            if self._in.sender is not None:
                self._in._reset_sender()
            self._out.broken = True
        elif not self._out.broken:
            self._out.send_fin()
        self._in._wake()
        self._out._wake()

    # -- resets ----------------------------------------------------------------------

    def _rx_break(self, exc: Exception) -> None:
        """An error arrives: pending received data is lost, reads and writes fail."""
        if self._closed:
            return
        self._in.in_flight -= len(self._rx)
        self._rx.clear()
        self._rx_eof = False
        self._rx_error = exc
        self._want_read()
        if self._writing and self._out.broken:
            # A socket with bytes to send is watched for writability as well, and a
            # reset makes it writable: the next send() fails and ends the connection
            # (_write_ready), even when nothing reads any more: close() waiting for
            # the buffer, a paused reader, or after EOF.
            self._schedule_write()

    def _rx_break_by_peer(self) -> None:
        # The peer closed with bytes unread.  Linux reports the RST as ECONNRESET,
        # or as EPIPE in CLOSE_WAIT (after the peer's FIN).  A Unix socket reports
        # EPIPE in both cases; memory transports follow TCP whatever their family.
        code = errno.EPIPE if self._rx_eof or self._eof_seen else errno.ECONNRESET
        self._out.broken = True
        self._in.broken = True
        self._rx_break(connection_reset(code))

    def _reset_connection(self) -> None:
        self._out.broken = True
        self._in.broken = True
        self._rx_break(connection_reset())

    def reset(self) -> None:
        """Reset the connection: both ends get ``connection_lost(ConnectionResetError)``.

        As with a TCP RST, there is no ``eof_received`` and data not yet read is
        lost.  An end with bytes in its write buffer notices on the next loop turn,
        as its pending send fails, even while closing or with reading paused; any
        other end whose reading is paused notices at its next read or write.
        """
        self._out.reset()

    # -- the test as the peer --------------------------------------------------------

    def _test_link(self, which: str) -> Link:
        link = self._out if which == "out" else self._in
        if (link.receiver if which == "out" else link.sender) is not None:
            raise RuntimeError(
                "this transport is connected to another transport, not to the test; "
                "use the other end of the pair"
            )
        return link

    def peek_written(self) -> bytes:
        """Return what the protocol wrote and the peer received, without taking it."""
        return bytes(self._test_link("out").unread)

    def take_written(self, max_bytes: int | None = None) -> bytes:
        """Take what the protocol wrote off the wire, as a reading peer would.

        This frees capacity: the write buffer drains on the next loop turn and
        ``resume_writing`` fires once it is at the low-water mark.

        Raises:
            RuntimeError: the transport is an end of a pair.
        """
        return self._test_link("out").take_unread(max_bytes)

    @property
    def written_eof(self) -> bool:
        """Whether the protocol's EOF (``write_eof()`` or closing) reached the peer."""
        return self._test_link("out").unread_eof

    async def receive_written(self, nbytes: int, *, timeout: Any = _DEFAULT) -> bytes:
        """Wait until the protocol has written ``nbytes`` more bytes, and take them.

        Raises:
            TimeoutError: not enough bytes in time; the message shows what arrived.
            EOFError: the protocol closed its side first.
        """
        link = self._test_link("out")
        wait = default_timeout() if timeout is _DEFAULT else typing.cast("float | None", timeout)

        def ready() -> bool:
            return len(link.unread) >= nbytes or link.unread_eof or link.broken or self._closed

        try:
            await asyncio.wait_for(link.wait_unread(ready), wait)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"expected {nbytes} bytes written by the protocol within {wait}s; "
                f"got {len(link.unread)}: {bytes(link.unread[:200])!r}"
            ) from None
        if len(link.unread) < nbytes:
            raise EOFError(
                f"expected {nbytes} bytes written by the protocol, but it closed its side "
                f"after {len(link.unread)}: {bytes(link.unread[:200])!r}"
            )
        return link.take_unread(nbytes)

    def feed_data(self, data: bytes | bytearray | memoryview) -> None:
        """Send the protocol ``data`` from the peer; it is read on a later loop turn.

        Raises:
            TypeError: ``data`` is not bytes-like.
            RuntimeError: after ``feed_eof()``, or on an end of a pair.
        """
        link = self._test_link("in")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if link.fin_sent:
            raise RuntimeError("Cannot call feed_data() after feed_eof()")
        if data:
            link.in_flight += len(data)
            link.carry(bytes(data))

    def feed_eof(self) -> None:
        """Send the protocol EOF from the peer (``eof_received`` after pending data)."""
        self._test_link("in").send_fin()

    def feed_reset(self) -> None:
        """Reset the connection from the peer: ``connection_lost(ConnectionResetError)``."""
        self._test_link("in")
        self._reset_connection()

    def feed_error(self, exc: Exception) -> None:
        """Make the next read fail with ``exc``, which the transport treats as fatal."""
        self._test_link("in")
        self._rx_break(exc)


def memory_transport_pair(
    client_protocol: asyncio.BaseProtocol,
    server_protocol: asyncio.BaseProtocol,
    *,
    capacity: int = DEFAULT_CAPACITY,
    manual: bool = False,
    partial_writes: int | Callable[[int], int] | None = None,
    chunks: Sequence[int] | Callable[[int], int] | None = None,
    client_address: Any = None,
    server_address: Any = None,
    family: int = socket.AF_INET,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Connect two protocols through two :class:`MemoryTransport` objects.

    The pair behaves like a TCP connection on the running loop: each direction
    holds at most ``capacity`` bytes in flight, so a receiver that stops reading
    fills it, then the sender's write buffer grows, then ``pause_writing`` fires.
    Both ``connection_made`` calls come on the next loop turn.

    Args:
        client_protocol: Connected to the first transport.
        server_protocol: Connected to the second transport.
        capacity: Bytes in flight per direction (the kernel buffers).
        manual: If true, nothing moves until :meth:`MemoryTransport.pump`.
        partial_writes: How much of each send the peer accepts, for both ends.
        chunks: How each receiver's reads are cut, for both ends.
        client_address: The client's address (default: loopback, ephemeral port).
        server_address: The server's address (default: loopback, port 8080).
        family: `socket.AF_INET`, `socket.AF_INET6` or `socket.AF_UNIX`.

    Returns:
        ``(client_transport, server_transport)``.

    Raises:
        ValueError: ``capacity``, ``partial_writes`` or a chunk size below 1.

    Example:
        ::

            client, server = memory_transport_pair(ClientProtocol(), ServerProtocol())
            await asyncio.sleep(0)  # connection_made on both sides
            client.write(b"hello")
    """
    _check_capacity(capacity)
    _check_partial_writes(partial_writes)
    default_client, default_server = stream_addresses(family)
    client_address = default_client if client_address is None else client_address
    server_address = default_server if server_address is None else server_address
    if isinstance(chunks, Sequence):
        chunks = list(chunks)  # each end uses its own copy
    client = MemoryTransport._create_unlinked(
        client_protocol,
        sockname=client_address,
        peername=server_address,
        family=family,
        chunks=chunks,
    )
    server = MemoryTransport._create_unlinked(
        server_protocol,
        sockname=server_address,
        peername=client_address,
        family=family,
        chunks=chunks,
    )
    for sender, receiver in ((client, server), (server, client)):
        link = Link(
            sender, receiver, capacity=capacity, manual=manual, partial_writes=partial_writes
        )
        sender._out = link
        receiver._in = link
    client._peer, server._peer = server, client
    client._start()
    server._start()
    return client, server


def memory_stream_pair(
    *,
    capacity: int = DEFAULT_CAPACITY,
    limit: int = 2**16,
    manual: bool = False,
    partial_writes: int | Callable[[int], int] | None = None,
    chunks: Sequence[int] | Callable[[int], int] | None = None,
) -> tuple[
    tuple[asyncio.StreamReader, asyncio.StreamWriter],
    tuple[asyncio.StreamReader, asyncio.StreamWriter],
]:
    """Make two connected asyncio streams over a :func:`memory_transport_pair`.

    What ``asyncio.open_connection`` and a server's callback would give, in memory:
    the writers' ``drain()`` blocks while the peer does not read, and
    ``StreamWriter.start_tls`` works on both sides (the server side negotiates as
    the server).  Must be called while the loop runs.

    Args:
        capacity: Bytes in flight per direction.
        limit: The readers' buffer limit (as for `asyncio.open_connection`).
        manual: If true, nothing moves until a transport's ``pump()``.
        partial_writes: How much of each send the peer accepts.
        chunks: How each reader's data is cut.

    Returns:
        ``((client_reader, client_writer), (server_reader, server_writer))``.

    Example:
        ::

            (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
            c_writer.write(b"hi\\n")
            assert await s_reader.readline() == b"hi\\n"
    """
    loop = asyncio.get_running_loop()
    client_reader = asyncio.StreamReader(limit=limit, loop=loop)
    server_reader = asyncio.StreamReader(limit=limit, loop=loop)
    client_protocol = asyncio.StreamReaderProtocol(client_reader, loop=loop)
    server_protocol = _ServerStreamProtocol(server_reader, _server_side_marker, loop=loop)
    client_transport, server_transport = memory_transport_pair(
        client_protocol,
        server_protocol,
        capacity=capacity,
        manual=manual,
        partial_writes=partial_writes,
        chunks=chunks,
    )
    client_writer = asyncio.StreamWriter(client_transport, client_protocol, client_reader, loop)
    server_writer = asyncio.StreamWriter(server_transport, server_protocol, server_reader, loop)
    return (client_reader, client_writer), (server_reader, server_writer)


class _ServerStreamProtocol(asyncio.StreamReaderProtocol):
    """The server end of a memory stream pair.

    ``StreamWriter.start_tls()`` negotiates as the server when the protocol has a
    ``client_connected_cb``.  This protocol has one, but hides it from
    ``connection_made`` so that the protocol does not make a second writer.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        state = self.__dict__
        callback, state["_client_connected_cb"] = state["_client_connected_cb"], None
        try:
            super().connection_made(transport)
        finally:
            state["_client_connected_cb"] = callback


def _server_side_marker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Marks a memory stream protocol as the server's (never called)."""
