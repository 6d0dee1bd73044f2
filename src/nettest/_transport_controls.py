"""What a test uses to play the peer of a :class:`~nettest.MemoryTransport` made on its own.

The test reads what the protocol wrote (``peek_written``, ``take_written``,
``receive_written``), which frees the in-flight capacity as a reading peer
would, and sends the protocol data, EOF, a reset or an error (``feed_*``).  On
an end of a :func:`~nettest.memory_transport_pair` the other transport is the
peer, and these raise `RuntimeError`.

``_PeerControls`` is a mixin of :class:`~nettest.MemoryTransport`.
"""

from __future__ import annotations

import asyncio
import typing

from ._endpoint import check_count
from ._recording import _UNSET, resolve_timeout

if typing.TYPE_CHECKING:
    from ._links import Link


class _PeerControls:
    """The ``feed_*`` and ``*_written`` methods of a transport whose peer is the test."""

    _out: Link
    _in: Link
    _closed: bool

    if typing.TYPE_CHECKING:

        def _reset_connection(self) -> None: ...

        def _rx_break(self, exc: Exception) -> None: ...

        def _reading_state(self) -> str: ...

        def _describe_reading(self) -> str: ...

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

        Args:
            max_bytes: The most to take (default: everything there).

        Raises:
            TypeError: ``max_bytes`` is not an int.
            ValueError: ``max_bytes`` below 1.
            RuntimeError: the transport is an end of a pair.
        """
        if max_bytes is not None:
            check_count("max_bytes", max_bytes)
        return self._test_link("out").take_unread(max_bytes)

    @property
    def written_eof(self) -> bool:
        """Whether the protocol's EOF (``write_eof()`` or closing) reached the peer."""
        return self._test_link("out").unread_eof

    async def receive_written(self, nbytes: int, *, timeout: float | None = _UNSET) -> bytes:
        """Wait until the protocol has written ``nbytes`` more bytes, and take them.

        As reading from a socket: bytes that arrived before a reset or the
        protocol's EOF are still returned; only a wait that they cannot satisfy
        raises, and leaves what did arrive for :meth:`take_written`.

        Args:
            nbytes: How many bytes to wait for.
            timeout: Seconds to wait, > 0 and finite, or None to wait for ever
                (default: nettest's timeout, ``--nettest-timeout``).

        Raises:
            TypeError: ``nbytes`` is not an int, or ``timeout`` not a number or None.
            ValueError: ``nbytes`` below 1, or ``timeout`` not above 0 or not finite.
            TimeoutError: not enough bytes in time; the message shows what arrived.
            EOFError: the protocol closed its side before writing ``nbytes``.
            ConnectionResetError: the connection was reset before ``nbytes``
                arrived (``feed_reset()``, ``reset()``, or the protocol's end
                closed with data unread, or over TCP with ``SO_LINGER`` set to 0).
        """
        check_count("nbytes", nbytes)
        wait = resolve_timeout(timeout)
        link = self._test_link("out")

        def ready() -> bool:
            return len(link.unread) >= nbytes or link.unread_eof or link.broken or self._closed

        try:
            await asyncio.wait_for(link.wait_unread(ready), wait)
        except asyncio.TimeoutError:
            # A protocol that waits for input it never reads is the usual cause.
            raise TimeoutError(
                f"expected {nbytes} bytes written by the protocol within {wait}s; "
                f"got {len(link.unread)}: {bytes(link.unread[:200])!r}; its reading is "
                f"{self._reading_state()}: {self._describe_reading()}"
            ) from None
        if len(link.unread) < nbytes:
            what = "the connection was reset" if link.broken else "it closed its side"
            error = ConnectionResetError if link.broken else EOFError
            raise error(
                f"expected {nbytes} bytes written by the protocol, but {what} "
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
        """Reset the connection from the peer: ``connection_lost(ConnectionResetError)``.

        Data fed before it is still delivered first, as a kernel keeps what it
        received; the protocol's unsent writes are lost.
        """
        self._test_link("in")
        self._reset_connection()

    def feed_error(self, exc: Exception) -> None:
        """Make reading fail with ``exc``, which the transport treats as fatal.

        The read fails once the data (and EOF) fed before it has been delivered,
        as a socket reports a pending error only when nothing is left to read.

        Raises:
            TypeError: ``exc`` is not an exception instance (a class, for one).
        """
        if not isinstance(exc, Exception):
            raise TypeError(f"exc must be an exception instance, got {exc!r}")
        self._test_link("in")
        self._rx_break(exc)
