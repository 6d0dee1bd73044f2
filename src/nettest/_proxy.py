"""`FaultProxy`: real loopback sockets in front of an upstream, driving the fault schedules.

Theory of operation
-------------------
The proxy listens on loopback.  For TCP, each accepted connection gets a
`StreamSchedule` (see `nettest._faults`) and a connection to the upstream.
Bytes read from either socket go into the schedule with ``loop.time()``; the
actions that come out are queued per direction (one FIFO and one timer per
direction, because asyncio's timer heap does not keep equal deadlines in
order) and carried out when due.  Resets are real: ``SO_LINGER(1, 0)`` and
``abort()`` make the kernel send an RST.

Flow control is end to end: the proxy stops reading from a sender when more
than 256 KiB wait for the receiver (in its queue or in the receiver's
transport), and resumes below 64 KiB, so a `Bandwidth` cap or a `Stall`
pushes back on the real sender as a slow link would.

For UDP, each client address is a flow with its own `DatagramSchedule` and
its own connected socket to the upstream, so replies find their way back.

Taking the proxy ``down()`` closes its listening socket: new TCP connections
are refused by the kernel and UDP clients get ICMP "port unreachable", as with a
real dead server.  ``up()`` binds the same address again.

Everything the proxy opens is registered with the hygiene gate and closed by
`FaultProxy.aclose`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import os
import re
import signal
import socket
import struct
import sys
import typing
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import fields
from typing import Any, Literal, Protocol

import pytest
import pytest_asyncio

from . import _faults
from ._faults import (
    Abort,
    Action,
    Close,
    ConnectionTrace,
    DatagramSchedule,
    Deliver,
    Fault,
    Flow,
    Pause,
    RefuseConnection,
    Resume,
    SendEof,
    StreamSchedule,
    Trigger,
    Unreachable,
    UnreachableAction,
    Wake,
)
from ._hygiene import track
from ._settings import default_timeout

__all__ = ["FaultProxy", "FaultProxyFactory", "cli_main", "fault_proxy", "format_traces_for"]

Kind = Literal["tcp", "udp"]
Address = tuple[str, int]

_HIGH = 256 * 1024
#: Room for bursts of connections: many concurrent clients are the point of a load test.
_BACKLOG = 1024
#: Seconds a closing connection waits for its peers' EOF before closing anyway.
_CLOSE_GRACE = 1.0
_LOW = 64 * 1024


def _parse_address(value: object, what: str) -> Address:
    """Accept ``(host, port)``, ``"host:port"`` or an object with an ``address``."""
    address = getattr(value, "address", value)
    if isinstance(address, str):
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{what} must be HOST:PORT, got {address!r}")
        return host.strip("[]") or "127.0.0.1", int(port)
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if isinstance(host, str) and isinstance(port, int):
            return host, port
    raise TypeError(f"{what} must be (host, port), 'host:port' or a server, got {value!r}")


def _parse_upstream(value: object, kind: str) -> Address | str:
    """Like `_parse_address`, but a TCP proxy also accepts a Unix socket path."""
    address = getattr(value, "address", value)
    if isinstance(address, os.PathLike):
        address = os.fspath(address)
    if isinstance(address, str) and address.startswith(("/", "./", "\0")):
        if kind != "tcp":
            raise ValueError(f"a UDP proxy needs a (host, port) upstream, got {address!r}")
        return address
    return _parse_address(value, "upstream")


def _format_address(address: Address | str) -> str:
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


def _reset(transport: asyncio.Transport | None) -> None:
    """Close `transport` with an RST rather than a FIN."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _close_transport(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        transport.close()


def _transport_open(transport: asyncio.BaseTransport) -> bool:
    return not transport.is_closing()


def _abort(transport: asyncio.BaseTransport) -> None:
    with contextlib.suppress(Exception):
        typing.cast("asyncio.Transport", transport).abort()


def _pending(task: asyncio.Future[Any]) -> bool:
    return not task.done()


def _cancel(task: asyncio.Future[Any]) -> None:
    with contextlib.suppress(RuntimeError):
        task.cancel()


def _other(flow: Flow) -> Flow:
    return "downstream" if flow == "upstream" else "upstream"


# -- TCP -------------------------------------------------------------------------------


class _Side(asyncio.Protocol):
    """One of the two sockets of a proxied connection."""

    def __init__(self, proxy: FaultProxy, role: Literal["client", "server"]) -> None:
        self.proxy = proxy
        self.role = role
        self.conn: _StreamConnection | None = None
        self.transport: asyncio.Transport | None = None
        self.eof_seen = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # The flow this side sends into, and the one it receives.
    @property
    def sends(self) -> Flow:
        return "upstream" if self.role == "client" else "downstream"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.Transport", transport)
        # Fewer pause/resume round trips than asyncio's 64 KiB default.
        self.transport.set_write_buffer_limits(high=_HIGH, low=_LOW)
        peer = transport.get_extra_info("peername")
        track(
            transport,
            what=f"FaultProxy {self.role} connection {peer}",
            is_open=_transport_open,
            close=_abort,
        )
        if self.role == "client":
            self.proxy._accepted(self)
        elif self.conn is not None:
            self.conn.server_made(self)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.received(self.sends, data)

    def eof_received(self) -> bool:
        self.eof_seen = True
        if self.conn is not None:
            if self.conn.finished and self.transport is not None:
                self.transport.close()  # the end of a graceful close
            self.conn.eof(self.sends)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.conn is not None:
            self.conn.lost(self, exc)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.pause(_other(self.sends), "write")

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.resume(_other(self.sends), "write")


class _StreamConnection:
    """Drives one `StreamSchedule` with two real sockets."""

    def __init__(self, proxy: FaultProxy, client: _Side, index: int) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.server: _Side | None = None
        assert client.transport is not None
        peer = client.transport.get_extra_info("peername")
        now = self.loop.time()
        self.schedule = StreamSchedule(
            seed=proxy.seed, index=index, now=now, faults=proxy.faults, peer=peer
        )
        self.trace = self.schedule.trace
        self.queues: dict[Flow, collections.deque[Action]] = {
            "upstream": collections.deque(),
            "downstream": collections.deque(),
        }
        self.timers: dict[Flow, asyncio.TimerHandle | None] = {
            "upstream": None,
            "downstream": None,
        }
        self.queued: dict[Flow, int] = {"upstream": 0, "downstream": 0}
        self.paused: dict[Flow, set[str]] = {"upstream": set(), "downstream": set()}
        self.eof_sent: dict[Flow, bool] = {"upstream": False, "downstream": False}
        self.wakes: list[asyncio.TimerHandle] = []
        self.finished = False
        self.connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.finished:
            return
        actions = self.schedule.start(self.loop.time())
        if actions and isinstance(actions[0], RefuseConnection):
            _reset(self.client.transport)
            self.finish()
            return
        self.connecting = self.loop.create_task(self._connect())
        track(
            self.connecting,
            what=f"FaultProxy connect task #{self.schedule.index}",
            is_open=_pending,
            close=_cancel,
        )
        self.apply(actions)

    async def _connect(self) -> None:
        upstream = self.proxy.upstream
        try:
            if isinstance(upstream, str):
                connecting = self.loop.create_unix_connection(self._server_side, upstream)
            else:
                connecting = self.loop.create_connection(self._server_side, *upstream)
            await asyncio.wait_for(connecting, default_timeout())
        except (OSError, asyncio.TimeoutError) as exc:
            if not self.finished:
                where = _format_address(upstream)
                self.trace.record(
                    self.loop.time(), None, f"upstream {where} failed: {exc!r}; client reset"
                )
                _reset(self.client.transport)
                self.finish()

    def _server_side(self) -> _Side:
        side = _Side(self.proxy, "server")
        side.conn = self
        return side

    def server_made(self, side: _Side) -> None:
        if self.finished:
            _reset(side.transport)
            return
        self.server = side
        self.proxy._sides.append(side)
        self.trace.record(self.loop.time(), None, "connected upstream")
        # As in FaultProxy._accepted: pause only once the transport reads.
        self.loop.call_soon(self._server_ready)

    def _server_ready(self) -> None:
        side = self.server
        if self.finished or side is None or side.transport is None:
            return
        if self.paused["downstream"]:
            side.transport.pause_reading()
        self.kick("upstream")

    # -- events from the sockets ----------------------------------------------------

    def received(self, flow: Flow, data: bytes) -> None:
        if not self.finished:
            self.apply(self.schedule.data(flow, data, self.loop.time()))

    def eof(self, flow: Flow) -> None:
        if not self.finished:
            self.apply(self.schedule.eof(flow, self.loop.time()))

    def lost(self, side: _Side, exc: Exception | None) -> None:
        if self.finished:
            return
        now = self.loop.time()
        if exc is not None:
            # Pass a reset on, as the network would.
            self.trace.record(now, side.sends, f"{side.role} connection lost: {exc!r}")
            other = self.server if side is self.client else self.client
            if other is not None:
                _reset(other.transport)
            self.finish()
            return
        self.trace.record(now, side.sends, f"{side.role} closed")
        # Close the other side once what is queued for it has gone out.
        towards = _other(side.sends)
        self.queues[towards].append(Close(now, towards, f"{side.role} closed"))
        self.kick(towards)

    # -- carrying out actions ---------------------------------------------------------

    def apply(self, actions: Iterable[Action]) -> None:
        touched: set[Flow] = set()
        for action in actions:
            if isinstance(action, (Deliver, SendEof, Close, Abort)):
                self.queues[action.flow].append(action)
                if isinstance(action, Deliver):
                    self.queued[action.flow] += len(action.data)
                touched.add(action.flow)
            elif isinstance(action, Pause):
                self.pause(action.flow, "stall")
            elif isinstance(action, Resume):
                self.resume(action.flow, "stall")
            elif isinstance(action, Wake):
                self.wakes.append(self.loop.call_at(action.at, self._tick))
        for flow in FLOW_ORDER:
            if flow in touched and not self.finished:
                self.kick(flow)

    def _tick(self) -> None:
        if not self.finished:
            self.apply(self.schedule.tick(self.loop.time()))

    def _receiver(self, flow: Flow) -> _Side | None:
        return self.server if flow == "upstream" else self.client

    def _sender(self, flow: Flow) -> _Side | None:
        return self.client if flow == "upstream" else self.server

    def _due(self, flow: Flow) -> None:
        self.timers[flow] = None
        self.kick(flow)

    def kick(self, flow: Flow) -> None:
        queue = self.queues[flow]
        now = self.loop.time()
        while queue and not self.finished:
            head = queue[0]
            at = getattr(head, "at", now)
            if at > now:
                timer = self.timers[flow]
                if timer is None or timer.when() != at:
                    if timer is not None:
                        timer.cancel()
                    self.timers[flow] = self.loop.call_at(at, self._due, flow)
                break
            receiver = self._receiver(flow)
            if receiver is None and isinstance(head, (Deliver, SendEof)):
                break  # the upstream connection is not made yet
            queue.popleft()
            self._perform(head, receiver)
        if not self.finished:
            self._backpressure(flow)

    def _perform(self, action: Action, receiver: _Side | None) -> None:
        transport = receiver.transport if receiver is not None else None
        if isinstance(action, Deliver):
            self.queued[action.flow] -= len(action.data)
            if transport is not None and not transport.is_closing():
                transport.write(action.data)
        elif isinstance(action, SendEof):
            self.eof_sent[action.flow] = True
            if transport is not None and not transport.is_closing() and transport.can_write_eof():
                transport.write_eof()
            if all(self.eof_sent.values()):
                self.close_both()
        elif isinstance(action, Close):
            self.trace.record(self.loop.time(), None, f"closing: {action.reason}")
            self.close_both()
        elif isinstance(action, Abort):
            for flow in action.flows:
                side = self._receiver(flow)
                _reset(side.transport if side is not None else None)
            self.close_both()

    def _backpressure(self, flow: Flow) -> None:
        queued = self.queued[flow]
        if queued > _HIGH:
            self.pause(flow, "queue")
        elif queued <= _LOW:
            self.resume(flow, "queue")

    def pause(self, flow: Flow, reason: str) -> None:
        reasons = self.paused[flow]
        if reason in reasons:
            return
        reasons.add(reason)
        sender = self._sender(flow)
        if len(reasons) == 1 and sender is not None and sender.transport is not None:
            sender.transport.pause_reading()

    def resume(self, flow: Flow, reason: str) -> None:
        reasons = self.paused[flow]
        if reason not in reasons:
            return
        reasons.discard(reason)
        sender = self._sender(flow)
        if not reasons and sender is not None and sender.transport is not None:
            sender.transport.resume_reading()

    def update(self, faults: Sequence[Fault]) -> None:
        if not self.finished:
            self.apply(self.schedule.update(faults, self.loop.time()))

    def close_both(self) -> None:
        """Close both sides with a FIN, as a process that exits would.

        A socket closed while unread bytes wait in its receive buffer sends an RST
        instead, so each side is shut down for writing first, its late bytes are
        read and dropped, and it is closed at its EOF (or after a grace period).
        """
        for side in (self.client, self.server):
            transport = side.transport if side is not None else None
            if side is None or transport is None or transport.is_closing():
                continue
            if side.eof_seen or not transport.can_write_eof():
                transport.close()
            else:
                transport.write_eof()
                transport.resume_reading()
                self.loop.call_later(_CLOSE_GRACE, _close_transport, transport)
        self.finish()

    def abort(self) -> None:
        for side in (self.client, self.server):
            if side is not None and side.transport is not None:
                side.transport.abort()
        self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.trace.record(self.loop.time(), None, "finished")
        for timer in (*self.timers.values(), *self.wakes):
            if timer is not None:
                timer.cancel()
        self.wakes.clear()
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        self.proxy._finished(self)


FLOW_ORDER: tuple[Flow, ...] = ("upstream", "downstream")


# -- UDP ---------------------------------------------------------------------------------


class _Listen(asyncio.DatagramProtocol):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.DatagramTransport", transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.proxy._datagram_from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.proxy._udp_errors.append(repr(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class _UpstreamFlow(asyncio.DatagramProtocol):
    """One client address: its schedule and its own socket to the upstream."""

    def __init__(self, proxy: FaultProxy, peer: tuple[Any, ...], index: int) -> None:
        self.proxy = proxy
        self.peer = peer
        self.loop = asyncio.get_running_loop()
        self.schedule = DatagramSchedule(
            seed=proxy.seed, index=index, now=self.loop.time(), faults=proxy.faults, peer=peer
        )
        self.trace = self.schedule.trace
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: list[bytes] = []
        self.timers: set[asyncio.TimerHandle] = set()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.DatagramTransport", transport)
        track(
            transport,
            what=f"FaultProxy UDP flow #{self.schedule.index} socket",
            is_open=_transport_open,
            close=_abort,
        )
        for data in self.waiting:
            self.transport.sendto(data)
        self.waiting.clear()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.apply(self.schedule.datagram("downstream", data, self.loop.time()))

    def error_received(self, exc: Exception) -> None:
        # The upstream's port is closed: record it; the client just hears nothing.
        self.trace.record(self.loop.time(), "upstream", f"upstream error: {exc!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def from_client(self, data: bytes) -> None:
        self.apply(self.schedule.datagram("upstream", data, self.loop.time()))

    def apply(self, actions: Iterable[Action]) -> None:
        now = self.loop.time()
        for action in actions:
            if isinstance(action, Wake):
                self._later(action.at, self._tick)
            elif isinstance(action, Deliver):
                if action.at <= now:
                    self._send(action)
                else:
                    self._later(action.at, functools.partial(self._send, action))
            elif isinstance(action, UnreachableAction):
                self.trace.record(now, action.flow, "refused as unreachable")

    def _later(self, at: float, callback: Callable[[], None]) -> None:
        def run() -> None:
            self.timers.discard(handle)
            callback()

        handle = self.loop.call_at(at, run)
        self.timers.add(handle)

    def _tick(self) -> None:
        self.apply(self.schedule.tick(self.loop.time()))

    def _send(self, action: Deliver) -> None:
        if self.closed:
            return
        if action.flow == "upstream":
            if self.transport is None:
                self.waiting.append(action.data)
            elif not self.transport.is_closing():
                self.transport.sendto(action.data)
        else:
            listen = self.proxy._listen_protocol
            transport = listen.transport if listen is not None else None
            if transport is not None and not transport.is_closing():
                transport.sendto(action.data, self.peer)

    def close(self) -> None:
        self.closed = True
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()
        if self.transport is not None:
            self.transport.close()
        elif not self.lost.done():
            self.lost.set_result(None)


# -- the proxy ----------------------------------------------------------------------------


def _check_faults(kind: Kind, faults: Iterable[Fault]) -> tuple[Fault, ...]:
    result = tuple(faults)
    needed = "stream" if kind == "tcp" else "datagram"
    for fault in result:
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a fault such as Latency(0.1), got {fault!r}")
        if needed not in fault._applies_to:
            raise ValueError(f"{fault!r} does not apply to a {kind.upper()} proxy")
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
class FaultProxy:
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
        kind: ``"tcp"`` or ``"udp"``.
        seed: Seeds every random choice; the same seed and traffic give the same
            faults.
        host: The address to listen on (loopback by default).
        port: The port to listen on (0: any free port, bound once and kept).

    Raises:
        ValueError: An unknown kind, or a fault that does not apply to it.

    Example::

        async with FaultProxy(server.address, faults=[Latency(0.1)]) as proxy:
            reader, writer = await asyncio.open_connection(*proxy.address)
    """

    def __init__(
        self,
        upstream: object,
        *,
        faults: Iterable[Fault] = (),
        kind: Literal["tcp", "udp"] = "tcp",
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if kind not in ("tcp", "udp"):
            raise ValueError(f"kind must be 'tcp' or 'udp', got {kind!r}")
        #: ``"tcp"`` or ``"udp"``.
        self.kind: Kind = kind
        #: Where traffic is forwarded, ``(host, port)`` or a Unix socket path.
        self.upstream: Address | str = _parse_upstream(upstream, kind)
        #: The seed of every random choice the proxy makes.
        self.seed = int(seed)
        self._faults = _check_faults(kind, faults)
        self._host = host
        self._port = port
        self._address: Address | None = None
        self._server: asyncio.Server | None = None
        self._listen_protocol: _Listen | None = None
        self._connections: set[_StreamConnection] = set()
        self._sides: list[_Side] = []
        self._flows: dict[tuple[Any, ...], _UpstreamFlow] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._udp_errors: list[str] = []
        self._count = 0
        self._up = False
        self._unreachable = False
        self._port_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._on_connection: Callable[[ConnectionTrace], None] | None = None
        #: One trace per connection (TCP) or client address (UDP), in order.
        self.traces: list[ConnectionTrace] = []

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        """Bind and start listening; return the proxy.

        Raises:
            RuntimeError: The proxy was already started.
        """
        if self._started:
            raise RuntimeError("FaultProxy.start() was already called")
        self._started = True
        upstream = _format_address(self.upstream)
        track(self, what=f"FaultProxy -> {upstream}", is_open=_proxy_open, close=_proxy_abort)
        await self._listen()
        self._sync_port()
        return self

    def _sync_port(self) -> None:
        """Close the UDP port while `Unreachable` is in force, and open it again after."""
        unreachable = any(isinstance(fault, Unreachable) for fault in self._faults)
        if unreachable == self._unreachable:
            return
        self._unreachable = unreachable
        previous = self._port_task
        action = self.down if unreachable else self.up

        async def change() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await action()

        task = asyncio.get_running_loop().create_task(change())
        self._port_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        track(task, what="FaultProxy port change", is_open=_pending, close=_cancel)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        if self.kind == "tcp":
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self._host, self._port))
                sock.listen(_BACKLOG)
                sock.setblocking(False)
                # create_server() calls listen() again: give it the same backlog.
                self._server = await loop.create_server(
                    self._new_client, sock=sock, backlog=_BACKLOG
                )
            except BaseException:
                sock.close()
                raise
            track(
                self._server,
                what=f"FaultProxy listener {sock.getsockname()}",
                is_open=lambda s: s.is_serving(),
                close=lambda s: s.close(),
            )
            name = sock.getsockname()
        else:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _Listen(self), local_addr=(self._host, self._port), family=family
            )
            track(
                transport,
                what=f"FaultProxy UDP listener {transport.get_extra_info('sockname')}",
                is_open=_transport_open,
                close=_abort,
            )
            self._listen_protocol = protocol
            name = transport.get_extra_info("sockname")
        self._address = (name[0], name[1])
        # Bind the same port again after down()/up().
        self._port = name[1]
        self._up = True

    @property
    def address(self) -> Address:
        """``(host, port)`` to give the client instead of the upstream's address."""
        if self._address is None:
            raise RuntimeError("the proxy is not started: await proxy.start() first")
        return self._address

    @property
    def closed(self) -> bool:
        """True once `aclose` was called."""
        return self._closed

    @property
    def is_up(self) -> bool:
        """False while the proxy is `down`."""
        return self._up

    async def aclose(self) -> None:
        """Stop listening, close every connection and socket; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop_listening()
        for conn in list(self._connections):
            conn.abort()
        for side in self._sides:  # including connections still closing gracefully
            if side.transport is not None:
                side.transport.abort()
        for flow in self._flows.values():
            flow.close()
        for task in list(self._tasks):
            task.cancel()
        waits: list[asyncio.Future[Any]] = [s.lost for s in self._sides]
        waits += [f.lost for f in self._flows.values()]
        waits += list(self._tasks)
        if self._listen_protocol is not None:
            waits.append(self._listen_protocol.lost)
        if waits:
            await asyncio.wait(waits, timeout=default_timeout())
        self._sides.clear()

    def _abort_now(self) -> None:
        """Synchronous, best-effort close for the hygiene gate."""
        self._closed = True
        self._stop_listening()
        for conn in list(self._connections):
            conn.abort()
        for side in self._sides:
            if side.transport is not None:
                side.transport.abort()
        for flow in self._flows.values():
            flow.close()
        for task in self._tasks:
            task.cancel()

    def _stop_listening(self) -> None:
        self._up = False
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._listen_protocol is not None and self._listen_protocol.transport is not None:
            self._listen_protocol.transport.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_started", False) and not getattr(self, "_closed", True):
            _warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)

    def __repr__(self) -> str:
        where = f"{self._address[0]}:{self._address[1]}" if self._address else "not started"
        state = "closed" if self._closed else ("up" if self._up else "down")
        upstream = _format_address(self.upstream)
        return f"<FaultProxy {self.kind} {where} -> {upstream} {state}>"

    # -- down and up ---------------------------------------------------------------------

    async def down(self) -> None:
        """Close the listening socket: new connections are refused until `up`.

        TCP clients get `ConnectionRefusedError` from the kernel; UDP clients on
        connected sockets get ``error_received(ConnectionRefusedError)``.
        Connections already open are left alone.
        """
        self._check_open()
        if not self._up:
            return
        listen = self._listen_protocol
        self._stop_listening()
        if listen is not None:
            await asyncio.wait_for(asyncio.shield(listen.lost), default_timeout())

    async def up(self) -> None:
        """Listen again on the same address after `down`.

        Raises:
            OSError: Another socket took the port meanwhile.
        """
        self._check_open()
        if not self._up:
            await self._listen()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the proxy is closed")
        if not self._started:
            raise RuntimeError("the proxy is not started: await proxy.start() first")

    # -- faults ------------------------------------------------------------------------

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults in force, in the order they apply."""
        return self._faults

    def add(self, fault: Fault) -> None:
        """Add a fault; it applies to open connections at once (counting from now).

        Raises:
            ValueError: The fault does not apply to this kind of proxy.
        """
        self._set((*self._faults, *_check_faults(self.kind, [fault])))

    def remove(self, fault: Fault) -> None:
        """Remove a fault.  Never blocks; held bytes (see `~nettest.faults.Stall`) flow again.

        Raises:
            ValueError: The fault is not in force.
        """
        if fault not in self._faults:
            raise ValueError(f"{fault!r} is not in force; faults: {list(self._faults)}")
        self._set(tuple(f for f in self._faults if f != fault))

    def clear(self) -> None:
        """Remove every fault."""
        self._set(())

    def _set(self, faults: tuple[Fault, ...]) -> None:
        self._faults = faults
        if self._started and not self._closed:
            self._sync_port()
        for conn in list(self._connections):
            conn.update(faults)
        for flow in self._flows.values():
            flow.apply(flow.schedule.update(faults, flow.loop.time()))

    # -- traces ------------------------------------------------------------------------

    def format_traces(self) -> str:
        """Return the seed and every connection's trace as text."""
        lines = [f"{self!r} seed={self.seed} faults={list(self._faults)}"]
        if self._udp_errors:
            lines.append(f"  listener errors: {', '.join(self._udp_errors[:10])}")
        if not self.traces:
            lines.append("  (no connections)")
        lines.extend(str(trace) for trace in self.traces)
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

    def _datagram_from_client(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._closed:
            return
        flow = self._flows.get(addr)
        if flow is None:
            self._count += 1
            flow = _UpstreamFlow(self, addr, self._count)
            self._flows[addr] = flow
            self.traces.append(flow.trace)
            if self._on_connection is not None:
                self._on_connection(flow.trace)
            task = asyncio.get_running_loop().create_task(self._connect_flow(flow))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            track(task, what="FaultProxy UDP connect task", is_open=_pending, close=_cancel)
        flow.from_client(data)

    async def _connect_flow(self, flow: _UpstreamFlow) -> None:
        loop = asyncio.get_running_loop()
        upstream = self.upstream
        assert not isinstance(upstream, str)  # refused in __init__
        family = socket.AF_INET6 if ":" in upstream[0] else socket.AF_INET
        try:
            await loop.create_datagram_endpoint(lambda: flow, remote_addr=upstream, family=family)
        except OSError as exc:
            flow.trace.record(loop.time(), "upstream", f"upstream socket failed: {exc!r}")
            if not flow.lost.done():
                flow.lost.set_result(None)
            return
        if flow.closed and flow.transport is not None:
            flow.transport.close()


def _proxy_open(proxy: FaultProxy) -> bool:
    return not proxy.closed


def _proxy_abort(proxy: FaultProxy) -> None:
    with contextlib.suppress(Exception):
        proxy._abort_now()


# -- the fixture ---------------------------------------------------------------------------


class FaultProxyFactory(Protocol):
    """The type of the ``fault_proxy`` fixture: ``await fault_proxy(upstream=...)``."""

    async def __call__(
        self,
        *,
        upstream: object,
        faults: Iterable[Fault] = (),
        kind: Literal["tcp", "udp"] = "tcp",
    ) -> FaultProxy:
        """Start a proxy in front of *upstream*; the fixture closes it after the test."""
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
    proxies = request.node.stash.setdefault(_PROXIES_KEY, [])

    async def factory(
        *,
        upstream: object,
        faults: Iterable[Fault] = (),
        kind: Literal["tcp", "udp"] = "tcp",
    ) -> FaultProxy:
        seed = nettest_seed if not proxies else (nettest_seed * 1_000_003 + len(proxies))
        proxy = FaultProxy(upstream, faults=faults, kind=kind, seed=seed % 2**64)
        proxies.append(proxy)
        return await proxy.start()

    try:
        yield factory
    finally:
        for proxy in proxies:
            await proxy.aclose()


def format_traces_for(item: pytest.Item) -> str | None:
    """Return the traces of the proxies a test used, for its failure report (or None).

    The plugin calls this from ``pytest_runtest_makereport`` for failed tests and
    adds the text as a report section.
    """
    proxies = item.stash.get(_PROXIES_KEY, None)
    if not proxies:
        return None
    return "\n\n".join(proxy.format_traces() for proxy in proxies)


# -- the command line ---------------------------------------------------------------------

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(us|ms|s|m)?\s*$")
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)(i?[bB])?\s*$")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, None: 1.0}
_SIZES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

#: Names of faults on the command line; the first field takes ``name=value``.
_CLI_NAMES = {
    "latency": "Latency",
    "bandwidth": "Bandwidth",
    "slice": "Slice",
    "truncate": "Truncate",
    "reset": "Reset",
    "blackhole": "Blackhole",
    "stall": "Stall",
    "slow_close": "SlowClose",
    "close_after": "CloseAfter",
    "refuse": "Refuse",
    "half_close": "HalfClose",
    "corrupt": "Corrupt",
    "drop": "Drop",
    "duplicate": "Duplicate",
    "reorder": "Reorder",
    "truncate_datagram": "TruncateDatagram",
    "unreachable": "Unreachable",
}
_TIME_FIELDS = {"delay", "jitter", "after_seconds", "seconds", "max_hold"}
_SIZE_FIELDS = {"bytes_per_second", "size", "after_bytes", "max_size", "window"}


def _duration(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 100ms or 1.5s, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _size(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a size such as 512, 64k or 1M, got {text!r}")
    return int(float(match.group(1)) * _SIZES[match.group(2).lower()])


def parse_fault(spec: str) -> Fault:
    """Parse ``name[=value][,key=value]...`` as used by ``nettest proxy --fault``.

    Durations take ``us``, ``ms``, ``s`` (default) or ``m``; sizes take ``k``,
    ``M`` or ``G`` (powers of 1024).  The options are ``direction``,
    ``probability``, ``connection``, ``after`` (bytes) and ``pattern`` (text).

    Raises:
        ValueError: An unknown fault or field, or a bad value.

    Example::

        parse_fault("latency=100ms,jitter=10ms,direction=both")
    """
    head, *rest = [part.strip() for part in spec.split(",")]
    name, _, value = head.partition("=")
    name = name.strip().lower().replace("-", "_")
    if name not in _CLI_NAMES:
        raise ValueError(f"unknown fault {name!r}; choose from {', '.join(sorted(_CLI_NAMES))}")
    cls = typing.cast("type[Fault]", getattr(_faults, _CLI_NAMES[name]))
    own = [f.name for f in fields(cls) if f.name not in ("direction", "probability", "trigger")]
    kwargs: dict[str, Any] = {}
    trigger: dict[str, Any] = {}
    pairs = [(own[0] if own else "", value)] if value else []
    for part in rest:
        key, sep, val = part.partition("=")
        if not sep:
            raise ValueError(f"expected key=value in {spec!r}, got {part!r}")
        pairs.append((key.strip(), val.strip()))
    for key, val in pairs:
        if key == "direction":
            kwargs["direction"] = val
        elif key == "probability":
            kwargs["probability"] = float(val)
        elif key == "connection":
            trigger["connection"] = int(val)
        elif key == "after":
            trigger["after_bytes"] = _size(val)
        elif key == "pattern":
            trigger["pattern"] = val.encode().decode("unicode_escape").encode("latin-1")
        elif key not in own:
            raise ValueError(f"{name} has no field {key!r}; fields: {', '.join(own) or 'none'}")
        elif key in _TIME_FIELDS:
            kwargs[key] = _duration(val)
        elif key in _SIZE_FIELDS:
            kwargs[key] = _size(val)
        elif key == "positions":
            kwargs[key] = tuple(int(p) for p in val.split("+"))
        elif key == "mask":
            kwargs[key] = int(val, 0)
        else:
            kwargs[key] = float(val)
    if trigger:
        kwargs["trigger"] = Trigger(**trigger)
    return cls(**kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nettest proxy",
        description="Run a fault-injecting proxy in front of a TCP or UDP server, for manual "
        "tests and programs not written in Python.  It prints its address, then one line per "
        "connection.  SIGINT or SIGTERM stop it.",
        epilog="Faults: "
        + ", ".join(sorted(_CLI_NAMES))
        + ".  Examples: --fault latency=100ms,jitter=10ms  --fault bandwidth=64k  "
        "--fault reset,after=1k,direction=both  --fault drop=0.1 (with --udp).",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:0, any free port)",
    )
    parser.add_argument(
        "--upstream",
        required=True,
        metavar="HOST:PORT",
        help="the server to forward to (or the path of a Unix socket, for TCP)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault: NAME[=VALUE][,KEY=VALUE]...; repeat for more",
    )
    parser.add_argument("--udp", action="store_true", help="proxy UDP instead of TCP")
    parser.add_argument("--seed", type=int, default=0, help="seed for random faults (default 0)")
    parser.add_argument(
        "--trace", action="store_true", help="print each connection's full trace when it ends"
    )
    return parser


def cli_main(argv: list[str]) -> int:
    """Run ``nettest proxy``; return the exit status.

    Example::

        nettest proxy --upstream 127.0.0.1:8080 --fault latency=100ms
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        listen = _parse_address(args.listen, "--listen")
        kind: Kind = "udp" if args.udp else "tcp"
        upstream = _parse_upstream(args.upstream, kind)
        faults = [parse_fault(spec) for spec in args.fault]
        _check_faults(kind, faults)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    try:
        return asyncio.run(_serve(listen, upstream, faults, kind, args.seed, args.trace))
    except OSError as exc:
        print(f"nettest proxy: {exc}", file=sys.stderr)
        return 1


async def _serve(
    listen: Address,
    upstream: Address | str,
    faults: list[Fault],
    kind: Kind,
    seed: int,
    trace: bool,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    proxy = FaultProxy(
        upstream, faults=faults, kind=kind, seed=seed, host=listen[0], port=listen[1]
    )

    def announce(conn: ConnectionTrace) -> None:
        print(f"connection #{conn.index} from {conn.peer[0]}:{conn.peer[1]}", flush=True)  # type: ignore[index]

    proxy._on_connection = announce
    try:
        await proxy.start()
        host, port = proxy.address
        print(f"nettest proxy {kind} listening on {host}:{port} -> {_format_address(upstream)}")
        print(f"faults: {', '.join(map(repr, faults)) or 'none'}; seed {seed}", flush=True)
        await stop.wait()
        print("stopping", flush=True)
    finally:
        await proxy.aclose()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if trace:
        print(proxy.format_traces(), flush=True)
    return 0
