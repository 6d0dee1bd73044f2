"""The plumbing between a stream server's sockets and its handlers, recording as it goes.

Each accepted connection gets a `_ConnState`, which owns the real transport and
the public `Connection` recording.  The handler's protocol sees a
`_RecordingTransport` that records writes; a `_RecordingProtocol` in front of it
records reads, EOF and how the connection ended.  A handler's ``start_tls()``
puts asyncio's TLS layer between the socket and a second recorder in front of
the handler (`_ConnState.start_tls`), so the recording stays in cleartext.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import functools
import typing
import weakref
from collections.abc import Callable
from typing import Any

from ._hygiene import track
from ._recording import Connection, Ending, TLSInfo
from ._server_base import (
    _loop_thread_call,
    close_transports_after_their_loop,
    set_reset_on_close,
)

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
        #: The TLS transport the handler talks through after ``start_tls()``.
        self.tls_transport: asyncio.Transport | None = None
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
        if server._ssl is not None:
            _ = self.conn.tls  # the handshake is done: read what it negotiated now

    def close(self) -> None:
        if not self.conn.eof_received and self.conn.is_open:
            self.closed_by_server = True
        # After start_tls(), through TLS: close_notify first, then the socket.
        (self.tls_transport or self.transport).close()

    def reset(self) -> None:
        set_reset_on_close(self.transport)
        self.abort()

    def abort(self) -> None:
        if self.conn.is_open:
            self.aborted = True
        self.transport.abort()

    def close_after_its_loop(self) -> None:
        """End the connection after its event loop has closed: ``ABORTED``, socket closed.

        Nothing can run on a closed loop (a test's own `asyncio.run` returned with
        the connection open), so the socket is closed under the transports
        (`close_transports_after_their_loop`) and the recording ends here: the handler's
        ``connection_lost`` is not called, as it would run on the closed loop.
        """
        if not self.conn.is_open:
            return
        self.aborted = True
        transports: list[asyncio.BaseTransport] = []
        if self.tls_transport is not None:  # start_tls(): the socket's, then the TLS one
            transports += [self.transport, self.tls_transport]
        else:
            # A TLS server's transport is asyncio's TLS layer, over the socket's.
            under = getattr(getattr(self.transport, "_ssl_protocol", None), "_transport", None)
            if isinstance(under, asyncio.BaseTransport):
                transports.append(under)
            transports.append(self.transport)
        close_transports_after_their_loop(transports)
        # What waits on the recording was cancelled with its loop's tasks, or can
        # never be woken: waking it would schedule on the closed loop.
        with contextlib.suppress(RuntimeError):
            self.conn._record_end(Ending.ABORTED, self.loop.time())

    def start_tls(self, ssl_protocol: asyncio.sslproto.SSLProtocol) -> None:
        """Put asyncio's TLS layer between the socket and the handler, recording cleartext.

        ``loop.start_tls()`` calls this through `_RecordingTransport.set_protocol`:
        the socket's transport now feeds the TLS layer directly (ciphertext is not
        recorded), the TLS layer feeds a recorder in front of the handler's
        protocol, and what the handler writes is recorded as it enters TLS.  The
        TLS layer's end is the connection's end even when the handshake fails
        (Python 3.10 then never tells the handler's protocol).
        """
        # asyncio's SSLProtocol makes its transport for the application when it is
        # made, on every Python from 3.10: the one start_tls() returns.
        app_transport: asyncio.Transport = ssl_protocol._app_transport
        # The handler's protocol, whether start_tls() was given it or its recorder.
        protocol = handler_protocol(app_transport.get_protocol())
        recorder = recorder_for(self.server, protocol)
        recorder._attach(self)
        app_transport.set_protocol(recorder)
        # What the TLS transport tells its user is the handler's protocol too.
        app_transport.get_protocol = lambda: protocol  # type: ignore[method-assign]
        conn = self.conn
        loop = self.loop
        write_appdata = ssl_protocol._write_appdata

        def record_and_write(data: Any) -> None:
            # One buffer before 3.11, a sequence of them from 3.11.
            chunks = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data
            for chunk in chunks:
                if chunk and conn.is_open:
                    conn._record("sent", bytes(chunk), loop.time())
            write_appdata(data)

        lose = ssl_protocol.connection_lost

        def lose_then_record(exc: BaseException | None) -> None:
            # The TLS layer first, as asyncio's socket transport calls it: recording
            # the end closes the transports, and a TLS layer closed mid-handshake
            # would then tell the handler's protocol of a loss it never hears of
            # under asyncio (whose StreamWriter.wait_closed() then waits for ever).
            lose(exc)
            self.lost(exc)

        complete = ssl_protocol._on_handshake_complete

        def complete_then_read(handshake_exc: BaseException | None) -> None:
            complete(handshake_exc)
            # Read now: once the handler closes its writer, the TLS layer that is
            # shutting down answers nothing, and Connection.tls would stay None.
            if handshake_exc is None and conn._tls is None:
                conn._tls = self.tls_info()

        ssl_protocol._on_handshake_complete = complete_then_read  # type: ignore[method-assign]
        ssl_protocol._write_appdata = record_and_write  # type: ignore[method-assign]
        ssl_protocol.connection_lost = lose_then_record  # type: ignore[method-assign]
        self.tls_transport = app_transport
        self.transport.set_protocol(ssl_protocol)

    def tls_info(self) -> TLSInfo | None:
        """What TLS negotiated, once its handshake is done (see `Connection.tls`)."""
        try:
            ssl_object = (self.tls_transport or self.transport).get_extra_info("ssl_object")
        except Exception:  # a TLS transport shutting down refuses to answer
            return None
        return None if ssl_object is None else TLSInfo._of(ssl_object)

    def tls_failed(self, error: BaseException) -> None:
        """Record that a STARTTLS handshake (a script's ``start_tls`` step) failed."""
        self.server._handshake_failed(self.conn.peer, error)
        self.server._changed.notify()

    def _is_tls(self) -> bool:
        # Not get_extra_info(): a TLS transport shutting down refuses to answer.
        return self.tls_transport is not None or self.server._ssl is not None

    def close_notify_unanswered(self, exc: BaseException | None) -> bool:
        """Whether `exc` is asyncio's TLS layer giving up on the client's close_notify.

        It waits ``ssl_shutdown_timeout`` (the server's close_timeout) after the
        server closed, then aborts with a TimeoutError: the server ended it.
        """
        return isinstance(exc, TimeoutError) and self.closed_by_server and self._is_tls()

    def lost(self, exc: BaseException | None) -> None:
        if not self.conn.is_open:
            return  # after start_tls(), both the TLS layer and the handler's recorder say so
        _ = self.conn.tls  # read while the TLS layer still answers
        now = self.loop.time()
        if self.aborted:
            ending = Ending.ABORTED
        elif self.close_notify_unanswered(exc):
            # The server side ended it, not the client.
            ending = Ending.ABORTED
            self.server._close_notify_unanswered(self.conn)
        elif isinstance(exc, ConnectionAbortedError):
            # asyncio's own abort on the server's side: a STARTTLS handshake
            # that outlasted its timeout, say.  A client's RST is a reset error.
            ending = Ending.ABORTED
        elif exc is not None:
            ending = Ending.RESET
        elif self.conn.eof_received and not self.closed_by_server:
            ending = Ending.EOF
        elif not self.closed_by_server and self._is_tls():
            # Python 3.10's TLS transport closes when the client's close_notify
            # arrives, without calling eof_received: that was the client's EOF.
            self.conn._record("eof", b"", now)
            ending = Ending.EOF
        else:
            ending = Ending.CLOSED
        self.conn._record_end(ending, now)
        for transport in (self.tls_transport, self.transport):
            if transport is not None and not transport.is_closing():
                # 3.10's TLS transport never marks itself closed when the client's
                # close_notify ended the connection, and warns when it is collected.
                with contextlib.suppress(Exception):
                    transport.close()
        self.server._changed.notify()


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
        if self._state.tls_transport is not None:
            # The TLS layer closing the socket, after its close_notify.
            self._inner.close()
        else:
            self._state.close()

    def abort(self) -> None:
        self._state.abort()

    def _force_close(self, exc: BaseException | None) -> None:
        # What asyncio's TLS layer calls on a fatal error (a failed handshake).
        self._inner._force_close(exc)  # type: ignore[attr-defined]

    #: asyncio's ``loop.start_tls()`` takes this transport (see `set_protocol`).
    _start_tls_compatible = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Switch to asyncio's TLS layer, as ``loop.start_tls()`` does; nothing else."""
        if not isinstance(protocol, asyncio.sslproto.SSLProtocol):
            raise NotImplementedError(
                "nettest's recording transport switches protocols only for "
                f"loop.start_tls(), not to {type(protocol).__name__}"
            )
        if self._state.tls_transport is not None:
            raise RuntimeError("start_tls() was already called on this connection")
        self._state.start_tls(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The handler's protocol, as asyncio's servers give it, not the recorder before it."""
        return handler_protocol(self._inner.get_protocol())

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
        # and drops it once the connection is lost.  After start_tls() this is the
        # TLS layer's ciphertext: the cleartext was recorded as it entered TLS.
        if data and self._state.conn.is_open and self._state.tls_transport is None:
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

    def _attach(self, state: _ConnState) -> None:
        """Record for `state`'s connection without a ``connection_made`` (after start_tls)."""
        self._state = state

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
        conn = self._state.conn
        # Once the server has closed, a TLS client's EOF is its answer to close_notify.
        conn._eof_answered_close = self._state.closed_by_server
        conn._record("eof", b"", self._state.loop.time())
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


class _BufferOnlyProtocol(asyncio.BufferedProtocol):
    """The recording in front of a handler's BufferedProtocol that is not also a Protocol.

    A loop reads into ``get_buffer``/``buffer_updated`` or calls ``data_received``
    depending on what the protocol is, and loops decide differently for one that
    is both: asyncio's loop uses the buffer, uvloop (``handles/stream.pyx``,
    ``_set_protocol``) calls ``data_received`` for any `asyncio.Protocol`.  The
    recording protocol must therefore be exactly what the handler's protocol is.
    `_RecordingBufferedProtocol` is both kinds (right for a handler's protocol that
    is both); this is a BufferedProtocol only, passing each callback on to one.
    """

    __slots__ = ("_recorder",)

    def __init__(self, recorder: _RecordingBufferedProtocol) -> None:
        self._recorder = recorder

    def _attach(self, state: _ConnState) -> None:
        self._recorder._attach(state)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._recorder.connection_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._recorder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._recorder.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        return self._recorder.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._recorder.connection_lost(exc)

    def pause_writing(self) -> None:
        self._recorder.pause_writing()

    def resume_writing(self) -> None:
        self._recorder.resume_writing()


def handler_protocol(protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol:
    """The handler's protocol behind `protocol`, if it is one of the recorders."""
    if isinstance(protocol, _BufferOnlyProtocol):
        protocol = protocol._recorder
    if isinstance(protocol, _RecordingProtocol):
        return protocol._inner
    return protocol


def recorder_for(
    server: _StreamServer, inner: asyncio.BaseProtocol
) -> _RecordingProtocol | _BufferOnlyProtocol:
    """The recording protocol in front of a handler's protocol, of the same kind as it."""
    if not isinstance(inner, asyncio.BufferedProtocol):
        return _RecordingProtocol(server, inner)
    recorder = _RecordingBufferedProtocol(server, inner)
    if isinstance(inner, asyncio.Protocol):
        return recorder  # both kinds, as the handler's protocol is
    return _BufferOnlyProtocol(recorder)


class _TLSAccept(asyncio.Protocol):
    """An accepted socket's first protocol: puts asyncio's TLS layer before the recorder.

    A server made with ``create_server(ssl=...)`` drops a failed handshake's error
    (outside debug mode) and never shows the connection.  So a TLS server listens
    for plain connections and, as each is made, makes the TLS layer itself, as
    asyncio's own servers do, and watches its handshake (`_StreamServer._handshake`).
    """

    __slots__ = ("_recorder", "_server")

    def __init__(self, server: _StreamServer, recorder: asyncio.BaseProtocol) -> None:
        self._server = server
        self._recorder = recorder

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server._handshake(typing.cast("asyncio.Transport", transport), self._recorder)
