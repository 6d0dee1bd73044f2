"""The loopback servers on a background thread's event loop, for blocking clients.

Synchronous tests (``socket``, ``ssl``, ``http.client``, ``requests``...) cannot
await, so these wrappers run the same servers on a private event loop in a
daemon thread and offer blocking versions of the waits.  Each wrapper owns its
thread; closing the wrapper closes the server (raising its handler errors), stops
the loop and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import ssl
import threading
import typing
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Generic, Literal, TypeVar

import pytest

from ._handlers import (
    DatagramProtocolFactory,
    DatagramReply,
    Handler,
    ProtocolFactory,
    StreamHandler,
    echo,
)
from ._hygiene import GATE, instrument_loop, serves_on, track
from ._hygiene_instruments import end_tasks
from ._hygiene_report import _creation_stack
from ._recording import _UNSET, Connection, Datagram, Ending, HandshakeFailure
from ._server_base import NoIPv6LoopbackError, _check_int, raise_all, report_transcript_of
from ._servers import TCPServer, UnixServer
from ._settings import default_timeout, follow_debugger
from ._stream_server import WARN_SITE, ServerTeardownWarning, warn_at_test
from ._udp import UDPServer, UnixDatagramServer, _DatagramServer

if typing.TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._stream_server import _StreamServer

__all__ = [
    "TCPServerThread",
    "TCPServerThreadFactory",
    "UDPServerThread",
    "UDPServerThreadFactory",
    "UnixDatagramServerThread",
    "UnixDatagramServerThreadFactory",
    "UnixServerThread",
    "UnixServerThreadFactory",
]


class _TCPOptions(typing.TypedDict, total=False):
    """`TCPServer`'s keyword arguments: the type of ``TCPServerThread(**options)``,
    and of the ``tcp_server_thread`` fixture's."""

    host: str
    port: int
    ssl: ssl.SSLContext | None
    handshake_timeout: float | None
    allow_remote: bool
    close_timeout: float
    rcvbuf: int | None
    sndbuf: int | None
    nodelay: bool
    reuse_port: bool
    backlog: int
    limit: int


class _UnixOptions(typing.TypedDict, total=False):
    """`UnixServer`'s keyword arguments."""

    path: str | pathlib.Path | None
    abstract: bool
    ssl: ssl.SSLContext | None
    handshake_timeout: float | None
    close_timeout: float
    rcvbuf: int | None
    sndbuf: int | None
    backlog: int
    limit: int


class _UDPOptions(typing.TypedDict, total=False):
    """`UDPServer`'s keyword arguments."""

    host: str
    port: int
    group: str | None
    allow_remote: bool
    rcvbuf: int | None
    sndbuf: int | None
    reuse_port: bool
    broadcast: bool


class _UnixDatagramOptions(typing.TypedDict, total=False):
    """`UnixDatagramServer`'s keyword arguments."""

    path: str | pathlib.Path | None
    abstract: bool
    rcvbuf: int | None
    sndbuf: int | None


_T = TypeVar("_T")
_S = TypeVar("_S", bound="_StreamServer | _DatagramServer")
_SS = TypeVar("_SS", bound="_StreamServer")
_IP = TypeVar("_IP", bound="TCPServer | UDPServer")
_DS = TypeVar("_DS", bound="_DatagramServer")
_UP = TypeVar("_UP", bound="UnixServer | UnixDatagramServer")
_X = TypeVar("_X", bound="_StartsAndCloses")
_W = TypeVar("_W", bound="_OnLoopThread[Any]")

#: Seconds to wait for the loop thread to finish after its server closed.
_JOIN_TIMEOUT = 10.0


class _LoopThread:
    """An event loop running for ever in a daemon thread until `stop`.

    Its default timeouts (a script step's) are off while the thread that started
    it, the test's, is being debugged: a breakpoint stops that thread, not this one.
    """

    def __init__(self, name: str) -> None:
        self._owner = threading.current_thread()
        # The loop's self-pipe is the thread's, reported with it, not as the test's sockets.
        with GATE.owned_by(None):
            self.loop = asyncio.new_event_loop()
        instrument_loop(self.loop)
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        serves_on(self.thread)
        self._started = threading.Event()
        self._stop_requested = False
        self._gave_up = False
        self._forced: list[str] = []
        self.thread.start()
        self._started.wait()
        track(
            self,
            what=f"server thread {name}",
            is_open=lambda t: t.thread.is_alive(),
            close=lambda t: t.stop(),
        )

    def _main(self) -> None:
        loop = self.loop
        follow_debugger(self._owner)
        asyncio.set_event_loop(loop)
        loop.call_soon(self._started.set)
        try:
            loop.run_forever()
            self._end_tasks()
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def _end_tasks(self) -> None:
        """Cancel what still runs on the stopped loop, and end by force what ignores that.

        Closing the server ends its handlers, but a close cut short (a test
        timeout interrupts it) or a task the server does not know may leave some:
        each gets `CANCEL_GRACE` seconds to end, then its coroutine is closed, as
        the servers do to a handler that ignores cancellation.  `stop` warns of
        those.
        """
        pending = asyncio.all_tasks(self.loop)
        if not pending:
            return
        # Described before they end: a coroutine ended by force has no name left.
        described: dict[asyncio.Future[Any], str] = {task: _running(task) for task in pending}
        done, forced = end_tasks(self.loop, pending)
        self._forced += [f"{described[task]} {how}" for task, how in forced.items()]
        for task in done:  # retrieved, as asyncio.run retrieves them: nothing to log
            if not task.cancelled():
                task.exception()

    def run(self, coro: Coroutine[Any, Any, _T], *, finish: bool = False) -> _T:
        """Run `coro` on the thread's loop and block until it finishes.

        With `finish`, a wait that is interrupted (a test timeout's exception, a
        Ctrl-C) still lets `coro` finish, for up to `_JOIN_TIMEOUT` seconds: a
        server's close, which ends by itself, then still closes its sockets.
        What it raises then is warned of, behind the interruption.
        """
        __tracebackhide__ = True  # what `coro` raised is the report, not this frame
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("cannot block on the server thread's own loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise RuntimeError("the server thread stopped before the call finished") from None
        except BaseException:
            if finish and not future.done():
                self._finish(future)
            raise

    def _finish(self, future: concurrent.futures.Future[Any]) -> None:
        done, _ = concurrent.futures.wait([future], timeout=_JOIN_TIMEOUT)
        if done and not future.cancelled() and future.exception() is not None:
            error = future.exception()
            warning = ServerTeardownWarning(
                f"server thread {self.thread.name}: its close, finished after an "
                f"interruption, raised {type(error).__name__}: {error}"
            )
            warn_at_test(warning, self)

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs on it) and join the thread.

        Only the first call stops the loop: a later one (the hygiene gate's, after a
        join that timed out) must not stop it again while the thread is still
        cancelling its tasks, and waits no more for a thread it gave up on.
        """
        if not self._stop_requested:
            self._stop_requested = True
            if self.thread.is_alive() and not self.loop.is_closed():
                try:
                    self.loop.call_soon_threadsafe(self.loop.stop)
                except RuntimeError:  # closed meanwhile
                    pass
        if self.thread is not threading.current_thread():
            self.thread.join(0 if self._gave_up else _JOIN_TIMEOUT)
            self._gave_up = self.thread.is_alive()
            forced, self._forced = self._forced, []
            if forced:
                warning = ServerTeardownWarning(
                    f"server thread {self.thread.name}: its loop stopped with tasks "
                    f"that did not end: {'; '.join(forced)}"
                )
                warn_at_test(warning, self)

    def __del__(self) -> None:
        thread = getattr(self, "thread", None)
        if thread is not None and thread.is_alive():
            warnings.warn(f"unstopped server thread {thread.name}", ResourceWarning, stacklevel=1)


def _running(task: asyncio.Task[Any]) -> str:
    """A task, for a warning: its name and what it runs."""
    coro = task.get_coro()
    return f"task {task.get_name()} running {getattr(coro, '__qualname__', repr(coro))}()"


class _StartsAndCloses(typing.Protocol):
    """What runs on a loop thread: a server, or a fault proxy."""

    async def start(self) -> Any: ...

    async def aclose(self) -> None: ...

    @property
    def closed(self) -> bool: ...


class _OnLoopThread(Generic[_X]):
    """An object of type `_X` (a server, a proxy) running on its own loop thread.

    `start` starts the thread and the object on it; `close` closes the object,
    stops the loop and joins the thread.
    """

    def __init__(self, server: _X) -> None:
        self._server = server
        self._thread: _LoopThread | None = None
        #: The test's line that made it, for warnings raised on its loop thread.
        self._made_at = _creation_stack()[-1:]

    def start(self: _W) -> _W:
        """Start the loop thread and start the server (or proxy) on it; return self.

        Raises:
            RuntimeError: It was already started.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self!r} was already started")
        self._thread = _LoopThread(f"nettest-{type(self._server).__name__}")
        try:
            self._thread.run(self._server.start())
        except BaseException:
            self._thread.stop()
            raise
        return self

    def close(self) -> None:
        """Close the server (or proxy), stop its loop and join its thread.

        Raises:
            HandlerError: a server's handler raised, or a script was not followed.
        """
        __tracebackhide__ = True  # the handlers' errors are the report, not these frames
        thread = self._thread
        if thread is None:
            return
        # Its warnings point at the test's line that closes it, or else that made it.
        site = WARN_SITE.set(_creation_stack()[-1:] or self._made_at)
        try:
            if thread.thread.is_alive():
                thread.run(self._server.aclose(), finish=True)
        finally:
            WARN_SITE.reset(site)
            thread.stop()

    def __del__(self) -> None:
        # Its thread keeps the loop and the server alive, not this object: outside
        # pytest's hygiene gate nothing else would say that it was dropped unclosed.
        thread = getattr(self, "_thread", None)
        if thread is not None and thread.thread.is_alive() and not thread._stop_requested:
            warnings.warn(
                f"unclosed {self!r}: close() it, or start it with a with statement",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    def __enter__(self: _W) -> _W:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._server!r}>"

    @property
    def closed(self) -> bool:
        """Whether the server (or proxy) has been closed."""
        return self._server.closed

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop it runs on, in its own thread."""
        if self._thread is None:
            raise RuntimeError(f"{self!r} is not started")
        return self._thread.loop

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        __tracebackhide__ = True  # what `coro` raised is the report
        thread = self._thread
        if thread is None or not thread.thread.is_alive() or thread.loop.is_closed():
            coro.close()  # never awaited: no "never awaited" warning in a later test
            state = "not started" if thread is None else "closed"
            raise RuntimeError(f"{self!r} is {state}")
        return thread.run(coro)


class _ThreadedServer(_OnLoopThread[_S]):
    """A server of type `_S` running on its own loop thread."""

    @property
    def server(self) -> _S:
        """The underlying asyncio server (read its recordings; do not await on it)."""
        return self._server

    def transcript(self) -> str:
        """The server's transcript (see the async server's ``transcript``)."""
        return self._server.transcript()


def _timeout_here(timeout: float | None) -> float | None:
    """The wait's timeout, the default taken on the calling thread (the test's).

    On the loop thread a debugger stopping the test is not seen (``sys.gettrace()``
    is per thread), and the wait would time out under it.
    """
    return default_timeout() if timeout is _UNSET else timeout


class _StreamThreadMixin(_ThreadedServer[_SS]):
    @property
    def connections(self) -> tuple[Connection, ...]:
        """Every connection accepted so far."""
        return self._server.connections

    def wait_for_connections(
        self, n: int = 1, *, timeout: float | None = _UNSET
    ) -> tuple[Connection, ...]:
        """Block until ``n`` connections have arrived in all; return the first ``n``.

        ``n=0`` returns ``()`` at once.

        Raises:
            TypeError: ``n`` is not an int.
            ValueError: ``n`` < 0, or a bad timeout.
            TimeoutError: fewer arrived in time, or the server closed with fewer
                (then at once); the message says how many did.
        """
        return self._run(self._server.wait_for_connections(n, timeout=_timeout_here(timeout)))

    @property
    def handshake_failures(self) -> tuple[HandshakeFailure, ...]:
        """The connections whose TLS handshake failed (see the async server's)."""
        return self._server.handshake_failures

    def wait_for_handshake_failures(
        self, n: int = 1, *, timeout: float | None = _UNSET
    ) -> tuple[HandshakeFailure, ...]:
        """Block until ``n`` TLS handshakes in all have failed; return the first ``n``.

        Raises:
            TypeError: ``n`` is not an int.
            ValueError: ``n`` < 0, or a bad timeout.
            RuntimeError: the server records no failed handshakes: it serves no TLS, or a
                handler of its own calls start_tls() (see `TCPServer.wait_for_handshake_failures`).
            TimeoutError: fewer failed in time, or the server closed with fewer.
        """
        timeout = _timeout_here(timeout)
        return self._run(self._server.wait_for_handshake_failures(n, timeout=timeout))

    def wait_for_bytes(
        self, data: bytes, *, connection: int = 1, timeout: float | None = _UNSET
    ) -> bytes:
        """Block until connection number ``connection`` (1-based) has received ``data``.

        Returns:
            Everything that connection received so far.

        Raises:
            TimeoutError: the connection or the bytes did not arrive in time, or
                can no longer arrive (then at once); the message shows what did.
        """
        timeout = _timeout_here(timeout)
        return self._run(self._server.wait_for_bytes(data, connection=connection, timeout=timeout))

    def wait_for_sent(
        self, data: bytes, *, connection: int = 1, timeout: float | None = _UNSET
    ) -> bytes:
        """Block until the server has sent ``data`` on connection number ``connection`` (1-based).

        Returns:
            Everything the server sent on that connection so far.

        Raises:
            TypeError, ValueError: ``connection`` is not an int >= 1.
            TimeoutError: the connection did not arrive, or the server did not
                send ``data`` in time, or can no longer (then at once).
        """
        return self._on_connection(
            connection, timeout, lambda conn, seconds: conn.wait_for_sent(data, timeout=seconds)
        )

    def wait_closed(self, *, connection: int = 1, timeout: float | None = _UNSET) -> Ending:
        """Block until connection number ``connection`` (1-based) has ended; say how.

        Raises:
            TypeError, ValueError: ``connection`` is not an int >= 1.
            TimeoutError: the connection did not arrive, or did not end, in time.
        """
        return self._on_connection(
            connection, timeout, lambda conn, seconds: conn.wait_closed(timeout=seconds)
        )

    def _on_connection(
        self,
        connection: int,
        timeout: float | None,
        wait: Callable[[Connection, float | None], Coroutine[Any, Any, _T]],
    ) -> _T:
        """Block until connection number `connection` arrives, then run its `wait`.

        Both share the timeout, as the test's thread resolves it.
        """
        _check_int("connection", connection)
        seconds = _timeout_here(timeout)

        async def run() -> _T:
            conns = await self._server.wait_for_connections(connection, timeout=seconds)
            return await wait(conns[connection - 1], seconds)

        return self._run(run())


class _HostThreadMixin(_ThreadedServer[_IP]):
    @property
    def host(self) -> str:
        """The literal address the server listens on."""
        return self._server.host

    @property
    def port(self) -> int:
        """The port the server bound."""
        return self._server.port


class _UnixPathThreadMixin(_ThreadedServer[_UP]):
    @property
    def path(self) -> str:
        """The socket's path (for an abstract socket, a str starting with NUL)."""
        return self._server.path

    @property
    def address(self) -> str:
        """The same as ``path``, where clients connect or send to."""
        return self._server.address


@typing.final
class TCPServerThread(_StreamThreadMixin[TCPServer], _HostThreadMixin[TCPServer]):
    """A `TCPServer` on a background thread's loop, for blocking clients.

    Takes the arguments of `TCPServer`.  Use it as a context manager, or
    through the ``tcp_server_thread`` fixture.

    Example::

        with nettest.TCPServerThread(nettest.handlers.echo) as server:
            with socket.create_connection(server.address) as sock:
                sock.sendall(b"ping")
                assert sock.recv(4) == b"ping"
    """

    def __init__(
        self,
        handler: Handler | StreamHandler | ProtocolFactory = echo,
        **options: Unpack[_TCPOptions],
    ) -> None:
        super().__init__(TCPServer(handler, **options))

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, e.g. for ``socket.create_connection(server.address)``."""
        return self._server.address


@typing.final
class UnixServerThread(_StreamThreadMixin[UnixServer], _UnixPathThreadMixin[UnixServer]):
    """A `UnixServer` on a background thread's loop, for blocking clients.

    Example::

        with nettest.UnixServerThread(nettest.handlers.echo) as server:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(server.path)
    """

    def __init__(
        self,
        handler: Handler | StreamHandler | ProtocolFactory = echo,
        **options: Unpack[_UnixOptions],
    ) -> None:
        super().__init__(UnixServer(handler, **options))


class _DatagramThreadMixin(_ThreadedServer[_DS]):
    @property
    def datagrams(self) -> tuple[Datagram, ...]:
        """Every datagram received so far."""
        return self._server.datagrams

    @property
    def sent(self) -> tuple[Datagram, ...]:
        """Every datagram the server sent so far."""
        return self._server.sent

    def wait_for_datagrams(
        self,
        n: int = 1,
        *,
        direction: Literal["received", "sent"] = "received",
        timeout: float | None = _UNSET,
    ) -> tuple[Datagram, ...]:
        """Block until ``n`` datagrams have been received (or sent) in all; return the first ``n``.

        ``n=0`` returns ``()`` at once.  With ``direction="sent"`` it waits for
        the server's own: the server records one once its send has returned, on
        its thread, which may be after a blocking client has read it.

        Raises:
            TypeError: ``n`` is not an int.
            ValueError: ``n`` < 0, ``direction`` neither "received" nor "sent",
                or a bad timeout.
            TimeoutError: fewer arrived in time, or the server closed with fewer
                (then at once); the message lists those that did.
        """
        return self._run(
            self._server.wait_for_datagrams(n, direction=direction, timeout=_timeout_here(timeout))
        )


@typing.final
class UDPServerThread(_DatagramThreadMixin[UDPServer], _HostThreadMixin[UDPServer]):
    """A `UDPServer` on a background thread's loop, for blocking clients.

    Example::

        with nettest.UDPServerThread(nettest.handlers.echo) as server:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"ping", server.address)
                assert sock.recv(100) == b"ping"
    """

    def __init__(
        self,
        handler: Handler | DatagramProtocolFactory | DatagramReply = echo,
        **options: Unpack[_UDPOptions],
    ) -> None:
        super().__init__(UDPServer(handler, **options))

    @property
    def address(self) -> tuple[str, int]:
        """The address to send to, ``(host, port)`` (``(group, port)`` for multicast)."""
        return self._server.address


@typing.final
class UnixDatagramServerThread(
    _DatagramThreadMixin[UnixDatagramServer], _UnixPathThreadMixin[UnixDatagramServer]
):
    """A `UnixDatagramServer` on a background thread's loop, for blocking clients.

    Such as ``logging.handlers.SysLogHandler`` given the server's path.

    Example::

        with nettest.UnixDatagramServerThread(nettest.handlers.sink) as server:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"hello", server.path)
            assert server.wait_for_datagrams(1)[0].data == b"hello"
    """

    def __init__(
        self,
        handler: Handler | DatagramProtocolFactory | DatagramReply = echo,
        **options: Unpack[_UnixDatagramOptions],
    ) -> None:
        super().__init__(UnixDatagramServer(handler, **options))


# -- fixtures -------------------------------------------------------------------


class TCPServerThreadFactory(typing.Protocol):
    """The type of ``tcp_server_thread``: ``server = tcp_server_thread(handler, **options)``."""

    def __call__(
        self,
        handler: Handler | StreamHandler | ProtocolFactory = ...,
        **options: Unpack[_TCPOptions],
    ) -> TCPServerThread: ...


class UnixServerThreadFactory(typing.Protocol):
    """The type of ``unix_server_thread``: ``server = unix_server_thread(handler)``."""

    def __call__(
        self,
        handler: Handler | StreamHandler | ProtocolFactory = ...,
        **options: Unpack[_UnixOptions],
    ) -> UnixServerThread: ...


class UDPServerThreadFactory(typing.Protocol):
    """The type of ``udp_server_thread``: ``server = udp_server_thread(handler)``."""

    def __call__(
        self,
        handler: Handler | DatagramProtocolFactory | DatagramReply = ...,
        **options: Unpack[_UDPOptions],
    ) -> UDPServerThread: ...


class UnixDatagramServerThreadFactory(typing.Protocol):
    """The type of ``unix_datagram_server_thread``: ``server = unix_datagram_server_thread(h)``."""

    def __call__(
        self,
        handler: Handler | DatagramProtocolFactory | DatagramReply = ...,
        **options: Unpack[_UnixDatagramOptions],
    ) -> UnixDatagramServerThread: ...


class _SyncFactory:
    def __init__(
        self, make: type[_ThreadedServer[Any]], name: str, request: pytest.FixtureRequest
    ) -> None:
        self._make = make
        self._name = name
        self._request = request
        self._servers: list[_ThreadedServer[Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        server = self._make(*args, **kwargs)
        try:
            server.start()
        except NoIPv6LoopbackError as exc:
            pytest.skip(str(exc))
        self._servers.append(server)
        report_transcript_of(self._request.node, server)
        return server

    def close(self) -> None:
        """Close every server, last started first; raise what they raised (see `raise_all`)."""
        __tracebackhide__ = True  # the handlers' errors are the report, not these frames
        errors: list[Exception] = []
        for server in reversed(self._servers):
            try:
                server.close()
            except Exception as exc:
                errors.append(exc)
        raise_all(errors[::-1], self._name)


@pytest.fixture
def tcp_server_thread(request: pytest.FixtureRequest) -> Iterator[TCPServerThreadFactory]:
    """Start TCP servers on a background thread for blocking clients: ``tcp_server_thread(h)``.

    Same arguments and recordings as ``tcp_server``; waits block.  Each server is
    closed and its thread joined at teardown, which raises handler errors.
    """
    __tracebackhide__ = True  # the handlers' errors are the report, not these frames
    factory = _SyncFactory(TCPServerThread, "tcp_server_thread", request)
    yield typing.cast("TCPServerThreadFactory", factory)
    factory.close()


@pytest.fixture
def unix_server_thread(request: pytest.FixtureRequest) -> Iterator[UnixServerThreadFactory]:
    """Start Unix socket servers on a background thread for blocking clients.

    Same arguments and recordings as ``unix_server``; closed and joined at teardown.
    """
    __tracebackhide__ = True  # the handlers' errors are the report, not these frames
    factory = _SyncFactory(UnixServerThread, "unix_server_thread", request)
    yield typing.cast("UnixServerThreadFactory", factory)
    factory.close()


@pytest.fixture
def udp_server_thread(request: pytest.FixtureRequest) -> Iterator[UDPServerThreadFactory]:
    """Start UDP servers on a background thread for blocking clients: ``udp_server_thread(h)``.

    Same arguments and recordings as ``udp_server``; closed and joined at teardown.
    """
    __tracebackhide__ = True  # the handlers' errors are the report, not these frames
    factory = _SyncFactory(UDPServerThread, "udp_server_thread", request)
    yield typing.cast("UDPServerThreadFactory", factory)
    factory.close()


@pytest.fixture
def unix_datagram_server_thread(
    request: pytest.FixtureRequest,
) -> Iterator[UnixDatagramServerThreadFactory]:
    """Start Unix datagram servers on a background thread for blocking clients.

    Same arguments and recordings as ``unix_datagram_server``; closed and joined
    at teardown, which removes the socket file.
    """
    __tracebackhide__ = True  # the handlers' errors are the report, not these frames
    factory = _SyncFactory(UnixDatagramServerThread, "unix_datagram_server_thread", request)
    yield typing.cast("UnixDatagramServerThreadFactory", factory)
    factory.close()
