"""The fault proxy's UDP driver: one `DatagramSchedule` per client address.

`FaultProxy` listens on one datagram socket (`_Listen`).  Each client address
it hears from is a flow (`_UpstreamFlow`) with its own `DatagramSchedule`
(`nettest._fault_engine_datagram`) and its own connected socket to the
upstream, so that replies find their way back to the right client.

`Unreachable` closes the listening socket for as long as it is in force, and
the change is made before `FaultProxy.add` or `FaultProxy.remove` returns: the
listening socket is bound and closed synchronously (see `_Listen`), so that a
datagram the test sends next meets the port in its new state.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ._datagrams import sends_empty
from ._fault_actions import Action, Deliver, UnreachableAction, Wake
from ._fault_engine_datagram import DatagramSchedule
from ._hygiene import parts_of, track
from ._proxy_sockets import _abort, _bind_port, _format_address, _transport_open
from ._server_base import _closed_on_error

if typing.TYPE_CHECKING:
    from ._faults import Fault
    from ._proxy import FaultProxy

__all__: list[str] = []

#: The most a read of the listening socket returns: the largest UDP datagram.
_MAX_DATAGRAM = 65535
#: The most datagrams `_Listen.take_queued` reads at once (see there).
_MAX_QUEUED = 4096


class _Listen(asyncio.DatagramProtocol):
    """The proxy's listening socket: bound at once, read through a transport.

    The proxy binds the socket itself (`bind`), so the port is taken when the
    call that asks for it returns; a task then hands the socket to a datagram
    transport.  `close` gives the port up at once, whatever the transport is
    doing: asyncio closes a transport's socket a loop turn later, and a
    datagram that lands meanwhile is lost without the ICMP "port unreachable"
    that a closed port gets.
    """

    def __init__(self, proxy: FaultProxy, sock: socket.socket) -> None:
        self.proxy = proxy
        self.sock = sock
        self.transport: asyncio.DatagramTransport | None = None
        #: True once `close` gave the port up.
        self.closed = False
        # True once a transport holds `sock`: from then on it closes it.
        self._owned = False
        loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = loop.create_future()
        #: Hands `sock` to a transport; done once it reads.
        self.attaching = loop.create_task(self._attach())
        self.attaching.add_done_callback(self._attached)

    @classmethod
    def bind(cls, proxy: FaultProxy, host: str, port: int) -> _Listen:
        """Bind ``(host, port)`` now; the socket is read once `attaching` is done.

        For port 0, the port is below the kernel's ephemeral range where it can be
        (see `nettest._proxy_sockets._bind_port`).

        Raises:
            OSError: The address is taken or cannot be bound.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def bound(port: int) -> socket.socket:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            with _closed_on_error(sock):
                sock.setblocking(False)
                sock.bind((host, port))
            return sock

        return cls(proxy, _bind_port(port, bound))

    async def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(self._owner, sock=self.sock)

    def _owner(self) -> _Listen:
        # create_datagram_endpoint() makes the transport in the same step as it
        # calls this, with no await between: the socket is the transport's now.
        self._owned = True
        return self

    def _attached(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.proxy._udp_errors.append(f"listening failed: {task.exception()!r}")
        if not self._owned:  # cancelled (or failed) before a transport took the socket
            self.sock.close()
            self._set_lost()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.DatagramTransport", transport)
        track(
            transport,
            what=f"FaultProxy UDP listener {transport.get_extra_info('sockname')}",
            is_open=_transport_open,
            close=_abort,
            on_behalf_of=self.proxy,
        )
        parts_of(self.proxy, transport)
        if self.closed:  # closed while the transport was being made
            self.transport.abort()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.proxy._datagram_from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.proxy._udp_errors.append(repr(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_lost()

    def _set_lost(self) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def sendto(self, data: bytes, addr: tuple[Any, ...]) -> bool:
        """Send `data` to a client from the proxy's port; False if the port is closed."""
        if self.closed:
            return False
        if self.transport is not None:
            if self.transport.is_closing():
                return False
            lost = send_datagram(self.transport, self.sock, data, addr)
            if lost is not None:
                self.proxy._udp_errors.append(lost)
                return False
            return True
        # Bound, not read yet: nothing else uses the socket, so send on it directly.
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:  # a full buffer or an error the kernel queued: lost
            self.proxy._udp_errors.append(repr(exc))
            return False
        return True

    def take_queued(self) -> list[tuple[bytes, tuple[Any, ...]]]:
        """Read what waits in the socket's receive buffer, without waiting for more."""
        queued: list[tuple[bytes, tuple[Any, ...]]] = []
        if self.closed:
            return queued
        # The buffer holds a bounded number of datagrams; the cap only stops a
        # sender in another thread that keeps it full from holding the loop here.
        for _ in range(_MAX_QUEUED):
            try:
                data, addr = self.sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an error the kernel queued on the socket
                self.proxy._udp_errors.append(repr(exc))
                continue
            queued.append((data, addr))
        return queued

    def close(self) -> None:
        """Give the port up now: the next datagram to it gets ICMP "port unreachable"."""
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        if not self._owned:
            # No transport has the socket, and none will: close it here.
            self.attaching.cancel()
            self.sock.close()
            self._set_lost()
            return
        # A transport owns the socket and closes it a loop turn from now (or, made
        # but not yet connected, once connection_made() aborts it).  Free the port
        # now: point the socket's descriptor at a new, unbound socket.  The kernel
        # drops the bound one at once, and the transport still closes a descriptor
        # it owns; closing the descriptor here instead would let a socket opened
        # meanwhile reuse its number, and the transport would close that one.
        _free_port(self.sock)


def send_datagram(
    transport: asyncio.DatagramTransport,
    sock: socket.socket,
    data: bytes,
    addr: tuple[Any, ...] | None,
) -> str | None:
    """Send `data` through `transport`, to `addr` (None: where `sock` is connected).

    Returns None once sent (or buffered), else why it was lost.  A proxy forwards
    what its client sent, and an empty datagram is a datagram: where the event
    loop drops ``sendto(b"")`` (asyncio before 3.13, uvloop), it goes on the
    transport's socket itself, provided nothing waits in the transport's buffer
    to go out before it.
    """
    if data or sends_empty(transport):
        transport.sendto(data, addr)
        return None
    # Every loop's datagram transport has it, though DatagramTransport does not say so.
    if typing.cast("asyncio.WriteTransport", transport).get_write_buffer_size():
        return "an empty datagram lost: datagrams wait in the buffer, and this loop drops it"
    try:
        if addr is None:
            sock.send(data)
        else:
            sock.sendto(data, addr)
    except OSError as exc:
        return f"an empty datagram lost: {exc!r}"
    return None


def _free_port(sock: socket.socket) -> None:
    """Close the socket behind `sock`'s descriptor now, keeping the descriptor open."""
    fd = sock.fileno()
    if fd == -1:
        return
    try:
        placeholder = socket.socket(sock.family, socket.SOCK_DGRAM)
    except OSError:
        return  # out of descriptors: the port closes with the transport, a turn later
    with placeholder:
        os.dup2(placeholder.fileno(), fd, inheritable=False)


class _UpstreamFlow(asyncio.DatagramProtocol):
    """One client address: its schedule and its own socket to the upstream.

    The schedule starts with *faults*, the proxy's by default: datagrams that
    reached the port before `Unreachable` closed it start a flow with the faults
    in force until then (see `FaultProxy._sync_port`).
    """

    def __init__(
        self,
        proxy: FaultProxy,
        peer: tuple[Any, ...],
        index: int,
        faults: tuple[Fault, ...] | None = None,
    ) -> None:
        self.proxy = proxy
        self.peer = peer
        self.loop = asyncio.get_running_loop()
        self.schedule = DatagramSchedule(
            seed=proxy.seed,
            index=index,
            now=self.loop.time(),
            faults=proxy.faults if faults is None else faults,
            peer=peer,
        )
        self.trace = self.schedule.trace
        # Whether an upstream error was told (`FaultProxy._on_upstream_failure`): once.
        self.upstream_failed = False
        #: The socket to the upstream, and its transport, once `connect` made them.
        self.sock: socket.socket | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: list[bytes] = []
        self.timers: set[asyncio.TimerHandle] = set()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.DatagramTransport", transport)
        self.trace.upstream_local = transport.get_extra_info("sockname")
        track(
            transport,
            what=f"FaultProxy UDP flow #{self.schedule.index} socket",
            is_open=_transport_open,
            close=_abort,
            on_behalf_of=self.proxy,
        )
        waiting, self.waiting = self.waiting, []
        for data in waiting:
            self._to_upstream(data)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.apply(self.schedule.datagram("downstream", data, self.loop.time()))

    def error_received(self, exc: Exception) -> None:
        # The upstream's port is closed: record it; the client just hears nothing.
        self.trace._record(self.loop.time(), "upstream", f"upstream error: {exc!r}")
        tell = self.proxy._on_upstream_failure
        if tell is not None and not self.upstream_failed:
            self.upstream_failed = True
            tell(self.trace, f"upstream {_format_address(self.proxy.upstream)} error: {exc!r}")

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
                self.trace._record(now, action.flow, "refused as unreachable")

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
                self._to_upstream(action.data)
        else:
            listen = self.proxy._listen_protocol
            if listen is None or not listen.sendto(action.data, self.peer):
                # down() or Unreachable() closed the port: nothing can come from it.
                self.trace._record(
                    self.loop.time(),
                    "downstream",
                    f"lost {len(action.data)} bytes: the proxy's port is closed",
                )

    def _to_upstream(self, data: bytes) -> None:
        assert self.transport is not None
        assert self.sock is not None
        lost = send_datagram(self.transport, self.sock, data, None)
        if lost is not None:
            self.trace._record(self.loop.time(), "upstream", lost)

    async def connect(self, upstream: tuple[Any, ...]) -> None:
        """Make the flow's socket, connected to `upstream`, and its transport.

        The socket is made here rather than by ``create_datagram_endpoint``, so
        that `send_datagram` can send an empty datagram on it.
        """
        loop = self.loop
        family = socket.AF_INET6 if ":" in upstream[0] else socket.AF_INET
        infos = await loop.getaddrinfo(*upstream[:2], family=family, type=socket.SOCK_DGRAM)
        address = infos[0][4]  # getaddrinfo() raises rather than find nothing
        if self.closed:
            return
        sock = socket.socket(family, socket.SOCK_DGRAM)
        with _closed_on_error(sock):
            sock.setblocking(False)
            sock.connect(address)
            self.sock = sock
            # Made in this call, with no await before: the transport owns the socket.
            await loop.create_datagram_endpoint(lambda: self, sock=sock)

    def close(self) -> None:
        self.closed = True
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()
        if self.transport is not None:
            self.transport.close()
        elif not self.lost.done():
            self.lost.set_result(None)
