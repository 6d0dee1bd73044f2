"""Addresses and small socket helpers shared by the fault proxy's parts.

The proxy (`nettest._proxy`), its TCP and UDP drivers (`nettest._proxy_tcp`,
`nettest._proxy_udp`) and its command line (`nettest._proxy_cli`) parse
addresses, reset transports and register what they open with the hygiene gate
in the same way.  The helpers live here, below all of those modules, because
`nettest._proxy` imports its drivers: a driver importing them from there would
make an import cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import re
import socket
import struct
import typing
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["Address", "Kind"]

Kind = Literal["tcp", "udp"]
Address = tuple[str, int]


def _parse_address(value: object, what: str, *, lowest: int = 0) -> Address:
    """Accept ``(host, port)``, ``"host:port"`` or an object with an ``address``."""
    address = getattr(value, "address", value)
    if isinstance(address, str):
        host, sep, port = address.rpartition(":")
        # A negative port is a bad port, said with the range, not a bad address.
        if not sep or not re.fullmatch(r"-?[0-9]+", port):
            raise ValueError(f"{what} must be HOST:PORT, got {address!r}")
        if len(port.lstrip("-0")) > 5:  # out of range, and maybe too long for int()
            raise ValueError(
                f"{_port_subject(what)} must be in {lowest}..65535, got "
                f"{'a negative' if port.startswith('-') else 'a'} number of "
                f"{len(port.lstrip('-'))} digits"
            )
        return host.strip("[]") or "127.0.0.1", _check_port(int(port), what, lowest)
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if isinstance(host, str) and isinstance(port, int) and not isinstance(port, bool):
            return host, _check_port(port, what, lowest)
    raise TypeError(f"{what} must be (host, port), 'host:port' or a server, got {value!r}")


def _check_port(port: object, what: str, lowest: int = 0) -> int:
    """Return `port` if it is an int in lowest..65535; raise naming `what` if not.

    A port to listen on may be 0 (any free port); one to connect to may not.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{what} must be an int in {lowest}..65535, got {port!r}")
    if not lowest <= port <= 65535:
        raise ValueError(f"{_port_subject(what)} must be in {lowest}..65535, got {port}")
    return port


def _port_subject(what: str) -> str:
    """How a range error names the port of `what`."""
    return "port" if what == "port" else f"{what}: the port"


#: Where Linux keeps the range of ports that connect() and bind(port 0) take from.
_EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
#: The lowest port `_bind_port` picks: below it, only root may bind.
_LOWEST_PICK = 1024
#: How many ports `_bind_port` tries before it lets the kernel pick.
_PICKS = 100

# Not the global generator, which a test may seed, nor one from the proxy's seed,
# which is for faults: two proxies with one seed would pick the same ports.
_port_rng = random.Random()
if hasattr(os, "register_at_fork"):  # as random's own: a child picks its own ports
    os.register_at_fork(after_in_child=_port_rng.seed)


def _ephemeral_low() -> int | None:
    """The lowest port of the kernel's ephemeral range; None where it is not known."""
    try:
        with open(_EPHEMERAL_RANGE_FILE, encoding="ascii") as file:
            return int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bind_port(port: int, bind: Callable[[int], socket.socket]) -> socket.socket:
    """Return ``bind(port)``; for port 0, bind a free port below the ephemeral range.

    A client's connect() binds its socket to a free port of the kernel's
    ephemeral range.  A proxy's port there, closed by ``down()`` or
    ``Unreachable()``, is free, and the client's socket can get it and connect to
    itself (a TCP simultaneous open; a UDP socket reads its own datagram) instead
    of being refused.  No such bind takes a port below the range.

    *bind* makes a socket bound to the port it is given (and, for TCP, listening),
    closing it if that fails: with SO_REUSEADDR two TCP sockets that do not listen
    can bind one port, and listen() fails for the second to call it.  Taken and
    forbidden ports are skipped; where the range is not known (not Linux), or none
    of `_PICKS` random ports works, the kernel picks as for port 0.
    """
    low = _ephemeral_low() if port == 0 else None
    if low is not None and low > _LOWEST_PICK:
        for _ in range(_PICKS):
            try:
                return bind(_port_rng.randrange(_LOWEST_PICK, low))
            except OSError as error:
                if error.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
    return bind(port)


def _parse_upstream(value: object, kind: str, what: str = "upstream") -> Address | str:
    """Like `_parse_address`, but a TCP proxy also accepts a Unix socket path.

    Messages name the value `what` (the command line's ``--upstream``).
    """
    address = getattr(value, "address", value)
    if isinstance(address, os.PathLike):
        address = os.fspath(address)
    if isinstance(address, str) and address.startswith(("/", "./", "\0")):
        if kind != "tcp":
            raise ValueError(f"a UDP proxy needs a (host, port) {what}, got {address!r}")
        if not address.startswith("\0") and "\0" in address:
            # connect() would stop at it and reach the shorter path (an abstract name may
            # hold null bytes: only its first one sets it apart).
            raise ValueError(f"{what} path must not contain a null byte, got {address!r}")
        return address
    if kind == "tcp" and isinstance(address, str) and ":" not in address:
        raise ValueError(
            f"{what} must be HOST:PORT, or a Unix socket path starting with / or ./ "
            f"(a TCP proxy), got {address!r}"
        )
    return _parse_address(value, what, lowest=1)


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


def _unread_bytes(transport: asyncio.BaseTransport | None) -> int:
    """Bytes waiting unread in *transport*'s socket; 0 where that cannot be known."""
    sock = None if transport is None else transport.get_extra_info("socket")
    try:
        import fcntl
        import termios

        answer = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")  # type: ignore[union-attr]
        return int(struct.unpack("i", answer)[0])
    except (ImportError, AttributeError, OSError, ValueError):  # no socket, or not POSIX
        return 0


def _write_eof(transport: asyncio.Transport) -> OSError | None:
    """Send EOF; return the error if the peer had reset the connection already.

    asyncio's ``write_eof()`` raises what ``shutdown()`` raised (``ENOTCONN``
    once an RST has arrived); the reset itself is read, and handled, as ever.
    """
    try:
        transport.write_eof()
    except OSError as error:
        return error
    return None


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
