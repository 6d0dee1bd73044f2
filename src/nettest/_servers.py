"""Loopback stream servers (TCP over IPv4/IPv6, Unix, TLS) that record what crossed the wire.

`TCPServer` and `UnixServer` add an address to `_StreamServer` (in
``_stream_server``: accepting, handlers, recordings, waits and the bounded
teardown); the ``tcp_server`` and ``unix_server`` fixtures start them and close
them at teardown, typed by `TCPServerFactory` and `UnixServerFactory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import ssl
import typing
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ._handlers import Handler, ProtocolFactory, StreamHandler, echo
from ._recording import format_address
from ._server_base import (
    UNIX_PATH_MAX as UNIX_PATH_MAX,
)
from ._server_base import (
    AsyncServerFactory,
    _apply_buffers,
    _closed_on_error,
    _LoopbackHost,
    _UnixPath,
    check_bool,
)
from ._server_base import has_ipv6_loopback as has_ipv6_loopback
from ._stream_server import DEFAULT_CLOSE_TIMEOUT, _StreamServer
from ._stream_server import ServerTeardownWarning as ServerTeardownWarning

if typing.TYPE_CHECKING:
    from ._connections import _ConnState

__all__ = [
    "ServerTeardownWarning",
    "TCPServer",
    "TCPServerFactory",
    "UnixServer",
    "UnixServerFactory",
    "has_ipv6_loopback",
]


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
        port: the port to listen on: 0 (default) for a free one the kernel picks;
            a fixed one to share a number with another server (DNS over UDP and
            TCP) or to come back where a closed server was.
        ssl: a server `ssl.SSLContext` to serve TLS.
        handshake_timeout: seconds a TLS handshake may take before the server
            gives up on it (a `HandshakeFailure` with `ConnectionAbortedError`);
            None (default) for nettest's default timeout.  Only with ``ssl``.
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
        ValueError: ``host`` is not a literal loopback address, or a number is out
            of range (``port`` from 0 to 65535; ``close_timeout`` and
            ``handshake_timeout`` must be finite and > 0; ``rcvbuf``,
            ``sndbuf`` and ``backlog`` from 1 to 2147483647).
        OSError: from `start`, when the ``port`` asked for is in use.
        TypeError: ``handler`` is none of the accepted kinds, or a number is of
            the wrong type (a str or a bool, say).

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
        port: int = 0,
        ssl: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
        allow_remote: bool = False,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        nodelay: bool = True,
        reuse_port: bool = False,
        backlog: int = 128,
        limit: int = 2**16,
    ) -> None:
        self._init_host(host, allow_remote=allow_remote, port=port)
        check_bool("nodelay", nodelay)
        self._nodelay = nodelay
        self._init_reuse_port(reuse_port)
        super().__init__(
            handler,
            ssl=ssl,
            handshake_timeout=handshake_timeout,
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
            self._bind_host(sock)
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
        """The ``(host, port)`` to pass as ``asyncio.open_connection(*server.address)``."""
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
            A relative path is bound in the current directory, as ``bind()``
            binds it.
        abstract: listen in the Linux abstract namespace (no path).
        ssl, handshake_timeout, close_timeout, rcvbuf, sndbuf, backlog, limit: as for
            `TCPServer`.

    Raises:
        ValueError: ``path`` is empty, holds a null byte, or is too long (the
            message names the limit), or both ``path`` and ``abstract`` were
            given, or ``abstract`` off Linux.

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
        handshake_timeout: float | None = None,
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
            handshake_timeout=handshake_timeout,
            close_timeout=close_timeout,
            rcvbuf=rcvbuf,
            sndbuf=sndbuf,
            backlog=backlog,
            limit=limit,
        )

    @property
    def address(self) -> str:
        """The same as ``path``, to pass to ``asyncio.open_unix_connection(server.address)``."""
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
        port: int = ...,
        ssl: ssl.SSLContext | None = ...,
        handshake_timeout: float | None = ...,
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
        handshake_timeout: float | None = ...,
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
    __tracebackhide__ = True  # the handlers' errors are the report, not these frames
    factory = AsyncServerFactory(request, TCPServer)
    yield typing.cast("TCPServerFactory", factory)
    await factory.aclose()


@pytest_asyncio.fixture
async def unix_server(request: pytest.FixtureRequest) -> AsyncIterator[UnixServerFactory]:
    """Start Unix socket servers: ``server = await unix_server(handler)``; closed at teardown.

    Each listens in a short private directory (or the abstract namespace) and
    records every connection.
    """
    __tracebackhide__ = True  # the handlers' errors are the report, not these frames
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("Unix sockets are not available on this platform")
    factory = AsyncServerFactory(request, UnixServer)
    yield typing.cast("UnixServerFactory", factory)
    await factory.aclose()
