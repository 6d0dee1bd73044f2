"""A loopback TCP port whose connection attempts are never answered, for connect timeouts.

A client's connect timeout is the one timeout loopback never exercises: a closed
port refuses at once, and a listening one accepts at once.  Tests reach for a
non-routable address instead (``10.255.255.1``), which leaves loopback, and which
a sandbox or a CI runner without a route refuses at once.

Linux drops a SYN when the listening socket's accept queue is full (the
``ListenOverflows`` counter) and the client retransmits it, backing off, until
its own timeout gives up: what it sees of a host that is down or firewalled.  A
`BlackholePort` listens with a backlog of 0, fills the queue with one
connection of its own, and never accepts.
"""

from __future__ import annotations

import socket
import typing
from collections.abc import Iterator

import pytest

from ._hygiene import parts_of, track
from ._prebound import HeldSockets
from ._server_base import _closed_on_error, _loopback_socket, check_host, has_ipv6_loopback

__all__ = ["BlackholePort", "blackhole_port", "unanswered_listener"]

#: Seconds the filling connection may take; on loopback it takes microseconds.
_FILL_TIMEOUT = 5.0


def unanswered_listener(host: str, port: int = 0) -> tuple[socket.socket, socket.socket]:
    """Listen on ``(host, port)`` so that connects to it get no answer.

    Returns the listening socket, with a backlog of 0, and the one connection of
    its own that fills its accept queue; close both to free the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = _loopback_socket(family, socket.SOCK_STREAM, host, has_ipv6=has_ipv6_loopback)
    with _closed_on_error(listener):
        # As any listener: a port that closed connections left in TIME_WAIT is free.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(0)
        # The queue holds one connection more than the backlog: this one.
        filler = _loopback_socket(family, socket.SOCK_STREAM, host, has_ipv6=has_ipv6_loopback)
        with _closed_on_error(filler):
            filler.settimeout(_FILL_TIMEOUT)
            filler.connect(listener.getsockname())
    return listener, filler


@typing.final
class BlackholePort(HeldSockets):
    """A loopback TCP port where every connection attempt hangs until the client gives up.

    Take one from the ``blackhole_port`` fixture, which closes it at teardown, or
    make one (and close it, or use it as a context manager).  Connecting to
    `address` neither succeeds nor fails: ``asyncio.open_connection`` waits
    until ``asyncio.wait_for`` or ``asyncio.timeout`` cancels it, and
    ``socket.create_connection(address, timeout=t)`` raises `TimeoutError`
    after *t* seconds.

    This relies on the kernel dropping SYNs to a full accept queue, as Linux
    does unless ``net.ipv4.tcp_abort_on_overflow`` is set (it then resets them).

    Args:
        host: The loopback address to listen on, ``"127.0.0.1"`` or ``"::1"``.

    Raises:
        TypeError: *host* is not a str.
        ValueError: *host* is not a literal loopback address.
        OSError: the host has no such address (no IPv6, say).

    Example::

        with nettest.BlackholePort() as blackhole:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.open_connection(*blackhole.address), 0.1)
    """

    # _gate_entry: the hygiene gate's, for `dropped_open` from ``__del__``.
    __slots__ = ("__weakref__", "_filler", "_gate_entry", "_host", "_listener", "_port")

    def __init__(self, host: str = "127.0.0.1") -> None:
        check_host(host, allow_remote=False, remote_option=False)
        listener, filler = unanswered_listener(host)
        self._listener = listener
        self._filler = filler
        self._host = host
        self._port: int = listener.getsockname()[1]
        track(
            self,
            what=f"blackhole port {host}:{self._port}",
            is_open=lambda b: not b.closed,
            close=lambda b: b.close(),
        )
        parts_of(self, listener, filler)

    @property
    def closed(self) -> bool:
        """Whether `close` was called; connects are then refused."""
        return self._listener.fileno() == -1

    def close(self) -> None:
        """Stop listening (idempotent); a connect still waiting is then refused."""
        self._filler.close()
        self._listener.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<BlackholePort {self._host}:{self._port} {state}>"


@pytest.fixture
def blackhole_port() -> Iterator[BlackholePort]:
    """A `~nettest.BlackholePort` on 127.0.0.1: connects to its ``address`` hang.

    Closed at teardown.  For IPv6, make ``nettest.BlackholePort("::1")`` yourself.
    """
    with BlackholePort() as blackhole:
        yield blackhole
