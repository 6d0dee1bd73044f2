"""The fault proxy on a background thread's event loop, for synchronous tests.

A blocking client (``socket``, ``ssl``, ``http.client``...) in a synchronous test
cannot await `FaultProxy.start`, and nothing would run the proxy's loop while the
client blocks.  `FaultProxyThread` runs a `FaultProxy` on a private loop in a
daemon thread, as the thread-backed servers do, and offers its controls as
blocking calls that run on that loop.  The ``fault_proxy_thread`` fixture seeds
each proxy from the test's ``nettest_seed`` and prints the traces of a failed test,
as ``fault_proxy`` does.
"""

from __future__ import annotations

import pathlib
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, Protocol, TypeVar

import pytest

from ._fault_trace import ConnectionTrace  # noqa: TC001
from ._faults import Fault  # noqa: TC001
from ._proxy import FaultProxy, proxies_of, proxy_seed
from ._proxy_sockets import Address, Kind  # noqa: TC001
from ._server_base import NoIPv6LoopbackError, raise_all
from ._threads import _OnLoopThread

__all__ = ["FaultProxyThread", "FaultProxyThreadFactory"]

_T = TypeVar("_T")


@typing.final
class FaultProxyThread(_OnLoopThread[FaultProxy]):
    """A `FaultProxy` running on its own event loop thread, for blocking clients.

    Takes the same arguments as `FaultProxy`, checked at once.  `start` binds the
    port; `add`, `remove`, `clear`, `down` and `up` block until the proxy's loop
    has made the change, so the next byte the client sends meets it.  Closing it
    closes the proxy, stops the loop and joins the thread.  Usually you get one
    from the ``fault_proxy_thread`` fixture.

    Example::

        with FaultProxyThread(server.address, faults=[Latency(0.1)]) as proxy:
            sock = socket.create_connection(proxy.address, timeout=5)
    """

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
        super().__init__(
            FaultProxy(
                upstream,
                faults=faults,
                kind=kind,
                seed=seed,
                host=host,
                port=port,
                allow_remote=allow_remote,
                unix=unix,
            )
        )

    # -- what it is ---------------------------------------------------------------------

    @property
    def proxy(self) -> FaultProxy:
        """The underlying `FaultProxy` (read it; change it through this object)."""
        return self._server

    @property
    def address(self) -> Address:
        """``(host, port)`` to hand the client."""
        return self._server.address

    @property
    def path(self) -> str:
        """The Unix socket path to hand the client, for a proxy made with *unix*."""
        return self._server.path

    @property
    def host(self) -> str:
        """The literal address the proxy listens on."""
        return self._server.host

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        return self._server.port

    @property
    def kind(self) -> Kind:
        """``"tcp"`` or ``"udp"``."""
        return self._server.kind

    @property
    def seed(self) -> int:
        """The seed of every random choice the proxy makes."""
        return self._server.seed

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults in force, in order."""
        return self._server.faults

    @property
    def traces(self) -> list[ConnectionTrace]:
        """One trace per connection (TCP) or client address (UDP), in order."""
        return self._server.traces

    @property
    def is_up(self) -> bool:
        """Whether the proxy accepts connections (see `FaultProxy.down`)."""
        return self._server.is_up

    def format_traces(self) -> str:
        """Return the seed and every connection's trace as text."""
        return self._server.format_traces()

    # -- changing it --------------------------------------------------------------------

    def add(self, fault: Fault) -> None:
        """Put *fault* in force, after those already in force (see `FaultProxy.add`)."""
        self._on_loop(lambda: self._server.add(fault))

    def remove(self, fault: Fault) -> None:
        """Take *fault* out of force (see `FaultProxy.remove`)."""
        self._on_loop(lambda: self._server.remove(fault))

    def clear(self) -> None:
        """Take every fault out of force."""
        self._on_loop(self._server.clear)

    def down(self, *, refuse: bool = True) -> None:
        """Take the proxy down, as `FaultProxy.down` does, and wait until it is."""
        self._run(self._server.down(refuse=refuse))

    def up(self) -> None:
        """Bring the proxy back up on the same port, as `FaultProxy.up` does."""
        self._run(self._server.up())

    def _on_loop(self, change: Callable[[], _T]) -> _T:
        async def run() -> _T:
            return change()

        return self._run(run())


# -- the fixture ---------------------------------------------------------------------------


class FaultProxyThreadFactory(Protocol):
    """The type of ``fault_proxy_thread``: ``proxy = fault_proxy_thread(upstream, ...)``."""

    def __call__(
        self,
        upstream: object,
        *,
        faults: Iterable[Fault] = (),
        kind: Literal["tcp", "udp"] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        unix: bool | str | pathlib.Path = False,
    ) -> FaultProxyThread:
        """Start a proxy in front of *upstream* on its own thread; closed after the test."""
        ...


@pytest.fixture
def fault_proxy_thread(
    request: pytest.FixtureRequest, nettest_seed: int
) -> Iterator[FaultProxyThreadFactory]:
    """Start fault-injecting proxies on a background thread, for synchronous tests.

    ``fault_proxy_thread(upstream, faults=[...])`` takes what ``fault_proxy`` takes
    and blocks until the proxy listens.  Each is seeded from `nettest_seed` as
    ``fault_proxy``'s are, closed and its thread joined after the test, and its
    traces are printed with the seed when the test fails.
    """
    proxies = proxies_of(request.node)
    started: list[FaultProxyThread] = []

    def fault_proxy_thread(
        upstream: object,
        *,
        faults: Iterable[Fault] = (),
        kind: Literal["tcp", "udp"] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        unix: bool | str | pathlib.Path = False,
    ) -> FaultProxyThread:
        seed = proxy_seed(nettest_seed, len(proxies))
        proxy = FaultProxyThread(
            upstream,
            faults=faults,
            kind=kind,
            seed=seed,
            host=host,
            port=port,
            allow_remote=allow_remote,
            unix=unix,
        )
        proxies.append(proxy.proxy)
        try:
            proxy.start()
        except NoIPv6LoopbackError as exc:
            pytest.skip(str(exc))
        started.append(proxy)
        return proxy

    # Named as the fixture: a wrong argument's TypeError names it.
    fault_proxy_thread.__qualname__ = "fault_proxy_thread"
    yield fault_proxy_thread
    errors: list[Exception] = []
    for proxy in reversed(started):
        try:
            proxy.close()
        except Exception as exc:
            errors.append(exc)
    raise_all(errors[::-1], "fault_proxy_thread")
