"""The plumbing between a stream server's sockets and its handlers, recording as it goes.

Each accepted connection gets a `_ConnState`, which owns the real transport and
the public `Connection` recording.  The handler's protocol sees a
`_RecordingTransport` that records writes; a `_RecordingProtocol` in front of it
records reads, EOF and how the connection ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import typing
import weakref
from collections.abc import Callable
from typing import Any

from ._hygiene import track
from ._recording import Connection, Ending
from ._server_base import _loop_thread_call, set_reset_on_close

if typing.TYPE_CHECKING:
    from ._stream_server import _StreamServer


def _connection_open(state: weakref.ReferenceType[_ConnState], transport: Any) -> bool:
    alive = state()
    return alive is not None and alive.conn.is_open and not transport.is_closing()


class _ConnState:
    """The server's side of one connection: its real transport and its recording."""

    def __init__(self, server: _StreamServer, transport: asyncio.Transport) -> None:
        self.server = server
        self.transport = transport
        self.closed_by_server = False
        self.aborted = False
        self.task: asyncio.Task[None] | None = None
        self.reader: asyncio.StreamReader | None = None
        loop = server._loop
        assert loop is not None
        self.loop = loop
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.conn = Connection._create(
            index=len(server._states) + 1,
            peer=peer,
            local=local,
            opened_at=loop.time(),
            server_name=server._name,
            actions=self,
        )
        track(
            transport,
            what=f"connection #{self.conn.index} to {server._name}",
            # The recording ends with connection_lost: 3.10's TLS transport never
            # says it is closing when the client's close_notify ended it.  A weak
            # reference, so that the gate keeps neither the state nor the transport.
            is_open=functools.partial(_connection_open, weakref.ref(self)),
            close=lambda t: _loop_thread_call(loop, t.abort),
            on_behalf_of=server,
        )

    def close(self) -> None:
        if not self.conn.eof_received and self.conn.is_open:
            self.closed_by_server = True
        self.transport.close()

    def reset(self) -> None:
        set_reset_on_close(self.transport)
        self.abort()

    def abort(self) -> None:
        if self.conn.is_open:
            self.aborted = True
        self.transport.abort()

    def lost(self, exc: BaseException | None) -> None:
        now = self.loop.time()
        if self.aborted:
            ending = Ending.ABORTED
        elif exc is not None:
            ending = Ending.RESET
        elif self.conn.eof_received and not self.closed_by_server:
            ending = Ending.EOF
        elif not self.closed_by_server and self.transport.get_extra_info("sslcontext"):
            # Python 3.10's TLS transport closes when the client's close_notify
            # arrives, without calling eof_received: that was the client's EOF.
            self.conn._record("eof", b"", now)
            ending = Ending.EOF
        else:
            ending = Ending.CLOSED
        self.conn._record_end(ending, now)
        if not self.transport.is_closing():
            # 3.10's TLS transport never marks itself closed when the client's
            # close_notify ended the connection, and warns when it is collected.
            with contextlib.suppress(Exception):
                self.transport.close()
        self.server._changed.notify()


_NO_START_TLS = (
    "start_tls() (STARTTLS) on a connection of a nettest loopback server is not "
    "supported: the recording sits between the socket and the handler. Serve TLS "
    "from the first byte with ssl=, or test the upgrade on memory_stream_pair() or "
    "memory_transport_pair(), whose transports support start_tls()"
)


class _RecordingTransport(asyncio.Transport):
    """What the handler's protocol sees: the real transport, with writes recorded."""

    # Slots: instance dicts of asyncio's transport subclasses are slow to read on
    # Python 3.13, and every write goes through here.  A dict stays, for patching.
    __slots__ = ("__dict__", "__weakref__", "_inner", "_state")

    def __init__(self, inner: asyncio.Transport, state: _ConnState) -> None:
        super().__init__()
        self._inner = inner
        self._state = state

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._state.close()

    def abort(self) -> None:
        self._state.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError(
            "nettest's recording transport cannot switch protocols (no start_tls); "
            "pass ssl= to the server instead"
        )

    @property
    def _start_tls_compatible(self) -> bool:
        # asyncio's start_tls() reads this first (getattr with a default, which
        # lets any error but AttributeError through): say why, before it pauses
        # reading or switches protocols, instead of its bare "not supported".
        raise TypeError(_NO_START_TLS)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)  # first: its TypeError for non-bytes is asyncio's own
        # asyncio still sends what is written after close() while the buffer drains,
        # and drops it once the connection is lost.
        if data and self._state.conn.is_open:
            self._state.conn._record("sent", bytes(data), self._state.loop.time())

    def writelines(self, list_of_data: typing.Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self._inner.write_eof()
        self._state.conn._record("write_eof", b"", self._state.loop.time())

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()


class _NoProtocol(asyncio.Protocol):
    """Stands in for the protocol a handler's factory failed to make."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class _RecordingProtocol(asyncio.Protocol):
    """Stands between the real transport and the handler's protocol, recording reads."""

    def __init__(
        self,
        server: _StreamServer,
        inner: asyncio.BaseProtocol,
        reader: asyncio.StreamReader | None = None,
    ) -> None:
        self._server = server
        self._inner = inner
        # StreamReaderProtocol holds its reader weakly; the handler needs it.
        self._reader = reader
        self._state: _ConnState | None = None

    def _guard(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            self._fail(what, exc)
            return None

    def _fail(self, what: str, exc: Exception) -> None:
        assert self._state is not None
        self._server._record_error(self._state.conn, exc, f"{what}() raised")
        self._state.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        transport = typing.cast("asyncio.Transport", transport)
        state = self._state = self._server._connection_made(transport)
        if isinstance(self._inner, _NoProtocol):
            # Recorded against the connection and raised again at teardown; the
            # connection is aborted, having nothing to talk to.
            failed = "the handler (a protocol factory) failed"
            self._server._record_error(state.conn, self._inner.error, failed)
            state.abort()
            return
        proxy = _RecordingTransport(transport, state)
        self._guard("connection_made", lambda: self._inner.connection_made(proxy))
        self._server._start_handler(state, proxy, self._inner, self._reader)

    def data_received(self, data: bytes) -> None:
        # The hot path: no closures, no isinstance.
        state = typing.cast("_ConnState", self._state)
        state.conn._record("received", data, state.loop.time())
        try:
            typing.cast("asyncio.Protocol", self._inner).data_received(data)
        except Exception as exc:
            self._fail("data_received", exc)

    def eof_received(self) -> bool | None:
        assert self._state is not None
        self._state.conn._record("eof", b"", self._state.loop.time())
        inner = self._inner
        assert isinstance(inner, (asyncio.Protocol, asyncio.BufferedProtocol))
        return bool(self._guard("eof_received", inner.eof_received))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state is None:
            return  # connection_made failed (and said so): the handler never began
        self._state.lost(exc)
        self._guard("connection_lost", lambda: self._inner.connection_lost(exc))

    def pause_writing(self) -> None:
        self._guard("pause_writing", self._inner.pause_writing)

    def resume_writing(self) -> None:
        self._guard("resume_writing", self._inner.resume_writing)


class _RecordingBufferedProtocol(_RecordingProtocol, asyncio.BufferedProtocol):
    """`_RecordingProtocol` for a handler protocol that is an `asyncio.BufferedProtocol`."""

    _buffer: memoryview

    def get_buffer(self, sizehint: int) -> memoryview:
        inner = self._inner
        assert isinstance(inner, asyncio.BufferedProtocol)
        self._buffer = memoryview(inner.get_buffer(sizehint)).cast("B")
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert self._state is not None
        self._state.conn._record("received", bytes(self._buffer[:nbytes]), self._state.loop.time())
        inner = self._inner
        assert isinstance(inner, asyncio.BufferedProtocol)
        self._guard("buffer_updated", lambda: inner.buffer_updated(nbytes))
