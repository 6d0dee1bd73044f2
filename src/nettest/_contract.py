"""The protocol side of the transport contract: a sanitizer that checks callback order.

Theory of operation
-------------------
A transport owes its protocol a fixed order of callbacks.  For stream protocols::

    connection_made
      (data_received | get_buffer [buffer_updated])*
      [eof_received get_buffer*]
      (pause_writing resume_writing)* [pause_writing]     # interleaved anywhere
    connection_lost

and for datagram protocols the same with ``datagram_received`` and
``error_received`` and no EOF.  :class:`_CallOrder` is a sans-IO state machine
that is told each call and answers with a violation message or ``None``.  The
public wrappers (:class:`SanitizedProtocol`, :class:`SanitizedBufferedProtocol`,
:class:`SanitizedDatagramProtocol`) feed it and forward every call, attribute
and return value to the protocol they wrap.

There are three wrappers because transports choose how to deliver data with
``isinstance(protocol, asyncio.BufferedProtocol)``: a wrapper must be a
BufferedProtocol exactly when the protocol it wraps is one.  :func:`sanitize`
picks the right one.
"""

from __future__ import annotations

import asyncio
import enum
import typing
from typing import Any, overload

from ._endpoint import check_bool

__all__ = [
    "ProtocolViolation",
    "SanitizedBufferedProtocol",
    "SanitizedDatagramProtocol",
    "SanitizedProtocol",
    "sanitize",
]

_SHOWN_CALLS = 24


class ProtocolViolation(AssertionError):
    """A transport called a protocol's callbacks out of order.

    Raised by a sanitized protocol inside the offending callback (unless it was
    made with ``raise_on_violation=False``) and again by its
    :meth:`~SanitizedProtocol.check`, because a transport may swallow what a
    callback raises or hand it to the loop's exception handler.  The message
    names the rule that was broken and the calls that came before.
    """


class _State(enum.Enum):
    NEW = "before connection_made"
    CONNECTED = "connected"
    EOF = "after eof_received"
    LOST = "after connection_lost"


class _CallOrder:
    """Sans-IO checker of the order of protocol callbacks."""

    def __init__(self, *, datagram: bool, connected: bool) -> None:
        self.datagram = datagram
        self.state = _State.CONNECTED if connected else _State.NEW
        self.connected_at_start = connected
        self.paused = False
        self.paused_once = False
        # Length of the buffer the last get_buffer() returned, until buffer_updated().
        self.buffer_length: int | None = None
        self.calls: list[str] = []
        self.violations: list[str] = []

    def call(self, name: str, detail: str = "", problem: str | None = None) -> str | None:
        """Record the call *name* and return what it violates, if anything.

        *problem* is a violation the caller found in the arguments; it is
        reported if the call is legal in the current state.
        """
        shown = f"{name}({detail})" if detail else name
        problem = self._problem(name) or problem
        self.calls.append(shown)
        if problem is None:
            return None
        history = self.calls[:-1]
        if len(history) > _SHOWN_CALLS:
            history = ["...", *history[-_SHOWN_CALLS:]]
        message = f"{shown} {problem}; calls before it: {', '.join(history) or 'none'}"
        self.violations.append(message)
        return message

    def _problem(self, name: str) -> str | None:
        state = self.state
        if name == "connection_made":
            if state is _State.NEW:
                self.state = _State.CONNECTED
                return None
            if self.connected_at_start and "connection_made" not in self.calls:
                return (
                    "called on a protocol sanitized with connected=True, which counts "
                    "connection_made as made already"
                )
            return "called again: connection_made must come exactly once"
        if name == "connection_lost":
            if state is _State.LOST:
                return "called again: connection_lost must come exactly once"
            self.state = _State.LOST
            if state is _State.NEW:
                return "called before connection_made"
            return None
        if state is _State.NEW:
            return "called before connection_made"
        if state is _State.LOST:
            return "called after connection_lost"
        if name in ("pause_writing", "resume_writing"):
            return self._flow(name)
        if name == "eof_received":
            if state is _State.EOF:
                return "called again: eof_received must come at most once"
            self.state = _State.EOF
            return None
        if state is _State.EOF and name != "get_buffer":
            # get_buffer() carries no data: asyncio's TLS transport asks for a buffer
            # once more after close_notify, as it shuts down, and fills none of it.
            return "called after eof_received: no data may follow EOF"
        if name == "buffer_updated" and self.buffer_length is None:
            return "called without a get_buffer() call before it"
        return None

    def _flow(self, name: str) -> str | None:
        pausing = name == "pause_writing"
        if not pausing and not self.paused_once:
            return "called before any pause_writing: resume_writing only ends a pause"
        if pausing == self.paused:
            other = "resume_writing" if pausing else "pause_writing"
            return (
                "called twice in a row: pause_writing and resume_writing alternate, "
                f"so {other} must come in between"
            )
        self.paused = pausing
        self.paused_once = self.paused_once or pausing
        return None


class _Sanitizer:
    """What the three sanitized wrappers share."""

    __slots__ = ("_order", "_raise", "_transport", "_wrapped")

    _wrapped: Any

    def __init__(
        self, protocol: Any, *, datagram: bool, raise_on_violation: bool, connected: bool
    ) -> None:
        check_bool("raise_on_violation", raise_on_violation)
        check_bool("connected", connected)
        self._wrapped = protocol
        self._order = _CallOrder(datagram=datagram, connected=connected)
        self._raise = raise_on_violation
        self._transport: asyncio.BaseTransport | None = None

    @property
    def wrapped(self) -> Any:
        """The protocol this wrapper forwards every call to."""
        return self._wrapped

    @property
    def transport(self) -> asyncio.BaseTransport | None:
        """The transport given to ``connection_made``, or None before it."""
        return self._transport

    @property
    def calls(self) -> tuple[str, ...]:
        """Every callback received so far, in order, with a short description of its arguments."""
        return tuple(self._order.calls)

    @property
    def violations(self) -> tuple[str, ...]:
        """A message for each violation seen so far (empty while the order is legal)."""
        return tuple(self._order.violations)

    @property
    def connected(self) -> bool:
        """Whether ``connection_made`` came and ``connection_lost`` has not."""
        return self._order.state in (_State.CONNECTED, _State.EOF)

    @property
    def lost(self) -> bool:
        """Whether ``connection_lost`` was called."""
        return self._order.state is _State.LOST

    @property
    def eof(self) -> bool:
        """Whether ``eof_received`` was called (always False for datagram protocols)."""
        return self._order.state is _State.EOF or "eof_received" in self._order.calls

    def check(self, *, lost: bool | None = None) -> None:
        """Raise if any violation was seen, or if the connection is not in the state expected.

        Call it at the end of a test: a violation raised inside a callback may
        have been swallowed by the transport.

        Args:
            lost: True to also require that ``connection_lost`` was called, False
                to require that it was not, None (the default) for either.

        Raises:
            ProtocolViolation: counting every violation seen, and listing each
                kind once, with the calls before its first.
        """
        violations = self._order.violations
        ending: list[str] = []
        if lost is True and not self.lost:
            calls = self._order.calls
            shown = calls if len(calls) <= _SHOWN_CALLS else ["...", *calls[-_SHOWN_CALLS:]]
            ending.append(
                "connection_lost was never called; calls: " + (", ".join(shown) or "none")
            )
        elif lost is False and self.lost:
            ending.append("connection_lost was called, but the connection should be open")
        if violations or ending:
            problems = [*_once_each(violations), *ending]
            raise ProtocolViolation(
                f"{len(violations) + len(ending)} protocol contract violation(s) on "
                f"{self._wrapped!r}:\n" + "\n".join(f"  - {problem}" for problem in problems)
            )

    def _enter(self, name: str, detail: str = "", problem: str | None = None) -> None:
        message = self._order.call(name, detail, problem)
        if message is not None and self._raise:
            raise ProtocolViolation(message)

    def __getattr__(self, name: str) -> Any:
        # Protocols such as StreamReaderProtocol carry private helpers that their
        # partners (StreamWriter) call; forward them so the wrapper is transparent.
        if name == "_wrapped":
            raise AttributeError(name)
        return getattr(self._wrapped, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _Sanitizer.__slots__:
            object.__setattr__(self, name, value)
        elif name in _OWN:
            # Read back, it would be the sanitizer's, not what was set.
            raise AttributeError(
                f"{name!r} is the sanitizer's own, read-only; set the protocol's "
                f"through the sanitizer's wrapped: sanitized.wrapped.{name} = ..."
            )
        else:
            setattr(self._wrapped, name, value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._wrapped!r}>"

    # -- BaseProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._enter("connection_made")
        self._transport = transport
        self._wrapped.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter("connection_lost", "None" if exc is None else repr(exc))
        self._wrapped.connection_lost(exc)

    def pause_writing(self) -> None:
        self._enter("pause_writing")
        self._wrapped.pause_writing()

    def resume_writing(self) -> None:
        self._enter("resume_writing")
        self._wrapped.resume_writing()


def _nbytes(data: object) -> str:
    return f"{len(data)} bytes" if isinstance(data, (bytes, bytearray, memoryview)) else repr(data)


#: The sanitizer's own attributes, which hide the wrapped protocol's.
_OWN = frozenset(
    name for name, value in vars(_Sanitizer).items() if isinstance(value, property)
) | {"check"}


@typing.final
class SanitizedProtocol(_Sanitizer, asyncio.Protocol):
    """An `asyncio.Protocol` that checks the order in which a transport calls it.

    It forwards every callback, return value and attribute to the protocol it
    wraps, so it can stand in for any protocol, :class:`asyncio.StreamReaderProtocol`
    included; its own attributes (``wrapped``, ``transport``, ``calls``,
    ``violations``, ``connected``, ``lost``, ``eof`` and ``check``) hide the
    protocol's of those names, which ``wrapped`` reaches.  Before forwarding, it
    checks the call against the contract every asyncio transport keeps:

    * ``connection_made`` comes first, exactly once;
    * ``data_received`` comes only after it, before ``eof_received`` and before
      ``connection_lost``, and never with empty data;
    * ``eof_received`` comes at most once;
    * ``connection_lost`` comes exactly once (checked by ``check(lost=True)``);
    * ``pause_writing`` and ``resume_writing`` alternate, starting with a pause,
      and only while connected.

    A violation is recorded, raised as :class:`ProtocolViolation` inside the
    callback (the wrapped protocol is then not called), and raised again by
    :meth:`check`.  Make one with :func:`sanitize`.

    Example::

        protocol = sanitize(MyProtocol())
        transport, _ = await loop.create_connection(lambda: protocol, host, port)
        ...
        protocol.check(lost=True)
    """

    __slots__ = ()

    def __init__(
        self,
        protocol: asyncio.Protocol,
        *,
        raise_on_violation: bool = True,
        connected: bool = False,
    ) -> None:
        super().__init__(
            protocol, datagram=False, raise_on_violation=raise_on_violation, connected=connected
        )

    def data_received(self, data: bytes) -> None:
        problem = None
        if not data:
            problem = "is never legal: an empty read means EOF, reported with eof_received()"
        self._enter("data_received", _nbytes(data), problem)
        self._wrapped.data_received(data)

    def eof_received(self) -> bool | None:
        self._enter("eof_received")
        return typing.cast("bool | None", self._wrapped.eof_received())


@typing.final
class SanitizedBufferedProtocol(_Sanitizer, asyncio.BufferedProtocol):
    """An `asyncio.BufferedProtocol` that checks the order in which a transport calls it.

    The rules are those of :class:`SanitizedProtocol`, with ``get_buffer`` and
    ``buffer_updated`` in place of ``data_received``.  In addition,
    ``buffer_updated(nbytes)`` must follow a ``get_buffer`` call and satisfy
    ``1 <= nbytes <= len(buffer)``.  ``get_buffer`` may be called again without a
    ``buffer_updated`` in between (the read that followed it found nothing), and
    after ``eof_received`` too (asyncio's TLS transport asks once more as it shuts
    down); ``buffer_updated`` may not follow ``eof_received``.
    It has the members of :class:`SanitizedProtocol`.  Make one with
    :func:`sanitize`.
    """

    __slots__ = ()

    def __init__(
        self,
        protocol: asyncio.BufferedProtocol,
        *,
        raise_on_violation: bool = True,
        connected: bool = False,
    ) -> None:
        super().__init__(
            protocol, datagram=False, raise_on_violation=raise_on_violation, connected=connected
        )

    def get_buffer(self, sizehint: int) -> Any:
        self._enter("get_buffer", str(sizehint))
        buffer = self._wrapped.get_buffer(sizehint)
        self._order.buffer_length = len(memoryview(buffer).cast("B"))
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        length = self._order.buffer_length
        problem = None
        if length is not None and not 1 <= nbytes <= length:
            problem = f"is outside 1..{length}, the length of the buffer get_buffer() returned"
        try:
            self._enter("buffer_updated", str(nbytes), problem)
        finally:
            self._order.buffer_length = None
        self._wrapped.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        self._enter("eof_received")
        return typing.cast("bool | None", self._wrapped.eof_received())


@typing.final
class SanitizedDatagramProtocol(_Sanitizer, asyncio.DatagramProtocol):
    """An `asyncio.DatagramProtocol` that checks the order in which a transport calls it.

    ``connection_made`` comes first and exactly once; ``datagram_received`` and
    ``error_received`` only after it and before ``connection_lost``, which comes
    exactly once; ``pause_writing`` and ``resume_writing`` alternate.  It has the
    members of :class:`SanitizedProtocol`.  Make one with :func:`sanitize`.
    """

    __slots__ = ()

    def __init__(
        self,
        protocol: asyncio.DatagramProtocol,
        *,
        raise_on_violation: bool = True,
        connected: bool = False,
    ) -> None:
        super().__init__(
            protocol, datagram=True, raise_on_violation=raise_on_violation, connected=connected
        )

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._enter("datagram_received", f"{_nbytes(data)}, {addr!r}")
        self._wrapped.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._enter("error_received", repr(exc))
        self._wrapped.error_received(exc)


def _once_each(violations: list[str]) -> list[str]:
    """Each kind of violation once, the first with the calls before it, and a count.

    A transport that repeats one mistake (``resume_writing`` with no pause,
    thousands of times) would otherwise list it as many times.
    """
    first: dict[str, int] = {}
    shown: list[str] = []
    counts: list[int] = []
    for violation in violations:
        what = violation.partition("; calls before it:")[0]
        if what in first:
            counts[first[what]] += 1
        else:
            first[what] = len(shown)
            shown.append(violation)
            counts.append(1)
    return [
        problem if count == 1 else f"{problem} (and {count - 1} more like it)"
        for problem, count in zip(shown, counts, strict=True)
    ]


@overload
def sanitize(
    protocol: asyncio.BufferedProtocol,
    *,
    raise_on_violation: bool = ...,
    connected: bool = ...,
) -> SanitizedBufferedProtocol: ...


@overload
def sanitize(
    protocol: asyncio.DatagramProtocol,
    *,
    raise_on_violation: bool = ...,
    connected: bool = ...,
) -> SanitizedDatagramProtocol: ...
@overload
def sanitize(
    protocol: asyncio.Protocol,
    *,
    raise_on_violation: bool = ...,
    connected: bool = ...,
) -> SanitizedProtocol: ...
def sanitize(
    protocol: asyncio.BaseProtocol,
    *,
    raise_on_violation: bool = True,
    connected: bool = False,
) -> SanitizedProtocol | SanitizedBufferedProtocol | SanitizedDatagramProtocol:
    """Wrap *protocol* in a sanitizer that fails loudly when a transport calls it out of order.

    Use it wherever a protocol is handed to a transport, to check the transport
    (yours, or a fake's) rather than the protocol: every call is forwarded
    unchanged, so the protocol works as before.  The wrapper is a
    :class:`SanitizedBufferedProtocol` if *protocol* is an
    `asyncio.BufferedProtocol` (transports pick their delivery path with
    ``isinstance``), a :class:`SanitizedDatagramProtocol` if it is an
    `asyncio.DatagramProtocol`, and a :class:`SanitizedProtocol` otherwise.

    Args:
        protocol: the protocol to wrap.
        raise_on_violation: raise :class:`ProtocolViolation` inside the offending
            callback, without forwarding it.  With False, violations are only
            recorded (and the call is forwarded); :meth:`~SanitizedProtocol.check`
            raises them either way.
        connected: start as if ``connection_made`` had already been called, for a
            protocol that a transport adopts mid-connection with ``set_protocol()``.

    Returns:
        The sanitized protocol.

    Raises:
        TypeError: if *protocol* is not an asyncio protocol.

    Example::

        async def test_my_transport_calls_in_order():
            protocol = sanitize(asyncio.Protocol())
            transport = make_my_transport(protocol)
            transport.close()
            await asyncio.sleep(0)
            protocol.check(lost=True)
    """
    if isinstance(protocol, asyncio.BufferedProtocol):
        return SanitizedBufferedProtocol(
            protocol, raise_on_violation=raise_on_violation, connected=connected
        )
    if isinstance(protocol, asyncio.DatagramProtocol):
        return SanitizedDatagramProtocol(
            protocol, raise_on_violation=raise_on_violation, connected=connected
        )
    if isinstance(protocol, asyncio.BaseProtocol):
        return SanitizedProtocol(
            typing.cast("asyncio.Protocol", protocol),
            raise_on_violation=raise_on_violation,
            connected=connected,
        )
    raise TypeError(
        f"protocol must be an asyncio.BaseProtocol instance, got {type(protocol).__name__}"
    )
