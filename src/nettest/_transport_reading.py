"""The receiving side of a :class:`~nettest.MemoryTransport`: reads, chunking, EOF.

As in ``_SelectorSocketTransport`` (CPython ``asyncio/selector_events.py``): the
first read is allowed once ``connection_made`` was called; then each loop turn
delivers one read of at most 256 KiB to ``data_received`` (or through
``get_buffer``/``buffer_updated`` for a `asyncio.BufferedProtocol`), cut by the
``chunks`` policy if there is one; EOF comes after the data, and
``pause_reading`` holds arriving bytes back, where they fill the link's capacity.

A read of several writes is joined into one ``bytes`` object, as ``recv()`` would
return it, with one exception that nothing can observe: asyncio's own
``StreamReaderProtocol`` over its own ``StreamReader`` appends every read to one
buffer, so large writes are handed to it one by one, in the same call, instead of
being copied into one object first (see ``_unjoined_reads_invisible``).

Reads run in the transport's own context, never the writer's: a selector
transport reads through one handle it made when reading started, so its
protocol's ``data_received`` runs in a copy of the context current then, the same
copy every time (what the writing task set is invisible to it, and what one
``data_received`` sets, the next one sees).  ``resume_reading()`` makes that
handle anew, in a copy of the context of its caller (a ``StreamReader``'s reading
task, say); the memory transports do the same on asyncio's selector loops, and
keep their first context on other loops (uvloop reads in the transport's own).
The memory transports keep one :class:`asyncio.Handle` the same way, and on
asyncio's own loops append it to the ready queue as the selector loop does for a
readable socket, instead of making a new one with ``call_soon`` for every read;
other loops (uvloop, subclasses that change ``call_soon`` or the loop's turn) and
debug mode go through ``call_soon(..., context=)``.

``_Receiving`` is a mixin of :class:`~nettest.MemoryTransport`, which sets the
state it reads; the sending side, closing and resets stay in ``_transports``.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import typing
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

if typing.TYPE_CHECKING:
    from ._links import ByteQueue, Link

__all__ = ["Chunks"]

#: As in asyncio: the most one ``recv()`` returns.
_MAX_READ = 256 * 1024

#: Below this average size per write, joining a read costs less than handing the
#: writes over one by one.
_UNJOINED_MIN_AVERAGE = 8 * 1024

#: How the receiver's reads are cut: a list of sizes used in turn (then everything
#: available), or a function of the number of bytes available returning the size
#: of the next read (0 waits for more, unless the stream has ended).
Chunks = Sequence[int] | Callable[[int], int] | None


def _unjoined_reads_invisible(protocol: object) -> bool:
    """Whether `protocol` cannot tell one read from its writes delivered back to back.

    True only for asyncio's ``StreamReaderProtocol`` (or a subclass that keeps its
    ``data_received``) feeding a plain ``StreamReader`` (that exact class):
    ``feed_data()`` appends to one buffer, and the reading task wakes up after the
    whole read either way.  A pause it asks for is applied after the read, as a
    socket transport applies it after one ``data_received()``.
    """
    if not isinstance(protocol, asyncio.StreamReaderProtocol):
        return False
    if type(protocol).data_received is not asyncio.StreamReaderProtocol.data_received:
        return False
    return type(protocol._stream_reader) is asyncio.StreamReader  # type: ignore[attr-defined]


def _recv_into_refusal(buf: object) -> TypeError:
    """The `TypeError` ``socket.recv_into(buf)`` raises for a buffer it cannot fill.

    Asked of a closed socket, which checks its argument first: the message names
    the type as CPython does (``collections.deque``, ``mmap.mmap``).
    """
    try:
        probe = socket.socket()  # refused where sockets are blocked (pytest-socket)
        probe.close()
        probe.recv_into(buf)  # type: ignore[arg-type]
    except TypeError as error:
        return error
    except Exception:  # the message below says the same, less exactly
        pass
    return TypeError(
        f"recv_into() argument 1 must be read-write bytes-like object, not {type(buf).__name__}"
    )


def reads_in_resumer_context(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a socket transport on `loop` reads in its resumer's context after a pause.

    asyncio's selector loops add the reader again then, with a handle that copies
    the context current in ``resume_reading()``; uvloop's transports keep theirs.
    """
    return isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)


def _ready_queue(loop: asyncio.AbstractEventLoop) -> deque[asyncio.Handle] | None:
    """The queue of callbacks due on the next turn of one of asyncio's own loops.

    None for other loops (uvloop), and for subclasses that change how ``call_soon``
    queues callbacks or how a turn runs them: those only take callbacks through
    ``call_soon``.
    """
    base = asyncio.BaseEventLoop
    ready = getattr(loop, "_ready", None)
    if not isinstance(loop, base) or not isinstance(ready, deque):
        return None
    kind = type(loop)
    for name in ("call_soon", "_call_soon", "_run_once"):
        if getattr(kind, name, None) is not getattr(base, name, None):
            return None
    return ready


class _Chunker:
    """Decides the size of each read from the bytes available."""

    __slots__ = ("_function", "_sizes")

    def __init__(self, chunks: Chunks) -> None:
        """Check `chunks` (see `Chunks`) and start with its first size.

        Raises:
            TypeError: `chunks` is not a sequence of ints, a function or None.
            ValueError: a size below 1.
        """
        self._sizes: deque[int] = deque()
        self._function: Callable[[int], int] | None = None
        if callable(chunks):
            self._function = chunks
        elif chunks is not None:
            given: object = chunks  # as typed, or anything a caller passes
            if not isinstance(given, Sequence) or isinstance(given, (str, bytes, bytearray)):
                raise TypeError(
                    f"chunks must be a sequence of sizes, a function or None, got {chunks!r}"
                )
            for size in chunks:
                if isinstance(size, bool) or not isinstance(size, int):
                    raise TypeError(f"chunk sizes must be ints >= 1, got {size!r}")
                if size < 1:
                    raise ValueError(f"chunk sizes must be >= 1, got {size!r}")
            self._sizes.extend(chunks)

    def next_size(self, available: int, ended: bool) -> int:
        """Return how many bytes to deliver now (0: wait for more)."""
        if self._function is not None:
            size = self._function(available)
            if isinstance(size, bool) or not isinstance(size, int):
                raise TypeError(
                    f"chunk sizes must be ints >= 0, got {size!r} from {self._function!r}"
                )
            if size < 0:
                raise ValueError(f"chunk sizes must be >= 0, got {size!r} from {self._function!r}")
            if size == 0:
                return min(available, _MAX_READ) if ended else 0
            return min(size, available, _MAX_READ)
        if self._sizes:
            return min(self._sizes.popleft(), available)
        return min(available, _MAX_READ)


class _Receiving:
    """Delivers what arrived on ``_in`` to the protocol, one read per loop turn."""

    _loop: asyncio.AbstractEventLoop
    _protocol: Any
    _buffered: bool  # the protocol is an asyncio.BufferedProtocol
    _unjoined: bool  # the protocol cannot tell a read from its writes one by one
    _chunker: _Chunker | None
    _in: Link
    _closing: bool
    _conn_lost: int
    _paused: bool  # pause_reading() in force
    _reader_on: bool  # the first read was allowed (after connection_made)
    _eof_seen: bool  # eof_received() was called
    _read_handle: asyncio.Handle | None  # the read due on the next loop turn
    _read_context: contextvars.Context  # where reads run: see the module docstring
    _read_event: asyncio.Handle  # the handle that runs them, reused until cancelled
    _ready: deque[asyncio.Handle] | None  # the loop's ready queue, or None: use call_soon
    _rx: ByteQueue
    _rx_eof: bool
    _rx_stalled: bool
    _rx_error: Exception | None

    if typing.TYPE_CHECKING:

        def close(self) -> None: ...

        def _fatal_error(self, exc: BaseException, message: str) -> None: ...

        def _note_reading(self, kind: typing.Literal["pause", "resume"]) -> None: ...

    def is_reading(self) -> bool:
        """Return True unless reading is paused or the transport is closing."""
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        """Stop delivering data; arriving bytes wait (and fill the link's capacity)."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._note_reading("pause")
        self._stop_reading()

    def resume_reading(self) -> None:
        """Deliver again, from the next loop turn (never inside this call)."""
        if self._closing or not self._paused:
            return
        self._paused = False
        self._note_reading("resume")
        if self._read_handle is None and reads_in_resumer_context(self._loop):
            self._read_context = contextvars.copy_context()
            self._read_event = asyncio.Handle(self._read_ready, (), self._loop, self._read_context)
        self._want_read()

    def _start_reading(self) -> None:
        self._reader_on = True
        self._want_read()

    def _init_reading(self) -> None:
        """Capture the context reads run in: the one current as the transport is made."""
        self._read_handle = None
        self._read_context = contextvars.copy_context()
        self._read_event = asyncio.Handle(self._read_ready, (), self._loop, self._read_context)
        self._ready = _ready_queue(self._loop)

    def _schedule_read(self) -> None:
        """Run ``_read_ready()`` on the next loop turn, in the transport's context."""
        loop = self._loop
        if self._ready is not None and not loop.get_debug() and not loop.is_closed():
            self._read_handle = handle = self._read_event
            self._ready.append(handle)  # what loop.call_soon() would do, with this handle
        else:
            self._read_handle = loop.call_soon(self._read_ready, context=self._read_context)

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
            self._schedule_read()

    def _rx_push(self, data: bytes) -> None:
        rx = self._rx
        rx._chunks.append(data)
        rx._size += len(data)
        self._rx_stalled = False
        self._want_read()

    def _rx_eof_arrived(self) -> None:
        self._rx_eof = True
        self._want_read()

    def _read_ready(self) -> None:
        self._read_handle = None
        if self._conn_lost or self._closing or self._paused or self._eof_seen:
            return
        rx = self._rx
        if not rx._size:
            # As recv() reports them: what arrived first, then a FIN that came
            # before an RST or error, then the error.
            if self._rx_eof:
                if not self._buffered or self._offer_buffer():
                    self._read_eof()
            elif self._rx_error is not None:
                if not self._buffered or self._offer_buffer():
                    self._fatal_error(self._rx_error, "Fatal read error on socket transport")
                return
        elif self._chunker is not None or self._buffered:
            self._read_data()
        else:
            # The common case of _read_data(): everything available, up to _MAX_READ,
            # to data_received().
            chunks = rx._chunks
            n = rx._size
            pieces: tuple[bytes, ...] | None = None
            if n > _MAX_READ:
                n = _MAX_READ
                data = rx.take(n)
            elif len(chunks) == 1:
                data = chunks.popleft()
                rx._size = 0
            elif self._unjoined and n >= _UNJOINED_MIN_AVERAGE * len(chunks):
                data = b""
                pieces = tuple(chunks)
                chunks.clear()
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
                if pieces is None:
                    self._protocol.data_received(data)
                else:  # one read, without the copy: see _unjoined_reads_invisible()
                    for piece in pieces:
                        self._protocol.data_received(piece)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
        if self._in.on_read is not None:
            self._in.on_read()
        if rx._size or self._rx_eof or self._rx_error is not None:
            self._want_read()

    def _read_data(self) -> None:
        available = self._rx._size
        if self._chunker is None:
            n = available if available < _MAX_READ else _MAX_READ
        else:
            try:
                ended = self._rx_eof or self._rx_error is not None
                n = self._chunker.next_size(available, ended)
            except (TypeError, ValueError) as exc:
                self._fatal_error(exc, "Fatal error: the chunks policy failed.")
                return
        if n == 0:
            self._rx_stalled = True  # the chunks policy waits for more bytes
            return
        if self._buffered:
            protocol: Any = self._protocol
            buf = self._get_buffer()
            view = None if buf is None else self._recv_view(buf)
            if view is None:
                return
            n = min(n, len(view))
            view[:n] = self._rx.take(n)  # what recv_into() does
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

    def _get_buffer(self) -> Any:
        """Call ``get_buffer(-1)`` and return the buffer.

        An exception, or an empty buffer, is the fatal error a socket transport
        reports; None is returned then.
        """
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return None
        return buf

    def _offer_buffer(self) -> bool:
        """Ask a BufferedProtocol for the buffer of a read that finds EOF or an error.

        A socket transport calls ``get_buffer(-1)`` before every ``recv_into()``,
        also the one that returns 0 or fails: an empty buffer, one that cannot be
        written, or an exception from ``get_buffer`` is then the fatal error.

        Returns:
            Whether the read goes on to ``eof_received`` or its own error.
        """
        buf = self._get_buffer()
        return buf is not None and self._recv_view(buf) is not None

    def _recv_view(self, buf: Any) -> memoryview | None:
        """The bytes of *buf* that a read fills, or None after the fatal error of recv_into().

        ``recv_into()`` takes only a writable, contiguous buffer, and says so in
        its own words; a socket transport reports its error as a read error.
        """
        try:
            view = memoryview(buf)
        except TypeError:
            view = None
        if view is not None and not view.readonly and view.c_contiguous:
            return view.cast("B")
        error = _recv_into_refusal(buf)
        self._fatal_error(error, "Fatal read error on socket transport")
        return None

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

    def _stop_reading(self) -> None:
        handle = self._read_handle
        if handle is not None:
            self._read_handle = None
            handle.cancel()  # the loop skips it; a cancelled handle cannot run again
            if handle is self._read_event:
                self._read_event = asyncio.Handle(
                    self._read_ready, (), self._loop, self._read_context
                )
