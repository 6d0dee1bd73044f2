"""The conformance suite's machinery: recording protocols, and a harness that connects them.

Theory of operation
-------------------
Each case is a coroutine function taking a :class:`_Harness`.  The harness asks
the user's pair factory for a connected pair, giving it factories for two
recording protocols (each wrapped in a sanitizer), waits until both ends are
connected, and afterwards makes sure both transports are closed, that each
protocol saw ``connection_lost`` exactly once, and that no callback came out of
order.  While a case runs, the loop's exception handler is replaced by one that
records what it is given: a case that expects a report takes it, anything else
fails the case.

Real transports differ in what the kernel does with bytes in flight, so the
cases never assume how much a socket buffers.  They assert what holds for every
correct transport: invariants checked after each synchronous call (paused if
and only if the write buffer is above the high-water mark), and outcomes after
the loop has run (every byte arrived, in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._contract import ProtocolViolation, sanitize

__all__ = ["TransportPairFactory"]

#: A factory of protocols, as `loop.create_connection` takes one.
ProtocolFactory = Callable[[], asyncio.BaseProtocol]

_CHUNK = 64 * 1024
#: The least time the cleanup after a case waits for the transports it must abort.
_CLEANUP_TIMEOUT = 5.0
#: How much the cases write at most while filling kernel buffers before giving up.
_CLOG_LIMIT = 256 * 1024 * 1024


class TransportPairFactory(typing.Protocol):
    """The signature of the factory :func:`check_transport_pair` takes.

    It is called with two protocol factories and returns an async context
    manager.  Entering it must connect a client transport to a server
    transport, calling ``client_factory()`` once for the client's protocol and
    ``server_factory()`` once for the server's; the suite waits until both
    ``connection_made`` calls have happened, so the factory need not.  Exiting
    it releases what the factory made besides the two transports (a listening
    server, say); the suite closes the transports itself before that.

    Example::

        @contextlib.asynccontextmanager
        async def tcp_pair(client_factory, server_factory):
            loop = asyncio.get_running_loop()
            server = await loop.create_server(server_factory, "127.0.0.1", 0)
            try:
                port = server.sockets[0].getsockname()[1]
                await loop.create_connection(client_factory, "127.0.0.1", port)
                yield
            finally:
                server.close()
    """

    def __call__(
        self, client_factory: ProtocolFactory, server_factory: ProtocolFactory, /
    ) -> contextlib.AbstractAsyncContextManager[object]: ...


class PairFactoryMisuse(TypeError):
    """The pair factory is not a `TransportPairFactory`: the caller's mistake, no case's."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# -- the recording protocols -------------------------------------------------


@dataclass(eq=False)
class _End:
    """One end of a connection, as its recording protocols see it."""

    name: str
    harness: _Harness
    #: What eof_received() returns.
    eof_result: bool = True
    #: Size of the buffers a buffered recorder hands out; None for a data_received recorder.
    buffer_size: int | None = None
    #: Whether the protocol is a StreamReaderProtocol, for StreamWriter cases.
    streams: bool = False
    #: Every transport its protocols were given, the case's the last (a factory
    #: that connects twice gives more than one), for the cleanup to abort.
    transports: list[asyncio.Transport] = field(default_factory=list)
    #: How many times connection_lost was called.
    lost_count: int = 0
    data: bytearray = field(default_factory=bytearray)
    eof: bool = False
    lost_exc: BaseException | None = None
    #: (callback name, write buffer size when it was called) for pause/resume_writing.
    flow: list[tuple[str, int]] = field(default_factory=list)
    #: Set while the harness is inside a transport method that must not call back.
    inside: str | None = None
    #: What the ends' callbacks did wrong, each with how many times.
    problem_counts: dict[str, int] = field(default_factory=dict)
    on_pause: Callable[[], None] | None = None
    on_resume: Callable[[], None] | None = None
    on_data: Callable[[bytes], None] | None = None
    sanitized: list[Any] = field(default_factory=list)
    protocols: list[_Recorder | _BufferedRecorder | _StreamRecorder] = field(default_factory=list)

    def make_protocol(
        self, *, buffer_size: int | None = None
    ) -> _Recorder | _BufferedRecorder | _StreamRecorder:
        size = self.buffer_size if buffer_size is None else buffer_size
        protocol: _Recorder | _BufferedRecorder | _StreamRecorder
        if self.streams:
            protocol = _StreamRecorder(self)
        elif size is None:
            protocol = _Recorder(self)
        else:
            protocol = _BufferedRecorder(self, size)
        self.protocols.append(protocol)
        return protocol

    @property
    def transport(self) -> asyncio.Transport | None:
        """The transport of the case's connection (the last one connected)."""
        return self.transports[-1] if self.transports else None

    @property
    def made(self) -> bool:
        """Whether connection_made was called."""
        return bool(self.transports)

    @property
    def lost(self) -> bool:
        """Whether connection_lost was called."""
        return self.lost_count > 0

    @property
    def all_lost(self) -> bool:
        """Whether connection_lost was called for each transport connected.

        Something a broken factory handed over that is no transport (connect()
        reports it) does not count.
        """
        return self.lost_count >= sum(not _lacks(t) for t in self.transports)

    @property
    def problems(self) -> list[str]:
        """What the callbacks did wrong, each said once, with a count if it repeated."""
        return [
            problem if count == 1 else f"{problem} ({count} times)"
            for problem, count in self.problem_counts.items()
        ]

    @property
    def t(self) -> asyncio.Transport:
        _expect(self.transport is not None, f"the {self.name} is not connected")
        assert self.transport is not None
        return self.transport

    def _called(self, name: str) -> None:
        if self.inside is not None:
            problem = f"{name}() was called synchronously inside {self.inside}"
            self.problem_counts[problem] = self.problem_counts.get(problem, 0) + 1
        self.harness.changed.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._called("connection_made")
        self.transports.append(typing.cast("asyncio.Transport", transport))

    def data_received(self, data: bytes) -> None:
        self._called("data_received")
        self.data += data
        if self.on_data is not None:
            self.on_data(bytes(data))

    def eof_received(self) -> bool:
        self._called("eof_received")
        self.eof = True
        return self.eof_result

    def connection_lost(self, exc: BaseException | None) -> None:
        self._called("connection_lost")
        self.lost_exc = exc
        self.lost_count += 1

    def pause_writing(self) -> None:
        self._called("pause_writing")
        self.flow.append(("pause_writing", self.t.get_write_buffer_size()))
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        self._called("resume_writing")
        self.flow.append(("resume_writing", self.t.get_write_buffer_size()))
        if self.on_resume is not None:
            self.on_resume()

    @property
    def paused(self) -> bool:
        return bool(self.flow) and self.flow[-1][0] == "pause_writing"

    def describe(self) -> str:
        return (
            f"{self.name}: made={self.made} received={len(self.data)} bytes eof={self.eof} "
            f"lost={self.lost} ({self.lost_exc!r}) flow={self.flow[-4:]}"
        )


class _ReportsToEnd:
    """The callbacks the plain and the buffered recorder pass straight to their end."""

    end: _End

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.end.connection_made(transport)

    def eof_received(self) -> bool:
        return self.end.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.end.connection_lost(exc)

    def pause_writing(self) -> None:
        self.end.pause_writing()

    def resume_writing(self) -> None:
        self.end.resume_writing()


class _Recorder(_ReportsToEnd, asyncio.Protocol):
    def __init__(self, end: _End) -> None:
        self.end = end
        self.received = bytearray()

    def __repr__(self) -> str:
        # What a violation names: which end of the pair got the bad call.
        return f"<the {self.end.name}'s protocol>"

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.end.data_received(data)


class _BufferedRecorder(_ReportsToEnd, asyncio.BufferedProtocol):
    def __init__(self, end: _End, size: int) -> None:
        self.end = end
        self.buffer = bytearray(size)
        self.received = bytearray()
        self.get_buffer_calls = 0

    def __repr__(self) -> str:
        return f"<the {self.end.name}'s buffered protocol>"

    def get_buffer(self, sizehint: int) -> bytearray:
        self.get_buffer_calls += 1
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.buffer[:nbytes])
        self.received += data
        self.end.data_received(data)


class _StreamRecorder(asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol that also tells its end what happens, for StreamWriter cases."""

    def __init__(self, end: _End) -> None:
        # The protocol holds its reader weakly, as asyncio.open_connection's does.
        self.reader = asyncio.StreamReader()
        super().__init__(self.reader)
        self.end = end
        self.received = bytearray()

    def __repr__(self) -> str:
        return f"<the {self.end.name}'s stream protocol>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.end.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.received += data
        self.end.data_received(data)

    def eof_received(self) -> bool:
        super().eof_received()
        return self.end.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.end.connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.end.pause_writing()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.end.resume_writing()


#: What the harness itself calls on every transport: an object without them is no transport.
_TRANSPORT_METHODS = ("write", "close", "abort", "is_closing", "get_extra_info")


def _lacks(transport: object) -> list[str]:
    """The methods of `_TRANSPORT_METHODS` *transport* does not have, as ``name()``."""
    return [
        f"{name}()" for name in _TRANSPORT_METHODS if not callable(getattr(transport, name, None))
    ]


def _violations(end: _End) -> list[str]:
    """The sanitizer's findings on *end*'s protocols so far."""
    return [f"{end.name}: {v}" for sanitized in end.sanitized for v in sanitized.violations]


# -- the harness -----------------------------------------------------------------


class _Harness:
    """What a case uses: connecting, waiting, and the loop's exception reports."""

    def __init__(
        self,
        make_pair: TransportPairFactory,
        *,
        seed: int,
        timeout: float | None,
        half_close: bool = True,
    ) -> None:
        self.make_pair = make_pair
        self.random = random.Random(seed)
        self.timeout = timeout
        #: Whether the transports can half-close (``can_write_eof()``): if not,
        #: a case ends a stream with ``close()`` instead of ``write_eof()``.
        self.half_close = half_close
        self.changed = asyncio.Event()
        self.loop_errors: list[dict[str, Any]] = []
        #: The ends of the case's connection, once connect() made them.
        self.ends: tuple[_End, ...] = ()

    def send_eof(self, end: _End) -> None:
        """End what *end* sends: ``write_eof()``, or ``close()`` on a pair that cannot half-close.

        After ``close()`` the end reads nothing more: a case that needs an answer
        after the EOF runs only on pairs that can half-close.
        """
        if self.half_close:
            end.t.write_eof()
        else:
            end.t.close()

    def take_loop_errors(self) -> list[dict[str, Any]]:
        errors, self.loop_errors = self.loop_errors, []
        return errors

    async def wait_until(self, condition: Callable[[], bool], what: str, *ends: _End) -> None:
        """Wait until `condition()` holds, failing after the timeout with the ends' state.

        Every condition a case waits for is set by a protocol callback, and none
        comes after connection_lost: once every transport of both ends is lost,
        the wait fails at once rather than at the timeout.
        """
        await self._wait(condition, what, ends, self.timeout, while_connected=True)

    def _all_lost(self) -> bool:
        return bool(self.ends) and all(end.made and end.all_lost for end in self.ends)

    async def _wait(
        self,
        condition: Callable[[], bool],
        what: str,
        ends: tuple[_End, ...],
        timeout: float | None,
        *,
        while_connected: bool = False,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not condition():
            if while_connected and self._all_lost():
                await self.settle()  # a callback already scheduled still counts
                if condition():
                    return
                state = "; ".join(end.describe() for end in ends)
                raise AssertionError(
                    f"connection_lost was called on both ends before {what}, so it never "
                    f"will be; {state}"
                )
            self.changed.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                state = "; ".join(end.describe() for end in ends)
                raise AssertionError(f"timed out after {timeout}s waiting until {what}; {state}")
            with contextlib.suppress(asyncio.TimeoutError):
                # Poll too: some conditions (a buffer draining) have no callback.
                await asyncio.wait_for(self.changed.wait(), min(remaining or 0.05, 0.05))

    @contextlib.asynccontextmanager
    async def connect(
        self,
        *,
        client_eof_result: bool | None = None,
        server_eof_result: bool | None = None,
        server_buffer_size: int | None = None,
        client_streams: bool = False,
    ) -> AsyncIterator[tuple[_End, _End]]:
        """Connect a pair; on exit, close it and check both protocols saw a legal order.

        By default eof_received() keeps a connection half-open where the pair can
        half-close and closes it where it cannot, as a correct protocol does.
        """
        if client_eof_result is None:
            client_eof_result = self.half_close
        if server_eof_result is None:
            server_eof_result = self.half_close
        client = _End("client", self, eof_result=client_eof_result, streams=client_streams)
        server = _End("server", self, eof_result=server_eof_result, buffer_size=server_buffer_size)
        self.ends = (client, server)
        calls = {"client": 0, "server": 0}

        def factory(end: _End) -> ProtocolFactory:
            def make() -> asyncio.BaseProtocol:
                calls[end.name] += 1
                sanitized = sanitize(end.make_protocol())
                end.sanitized.append(sanitized)
                return sanitized

            return make

        pair = self.make_pair(factory(client), factory(server))
        if not hasattr(type(pair), "__aenter__"):
            raise PairFactoryMisuse(
                "the pair factory must return an async context manager (write it as an "
                f"async generator under @contextlib.asynccontextmanager), got {pair!r}"
            )
        entered = False
        try:
            async with pair:
                entered = True
                try:
                    await self.wait_until(
                        lambda: client.made and server.made,
                        "both protocols' connection_made was called",
                        client,
                        server,
                    )
                    _expect(
                        calls == {"client": 1, "server": 1},
                        f"the pair factory must call each protocol factory once, called {calls}",
                    )
                    for end in (client, server):
                        missing = _lacks(end.transport)
                        _expect(
                            not missing,
                            f"{end.name}: connection_made() was given {end.transport!r}, which "
                            f"is not a transport: it has no {', '.join(missing)}",
                        )
                    try:
                        yield client, server
                        await self.wait_until(
                            lambda: client.lost and server.lost,
                            "connection_lost was called on both ends at the end of the case",
                            client,
                            server,
                        )
                    except AssertionError as exc:
                        # A callback at the wrong moment explains whatever failed after
                        # it (often a wait that timed out): say it first.
                        problems = [f"{e.name}: {p}" for e in (client, server) for p in e.problems]
                        if not isinstance(exc, ProtocolViolation):  # which says them already
                            problems += _violations(client) + _violations(server)
                        if problems:
                            raise AssertionError("; ".join(problems) + f"; then: {exc}") from exc
                        raise
                finally:
                    await self._abort_open(client, server, calls)
        except BaseException:
            if not entered:
                # The factory raised as it made the pair: what it connected is open.
                await self._abort_open(client, server, calls, wait_for_made=False)
            raise
        for end in (client, server):
            _expect(not end.problems, f"{end.name}: " + "; ".join(end.problems))
            for position, sanitized in enumerate(end.sanitized):
                # A protocol replaced with set_protocol() never sees connection_lost.
                sanitized.check(lost=position == len(end.sanitized) - 1)

    async def _abort_open(
        self, client: _End, server: _End, calls: dict[str, int], *, wait_for_made: bool = True
    ) -> None:
        """Abort what is still open, however the case ended, and wait until it is lost.

        A case that failed early, a timeout included, may leave an end whose
        protocol was made but whose connection_made is still to come: wait for
        it, so that its transport is aborted too instead of leaking.  Each wait
        here is allowed at least `_CLEANUP_TIMEOUT`, however short the case's
        timeout.
        """
        ends = (client, server)
        timeout = None if self.timeout is None else max(self.timeout, _CLEANUP_TIMEOUT)
        if wait_for_made:
            with contextlib.suppress(AssertionError):
                await self._wait(
                    lambda: all(end.made for end in ends if calls[end.name]),
                    "connection_made before the cleanup",
                    ends,
                    timeout,
                )
        for end in ends:
            for transport in end.transports:
                if _lacks(transport):
                    continue  # not a transport: nothing to abort (connect() said so)
                # The case's own connection unless it is lost; another (a factory
                # that connected twice) unless it is closing.
                current = transport is end.transport
                if (current and not end.lost) or (not current and not transport.is_closing()):
                    transport.abort()
        with contextlib.suppress(AssertionError):
            await self._wait(
                lambda: all(end.all_lost for end in ends),
                "connection_lost after abort()",
                ends,
                timeout,
            )

    async def clog(self, writer: _End, reader: _End) -> int:
        """Stop *reader* reading and write to *writer* until its write buffer stays full.

        Returns the number of bytes written.  Real sockets take writes into the
        kernel until its buffers fill, so how much that takes is unknown.  Something
        between the two ends (a relay or proxy on the same loop) takes more once the
        loop runs, into its own buffers and a second connection's, so the buffer
        must still hold data after the loop has had time to move it.
        """
        reader.t.pause_reading()
        written = 0
        chunk = b"c" * _CHUNK
        while True:
            while writer.t.get_write_buffer_size() == 0:
                _expect(
                    written < _CLOG_LIMIT,
                    f"wrote {written} bytes to the {writer.name} while the {reader.name} "
                    "paused reading, and get_write_buffer_size() stayed 0: no kernel buffers "
                    "hold that much, so it does not count what waits in the transport's own "
                    f"buffer, or the {reader.name}'s pause_reading() does not stop the "
                    "transport under it reading, or something between the two reads "
                    "without limit",
                )
                writer.t.write(chunk)
                written += len(chunk)
                # Let a transport that moves bytes on the loop (a memory pair) move them.
                if written % (16 * _CHUNK) == 0:
                    await asyncio.sleep(0)
            await self.settle()
            if writer.t.get_write_buffer_size():
                return written

    async def settle(self) -> None:
        """Give the loop and the kernel time to do what they would do."""
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        for _ in range(5):
            await asyncio.sleep(0)


# -- what the cases share ------------------------------------------------------

_Case = Callable[[_Harness], Awaitable[None]]
_CASES: dict[str, _Case] = {}
#: The cases that check half-close itself, which a pair that cannot half-close skips.
_HALF_CLOSE_CASES: set[str] = set()

#: High enough that clogging a connection never pauses the writer.
_NO_PAUSE = 2**30
#: Written on top of full kernel buffers, so the transport's own buffer surely holds data.
_EXTRA = 1024 * 1024


def _case(function: _Case) -> _Case:
    _CASES[function.__name__.removeprefix("_case_")] = function
    return function


def _half_close_case(function: _Case) -> _Case:
    """Register a case that needs ``write_eof()``: it checks half-close itself."""
    _HALF_CLOSE_CASES.add(function.__name__.removeprefix("_case_"))
    return _case(function)


def _chunks(h: _Harness, total: int) -> list[bytes]:
    """Random bytes cut into writes of very different sizes, from one byte up."""
    sizes = (1, 2, 7, 100, 1000, 4096, 20000, 70000)
    chunks = []
    while total:
        size = min(total, h.random.choice(sizes))
        chunks.append(h.random.randbytes(size))
        total -= size
    return chunks


async def _close_both(client: _End, server: _End) -> None:
    client.t.close()
    server.t.close()


def _same(received: bytes | bytearray, sent: bytes, what: str) -> None:
    if received == sent:
        return
    index = next(
        (i for i, (a, b) in enumerate(zip(received, sent, strict=False)) if a != b),
        min(len(received), len(sent)),
    )
    raise AssertionError(
        f"{what}: received {len(received)} bytes, sent {len(sent)}; they first differ at "
        f"offset {index}"
    )


class _CaseError(Exception):
    """An exception a case makes a protocol raise on purpose."""
