"""What TCPServer and UnixServer share: accepting, handlers, recordings, waits and teardown.

Theory of operation
-------------------
A server binds its own socket (port 0, or a path in a private directory) and
keeps it, so no other process can take the address between "find" and "bind".
A TLS server makes each connection's TLS layer itself (`_handshake`), as
asyncio's servers do, to record the handshakes that fail.  Each connection
(after its handshake) gets a ``_ConnState`` (in ``_connections``), which owns
the real transport and the public `Connection` recording.  The handler's protocol sees a
`_RecordingTransport` that records writes; a `_RecordingProtocol` in front of it
records reads, EOF and how the connection ended (for a handler's BufferedProtocol
that is not a Protocol, a `_BufferOnlyProtocol` in front of that, so that every loop
calls it as it would call the handler's).  Stream handlers run as tasks the server
owns, so their exceptions are kept and raised again at teardown.

Teardown (`aclose`), bounded whatever the clients do:

1. close the listener, once the connections the loop has accepted reached the
   server (`_stop_accepting`);
2. close each client connection once the loop has read what its client had sent
   (`_close_after_reading`); connections made from now on are closed the same way.
   TLS servers abort those still in the handshake, once read too
   (`_end_handshake`);
3. wait up to ``close_timeout`` for the connections to end, the handlers to return
   and the server to hold no connection, the ones nettest has not seen yet included
   (`_server_idle`: what ``Server.wait_closed`` waits for from 3.12);
4. abort what is left and cancel the handlers still running, then warn with
   `ServerTeardownWarning` naming them;
5. raise `HandlerError` if any handler failed.

The concrete servers, their address handling and their fixtures are in
``_servers``.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import contextvars
import functools
import inspect
import socket
import ssl
import ssl as _ssl
import sys
import typing
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from ._connections import (
    _ConnState,
    _NoProtocol,
    _RecordingProtocol,
    _TLSAccept,
    recorder_for,
)
from ._connections import _RecordingTransport as _RecordingTransport
from ._handlers import (
    Handler,
    ProtocolFactory,
    StreamHandler,
    classify,
    handler_error,
    make_protocol,
    upgrades_to_tls,
)
from ._hygiene import creation_site, track
from ._hygiene_instruments import CANCEL_GRACE, force_end, is_uvloop
from ._hygiene_report import _creation_stack, _Stack
from ._recording import (
    _UNSET,
    Connection,
    HandshakeFailure,
    Signal,
    check_bytes,
    check_seconds,
    format_address,
    resolve_timeout,
    show,
)
from ._server_base import (
    INT_MAX,
    _check_buffer,
    _check_int,
    _loop_thread_call,
    _LoopbackServer,
    close_transports_after_their_loop,
    socket_has_input,
)

__all__ = ["DEFAULT_CLOSE_TIMEOUT", "ServerTeardownWarning"]

_S = TypeVar("_S", bound="_StreamServer")

#: Default seconds teardown waits for connections to end before aborting them.
DEFAULT_CLOSE_TIMEOUT = 2.0


class ServerTeardownWarning(UserWarning):
    """A server's teardown had to abort connections or cancel handlers that did not end.

    Teardown closes every connection, then waits ``close_timeout`` seconds.  A
    client that never reads (so the server's buffered data cannot drain) or a TLS
    peer that never answers close_notify keeps its connection open; teardown then
    aborts it and warns with this, naming the connection.  From Python 3.11
    asyncio's TLS layer aborts such a TLS connection itself once ``close_timeout``
    has passed, whenever the server closed it; teardown names it all the same.
    """


#: The test's line to warn at, for a server closed on a loop thread of its own
#: (`warn_at_test`): set on the test's thread, it reaches the loop thread's task
#: through the context that ``run_coroutine_threadsafe`` copies.
WARN_SITE: contextvars.ContextVar[_Stack] = contextvars.ContextVar("nettest_warn_site", default=())


def warn_at_test(warning: Warning, closed: object) -> None:
    """Warn at the test's line that closed `closed`, or else at the one that made it.

    A fixture's teardown closes servers from nettest's own code, which would say
    nothing of which test or server it was.  On a server's own loop thread no
    frame is the test's: the thread server's `WARN_SITE` says where.
    """
    where = _creation_stack()[-1:] or WARN_SITE.get() or creation_site(closed)
    if not where:
        warnings.warn(warning, stacklevel=4)
        return
    filename, lineno, _ = where[0]
    warnings.warn_explicit(warning, type(warning), filename, lineno)


def _tls_layer(loop: asyncio.AbstractEventLoop | None) -> Callable[..., Any] | None:
    """The class of the TLS layer `loop`'s servers put over a connection, or None.

    asyncio's ``SSLProtocol``, and uvloop's own, which takes the same arguments
    (uvloop's transports accept no other).
    """
    if isinstance(loop, asyncio.base_events.BaseEventLoop):
        return asyncio.sslproto.SSLProtocol
    if is_uvloop(loop):
        with contextlib.suppress(ImportError):
            import uvloop.loop

            layer = getattr(uvloop.loop, "SSLProtocol", None)
            return typing.cast("Callable[..., Any]", layer) if callable(layer) else None
    return None


def _input_waiting(transport: asyncio.ReadTransport, *, reading: bool = True) -> bool:
    """Whether a transport's socket has bytes, an EOF or an error waiting, and it reads.

    With ``reading=False``: whether input waits while the transport has paused reading.

    A TLS transport that is shutting down refuses to answer (3.10 raises
    `RuntimeError`, later versions `AttributeError` once it was closed twice, by
    the client's close_notify and by the handler): then nothing more is read.
    """
    try:
        if transport.is_reading() is not reading:
            return False
        sock = transport.get_extra_info("socket")
    except (RuntimeError, AttributeError):
        return False
    return socket_has_input(sock)


#: Bytes teardown reads from a connection before closing it: more than a client
#: can have sent unread (the kernel's buffers on both ends of a loopback TCP
#: connection hold about 10 MiB at most on Linux), and a bound on a client that
#: keeps sending.
_TEARDOWN_READ_BUDGET = 16 << 20
#: Loop turns teardown lets a connection in the TLS handshake read what its
#: client sent, before aborting it (each flight of a handshake is read in one).
_HANDSHAKE_TEARDOWN_READS = 16

#: Seconds between checks while a handler's StreamReader has paused reading.
_PAUSED_POLL = 0.002


def _paused_by_reader(state: _ConnState) -> bool:
    """Whether the handler's StreamReader paused reading with input waiting behind it.

    A StreamReader stops reading once it holds twice its limit (its ``_paused``
    flag, on every Python nettest supports); a handler still running resumes it as
    it consumes, and closing then would drop what is waiting.  A handler that
    paused the transport itself (``handlers.hang``) or a transport being closed
    reads no more.
    """
    task = state.task
    if task is None or task.done() or not getattr(state.reader, "_paused", False):
        return False
    return not state.transport.is_closing() and _input_waiting(state.transport, reading=False)


def _serving(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Marks a handler's StreamReaderProtocol as a server's (see `_start_handler`)."""


class _StreamServer(_LoopbackServer):
    """What TCPServer and UnixServer share: recording, handlers, waits and teardown."""

    _kind = "server"
    _socket_type = socket.SOCK_STREAM

    def __init__(
        self,
        handler: Handler | StreamHandler | ProtocolFactory,
        *,
        ssl: ssl.SSLContext | None,
        handshake_timeout: float | None,
        close_timeout: float,
        rcvbuf: int | None,
        sndbuf: int | None,
        backlog: int,
        limit: int,
    ) -> None:
        self._handler_kind = classify(handler)
        self._handler = handler
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, got {type(ssl).__name__}")
        if ssl is not None and ssl.protocol == _ssl.PROTOCOL_TLS_CLIENT:
            # asyncio accepts it, then fails each connection as it is made.
            raise ValueError(
                "ssl must be a server context (ssl.PROTOCOL_TLS_SERVER, such as "
                "tls_server_context), got a client context (ssl.PROTOCOL_TLS_CLIENT)"
            )
        seconds = check_seconds("close_timeout", close_timeout)
        self._handshake_timeout = check_seconds(
            "handshake_timeout",
            handshake_timeout,
            allow_none=True,
            none_means="for nettest's default timeout",
        )
        if handshake_timeout is not None and ssl is None:
            raise ValueError("handshake_timeout applies to TLS: pass ssl= too")
        _check_buffer("rcvbuf", rcvbuf)
        _check_buffer("sndbuf", sndbuf)
        _check_int("backlog", backlog, high=INT_MAX)
        _check_int("limit", limit, "(bytes)")
        self._ssl = ssl
        self._close_timeout = seconds
        self._rcvbuf = rcvbuf
        self._sndbuf = sndbuf
        self._backlog = backlog
        self._limit = limit
        super().__init__()
        self._server: asyncio.Server | None = None
        self._states: list[_ConnState] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._errors: list[tuple[Connection | None, BaseException, str]] = []
        self._changed = Signal()
        #: Connections teardown had to abort, and handlers it had to cancel.
        self._aborted: list[str] = []
        #: Connections asyncio's TLS layer aborted when close_notify never came.
        self._unanswered: list[str] = []
        #: Connections teardown closes once the loop has read what their clients sent.
        self._reading: set[_ConnState] = set()
        #: TLS: the sockets' transports still in the handshake (see `_handshake`).
        self._handshaking: set[asyncio.Transport] = set()
        #: Handshakes teardown aborted: not the client's failures.
        self._handshakes_ended: set[asyncio.Transport] = set()
        #: The class of the TLS layer the server makes for each connection, once
        #: started with ``ssl`` on a loop whose layer nettest knows (`_tls_layer`).
        self._layer: Callable[..., Any] | None = None
        self._handshake_failures: list[HandshakeFailure] = []

    # -- life cycle ------------------------------------------------------------

    async def start(self: _S) -> _S:
        """Bind, listen and start accepting on the running event loop.

        The server belongs to that loop: use and close it there.

        Returns:
            The server itself.

        Raises:
            RuntimeError: the server was already started.
        """
        return await super().start()

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._layer = None if self._ssl is None else _tls_layer(loop)
        if self._ssl is None or self._handshakes_seen():
            server = loop.create_server(self._protocol_factory, sock=sock, backlog=self._backlog)
        else:  # a loop whose TLS layer nettest does not know makes its own
            server = loop.create_server(
                self._protocol_factory,
                sock=sock,
                ssl=self._ssl,
                backlog=self._backlog,
                **self._tls_timeouts(),
            )
        self._server = await server

    def _handshakes_seen(self) -> bool:
        """Whether the server makes each connection's TLS layer itself (see `_handshake`).

        It does on the loops whose TLS layer it knows, asyncio's and uvloop's; on
        others ``create_server(ssl=...)`` makes it, and failed handshakes go
        unrecorded.
        """
        return self._layer is not None

    def _tls_timeouts(self) -> dict[str, Any]:
        """The TLS layer's timeouts: ``handshake_timeout`` (or the test's timeout)
        for the handshake, and ``close_timeout`` for the client's close_notify
        (3.11+)."""
        handshake = self._handshake_timeout or resolve_timeout(_UNSET) or 60.0
        timeouts: dict[str, Any] = {"ssl_handshake_timeout": handshake}
        if sys.version_info >= (3, 11):
            timeouts["ssl_shutdown_timeout"] = self._close_timeout
        return timeouts

    def _handshake(self, transport: asyncio.Transport, recorder: asyncio.BaseProtocol) -> None:
        """Put the loop's TLS layer in front of `recorder` on a connection just accepted.

        What ``create_server(ssl=...)`` does for each connection, made here so that
        a failed handshake is seen: the TLS layer tells `recorder` of the connection
        once the handshake is done, or fails the waiter with why it failed.
        """
        loop = self._loop
        assert loop is not None
        assert self._ssl is not None
        layer = self._layer
        assert layer is not None
        peer = transport.get_extra_info("peername")
        waiter: asyncio.Future[None] = loop.create_future()
        try:
            tls = layer(
                loop, recorder, self._ssl, waiter, server_side=True, **self._tls_timeouts()
            )
            transport.set_protocol(tls)
            tls.connection_made(transport)
        except Exception as error:  # the context cannot make a server connection
            self._handshake_failed(peer, error)
            self._changed.notify()
            transport.abort()
            return
        self._handshaking.add(transport)
        waiter.add_done_callback(functools.partial(self._handshake_done, transport, peer))
        track(
            transport,
            what=f"connection from {format_address(peer)} to {self._name} in the TLS handshake",
            is_open=lambda t: t in self._handshaking and not t.is_closing(),
            close=lambda t: _loop_thread_call(loop, t.abort),
            on_behalf_of=self,
        )
        if self._status != "open":
            # Accepted before the listener closed, made during teardown: ended as
            # `aclose` ends the others, once the loop has read what the client sent.
            loop.call_soon(self._end_handshake, transport)

    def _handshake_done(
        self, transport: asyncio.Transport, peer: Any, waiter: asyncio.Future[None]
    ) -> None:
        self._handshaking.discard(transport)
        error = None if waiter.cancelled() else waiter.exception()
        if error is not None and transport not in self._handshakes_ended:
            self._handshake_failed(peer, error)
        self._handshakes_ended.discard(transport)
        self._changed.notify()

    def _handshake_failed(self, peer: Any, error: BaseException) -> None:
        """Record a failed handshake (its waiters are the caller's to notify)."""
        assert self._loop is not None
        self._handshake_failures.append(HandshakeFailure(peer, error, self._loop.time()))

    def __repr__(self) -> str:
        failed = len(self._handshake_failures)
        failures = f", {failed} failed TLS handshake{'s' if failed != 1 else ''}" if failed else ""
        n = len(self._states)
        connections = f"{n} connection{'s' if n != 1 else ''}"
        return f"<{self._name} {self._status}, {connections}{failures}>"

    @property
    def ssl(self) -> ssl.SSLContext | None:
        """The server's TLS context, or None for plain connections."""
        return self._ssl

    def _protocol_factory(self) -> asyncio.BaseProtocol:
        recorder = self._recorder()
        if self._handshakes_seen():
            return _TLSAccept(self, recorder)
        return recorder

    def _recorder(self) -> asyncio.BaseProtocol:
        assert self._loop is not None
        if self._handler_kind == "protocol":
            factory = typing.cast("ProtocolFactory", self._handler)
            try:
                inner = make_protocol(factory, asyncio.BaseProtocol, "asyncio.Protocol")
            except Exception as exc:
                # asyncio would drop the error (outside debug mode) and leak the socket.
                return _RecordingProtocol(self, _NoProtocol(exc))
        else:
            reader = asyncio.StreamReader(limit=self._limit, loop=self._loop)
            return _RecordingProtocol(
                self, asyncio.StreamReaderProtocol(reader, loop=self._loop), reader
            )
        return recorder_for(self, inner)

    def _connection_made(self, transport: asyncio.Transport) -> _ConnState:
        state = _ConnState(self, transport)
        self._states.append(state)
        self._changed.notify()
        if self._status != "open":
            # Accepted before the listener closed, made during teardown: closed like
            # the others, once the loop has read what the client sent (reading starts
            # after connection_made).
            self._loop.call_soon(self._close_after_reading, state)  # type: ignore[union-attr]
        return state

    def _start_handler(
        self,
        state: _ConnState,
        proxy: _RecordingTransport,
        inner: asyncio.BaseProtocol,
        reader: asyncio.StreamReader | None,
    ) -> None:
        if reader is None or self._status == "closed":
            # Made after aclose() gave up waiting for it (a TLS handshake that ended
            # later): no handler task may outlive the server.
            return
        assert isinstance(inner, asyncio.StreamReaderProtocol)
        assert self._loop is not None
        writer = asyncio.StreamWriter(proxy, inner, reader, self._loop)
        # StreamWriter.start_tls() (3.11+) takes the server side when the protocol
        # was made by a server, which its client_connected_cb says; asyncio reads
        # it only in connection_made, which has run.
        inner._client_connected_cb = _serving  # type: ignore[attr-defined]
        state.reader = reader
        task = self._loop.create_task(self._run_handler(state, reader, writer))
        state.task = task
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        track(
            task,
            what=f"handler of connection #{state.conn.index} to {self._name}",
            is_open=lambda t: not t.done(),
            close=lambda t: _loop_thread_call(t.get_loop(), t.cancel),
            on_behalf_of=self,
        )

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._changed.notify()

    async def _run_handler(
        self, state: _ConnState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = state.conn
        try:
            if isinstance(self._handler, Handler):
                await self._handler._serve(reader, writer, conn)
            else:
                result = typing.cast("StreamHandler", self._handler)(reader, writer)
                if inspect.isawaitable(result):  # a plain function's result may not be
                    await result
        except asyncio.CancelledError:
            # Teardown aborts a connection before it cancels its handler; anyone
            # else cancels it as the loop shuts down (asyncio.run cancels every
            # task): the connection must not outlive its handler, or the loop.
            if not writer.is_closing():
                state.abort()
            return
        except Exception as exc:
            tearing_down = self._status != "open"
            # What the teardown's closing did to the connection: a reset, or the TLS
            # layer giving up on the client's close_notify (reported on its own).
            closed_under_it = isinstance(
                exc, (ConnectionError, asyncio.IncompleteReadError)
            ) or state.close_notify_unanswered(exc)
            if not (tearing_down and closed_under_it):
                self._record_error(conn, exc, "the handler raised")
            state.close()
            return
        if not writer.is_closing():
            writer.close()

    def _record_error(self, conn: Connection | None, exc: BaseException, what: str) -> None:
        received = conn.received if conn is not None else b""
        self._errors.append((conn, exc, f"{what}; the client had sent {show(received)}"))
        self._changed.notify()

    # -- what it recorded ------------------------------------------------------

    @property
    def connections(self) -> tuple[Connection, ...]:
        """Every connection accepted so far, in order (open or ended)."""
        return tuple(s.conn for s in self._states)

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """Exceptions raised by handlers so far (raised again at teardown)."""
        return tuple(e for _, e, _ in self._errors)

    @property
    def handshake_failures(self) -> tuple[HandshakeFailure, ...]:
        """The connections whose TLS handshake failed, in order, with why.

        They never reach the handler, nor `connections`.  A test that expects a
        failure says so: they are not errors at teardown.  Recorded on asyncio's
        loops and uvloop's, whose TLS layers nettest knows.  A script's
        `~nettest.handlers.start_tls` step (STARTTLS) whose handshake failed is
        one too, on a plain server; that connection is in `connections` as well.
        """
        return tuple(self._handshake_failures)

    def assert_no_connections(self) -> None:
        """Fail unless the server has accepted no connection at all.

        For tests that check a client does *not* connect (a cache hit, a
        circuit breaker that is open, a disabled feature).

        Raises:
            AssertionError: listing the connections that arrived, with their bytes.
        """
        if self._states or self._handshake_failures:
            # A STARTTLS failure (a plain server's) is one of its connections too.
            refused = len(self._handshake_failures) if self._ssl is not None else 0
            arrived = len(self._states) + refused
            raise AssertionError(
                f"{self._name}: expected no connections; {arrived} arrived:\n" + self.transcript()
            )

    def transcript(self) -> str:
        """Return the transcripts of every connection, one after the other.

        Failed TLS handshakes follow, one line each.
        """
        lines = [s.conn.transcript() for s in self._states]
        lines += [str(failure) for failure in self._handshake_failures]
        return "\n".join(lines) if lines else f"{self._name}: no connections"

    async def wait_for_connections(
        self, n: int = 1, *, timeout: float | None = _UNSET
    ) -> tuple[Connection, ...]:
        """Wait until the server has accepted at least ``n`` connections in all.

        Args:
            n: how many connections, counting those already accepted; 0 returns
                ``()`` at once, for a test parametrized over a number of clients.
            timeout: seconds; nettest's default timeout if not given, None for ever.

        Returns:
            The first ``n`` connections.

        Raises:
            TypeError: ``n`` is not an int.
            ValueError: ``n`` < 0, or a bad timeout.
            RuntimeError: called on another event loop than the server's.
            TimeoutError: fewer arrived in time, or the server closed with fewer
                (then at once); the message says how many did.
        """
        _check_int("n", n, low=0)
        seconds = resolve_timeout(timeout)
        self._check_loop()
        await self._changed.wait_until(
            lambda: len(self._states) >= n,
            seconds,
            lambda: (
                f"{self._name}: expected {n} connection{'s' if n != 1 else ''}; "
                f"{len(self._states)} arrived"
                + "".join(f"\n  {s.conn!r}" for s in self._states)
                + ("; the server is closed" if self.closed else "")
            ),
            ended=lambda: self.closed,
        )
        return tuple(s.conn for s in self._states[:n])

    async def wait_for_handshake_failures(
        self, n: int = 1, *, timeout: float | None = _UNSET
    ) -> tuple[HandshakeFailure, ...]:
        """Wait until ``n`` TLS handshakes in all have failed (see `handshake_failures`).

        The client often learns of the failure first: its alert, or the server's,
        reaches it before the server's side has finished failing.

        Returns:
            The first ``n`` failures.

        Raises:
            TypeError: ``n`` is not an int.
            ValueError: ``n`` < 0, or a bad timeout.
            RuntimeError: called on another event loop than the server's, or the
                server does not record failed handshakes (it has neither ``ssl=``
                nor a script with a `~nettest.handlers.start_tls` step: a handler
                that calls ``start_tls()`` itself gets the failure from that
                call), or serves TLS with ``ssl=``
                on a loop whose TLS layer nettest does not know (neither
                asyncio's nor uvloop's).
            TimeoutError: fewer failed in time, or the server closed with fewer; the
                message lists the connections that were made instead.
        """
        _check_int("n", n, low=0)
        seconds = resolve_timeout(timeout)
        self._check_loop()
        if self._ssl is None and not upgrades_to_tls(self._handler):
            raise RuntimeError(
                f"{self._name} records failed handshakes only with ssl= or a script's "
                "start_tls step: a handler that calls start_tls() itself gets the "
                "failure from that call"
            )
        if self._ssl is not None and not self._handshakes_seen():
            raise RuntimeError(
                f"{self._name}: failed handshakes are not seen on "
                f"{type(self._loop).__module__}.{type(self._loop).__name__}"
            )
        await self._changed.wait_until(
            lambda: len(self._handshake_failures) >= n,
            seconds,
            lambda: (
                f"{self._name}: expected {n} failed TLS handshake"
                f"{'s' if n != 1 else ''}; {len(self._handshake_failures)} failed"
                + "".join(f"\n  {f}" for f in self._handshake_failures)
                + "".join(f"\n  {s.conn!r} (handshake done)" for s in self._states)
                + ("; the server is closed" if self.closed else "")
            ),
            ended=lambda: self.closed,
        )
        return tuple(self._handshake_failures[:n])

    async def wait_for_bytes(
        self, data: bytes, *, connection: int = 1, timeout: float | None = _UNSET
    ) -> bytes:
        """Wait until connection number ``connection`` (1-based) has received ``data``.

        Waits for the connection to arrive first.  The same timeout applies to
        each of the two waits.

        Returns:
            Everything that connection received so far.

        Raises:
            TypeError: ``data`` is not bytes, or ``connection`` not an int.
            ValueError: ``connection`` < 1, or a bad timeout.
            TimeoutError: the connection or the bytes did not arrive in time, or
                can no longer arrive (then at once); the message shows what did.
        """
        check_bytes("data", data)
        _check_int("connection", connection)
        conns = await self.wait_for_connections(connection, timeout=timeout)
        return await conns[connection - 1].wait_for(data, timeout=timeout)

    # -- teardown --------------------------------------------------------------

    def _all_ended(self) -> bool:
        return (
            not self._tasks
            and not self._handshaking
            and all(not s.conn.is_open for s in self._states)
        )

    def _end_connections_after_its_loop(self) -> None:
        for state in self._states:
            state.close_after_its_loop()
        for transport in list(self._handshaking):
            self._handshaking.discard(transport)
            # The TLS layer's transport for the handler, made with the layer, too:
            # it warns when collected unless closed.
            tls = getattr(transport.get_protocol(), "_app_transport", None)
            close_transports_after_their_loop([transport] + ([tls] if tls else []))

    def _abort_everything(self) -> None:
        """Synchronous last resort (the hygiene gate's close): abort and cancel all."""
        if self._server is not None:
            self._server.close()
        for state in self._states:
            if state.conn.is_open:
                state.abort()
        for task in list(self._tasks):
            task.cancel()
        for transport in list(self._handshaking):
            self._abort_handshake(transport)
        if self._status != "closed":
            self._status = "closed"
            self._cleanup()

    async def aclose(self) -> None:
        """Close the server; raise what its handlers raised.

        Stops accepting, then closes the connections once the loop has read what
        their clients had already sent, including connections accepted but not yet
        made when it started; waits up to ``close_timeout`` for them to end and their
        handlers to return; aborts what is left (with `ServerTeardownWarning`).  It
        never hangs.  Calling it again does nothing.

        Raises:
            HandlerError: a handler raised, or a script was not followed.
            RuntimeError: called on another event loop than the server's (the
                server stays open, to be closed on its own loop), or while it starts.
        """
        __tracebackhide__ = True  # the handlers' errors are the report, not these frames
        if self._status in ("new", "closed"):
            self._status = "closed"
            return
        if self._status == "starting":
            raise RuntimeError(f"{self._name} is still starting")
        self._check_loop()
        self._status = "closing"
        server = self._server
        assert server is not None
        try:
            await self._stop_accepting(server)
            for state in list(self._states):
                if state.conn.is_open:
                    self._close_after_reading(state)
            for transport in list(self._handshaking):
                self._end_handshake(transport)
            # Where the loop's server makes the TLS layer (a loop nettest does not
            # know), the connections still in the handshake are not nettest's to
            # see: only the server's close_clients, if it has one, reaches them.
            # It closes every transport: nettest's own are read first.
            close_clients = getattr(server, "close_clients", None)
            if self._ssl is not None and not self._handshakes_seen() and close_clients:
                with contextlib.suppress(TimeoutError):
                    await self._changed.wait_until(
                        lambda: not self._reading, self._close_timeout, lambda: ""
                    )
                close_clients()
            idle = self._server_idle(server)
            try:
                if not await self._bounded_wait(self._close_timeout, idle):
                    await self._abort_leftovers(server, idle)
            finally:
                if not idle.done():
                    idle.cancel()
                    await asyncio.wait({idle})
        finally:
            self._status = "closed"
            self._reading.clear()
            self._cleanup()
            self._changed.notify()  # waits still pending now fail at once
        self._raise_errors()

    async def _stop_accepting(self, server: asyncio.AbstractServer) -> None:
        """Close the listener, once the connections the loop has accepted reach the server.

        asyncio's selector loop accepts in a reader callback, then makes each
        transport in a task (``_accept_connection2``) that runs an iteration later
        and attaches it to the server.  Once ``Server.close()`` has run, attaching
        fails (an assertion, silent outside debug mode) and the client's connection
        is dropped unrecorded.  So the reader goes first and one iteration lets those
        tasks run; what is still in the listener's backlog is refused, as before.
        uvloop and the proactor loop make the transport in their accept callback.
        """
        loop = self._loop
        try:
            if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
                for sock in server.sockets:  # type: ignore[attr-defined]
                    loop.remove_reader(sock.fileno())
                await asyncio.sleep(0)
        finally:
            server.close()

    def _server_idle(self, server: asyncio.AbstractServer) -> asyncio.Future[Any]:
        """Return a future done once every connection the closed server accepted is closed.

        That is what ``Server.wait_closed()`` waits for from Python 3.12.1 on,
        connections nettest has not seen yet included (accepted, and waiting for
        ``connection_made`` or for the TLS handshake).  Before 3.12 it returns at
        once once the server is closed (CPython gh-79033); the future is then the
        one 3.12's ``wait_closed`` would wait on, in the server's list of waiters.
        It also wakes the waits of `aclose`.
        """
        loop = self._loop
        assert loop is not None
        idle: asyncio.Future[Any]
        if sys.version_info < (3, 12) and isinstance(server, asyncio.base_events.Server):
            idle = loop.create_future()
            waiters: list[asyncio.Future[Any]] | None = server._waiters  # type: ignore[attr-defined]
            if waiters is None:  # woken already: nothing is open
                idle.set_result(None)
            else:
                waiters.append(idle)
        else:
            idle = asyncio.ensure_future(server.wait_closed())
        idle.add_done_callback(lambda _: self._changed.notify())
        return idle

    def _close_after_reading(self, state: _ConnState) -> None:
        """Close a connection at teardown, once the loop has read what its client sent.

        A client may have sent bytes, and its EOF, that the loop has not read yet:
        a blocking client in an async test, or a connection accepted as the listener
        closed.  Closing at once would lose them unrecorded, and a script would fail
        for want of them.  So while the socket has input waiting and the loop is
        reading it, closing waits another iteration; while the handler's StreamReader
        has paused reading (it holds twice its limit), closing waits for the handler
        to consume.  At most `_TEARDOWN_READ_BUDGET` bytes, so a client that keeps
        sending cannot hold teardown, and ``close_timeout`` bounds a handler that
        stopped consuming (the connection is then aborted).
        """
        loop = state.loop
        conn = state.conn
        transport = state.transport
        start = len(conn._received)
        events = -1
        stalled = 0
        self._reading.add(state)

        def step() -> None:
            nonlocal events, stalled
            if not conn.is_open:
                self._reading.discard(state)
                self._changed.notify()
                return
            within_budget = len(conn._received) - start < _TEARDOWN_READ_BUDGET
            if within_budget and not conn.eof_received and _paused_by_reader(state):
                stalled, events = 0, -1
                loop.call_later(_PAUSED_POLL, step)
                return
            # A read comes after this check in the same iteration (asyncio runs
            # callbacks before the I/O that became ready), so the loop is stalled
            # only when two checks in a row see nothing new.
            stalled = stalled + 1 if len(conn._events) == events else 0
            events = len(conn._events)
            if (
                stalled < 2
                and not conn.eof_received
                and within_budget
                and _input_waiting(transport)
            ):
                loop.call_soon(step)
            else:
                # A handler that stopped reading (``hang``) holds asyncio's TLS
                # layer too: it answers the client's EOF or close_notify, and hears
                # the answer to its own, only while it reads.  (A TLS transport
                # shutting down refuses to answer: then there is nothing to do.)
                with contextlib.suppress(Exception):
                    if state._is_tls() and not transport.is_reading():
                        transport.resume_reading()
                state.close()
                self._reading.discard(state)
                self._changed.notify()

        step()

    def _end_handshake(self, transport: asyncio.Transport) -> None:
        """At teardown, abort a connection still in the TLS handshake.

        Once the loop has read what its client had sent: the handshake may end with
        it, and the connection is then closed as the others are (`_connection_made`).
        """
        loop = self._loop
        assert loop is not None
        reads = 0

        def step() -> None:
            nonlocal reads
            if transport not in self._handshaking:
                return
            reads += 1
            if reads <= _HANDSHAKE_TEARDOWN_READS and _input_waiting(transport):
                loop.call_soon(step)
            else:
                self._abort_handshake(transport)

        step()

    def _abort_handshake(self, transport: asyncio.Transport) -> None:
        """Abort a connection in the TLS handshake at teardown: not a failure of its client."""
        self._handshakes_ended.add(transport)
        transport.abort()

    async def _abort_leftovers(
        self, server: asyncio.AbstractServer, idle: asyncio.Future[Any]
    ) -> None:
        """Abort the connections and cancel the handlers that did not end in time."""
        # Ours ended: what keeps the server open is connections nettest never saw,
        # accepted and still in the TLS handshake (on a loop whose TLS layer
        # nettest does not know).
        unseen = self._all_ended()
        if self._handshaking:
            count = len(self._handshaking)
            self._aborted.append(
                f"{count} connection{'s' if count != 1 else ''} still in the TLS handshake"
            )
            for transport in list(self._handshaking):
                self._abort_handshake(transport)
        for state in self._states:
            conn = state.conn
            if conn.is_open:
                self._aborted.append(
                    f"connection #{conn.index} from {format_address(conn.peer)} "
                    f"(received {len(conn._received)} bytes, sent {len(conn._sent)})"
                )
                state.abort()
            if state.task is not None and not state.task.done():
                self._aborted.append(f"the handler of connection #{conn.index} (cancelled)")
                state.task.cancel()
        abort_clients = getattr(server, "abort_clients", None)
        if abort_clients is not None:  # Python 3.13+
            abort_clients()
            if unseen:
                self._aborted.append("connections still in the TLS handshake")
        elif unseen:
            self._aborted.append(
                "connections still in the TLS handshake could not be aborted "
                "(the loop's server makes their TLS layer, and has no "
                "abort_clients); they end when the client closes or the "
                "handshake times out"
            )
            return  # nothing was aborted: nothing to wait for
        if await self._bounded_wait(CANCEL_GRACE, idle):
            return
        # A handler that ignores cancellation would hold the loop's close for ever.
        stuck = [s for s in self._states if s.task is not None and not s.task.done()]
        for state in stuck:
            assert state.task is not None
            handler = f"the handler of connection #{state.conn.index}"
            what = f"{handler} {force_end(state.task)}"
            if f"{handler} (cancelled)" in self._aborted:
                self._aborted[self._aborted.index(f"{handler} (cancelled)")] = what
            else:
                self._aborted.append(what)
        if stuck:
            await self._bounded_wait(CANCEL_GRACE, idle)

    async def _bounded_wait(self, timeout: float, idle: asyncio.Future[Any]) -> bool:
        """Wait until the connections and handlers ended and the server is idle."""
        try:
            await self._changed.wait_until(
                lambda: self._all_ended() and idle.done(), timeout, lambda: ""
            )
        except TimeoutError:
            return False
        return True

    def _close_notify_unanswered(self, conn: Connection) -> None:
        """Note a connection aborted because its TLS peer never answered close_notify."""
        self._unanswered.append(f"connection #{conn.index} from {format_address(conn.peer)}")

    def _raise_errors(self) -> None:
        __tracebackhide__ = True  # the handlers' errors are the report, not these frames
        parts = []
        if self._aborted:
            parts.append(
                f"teardown had to abort after {self._close_timeout:g} s: "
                + "; ".join(self._aborted)
            )
        if self._unanswered:
            parts.append(
                f"the TLS peer never answered close_notify, so asyncio aborted after "
                f"{self._close_timeout:g} s (ssl_shutdown_timeout): " + "; ".join(self._unanswered)
            )
        aborted = f"{self._name}: " + "; and ".join(parts) if parts else ""
        if self._errors:
            lines = [
                f"{self._name}: {len(self._errors)} handler error"
                f"{'s' if len(self._errors) != 1 else ''}:"
            ]
            for conn, exc, what in self._errors:
                where = (
                    f"connection #{conn.index} from {format_address(conn.peer)}"
                    if conn is not None
                    else "the server"
                )
                detail = str(exc).replace("\n", "\n    ")
                lines.append(f"  {where}: {type(exc).__name__}: {detail}\n    ({what})")
            if aborted:
                lines.append(aborted)
            errors = self.errors
            raise handler_error(lines, errors)
        if aborted:
            warn_at_test(ServerTeardownWarning(aborted), self)
