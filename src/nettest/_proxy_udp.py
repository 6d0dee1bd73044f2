"""The fault proxy's UDP driver: one `DatagramSchedule` per client address.

`FaultProxy` listens on one datagram socket (`_Listen`).  Each client address
it hears from is a flow (`_UpstreamFlow`) with its own `DatagramSchedule`
(`nettest._fault_engine_datagram`) and its own connected socket to the
upstream, so that replies find their way back to the right client.
"""

from __future__ import annotations

import asyncio
import functools
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ._fault_actions import Action, Deliver, UnreachableAction, Wake
from ._fault_engine_datagram import DatagramSchedule
from ._hygiene import track
from ._proxy_sockets import _abort, _transport_open

if typing.TYPE_CHECKING:
    from ._proxy import FaultProxy

__all__: list[str] = []


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
            on_behalf_of=self.proxy,
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
