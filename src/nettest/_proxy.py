"""`FaultProxy`: real loopback sockets in front of an upstream, driving the fault schedules.

Theory of operation
-------------------
The proxy listens on loopback.  For TCP, each accepted connection gets a
`StreamSchedule` (see `nettest._fault_engine_stream`) and a connection to the upstream,
and `nettest._proxy_tcp` carries out the schedule's actions on the two real
sockets: delays on the loop's clock, real resets (an RST from the kernel), and
end-to-end flow control, so that a `Bandwidth` cap or a `Stall` pushes back on
the real sender as a slow link would.

For UDP (`nettest._proxy_udp`), each client address is a flow with its own
`DatagramSchedule` and its own connected socket to the upstream, so replies
find their way back.

Taking the proxy ``down()`` closes its listening socket: new TCP connections
are refused by the kernel and UDP clients get ICMP "port unreachable", as with a
real dead server.  ``up()`` binds the same address again.  On a UDP proxy
`Unreachable` closes the port too, for as long as it is in force: the two are
separate reasons, and the port is open only while neither holds.  Asked for port
0, the proxy binds a port below the kernel's ephemeral range (on Linux), so that
while it is closed no client's connect() can bind its own socket to it and
connect to itself (see `nettest._proxy_sockets._bind_port`).

Everything the proxy opens is registered with the hygiene gate and closed by
`FaultProxy.aclose`.  This module also holds the ``fault_proxy`` fixture; the
``nettest proxy`` command is `nettest._proxy_cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import socket
import sys
import typing
import warnings
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal, Protocol

import pytest
import pytest_asyncio

from ._blackhole import unanswered_listener
from ._fault_backend import FaultsInForce

# Imported at run time although only annotations use it: autodoc evaluates the
# annotations of FaultProxy's attributes, and one name it cannot resolve makes it
# show every one of them unresolved (``Kind`` instead of ``Literal['tcp', 'udp']``).
from ._fault_trace import TRACES_SHOWN, ConnectionTrace
from ._faults import Fault, Unreachable, check_faults
from ._hygiene import dropped_open, made_for, parts_of, track, tracked_as
from ._proxy_sockets import (
    Address,
    Kind,
    _bind_port,
    _cancel,
    _check_port,
    _format_address,
    _parse_upstream,
    _pending,
    _reset,
)
from ._proxy_tcp import _Side, _StreamConnection
from ._proxy_udp import _Listen, _UpstreamFlow
from ._recording import format_address
from ._seed import check_seed
from ._server_base import (
    AsyncServerFactory,
    NoIPv6LoopbackError,
    _closed_on_error,
    _loop_thread_call,
    _loopback_socket,
    _LoopbackServer,
    _UnixPath,
    check_bool,
    check_host,
    close_transports_after_their_loop,
    has_ipv6_loopback,
)
from ._settings import default_timeout

__all__ = ["FaultProxy", "FaultProxyFactory", "fault_proxy", "format_traces_for"]

#: Room for bursts of connections: many concurrent clients are the point of a load test.
_BACKLOG = 1024

#: From 3.13 asyncio removes a Unix server's socket file as it closes; the proxy's
#: stays while it is down, so that clients are refused as by a server that died.
_KEEP_SOCKET_FILE: dict[str, Any] = {}
if sys.version_info >= (3, 13):
    _KEEP_SOCKET_FILE["cleanup_socket"] = False


class _UnixListenPath(_UnixPath):
    """Where a proxy made with *unix* listens: a path, or a fresh private directory."""

    _socket_type = socket.SOCK_STREAM
    _rcvbuf = None
    _sndbuf = None

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self._init_unix_path(path, abstract=False)

    def listener(self, backlog: int | None) -> socket.socket:
        """Bind (again, at the same path) and listen, unless *backlog* is None.

        Bound and not listening, a socket refuses connections as a dead
        server's path does, and keeps the file's inode the proxy's: closed,
        another program could bind a new file there, with the same inode, that
        the proxy would take for its own and remove.
        """
        self._unbind()
        sock = self._make_socket()
        with _closed_on_error(sock):
            if backlog is not None:
                sock.listen(backlog)
            sock.setblocking(False)
        return sock


def _unix_listen_path(
    unix: bool | str | pathlib.Path, kind: Kind, host: str, port: int, allow_remote: bool
) -> _UnixListenPath | None:
    """Check *unix* (see `FaultProxy`) and say where the proxy listens, or None for host:port."""
    if unix is False:
        return None
    if not isinstance(unix, (bool, str, os.PathLike)):
        raise TypeError(f"unix must be a bool or a path (str or os.PathLike), got {unix!r}")
    path: str | bytes = "" if isinstance(unix, bool) else os.fspath(unix)
    if not isinstance(unix, bool) and not path:
        raise ValueError("unix must not be an empty path: pass True for a private temporary one")
    if isinstance(path, str) and "\0" in path:
        raise ValueError(
            f"unix must be a path without a null byte, got {path!r}: the proxy listens on a "
            "file, not on an abstract name"
        )
    if kind != "tcp":
        raise ValueError(
            "unix: a proxy listens on a Unix stream socket for TCP only; a UDP proxy "
            "listens on host and port"
        )
    if (host, port, allow_remote) != ("127.0.0.1", 0, False):
        raise ValueError(
            "give unix, or host, port and allow_remote, not both: a proxy listens on one address"
        )
    try:
        return _UnixListenPath(None if isinstance(unix, bool) else unix)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"unix: {exc}") from None


def _kind_for(upstream: object, kind: object) -> Kind:
    """The proxy's kind: as given, or a nettest UDP server's ("tcp" for anything else)."""
    from ._threads import UDPServerThread
    from ._udp import UDPServer, UnixDatagramServer

    if isinstance(upstream, UnixDatagramServer):
        raise ValueError(
            f"upstream is a Unix datagram server ({upstream!r}): a proxy forwards TCP "
            "to a (host, port) or a Unix stream socket, and UDP to a (host, port)"
        )
    datagram = isinstance(upstream, (UDPServer, UDPServerThread))
    if kind is None:
        return "udp" if datagram else "tcp"
    if kind not in ("tcp", "udp"):
        raise ValueError(f"kind must be 'tcp' or 'udp', got {kind!r}")
    if datagram and kind != "udp":
        raise ValueError(f"upstream is a UDP server ({upstream!r}): pass kind='udp', or no kind")
    return kind


def _check_faults(kind: Kind, faults: Iterable[Fault]) -> tuple[Fault, ...]:
    needed = "stream" if kind == "tcp" else "datagram"
    hint = " (kind='udp' makes a UDP proxy)" if kind == "tcp" else ""
    result = check_faults(
        faults, needed, lambda fault: f"{fault!r} does not apply to a {kind.upper()} proxy{hint}"
    )
    for fault in result:
        if isinstance(fault, Unreachable) and (
            fault.trigger is not None or fault.probability != 1 or fault.direction != "upstream"
        ):
            # Only the kernel sends ICMP: the proxy can close its port, not forge replies.
            raise ValueError(
                "a proxy makes Unreachable() real by closing its port while the fault is "
                "in force; trigger, probability and direction do not apply "
                "(memory datagram pairs support them)"
            )
    return result


@typing.final
class FaultProxy(FaultsInForce):
    """An in-process loopback proxy that injects faults into real TCP or UDP traffic.

    Put it between a client and any server on loopback, hand the client
    `address`, and add faults before or during the test.  Every connection is
    traced (see `traces`); with the ``fault_proxy`` fixture the traces and the
    seed are printed when a test fails.  Usually you get a proxy from the
    ``fault_proxy`` fixture; outside pytest use it as an async context manager.

    Args:
        upstream: Where to forward: ``(host, port)``, ``"host:port"``, the path
            of a Unix socket (TCP proxies only) or any object with an ``address``
            (such as a nettest server).
        faults: Faults in force from the first connection on.
        kind: ``"tcp"`` or ``"udp"``.  By default ``"udp"`` in front of a
            nettest `~nettest.UDPServer` (or its thread-backed twin), else ``"tcp"``.
        seed: Seeds every random choice, an int in [0, 2**64); the same seed and
            traffic give the same faults.
        host: The address to listen on: a literal loopback address unless
            *allow_remote* (``0.0.0.0`` would let other machines in).
        port: The port to listen on (0: a free port, bound once and kept; on
            Linux one below the ephemeral range, see `port`).
        allow_remote: Allow a *host* that is not loopback.
        unix: Listen on a Unix stream socket instead of *host* and *port*
            (TCP proxies only): ``True`` for ``s`` in a fresh private directory,
            or the path to bind.  Clients connect to `~FaultProxy.path`; the file is
            removed when the proxy closes.

    Raises:
        ValueError: An unknown kind, a fault that does not apply to it, an
            upstream no proxy of the kind can reach (a Unix socket path for UDP,
            a nettest Unix datagram server for either), a port out of 0..65535,
            a *host* that is not a literal loopback address (without
            *allow_remote*), a *seed* outside [0, 2**64), or *unix* for UDP,
            with *host* or *port*, or with a path too long for ``sun_path``.
        TypeError: A *host*, *port*, *seed* or *unix* of the wrong type.

    Example::

        async with FaultProxy(server.address, faults=[Latency(0.1)]) as proxy:
            reader, writer = await asyncio.open_connection(*proxy.address)
    """

    #: The hygiene gate's entry, for `dropped_open` from ``__del__``.
    _gate_entry: object = None

    def __init__(
        self,
        upstream: object,
        *,
        faults: Iterable[Fault] = (),
        kind: Literal["tcp", "udp"] | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        unix: bool | str | pathlib.Path = False,
    ) -> None:
        check_host(host, allow_remote=allow_remote)
        kind = _kind_for(upstream, kind)
        #: ``"tcp"`` or ``"udp"``.
        self.kind: Kind = kind
        #: Where traffic is forwarded, ``(host, port)`` or a Unix socket path.
        self.upstream: Address | str = _parse_upstream(upstream, kind)
        # A nettest server given as upstream: `start` checks that its loop runs.
        self._upstream_server = upstream if isinstance(upstream, _LoopbackServer) else None
        #: The seed of every random choice the proxy makes.
        self.seed = check_seed(seed)
        self._faults = _check_faults(kind, faults)
        self._host = host
        self._port = _check_port(port, "port")
        self._unix = _unix_listen_path(unix, kind, host, port, allow_remote)
        self._address: Address | None = None
        self._server: asyncio.Server | None = None
        # A TCP listener being started (bound and listening, create_server() not
        # yet returned), and the future done once it has started or been dropped.
        self._starting: asyncio.Future[None] | None = None
        self._listen_protocol: _Listen | None = None
        self._connections: set[_StreamConnection] = set()
        self._sides: list[_Side] = []
        self._flows: dict[tuple[Any, ...], _UpstreamFlow] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._udp_errors: list[str] = []
        self._count = 0
        # The port is bound (and read, or about to be).
        self._up = False
        # Closed by down() until up(); and (UDP) Unreachable() in force.  The port
        # is open only while neither holds, whichever order they come in.
        self._down = False
        self._unreachable = False
        # While down(refuse=False): the sockets that hold the port without answering.
        self._silent: tuple[socket.socket, ...] = ()
        self._port_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        #: Done once the first `aclose` has finished: a second one waits for it.
        self._aclosed: asyncio.Future[None] | None = None
        #: The loop it runs on, once started (a thread's, for `FaultProxyThread`).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_connection: Callable[[ConnectionTrace], None] | None = None
        # Told why a connection's (or a UDP client's) upstream could not be reached.
        self._on_upstream_failure: Callable[[ConnectionTrace, str], None] | None = None
        #: One trace per connection (TCP) or client address (UDP), in order.
        self.traces: list[ConnectionTrace] = []

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        """Bind and start listening; return the proxy.

        Raises:
            RuntimeError: The proxy was already started, or its upstream is a
                nettest server on an event loop that is not running.
            OSError: It could not bind its address.
        """
        if self._started:
            raise RuntimeError("FaultProxy.start() was already called")
        if self._closed:
            raise RuntimeError("the proxy is closed")
        self._started = True
        if self._unix is None and ":" in self._host and not has_ipv6_loopback():
            self._closed = True
            raise NoIPv6LoopbackError(
                f"IPv6 loopback ::1 is not available on this host (host={self._host!r})"
            )
        self._check_upstream_loop()
        self._loop = asyncio.get_running_loop()
        upstream = _format_address(self.upstream)
        track(self, what=f"FaultProxy -> {upstream}", is_open=_proxy_open, close=_proxy_abort)
        try:
            await self._listen()
        except BaseException:
            await self.aclose()  # a proxy that could not listen is not left open
            raise
        self._sync_port()
        tracked_as(self, f"FaultProxy {self.kind} {self._where()} -> {upstream}")
        return self

    def _sync_port(self) -> None:
        """Close the UDP port while `Unreachable` is in force, and bind it again after.

        Both happen before the call that changed the faults returns, so the next
        datagram a client sends meets the port in its new state.  Datagrams that
        reached the port before it closed are forwarded, under the faults in force
        until then: the fault counts from the moment it was added.

        The port stays closed while the proxy is `down`, whatever the faults.

        Raises:
            OSError: Another socket took the port while it was closed; the proxy
                stays down, and `up` tries again.
        """
        unreachable = any(isinstance(fault, Unreachable) for fault in self._faults)
        if unreachable == self._unreachable:
            return
        self._unreachable = unreachable
        listen = self._listen_protocol
        if not unreachable:
            if not self._up and not self._down:
                try:
                    self._bind_udp()
                except OSError:
                    self._down = True  # until up() succeeds
                    raise
        elif self._up and listen is not None:
            # Only start() and add() bring Unreachable in, so the faults in force
            # before were the others.
            before = tuple(f for f in self._faults if not isinstance(f, Unreachable))
            for data, addr in listen.take_queued():
                self._datagram_from_client(data, addr, before)
            self._stop_listening()

    def _check_upstream_loop(self) -> None:
        """Refuse a nettest server upstream whose loop does not run while this proxy's does.

        A module-scoped server's loop is idle while a function-scoped test's
        runs: every connection would wait for ever for the server to accept it.
        A thread server's loop runs in its thread, and is fine.
        """
        server = self._upstream_server
        if server is None or server._loop is None:
            return
        loop = server._loop
        if loop is not asyncio.get_running_loop() and not loop.is_running():
            self._closed = True
            raise RuntimeError(
                f"upstream {server._name} runs on another event loop, which does not run "
                "while the proxy's does: its connections would never be accepted; start "
                "the proxy on the server's loop (check the fixture's and the test's "
                "loop_scope), or use a thread server"
            )

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        if self._unix is not None:
            unix = self._unix
            with made_for(self):  # the proxy's, whichever test calls up()
                sock = unix.listener(_BACKLOG)
            self._listening(None)
            await self._serve(
                sock,
                lambda: loop.create_unix_server(
                    self._new_client, sock=sock, backlog=_BACKLOG, **_KEEP_SOCKET_FILE
                ),
            )
        elif self.kind == "tcp":

            def listener(port: int) -> socket.socket:
                # IPPROTO_TCP, as _loopback_socket's: asyncio then turns Nagle off on
                # the connections it accepts.
                sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                with _closed_on_error(sock):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((self._host, port))
                    sock.listen(_BACKLOG)
                    sock.setblocking(False)
                return sock

            # Port 0 only the first time: `_listening` keeps the port bound then.
            # The proxy's, whichever test calls up().
            with made_for(self):
                sock = _bind_port(self._port, listener)
            self._listening(sock.getsockname())
            # create_server() calls listen() again: give it the same backlog.
            await self._serve(
                sock, lambda: loop.create_server(self._new_client, sock=sock, backlog=_BACKLOG)
            )
        else:
            await self._read_port(self._bind_udp().attaching)

    async def _serve(
        self, sock: socket.socket, create: Callable[[], typing.Awaitable[asyncio.Server]]
    ) -> None:
        """Serve the listening *sock* with the server *create* makes.

        Up from the moment *sock* listens: the kernel takes connections into the
        backlog.  While *create* runs, down(), aclose() and up() in other tasks see it.
        """
        loop = asyncio.get_running_loop()
        starting = self._starting = loop.create_future()
        try:
            server = await create()
        except BaseException:
            sock.close()
            if self._starting is starting:
                self._starting = None
                self._up = False
            raise
        finally:
            if not starting.done():
                starting.set_result(None)
        if self._starting is not starting:
            server.close()  # down() or aclose() came meanwhile: it stays closed
            return
        self._starting = None
        self._server = server
        track(
            server,
            what=f"FaultProxy listener {format_address(sock.getsockname())}",
            is_open=lambda s: s.is_serving(),
            close=lambda s: s.close(),
            on_behalf_of=self,
        )
        # Its own: a report of the proxy speaks for them.
        parts_of(self, sock, server)

    async def _read_port(self, attaching: asyncio.Task[None]) -> None:
        """Wait until the UDP port is read, or closed again meanwhile.

        `down`, `aclose` or ``add(Unreachable())`` in another task close the port
        and cancel *attaching*: that is the port's new state, not a cancellation
        of this task, so it returns.  Cancelling this task leaves *attaching* alone.
        """
        if not attaching.done():
            await asyncio.wait([attaching])
        if not attaching.cancelled():
            attaching.result()  # listening failed: raise why

    def _listening(self, name: tuple[Any, ...] | None) -> None:
        """The proxy is up, on *name* (None: on its Unix socket path)."""
        if name is not None:
            self._address = (name[0], name[1])
            # Bind the same port again after down()/up().
            self._port = name[1]
        self._up = True
        self._down = False

    def _bind_udp(self) -> _Listen:
        """Bind the UDP port now; a task starts reading it (`_Listen.attaching`)."""
        with made_for(self):  # the proxy's, whichever test calls up()
            listen = _Listen.bind(self, self._host, self._port)
        self._listen_protocol = listen
        task = self._port_task = listen.attaching
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        track(
            task,
            what="FaultProxy UDP listener start",
            is_open=_pending,
            close=_cancel,
            on_behalf_of=self,
        )
        parts_of(self, listen.sock)
        self._listening(listen.sock.getsockname())
        return listen

    @property
    def address(self) -> Address:
        """``(host, port)`` to give the client instead of the upstream's address."""
        if self._unix is not None:
            raise RuntimeError(
                "the proxy listens on a Unix socket, not on a host and port: give the "
                "client proxy.path"
            )
        if self._address is None:
            raise RuntimeError("the proxy is not started: await proxy.start() first")
        return self._address

    @property
    def path(self) -> str:
        """The Unix socket path to give the client, for a proxy made with *unix*.

        As given: a relative path is relative to the directory the proxy started
        in, where it stays bound after a ``chdir()``.
        """
        if self._unix is None:
            raise RuntimeError(
                "the proxy listens on a host and port (proxy.address), not on a Unix "
                "socket: pass unix=True for one"
            )
        if not self._unix.path:
            raise RuntimeError("the proxy is not started: await proxy.start() first")
        return self._unix.path

    def _where(self) -> str:
        """Where the proxy listens, for people: ``127.0.0.1:8080`` or a path."""
        if self._unix is not None:
            return format_address(self._unix.path) if self._unix.path else "not started"
        return f"{self._address[0]}:{self._address[1]}" if self._address else "not started"

    @property
    def host(self) -> str:
        """The address the proxy listens on, ``address[0]``."""
        return str(self.address[0])

    @property
    def port(self) -> int:
        """The port the proxy listens on, ``address[1]``, the same after `down` and `up`.

        For a client given a host name (see ``fake_resolver``) and a port.  Unless
        you chose it, it is below the kernel's ephemeral range on Linux (under
        ``net.ipv4.ip_local_port_range``): while the port is closed (see `down`),
        a client's connect() cannot bind the client's own socket to it, which
        would connect the client to itself instead of being refused.  Elsewhere,
        or if no port there is free, the kernel picks it.
        """
        return int(self.address[1])

    @property
    def closed(self) -> bool:
        """True once `aclose` was called."""
        return self._closed

    @property
    def is_up(self) -> bool:
        """Whether the port is open; it is closed while the proxy is down, or while
        `~nettest.faults.Unreachable` is in force (see `down`)."""
        return self._up

    async def aclose(self) -> None:
        """Stop listening, close every connection and socket; idempotent.

        A call made while another is closing the proxy returns once it has.
        """
        if self._aclosed is not None:
            await asyncio.shield(self._aclosed)
            return
        if self._closed:
            return
        self._aclosed = asyncio.get_running_loop().create_future()
        try:
            await self._close_and_wait()
        finally:
            if not self._aclosed.done():
                self._aclosed.set_result(None)

    async def _close_and_wait(self) -> None:
        try:
            await self._let_accepted_attach()
        except BaseException:  # cancelled: close all the same, not wait
            if not self.closed:
                self._abort_now()
            raise
        if self.closed:  # closed meanwhile, not by aclose() (the hygiene gate)
            return
        starting = self._starting
        self._abort_now()
        waits: list[asyncio.Future[Any]] = [s.lost for s in self._sides]
        if starting is not None:
            waits.append(starting)
        waits += [f.lost for f in self._flows.values()]
        waits += list(self._tasks)
        if self._listen_protocol is not None:
            waits.append(self._listen_protocol.lost)
        if waits:
            await asyncio.wait(waits, timeout=default_timeout())
        self._sides.clear()

    async def _let_accepted_attach(self) -> None:
        """Stop accepting, and let the connections the loop has accepted reach the proxy.

        asyncio's selector loop accepts in a reader callback and makes each
        transport in a task an iteration later, which fails against a closed
        server and leaves the accepted socket to warn unclosed; the reader goes
        first, and one iteration lets those tasks run (as the servers' teardown).
        """
        server = self._server
        loop = asyncio.get_running_loop()
        if server is None or not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
            return
        for sock in server.sockets:
            loop.remove_reader(sock.fileno())
        await asyncio.sleep(0)

    def _abort_now(self) -> None:
        """Close everything at once; `aclose` then waits, the hygiene gate does not."""
        self._closed = True
        self._stop_listening()
        if self._unix is not None:
            self._unix._cleanup()
        for conn in list(self._connections):
            conn.abort()
        for side in self._sides:  # including connections still closing gracefully
            if side.transport is not None:
                side.transport.abort()
        for flow in self._flows.values():
            flow.close()
        for task in list(self._tasks):
            task.cancel()

    def _close_after_its_loop(self) -> None:
        """Close the proxy's sockets after its event loop has closed.

        Nothing can run on a closed loop (a test that ran its own, say), so the
        transports cannot close: their sockets are closed under them, and they
        are left closed (as the servers' are).
        """
        self._closed = True
        transports: list[asyncio.BaseTransport | None] = [side.transport for side in self._sides]
        transports += [flow.transport for flow in self._flows.values()]
        if self._listen_protocol is not None:
            transports.append(self._listen_protocol.transport)
        for transport in transports:
            if transport is not None:
                close_transports_after_their_loop([transport])
        # Closing a listener needs no loop; waking what waits on it would.
        with contextlib.suppress(RuntimeError):
            self._stop_listening()
        if self._unix is not None:
            self._unix._cleanup()

    def _stop_listening(self) -> None:
        self._up = False
        self._stop_silence()
        # A listener still starting closes itself when create_server() returns.
        self._starting = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._listen_protocol is not None:
            self._listen_protocol.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        # dropped_open(): unless the gate reports it.
        if (
            getattr(self, "_started", False)
            and not getattr(self, "_closed", True)
            and not dropped_open(self)
        ):
            _warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("up" if self._up else "down")
        upstream = _format_address(self.upstream)
        return f"<FaultProxy {self.kind} {self._where()} -> {upstream} {state}>"

    # -- down and up ---------------------------------------------------------------------

    async def down(self, *, refuse: bool = True) -> None:
        """Close the listening socket: new connections fail until `up`.

        With *refuse* (the default), TCP clients get `ConnectionRefusedError` from
        the kernel, and UDP clients on connected sockets get
        ``error_received(ConnectionRefusedError)``.  With ``refuse=False`` the
        port gets no answer at all, as from a host that is down or firewalled:
        a TCP connect hangs until the client's own timeout (the port listens with
        its accept queue full, so the kernel drops the SYNs, see
        `~nettest.BlackholePort`), and datagrams vanish.  A TCP client still
        trying when `up` comes connects on its next SYN, a second or more later.

        Connections already open are left alone (for a server that restarts,
        ``add`` and ``remove`` a ``Reset(direction="both")`` to reset them).  Removing
        `~nettest.faults.Unreachable` does not open the port of a proxy that is
        down.  Calling ``down`` again switches between the two ways.  On Linux no
        client's socket can take the closed port meanwhile (see `port`).

        On a Unix socket (*unix*) the proxy keeps its path while it is down: a
        socket bound there and not listening refuses connections, and with
        ``refuse=False`` one listening and never accepting queues them unanswered.

        Raises:
            TypeError: *refuse* is not a bool.
            OSError: on a Unix socket, another program took the path; the proxy
                stays down, and `up` tries again.
        """
        check_bool("refuse", refuse)
        self._check_open()
        self._down = True
        if self._up:
            listen = self._listen_protocol
            starting = self._starting
            self._stop_listening()
            if listen is not None:
                await asyncio.wait_for(asyncio.shield(listen.lost), default_timeout())
            if starting is not None:  # it closes itself as it finishes starting
                await asyncio.wait([starting], timeout=default_timeout())
        self._stop_silence()
        if self._down and not self._up and not self._closed:
            if not refuse:
                self._hold_silent()
            elif self._unix is not None:
                with made_for(self):
                    self._silent = (self._unix.listener(None),)  # refuses, see listener()
                parts_of(self, *self._silent)

    def _hold_silent(self) -> None:
        """Hold the port without answering: TCP SYNs dropped, datagrams never read."""
        with made_for(self):  # the proxy's, whichever test calls down()
            if self._unix is not None:
                # No SYN to drop: connects are queued, as to a server that hangs.
                self._silent = (self._unix.listener(_BACKLOG),)
            elif self.kind == "tcp":
                self._silent = unanswered_listener(self._host, self._port)
            else:
                family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
                sock = _loopback_socket(
                    family, socket.SOCK_DGRAM, self._host, has_ipv6=has_ipv6_loopback
                )
                with _closed_on_error(sock):
                    sock.bind((self._host, self._port))
                self._silent = (sock,)
        parts_of(self, *self._silent)

    def _stop_silence(self) -> None:
        silent, self._silent = self._silent, ()
        for sock in silent:
            sock.close()

    async def up(self) -> None:
        """Listen again on the same address after `down`.

        While `~nettest.faults.Unreachable` is in force on a UDP proxy the port
        stays closed; it opens when the fault is removed.  A UDP port that
        removing `~nettest.faults.Unreachable` bound again is taken at once, and
        datagrams wait in its buffer; ``up()`` returns once the proxy reads them,
        or once the port is closed again meanwhile (by ``add(Unreachable())`` or
        `down` in another task).

        Raises:
            OSError: Another socket took the port meanwhile; the proxy stays down.
        """
        self._check_open()
        self._stop_silence()
        if self._unreachable:
            self._down = False
            return
        if not self._up:
            await self._listen()
        elif self._starting is not None:  # another up() is starting the listener
            await asyncio.wait([self._starting])
        elif self._port_task is not None and not self._port_task.done():
            await self._read_port(self._port_task)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the proxy is closed")
        if not self._started:
            raise RuntimeError("the proxy is not started: await proxy.start() first")

    # -- faults (`faults`, `add`, `remove` and `clear` come from FaultsInForce) ---------

    def _check(self, faults: Iterable[Fault]) -> tuple[Fault, ...]:
        return _check_faults(self.kind, faults)

    def _faults_changed(self, faults: tuple[Fault, ...]) -> None:
        try:
            if self._started and not self._closed:
                self._sync_port()
        finally:
            for conn in list(self._connections):
                conn.update(faults)
            for flow in list(self._flows.values()):
                flow.apply(flow.schedule.update(faults, flow.loop.time()))

    # -- traces ------------------------------------------------------------------------

    def format_traces(self) -> str:
        """Return the seed and every connection's trace as text."""
        return self._format_traces(shown=len(self.traces))

    def _format_traces(self, *, shown: int) -> str:
        # The failure report shows the last `shown` connections: those nearest the failure.
        lines = [f"{self!r} seed={self.seed} faults={list(self._faults)}"]
        if self._udp_errors:
            lines.append(f"  listener errors: {', '.join(self._udp_errors[:10])}")
        if not self.traces:
            lines.append("  (no connections)")
        earlier = len(self.traces) - shown
        if earlier > 0:
            lines.append(
                f"  ... {earlier} earlier connections not shown (the last {shown} follow; "
                "FaultProxy.traces holds them all)"
            )
        lines.extend(str(trace) for trace in self.traces[max(earlier, 0) :])
        return "\n".join(lines)

    # -- internals -----------------------------------------------------------------------

    def _new_client(self) -> _Side:
        side = _Side(self, "client")
        self._sides.append(side)
        return side

    def _accepted(self, side: _Side) -> None:
        if self._closed:
            _reset(side.transport)
            return
        self._count += 1
        conn = _StreamConnection(self, side, self._count)
        side.conn = conn
        self.traces.append(conn.trace)
        self._connections.add(conn)
        if self._on_connection is not None:
            self._on_connection(conn.trace)
        # Start on the next callback, after the transport has added its reader:
        # before 3.12, pause_reading() inside connection_made() did not stick.
        asyncio.get_running_loop().call_soon(conn.start)

    def _finished(self, conn: _StreamConnection) -> None:
        self._connections.discard(conn)
        if len(self._sides) > 64:
            self._sides = [s for s in self._sides if not s.lost.done()]

    def _datagram_from_client(
        self, data: bytes, addr: tuple[Any, ...], faults: tuple[Fault, ...] | None = None
    ) -> None:
        """Forward a client's datagram; a new client's flow starts with `faults` if given."""
        if self._closed:
            return
        flow = self._flows.get(addr)
        if flow is None:
            self._count += 1
            flow = _UpstreamFlow(self, addr, self._count, faults)
            self._flows[addr] = flow
            self.traces.append(flow.trace)
            if self._on_connection is not None:
                self._on_connection(flow.trace)
            task = asyncio.get_running_loop().create_task(self._connect_flow(flow))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            track(
                task,
                what="FaultProxy UDP connect task",
                is_open=_pending,
                close=_cancel,
                on_behalf_of=self,
            )
        flow.from_client(data)

    async def _connect_flow(self, flow: _UpstreamFlow) -> None:
        loop = asyncio.get_running_loop()
        upstream = self.upstream
        assert not isinstance(upstream, str)  # refused in __init__
        try:
            await flow.connect(upstream)
        except OSError as exc:
            flow.trace._record(loop.time(), "upstream", f"upstream socket failed: {exc!r}")
            if self._on_upstream_failure is not None:
                self._on_upstream_failure(flow.trace, f"upstream socket failed: {exc!r}")
            if not flow.lost.done():
                flow.lost.set_result(None)
            return
        if flow.closed and flow.transport is not None:
            flow.transport.close()


def _proxy_open(proxy: FaultProxy) -> bool:
    return not proxy.closed


def _proxy_abort(proxy: FaultProxy) -> None:
    """The hygiene gate's close: at once, on the proxy's loop (a thread's, maybe)."""
    loop = proxy._loop
    with contextlib.suppress(Exception):
        if loop is not None and loop.is_closed():
            proxy._close_after_its_loop()
        elif loop is not None:
            _loop_thread_call(loop, proxy._abort_now)
        else:
            proxy._abort_now()


# -- the fixture ---------------------------------------------------------------------------


class FaultProxyFactory(Protocol):
    """The type of the ``fault_proxy`` fixture: ``await fault_proxy(upstream=...)``."""

    async def __call__(
        self,
        upstream: object,
        *,
        faults: Iterable[Fault] = (),
        kind: Literal["tcp", "udp"] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        unix: bool | str | pathlib.Path = False,
    ) -> FaultProxy:
        """Start a proxy in front of *upstream*; the fixture closes it after the test.

        *kind* is ``"udp"`` by default in front of a nettest UDP server, else
        ``"tcp"``.  *host* is the loopback address to listen on (``"::1"`` for
        IPv6), *port* its port (0: a free one), and *allow_remote* allows a
        *host* that is not loopback, as for `FaultProxy`; *unix* listens on a
        Unix socket instead (``True``, or a path).
        """
        ...


_PROXIES_KEY = pytest.StashKey[list[FaultProxy]]()


@pytest_asyncio.fixture
async def fault_proxy(
    request: pytest.FixtureRequest, nettest_seed: int
) -> AsyncIterator[FaultProxyFactory]:
    """Start fault-injecting loopback proxies: ``await fault_proxy(upstream=addr, faults=[...])``.

    Each proxy is seeded from `nettest_seed`, closed after the test, and its
    per-connection traces are printed with the seed when the test fails.
    """
    proxies = proxies_of(request.node)

    def fault_proxy(
        upstream: object,
        *,
        faults: Iterable[Fault] = (),
        kind: Literal["tcp", "udp"] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        unix: bool | str | pathlib.Path = False,
    ) -> FaultProxy:
        seed = proxy_seed(nettest_seed, len(proxies))
        proxy = FaultProxy(
            upstream,
            faults=faults,
            kind=kind,
            seed=seed,
            host=host,
            port=port,
            allow_remote=allow_remote,
            unix=unix,
        )
        proxies.append(proxy)
        return proxy

    # Named as the fixture: a wrong argument's TypeError names it.
    fault_proxy.__qualname__ = "fault_proxy"
    # Closes each proxy on the loop it runs on, which is the test's when that is
    # not the fixture's (see `AsyncServerFactory`).
    factory = AsyncServerFactory(request, fault_proxy)
    yield typing.cast("FaultProxyFactory", factory)
    await factory.aclose()


def proxies_of(item: pytest.Item) -> list[FaultProxy]:
    """The proxies a test's fixtures made, in order: their traces go in its failure report."""
    return item.stash.setdefault(_PROXIES_KEY, [])


def proxy_seed(nettest_seed: int, made_before: int) -> int:
    """The seed of a test's next proxy, after `made_before` others (of either fixture)."""
    if not made_before:
        return nettest_seed
    return (nettest_seed * 1_000_003 + made_before) % 2**64


def forget_proxies(item: pytest.Item) -> None:
    """Forget the proxies an earlier run of `item` made (a rerun starts afresh)."""
    if _PROXIES_KEY in item.stash:
        del item.stash[_PROXIES_KEY]


def format_traces_for(item: pytest.Item) -> str | None:
    """Return the traces of the proxies a test used, for its failure report (or None).

    The plugin calls this from ``pytest_runtest_makereport`` for failed tests and
    adds the text as a report section.
    """
    proxies = item.stash.get(_PROXIES_KEY, None)
    if not proxies:
        return None
    return "\n\n".join(proxy._format_traces(shown=TRACES_SHOWN) for proxy in proxies)
