"""In-memory datagram transports that behave like asyncio's selector UDP transports.

:class:`MemoryDatagramTransport` follows ``_SelectorDatagramTransport`` (CPython
``asyncio/selector_events.py``): ``connection_made`` comes from the loop; a
``sendto()`` with an empty buffer leaves at once and the peer's
``datagram_received`` runs on a later loop turn; a connected transport accepts
only its peer's address (or None); buffered datagrams count towards the write
buffer and the water marks as the running Python counts them:

* up to 3.12, ``sendto(b"")`` is dropped and a buffered datagram counts its length;
* from 3.13, empty datagrams are sent and a buffered datagram counts its length
  plus 8 header bytes; 3.13.0 to 3.13.5 subtract only the length when it leaves
  (CPython gh-135444), so the size drifts upwards by 8 per buffered datagram.

Datagrams are buffered only while the peer does not take them: in manual mode
(until :meth:`MemoryDatagramTransport.pump`), or when the test plays the peer.

A connected socket has one pending error (Linux's ``sk_err``), and so has the
memory transport: a connected UDP end whose datagram nobody takes gets
``ECONNREFUSED`` pending at once, as the ICMP port unreachable reply arrives
inside the send on loopback (an unconnected one hears nothing, as on Linux), and
`MemoryDatagramTransport.feed_error` makes its error pending.  Whichever comes
first takes it: the next read (``error_received`` on a later loop turn) or the next
send (``error_received`` inside ``sendto()``, and that datagram is not sent).  A
later error replaces one still pending.

From 3.11 reading can be paused, as a socket transport's reader is removed:
datagrams that arrive meanwhile wait in order, and the pending error waits too
(a read takes it before them, a send may take it first); from the turn after
``resume_reading()`` they are read one per loop turn.  A connected AF_UNIX end
whose peer closed learns it at its next send (``ECONNREFUSED`` inside
``sendto()``), and the kernel then drops what waited to be read
(``unix_dgram_disconnected``).  A socket's receive buffer
drops what it cannot hold (about 256 datagrams with Linux's default
``SO_RCVBUF``, fewer large ones); the memory transport keeps every one, so that
nothing is lost by chance (`nettest.faults.Drop` loses datagrams on purpose).
On 3.10, as there, ``pause_reading()`` raises `NotImplementedError`.

What the kernel checks when a datagram is sent, the memory transports check at the
same moment (see ``_route``): a malformed address is a fatal error; an address
that does not resolve, port 0 or a datagram larger than the family allows
(`nettest._endpoint.MAX_DATAGRAM_SIZE`) reaches ``error_received`` inside the
``sendto()`` call, and so does, over AF_UNIX, a path no open end holds (see
``_find_unix_receiver``).  Addresses resolve without DNS: numeric forms and
``localhost`` (from the hosts file), so ``("localhost", port)`` reaches an end at
``127.0.0.1`` as it would over loopback; other names are compared as they are.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import socket
import sys
import typing
from collections import deque
from collections.abc import Iterator
from typing import Any, Literal

from ._endpoint import (
    AF_UNIX,
    MAX_DATAGRAM_SIZE,
    FlowControlled,
    bound_address,
    check_address,
    check_bool,
    check_count,
    check_protocol,
    datagram_address,
    datagram_key,
    family_of_ends,
    is_wildcard,
    loopback,
    os_error,
    reaches_wildcard,
    released,
)
from ._hygiene import track
from ._recording import _UNSET, resolve_timeout
from ._transport_reading import reads_in_resumer_context

__all__ = ["MemoryDatagramTransport", "memory_datagram_pair"]

logger = logging.getLogger("asyncio")


#: CPython gh-113812: asyncio's datagram transports send ``sendto(b"")`` from
#: 3.13 on, and drop it before.
ASYNCIO_SENDS_EMPTY = sys.version_info >= (3, 13)


def sends_empty(transport: asyncio.BaseTransport) -> bool:
    """Whether ``transport.sendto(b"")`` sends an empty datagram, or drops it.

    asyncio's own transports send it from 3.13 and drop it before; uvloop's drops
    it on every version (uvloop#594), and another loop's is taken to do the same.
    """
    return ASYNCIO_SENDS_EMPTY and type(transport).__module__.startswith("asyncio.")


_HEADER_SIZE = 8 if ASYNCIO_SENDS_EMPTY else 0
# CPython gh-135444: 3.13.0-3.13.5 forget the header bytes when a datagram leaves.
_FORGETS_HEADER = (3, 13) <= sys.version_info[:3] < (3, 13, 6)
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5
#: 3.11 gave the selector datagram transport pause_reading() (3.10's inherits
#: ReadTransport's, which raise NotImplementedError).
_PAUSES_READING = sys.version_info >= (3, 11)
#: What ``_route`` returns for a datagram the kernel refused.
_REFUSED = object()
_ALL = "255.255.255.255"
#: The IPv4 broadcast addresses a loopback-only host routes: all hosts, and lo's /8.
_BROADCAST = frozenset({_ALL, "127.255.255.255"})


def _where(family: int, address: Any) -> Any:
    """Where a datagram must lead to reach an end bound to `address` (see ``_route``)."""
    try:
        return datagram_key(family, address)
    except OSError:
        return address  # a name that does not resolve here: only itself


def _source_of(family: int, address: Any) -> Any:
    """The address datagrams from an end bound to `address` come from.

    A socket bound to the wildcard address sends from loopback, and connecting to
    the wildcard address reaches loopback.
    """
    if is_wildcard(family, address):
        return (loopback(family), *address[1:])
    return address


def _bind_pair(family: int, address_a: Any, address_b: Any) -> tuple[Any, Any]:
    """Bind both ends of a pair as two sockets would: never to clashing addresses.

    A port nettest picks (a default address, or port 0) is never one the other end
    holds, as ``bind()`` never picks a port in use.  Two addresses given that
    clash (the same one, or the wildcard address and a loopback address on one
    port) are refused, as a second ``bind()`` would fail with ``EADDRINUSE``.
    """
    picks = any(
        address is None or (family != AF_UNIX and address[1] == 0)
        for address in (address_a, address_b)
    )
    for _ in range(16384):
        a = datagram_address(family) if address_a is None else bound_address(family, address_a)
        b = datagram_address(family) if address_b is None else bound_address(family, address_b)
        if not _clash(family, a, b):
            return a, b
        if not picks:
            break
    raise ValueError(
        f"address_a and address_b must not clash (a second bind() would fail with "
        f"EADDRINUSE), got {address_a!r} and {address_b!r}"
    )


def _clash(family: int, a: Any, b: Any) -> bool:
    key_a, key_b = _where(family, a), _where(family, b)
    if key_a == key_b:
        return True
    return (is_wildcard(family, a) and reaches_wildcard(family, key_b, a[1])) or (
        is_wildcard(family, b) and reaches_wildcard(family, key_a, b[1])
    )


class _Pending(Exception):
    """The socket's pending error, taken by a send (see `MemoryDatagramTransport._route`)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _check_pausable() -> None:
    if not _PAUSES_READING:
        raise NotImplementedError  # as 3.10's datagram transport


@typing.final
class MemoryDatagramTransport(FlowControlled, asyncio.DatagramTransport):
    """An `asyncio.DatagramTransport` in memory, where the test plays the peer.

    Everything the protocol sends waits for the test (:meth:`take_sent`), and the
    test feeds datagrams and errors (:meth:`feed_datagram`, :meth:`feed_error`,
    which reaches ``error_received``).  Until the test takes them, sent datagrams
    stay in the write buffer, so ``get_write_buffer_size()`` and
    ``pause_writing`` follow the running Python's accounting (see the module
    notes).  :func:`memory_datagram_pair` connects two transports instead.  Must
    be created while the loop runs.

    Args:
        protocol: An `asyncio.DatagramProtocol`.
        local_addr: This end's address (default: loopback, ephemeral port).  A
            4-tuple or a host with a colon makes it IPv6, a path AF_UNIX.  It
            reads back as ``bind()`` leaves it: port 0 becomes an ephemeral port,
            the host numeric, IPv6 a 4-tuple.
        remote_addr: If given, the transport is connected to this address, read
            back the same way: ``sendto`` accepts only it or None, and
            ``peername`` is set.
        allow_broadcast: Set ``SO_BROADCAST``, as ``create_datagram_endpoint()``
            does: without it, a datagram to a broadcast address (such as
            ``"<broadcast>"``) gets ``PermissionError`` in ``error_received``.

    Raises:
        TypeError: ``protocol`` is not an `asyncio.DatagramProtocol`, an address
            that is not an address of its family, or ``allow_broadcast`` not a bool.
        ValueError: an address out of range, a numeric host of the other IP
            family (``("127.0.0.1", 53, 0)``), or of another family than the other.

    Example:
        ::

            transport = MemoryDatagramTransport(protocol, remote_addr=("127.0.0.1", 53))
            await asyncio.sleep(0)  # connection_made
            transport.feed_datagram(b"query", ("127.0.0.1", 53))
            assert transport.take_sent() == [(b"answer", ("127.0.0.1", 53))]
    """

    max_size = 256 * 1024

    # As for MemoryTransport: slots for the state each datagram touches (instance
    # dicts of asyncio's transport subclasses are slow to read on Python 3.13); the
    # dict stays, and the datagram fault layer patches _transmit through it.
    __slots__ = (
        "_address",
        "_address_key",
        "_buffer",
        "_buffer_size",
        "_closed",
        "_closing",
        "_conn_lost",
        "_connected_socket",
        "_error",
        "_flow",
        "_held",
        "_info",
        "_key",
        "_manual",
        "_paused",
        "_peer",
        "_protocol",
        "_read_context",
        "_read_handle",
        "_reading_log",
        "_sent_waiters",
        "_source",
    )

    def __init__(
        self,
        protocol: asyncio.DatagramProtocol,
        *,
        local_addr: Any = None,
        remote_addr: Any = None,
        allow_broadcast: bool = False,
    ) -> None:
        check_protocol("protocol", protocol, "datagram")
        check_bool("allow_broadcast", allow_broadcast)
        family = family_of_ends(local_addr=local_addr, remote_addr=remote_addr)
        if local_addr is None:
            local_addr = datagram_address(family)
        else:
            local_addr = bound_address(family, local_addr)
        if remote_addr is not None:
            remote_addr = bound_address(family, remote_addr, bind=False)
        self._setup(
            protocol,
            local_addr,
            remote_addr,
            family=family,
            manual=True,
            connect=not allow_broadcast,
        )
        self._allow_broadcast(allow_broadcast)
        self._start()

    def _allow_broadcast(self, allow: bool) -> None:
        if allow:  # as create_datagram_endpoint(allow_broadcast=True) does
            self._info["socket"].setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)

    @classmethod
    def _create_end(
        cls,
        protocol: asyncio.DatagramProtocol,
        local_addr: Any,
        remote_addr: Any,
        *,
        family: int,
        manual: bool,
        connect: bool,
    ) -> MemoryDatagramTransport:
        self = cls.__new__(cls)
        self._setup(
            protocol, local_addr, remote_addr, family=family, manual=manual, connect=connect
        )
        return self

    def _setup(
        self,
        protocol: asyncio.DatagramProtocol,
        local_addr: Any,
        remote_addr: Any,
        *,
        family: int,
        manual: bool,
        connect: bool = True,
    ) -> None:
        # With allow_broadcast, create_datagram_endpoint() does not connect the
        # socket to remote_addr: sendto() still takes only that address, but the
        # socket has no peer and hears from anyone.
        connected = remote_addr is not None and connect
        self._start_endpoint(
            protocol,
            family=family,
            kind=socket.SOCK_DGRAM,
            sockname=local_addr,
            # connect() to the wildcard address reaches loopback, and reads back so.
            peername=_source_of(family, remote_addr) if connected else None,
        )
        self._address = remote_addr
        self._connected_socket = connected
        self._key = _where(family, local_addr)
        # Where the remote address leads, worked out once: a connected socket
        # sends every datagram there.
        self._address_key = None if remote_addr is None else _where(family, remote_addr)
        self._source = _source_of(family, local_addr)
        self._buffer: deque[tuple[bytes, Any]] = deque()
        self._buffer_size = 0
        self._manual = manual
        self._peer: MemoryDatagramTransport | None = None
        self._closing = False
        self._closed = False
        self._conn_lost = 0
        self._sent_waiters: list[asyncio.Future[None]] = []
        # As for a socket's reader: datagrams and errors reach the protocol in a
        # context captured now, never in the context of whoever sent them.
        self._read_context = contextvars.copy_context()
        # The socket's pending error (see _set_error), and, reading paused, what
        # arrives waits here (see pause_reading).
        self._error: Exception | None = None
        self._paused = False
        self._held: deque[tuple[bytes, Any]] = deque()
        self._read_handle: asyncio.Handle | None = None

    def _start(self) -> None:
        self._loop.call_soon(self._connection_made)
        track(
            self,
            what=f"MemoryDatagramTransport {self._info['sockname']!r}",
            is_open=FlowControlled._hygiene_is_open,
            close=FlowControlled._hygiene_close,
        )

    def _connection_made(self) -> None:
        if not self._closed:
            self._protocol.connection_made(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return (
            f"<MemoryDatagramTransport {state} {self._info.get('sockname')!r} "
            f"bufsize={self._buffer_size}>"
        )

    # -- flow control ----------------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Switch protocols."""
        self._protocol = typing.cast("asyncio.DatagramProtocol", protocol)

    def get_write_buffer_size(self) -> int:
        """Return the buffered bytes, counted as the running Python counts them."""
        return self._buffer_size

    def _bytes_waiting(self) -> int:
        return sum(len(data) for data, _ in self._held)

    def _reading_peer(self) -> MemoryDatagramTransport | None:
        return self._peer

    # -- sending ---------------------------------------------------------------------

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        """Send one datagram to ``addr`` (or to the connected peer).

        A datagram too large for the family, or an address that does not resolve,
        reaches ``error_received`` before this returns, as with a socket; a
        malformed address is a fatal error (``connection_lost`` on a later turn).
        So does the socket's pending error (see :meth:`feed_error`), as the
        kernel's send takes it: this datagram is then not sent.

        Raises:
            TypeError: ``data`` is not bytes-like.
            ValueError: connected, and ``addr`` is neither None nor the peer.
            AttributeError: unconnected, after ``connection_lost``, as asyncio's
                selector transport raises it.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if not data and not ASYNCIO_SENDS_EMPTY:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            if self._conn_lost >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if self._closed:
            # asyncio's transport let go of its socket and loop in connection_lost:
            # an unconnected one still tries the send, and fails reporting the
            # error on the loop it no longer has (every Python from 3.10).
            raise released("call_exception_handler")
        payload = bytes(data)
        if not self._buffer or self._peer is None:
            # The kernel checks a datagram at the first attempt to send it, before
            # it waits for room: a socket transport makes that attempt here when its
            # buffer is empty.  When the test plays the peer, what it takes was sent.
            if isinstance(data, memoryview) and not data.c_contiguous:
                # The socket module takes only contiguous buffers (a buffered
                # datagram was copied to bytes first, and goes).
                error = BufferError("memoryview: underlying buffer is not C-contiguous")
                self._fatal_error(error, "Fatal write error on datagram transport")
                return
            addr = self._route(payload, addr)
            if addr is _REFUSED:
                return
            if not self._manual:
                self._transmit(payload, addr)
                return
        self._buffer.append((payload, addr))
        self._buffer_size += len(data) + _HEADER_SIZE
        self._maybe_pause_protocol()
        self._wake()

    def _route(self, data: bytes, addr: Any) -> Any:
        """Check a datagram as the kernel's ``sendto()`` does; return where it goes.

        As in ``_SelectorDatagramTransport.sendto()``: a malformed address raises
        `TypeError` or `OverflowError` in the socket module, a fatal error; an
        `OSError` (a name that does not resolve, port 0, ``EMSGSIZE``) goes to
        ``error_received`` at once.  A connected socket uses ``send()``, which only
        checks the size.  The pending error is taken where the kernel takes it,
        once the address is checked (before the receiver is looked up, over
        AF_UNIX): it goes to ``error_received`` and the datagram is not sent.

        Returns:
            The peer's own address if the datagram leads to it (so that the peer,
            and a fault layer wrapping ``_transmit``, recognise it), else ``addr``;
            or ``_REFUSED``.
        """
        family = self._info["socket"].family
        try:
            key = None if self._connected_socket else datagram_key(family, addr, "sendto")
            if key is not None and (key == b"" or (family != AF_UNIX and key[1] == 0)):
                raise os_error(errno.EINVAL)
            if len(data) > MAX_DATAGRAM_SIZE[family]:
                raise os_error(errno.EMSGSIZE)
            if family == AF_UNIX:
                self._take_error()
                if self._peer is not None:
                    self._find_unix_receiver(key)
            if (
                key is not None
                and family == socket.AF_INET6
                and str(key[0]).startswith("::ffff:")
                and not is_wildcard(family, self._info["sockname"])
            ):
                # An IPv4-mapped address is reachable only from a dual-stack socket
                # bound to the wildcard address, not from one bound to ::1.
                raise os_error(errno.ENETUNREACH)
            broadcast = None
            if key is not None and family == socket.AF_INET and key[0] in _BROADCAST:
                broadcast = self._broadcast(key, addr)
            if family != AF_UNIX:
                self._take_error()
            if broadcast is not None:
                return broadcast
        except _Pending as pending:
            self._protocol.error_received(pending.error)
            return _REFUSED
        except OSError as exc:
            self._protocol.error_received(exc)
            return _REFUSED
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on datagram transport")
            return _REFUSED
        peer = self._peer
        if peer is not None:
            target = key if key is not None else self._address_key
            if peer._takes(target):
                return peer._info["sockname"]
            if key is not None and self._takes(key):
                return self._info["sockname"]
        return addr

    def _take_error(self) -> None:
        """Raise `_Pending` with the socket's pending error, if any, and clear it.

        The kernel's send takes it (``sock_alloc_send_pskb``), so the datagram is
        not sent.
        """
        error, self._error = self._error, None
        if error is not None:
            raise _Pending(error)

    def _takes(self, key: Any) -> bool:
        """Whether a datagram for `key` (see `datagram_key`) reaches this end.

        One bound to the wildcard address takes what is sent to any loopback
        address on its port, as a socket bound to ``0.0.0.0`` does.
        """
        if key == self._key:
            return True
        sockname = self._info["sockname"]
        family = self._info["socket"].family
        return is_wildcard(family, sockname) and reaches_wildcard(family, key, sockname[1])

    def _broadcast(self, key: tuple[str, int], addr: Any) -> Any:
        """Return where a broadcast datagram goes, as over Linux loopback.

        Without ``SO_BROADCAST`` the kernel refuses it (``EACCES``).  With it, an
        end bound to the wildcard address on that port receives it, and so does one
        bound to ``127.255.255.255`` when that is where it was sent.
        """
        sock = self._info["socket"]
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST):
            raise os_error(errno.EACCES)
        peer = self._peer
        if peer is not None:
            host, port = peer._info["sockname"]
            if port == key[1] and host in ("0.0.0.0", key[0] if key[0] != _ALL else None):
                return peer._info["sockname"]
        return addr

    def _find_unix_receiver(self, key: Any) -> None:
        """Raise what an AF_UNIX ``sendto()`` raises when no socket takes the datagram.

        The kernel finds the receiver inside the call: a path nobody bound gives
        ``ENOENT`` (an abstract name, ``ECONNREFUSED``), a closed socket's path
        ``ECONNREFUSED``.  A connected sender whose peer closed gets
        ``ECONNREFUSED`` once and is then disconnected: ``ENOTCONN`` after that;
        the kernel then drops what waited to be read (``unix_dgram_disconnected``).
        """
        peer = self._peer
        assert peer is not None
        # A closing end's socket is open until its connection_lost: until then it
        # still takes datagrams (and never reads them).
        if self._connected_socket:
            if self._info["socket"]._peername is None:
                raise os_error(errno.ENOTCONN)
            if peer._closed:
                self._info["socket"]._peername = None
                self._held.clear()
                raise os_error(errno.ECONNREFUSED)
        elif key == self._key or (key == peer._key and not peer._closed):
            return
        elif key == peer._key or key[:1] == b"\0":
            raise os_error(errno.ECONNREFUSED)
        else:
            raise os_error(errno.ENOENT)

    def _transmit(self, data: bytes, addr: Any) -> None:
        """Put one datagram on the wire: its receiver gets it on a later loop turn.

        ``_route`` has checked it.  As on Linux, a UDP datagram for an address
        nobody holds is lost; a connected sender then has ``ConnectionRefusedError``
        pending at once (the ICMP port unreachable reply arrives inside the send on
        loopback; see `_set_error`), an unconnected one hears nothing.  (An AF_UNIX
        sender learns it inside ``sendto()``; a datagram delayed by a fault is lost
        silently.)
        """
        peer = self._peer
        source = self._source
        if peer is not None and addr == peer._info["sockname"] and not peer._closed:
            peer._arrive(data, source)
        elif peer is not None and addr == self._info["sockname"] and not self._address:
            self._arrive(data, source)
        elif self._connected_socket and self._info["socket"].family != AF_UNIX:
            self._set_error(os_error(errno.ECONNREFUSED))

    def pump(self, max_datagrams: int | None = None) -> int:
        """Send up to ``max_datagrams`` buffered datagrams to the peer end (manual mode).

        Each is checked as it leaves, as after a socket's buffer waited for room: one
        the kernel refuses goes to ``error_received`` (see :meth:`sendto`) and is
        not counted.  Outside manual mode nothing waits for it, and it returns 0.

        Returns:
            The number of datagrams sent.

        Raises:
            TypeError: ``max_datagrams`` is not an int.
            ValueError: ``max_datagrams`` below 1.
            RuntimeError: the test plays this transport's peer (it was made
                directly, not by :func:`memory_datagram_pair`): the test takes what
                waits with :meth:`take_sent`.
        """
        if max_datagrams is not None:
            check_count("max_datagrams", max_datagrams)
        if self._peer is None:
            raise RuntimeError(
                "pump() sends to the other end of a memory_datagram_pair; the test"
                " plays this transport's peer, so take what it sent with take_sent()"
            )
        sent = 0
        for data, addr in self._checked(self._pop(max_datagrams)):
            self._transmit(data, addr)
            sent += 1
        return sent

    def _checked(self, taken: list[tuple[bytes, Any]]) -> Iterator[tuple[bytes, Any]]:
        """Check each datagram as it leaves (see `_route`); yield those the kernel takes.

        One it refuses goes to ``error_received``; after a fatal error the rest of
        the buffer is discarded.
        """
        for data, addr in taken:
            addr = self._route(data, addr)
            if addr is not _REFUSED:
                yield data, addr
            elif self._conn_lost:
                return

    def _pop(self, limit: int | None) -> list[tuple[bytes, Any]]:
        taken: list[tuple[bytes, Any]] = []
        while self._buffer and (limit is None or len(taken) < limit):
            data, addr = self._buffer.popleft()
            self._buffer_size -= len(data) + (0 if _FORGETS_HEADER else _HEADER_SIZE)
            taken.append((data, addr))
        if taken:
            self._loop.call_soon(self._after_send)
        return taken

    def _after_send(self) -> None:
        if self._conn_lost:
            return  # aborted, or failed: connection_lost is on its way
        self._maybe_resume_protocol()
        if not self._buffer and self._closing and not self._closed:
            self._call_connection_lost(None)

    # -- the test as the peer ----------------------------------------------------------

    def take_sent(self, max_datagrams: int | None = None) -> list[tuple[bytes, Any]]:
        """Take the datagrams the protocol sent, as ``(data, addr)``, oldest first.

        This empties the write buffer: ``resume_writing`` follows on the next turn.
        On an end of a manual `memory_datagram_pair` it takes what waits for
        `pump`: the peer never receives those, as if the network lost them.
        Each is checked as it is taken, as `pump` checks it (one the kernel refuses
        goes to ``error_received`` and is not returned), and its address is the one
        it leads to, so the same address always reads the same.

        Raises:
            TypeError: ``max_datagrams`` is not an int.
            ValueError: ``max_datagrams`` below 1.
        """
        if max_datagrams is not None:
            check_count("max_datagrams", max_datagrams)
        return self._take(max_datagrams)

    def _take(self, limit: int | None) -> list[tuple[bytes, Any]]:
        """Take buffered datagrams for the test, each checked as it leaves."""
        taken = self._pop(limit)
        if self._peer is None:
            return taken  # checked as they were sent (see sendto)
        return list(self._checked(taken))

    async def receive_sent(
        self, count: int = 1, *, timeout: float | None = _UNSET
    ) -> list[tuple[bytes, Any]]:
        """Wait until the protocol has sent ``count`` datagrams, and take them.

        Args:
            count: How many datagrams to wait for.
            timeout: Seconds to wait, > 0 and finite, or None to wait for ever
                (default: nettest's timeout, ``--nettest-timeout``).

        Raises:
            TypeError: ``count`` is not an int, or ``timeout`` not a number or None.
            ValueError: ``count`` below 1, or ``timeout`` not above 0 or not finite.
            TimeoutError: fewer in time; the message shows those that were sent.
        """
        check_count("count", count)
        wait = resolve_timeout(timeout)

        async def until() -> None:
            while len(self._buffer) < count:
                waiter = self._loop.create_future()
                self._sent_waiters.append(waiter)
                await waiter

        try:
            await asyncio.wait_for(until(), wait)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"expected {count} datagrams sent by the protocol within {wait}s; "
                f"got {len(self._buffer)}: {list(self._buffer)[:10]!r}"
            ) from None
        return self._take(count)

    def _wake(self) -> None:
        waiters, self._sent_waiters = self._sent_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def feed_datagram(self, data: bytes, addr: Any) -> None:
        """Deliver a datagram from ``addr`` to the protocol on a later loop turn.

        ``addr`` is an address of the transport's family, given as ``sendto()``
        takes one, or None for an AF_UNIX sender that bound no address; the
        protocol receives it as a socket reports a source: an IPv6 address as a
        4-tuple, ``localhost`` as its numeric address.  A connected
        transport receives only from its peer, as a connected socket does: a
        datagram from another address is dropped.

        Raises:
            TypeError: ``data`` is not bytes-like, or ``addr`` is not an address
                of the transport's family.
            ValueError: a port or flow label out of range, or a numeric host of the
                other IP family.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        family = self._info["socket"].family
        if family == AF_UNIX and addr is None:
            source = None  # an AF_UNIX sender that bound no address
        else:
            check_address(family, addr, "addr")
            source = bound_address(family, addr, bind=False)
        self._arrive(bytes(data), source)

    def feed_error(self, exc: Exception) -> None:
        """Make ``exc`` the socket's pending error: ``error_received`` gets it.

        For example ``ConnectionRefusedError`` for an ICMP port-unreachable reply.
        As a socket's pending error, it goes to whichever comes first: the next
        read (``error_received`` on a later loop turn, or after
        ``resume_reading()``) or the next ``sendto()`` (``error_received`` inside
        the call, and that datagram is not sent).  One error is pending at a time:
        a second replaces the first.

        Raises:
            TypeError: ``exc`` is not an exception instance (a class, for one).
        """
        if not isinstance(exc, Exception):
            raise TypeError(f"exc must be an exception instance, got {exc!r}")
        self._set_error(exc)

    def _arrive(self, data: bytes, addr: Any) -> None:
        """Queue a datagram as the socket's receive queue does, inside the send.

        It is read on a later loop turn, one datagram a turn, behind those already
        waiting and the pending error (see `_read_one`), as a socket transport
        reads one per turn.  A closing end's socket takes it and never reads it.
        """
        if self._closing:
            return
        if self._connected_socket and addr != self._info["peername"]:
            return  # a connected UDP socket only receives from its peer
        self._held.append((data, addr))
        self._read_soon()

    def _set_error(self, exc: Exception) -> None:
        """Make ``exc`` the pending error, as ``sk_err``: a later one replaces it.

        The next read (on a later loop turn, unless paused) or the next send,
        whichever comes first, takes it (see `_read_one` and `_take_error`).
        """
        if self._closing:
            return
        self._error = exc
        self._read_soon()

    # -- reading -----------------------------------------------------------------------

    def is_reading(self) -> bool:
        """Return True unless reading is paused or the transport is closing.

        Raises:
            NotImplementedError: on Python 3.10, as its datagram transport does.
        """
        _check_pausable()
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        """Stop reading until :meth:`resume_reading`: what arrives meanwhile waits.

        Datagrams wait in order, every one (a socket's receive buffer would drop
        what it cannot hold); the pending error waits too, a later one replacing
        it, unless a ``sendto()`` takes it first.  Does nothing if paused already
        or closing.

        Raises:
            NotImplementedError: on Python 3.10, as its datagram transport does.
        """
        _check_pausable()
        if self.is_reading():
            self._paused = True
            self._note_reading("pause")
            # As remove_reader() cancels the reader's handle: a read already due is
            # made again at resume_reading(), in its caller's context.
            if self._read_handle is not None:
                self._read_handle.cancel()
                self._read_handle = None

    def resume_reading(self) -> None:
        """Read again, from the next loop turn (never inside this call).

        What waited comes first: the pending error (if no send took it), then the
        datagrams in order, one per loop turn.  Does nothing unless paused, or once closing.

        Raises:
            NotImplementedError: on Python 3.10, as its datagram transport does.
        """
        _check_pausable()
        if self._closing or not self._paused:
            return
        self._paused = False
        self._note_reading("resume")
        if self._read_handle is None and reads_in_resumer_context(self._loop):
            # As a selector loop's reader, added again: see `nettest._transport_reading`.
            self._read_context = contextvars.copy_context()
        self._read_soon()

    def _read_soon(self) -> None:
        """Schedule the next read of what waits, unless paused or scheduled already."""
        if (
            self._read_handle is None
            and not self._paused
            and (self._held or self._error is not None)
        ):
            self._read_handle = self._loop.call_soon(self._read_one, context=self._read_context)

    def _read_one(self) -> None:
        """Read one thing that waits, as a socket reads one per turn: the error first.

        The next read is scheduled first, so that a protocol that raises (the loop's
        exception handler gets it) leaves the rest to be read; one that pauses
        again stops it.
        """
        self._read_handle = None
        if self._paused or self._closing:
            return
        exc, self._error = self._error, None
        if exc is not None:
            self._read_soon()
            self._protocol.error_received(exc)
        elif self._held:
            data, addr = self._held.popleft()
            self._read_soon()
            # As in the socket transport, an exception from the protocol is not fatal:
            # it reaches the loop's exception handler and the transport stays open.
            self._protocol.datagram_received(data, addr)

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop receiving; ``connection_lost(None)`` follows once the buffer is empty."""
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def _unsent_at_close(self) -> str | None:
        # Buffered only in manual mode or for the test: only the test drains it.
        if not self._closing or self._closed or self._conn_lost or not self._buffer:
            return None
        n = len(self._buffer)
        size = sum(len(data) for data, _ in self._buffer)
        datagrams, it = ("a datagram", "it") if n == 1 else (f"{n} datagrams", "them")
        how = "take_sent()" if self._peer is None else "pump()"
        return f"{datagrams} ({size} bytes) never left its write buffer ({how} {it}, or abort())"

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._buffer.clear()
        self._buffer_size = 0
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._protocol.connection_lost(typing.cast("Exception | None", exc))
        finally:
            self._info["socket"]._close()


def memory_datagram_pair(
    protocol_a: asyncio.DatagramProtocol,
    protocol_b: asyncio.DatagramProtocol,
    *,
    address_a: Any = None,
    address_b: Any = None,
    connected: bool | Literal["a", "b"] = True,
    manual: bool = False,
    allow_broadcast: bool = False,
) -> tuple[MemoryDatagramTransport, MemoryDatagramTransport]:
    """Make two :class:`MemoryDatagramTransport` objects that exchange datagrams.

    Each ``sendto`` to the other end's address reaches its ``datagram_received``
    on a later loop turn, with the sender's address; datagrams to any other
    address are lost, as UDP would lose them.

    Args:
        protocol_a: Connected to the first transport.
        protocol_b: Connected to the second transport.
        address_a: The first end's address (default: loopback, ephemeral port, of
            the family of ``address_b``).  A 4-tuple or a host with a colon makes
            it IPv6, a path AF_UNIX.
        address_b: The second end's address (default: as for ``address_a``).
            Both read back as a bound socket reports them (port 0 becomes an
            ephemeral port, the host numeric, IPv6 a 4-tuple).
        connected: If true (the default), each end is connected to the other, as
            with ``create_datagram_endpoint(remote_addr=...)``: ``sendto`` takes
            None or the peer's address and ``peername`` is set.  ``"a"`` or
            ``"b"`` connects that end alone: a client made with ``remote_addr``
            talking to a server made with ``local_addr`` only, which must name
            the address of each datagram it sends.
        manual: If true, datagrams stay in the sender's buffer until
            :meth:`MemoryDatagramTransport.pump`.
        allow_broadcast: Set ``SO_BROADCAST`` on both ends (see
            :class:`MemoryDatagramTransport`).  A broadcast then reaches the
            other end if it is bound to the wildcard address on that port (or to
            ``127.255.255.255``, for a datagram sent there), as over loopback.

    Returns:
        ``(transport_a, transport_b)``.

    Raises:
        TypeError: a protocol that is not an `asyncio.DatagramProtocol`, an
            address that is not an address of its family, or a flag that is not
            a bool (``connected`` may also be ``"a"`` or ``"b"``).
        ValueError: an address out of range, a numeric host of the other IP
            family (``("127.0.0.1", 53, 0)``), the two of different families, or
            two that clash (the same one, or the wildcard address and a loopback
            address on one port), or a ``connected`` string other than ``"a"``
            and ``"b"``.

    Example:
        ::

            a, b = memory_datagram_pair(ProtocolA(), ProtocolB())
            await asyncio.sleep(0)  # connection_made
            a.sendto(b"ping")
    """
    check_protocol("protocol_a", protocol_a, "datagram")
    check_protocol("protocol_b", protocol_b, "datagram")
    if not isinstance(connected, (bool, str)):
        raise TypeError(f"connected must be True, False, 'a' or 'b', got {connected!r}")
    if isinstance(connected, str) and connected not in ("a", "b"):
        raise ValueError(f"connected must be True, False, 'a' or 'b', got {connected!r}")
    check_bool("manual", manual)
    check_bool("allow_broadcast", allow_broadcast)
    family = family_of_ends(address_a=address_a, address_b=address_b)
    bound_a, bound_b = _bind_pair(family, address_a, address_b)
    # Each end's remote address is the other's; with allow_broadcast the sockets
    # are not connected.
    a = MemoryDatagramTransport._create_end(
        protocol_a,
        bound_a,
        bound_b if connected in (True, "a") else None,
        family=family,
        manual=manual,
        connect=not allow_broadcast,
    )
    b = MemoryDatagramTransport._create_end(
        protocol_b,
        bound_b,
        bound_a if connected in (True, "b") else None,
        family=family,
        manual=manual,
        connect=not allow_broadcast,
    )
    a._peer, b._peer = b, a
    for end in (a, b):
        end._allow_broadcast(allow_broadcast)
    a._start()
    b._start()
    return a, b
