"""What crossed the wire: per-connection events and bytes, datagrams, transcripts.

Servers record every connection and datagram as they happen.  Users read the
recordings through immutable views (`Event`, `Datagram`, `bytes`, tuples) and wait
on them with a timeout whose error shows what arrived.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import functools
import math
import ssl
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ._settings import default_timeout

__all__ = ["Connection", "Datagram", "Ending", "Event", "HandshakeFailure", "TLSInfo"]


class _DefaultTimeout:
    """The default of every ``timeout`` parameter: the session's timeout, when called.

    A sentinel rather than a number, as the session's ``--nettest-timeout`` (10
    seconds unless set) is read when the wait starts; its repr says so in
    ``help()`` and in the signatures an editor shows.
    """

    def __repr__(self) -> str:
        return "<the session's timeout>"


_UNSET: typing.Any = _DefaultTimeout()

#: Bytes shown of a payload in error messages before it is cut.
_SHOW = 512


def show(data: bytes, limit: int = _SHOW) -> str:
    """Return ``repr(data)``, cut in the middle when it is long."""
    if len(data) <= limit:
        return repr(data)
    half = limit // 2
    return f"{data[:half]!r} ... ({len(data) - 2 * half} bytes) ... {data[-half:]!r}"


def check_bytes(name: str, value: object) -> bytes:
    """Return `value` if it is bytes; raise TypeError naming `name` if not."""
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    return value


@typing.overload
def check_seconds(
    name: str,
    value: object,
    *,
    allow_zero: bool = ...,
    allow_none: Literal[False] = ...,
    none_means: str = ...,
) -> float: ...


@typing.overload
def check_seconds(
    name: str, value: object, *, allow_zero: bool = ..., allow_none: bool, none_means: str = ...
) -> float | None: ...


def check_seconds(
    name: str,
    value: object,
    *,
    allow_zero: bool = False,
    allow_none: bool = False,
    none_means: str = "to wait for ever",
) -> float | None:
    """Return ``value`` as seconds, or raise naming ``name`` and the accepted range.

    Every timeout and duration of the servers and handlers goes through here, so
    they all accept the same values: an int or float, finite, > 0 (>= 0 with
    ``allow_zero``), or None with ``allow_none`` (to wait for ever, unless
    ``none_means`` says what else the message should give None).  ``inf`` is
    refused: where waiting for ever is allowed, None says so; elsewhere
    (teardown, a script step) the wait must end.

    Raises:
        TypeError: not a number (a bool or a str included).
        ValueError: negative, zero (unless allowed), NaN or infinite.
    """
    if value is None and allow_none:
        return None
    at_least = ">= 0" if allow_zero else "> 0"
    or_none = f", or None {none_means}" if allow_none else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number {at_least}{or_none}, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float is not finite either
        seconds = math.inf
    if not (seconds >= 0 if allow_zero else seconds > 0) or seconds == math.inf:
        raise ValueError(f"{name} must be {at_least} and finite{or_none}, got {value!r}")
    return seconds


def resolve_timeout(timeout: float | None) -> float | None:
    """Return ``timeout`` checked, or the default timeout when it is the unset sentinel."""
    if timeout is _UNSET:
        return default_timeout()
    return check_seconds("timeout", timeout, allow_none=True)


def check_loop(owner: str, loop: asyncio.AbstractEventLoop) -> None:
    """Raise RuntimeError unless ``loop`` is the running loop.

    What a recording waits for happens on its server's loop: a wait from another
    loop would never wake (with a module-scoped server and a function-scoped
    test, say), so it fails at once instead.
    """
    if asyncio.get_running_loop() is not loop:
        raise RuntimeError(
            f"{owner} belongs to another event loop than the running one; use a server "
            "and its connections on the loop that started it (check the fixture's and "
            "the test's loop_scope)"
        )


def refuse_without_a_running_loop(message: Callable[[], str]) -> None:
    """Raise RuntimeError(`message()`) unless an event loop runs on this thread.

    A coroutine made in a synchronous test is never awaited: the test would
    pass with only a "never awaited" warning, so the call fails at once instead.
    """
    __tracebackhide__ = True  # the caller's call is the report
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(message()) from None


_Wait = typing.TypeVar(
    "_Wait", bound=Callable[..., typing.Coroutine[typing.Any, typing.Any, object]]
)


def _awaited_on_a_loop(thread_twin: str) -> Callable[[_Wait], _Wait]:
    """Make a connection's wait refuse at once without a running loop.

    A thread server hands its connections to synchronous tests, where
    ``conn.wait_closed()`` would only make a coroutine that nothing awaits (and
    the test pass).  `thread_twin` is the thread server's blocking wait, with the
    connection's number for ``{index}``.
    """

    def decorate(wait: _Wait) -> _Wait:
        @functools.wraps(wait)
        def call(self: Connection, *args: object, **kwargs: object) -> object:
            refuse_without_a_running_loop(
                lambda: (
                    f"conn.{wait.__name__}() is a coroutine, for an async test to "
                    "await; in a synchronous test (a thread server's connection), use the "
                    f"thread server's blocking wait: server.{thread_twin.format(index=self.index)}"
                )
            )
            return wait(self, *args, **kwargs)

        return typing.cast("_Wait", call)

    return decorate


class Signal:
    """Wake waiters when a recording changes, so they can re-check their condition."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float | None,
        describe: Callable[[], str],
        *,
        ended: Callable[[], bool] | None = None,
    ) -> None:
        """Wait until `predicate()` holds; on expiry raise TimeoutError(describe()).

        `ended()` says that what is recorded can no longer change (the connection
        or the server closed): a predicate still false then never holds, and the
        wait fails at once instead of sitting out its timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not predicate():
            if ended is not None and ended():
                raise TimeoutError(f"{describe()} (failed at once: it can no longer happen)")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait({waiter}, timeout=remaining)
            if not done:
                waiter.cancel()
                if predicate():
                    return
                raise TimeoutError(f"{describe()} (waited {timeout:g} s)")


class Ending(enum.Enum):
    """How a recorded connection ended."""

    #: Closed after the client closed its side first (it sent FIN).
    EOF = "eof"
    #: Reset by the client (RST), or broken.
    RESET = "reset"
    #: Aborted by the server side (a ``reset`` handler, `Connection.reset`, a
    #: teardown that had to abort, a STARTTLS handshake that timed out, or a TLS
    #: peer's close_notify that never came).
    ABORTED = "aborted"
    #: Closed by the server before the client sent EOF.
    CLOSED = "closed"


EventKind = Literal["received", "sent", "eof", "write_eof", "closed"]


@typing.final
@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened on a recorded connection.

    Attributes:
        kind: ``"received"`` (bytes from the client), ``"sent"`` (bytes the server
            wrote), ``"eof"`` (the client sent EOF), ``"write_eof"`` (the server sent
            EOF) or ``"closed"`` (the connection was lost; ``data`` is empty).
        data: the bytes, for ``"received"`` and ``"sent"``.
        at: the event loop's clock (`asyncio.AbstractEventLoop.time`) when it happened.
    """

    kind: EventKind
    data: bytes
    at: float


@typing.final
@dataclass(frozen=True, slots=True)
class Datagram:
    """One datagram a datagram server received or sent.

    Attributes:
        data: the payload.
        peer: the client's address (``(host, port)``, or a path for Unix datagrams;
            an unbound Unix client has the address ``""`` or None).
        at: the event loop's clock when it was received or sent.
        direction: ``"received"`` or ``"sent"``.
    """

    data: bytes
    peer: typing.Any
    at: float
    direction: Literal["received", "sent"]


@typing.final
@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What a TLS connection negotiated, as the server's side saw it.

    Attributes:
        version: the protocol version, such as ``"TLSv1.3"``.
        cipher: the cipher suite's name, such as ``"TLS_AES_256_GCM_SHA384"``.
        alpn_protocol: the protocol ALPN selected, or None.
        peer_certificate: the client's certificate (mutual TLS), as
            `ssl.SSLSocket.getpeercert` gives it; None when it sent none.
        session_reused: whether the client resumed an earlier session (a
            ticket, or a TLS 1.2 session id) rather than making a new one.
    """

    version: str
    cipher: str
    alpn_protocol: str | None
    peer_certificate: dict[str, typing.Any] | None
    session_reused: bool = False

    @property
    def tls_version(self) -> ssl.TLSVersion | None:
        """The protocol version as an `ssl.TLSVersion`, to compare with ``tls_version``'s.

        None for a version the `ssl` module has no member for.
        """
        return ssl.TLSVersion.__members__.get(self.version.replace(".", "_"))

    @classmethod
    def _of(cls, ssl_object: typing.Any) -> TLSInfo | None:
        """Read `ssl_object` (an `ssl.SSLObject`); None before its handshake ended."""
        try:
            version = ssl_object.version()
            cipher = ssl_object.cipher()
            if version is None or cipher is None:
                return None
            return cls(
                version=str(version),
                cipher=str(cipher[0]),
                alpn_protocol=ssl_object.selected_alpn_protocol(),
                peer_certificate=ssl_object.getpeercert() or None,
                session_reused=bool(ssl_object.session_reused),
            )
        except (AttributeError, ValueError, OSError):  # not TLS, or gone
            return None


@typing.final
@dataclass(frozen=True, slots=True)
class HandshakeFailure:
    """A connection a TLS server accepted whose handshake failed.

    Never a `Connection`, except for a script's `~nettest.handlers.start_tls`
    step (STARTTLS) whose handshake failed: that connection's plain part is in
    ``server.connections`` too.

    Attributes:
        peer: the client's address.
        error: what the server's TLS layer raised: an `ssl.SSLError` (its
            ``reason`` says why, see `reason`), `ConnectionResetError` when the
            client closed or reset during the handshake, or `ConnectionAbortedError`
            when it took longer than the handshake timeout.
        at: the event loop's clock when it failed.
    """

    peer: typing.Any
    error: BaseException
    at: float

    @property
    def reason(self) -> str | None:
        """OpenSSL's reason, such as ``"TLSV1_ALERT_UNKNOWN_CA"`` or
        ``"PEER_DID_NOT_RETURN_A_CERTIFICATE"``; None for an error that is not TLS's."""
        reason = getattr(self.error, "reason", None)
        return reason if isinstance(reason, str) else None

    def __str__(self) -> str:
        why = f"{type(self.error).__name__}: {self.error}" if str(self.error) else repr(self.error)
        return f"TLS handshake from {format_address(self.peer)} failed: {why}"


@typing.final
class Connection:
    """The recording of one connection a stream server accepted.

    This type has no public constructor: servers make one per connection and
    list them in ``server.connections``.  Everything it exposes is a snapshot
    (`bytes`, tuples, frozen `Event` values); wait for more with `wait_for` and
    `wait_closed`, on the event loop of the server that accepted it (from
    another loop they raise RuntimeError).

    Example::

        server = await tcp_server(nettest.handlers.echo)
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"ping")
        (conn,) = await server.wait_for_connections(1)
        await conn.wait_for(b"ping")
        await conn.wait_for_sent(b"ping")
    """

    __slots__ = (
        "_actions",
        "_closed_at",
        "_ending",
        "_eof",
        "_eof_answered_close",
        "_events",
        "_loop",
        "_received",
        "_sent",
        "_signal",
        "_tls",
        "index",
        "local",
        "opened_at",
        "peer",
        "server_name",
    )

    #: 1 for the first connection the server accepted, 2 for the next, ...
    index: int
    #: The client's address, as ``getpeername()`` gave it.
    peer: typing.Any
    #: The server's end of the connection, as ``getsockname()`` gave it.
    local: typing.Any
    #: When the server accepted it, on the server loop's clock.
    opened_at: float
    #: The name of the server that accepted it, for messages.
    server_name: str
    _events: list[Event]
    _received: bytearray
    _sent: bytearray
    _eof: bool
    #: The client's EOF came only after the server closed (a TLS client answers close_notify).
    _eof_answered_close: bool
    _ending: Ending | None
    _closed_at: float | None
    _signal: Signal
    _actions: _Actions
    _loop: asyncio.AbstractEventLoop
    _tls: TLSInfo | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("Connection has no public constructor; servers make them")

    @classmethod
    def _create(
        cls,
        *,
        index: int,
        peer: object,
        local: object,
        opened_at: float,
        server_name: str,
        actions: _Actions,
    ) -> Connection:
        self = object.__new__(cls)
        self.index = index
        self.peer = peer
        self.local = local
        self.opened_at = opened_at
        self.server_name = server_name
        self._events = []
        self._received = bytearray()
        self._sent = bytearray()
        self._eof = False
        self._eof_answered_close = False
        self._ending = None
        self._closed_at = None
        self._signal = Signal()
        self._actions = actions
        self._loop = actions.loop
        self._tls = None
        return self

    @property
    def tls(self) -> TLSInfo | None:
        """What TLS negotiated on this connection; None for a plain one.

        Read once the handshake is done: at once on a TLS server's connections,
        after the handshake of a handler's ``start_tls()`` for STARTTLS.
        """
        if self._tls is None:
            self._tls = self._actions.tls_info()
        return self._tls

    # -- recording (called by the server) -------------------------------------

    def _record(self, kind: EventKind, data: bytes, at: float) -> None:
        self._events.append(Event(kind, data, at))
        if kind == "received":
            self._received += data
        elif kind == "sent":
            self._sent += data
        elif kind == "eof":
            self._eof = True
        if self._signal._waiters:
            self._signal.notify()

    def _record_end(self, ending: Ending, at: float) -> None:
        if self._ending is not None:
            return
        self._ending = ending
        self._closed_at = at
        self._events.append(Event("closed", b"", at))
        self._signal.notify()

    # -- views ----------------------------------------------------------------

    @property
    def received(self) -> bytes:
        """Every byte received from the client so far."""
        return bytes(self._received)

    @property
    def sent(self) -> bytes:
        """Every byte the server wrote to the client so far."""
        return bytes(self._sent)

    @property
    def events(self) -> tuple[Event, ...]:
        """Everything that happened, in order."""
        return tuple(self._events)

    @property
    def eof_received(self) -> bool:
        """Whether the client sent EOF (closed its writing side)."""
        return self._eof

    @property
    def is_open(self) -> bool:
        """Whether the connection is still open."""
        return self._ending is None

    @property
    def ending(self) -> Ending | None:
        """How the connection ended, or None while it is open."""
        return self._ending

    @property
    def closed_at(self) -> float | None:
        """The loop clock when the connection ended, or None while it is open."""
        return self._closed_at

    def __repr__(self) -> str:
        state = "open" if self._ending is None else self._ending.value
        return (
            f"<Connection #{self.index} from {format_address(self.peer)} to "
            f"{self.server_name} ({state}, received {len(self._received)} bytes, "
            f"sent {len(self._sent)})>"
        )

    # -- waiting --------------------------------------------------------------

    @_awaited_on_a_loop("wait_for_bytes(data, connection={index})")
    async def wait_for(self, data: bytes, *, timeout: float | None = _UNSET) -> bytes:
        """Wait until the bytes received so far contain ``data``.

        Args:
            data: the bytes to wait for; they may arrive in any number of chunks.
            timeout: seconds to wait; defaults to nettest's default timeout, None
                waits for ever.

        Returns:
            Every byte received so far.

        Raises:
            TimeoutError: ``data`` did not arrive in time, or the connection ended
                without it (then at once); the message shows what did.
            RuntimeError: called on another event loop than the server's, or with
                none running (at once: a synchronous test uses the thread server's
                blocking wait).
        """
        check_bytes("data", data)
        seconds = resolve_timeout(timeout)
        self._check_loop()
        await self._signal.wait_until(
            lambda: data in self._received,
            seconds,
            lambda: (
                f"{self!r}: expected to receive {show(data)}; "
                f"received {show(bytes(self._received))}"
                + ("" if self._ending is None else f"; the connection {self._ending.value}")
            ),
            ended=self._has_ended,
        )
        return self.received

    @_awaited_on_a_loop("wait_for_sent(data, connection={index})")
    async def wait_for_sent(self, data: bytes, *, timeout: float | None = _UNSET) -> bytes:
        """Wait until the bytes the server sent so far contain ``data``.

        Returns:
            Every byte sent so far.

        Raises:
            TimeoutError: the server did not send ``data`` in time, or the
                connection ended without it (then at once).
            RuntimeError: called on another event loop than the server's, or with
                none running (at once: a synchronous test uses the thread server's
                blocking wait).
        """
        check_bytes("data", data)
        seconds = resolve_timeout(timeout)
        self._check_loop()
        await self._signal.wait_until(
            lambda: data in self._sent,
            seconds,
            lambda: (
                f"{self!r}: expected the server to send {show(data)}; "
                f"it sent {show(bytes(self._sent))}"
                + ("" if self._ending is None else f"; the connection {self._ending.value}")
            ),
            ended=self._has_ended,
        )
        return self.sent

    @_awaited_on_a_loop("wait_closed(connection={index})")
    async def wait_closed(self, *, timeout: float | None = _UNSET) -> Ending:
        """Wait until the connection ends and return how it ended.

        Raises:
            TimeoutError: it was still open when the timeout expired.
            RuntimeError: called on another event loop than the server's, or with
                none running (at once: a synchronous test uses the thread server's
                blocking wait).
        """
        seconds = resolve_timeout(timeout)
        self._check_loop()
        await self._signal.wait_until(
            lambda: self._ending is not None,
            seconds,
            lambda: f"{self!r}: expected the connection to close; it is still open",
        )
        assert self._ending is not None
        return self._ending

    def _has_ended(self) -> bool:
        return self._ending is not None

    def _check_loop(self) -> None:
        # Here, not in _record: the recording path runs for every read and write.
        check_loop(f"Connection #{self.index} to {self.server_name}", self._loop)

    # -- acting ---------------------------------------------------------------

    def close(self) -> None:
        """Close the connection from the server side (FIN after the buffer drains).

        Callable from any thread: a thread-backed server's connection is closed on
        its loop's thread, and this returns once it was.
        """
        _call_on_loop(self._loop, self._actions.close)

    def reset(self) -> None:
        """Reset the connection from the server side: SO_LINGER(1, 0), then close (RST).

        Callable from any thread, as `close` is.
        """
        _call_on_loop(self._loop, self._actions.reset)

    # -- transcript -----------------------------------------------------------

    def transcript(self) -> str:
        """Return a readable, timestamped account of the connection.

        Example output::

            #1 127.0.0.1:40812 -> 127.0.0.1:36525
              +0.000s client  b'ping'
              +0.000s server  b'ping'
              +0.001s client  EOF
              +0.001s         closed (eof)
        """
        return format_transcript(
            f"#{self.index} {format_address(self.peer)} -> {format_address(self.local)}",
            self.opened_at,
            self._events,
            self._ending,
            eof_answered_close=self._eof_answered_close,
        )


class _Actions(typing.Protocol):
    #: The server's loop, where the connection is recorded and waited on.
    loop: asyncio.AbstractEventLoop

    def close(self) -> None: ...

    def reset(self) -> None: ...

    def tls_info(self) -> TLSInfo | None: ...

    def tls_failed(self, error: BaseException) -> None: ...


def _call_on_loop(loop: asyncio.AbstractEventLoop, action: Callable[[], None]) -> None:
    """Run `action` on `loop`'s thread and return once it ran.

    Transports are not thread-safe, and a loop blocked in ``select()`` would not
    see a change made from another thread until something else woke it.  A loop
    not running (stopped, or this thread's own) runs nothing meanwhile: the action
    runs here.
    """
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    if here or not loop.is_running():
        action()
        return
    done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)

    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError:  # the loop closed meanwhile, and its transports with it
        return
    timeout = default_timeout()
    try:
        done.result(timeout)
    except concurrent.futures.TimeoutError:
        raise TimeoutError(
            f"the server's event loop thread did not run the call within {timeout:g} s"
        ) from None


def format_address(address: object) -> str:
    """Format a socket address for people: ``127.0.0.1:80``, ``[::1]:80`` or a path."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, bytes):
        address = address.decode("utf-8", "backslashreplace")
    if isinstance(address, str):
        if address.startswith("\0"):
            return "@" + address[1:]
        return address or "(unnamed)"
    return repr(address)


_LABELS = {
    "received": "client ",
    "sent": "server ",
    "eof": "client ",
    "write_eof": "server ",
    "closed": "       ",
}


def format_transcript(
    title: str,
    start: float,
    events: typing.Iterable[Event],
    ending: Ending | None,
    *,
    eof_answered_close: bool = False,
) -> str:
    """Format `events` as an indented list under `title`, with times relative to `start`.

    With *eof_answered_close*, the client's EOF is marked as its answer to the
    server's close.
    """
    lines = [title]
    for event in events:
        if event.kind in ("received", "sent"):
            what = show(event.data, 256)
        elif event.kind == "eof" and eof_answered_close:
            what = "EOF (answering the server's close)"
        elif event.kind in ("eof", "write_eof"):
            what = "EOF"
        else:
            what = f"closed ({ending.value})" if ending is not None else "closed"
        lines.append(f"  +{event.at - start:.3f}s {_LABELS[event.kind]} {what}")
    if ending is None:
        lines.append("  (still open)")
    return "\n".join(lines)


def format_datagrams(title: str, start: float, datagrams: typing.Iterable[Datagram]) -> str:
    """Format datagrams as an indented list under `title`."""
    lines = [title]
    for d in datagrams:
        arrow = "<-" if d.direction == "received" else "->"
        lines.append(
            f"  +{d.at - start:.3f}s {arrow} {format_address(d.peer)}  {show(d.data, 256)}"
        )
    return "\n".join(lines)
