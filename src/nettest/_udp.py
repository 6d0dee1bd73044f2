"""Loopback datagram servers (UDP over IPv4/IPv6, multicast, broadcast, Unix datagrams).

A datagram server binds its own socket and records every datagram it receives
and sends.  Handlers: ``echo`` (reply to the sender), ``sink`` (record only), a
``script`` (expect and send datagrams in order), or a DatagramProtocol factory.

Python before 3.13 drops ``sendto(b"")`` silently (an empty reply is never sent),
and uvloop does on every version; receiving empty datagrams works everywhere.
``server.sent`` records only what the real transport sent (see `sends_empty` and
`_DatagramServer._send_recorded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import pathlib
import socket
import sys
import typing
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, TypeVar

import pytest
import pytest_asyncio

from ._datagrams import sends_empty
from ._handlers import (
    DatagramProtocolFactory,
    DatagramReply,
    Handler,
    Script,
    ServerClosing,
    check_datagram_script,
    classify,
    echo,
    handler_error,
    make_protocol,
    run_datagram_script,
)
from ._hygiene import parts_of, track
from ._recording import (
    _UNSET,
    Datagram,
    Signal,
    format_address,
    format_datagrams,
    resolve_timeout,
    show,
)
from ._server_base import (
    AsyncServerFactory,
    _apply_buffers,
    _check_buffer,
    _check_int,
    _closed_on_error,
    _loop_thread_call,
    _LoopbackHost,
    _LoopbackServer,
    _UnixPath,
    check_bool,
    check_host,
    close_transports_after_their_loop,
    has_ipv6_loopback,
    socket_has_input,
)

__all__ = [
    "UDPServer",
    "UDPServerFactory",
    "UnixDatagramServer",
    "UnixDatagramServerFactory",
    "multicast_socket",
]

_D = TypeVar("_D", bound="_DatagramServer")
#: Seconds teardown at most lets a script take the datagrams that have arrived.
_CATCH_UP = 1.0


class _RecordingDatagramTransport(asyncio.DatagramTransport):
    """What a handler's DatagramProtocol sees: the real transport, with sends recorded."""

    # Slots: instance dicts of asyncio's transport subclasses are slow to read on
    # Python 3.13, and every write goes through here.  A dict stays, for patching.
    __slots__ = ("__dict__", "__weakref__", "_inner", "_server")

    def __init__(self, inner: asyncio.DatagramTransport, server: _DatagramServer) -> None:
        super().__init__()
        self._inner = inner
        self._server = server

    def __repr__(self) -> str:
        return f"<{self._inner!r}, its sends recorded by {self._server._name}>"

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        """Send through the real transport; record the datagram only if it was sent.

        What the real ``sendto()`` raises propagates unchanged, and is not recorded.
        """
        self._server._send_recorded(self._inner, data, addr)

    def abort(self) -> None:
        self._inner.abort()

    def close(self) -> None:
        self._inner.close()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        size: int = getattr(self._inner, "get_write_buffer_size", lambda: 0)()
        return size

    # The rest of the real transport's API is looked up on it, so that a handler
    # sees what it would see there: where the real one has no such method (uvloop's
    # has no pause_reading) hasattr() is False here too, and a call raises what the
    # real one raises (NotImplementedError from 3.10's pause_reading).

    @property
    def set_write_buffer_limits(self) -> Callable[..., None]:
        """The real transport's ``set_write_buffer_limits(high=None, low=None)``."""
        return _api(self._inner).set_write_buffer_limits

    @property
    def get_write_buffer_limits(self) -> Callable[[], tuple[int, int]]:
        """The real transport's ``get_write_buffer_limits()``."""
        return _api(self._inner).get_write_buffer_limits

    @property
    def pause_reading(self) -> Callable[[], None]:
        """The real transport's ``pause_reading()`` (asyncio's, from 3.11)."""
        return _api(self._inner).pause_reading

    @property
    def resume_reading(self) -> Callable[[], None]:
        """The real transport's ``resume_reading()`` (asyncio's, from 3.11)."""
        return _api(self._inner).resume_reading

    @property
    def is_reading(self) -> Callable[[], bool]:
        """The real transport's ``is_reading()`` (asyncio's, from 3.11)."""
        return _api(self._inner).is_reading


def _api(transport: asyncio.DatagramTransport) -> asyncio.Transport:
    """`transport`, typed as what declares its flow-control and reading methods.

    Only for the type checker: asyncio's selector datagram transport is an
    `asyncio.Transport`, and typeshed's `asyncio.DatagramTransport` declares none
    of them.  Looking up one the real transport lacks raises `AttributeError`.
    """
    return typing.cast("asyncio.Transport", transport)


def _name_of(function: object) -> str:
    """What a handler error calls a reply function: its name, or its repr."""
    name = getattr(function, "__qualname__", None)
    return name if isinstance(name, str) else repr(function)


#: How many of the datagrams received a handler error lists, the last ones.
_DATAGRAMS_SHOWN = 20


class _DatagramProtocol(asyncio.DatagramProtocol):
    #: A fatal error closes the transport with it, and connection_lost records it
    #: as the server's error: the hygiene gate leaves the loop's report of it alone.
    reports_its_fatal_errors = True

    def __init__(self, server: _DatagramServer) -> None:
        self._server = server
        self._inner: asyncio.DatagramProtocol | None = None

    def _guard(self, what: str, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:
            self._server._record_error(exc, f"{what} raised")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        transport = typing.cast("asyncio.DatagramTransport", transport)
        server = self._server
        server._transport = transport
        if server._kind_of_handler == "protocol":
            factory = typing.cast("DatagramProtocolFactory", server._handler)
            try:
                inner = make_protocol(
                    factory, asyncio.DatagramProtocol, "asyncio.DatagramProtocol"
                )
            except Exception as exc:
                # Raised again at teardown; datagrams are still recorded, not answered.
                server._record_error(exc, "the handler (a protocol factory) failed")
                return
            self._inner = inner
            proxy = _RecordingDatagramTransport(transport, server)
            self._guard("connection_made()", lambda: inner.connection_made(proxy))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        server = self._server
        server._record(Datagram(bytes(data), addr, server._now(), "received"))
        handler = server._handler
        inner = self._inner
        if inner is not None:
            # Named with its datagram: which of many made the handler fail.
            call = f"datagram_received({show(bytes(data), 64)}, {format_address(addr)})"
            self._guard(call, lambda: inner.datagram_received(data, addr))
        elif handler is echo:
            server._sendto(data, addr)
        elif isinstance(handler, Script):
            server._queue.put_nowait((bytes(data), addr))
        elif server._kind_of_handler == "reply":
            self._reply(typing.cast("DatagramReply", handler), bytes(data), addr)

    def _reply(self, reply: DatagramReply, data: bytes, addr: Any) -> None:
        """Call a reply function, and send what it returns back to the sender."""
        call = f"{_name_of(reply)}({show(data, 64)}, {format_address(addr)})"
        try:
            answer: object = reply(data, addr)  # checked: users return what they like
        except Exception as exc:
            self._server._record_error(exc, f"{call} raised")
            return
        if answer is None:
            return
        if not isinstance(answer, (bytes, bytearray, memoryview)):
            error = TypeError(
                f"a reply function must return bytes or None, {call} returned "
                f"{type(answer).__name__}: {answer!r}"
            )
            self._server._record_error(error, f"{call} returned no bytes")
            return
        self._server._sendto(bytes(answer), addr)

    def error_received(self, exc: Exception) -> None:
        self._server._errors_received.append(exc)
        inner = self._inner
        if inner is not None:
            self._guard("error_received()", lambda: inner.error_received(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        server = self._server
        server._lost.set()
        if exc is not None:
            # A fatal error closed the transport (a handler's sendto() without an
            # address, say): the server is dead, and that is the handler's failure.
            server._dead = exc
            server._record_error(exc, "it closed the server's transport")
        inner = self._inner
        if inner is not None:
            self._guard("connection_lost()", lambda: inner.connection_lost(exc))


class _DatagramServer(_LoopbackServer):
    """What UDPServer and UnixDatagramServer share."""

    _kind = "datagram server"
    _socket_type = socket.SOCK_DGRAM

    def __init__(
        self,
        handler: Handler | DatagramProtocolFactory | DatagramReply,
        *,
        rcvbuf: int | None,
        sndbuf: int | None,
    ) -> None:
        self._kind_of_handler = classify(handler, datagram=True)
        if isinstance(handler, Handler):
            if isinstance(handler, Script):
                check_datagram_script(handler)
            elif handler.name != "echo" and handler.name != "sink":
                raise ValueError(
                    f"handler: handlers.{handler.name} has no meaning for datagrams; use "
                    "handlers.echo, handlers.sink or handlers.script(...)"
                )
        _check_buffer("rcvbuf", rcvbuf)
        _check_buffer("sndbuf", sndbuf)
        self._handler = handler
        self._rcvbuf = rcvbuf
        self._sndbuf = sndbuf
        super().__init__()
        self._transport: asyncio.DatagramTransport | None = None
        self._events: list[Datagram] = []
        self._errors: list[tuple[BaseException, str]] = []
        self._errors_received: list[Exception] = []
        self._changed = Signal()
        # What the script has yet to take; None once the server closes (see aclose).
        self._queue: asyncio.Queue[tuple[bytes, Any] | None] = asyncio.Queue()
        self._script_task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        #: The error that closed the transport while the server was open, if one did.
        self._dead: Exception | None = None
        self._started_at = 0.0

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self: _D) -> _D:
        """Bind and start receiving on the running event loop.

        Returns:
            The server itself.

        Raises:
            RuntimeError: it was already started.
        """
        await super().start()
        # The transport over its socket is its own too: it warns if dropped open.
        parts_of(self, self._transport)
        return self

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._started_at = loop.time()
        await loop.create_datagram_endpoint(lambda: _DatagramProtocol(self), sock=sock)

    def _serving(self, loop: asyncio.AbstractEventLoop) -> None:
        if isinstance(self._handler, Script):
            steps = self._handler.steps
            self._script_task = loop.create_task(
                self._run_script(steps), name=f"script of {self._name}"
            )
            track(
                self._script_task,
                what=f"script of {self._name}",
                is_open=lambda t: not t.done(),
                close=lambda t: _loop_thread_call(t.get_loop(), t.cancel),
                on_behalf_of=self,
            )

    async def _run_script(self, steps: tuple[Any, ...]) -> None:
        async def receive(timeout: float | None) -> tuple[bytes, Any]:
            item = await asyncio.wait_for(self._queue.get(), timeout)
            if item is None:
                raise ServerClosing
            return item

        try:
            await run_datagram_script(steps, receive, self._sendto)
        except Exception as exc:
            self._record_error(exc, "the script failed")

    def __repr__(self) -> str:
        status = self._status if self._dead is None else f"{self._status}, {self._ended()}"
        n = len(self.datagrams)
        return f"<{self._name} {status}, {n} datagram{'s' if n != 1 else ''} received>"

    def _ended(self) -> str:
        """Why no more datagrams can arrive, or ``""``."""
        if self.closed:
            return "the server is closed"
        if self._dead is not None:
            return f"an error closed its transport ({type(self._dead).__name__}: {self._dead})"
        return ""

    # -- recording -------------------------------------------------------------

    def _record(self, datagram: Datagram) -> None:
        self._events.append(datagram)
        self._changed.notify()

    def _send_recorded(
        self, transport: asyncio.DatagramTransport, data: bytes | bytearray | memoryview, addr: Any
    ) -> None:
        """Call the real ``transport.sendto()``; record the datagram if it was sent.

        Not recorded: one whose call raised (the exception propagates), one the
        kernel refused inside the call (``EMSGSIZE``, for example: asyncio hands it
        to ``error_received`` and returns), one whose send was a fatal error (the
        call starts closing the transport), and an empty one the transport drops
        (see `sends_empty`).  One refused later, after waiting in the write
        buffer, stays recorded: asyncio reports it on another loop turn.
        """
        refused = len(self._errors_received)
        closing = transport.is_closing()
        transport.sendto(data, addr)
        if len(self._errors_received) != refused or transport.is_closing() != closing:
            return
        if not data and not sends_empty(transport):
            return
        self._record(Datagram(bytes(data), addr, self._now(), "sent"))

    def _sendto(self, data: bytes, addr: Any) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if addr in (None, "", b""):
            return  # an unbound Unix datagram client cannot be answered
        self._send_recorded(transport, data, addr)

    def _record_error(self, exc: BaseException, what: str) -> None:
        self._errors.append((exc, what))
        self._changed.notify()

    @property
    def datagrams(self) -> tuple[Datagram, ...]:
        """Every datagram received so far, in order."""
        return tuple(d for d in self._events if d.direction == "received")

    @property
    def sent(self) -> tuple[Datagram, ...]:
        """Every datagram the server sent so far, in order."""
        return tuple(d for d in self._events if d.direction == "sent")

    @property
    def events(self) -> tuple[Datagram, ...]:
        """Datagrams received and sent, in order."""
        return tuple(self._events)

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """Exceptions raised by the handler so far (raised again at teardown)."""
        return tuple(e for e, _ in self._errors)

    @property
    def errors_received(self) -> tuple[Exception, ...]:
        """Errors the socket reported (``error_received``), e.g. ICMP port unreachable."""
        return tuple(self._errors_received)

    def transcript(self) -> str:
        """Return a readable, timestamped list of the datagrams received and sent."""
        return format_datagrams(self._name, self._started_at, self._events)

    async def wait_for_datagrams(
        self,
        n: int = 1,
        *,
        direction: Literal["received", "sent"] = "received",
        timeout: float | None = _UNSET,
    ) -> tuple[Datagram, ...]:
        """Wait until at least ``n`` datagrams have been received in all (or sent).

        ``n=0`` returns ``()`` at once, for a test parametrized over a number of
        datagrams.  With ``direction="sent"`` it waits for the server's own: a
        thread server records a datagram once its send has returned, which may be
        after a blocking client has read it.

        Returns:
            The first ``n`` datagrams received (or sent).

        Raises:
            TypeError: ``n`` is not an int.
            ValueError: ``n`` < 0, ``direction`` neither "received" nor "sent", or
                a bad timeout.
            RuntimeError: not started, or called on another event loop than the server's.
            TimeoutError: fewer arrived in time, or the server closed, or an
                error closed its transport, with fewer (then at once); the message
                lists those that did.
        """
        _check_int("n", n, low=0)
        if direction not in ("received", "sent"):
            raise ValueError(f'direction must be "received" or "sent", got {direction!r}')
        seconds = resolve_timeout(timeout)
        self._check_loop()

        def recorded() -> tuple[Datagram, ...]:
            return self.datagrams if direction == "received" else self.sent

        await self._changed.wait_until(
            lambda: len(recorded()) >= n,
            seconds,
            lambda: self._too_few(n, recorded(), direction),
            ended=lambda: bool(self._ended()),
        )
        return recorded()[:n]

    def _too_few(self, n: int, recorded: tuple[Datagram, ...], direction: str) -> str:
        listed = ", ".join(show(d.data, 64) for d in recorded)
        ended = self._ended()
        verb = "arrived" if direction == "received" else "were sent"
        return (
            f"{self._name}: expected {n} datagram{'s' if n != 1 else ''}"
            f"{'' if direction == 'received' else ' sent'}; "
            f"{len(recorded)} {verb}{f': {listed}' if listed else ''}"
            f"{f'; {ended}' if ended else ''}"
        )

    # -- teardown ----------------------------------------------------------------

    def _end_connections_after_its_loop(self) -> None:
        if self._transport is not None:
            close_transports_after_their_loop([self._transport])

    def _abort_everything(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        if self._script_task is not None:
            self._script_task.cancel()
        if self._status != "closed":
            self._status = "closed"
            self._cleanup()

    async def _end_script(self, script: asyncio.Task[None]) -> None:
        """Let the script take what has arrived, then end it: the server is closing.

        A client may have sent datagrams that the loop has not read yet (a blocking
        client in an async test) or that the script has not taken yet: they are read
        and queued, and the script takes them in order, then the end of the queue,
        which fails a step still waiting for a datagram.  No cancellation races with
        a datagram arriving (before 3.12, ``wait_for`` can swallow one).  A script
        still busy after `_CATCH_UP` seconds (a long sleep step) is cancelled.
        """
        assert self._loop is not None
        deadline = self._loop.time() + _CATCH_UP
        transport = self._transport
        while (
            transport is not None
            and self._loop.time() < deadline
            and socket_has_input(transport.get_extra_info("socket"))
        ):
            await asyncio.sleep(0)  # the loop reads one datagram per turn
        self._queue.put_nowait(None)
        done, _ = await asyncio.wait({script}, timeout=max(0.0, deadline - self._loop.time()))
        if not done:
            script.cancel()
            await asyncio.wait({script}, timeout=1.0)

    async def aclose(self) -> None:
        """Close the server; raise what its handler raised.

        Raises:
            HandlerError: the handler raised, or the script was not followed
                (including a step still waiting for its datagram).
            RuntimeError: called on another event loop than the server's (the
                server stays open, to be closed on its own loop), or while it starts.
        """
        __tracebackhide__ = True  # the handlers' errors are the report, not these frames
        if self._status in ("new", "closed"):
            self._status = "closed"
            return
        if self._status == "starting":
            raise RuntimeError(f"{self._name} is still starting")
        # Before anything else: from another loop, the waits below would never see
        # the script or connection_lost, and the server would be marked closed with
        # its transport left open on its own loop.
        self._check_loop()
        try:
            if self._script_task is not None and not self._script_task.done():
                await self._end_script(self._script_task)
            if self._transport is not None:
                self._transport.close()
                await asyncio.sleep(0)  # connection_lost comes with the next iteration
                if not self._lost.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._lost.wait(), 1.0)
        finally:
            self._status = "closed"
            self._cleanup()
            self._changed.notify()  # waits still pending now fail at once
        if self._errors:
            n = len(self._errors)
            lines = [f"{self._name}: {n} handler error{'s' if n != 1 else ''}:"]
            for exc, what in self._errors:
                detail = str(exc).replace("\n", "\n    ")
                lines.append(f"  {type(exc).__name__}: {detail}\n    ({what})")
            received = self.datagrams
            shown = received[-_DATAGRAMS_SHOWN:]
            count = str(len(received))
            if len(shown) < len(received):
                count += f"; the last {len(shown)}, transcript() has them all"
            lines.append(
                f"  datagrams received ({count}): "
                + ", ".join(f"{show(d.data, 64)} from {format_address(d.peer)}" for d in shown)
            )
            errors = self.errors
            raise handler_error(lines, errors)


@typing.final
class UDPServer(_LoopbackHost, _DatagramServer):
    """A UDP server on loopback that records every datagram; optionally multicast.

    It binds port 0 itself and keeps the socket.  With ``group``, it joins that
    multicast group on the interface ``host`` (127.0.0.1) and listens on the group
    address, like an SSDP listener on 239.255.255.250; send to it with a socket
    from `multicast_socket`.  To receive broadcasts, listen on the loopback
    broadcast address ``"127.255.255.255"``.

    Args:
        handler: `~nettest.handlers.echo` (default), `~nettest.handlers.sink`,
            a `~nettest.handlers.script`, a DatagramProtocol factory, or a
            reply function ``reply(data, addr)``: what it returns (bytes, or
            None for no reply) is sent back to the sender.
        host: a literal loopback address (the interface, with ``group``).
        port: the port to listen on: 0 (default) for a free one the kernel picks;
            a fixed one to share a number with a TCP server (DNS over UDP and
            TCP) or to come back where a closed server was.
        group: an IPv4 multicast group to join and listen on.
        allow_remote: allow a host that is not loopback.
        rcvbuf: SO_RCVBUF in bytes (small values make the kernel drop datagrams).
        sndbuf: SO_SNDBUF in bytes.
        reuse_port: set SO_REUSEPORT (several receivers on one group and port).
        broadcast: set SO_BROADCAST, so the server may send to broadcast addresses.

    Raises:
        TypeError: ``host`` or ``group`` is not a str, or the port or a buffer size
            not an int.
        ValueError: a host that is not loopback, a group that is not IPv4
            multicast, or a port or buffer size out of range.
        OSError: from `start`, when the ``port`` asked for is in use.

    Example::

        async with nettest.UDPServer(nettest.handlers.echo) as server:
            transport, protocol = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=server.address
            )
    """

    _kind = "UDPServer"

    def __init__(
        self,
        handler: Handler | DatagramProtocolFactory | DatagramReply = echo,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        group: str | None = None,
        allow_remote: bool = False,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        reuse_port: bool = False,
        broadcast: bool = False,
    ) -> None:
        self._init_host(host, allow_remote=allow_remote, port=port)
        if group is not None:
            family = check_host(group, allow_remote=True, multicast=True, name="group")
            if family != socket.AF_INET:
                raise ValueError(f"group must be an IPv4 multicast address, got {group!r}")
            if not ipaddress.ip_address(group).is_multicast:
                raise ValueError(f"group must be a multicast address (224.0.0.0/4), got {group!r}")
            if self._family != socket.AF_INET:
                raise ValueError("group: multicast is supported on an IPv4 host only")
        self._init_reuse_port(reuse_port)
        self._group = group
        check_bool("broadcast", broadcast)
        self._broadcast = broadcast
        super().__init__(handler, rcvbuf=rcvbuf, sndbuf=sndbuf)

    def _make_socket(self) -> socket.socket:
        sock = self._host_socket(has_ipv6=has_ipv6_loopback)
        with _closed_on_error(sock):
            if self._broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            _apply_buffers(sock, self._rcvbuf, self._sndbuf)
            if self._group is not None:
                # Binding the group address (not the wildcard) receives only that
                # group's datagrams.  Windows cannot bind a group address.
                self._bind_host(sock, "" if sys.platform == "win32" else self._group)
                membership = socket.inet_aton(self._group) + socket.inet_aton(self._host)
                try:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
                    sock.setsockopt(
                        socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self._host)
                    )
                except OSError as error:  # ENODEV for 127.255.255.255: say which argument
                    raise OSError(
                        error.errno,
                        f"{error.strerror}: cannot join group {self._group!r} on the "
                        f"interface host={self._host!r} (an address of this host's "
                        "loopback interface, such as '127.0.0.1')",
                    ) from None
            else:
                self._bind_host(sock)
        return sock

    def _describe(self) -> str:
        if self._group is not None:
            return f"{self._group}:{self._port} (multicast on {self._host})"
        return format_address((self._host, self._port))

    @property
    def host(self) -> str:
        """The literal address the server listens on (the interface, for multicast)."""
        return self._host

    @property
    def group(self) -> str | None:
        """The multicast group joined, or None."""
        return self._group

    @property
    def address(self) -> tuple[str, int]:
        """The address to send to, ``(host, port)`` or ``(group, port)`` for multicast.

        Pass it as ``create_datagram_endpoint(..., remote_addr=server.address)``
        or ``sock.sendto(data, server.address)``.
        """
        return (self._group or self._host, self._port)


def multicast_socket(interface: str = "127.0.0.1", *, ttl: int = 1) -> socket.socket:
    """Make a UDP socket that sends multicast datagrams out of ``interface``, looped back.

    Sets IP_MULTICAST_IF to ``interface``, IP_MULTICAST_LOOP on, and IP_MULTICAST_TTL.
    The socket is bound to ``(interface, 0)`` so replies can reach it.  Use it
    directly, or as ``create_datagram_endpoint(..., sock=multicast_socket())``.
    The caller closes it.

    Args:
        interface: a literal IPv4 loopback address to send from.
        ttl: IP_MULTICAST_TTL, 0 to 255 (the kernel's range): 0 keeps datagrams
            on this host, 1 (the default) on the local network.

    Raises:
        TypeError: ``interface`` is not a str, or ``ttl`` not an int.
        ValueError: ``interface`` is not an IPv4 loopback address, or ``ttl`` is
            out of range.

    Example::

        server = await udp_server(handlers.sink, group="239.255.255.250")
        with nettest.multicast_socket() as sock:
            sock.sendto(b"M-SEARCH * HTTP/1.1\\r\\n\\r\\n", server.address)
    """
    if not isinstance(interface, str):
        raise TypeError(f"interface must be a str, got {type(interface).__name__}")
    # One message for every address it refuses: the servers' host check would offer
    # allow_remote, which this function has not, or IPv6, which it cannot send from.
    try:
        ipv4_loopback = check_host(interface, allow_remote=False) == socket.AF_INET
    except ValueError:
        ipv4_loopback = False
    if not ipv4_loopback:
        raise ValueError(
            "interface must be a literal IPv4 loopback address such as '127.0.0.1', "
            f"got {interface!r}"
        )
    _check_int("ttl", ttl, low=0, high=255)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with _closed_on_error(sock):
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.bind((interface, 0))
    return track(
        sock,
        what=f"multicast socket on {interface}",
        is_open=lambda s: s.fileno() != -1,
        close=lambda s: s.close(),
    )


@typing.final
class UnixDatagramServer(_UnixPath, _DatagramServer):
    """A Unix datagram socket server that records every datagram.

    Like `UnixServer`, it binds ``s`` in a short private directory (or an
    abstract name) and removes it at teardown.  `~nettest.handlers.echo` can answer only clients
    that bound an address of their own.

    Args:
        handler: `~nettest.handlers.echo` (default), `~nettest.handlers.sink`,
            a `~nettest.handlers.script`, a DatagramProtocol factory, or a
            reply function ``reply(data, addr)``: what it returns (bytes, or
            None for no reply) is sent back to the sender.
        path: where to bind; checked against the 107-byte limit.  A relative
            path is bound in the current directory, as ``bind()`` binds it.
        abstract: bind in the Linux abstract namespace.
        rcvbuf: SO_RCVBUF in bytes.
        sndbuf: SO_SNDBUF in bytes.

    Example::

        async with nettest.UnixDatagramServer(nettest.handlers.sink) as server:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"hello", server.path)
            await server.wait_for_datagrams(1)
    """

    _kind = "UnixDatagramServer"

    def __init__(
        self,
        handler: Handler | DatagramProtocolFactory | DatagramReply = echo,
        *,
        path: str | pathlib.Path | None = None,
        abstract: bool = False,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
    ) -> None:
        self._init_unix_path(path, abstract)
        super().__init__(handler, rcvbuf=rcvbuf, sndbuf=sndbuf)

    @property
    def address(self) -> str:
        """The same as ``path``, to pass as ``sock.sendto(data, server.address)``."""
        return self._path


# -- fixtures -------------------------------------------------------------------

DatagramHandlerArg = Handler | DatagramProtocolFactory | DatagramReply


class UDPServerFactory(typing.Protocol):
    """The type of the ``udp_server`` fixture: ``await udp_server(handler, **options)``.

    Takes the arguments of `UDPServer`, starts it and returns it; closed at teardown.
    """

    async def __call__(
        self,
        handler: DatagramHandlerArg = ...,
        *,
        host: str = ...,
        port: int = ...,
        group: str | None = ...,
        allow_remote: bool = ...,
        rcvbuf: int | None = ...,
        sndbuf: int | None = ...,
        reuse_port: bool = ...,
        broadcast: bool = ...,
    ) -> UDPServer: ...


class UnixDatagramServerFactory(typing.Protocol):
    """The type of the ``unix_datagram_server`` fixture.

    Takes the arguments of `UnixDatagramServer`, starts it and returns it.
    """

    async def __call__(
        self,
        handler: DatagramHandlerArg = ...,
        *,
        path: str | pathlib.Path | None = ...,
        abstract: bool = ...,
        rcvbuf: int | None = ...,
        sndbuf: int | None = ...,
    ) -> UnixDatagramServer: ...


@pytest_asyncio.fixture
async def udp_server(request: pytest.FixtureRequest) -> AsyncIterator[UDPServerFactory]:
    """Start loopback UDP servers: ``server = await udp_server(handler)``; closed at teardown.

    Servers bind 127.0.0.1 (or ``::1``, or a multicast group) port 0 themselves
    and record every datagram; teardown raises their handlers' errors.
    """
    __tracebackhide__ = True  # the handlers' errors are the report, not these frames
    factory = AsyncServerFactory(request, UDPServer)
    yield typing.cast("UDPServerFactory", factory)
    await factory.aclose()


@pytest_asyncio.fixture
async def unix_datagram_server(
    request: pytest.FixtureRequest,
) -> AsyncIterator[UnixDatagramServerFactory]:
    """Start Unix datagram servers: ``server = await unix_datagram_server(handler)``.

    Each binds in a short private directory (or the abstract namespace), records
    every datagram, and is closed at teardown.
    """
    __tracebackhide__ = True  # the handlers' errors are the report, not these frames
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("Unix sockets are not available on this platform")
    factory = AsyncServerFactory(request, UnixDatagramServer)
    yield typing.cast("UnixDatagramServerFactory", factory)
    await factory.aclose()
