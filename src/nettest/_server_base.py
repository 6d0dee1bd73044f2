"""What every loopback server shares: address checks, sockets, life cycle, fixture factories.

Private helpers for `_servers`, `_stream_server`, `_udp`, `_threads` and `_prebound`.

Each public server is a family crossed with an address:

================  =====================  ====================
..                `_LoopbackHost` (IP)   `_UnixPath` (Unix)
================  =====================  ====================
`_StreamServer`   `TCPServer`            `UnixServer`
`_DatagramServer` `UDPServer`            `UnixDatagramServer`
================  =====================  ====================

Both families derive from `_LoopbackServer`, the life cycle (start, the
hygiene gate's close, the unclosed-resource warning); the address mixins make
and bind the socket, which is of the family's ``_socket_type``.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import functools
import importlib
import ipaddress
import os
import select
import shutil
import socket
import struct
import sys
import tempfile
import threading
import typing
import warnings
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from ._endpoint import check_bool as check_bool
from ._handlers import handler_error
from ._hygiene import dropped_open, parts_of, track
from ._processes import pid_of_tag, process_tag, remove_dead_processes_dirs
from ._proxy_sockets import _check_port
from ._recording import check_loop, format_address, refuse_without_a_running_loop

#: Longest Unix socket path, in bytes, without the terminating NUL.
#: Linux's ``sun_path`` holds 108 bytes; the BSDs and macOS hold 104.
UNIX_PATH_MAX = 107 if sys.platform.startswith("linux") else 103

#: A server's life: ``closing`` only while a stream server's teardown runs.
_Status = typing.Literal["new", "starting", "open", "closing", "closed"]


class NoIPv6LoopbackError(OSError):
    """This host cannot bind ``::1``: IPv6 is switched off (some containers and CI runners).

    Raised by what binds ``::1`` outside a fixture (`TCPServer`, `FaultProxy`,
    `BoundSocket`, `BlackholePort` and the others); the fixtures skip the test
    instead.  It is an `OSError`, as the failed ``bind()`` would have been.
    """


@functools.lru_cache(maxsize=1)
def has_ipv6_loopback() -> bool:
    """Return whether this host can bind the IPv6 loopback address ``::1``.

    Use it to skip IPv6 tests where IPv6 is disabled (some containers and CI
    runners); nettest's fixtures already skip when asked for ``::1`` there.

    Example::

        @pytest.mark.skipif(not nettest.has_ipv6_loopback(), reason="no ::1")
        async def test_v6(tcp_server): ...
    """
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


#: A test suite makes its servers on the same few hosts: parse each once.
_ip_address = functools.lru_cache(maxsize=64)(ipaddress.ip_address)


def check_host(
    host: str,
    *,
    allow_remote: bool,
    multicast: bool = False,
    name: str = "host",
    remote_option: bool = True,
) -> socket.AddressFamily:
    """Check ``host`` is a literal loopback address (unless `allow_remote`); return its family.

    ``name`` is the parameter the errors name (``group``, ``interface``).  The
    error for a remote address suggests ``allow_remote=True`` only where the
    caller takes it (`remote_option`).
    """
    if not isinstance(host, str):
        raise TypeError(f"{name} must be a str, got {type(host).__name__}")
    check_bool("allow_remote", allow_remote)
    try:
        address = _ip_address(host)
    except ValueError:
        raise ValueError(
            f"{name} must be a literal IP address such as '127.0.0.1' or '::1', got {host!r}: "
            "a name like 'localhost' may resolve to ::1 while the server listens on IPv4"
        ) from None
    if address.is_loopback and getattr(address, "scope_id", None):
        bare = host.partition("%")[0]
        raise ValueError(
            f"{name} {host!r} has a scope id, which a loopback address does not take: "
            f"write {bare!r}"
        )
    if not (address.is_loopback or (multicast and address.is_multicast) or allow_remote):
        if not remote_option:
            raise ValueError(
                f"{name} {host!r} is not a loopback address: only loopback addresses "
                "(127.0.0.0/8 and ::1) are accepted here"
            )
        raise ValueError(
            f"{name} {host!r} is not a loopback address; what listens on it can be reached "
            "from other machines. Pass allow_remote=True if you mean it"
        )
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


#: The largest C ``int``: socket options and ``listen()``'s backlog are C ints.
INT_MAX = 2**31 - 1


def _check_buffer(name: str, value: object) -> None:
    if value is not None:
        _check_int(name, value, "(bytes) or None", high=INT_MAX)


def _check_int(
    name: str, value: object, unit: str = "", *, low: int = 1, high: int | None = None
) -> None:
    """Raise unless ``value`` is an int in ``low``..``high``, naming ``name`` and that range.

    TypeError for another type (a bool or a float included), ValueError out of range.
    """
    accepted = f"an int >= {low}" if high is None else f"an int from {low} to {high}"
    if unit:
        accepted += f" {unit}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {accepted}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")


def set_reset_on_close(transport: asyncio.BaseTransport) -> None:
    """Set SO_LINGER(1, 0) on the transport's socket, so that closing it sends RST."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def close_transports_after_their_loop(transports: Sequence[asyncio.BaseTransport]) -> None:
    """Close a connection's socket and leave its transports closed, their loop having closed.

    ``transports`` starts with the one that owns the socket, then the TLS
    transport over it, if any.  Nothing can run on a closed loop: ``close()`` and
    ``abort()`` schedule the callback that closes the socket (``connection_lost``),
    and raise RuntimeError.  So the socket is closed under the transports;
    ``abort()`` still marks each one closing, the socket's
    first, so that the TLS one does not try to schedule (``is_closing()`` is what
    a StreamWriter's finaliser checks); and the socket's transport lets go of it,
    as that callback would have: asyncio's transports warn "unclosed transport"
    when collected while they hold one (``_SelectorTransport.__del__``).
    """
    sock = transports[0].get_extra_info("socket")
    # asyncio hands out a TransportSocket wrapper, which cannot close; a TLS
    # transport whose own socket transport has closed hands out None.
    if sock is not None:
        with contextlib.suppress(OSError):
            getattr(sock, "_sock", sock).close()
    for transport in transports:
        with contextlib.suppress(Exception):
            typing.cast("asyncio.WriteTransport", transport).abort()
        if getattr(transport, "_sock", None) is not None:
            transport._sock = None  # type: ignore[attr-defined]
        if isinstance(transport, asyncio.sslproto._SSLProtocolTransport):
            # Python 3.10's abort() marks it closed only after the call that
            # fails on a closed loop: it would warn "unclosed transport".
            transport._closed = True


def _loop_thread_call(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
    """Call ``fn`` on `loop`'s thread (now, if that is this thread or no thread runs it)."""
    if loop.is_closed():
        return
    running_here = False
    with contextlib.suppress(RuntimeError):
        running_here = asyncio.get_running_loop() is loop
    if loop.is_running() and not running_here:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn)
        return
    with contextlib.suppress(Exception):
        fn()


def _apply_buffers(sock: socket.socket, rcvbuf: int | None, sndbuf: int | None) -> None:
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)


class _closed_on_error:
    """Close ``sock`` if the block raises: a socket half set up must not leak.

    A class, not a generator: every server's socket is made inside one.
    """

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def __enter__(self) -> socket.socket:
        return self._sock

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self._sock.close()


def _loopback_socket(
    family: socket.AddressFamily,
    kind: socket.SocketKind,
    host: str,
    *,
    has_ipv6: Callable[[], bool],
) -> socket.socket:
    """Make an unbound IP socket for ``host``, IPv6-only for an IPv6 host.

    Its ``proto`` is ``IPPROTO_TCP`` or ``IPPROTO_UDP``, as ``getaddrinfo`` gives
    it to a socket ``asyncio.start_server`` makes: asyncio turns Nagle's
    algorithm off only on TCP sockets whose ``proto`` says so, and an accepted
    socket takes its listener's.  With ``proto`` 0, a server on it (a
    ``bound_tcp_socket`` given to ``create_server(sock=...)``) sent each small
    write after the peer's delayed ACK.

    ``has_ipv6`` is `has_ipv6_loopback` as the calling module sees it (tests
    patch it there to play a host without IPv6).

    Raises:
        NoIPv6LoopbackError: ``host`` is IPv6 and ``has_ipv6()`` is false (fixtures skip).
    """
    if family == socket.AF_INET6 and not has_ipv6():
        raise NoIPv6LoopbackError(
            f"IPv6 loopback ::1 is not available on this host (host={host!r})"
        )
    proto = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else socket.IPPROTO_UDP
    sock = socket.socket(family, kind, proto)
    if family == socket.AF_INET6:
        with _closed_on_error(sock):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


def _unix_dirs_parent() -> str:
    """Where the private directories for Unix sockets go: /tmp, short enough for ``sun_path``."""
    return "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()


def _private_dir() -> str:
    """Make a short private directory for Unix sockets (mode 0700), named after this process.

    The name is ``nt-<pid>-<PID namespace>-<random>`` (`process_tag`), so that
    `remove_dead_processes_unix_dirs` can remove it at the next session's start
    if this process is killed first.
    """
    return tempfile.mkdtemp(prefix=f"nt-{process_tag()}-", dir=_unix_dirs_parent())


def remove_dead_processes_unix_dirs() -> None:
    """Remove the Unix-socket directories of processes that died before removing them.

    A process killed (``kill -9``, or pytest-timeout's thread method, which calls
    ``os._exit``) never runs its teardown, so its ``nt-<pid>-<namespace>-<random>``
    directories (made by `_private_dir`, for servers and ``unix_socket_path``)
    stay.  This removes only directories with that name, this user's, and named
    after a process of this PID namespace that no longer lives
    (`remove_dead_processes_dirs`): never another live process's, nor one made
    in another PID namespace (a container sharing ``/tmp``, whose pids this one
    cannot probe), nor an older nettest's, nor a symlink.  The TLS key
    directories are swept the same way (``_tls._remove_dead_processes_dirs``).
    """
    remove_dead_processes_dirs(_unix_dirs_parent(), _unix_dir_pid)


def _unix_dir_pid(name: str) -> int | None:
    parts = name.split("-")
    # mkdtemp's random part has no "-": anything else is not nettest's.
    if len(parts) != 4 or parts[0] != "nt" or not parts[3]:
        return None
    return pid_of_tag(parts[1], parts[2])


def _file_id(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path`` (not following a symlink), or None if it is gone."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _remove_unix_files(
    directory: str | None, directory_id: tuple[int, int] | None, path: str, bound: tuple[int, int]
) -> None:
    """Remove what a Unix server made on disk: its private directory, or else its socket file.

    Each only while it is still the one the server made (same device and inode):
    never a path someone else has made or replaced since.  Runs once, at close or
    when a server dropped while open is garbage-collected (see `_UnixPath`).
    """
    if directory is not None:
        if _file_id(directory) == directory_id:
            shutil.rmtree(directory, ignore_errors=True)
    elif _file_id(path) == bound:
        with contextlib.suppress(OSError):
            os.unlink(path)


def socket_has_input(sock: Any) -> bool:
    """Whether a socket (or a transport's ``socket`` extra) has bytes, EOF or an error to read.

    Teardown uses it to let the loop read what a client sent before the test ended
    (a blocking client sends without the loop running).
    """
    try:
        fd = -1 if sock is None else sock.fileno()
        if fd < 0:
            return False
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def check_unix_path(path: str) -> str:
    """Return ``path`` if it fits in ``sun_path``; raise ValueError naming the limit if not."""
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise ValueError(
            f"Unix socket path is {size} bytes, over the {UNIX_PATH_MAX}-byte limit of "
            f"sun_path on this platform: {path!r}. Use a shorter path (nettest's default "
            "is a short private directory under /tmp)"
        )
    return path


class _LoopbackHost:
    """Where an IP server binds: a literal loopback host, and the port the kernel picks.

    The address half of `TCPServer` and `UDPServer`; mix it in before the server
    base, call `_init_host` in ``__init__`` and `_host_socket` from ``_make_socket``.
    """

    _name: str
    _socket_type: socket.SocketKind
    _sock: socket.socket | None
    _family: socket.AddressFamily
    _host: str
    _port: int
    _reuse_port: bool

    def _init_host(self, host: str, *, allow_remote: bool, port: object = 0) -> None:
        self._family = check_host(host, allow_remote=allow_remote)
        self._host = host
        self._bind_to = _check_port(port, "port")
        self._port = 0

    def _bind_host(self, sock: socket.socket, host: str | None = None) -> None:
        """Bind ``sock`` to the port asked for (0: a free one), on ``host`` or the server's.

        A TCP server sets ``SO_REUSEADDR``, as asyncio's servers do, so that a
        server can listen on the port of one closed a moment ago: Linux lets it
        only if the connections left in TIME_WAIT had it too.  (On a UDP socket
        it would let two servers share the port.)
        """
        host = self._host if host is None else host
        port = self._bind_to
        if self._socket_type == socket.SOCK_STREAM and sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if not port:
                raise
            raise OSError(
                error.errno, f"{error.strerror}: {self._name} cannot bind port={port} on {host}"
            ) from None
        self._port = sock.getsockname()[1]

    def _init_reuse_port(self, reuse_port: bool) -> None:
        check_bool("reuse_port", reuse_port)
        if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
            raise ValueError("reuse_port=True: SO_REUSEPORT is not available on this platform")
        self._reuse_port = reuse_port

    def _host_socket(self, *, has_ipv6: Callable[[], bool]) -> socket.socket:
        """Make the unbound socket, with SO_REUSEPORT if asked (see `_loopback_socket`)."""
        sock = _loopback_socket(self._family, self._socket_type, self._host, has_ipv6=has_ipv6)
        if self._reuse_port:
            with _closed_on_error(sock):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock

    @property
    def port(self) -> int:
        """The port the server bound (0 before `start`)."""
        return self._port

    @property
    def sockname(self) -> tuple[Any, ...]:
        """The socket's full local address (a 4-tuple for IPv6)."""
        if self._sock is None:
            raise RuntimeError(f"{self._name} is not started")
        return tuple(self._sock.getsockname())


class _UnixPath:
    """Where a Unix server binds: a path, a fresh private directory, or an abstract name.

    The address half of `UnixServer` and `UnixDatagramServer`; mix it in before
    the server base and call `_init_unix_path` first in ``__init__``.  It makes
    and binds the server's socket.

    What it made on disk (the private directory, or the socket file at a path
    you gave) is removed when the server closes, or else when the server is
    garbage-collected: a server dropped while open, after its loop closed, still
    warns and is reported by the hygiene gate, but leaves no ``/tmp/nt-*``
    directory behind.  A process killed first leaves it, for the next session
    to remove (`remove_dead_processes_unix_dirs`).
    """

    _socket_type: socket.SocketKind
    _rcvbuf: int | None
    _sndbuf: int | None
    _path: str
    _abstract: bool
    _dir: str | None
    _dir_id: tuple[int, int] | None
    _bound: tuple[int, int] | None
    _bound_at: str | None
    _removal: weakref.finalize[..., _UnixPath] | None

    def _init_unix_path(self, path: str | os.PathLike[str] | None, abstract: bool) -> None:
        if not hasattr(socket, "AF_UNIX"):
            raise ValueError("Unix sockets are not available on this platform")
        check_bool("abstract", abstract)
        if abstract and path is not None:
            raise ValueError("give either path or abstract=True, not both")
        if abstract and not sys.platform.startswith("linux"):
            raise ValueError("abstract=True: the abstract namespace exists only on Linux")
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str, an os.PathLike or None, got {path!r}")
        fspath = os.fspath(path) if path is not None else ""
        if not isinstance(fspath, str):
            raise TypeError(f"path must be a str path, not bytes: {path!r}")
        if path is not None and not fspath:
            raise ValueError("path must not be empty: pass None for a private temporary one")
        if "\0" in fspath:
            # bind() would stop at the null byte and make a socket at the shorter path.
            raise ValueError(
                f"path must not contain a null byte, got {fspath!r}: for Linux's abstract "
                "namespace pass abstract=True"
            )
        self._path = check_unix_path(fspath) if fspath else ""
        self._abstract = bool(abstract)
        self._dir = None
        self._dir_id = None
        # (device, inode) of the socket file this server bound: the only file it removes.
        self._bound = None
        # Where the first bind put it, made absolute: a bind again goes there.
        self._bound_at = None
        # Removes what the server made on disk, at close or when it is collected.
        self._removal = None

    def _make_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, self._socket_type)
        with _closed_on_error(sock):
            _apply_buffers(sock, self._rcvbuf, self._sndbuf)
            if self._abstract:
                sock.bind("")  # Linux autobind: a unique abstract name
                self._path = os.fsdecode(sock.getsockname())
            else:
                if not self._path:
                    self._dir = _private_dir()
                    self._dir_id = _file_id(self._dir)
                    self._path = check_unix_path(os.path.join(self._dir, "s"))
                # A relative path is bound where the process is now: the clean-up
                # must find it after a chdir() (joined, not normalised: the kernel
                # resolves "link/.." through the link), and so must a bind again.
                here = os.path.join(os.getcwd(), self._path)
                first = self._bound_at
                target = self._path if first is None or first == here else check_unix_path(first)
                try:
                    sock.bind(target)
                except OSError as error:  # bind() names no path: say which one
                    raise OSError(error.errno, error.strerror, target) from None
                bound_at = self._bound_at = here if first is None else first
                info = os.stat(bound_at)
                self._bound = (info.st_dev, info.st_ino)
                # Not a method of self: the finalizer must not keep the server alive.
                self._removal = weakref.finalize(
                    self, _remove_unix_files, self._dir, self._dir_id, bound_at, self._bound
                )
        return sock

    def _unbind(self) -> None:
        """Remove the socket file this object bound, keeping its private directory.

        For a socket closed and another bound at the same path at once (a
        proxy's `down` and `up`): bind() fails where a file is.
        """
        removal, self._removal = self._removal, None
        bound_at, bound = self._bound_at, self._bound
        # detach() is None once the finalizer has run: the file is gone already.
        if removal is not None and removal.detach() is not None and bound_at and bound:
            _remove_unix_files(None, None, bound_at, bound)
        self._bound = None

    def _cleanup(self) -> None:
        removal, self._removal = self._removal, None
        if removal is not None:
            removal()
        elif self._dir is not None:  # the private directory, when the bind in it failed
            shutil.rmtree(self._dir, ignore_errors=True)
        # A failed bind at a path you gave removes nothing: the file there is not ours.
        self._dir = None
        self._dir_id = None
        self._bound = None

    def _describe(self) -> str:
        return format_address(self._path)

    @property
    def path(self) -> str:
        """The socket's path (for abstract sockets, a str starting with NUL)."""
        return self._path


_L = typing.TypeVar("_L", bound="_LoopbackServer")


class _LoopbackServer:
    """A server's life cycle, stream or datagram: bind its own socket, serve it, close.

    ``start`` binds a socket of the subclass's making (`_make_socket`), serves it
    on the running loop (`_serve`), names the server after its address
    (`_describe`) and registers it with the hygiene gate.  If either step fails
    the server is closed and what it made is removed (`_cleanup`).  The gate's
    close aborts everything on the server's loop (`_abort_everything`), or, when
    that loop has gone, closes the sockets under their transports
    (`_end_connections_after_its_loop`, then its own).
    """

    _kind = "server"
    #: The hygiene gate's entry, for `dropped_open` from ``__del__``.
    _gate_entry: object = None
    #: ``SOCK_STREAM`` or ``SOCK_DGRAM``: what `_make_socket` makes.
    _socket_type: socket.SocketKind

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._status: _Status = "new"
        self._name = f"{self._kind} (not started)"

    # -- to be provided by subclasses ----------------------------------------

    def _make_socket(self) -> socket.socket:
        raise NotImplementedError  # pragma: no cover

    async def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """Serve the bound socket on `loop` (its transport now owns it)."""
        raise NotImplementedError  # pragma: no cover

    def _describe(self) -> str:
        raise NotImplementedError  # pragma: no cover

    def _serving(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start what runs beside the server, once it is open and named."""

    def _abort_everything(self) -> None:
        raise NotImplementedError  # pragma: no cover

    def _cleanup(self) -> None:
        """Remove what the server made besides sockets (a private directory)."""

    def _end_connections_after_its_loop(self) -> None:
        """End what is still open beside the socket, the server's loop having closed."""

    def _check_loop(self) -> None:
        """Raise RuntimeError unless the server was started on the running loop."""
        if self._loop is None:
            raise RuntimeError(f"{self._name} is not started; await server.start() first")
        check_loop(self._name, self._loop)

    # -- life cycle ------------------------------------------------------------

    async def start(self: _L) -> _L:
        """Bind and start serving on the running event loop; return the server."""
        if self._status != "new":
            raise RuntimeError(f"{self._name} was already started")
        self._status = "starting"
        loop = self._loop = asyncio.get_running_loop()
        try:
            sock = self._sock = self._make_socket()
        except BaseException:
            self._status = "closed"
            self._cleanup()
            raise
        try:
            await self._serve(loop, sock)
        except BaseException:
            sock.close()
            self._status = "closed"
            self._cleanup()
            raise
        self._name = f"{self._kind} {self._describe()}"
        self._status = "open"
        self._serving(loop)
        track(
            self,
            what=self._name,
            is_open=lambda s: s._status in ("open", "closing"),
            close=lambda s: s._gate_close(),
        )
        parts_of(self, sock)
        return self

    async def __aenter__(self: _L) -> _L:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        raise NotImplementedError  # pragma: no cover

    @property
    def errors(self) -> tuple[BaseException, ...]:
        raise NotImplementedError  # pragma: no cover

    def __del__(self) -> None:
        # dropped_open(): unless the gate reports it.
        if getattr(self, "_status", "new") in ("open", "closing") and not dropped_open(self):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=1)

    @property
    def closed(self) -> bool:
        """Whether the server has been closed (or failed to start)."""
        return self._status == "closed"

    def _gate_close(self) -> None:
        """The hygiene gate's close: abort all on the loop, or close the socket if it is gone."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            _loop_thread_call(loop, self._abort_everything)
            return
        # The loop closed under the server: nothing can run on it, so its
        # connections' sockets are closed under their transports, then its own.
        self._end_connections_after_its_loop()
        if self._sock is not None:
            self._sock.close()
        if self._status != "closed":
            self._status = "closed"
            self._cleanup()

    def _close_after_its_loop(self) -> None:
        """Close a server whose event loop has closed; raise what its handlers raised.

        Nothing can run on a closed loop, so this closes the sockets, the server's
        and those of the connections still open (recorded as ``ABORTED``; their
        handlers are not told), and removes the server's files (as the hygiene
        gate would), then raises a `HandlerError` with the errors the handlers had
        raised until then.
        """
        self._gate_close()
        errors = self.errors
        if errors:
            lines = [
                f"{self._name}: {len(errors)} handler error{'s' if len(errors) != 1 else ''} "
                "(its event loop had closed before teardown, so only its sockets were closed):"
            ]
            for exc in errors:
                detail = str(exc).replace("\n", "\n    ")
                lines.append(f"  {type(exc).__name__}: {detail}")
            raise handler_error(lines, errors)


class _Closable(typing.Protocol):
    """What `AsyncServerFactory` makes: started on a loop and closed on that loop."""

    @property
    def closed(self) -> bool: ...

    async def start(self) -> Any: ...

    async def aclose(self) -> None: ...

    def _close_after_its_loop(self) -> None: ...


def _exception_group(message: str, errors: Sequence[Exception]) -> Exception:
    """Return an `ExceptionGroup` of ``errors`` (on 3.10, the ``exceptiongroup`` backport's).

    pytest depends on the backport on Python 3.10 and raises its groups itself
    (several failing finalizers of one test), so it is always there.
    """
    if sys.version_info >= (3, 11):
        return ExceptionGroup(message, errors)  # noqa: F821 (a builtin from 3.11)
    backport = importlib.import_module("exceptiongroup")
    return typing.cast("Exception", backport.ExceptionGroup(message, errors))


def raise_all(errors: Sequence[Exception], who: str) -> None:
    """Raise what closing ``who``'s servers raised, so that the report shows every failure.

    One error is raised as it is (a `HandlerError`, usually); several, in the
    order their servers were started, as an `ExceptionGroup` that pytest prints
    whole, each with its own traceback and cause.
    """
    __tracebackhide__ = True  # the handlers' errors are the report, not these frames
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise _exception_group(f"{who}: {len(errors)} servers failed at teardown", errors)


def _run_to_the_end(loop: asyncio.AbstractEventLoop, server: _Closable) -> asyncio.Task[None]:
    """Run ``server.aclose()`` on ``loop``, which is not running; return its finished task."""
    task = loop.create_task(server.aclose())
    loop.run_until_complete(asyncio.wait({task}))
    return task


def _close_elsewhere(loop: asyncio.AbstractEventLoop, server: _Closable) -> None:
    """Close a server that runs on another loop than its fixture's, on that loop.

    The loop is not running (teardown is synchronous), so the close runs it here;
    if the loop has closed already, only the socket can be closed.  What the
    close raises (the handlers' errors) is raised from here, whose frame is hidden,
    and not from inside the loop's ``run_until_complete``: the report starts at
    the handler.
    """
    __tracebackhide__ = True
    if server.closed:
        return
    if loop.is_closed():
        server._close_after_its_loop()
        return
    if loop.is_running():
        asyncio.run_coroutine_threadsafe(server.aclose(), loop).result()
        return
    running_here = None
    with contextlib.suppress(RuntimeError):
        running_here = asyncio.get_running_loop()
    if running_here is None:
        _run_to_the_end(loop, server).result()
        return
    error: list[BaseException] = []

    def run() -> None:
        try:
            _run_to_the_end(loop, server).result()
        except BaseException as exc:
            error.append(exc)

    # Not in this thread: another loop is running here.
    thread = threading.Thread(target=run, name="nettest-close")
    thread.start()
    thread.join()
    if error:
        raise error[0]


#: The fixtures that have a thread-backed twin named ``<fixture>_thread``.
_THREAD_TWINS = frozenset({"tcp_server", "unix_server", "udp_server", "fault_proxy"})


#: The servers a test's fixtures started: a failed test's report shows their transcripts.
_SERVERS_KEY = pytest.StashKey[list[Any]]()

#: A transcript longer than this many lines is shown as its first and last halves.
TRANSCRIPT_LINES_SHOWN = 40
#: The most servers a report shows: the last ones started (under hypothesis, which
#: runs the failing example last, its servers are the last, but maybe not all five).
SERVERS_SHOWN = 5


def report_transcript_of(item: pytest.Item, server: object) -> None:
    """Show `server`'s transcript in `item`'s report if it fails (see `format_transcripts_for`)."""
    item.stash.setdefault(_SERVERS_KEY, []).append(server)


def forget_servers(item: pytest.Item) -> None:
    """Let go of the servers an earlier run of `item` started (a rerun starts afresh)."""
    if _SERVERS_KEY in item.stash:
        del item.stash[_SERVERS_KEY]


def format_transcripts_for(item: pytest.Item) -> str | None:
    """The transcripts of the servers a failed test's fixtures started, or None.

    What each server received and sent, as ``server.transcript()`` gives it: the
    first thing to read when a client under test misbehaved.  The last
    `SERVERS_SHOWN` servers; a long transcript keeps its first and last lines.
    """
    servers = item.stash.get(_SERVERS_KEY, None)
    if not servers:
        return None
    parts = [_cut_transcript(server) for server in servers[-SERVERS_SHOWN:]]
    if len(servers) > SERVERS_SHOWN:
        earlier = len(servers) - SERVERS_SHOWN
        parts.insert(0, f"({earlier} server{'s' if earlier != 1 else ''} started before these)")
    return "\n\n".join(parts)


def _cut_transcript(server: Any) -> str:
    """`server`'s repr and transcript, cut to about `TRANSCRIPT_LINES_SHOWN` lines."""
    header = repr(server)
    try:
        lines = server.transcript().splitlines()
    except Exception as error:  # the report must not fail for it
        return f"{header}\n(its transcript() raised {error!r})"
    if lines and lines[0] in header:  # a datagram server's transcript names it first
        del lines[0]
    half = TRANSCRIPT_LINES_SHOWN // 2
    if len(lines) - 2 * half < 2:  # a line saying one line is left out saves none
        return "\n".join([header, *lines])
    head, tail = lines[:half], lines[-half:]
    left_out = len(lines) - 2 * half
    title = _connection_of(lines, len(lines) - half)
    if title is not None:
        tail = [f"{title} (continued)", *tail[1:]]
        left_out += 1
    return "\n".join(
        [header, *head, f"... {left_out} lines left out (server.transcript() has all)", *tail]
    )


def _connection_of(lines: list[str], start: int) -> str | None:
    """The title ("#3 peer -> local") of the connection whose events ``lines[start]`` goes on.

    None if that line is a title itself, or not a connection's event (a stream
    server lists its failed TLS handshakes after its connections, unindented).
    """
    if not lines[start].startswith(" "):
        return None
    for line in reversed(lines[:start]):
        if not line.startswith(" "):
            return line if line.startswith("#") else None
    return None


class AsyncServerFactory:
    """A fixture's factory: starts servers on the running loop and closes them at teardown.

    A server started on the fixture's own loop is closed by the fixture's teardown
    (`aclose`).  One started on another loop, which is the test's loop when
    ``asyncio_default_fixture_loop_scope`` is wider than the test's loop scope, is
    closed on its loop as the test's teardown begins: pytest-asyncio closes a
    function-scoped loop before the teardown of a fixture set up before it, and
    the servers on it would be dropped open with their handlers' errors unseen.
    """

    def __init__(self, request: pytest.FixtureRequest, make: Callable[..., Any]) -> None:
        self._request = request
        self._make = make
        self._servers: list[_Closable] = []
        self._loop = asyncio.get_running_loop()
        self._name = request.fixturename or "the server fixture"

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """Return the coroutine that starts the server; refuse at once without a loop.

        A synchronous test that forgets it cannot await would otherwise pass, its
        server never started, with only a "never awaited" warning to show for it.
        """
        __tracebackhide__ = True  # the test's call is the report
        name = self._name
        twin = f"; a synchronous test can use {name}_thread" if name in _THREAD_TWINS else ""
        refuse_without_a_running_loop(
            lambda: (
                f"{name}(...) starts its server on the running event loop, and there "
                f"is none: await it in an async test{twin}"
            )
        )
        return self._start(*args, **kwargs)

    async def _start(self, *args: Any, **kwargs: Any) -> Any:
        server = self._make(*args, **kwargs)
        try:
            await server.start()
        except NoIPv6LoopbackError as exc:
            pytest.skip(str(exc))
        if hasattr(server, "transcript"):  # a server, not a proxy, which has traces
            report_transcript_of(self._request.node, server)
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            self._servers.append(server)
        else:
            # The test's finalizers run last in, first out, so this one runs before
            # those of every fixture set up so far, the loop's own included, and
            # after those of fixtures set up later (one wrapping this server, say).
            self._request.node.addfinalizer(functools.partial(_close_elsewhere, loop, server))
        return server

    async def aclose(self) -> None:
        """Close every server made on the fixture's loop; raise what they raised.

        Raises:
            HandlerError: a server's handlers failed.
            ExceptionGroup: several servers failed; it holds each one's error.
        """
        __tracebackhide__ = True  # the handlers' errors are the report, not these frames
        errors: list[Exception] = []
        for server in reversed(self._servers):
            try:
                await server.aclose()
            except Exception as exc:
                errors.append(exc)
        raise_all(errors[::-1], self._name)
