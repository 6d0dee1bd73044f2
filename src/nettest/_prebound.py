"""Sockets bound (and for TCP, listening) on loopback port 0, held until handed over.

For servers under test that run as subprocesses or CLIs.  Finding a free port,
closing it and passing the number on is a race (another process may bind it
first; equinor/ert#12651).  A `BoundSocket` keeps the port bound until the
server under test owns it:

* hand the descriptor itself to the child (``pass_fds=[sock.fileno()]``), for
  servers that accept a socket (``--fd``, systemd socket activation, gunicorn,
  uvicorn): no race at all; a TCP socket is already listening, so clients that
  connect before the child is ready wait in the backlog instead of being refused;
* or `release` it right before starting a CLI that only takes a port number:
  the port was never free until that moment.
"""

from __future__ import annotations

import os
import shutil
import socket
import typing
import warnings
from collections.abc import Iterator
from typing import Literal

import pytest

from ._hygiene import dropped_open, parts_of, track
from ._server_base import (
    INT_MAX,
    _check_int,
    _closed_on_error,
    _loopback_socket,
    _private_dir,
    check_bool,
    check_host,
    check_unix_path,
    has_ipv6_loopback,
)

__all__ = ["BoundSocket", "HeldSockets"]

_H = typing.TypeVar("_H", bound="HeldSockets")


class HeldSockets:
    """Sockets an object holds for a test: closed by ``with``, warned of if dropped open.

    Subclasses set ``_host`` and ``_port``, define ``closed`` and ``close()``, and
    are tracked by the hygiene gate (`dropped_open` tells it of one dropped open).
    """

    __slots__ = ()

    _host: str
    _port: int

    @property
    def host(self) -> str:
        """The literal loopback address bound."""
        return self._host

    @property
    def port(self) -> int:
        """The port bound, held for as long as this is open."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` that clients connect or send to."""
        return (self._host, self._port)

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            still_open = not self.closed
        except AttributeError:  # its constructor raised before holding anything
            return
        if still_open:
            try:
                if not dropped_open(self):  # unless the gate reports it
                    warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=1)
            finally:
                # Raised as an error (-W error), the warning must not leave the
                # sockets to warn again as they are freed: they are this object's.
                self.close()


@typing.final
class BoundSocket(HeldSockets):
    """A TCP or UDP socket bound to a loopback port 0, held until handed over.

    Make one with `BoundSocket.tcp` or `BoundSocket.udp`, or take one from the
    ``bound_tcp_socket`` / ``bound_udp_socket`` fixtures, which close it at
    teardown.

    Example::

        bound = nettest.BoundSocket.tcp()
        child = subprocess.Popen(
            [sys.executable, "server.py", "--fd", str(bound.fileno())],
            pass_fds=[bound.fileno()],
        )
        with socket.create_connection(bound.address) as client:
            ...
    """

    # _gate_entry: the hygiene gate's, for `dropped_open` from ``__del__``.
    __slots__ = ("__weakref__", "_gate_entry", "_host", "_kind", "_port", "_socket")

    _socket: socket.socket
    _kind: Literal["tcp", "udp"]
    _host: str
    _port: int

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("use BoundSocket.tcp() or BoundSocket.udp()")

    @classmethod
    def _create(
        cls,
        kind: Literal["tcp", "udp"],
        host: str,
        *,
        allow_remote: bool,
        listen: bool,
        backlog: int,
    ) -> BoundSocket:
        family = check_host(host, allow_remote=allow_remote)
        check_bool("listen", listen)
        type_ = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
        sock = _loopback_socket(family, type_, host, has_ipv6=has_ipv6_loopback)
        with _closed_on_error(sock):
            sock.bind((host, 0))
            if kind == "tcp" and listen:
                sock.listen(backlog)
            sock.set_inheritable(True)
        self = object.__new__(cls)
        self._socket = sock
        self._kind = kind
        self._host = host
        self._port = sock.getsockname()[1]
        track(
            self,
            what=f"bound {kind.upper()} socket {host}:{self._port}",
            is_open=lambda b: not b.closed,
            close=lambda b: b.close(),
        )
        parts_of(self, sock)
        return self

    @classmethod
    def tcp(
        cls,
        host: str = "127.0.0.1",
        *,
        allow_remote: bool = False,
        listen: bool = True,
        backlog: int = 128,
    ) -> BoundSocket:
        """Bind a TCP socket to ``(host, 0)`` and, unless ``listen`` is False, listen.

        Raises:
            TypeError: ``host`` is not a str, or ``backlog`` not an int.
            ValueError: ``host`` is not a literal loopback address, or ``backlog``
                is out of range.
            OSError: the host has no such address (no IPv6, say).
        """
        _check_int("backlog", backlog, high=INT_MAX)
        return cls._create("tcp", host, allow_remote=allow_remote, listen=listen, backlog=backlog)

    @classmethod
    def udp(cls, host: str = "127.0.0.1", *, allow_remote: bool = False) -> BoundSocket:
        """Bind a UDP socket to ``(host, 0)``.

        Raises:
            ValueError: ``host`` is not a literal loopback address.
        """
        return cls._create("udp", host, allow_remote=allow_remote, listen=False, backlog=0)

    @property
    def socket(self) -> socket.socket:
        """The bound socket itself, e.g. for ``loop.create_server(sock=...)``."""
        return self._socket

    @property
    def kind(self) -> Literal["tcp", "udp"]:
        """``"tcp"`` or ``"udp"``."""
        return self._kind

    @property
    def closed(self) -> bool:
        """Whether the socket has been closed (or released)."""
        return self._socket.fileno() == -1

    def fileno(self) -> int:
        """The descriptor, inheritable: pass it to a child with ``pass_fds=[fd]``.

        Raises:
            ValueError: the socket is closed (or released): a socket's -1 would
                fail in ``Popen`` with a message that names no socket.
        """
        fd = self._socket.fileno()
        if fd == -1:
            raise ValueError(f"{self!r} has no descriptor to pass: it was closed or released")
        return fd

    def release(self) -> int:
        """Close the socket and return its port, for a CLI that only takes a port number.

        Call it immediately before starting the CLI.  The port stayed reserved
        until now; the only window left is between this call and the CLI's bind.
        Prefer passing `fileno` where the server accepts a descriptor.
        """
        self._socket.close()
        return self._port

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self._socket.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<BoundSocket {self._kind} {self._host}:{self._port} {state}>"


@pytest.fixture
def bound_tcp_socket() -> Iterator[BoundSocket]:
    """A TCP socket bound to 127.0.0.1 port 0 and listening, to hand to a server subprocess.

    The port stays reserved until teardown: pass ``fileno()`` to the child with
    ``pass_fds``, or ``release()`` it right before starting a port-only CLI.
    """
    with BoundSocket.tcp() as bound:
        yield bound


@pytest.fixture
def bound_udp_socket() -> Iterator[BoundSocket]:
    """A UDP socket bound to 127.0.0.1 port 0, to hand to a server subprocess.

    The port stays reserved until teardown; see ``bound_tcp_socket``.
    """
    with BoundSocket.udp() as bound:
        yield bound


@pytest.fixture
def unix_socket_path() -> Iterator[str]:
    """A short path for a Unix socket, in a private directory under /tmp removed at teardown.

    For Unix servers of your own (or in a subprocess): pytest's ``tmp_path`` is
    often longer than ``sun_path`` allows (macOS, xdist).  Nothing exists at the
    path; the directory is mode 0700.
    """
    directory = _private_dir()
    try:
        yield check_unix_path(os.path.join(directory, "s"))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
