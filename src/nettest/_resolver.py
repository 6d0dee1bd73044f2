"""A fake resolver: host names of the test's own, resolved without DNS.

Clients connect by name, and name resolution fails in ways of its own: a name
that does not exist, a resolver that times out or answers "try again", one that
takes seconds.  A test must not depend on real DNS either.  `FakeResolver`
answers for the names a test gives it, with loopback addresses (a name for each
loopback server), after a delay, or with a ``socket.gaierror``.

While it is installed it replaces ``getaddrinfo`` of asyncio's event loops (the
method of ``BaseEventLoop``, so every selector and proactor loop, including one a
test makes itself) and the socket module's ``getaddrinfo``, ``gethostbyname`` and
``gethostbyname_ex`` (blocking clients, ``socket.create_connection``).  A delay is
loop time on the first (``asyncio.sleep``) and wall time on the others.  A known
name is answered by the real ``getaddrinfo`` given its literal address instead,
so the entries have exactly the shape the system gives (families, socket types,
protocols, ports, service names).  Literal addresses, ``None`` and ``localhost``
(unless the test gave it) go to the real resolver, which needs no DNS for them;
any other name fails with ``EAI_NONAME``.  Resolvers nest: one installed inside
another asks the outer one for the names it was not given.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import ipaddress
import socket
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ._faults import _non_negative
from ._server_base import check_host

__all__ = ["FakeResolver", "fake_resolver"]

#: The resolvers installed, innermost last.
_INSTALLED: list[FakeResolver] = []

_GAI_ERRORS = {
    getattr(socket, name): name
    for name in (
        "EAI_ADDRFAMILY",
        "EAI_AGAIN",
        "EAI_FAIL",
        "EAI_MEMORY",
        "EAI_NODATA",
        "EAI_NONAME",
        "EAI_SERVICE",
        "EAI_SYSTEM",
    )
    if hasattr(socket, name)
}

_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


@functools.cache
def _gai_strerror(code: int) -> str:
    """The C library's message for a getaddrinfo error code, as ``socket.gaierror`` has it."""
    try:
        strerror = ctypes.CDLL(None).gai_strerror
        strerror.restype = ctypes.c_char_p
        strerror.argtypes = [ctypes.c_int]
        message: bytes = strerror(code)
        return message.decode()
    except Exception:  # no C library to ask (or no such function): name the code
        return f"getaddrinfo failed: {_GAI_ERRORS.get(code, code)}"


def _gaierror(code: int, hint: str = "") -> socket.gaierror:
    return socket.gaierror(code, _gai_strerror(code) + hint)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 scope id: fe80::1%eth0
    except ValueError:
        return False
    return True


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.rstrip(".").lower()
    if not key:
        raise ValueError(f"name must be a host name, got {name!r}")
    if _is_literal(key):
        raise ValueError(f"name must be a host name, not an IP address: got {name!r}")
    return key


@dataclass(frozen=True)
class _Answer:
    addresses: tuple[str, ...]
    error: int | None
    delay: float
    #: Added to the error's message.
    hint: str = ""


@typing.final
class FakeResolver:
    """Host names of the test's own, resolved without DNS: to loopback, slowly, or not at all.

    Take one from the ``fake_resolver`` fixture, or install one for a block with
    ``with nettest.FakeResolver() as resolver:``.  While installed it answers
    every ``getaddrinfo`` of asyncio's own event loops, and ``socket.getaddrinfo``,
    ``gethostbyname`` and ``gethostbyname_ex`` (not uvloop's lookups, made in C,
    nor a function imported from the socket module before it was installed).

    Example::

        fake_resolver.add("db.test", "127.0.0.1")
        reader, writer = await asyncio.open_connection("db.test", server.port)
    """

    def __init__(self) -> None:
        self._answers: dict[str, _Answer] = {}
        self._lookups: list[str] = []
        #: What installing replaced: (the class or module, the name, the original).
        self._saved: list[tuple[object, str, Callable[..., Any]]] = []
        #: The resolver installed when this one was, which answers what this one does not.
        self._outer: FakeResolver | None = None
        #: ``socket.getaddrinfo`` as it was before any resolver was installed (set
        #: as this one is): it answers for literal addresses.
        self._real: Callable[..., list[_AddrInfo]] = socket.getaddrinfo  # type: ignore[assignment]

    # -- what it answers ------------------------------------------------------------

    def add(self, name: str, *addresses: str, delay: float = 0.0) -> None:
        """Resolve *name* to *addresses*, in order, after *delay* seconds.

        Adding a name again replaces what it resolved to.  Names match without
        regard to case or a trailing dot, as DNS names do.

        Args:
            name: A host name (not an IP address).
            addresses: Literal loopback addresses (``"127.0.0.1"``, ``"::1"``,
                ``"127.0.0.2"``...), at least one.  A lookup restricted to one
                family gets the addresses of that family.
            delay: Seconds before the answer (loop time for asyncio).

        Raises:
            TypeError: *name* or an address is not a str.
            ValueError: *name* is empty or an IP address, no addresses are
                given, an address is not a literal loopback address, or *delay*
                is negative or not finite.
        """
        key = _check_name(name)
        if not addresses:
            raise ValueError(f"add({name!r}) needs at least one address, such as '127.0.0.1'")
        for address in addresses:
            check_host(address, allow_remote=False, name="address", remote_option=False)
        _non_negative("delay", delay, "seconds")
        self._answers[key] = _Answer(tuple(addresses), None, float(delay))

    def fail(self, name: str, code: int = socket.EAI_NONAME, *, delay: float = 0.0) -> None:
        """Make lookups of *name* raise ``socket.gaierror(code, ...)`` after *delay* seconds.

        Args:
            name: A host name (not an IP address).
            code: One of ``socket.EAI_NONAME`` (no such name, the default),
                ``EAI_AGAIN`` (temporary failure: try again), ``EAI_FAIL``,
                ``EAI_NODATA``, ``EAI_ADDRFAMILY``, ``EAI_SERVICE``,
                ``EAI_MEMORY`` or ``EAI_SYSTEM``; the message is the C library's.
            delay: Seconds before the error (loop time for asyncio): a resolver
                that times out is ``fail(name, socket.EAI_AGAIN, delay=5)``.

        Raises:
            TypeError: *name* is not a str, or *code* not an int.
            ValueError: *name* is empty or an IP address, *code* is not one of
                the codes above, or *delay* is negative or not finite.
        """
        key = _check_name(name)
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"code must be an int such as socket.EAI_NONAME, got {code!r}")
        if code not in _GAI_ERRORS:
            accepted = ", ".join(f"socket.{n}" for n in sorted(_GAI_ERRORS.values()))
            raise ValueError(f"code must be one of {accepted}; got {code!r}")
        _non_negative("delay", delay, "seconds")
        self._answers[key] = _Answer((), code, float(delay))

    def remove(self, name: str) -> None:
        """Forget *name*: lookups of it fail with ``EAI_NONAME`` again.

        Raises:
            KeyError: *name* was not added.
        """
        key = _check_name(name)
        if key not in self._answers:
            raise KeyError(f"{name!r} was not added to this resolver")
        del self._answers[key]

    @property
    def lookups(self) -> tuple[str, ...]:
        """Every host name looked up while installed, in order (lower case, no trailing dot).

        Literal addresses are not lookups; ``localhost`` is.  Assert on it to
        check that a client resolves again when it reconnects, or caches.
        """
        return tuple(self._lookups)

    # -- installing it --------------------------------------------------------------------

    def __enter__(self) -> FakeResolver:
        if self._saved:
            raise RuntimeError("this FakeResolver is installed already")
        self._outer = _INSTALLED[-1] if _INSTALLED else None
        system: Callable[..., list[_AddrInfo]] = socket.getaddrinfo  # type: ignore[assignment]
        self._real = system if self._outer is None else self._outer._real
        loop_class = asyncio.base_events.BaseEventLoop
        fakes: list[tuple[object, str, Callable[..., Any]]] = [
            (loop_class, "getaddrinfo", self._async_getaddrinfo(loop_class.getaddrinfo))
        ]
        fakes += [(socket, name, fake) for name, fake in self._blocking_functions().items()]
        for owner, name, fake in fakes:
            original = getattr(owner, name)
            functools.update_wrapper(fake, original)
            self._saved.append((owner, name, original))
            setattr(owner, name, fake)
        _INSTALLED.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._saved:
            return
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved = []
        if self in _INSTALLED:
            _INSTALLED.remove(self)

    def _async_getaddrinfo(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """``BaseEventLoop.getaddrinfo`` answering for our names; a delay is loop time."""

        async def getaddrinfo(
            loop: asyncio.AbstractEventLoop,
            host: Any,
            port: Any,
            *,
            family: int = 0,
            type: int = 0,
            proto: int = 0,
            flags: int = 0,
        ) -> list[_AddrInfo]:
            answer = self._answer_for(host)
            if answer is None:
                return await original(  # type: ignore[no-any-return]
                    loop, host, port, family=family, type=type, proto=proto, flags=flags
                )
            if answer.delay:
                await asyncio.sleep(answer.delay)
            return self._resolve(answer, host, port, family, type, proto, flags)

        return getaddrinfo

    def _blocking_functions(self) -> dict[str, Callable[..., Any]]:
        """The socket module's resolving functions, answering for our names."""
        getaddrinfo_: Callable[..., Any] = socket.getaddrinfo
        gethostbyname_: Callable[..., Any] = socket.gethostbyname
        gethostbyname_ex_: Callable[..., Any] = socket.gethostbyname_ex

        def blocking(host: Any) -> _Answer | None:
            answer = self._answer_for(host)
            if answer is not None and answer.delay:
                time.sleep(answer.delay)
            return answer

        def getaddrinfo(
            host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
        ) -> list[_AddrInfo]:
            answer = blocking(host)
            if answer is None:
                return getaddrinfo_(host, port, family, type, proto, flags)  # type: ignore[no-any-return]
            return self._resolve(answer, host, port, family, type, proto, flags)

        def gethostbyname(host: Any) -> str:
            answer = blocking(host)
            if answer is None:
                return gethostbyname_(host)  # type: ignore[no-any-return]
            return str(self._resolve(answer, host, None, socket.AF_INET, 0, 0, 0)[0][4][0])

        def gethostbyname_ex(host: Any) -> tuple[str, list[str], list[str]]:
            answer = blocking(host)
            if answer is None:
                return gethostbyname_ex_(host)  # type: ignore[no-any-return]
            entries = self._resolve(answer, host, None, socket.AF_INET, socket.SOCK_STREAM, 0, 0)
            return str(host).rstrip("."), [], [entry[4][0] for entry in entries]

        return {
            "getaddrinfo": getaddrinfo,
            "gethostbyname": gethostbyname,
            "gethostbyname_ex": gethostbyname_ex,
        }

    # -- answering --------------------------------------------------------------------------

    def _answer_for(self, host: Any) -> _Answer | None:
        """What to answer for *host*; None: the real resolver's business (no DNS needed)."""
        if isinstance(host, (bytes, bytearray)):
            host = bytes(host).decode("idna")
        if not isinstance(host, str) or _is_literal(host):
            return None  # None (the wildcard), or a literal address
        key = host.rstrip(".").lower()
        self._lookups.append(key)
        answer = self._answers.get(key)
        if answer is None and self._outer is not None:
            return self._outer._answer_for(host)  # a resolver installed around this one
        if answer is None and key != "localhost":
            hint = f" (nettest's fake resolver: {host!r} was not added)"
            return _Answer((), socket.EAI_NONAME, 0.0, hint)
        return answer

    def _resolve(
        self,
        answer: _Answer,
        host: Any,
        port: Any,
        family: int,
        type: int,
        proto: int,
        flags: int,
    ) -> list[_AddrInfo]:
        if answer.error is not None:
            raise _gaierror(answer.error, answer.hint)
        if flags & socket.AI_NUMERICHOST:
            raise _gaierror(socket.EAI_NONAME)
        entries: list[_AddrInfo] = []
        error: socket.gaierror | None = None
        for address in answer.addresses:
            try:
                entries += self._real(
                    address, port, family, type, proto, flags & ~socket.AI_CANONNAME
                )
            except socket.gaierror as exc:  # an address of another family than asked
                error = exc
        if not entries:
            if error is not None and error.errno == socket.EAI_ADDRFAMILY:
                # As glibc answers for a name (EAI_ADDRFAMILY is for literal addresses).
                raise _gaierror(
                    socket.EAI_NONAME,
                    f" (nettest's fake resolver: {host!r} has"
                    f" no address of family {socket.AddressFamily(family).name})",
                )
            assert error is not None
            raise error
        if flags & socket.AI_CANONNAME:  # the first entry carries the name, as glibc's do
            first = entries[0]
            entries[0] = (first[0], first[1], first[2], str(host).rstrip("."), first[4])
        return entries


@pytest.fixture
def fake_resolver() -> Iterator[FakeResolver]:
    """A `~nettest.FakeResolver` installed for the test: names resolve as the test says.

    Any name the test did not add (but ``localhost``) fails with ``EAI_NONAME``,
    so no lookup reaches real DNS.  Removed at teardown.
    """
    with FakeResolver() as resolver:
        yield resolver
