"""What every memory transport shares: its socket extra, its addresses, and its flow control.

:class:`MemorySocket` is the ``socket`` extra of both stream and datagram memory
transports.  The address functions check and resolve addresses as a socket's
``bind()`` and ``sendto()`` do, without DNS: numeric forms and ``localhost``
(from the hosts file, where the C library looks first) resolve, any other name
stays as it is.  :class:`FlowControlled` wires a :class:`nettest._flow.WriteFlow` to
the protocol's ``pause_writing``/``resume_writing`` exactly as asyncio's
``_FlowControlMixin`` does (errors go to the loop's exception handler, never to
the writer), and gives both transports the flow-control timeline, its
assertions, ``get_extra_info``, the ``ResourceWarning`` of an unclosed transport
and the hygiene gate's hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import itertools
import operator
import os
import socket
import struct
import typing
import warnings
from asyncio import transports as _asyncio_transports
from collections.abc import Callable
from typing import Any

from ._flow import WriteFlow
from ._hygiene import dropped_open

if typing.TYPE_CHECKING:
    from ._flow import FlowEvent, ReadingEvent

__all__ = [
    "MAX_DATAGRAM_SIZE",
    "FlowControlled",
    "MemorySocket",
    "address_family",
    "bound_address",
    "check_count",
    "connection_addresses",
    "datagram_address",
    "datagram_key",
    "family_of_ends",
    "is_wildcard",
    "loopback",
    "os_error",
    "reaches_wildcard",
    "stream_addresses",
]

_ports = itertools.count()
_DEFAULT_SERVER_PORT = 8080
AF_UNIX: int = getattr(socket, "AF_UNIX", -1)
_FAMILY_NAMES = {socket.AF_INET: "AF_INET", socket.AF_INET6: "AF_INET6", AF_UNIX: "AF_UNIX"}

#: What an address of each family is, for an error about one of the wrong shape.
_FAMILY_SHAPES = {
    socket.AF_INET: "(host, port), the port an int",
    socket.AF_INET6: "(host, port[, flowinfo[, scope_id]]), the port an int",
    AF_UNIX: "a path, str or bytes",
}

#: The largest datagram one ``sendto()`` takes on Linux, per family; a larger one
#: fails with ``EMSGSIZE``.  IPv4: a 65535-byte packet less the IP and UDP headers
#: (20 + 8 bytes).  IPv6: a 65535-byte payload less the UDP header.  AF_UNIX: the
#: default send buffer (``net.core.wmem_default``, 212992 bytes) less 32.
MAX_DATAGRAM_SIZE = {socket.AF_INET: 65507, socket.AF_INET6: 65527, AF_UNIX: 212960}
#: Where the C library looks up ``localhost`` before asking DNS.
_HOSTS_FILE = "/etc/hosts"
#: What a Unix socket's address may hold (``sizeof(sun_path)`` on Linux).
_UNIX_PATH_MAX = 108


#: What asyncio calls on a protocol, by kind; a stream protocol reads with
#: ``data_received``, or ``get_buffer`` and ``buffer_updated``.
_PROTOCOL_METHODS = {
    "stream": ("connection_made", "eof_received", "connection_lost"),
    "datagram": ("connection_made", "datagram_received", "error_received", "connection_lost"),
}


def check_protocol(
    name: str, protocol: object, kind: typing.Literal["stream", "datagram"]
) -> None:
    """Raise `TypeError` now for what is no protocol of `kind`, not later in the loop.

    Duck-typed, as asyncio is: an object with the protocol's methods will do,
    subclass or not; a class is a mistake for an instance.
    """

    def has(*methods: str) -> bool:
        return all(callable(getattr(protocol, method, None)) for method in methods)

    reads = kind == "datagram" or has("data_received") or has("get_buffer", "buffer_updated")
    if isinstance(protocol, type) or not (reads and has(*_PROTOCOL_METHODS[kind])):
        base = "asyncio.DatagramProtocol" if kind == "datagram" else "asyncio.Protocol"
        raise TypeError(
            f"{name} must be a {kind} protocol (an {base} instance, "
            f"or an object with its methods), got {protocol!r}"
        )


def check_bool(name: str, value: object) -> None:
    """Raise TypeError unless ``value`` is True or False, naming ``name``.

    A switch given ``"no"`` or ``0.0`` is a mistake that truthiness would turn
    into the opposite of what was meant (``allow_remote="no"`` allows remote).
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def os_error(code: int) -> OSError:
    """Return the error a system call fails with for `code`, as the socket module raises it.

    `OSError` picks the subclass itself: ``ECONNREFUSED`` gives a
    `ConnectionRefusedError`, ``ENOENT`` a `FileNotFoundError`.
    """
    return OSError(code, os.strerror(code))


def check_count(name: str, value: object, *, unit: str = "", lowest: int = 1) -> int:
    """Return `value` if it is an int of at least `lowest` (a bool is not a count).

    Raises:
        TypeError: not an int; the message names `name` and the range.
        ValueError: below `lowest`.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {lowest}{unit}, got {value!r}")
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}{unit}, got {value!r}")
    return value


def _ephemeral_port() -> int:
    return 49152 + next(_ports) % 16384


def stream_addresses(family: int) -> tuple[Any, Any]:
    """Return realistic ``(client, server)`` addresses, with a fresh ephemeral port.

    Raises:
        TypeError: `family` is not an int.
        ValueError: `family` is not AF_INET, AF_INET6 or AF_UNIX.
    """
    if isinstance(family, bool) or not isinstance(family, int):
        raise TypeError(f"family must be AF_INET, AF_INET6 or AF_UNIX, got {family!r}")
    port = _ephemeral_port()
    if family == socket.AF_INET:
        return ("127.0.0.1", port), ("127.0.0.1", _DEFAULT_SERVER_PORT)
    if family == socket.AF_INET6:
        return ("::1", port, 0, 0), ("::1", _DEFAULT_SERVER_PORT, 0, 0)
    if family == AF_UNIX:
        return "", "/tmp/nettest-memory.sock"
    raise ValueError(f"family must be AF_INET, AF_INET6 or AF_UNIX, got {family!r}")


def datagram_address(family: int = socket.AF_INET) -> Any:
    """Return a loopback address of `family` with a fresh ephemeral port (or a path)."""
    port = _ephemeral_port()
    if family == socket.AF_INET6:
        return ("::1", port, 0, 0)
    if family == AF_UNIX:
        return f"/tmp/nettest-memory-{port}.sock"
    return ("127.0.0.1", port)


def bound_address(family: int, address: Any, *, bind: bool = True) -> Any:
    """Return `address` (checked by `address_family`) as a socket reports it.

    With `bind`, as ``getsockname()`` does after ``bind()``: port 0 becomes a fresh
    ephemeral port.  Without, as asyncio keeps a ``remote_addr`` (``getpeername()``
    then reads a wildcard host as loopback: see ``_source_of`` in ``_datagrams``).  Either
    way the host is in its numeric form (``localhost`` from the hosts file, other
    names as they are, since there is no DNS here), an IPv6 address is a 4-tuple,
    and an AF_UNIX path is a str (an abstract name stays bytes).
    """
    if family == AF_UNIX:
        if isinstance(address, str):
            return address
        path = bytes(address)
        return path if path[:1] == b"\0" else os.fsdecode(path)
    host, port = _parse_address(family, address, "")
    if bind and port == 0:
        port = _ephemeral_port()
    if not host:
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
    else:
        with contextlib.suppress(OSError):  # a name that does not resolve stays as it is
            host = _numeric_host(family, host)
    if family == socket.AF_INET6:
        # The kernel reports no flow label, and a scope only for a link-local address.
        scope_id = (*address[3:], 0)[0] if host.lower().startswith("fe80:") else 0
        return host, port, 0, scope_id
    return host, port


def loopback(family: int) -> str:
    """Return the loopback address of an IP `family`."""
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def is_wildcard(family: int, address: Any) -> bool:
    """Whether a bound IP `address` (read back by `bound_address`) is the wildcard address."""
    return family != AF_UNIX and address[0] in ("0.0.0.0", "::")


def reaches_wildcard(family: int, key: Any, port: int) -> bool:
    """Whether a datagram for `key` (from `datagram_key`) reaches an end bound to the
    wildcard address on `port`: any loopback address of the family does."""
    if family == AF_UNIX or key[1] != port:
        return False
    if family == socket.AF_INET6:  # a dual-stack socket takes IPv4-mapped loopback too
        return isinstance(key[0], str) and (key[0] == "::1" or key[0].startswith("::ffff:127."))
    return isinstance(key[0], str) and key[0].startswith("127.")


def address_family(address: Any, name: str) -> int:
    """Return the family of an end's `address`, checked as ``bind()`` checks it.

    A str or bytes is an AF_UNIX path; a 4-tuple, or a host with a colon, is IPv6;
    any other tuple is IPv4.

    Raises:
        TypeError: `address` is none of these, or an item has the wrong type; the
            message names `name`.
        ValueError: a port, flow label or path out of range.
    """
    if isinstance(address, (str, bytes, bytearray)) and AF_UNIX != -1:
        family = AF_UNIX
    elif isinstance(address, tuple) and (
        len(address) in (3, 4) or (len(address) == 2 and _has_colon(address[0]))
    ):
        family = socket.AF_INET6
    elif isinstance(address, tuple):
        family = socket.AF_INET
    else:
        raise TypeError(
            f"{name} must be a (host, port) tuple, an IPv6 (host, port, flowinfo, scope_id) "
            f"tuple or an AF_UNIX path, got {address!r}"
        )
    check_address(family, address, name)
    return family


def family_of_ends(**addresses: Any) -> int:
    """Check the addresses given for the ends of a conversation; return their family.

    None stands for a default address of the family of the others (IPv4 if none).

    Raises:
        TypeError: an address that is not one; the message names it.
        ValueError: an address out of range, or two of different families.
    """
    family: int | None = None
    first = ""
    for name, address in addresses.items():
        if address is None:
            continue
        this = address_family(address, name)
        if family is None:
            family, first = this, name
        elif this != family:
            raise ValueError(
                f"{first} and {name} must be of one family, "
                f"got {addresses[first]!r} and {address!r}"
            )
    return socket.AF_INET if family is None else family


def connection_addresses(
    family: int | None,
    client: Any,
    server: Any,
    names: tuple[str, str] = ("client_address", "server_address"),
) -> tuple[int, Any, Any]:
    """Return the family and the two ends' addresses of a memory connection.

    The family follows the addresses given, unless `family` names it; each
    address is checked as ``bind()`` checks it and read back as a connected
    socket reports it (see `bound_address`; a wildcard host is the loopback
    address the connection runs over).  A default takes `stream_addresses`'s.
    Error messages call the addresses by `names`.

    Raises:
        TypeError: `family` or an address of the wrong type, or an address of
            another family than `family`; the message names it.
        ValueError: an unknown `family`, an address out of range, or the two of
            different families.
    """
    if family is None:
        family = family_of_ends(**{names[0]: client, names[1]: server})
    ends = []
    defaults = stream_addresses(family)
    for name, address, default in zip(names, (client, server), defaults, strict=True):
        if address is None:
            ends.append(default)
            continue
        check_address(family, address, name)
        bound = bound_address(family, address)
        if is_wildcard(family, bound):
            bound = (loopback(family), *bound[1:])
        ends.append(bound)
    return family, ends[0], ends[1]


def check_address(family: int, address: Any, name: str) -> None:
    """Check `address` as ``bind()`` or ``sendto()`` on a socket of `family` would.

    Raises:
        TypeError: not an address of `family`, or an item has the wrong type; the
            message names `name`.
        ValueError: a port, flow label or path out of range, or a numeric host of
            the other IP family (which no socket of `family` can reach).
    """
    try:
        parsed = _parse_address(family, address, "")
        if family != AF_UNIX and parsed[0]:
            _numeric_host(family, parsed[0])
    except TypeError as exc:
        raise TypeError(
            f"{name} is not an {_FAMILY_NAMES[family]} address: {exc} "
            f"(one is {_FAMILY_SHAPES[family]})"
        ) from None
    except (OverflowError, OSError) as exc:
        raise ValueError(f"{name} is not an {_FAMILY_NAMES[family]} address: {exc}") from None


def _has_colon(host: object) -> bool:
    if isinstance(host, str):
        return ":" in host
    return isinstance(host, (bytes, bytearray)) and b":" in host


def datagram_key(family: int, address: Any, caller: str = "") -> Any:
    """Return where `address` leads, for comparing it with a memory end's own address.

    As ``sendto()`` on a socket of `family` checks and resolves it: the host of an
    IP address in its canonical numeric form (flow label and scope ignored, the
    unspecified address standing for loopback), or as given if it is a name other
    than ``localhost``; for AF_UNIX the path as bytes.

    Raises:
        TypeError, OverflowError: a malformed address, with the socket module's
            message (prefixed by ``caller()`` where it has one).
        OSError: a host that does not resolve (`socket.gaierror`), or a path too long.
    """
    parsed = _parse_address(family, address, caller)
    if family == AF_UNIX:
        return parsed
    host, port = parsed
    return _resolve_host(family, host), port


def _parse_address(family: int, address: Any, caller: str) -> Any:
    """Check `address` as the socket module does before a system call; return its parts."""
    prefix = f"{caller}(): " if caller else ""
    if family == AF_UNIX:
        if isinstance(address, str):
            path = os.fsencode(address)
        elif isinstance(address, (bytes, bytearray, memoryview)):
            path = bytes(address)
        else:
            raise TypeError(f"a bytes-like object is required, not {type(address).__name__!r}")
        if len(path) > _UNIX_PATH_MAX or (len(path) == _UNIX_PATH_MAX and path[:1] != b"\0"):
            raise OSError("AF_UNIX path too long")
        return path
    label = _FAMILY_NAMES[family]
    if not isinstance(address, tuple):
        raise TypeError(f"{prefix}{label} address must be tuple, not {type(address).__name__}")
    if family == socket.AF_INET6:
        if not 2 <= len(address) <= 4:
            raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    elif len(address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    host = address[0]
    if isinstance(host, str):
        text = host
    elif isinstance(host, (bytes, bytearray)):
        text = bytes(host).decode("ascii", "surrogateescape")
    else:
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if "\0" in text:
        raise TypeError("host name must not contain null character")
    port, *rest = (operator.index(item) for item in address[1:])
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{prefix}port must be 0-65535.")
    if rest and not 0 <= rest[0] & 0xFFFFFFFF <= 0xFFFFF:  # an unsigned int, as C reads it
        raise OverflowError(f"{prefix}flowinfo must be 0-1048575.")
    return text, port


@functools.lru_cache(maxsize=256)
def _resolve_host(family: int, host: str) -> str:
    """Return the address `host` stands for, for a socket of `family`, without DNS.

    Numeric forms resolve as ``getaddrinfo()`` reads them (``127.1`` too), the
    unspecified address (or ``""``) leads to loopback as on Linux,
    ``<broadcast>`` is ``255.255.255.255`` and ``localhost`` resolves from the
    hosts file; other names stay as they are.

    Raises:
        socket.gaierror: a numeric address of the other family, or no ``localhost``
            entry for `family` (as the C library reports them).
        OSError: ``<broadcast>`` for IPv6.
    """
    if host == "<broadcast>":  # as the socket module reads it, before getaddrinfo()
        if family != socket.AF_INET:
            raise OSError("address family mismatched")
        return "255.255.255.255"
    if host:
        host = _numeric_host(family, host)
    if host in ("", "0.0.0.0", "::"):
        return loopback(family)
    return host


def _numeric_host(family: int, host: str) -> str:
    """Return a non-empty `host` in numeric form, as ``getaddrinfo()`` reads it, without DNS.

    ``localhost`` resolves from the hosts file; other names stay as they are.

    Raises:
        socket.gaierror: a numeric address of the other family, or no ``localhost``
            entry for `family` (as the C library reports them).
    """
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
    except UnicodeError:
        return host  # not a valid IDNA name: no number either
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            raise
        if host.lower() != "localhost":
            return host
        address = _localhost(family)
        if address is None:
            raise
        return address
    return str(infos[0][4][0])


@functools.cache
def _localhost(family: int) -> str | None:
    """Return the address the hosts file gives ``localhost`` for `family`, if any.

    The C library reads this file before it asks DNS; a machine without an IPv6
    entry (some containers) cannot resolve ``localhost`` for IPv6 at all.  If the
    file cannot be read, the loopback address RFC 6761 reserves.
    """
    try:
        with open(_HOSTS_FILE, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return "::1" if family == socket.AF_INET6 else "127.0.0.1"
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or "localhost" not in (name.lower() for name in fields[1:]):
            continue
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, fields[0]))
        except OSError:
            continue  # an address of the other family
    return None


#: The options whose value is a C struct rather than an int, with its size:
#: ``struct linger``.  Every other option reads and writes a C int.
_STRUCT_OPTIONS = {(socket.SOL_SOCKET, socket.SO_LINGER): 8}
_C_INT = struct.Struct("i")
#: The largest ``buflen`` that ``socket.getsockopt()`` accepts (CPython's own limit).
_MAX_BUFLEN = 1024
#: Linux's: the family and the protocol of a socket (None elsewhere).
_SO_DOMAIN: int | None = getattr(socket, "SO_DOMAIN", None)
_SO_PROTOCOL: int | None = getattr(socket, "SO_PROTOCOL", None)
_SO_ACCEPTCONN: int | None = getattr(socket, "SO_ACCEPTCONN", None)
#: ``struct ucred`` (pid, uid, gid) of the peer: a Unix socket's, or (0, -1, -1).
_SO_PEERCRED: int | None = getattr(socket, "SO_PEERCRED", None)
_UCRED = struct.Struct("3i")
#: Options the kernel answers from the socket itself and refuses to set (``ENOPROTOOPT``).
_READ_ONLY_OPTIONS = frozenset(
    name
    for name in (
        socket.SO_TYPE,
        socket.SO_ERROR,
        _SO_DOMAIN,
        _SO_PROTOCOL,
        _SO_ACCEPTCONN,
        _SO_PEERCRED,
    )
    if name is not None
)
_C_INT_MIN, _C_INT_MAX = -(2**31), 2**31 - 1


def _c_ints(*values: object) -> tuple[int, ...]:
    """The arguments as C ints, as the socket module converts them (`OverflowError` if not)."""
    ints = tuple(operator.index(value) for value in values)  # type: ignore[arg-type]
    for value in ints:
        if value > _C_INT_MAX:
            raise OverflowError("signed integer is greater than maximum")
        if value < _C_INT_MIN:
            raise OverflowError("signed integer is less than minimum")
    return ints


@typing.final
class MemorySocket:
    """What ``get_extra_info("socket")`` returns for a memory transport.

    It stands in for ``asyncio.trsock.TransportSocket``: it has the family and type,
    ``getsockname()`` and ``getpeername()`` agree with the transport's
    ``sockname`` and ``peername`` (an unconnected datagram socket raises `OSError`,
    as a real one does), and socket options are checked, set and read back as on a
    Linux socket (see :meth:`setsockopt` and :meth:`getsockopt`); setting
    ``SO_LINGER`` to (on, 0) makes closing a TCP stream send RST, as on a real
    socket.  It is non-blocking (``gettimeout()`` is 0; ``settimeout()`` and
    ``setblocking()`` refuse anything else, as ``TransportSocket`` does).  It has no
    file descriptor (``fileno()`` is -1), so nothing to ``dup()``, and no
    ``shutdown()``: half-close with the transport's ``write_eof()``.  Once
    ``connection_lost`` has returned, the transport closes it and its methods raise
    ``OSError(EBADF)``, as a closed socket's do.  This type has no public constructor.
    """

    __slots__ = ("_closed", "_options", "_peername", "_sockname", "family", "proto", "type")

    #: ``AF_INET``, ``AF_INET6`` or ``AF_UNIX``.
    family: socket.AddressFamily
    #: ``SOCK_STREAM`` or ``SOCK_DGRAM``.
    type: socket.SocketKind
    #: ``IPPROTO_TCP``, ``IPPROTO_UDP``, or 0 for a Unix socket.
    proto: int
    _sockname: Any
    _peername: Any
    _options: dict[tuple[int, int], int | bytes]
    _closed: bool

    def __init__(self) -> None:
        raise TypeError("MemorySocket has no public constructor")

    @classmethod
    def _create(cls, family: int, kind: int, sockname: Any, peername: Any) -> MemorySocket:
        self = cls.__new__(cls)
        self.family = socket.AddressFamily(family)
        self.type = socket.SocketKind(kind)
        if family == AF_UNIX:
            self.proto = 0
        else:
            self.proto = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else socket.IPPROTO_UDP
        self._sockname = sockname
        self._peername = peername
        self._options = {}
        self._closed = False
        if self.proto == socket.IPPROTO_TCP:
            self._options[socket.IPPROTO_TCP, socket.TCP_NODELAY] = 1  # as asyncio sets it
        return self

    def _lingers_zero(self) -> bool:
        """Whether ``SO_LINGER`` is (on, 0 seconds): closing sends RST."""
        value = self._options.get((socket.SOL_SOCKET, socket.SO_LINGER))
        if not isinstance(value, bytes) or len(value) < 8:
            return False
        onoff, seconds = struct.unpack("ii", value[:8])
        return bool(onoff) and seconds == 0

    def _close(self) -> None:
        """Close it, as the transport closes its socket once ``connection_lost`` returns."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise os_error(errno.EBADF)

    def _check_level(self, level: int, *, setting: bool) -> None:
        """Refuse an option level the socket's protocol lacks, with Linux's error.

        A Unix socket has only ``SOL_SOCKET`` options (``EOPNOTSUPP``); a UDP
        socket has no ``IPPROTO_TCP`` ones (``ENOPROTOOPT`` to set them,
        ``EOPNOTSUPP`` to read them).
        """
        if level == socket.SOL_SOCKET:
            return
        if self.family == AF_UNIX:
            raise os_error(errno.EOPNOTSUPP)
        if (level == socket.IPPROTO_TCP and self.proto != socket.IPPROTO_TCP) or (
            level == socket.IPPROTO_IPV6 and self.family != socket.AF_INET6
        ):
            raise os_error(errno.ENOPROTOOPT if setting else errno.EOPNOTSUPP)

    def getsockname(self) -> Any:
        """Return the local address.

        Raises:
            OSError: ``EBADF``, once the transport has closed it.
        """
        self._check_open()
        return self._sockname

    def getpeername(self) -> Any:
        """Return the peer's address.

        Raises:
            OSError: ``ENOTCONN``, for an unconnected datagram socket; ``EBADF``,
                once the transport has closed it.
        """
        self._check_open()
        if self._peername is None:
            raise os_error(errno.ENOTCONN)
        return self._peername

    def fileno(self) -> int:
        """Return -1: there is no descriptor."""
        return -1

    def get_inheritable(self) -> bool:
        """Return False, as for the sockets asyncio makes (``O_CLOEXEC``).

        Raises:
            OSError: ``EBADF``, once the transport has closed it.
        """
        self._check_open()
        return False

    def gettimeout(self) -> float:
        """Return 0: a transport's socket is non-blocking."""
        return 0

    def settimeout(self, value: float | None) -> None:
        """Accept only 0, as asyncio's ``TransportSocket`` does.

        Raises:
            ValueError: Any other timeout.
        """
        if value == 0:
            return
        raise ValueError("settimeout(): only 0 timeout is allowed on transport sockets")

    def setblocking(self, flag: bool) -> None:
        """Accept only False, as asyncio's ``TransportSocket`` does.

        Raises:
            ValueError: ``flag`` true.
        """
        if not flag:
            return
        raise ValueError("setblocking(): transport sockets cannot be blocking")

    def setsockopt(
        self,
        level: int,
        optname: int,
        value: int | bytes | bytearray | memoryview | None,
        optlen: int | None = None,
    ) -> None:
        """Set a socket option, checked as ``socket.setsockopt()`` and Linux check it.

        The value is a C int or a bytes-like object: ``struct linger`` for
        ``SO_LINGER`` (8 bytes), at least 4 bytes for any other option.  It
        reads back as it was set; the kernel's own adjustments (a flag read back
        as 1, ``SO_SNDBUF`` doubled) are not modelled.  The four-argument form
        (``value`` None, ``optlen`` bytes) passes no buffer, and fails as it does
        on a stream socket.

        Raises:
            TypeError: ``value`` neither an int that fits a C int nor bytes-like,
                ``level`` or ``optname`` not an int, or ``optlen`` with a value.
            OSError: ``EINVAL`` for a value shorter than the option,
                ``ENOPROTOOPT`` for a read-only option (``SO_TYPE``, ``SO_ERROR``,
                ``SO_DOMAIN``, ``SO_PROTOCOL``, ``SO_ACCEPTCONN``, ``SO_PEERCRED``)
                or a level the socket lacks (``IPPROTO_TCP`` on UDP,
                ``IPPROTO_IPV6`` on IPv4), ``EOPNOTSUPP`` for a level other than
                ``SOL_SOCKET`` on a Unix socket, ``EFAULT`` for the four-argument
                form, and ``EBADF`` once the transport has closed it.
            OverflowError: ``level`` or ``optname`` beyond a C int.
        """
        level, optname = _c_ints(level, optname)
        if optlen is not None:
            if value is not None:
                raise TypeError("setsockopt() takes exactly 3 arguments (4 given)")
            optlen = operator.index(optlen)
            self._check_settable(level, optname)
            # Linux reads an int first: too short a length, or no buffer to read.
            raise os_error(errno.EINVAL if optlen < _C_INT.size else errno.EFAULT)
        data: int | bytes
        if isinstance(value, int) and -(2**31) <= value < 2**31:
            data = int(value)  # a bool too, as the socket module takes it
        else:
            try:
                data = bytes(memoryview(value))  # type: ignore[arg-type]
            except TypeError:
                raise TypeError(
                    f"a bytes-like object is required, not {type(value).__name__!r}"
                ) from None
        self._check_settable(level, optname)
        size = _STRUCT_OPTIONS.get((level, optname), _C_INT.size)
        if isinstance(data, int):
            if size > _C_INT.size:
                raise os_error(errno.EINVAL)
        elif len(data) < size:
            raise os_error(errno.EINVAL)
        else:
            data = data[:size]  # what the kernel copies
        self._options[level, optname] = data

    def _check_settable(self, level: int, optname: int) -> None:
        self._check_open()
        self._check_level(level, setting=True)
        if level == socket.SOL_SOCKET and optname in _READ_ONLY_OPTIONS:
            raise os_error(errno.ENOPROTOOPT)

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> int | bytes:
        """Return a socket option as ``socket.getsockopt()`` returns it.

        Without ``buflen`` (or with 0), the option as a C int (for ``SO_LINGER``
        its first field, ``l_onoff``); with it, the option's bytes, at most
        ``buflen`` of them (a C int is 4 bytes in native order, ``SO_LINGER`` 8).
        An option never set reads as zeros, except ``SO_TYPE``, ``SO_DOMAIN`` and
        ``SO_PROTOCOL``, which describe the socket, and ``TCP_NODELAY``, which
        asyncio sets on a TCP socket.

        Raises:
            TypeError: an argument that is not an int.
            OSError: ``buflen`` out of range (1 to 1024), ``EOPNOTSUPP`` for a
                level other than ``SOL_SOCKET`` on a Unix socket (or
                ``IPPROTO_TCP`` on a UDP one), and ``EBADF`` once the transport
                has closed it.
        """
        level, optname, buflen = _c_ints(level, optname, buflen)
        if buflen and not 0 < buflen <= _MAX_BUFLEN:
            raise OSError("getsockopt buflen out of range")
        self._check_open()
        self._check_level(level, setting=False)
        raw = self._option_bytes(level, optname)
        if not buflen:
            return int(_C_INT.unpack(raw[: _C_INT.size].ljust(_C_INT.size, b"\0"))[0])
        return raw[:buflen]

    def _option_bytes(self, level: int, optname: int) -> bytes:
        """Return an option's value as the kernel holds it."""
        key = level, optname
        value = self._options.get(key)
        if value is None and level == socket.SOL_SOCKET:
            if optname == socket.SO_TYPE:
                value = int(self.type)
            elif optname == _SO_DOMAIN:
                value = int(self.family)
            elif optname == _SO_PROTOCOL:
                value = self.proto
            elif optname == _SO_PEERCRED:
                # Both ends of a memory pair live in this process.
                unix = self.family == AF_UNIX
                ucred = (os.getpid(), os.getuid(), os.getgid()) if unix else (0, -1, -1)
                value = _UCRED.pack(*ucred)
        if value is None:
            return bytes(_STRUCT_OPTIONS.get(key, _C_INT.size))
        if isinstance(value, int):
            return _C_INT.pack(value)
        return value

    def __repr__(self) -> str:
        return (
            f"<nettest.MemorySocket family={self.family!s}, type={self.type!s}, "
            f"laddr={self._sockname!r}, raddr={self._peername!r}>"
        )


#: How many events an assertion's message lists at each end of a long timeline.
_EVENTS_AT_EACH_END = 5


def _first_and_last(events: list[str], attribute: str) -> str:
    """`events` joined for a message: the first and last few of a long timeline, and a count.

    A long upload pauses and resumes its writer thousands of times: the message
    stays readable, and names the transport's `attribute` that holds them all.
    """
    if not events:
        return "none"
    if len(events) <= 2 * _EVENTS_AT_EACH_END + 1:
        return ", ".join(events)
    left_out = len(events) - 2 * _EVENTS_AT_EACH_END
    return (
        ", ".join(
            [
                *events[:_EVENTS_AT_EACH_END],
                f"... {left_out} more ...",
                *events[-_EVENTS_AT_EACH_END:],
            ]
        )
        + f" ({len(events)} in all: see {attribute})"
    )


class FlowControlled(_asyncio_transports._FlowControlMixin):
    """Flow control, extras and resource hygiene shared by memory transports.

    Subclasses call ``_start_endpoint()`` (which sets ``_loop``, ``_protocol``,
    ``_flow``, ``_reading_log`` and ``_info``), set ``_closing``, ``_closed`` and
    ``_paused``, implement ``get_write_buffer_size()``, ``_bytes_waiting()``,
    ``_reading_peer()`` and ``_force_close()``, call ``_maybe_pause_protocol()``
    after the buffer grows and ``_maybe_resume_protocol()`` after it shrinks, and
    ``_note_reading()`` when reading pauses or resumes.
    """

    #: The hygiene gate's entry, for `dropped_open` from ``__del__``.
    _gate_entry: object = None
    _loop: asyncio.AbstractEventLoop
    _protocol: Any
    _flow: WriteFlow
    #: Every pause and resume of reading: (kind, bytes waiting, loop time).
    _reading_log: list[tuple[typing.Literal["pause", "resume"], int, float]]
    _paused: bool  # pause_reading() in force
    _info: dict[str, Any]
    _closing: bool
    _closed = True  # until set up, so that __del__ never warns by mistake

    def _start_endpoint(
        self, protocol: Any, *, family: int, kind: int, sockname: Any, peername: Any
    ) -> None:
        """Set what every memory transport starts with: loop, protocol, flow and extras."""
        self._loop = asyncio.get_running_loop()
        self._protocol = protocol
        self._flow = WriteFlow()
        self._reading_log = []
        self._info = {
            "peername": peername,
            "sockname": sockname,
            "socket": MemorySocket._create(family, kind, sockname, peername),
        }
        asyncio.BaseTransport.__init__(self, self._info)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return ``peername``, ``sockname``, ``socket``, or ``default``."""
        return self._info.get(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return the current protocol; None once ``connection_lost`` has returned.

        As asyncio's socket transports, which let go of the protocol then.
        """
        if self._info["socket"]._closed:
            return typing.cast("asyncio.BaseProtocol", None)
        return typing.cast("asyncio.BaseProtocol", self._protocol)

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        # getattr: a constructor that raised may have set neither.
        # dropped_open(): unless the gate reports it.
        if (
            not getattr(self, "_closed", True)
            and not getattr(self, "_closing", True)
            and not dropped_open(self)
        ):
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)

    # -- flow control ----------------------------------------------------------------

    @property
    def _protocol_paused(self) -> bool:  # read by loop.sendfile()'s fallback
        return self._flow.paused

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return ``(low, high)``."""
        return self._flow.low, self._flow.high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks as asyncio does; this may pause but never resumes.

        Raises:
            ValueError: unless ``high >= low >= 0``; the message names both.
        """
        self._flow.set_limits(high, low)
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self._flow.grew(self.get_write_buffer_size(), self._loop.time):
            self._call_flow_callback("pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._flow.shrank(self.get_write_buffer_size(), self._loop.time):
            self._call_flow_callback("resume_writing")

    def _call_flow_callback(self, name: str) -> None:
        try:
            getattr(self._protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{name}() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    # -- the timeline ------------------------------------------------------------------

    @property
    def flow_events(self) -> tuple[FlowEvent, ...]:
        """Every pause and resume of the protocol's writing so far, in order."""
        return self._flow.events

    @property
    def write_buffer_peak(self) -> int:
        """The largest size the write buffer has reached."""
        return self._flow.peak

    def assert_writing_paused(self) -> None:
        """Fail unless the protocol's writing is paused now.

        Raises:
            AssertionError: with the flow-control timeline.
        """
        if not self._flow.paused:
            raise AssertionError(f"writing is not paused; {self._describe_flow()}")

    def assert_writing_not_paused(self) -> None:
        """Fail if the protocol's writing is paused now.

        Raises:
            AssertionError: with the flow-control timeline.
        """
        if self._flow.paused:
            raise AssertionError(f"writing is paused; {self._describe_flow()}")

    def assert_write_buffer_at_most(self, limit: int) -> None:
        """Fail if the write buffer ever held more than ``limit`` bytes.

        A protocol that keeps writing after ``pause_writing()`` grows the buffer
        without bound; this catches it.

        Raises:
            AssertionError: with the peak and the flow-control timeline.
            TypeError, ValueError: ``limit`` is not an int >= 0.
        """
        check_count("limit", limit, unit=" bytes", lowest=0)
        if self._flow.peak > limit:
            raise AssertionError(
                f"the write buffer reached {self._flow.peak} bytes (limit {limit}); "
                f"{self._describe_flow()}"
            )

    def _describe_flow(self) -> str:
        events = _first_and_last(
            [f"{e.kind} at {e.buffer_size}" for e in self._flow.events], "flow_events"
        )
        low, high = self.get_write_buffer_limits()
        text = (
            f"buffer {self.get_write_buffer_size()} bytes, high {high}, low {low}, "
            f"peak {self._flow.peak}; pause/resume events: {events}"
        )
        peer = self._reading_peer()
        if peer is not None:
            # A writer that stays paused usually means a reader that stopped.
            text += f"; the peer's reading is {peer._reading_state()}: {peer._describe_reading()}"
        return text

    # -- the reading timeline ------------------------------------------------------------

    def _reading_peer(self) -> FlowControlled | None:
        """The transport at the other end of a pair, or None."""
        return None

    def _bytes_waiting(self) -> int:
        """Bytes that arrived and were not read yet."""
        raise NotImplementedError

    def _note_reading(self, kind: typing.Literal["pause", "resume"]) -> None:
        self._reading_log.append((kind, self._bytes_waiting(), self._loop.time()))

    @property
    def reading_events(self) -> tuple[ReadingEvent, ...]:
        """Every ``pause_reading()`` and ``resume_reading()`` that took effect, in order.

        Calls that changed nothing (pausing when paused, or once closing) are not
        events.
        """
        from ._flow import ReadingEvent

        return tuple(ReadingEvent(*event) for event in self._reading_log)

    def assert_reading_paused(self) -> None:
        """Fail unless reading is paused now.

        Raises:
            AssertionError: with the reading timeline.
        """
        if not self._reading_paused():
            raise AssertionError(
                f"reading is {self._reading_state()}, not paused: {self._describe_reading()}"
            )

    def assert_reading_not_paused(self) -> None:
        """Fail if reading is paused now.

        A consumer that paused and never resumed leaves its peer's writer stuck
        in ``drain()``; this names the moment it stopped.

        Raises:
            AssertionError: with the reading timeline.
        """
        if self._reading_paused():
            raise AssertionError(f"reading is {self._reading_state()}: {self._describe_reading()}")

    def _reading_paused(self) -> bool:
        return self._paused and not self._closing

    def _reading_state(self) -> str:
        """What reading is doing, to follow "reading is"."""
        if self._closing:
            return "over (the transport is closing)"
        if self._paused:
            return f"paused since loop time {self._reading_log[-1][2]:.6f}"
        return "on"

    def _describe_reading(self) -> str:
        """The bytes waiting to be read, and the reading timeline."""
        events = _first_and_last(
            [f"{kind} with {waiting} waiting" for kind, waiting, _ in self._reading_log],
            "reading_events",
        )
        return (
            f"{self._bytes_waiting()} bytes waiting to be read; "
            f"pause/resume reading events: {events}"
        )

    def is_closing(self) -> bool:
        """Return True once ``close()`` or ``abort()`` was called or the connection failed."""
        return self._closing

    def abort(self) -> None:
        """Close at once, discarding whatever is buffered."""
        self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        raise NotImplementedError

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        """End the connection with `exc`, as asyncio's socket transports do.

        Like them, only errors that are not an `OSError` reach the loop's
        exception handler.
        """
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    # -- the hygiene gate ----------------------------------------------------------------

    @staticmethod
    def _hygiene_is_open(transport: FlowControlled) -> bool:
        return not transport._closing or transport._unsent_at_close() is not None

    def _unsent_at_close(self) -> str | None:
        """What a ``close()`` waits to send for ever, said for a report; None if nothing.

        Closing, the transport waits for its write buffer to drain before
        ``connection_lost()``, as asyncio's does.  In memory a peer drains it as
        it reads, or the test does (``pump()``, ``take_written()``,
        ``take_sent()``): what the test left waiting stays for ever, and so does
        what a peer left once the loop has closed.  (On a loop that stays open a
        peer may still read, or its reset on its way end the close.)
        """
        raise NotImplementedError

    @staticmethod
    def _hygiene_close(transport: FlowControlled) -> None:
        if transport._loop.is_closed():
            transport._closing = transport._closed = True
        else:
            transport.abort()


def released(attribute: str) -> AttributeError:
    """What asyncio's selector transport raises when used after letting go of its loop.

    ``connection_lost`` releases the transport's loop and socket.  A stream
    transport whose ``close()`` waited for the write buffer to drain ends without
    counting the connection lost, so a later ``abort()`` or ``write()`` fails on
    its missing loop; an unconnected datagram transport's ``sendto()`` does too.
    The same in every version from 3.10 on.  The memory transports fail the same
    way, so that a test finds the crash a real socket would give.
    """
    return AttributeError(f"'NoneType' object has no attribute '{attribute}'")
