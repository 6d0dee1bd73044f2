"""Loopback stream servers (TCP over IPv4/IPv6, Unix, TLS) that record what crossed the wire.

Theory of operation
-------------------
A server binds its own socket (port 0, or a path in a private directory) and
keeps it, so no other process can take the address between "find" and "bind".
Each accepted connection gets a ``_ConnState`` (in ``_connections``), which owns
the real transport and the public `Connection` recording.  The handler's protocol sees a
`_RecordingTransport` that records writes; a `_RecordingProtocol` in front of it
records reads, EOF and how the connection ended.  Stream handlers run as tasks the
server owns, so their exceptions are kept and raised again at teardown.

Teardown (`aclose`), bounded whatever the clients do:

1. close the listener;
2. close the client connections (``Server.close_clients`` on 3.13+, our own list
   of transports before, which is the same thing);
3. wait up to ``close_timeout`` for the connections to end and the handlers to
   return;
4. abort what is left and cancel the handlers still running, then warn with
   `ServerTeardownWarning` naming them;
5. raise `HandlerError` if any handler failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import ssl
import ssl as _ssl
import sys
import typing
import warnings
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from ._connections import _ConnState, _RecordingBufferedProtocol, _RecordingProtocol
from ._connections import _RecordingTransport as _RecordingTransport
from ._handlers import (
    Handler,
    HandlerError,
    ProtocolFactory,
    StreamHandler,
    classify,
    echo,
)
from ._hygiene import track
from ._recording import (
    _UNSET,
    Connection,
    Signal,
    format_address,
    resolve_timeout,
    show,
)
from ._server_base import (
    UNIX_PATH_MAX as UNIX_PATH_MAX,
)
from ._server_base import (
    AsyncServerFactory,
    _apply_buffers,
    _check_buffer,
    _check_int,
    _check_positive,
    _closed_on_error,
    _loop_thread_call,
    _LoopbackHost,
    _LoopbackServer,
    _UnixPath,
)
from ._server_base import has_ipv6_loopback as has_ipv6_loopback

__all__ = [
    "ServerTeardownWarning",
    "TCPServer",
    "TCPServerFactory",
    "UnixServer",
    "UnixServerFactory",
    "has_ipv6_loopback",
]

_S = TypeVar("_S", bound="_StreamServer")

#: Default seconds teardown waits for connections to end before aborting them.
DEFAULT_CLOSE_TIMEOUT = 2.0


class ServerTeardownWarning(UserWarning):
    """A server's teardown had to abort connections or cancel handlers that did not end.

    Teardown closes every connection, then waits ``close_timeout`` seconds.  A
    client that never reads (so the server's buffered data cannot drain) or a TLS
    peer that never answers close_notify keeps its connection open; teardown then
    aborts it and warns with this, naming the connection.
    """


# -- the servers ----------------------------------------------------------------


class _StreamServer(_LoopbackServer):
    """What TCPServer and UnixServer share: recording, handlers, waits and teardown."""

    _kind = "server"
    _socket_type = socket.SOCK_STREAM

    def __init__(
        self,
        handler: Handler | StreamHandler | ProtocolFactory,
        *,
        ssl: ssl.SSLContext | None,
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
        _check_positive("close_timeout", close_timeout)
        _check_buffer("rcvbuf", rcvbuf)
        _check_buffer("sndbuf", sndbuf)
        _check_int("backlog", backlog)
        _check_int("limit", limit, "(bytes)")
        self._ssl = ssl
        self._close_timeout = close_timeout
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
        extra: dict[str, Any] = {}
        if self._ssl is not None:
            extra["ssl_handshake_timeout"] = resolve_timeout(_UNSET) or 60.0
            if sys.version_info >= (3, 11):
                extra["ssl_shutdown_timeout"] = self._close_timeout
        self._server = await loop.create_server(
            self._protocol_factory,
            sock=sock,
            ssl=self._ssl,
            backlog=self._backlog,
            **extra,
        )

    def __repr__(self) -> str:
        return f"<{self._name} {self._status}, {len(self._states)} connections>"

    @property
    def ssl(self) -> ssl.SSLContext | None:
        """The server's TLS context, or None for plain connections."""
        return self._ssl

    def _protocol_factory(self) -> asyncio.BaseProtocol:
        assert self._loop is not None
        if self._handler_kind == "protocol":
            factory = typing.cast("ProtocolFactory", self._handler)
            inner = factory()
            if not isinstance(inner, asyncio.BaseProtocol):
                raise TypeError(
                    f"the handler (a protocol factory) returned {type(inner).__name__}, "
                    "not an asyncio.Protocol"
                )
        else:
            reader = asyncio.StreamReader(limit=self._limit, loop=self._loop)
            return _RecordingProtocol(
                self, asyncio.StreamReaderProtocol(reader, loop=self._loop), reader
            )
        if isinstance(inner, asyncio.BufferedProtocol):
            return _RecordingBufferedProtocol(self, inner)
        return _RecordingProtocol(self, inner)

    def _connection_made(self, transport: asyncio.Transport) -> _ConnState:
        state = _ConnState(self, transport)
        self._states.append(state)
        self._changed.notify()
        if self._status != "open":
            # Accepted just before the listener closed: close it with the others.
            self._loop.call_soon(state.close)  # type: ignore[union-attr]
        return state

    def _start_handler(
        self,
        state: _ConnState,
        proxy: _RecordingTransport,
        inner: asyncio.BaseProtocol,
        reader: asyncio.StreamReader | None,
    ) -> None:
        if reader is None:
            return
        assert isinstance(inner, asyncio.StreamReaderProtocol)
        assert self._loop is not None
        writer = asyncio.StreamWriter(proxy, inner, reader, self._loop)
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
                await typing.cast("StreamHandler", self._handler)(reader, writer)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            tearing_down = self._status != "open"
            if not (
                tearing_down and isinstance(exc, (ConnectionError, asyncio.IncompleteReadError))
            ):
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

    def assert_no_connections(self) -> None:
        """Fail unless the server has accepted no connection at all.

        For tests that check a client does *not* connect (a cache hit, a
        circuit breaker that is open, a disabled feature).

        Raises:
            AssertionError: listing the connections that arrived, with their bytes.
        """
        if self._states:
            raise AssertionError(
                f"{self._name}: expected no connections; {len(self._states)} arrived:\n"
                + self.transcript()
            )

    def transcript(self) -> str:
        """Return the transcripts of every connection, one after the other."""
        if not self._states:
            return f"{self._name}: no connections"
        return "\n".join(s.conn.transcript() for s in self._states)

    async def wait_for_connections(
        self, n: int = 1, *, timeout: float | None = _UNSET
    ) -> tuple[Connection, ...]:
        """Wait until the server has accepted at least ``n`` connections in all.

        Args:
            n: how many connections, counting those already accepted.
            timeout: seconds; nettest's default timeout if not given, None for ever.

        Returns:
            The first ``n`` connections.

        Raises:
            ValueError: ``n`` < 1.
            TimeoutError: fewer arrived; the message says how many did.
        """
        _check_int("n", n)
        self._check_loop()
        await self._changed.wait_until(
            lambda: len(self._states) >= n,
            resolve_timeout(timeout),
            lambda: (
                f"{self._name}: expected {n} connection{'s' if n != 1 else ''}; "
                f"{len(self._states)} arrived" + "".join(f"\n  {s.conn!r}" for s in self._states)
            ),
        )
        return tuple(s.conn for s in self._states[:n])

    async def wait_for_bytes(
        self, data: bytes, *, connection: int = 1, timeout: float | None = _UNSET
    ) -> bytes:
        """Wait until connection number ``connection`` (1-based) has received ``data``.

        Waits for the connection to arrive first.  The same timeout applies to
        each of the two waits.

        Returns:
            Everything that connection received so far.

        Raises:
            TimeoutError: the connection or the bytes did not arrive in time; the
                message shows what did.
        """
        conns = await self.wait_for_connections(connection, timeout=timeout)
        return await conns[connection - 1].wait_for(data, timeout=timeout)

    def _check_loop(self) -> None:
        if self._loop is None:
            raise RuntimeError(f"{self._name} is not started; await server.start() first")
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                f"{self._name} belongs to another event loop than the running one; "
                "use a server on the loop that started it (check the fixture's and the "
                "test's loop_scope)"
            )

    # -- teardown --------------------------------------------------------------

    def _all_ended(self) -> bool:
        return not self._tasks and all(not s.conn.is_open for s in self._states)

    def _abort_everything(self) -> None:
        """Synchronous last resort (the hygiene gate's close): abort and cancel all."""
        if self._server is not None:
            self._server.close()
        for state in self._states:
            if state.conn.is_open:
                state.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._status != "closed":
            self._status = "closed"
            self._cleanup()

    async def aclose(self) -> None:
        """Close the server; raise what its handlers raised.

        Closes the listener, then the connections; waits up to ``close_timeout``
        for them to end; aborts what is left (with `ServerTeardownWarning`).  It
        never hangs.  Calling it again does nothing.

        Raises:
            HandlerError: a handler raised, or a script was not followed.
        """
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
            server.close()
            # Server.close_clients exists from 3.13 (not on uvloop's servers); before
            # it, and always, nettest closes the transports it recorded.
            close_clients = getattr(server, "close_clients", None)
            if close_clients is not None:
                close_clients()
            for state in self._states:
                if state.conn.is_open:
                    state.close()
            await self._bounded_wait(self._close_timeout)
            if not self._all_ended():
                for state in self._states:
                    conn = state.conn
                    if conn.is_open:
                        self._aborted.append(
                            f"connection #{conn.index} from {format_address(conn.peer)} "
                            f"(received {len(conn._received)} bytes, sent {len(conn._sent)})"
                        )
                        state.abort()
                    if state.task is not None and not state.task.done():
                        self._aborted.append(
                            f"the handler of connection #{conn.index} (cancelled)"
                        )
                        state.task.cancel()
                await self._bounded_wait(1.0)
            try:
                if sys.version_info >= (3, 12):
                    # From 3.12 wait_closed waits for every accepted connection,
                    # including TLS handshakes nettest never saw: bound it.
                    await asyncio.wait_for(server.wait_closed(), self._close_timeout)
                else:  # before 3.12 it returns at once once the server is closed
                    await server.wait_closed()
            except asyncio.TimeoutError:
                # Connections nettest never saw: accepted, still in the TLS handshake.
                abort_clients = getattr(server, "abort_clients", None)
                if abort_clients is not None:
                    abort_clients()
                    self._aborted.append("connections still in the TLS handshake")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(server.wait_closed(), 1.0)
                else:  # Python 3.12 has no way to reach them
                    self._aborted.append(
                        "connections still in the TLS handshake could not be aborted "
                        "(no Server.abort_clients before Python 3.13); they end when the "
                        "client closes or the handshake times out"
                    )
        finally:
            self._status = "closed"
            self._cleanup()
        self._raise_errors()

    async def _bounded_wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await self._changed.wait_until(self._all_ended, timeout, lambda: "")

    def _raise_errors(self) -> None:
        aborted = ""
        if self._aborted:
            aborted = (
                f"{self._name}: teardown had to abort after {self._close_timeout:g} s: "
                + "; ".join(self._aborted)
            )
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
            raise HandlerError("\n".join(lines), errors) from errors[0]
        if aborted:
            warnings.warn(ServerTeardownWarning(aborted), stacklevel=3)


@typing.final
class TCPServer(_LoopbackHost, _StreamServer):
    """A TCP server on loopback (IPv4 or IPv6, optionally TLS) that records every connection.

    It binds port 0 itself and keeps the socket, so the port can never be taken
    by someone else first.  Use it as an async context manager, or through the
    ``tcp_server`` fixture, which closes it at teardown.

    Args:
        handler: a `nettest.handlers` handler (default `~nettest.handlers.echo`), an
            ``async def handler(reader, writer)``, or a protocol factory.
        host: a literal loopback address: ``"127.0.0.1"`` (default) or ``"::1"``.
        ssl: a server `ssl.SSLContext` to serve TLS.
        allow_remote: allow a host that is not loopback.
        close_timeout: seconds teardown waits for connections to end before
            aborting them.
        rcvbuf: SO_RCVBUF for accepted sockets, in bytes (small values make kernel
            backpressure reachable).
        sndbuf: SO_SNDBUF for accepted sockets, in bytes.
        nodelay: TCP_NODELAY on accepted sockets (asyncio's default is on).
        reuse_port: set SO_REUSEPORT on the listening socket.
        backlog: the listen backlog.
        limit: the StreamReader buffer limit for stream handlers.

    Raises:
        ValueError: ``host`` is not a literal loopback address, or a bad number.
        TypeError: ``handler`` is none of the accepted kinds.

    Example::

        async with nettest.TCPServer(nettest.handlers.echo) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()
            await writer.wait_closed()
    """

    _kind = "TCPServer"

    def __init__(
        self,
        handler: Handler | StreamHandler | ProtocolFactory = echo,
        *,
        host: str = "127.0.0.1",
        ssl: ssl.SSLContext | None = None,
        allow_remote: bool = False,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        nodelay: bool = True,
        reuse_port: bool = False,
        backlog: int = 128,
        limit: int = 2**16,
    ) -> None:
        self._init_host(host, allow_remote=allow_remote)
        self._nodelay = bool(nodelay)
        self._init_reuse_port(reuse_port)
        super().__init__(
            handler,
            ssl=ssl,
            close_timeout=close_timeout,
            rcvbuf=rcvbuf,
            sndbuf=sndbuf,
            backlog=backlog,
            limit=limit,
        )

    def _make_socket(self) -> socket.socket:
        sock = self._host_socket(has_ipv6=has_ipv6_loopback)
        with _closed_on_error(sock):
            _apply_buffers(sock, self._rcvbuf, self._sndbuf)
            sock.bind((self._host, 0))
            self._port = sock.getsockname()[1]
        return sock

    def _connection_made(self, transport: asyncio.Transport) -> _ConnState:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(self._nodelay))
        return super()._connection_made(transport)

    def _describe(self) -> str:
        return format_address((self._host, self._port)) + (" (TLS)" if self._ssl else "")

    @property
    def host(self) -> str:
        """The literal address the server listens on, e.g. ``"127.0.0.1"``."""
        return self._host

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``: pass it as ``asyncio.open_connection(*server.address)``."""
        return (self._host, self._port)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (asyncio's ``TransportSocket`` views)."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)


@typing.final
class UnixServer(_UnixPath, _StreamServer):
    """A Unix stream socket server that records every connection.

    By default it listens on ``s`` in a fresh private directory under /tmp,
    short enough for ``sun_path`` whatever the test's tmp_path, and removes it at
    teardown.  ``abstract`` listens in Linux's abstract namespace instead (the
    kernel picks a unique name; nothing on disk).

    Args:
        handler: as for `TCPServer`.
        path: where to listen; checked against the 107-byte limit (103 on macOS).
        abstract: listen in the Linux abstract namespace (no path).
        ssl, close_timeout, rcvbuf, sndbuf, backlog, limit: as for `TCPServer`.

    Raises:
        ValueError: ``path`` is too long (the message names the limit), or both
            ``path`` and ``abstract`` were given, or ``abstract`` off Linux.

    Example::

        async with nettest.UnixServer(nettest.handlers.echo) as server:
            reader, writer = await asyncio.open_unix_connection(server.path)
    """

    _kind = "UnixServer"

    def __init__(
        self,
        handler: Handler | StreamHandler | ProtocolFactory = echo,
        *,
        path: str | pathlib.Path | None = None,
        abstract: bool = False,
        ssl: ssl.SSLContext | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        backlog: int = 128,
        limit: int = 2**16,
    ) -> None:
        self._init_unix_path(path, abstract)
        super().__init__(
            handler,
            ssl=ssl,
            close_timeout=close_timeout,
            rcvbuf=rcvbuf,
            sndbuf=sndbuf,
            backlog=backlog,
            limit=limit,
        )

    @property
    def address(self) -> str:
        """Same as ``path``: pass it to ``asyncio.open_unix_connection(server.address)``."""
        return self._path

    @property
    def abstract(self) -> bool:
        """Whether the server is in the Linux abstract namespace."""
        return self._abstract


# -- fixtures -------------------------------------------------------------------

HandlerArg = Handler | StreamHandler | ProtocolFactory


class TCPServerFactory(typing.Protocol):
    """The type of the ``tcp_server`` fixture: ``await tcp_server(handler, **options)``.

    Takes the arguments of `TCPServer`, starts the server on the running loop and
    returns it; the fixture closes it at teardown.
    """

    async def __call__(
        self,
        handler: HandlerArg = ...,
        *,
        host: str = ...,
        ssl: ssl.SSLContext | None = ...,
        allow_remote: bool = ...,
        close_timeout: float = ...,
        rcvbuf: int | None = ...,
        sndbuf: int | None = ...,
        nodelay: bool = ...,
        reuse_port: bool = ...,
        backlog: int = ...,
        limit: int = ...,
    ) -> TCPServer: ...


class UnixServerFactory(typing.Protocol):
    """The type of the ``unix_server`` fixture: ``await unix_server(handler, **options)``.

    Takes the arguments of `UnixServer`, starts it and returns it; closed at teardown.
    """

    async def __call__(
        self,
        handler: HandlerArg = ...,
        *,
        path: str | pathlib.Path | None = ...,
        abstract: bool = ...,
        ssl: ssl.SSLContext | None = ...,
        close_timeout: float = ...,
        rcvbuf: int | None = ...,
        sndbuf: int | None = ...,
        backlog: int = ...,
        limit: int = ...,
    ) -> UnixServer: ...


@pytest_asyncio.fixture
async def tcp_server(request: pytest.FixtureRequest) -> AsyncIterator[TCPServerFactory]:
    """Start loopback TCP servers: ``server = await tcp_server(handler, host=..., ssl=...)``.

    Servers bind 127.0.0.1 (or ``::1``) port 0 themselves, record every
    connection, and are closed at teardown, which raises their handlers' errors.
    """
    factory = AsyncServerFactory(request, TCPServer)
    yield typing.cast("TCPServerFactory", factory)
    await factory.aclose()


@pytest_asyncio.fixture
async def unix_server(request: pytest.FixtureRequest) -> AsyncIterator[UnixServerFactory]:
    """Start Unix socket servers: ``server = await unix_server(handler)``; closed at teardown.

    Each listens in a short private directory (or the abstract namespace) and
    records every connection.
    """
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("Unix sockets are not available on this platform")
    factory = AsyncServerFactory(request, UnixServer)
    yield typing.cast("UnixServerFactory", factory)
    await factory.aclose()
