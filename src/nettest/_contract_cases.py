"""Conformance cases for data, EOF, close and abort.

Each case is a coroutine function, registered under its name with ``_case``,
that connects a fresh pair through the :class:`_Harness` and checks one
semantic that every stream transport of the standard library and uvloop share
(see ``_contract_harness`` for how pairs are made, closed and checked, and how
cases are written to hold on real sockets whatever the kernel buffers).
Flow control, streams, TLS and extra info are in ``_contract_cases_flow``.
"""

from __future__ import annotations

import asyncio
import contextvars

from ._contract import sanitize
from ._contract_harness import (
    _EXTRA,
    _NO_PAUSE,
    _case,
    _CaseError,
    _chunks,
    _close_both,
    _End,
    _expect,
    _half_close_case,
    _Harness,
    _Recorder,
    _same,
)

__all__: list[str] = []


# -- setup and data --------------------------------------------------------------


@_case
async def _case_connection_made_first(h: _Harness) -> None:
    """Both protocols get connection_made first, with a fresh, open, reading transport."""
    async with h.connect() as (client, server):
        for end in (client, server):
            transport = end.t
            calls = end.sanitized[0].calls
            _expect(calls == ("connection_made",), f"{end.name}: calls after connect: {calls}")
            _expect(
                transport.get_protocol() is end.sanitized[0],
                f"{end.name}: get_protocol() returned {transport.get_protocol()!r}, not the "
                "protocol that was connected",
            )
            _expect(not transport.is_closing(), f"{end.name}: is_closing() is True on connect")
            _expect(transport.is_reading(), f"{end.name}: is_reading() is False on connect")
            size = transport.get_write_buffer_size()
            _expect(size == 0, f"{end.name}: get_write_buffer_size() is {size} on connect")
            _expect(
                transport.can_write_eof() == h.half_close,
                f"{end.name}: can_write_eof() is {not h.half_close}; "
                + (
                    "a pair that cannot half-close (TLS) runs the suite with half_close=False"
                    if h.half_close
                    else "a pair that can half-close runs the suite with half_close=True "
                    "(the default), which checks write_eof() too"
                ),
            )
        await _close_both(client, server)


@_case
async def _case_data_both_directions(h: _Harness) -> None:
    """Many writes of mixed sizes arrive intact and in order, both ways at once, before EOF."""
    async with h.connect() as (client, server):
        outgoing = {client.name: _chunks(h, 300_000), server.name: _chunks(h, 300_000)}

        async def send(end: _End) -> None:
            for chunk in outgoing[end.name]:
                end.t.write(chunk)
                if h.random.random() < 0.2:
                    await asyncio.sleep(0)
            if h.half_close:
                end.t.write_eof()

        await asyncio.gather(send(client), send(server))
        if h.half_close:
            await h.wait_until(
                lambda: client.eof and server.eof, "both ends saw EOF", client, server
            )
        else:
            # A close() would stop the closing end reading: wait for the bytes instead.
            await h.wait_until(
                lambda: len(client.data) >= 300_000 and len(server.data) >= 300_000,
                "both ends received 300,000 bytes",
                client,
                server,
            )
            _expect(not client.eof and not server.eof, "an end saw EOF before the other closed")
        _same(server.data, b"".join(outgoing[client.name]), "client to server")
        _same(client.data, b"".join(outgoing[server.name]), "server to client")
        await _close_both(client, server)


#: Set by the writing task and by data_received() in ``reads_run_in_their_own_context``.
_WHO_SET = contextvars.ContextVar[str]("nettest_contract_who_set", default="nobody")


@_case
async def _case_reads_run_in_their_own_context(h: _Harness) -> None:
    """data_received() never sees the writer's context variables, and keeps its own."""
    async with h.connect() as (client, server):
        seen: list[str] = []

        def on_data(data: bytes) -> None:
            seen.append(_WHO_SET.get())
            _WHO_SET.set("data_received")

        server.on_data = on_data

        async def write(data: bytes) -> None:
            _WHO_SET.set("the writer")
            client.t.write(data)

        await asyncio.create_task(write(b"one"))
        await h.wait_until(lambda: len(server.data) == 3, "the first write arrived", server)
        await asyncio.create_task(write(b"two"))
        await h.wait_until(lambda: len(server.data) == 6, "the second write arrived", server)
        # A transport may cut each write into several reads: every read after the
        # first sees what the one before it set.
        _expect(
            seen == ["nobody"] + ["data_received"] * (len(seen) - 1),
            f"data_received() saw {seen} set; expected what the transport's own context "
            "holds: nothing at first, then what the previous data_received() set",
        )
        await _close_both(client, server)


@_case
async def _case_write_empty_is_noop(h: _Harness) -> None:
    """write(b"") buffers nothing and sends nothing; the peer never sees an empty read."""
    async with h.connect() as (client, server):
        client.t.write(b"")
        size = client.t.get_write_buffer_size()
        _expect(size == 0, f"write(b'') left {size} bytes in the write buffer")
        client.t.write(b"x")
        client.t.write(b"")
        h.send_eof(client)
        await h.wait_until(lambda: server.eof, "the server saw EOF", server)
        _same(server.data, b"x", "data")
        await _close_both(client, server)


@_case
async def _case_write_accepts_bytes_like(h: _Harness) -> None:
    """write() takes bytes, bytearray and memoryview, and writelines() an iterable of them."""
    async with h.connect() as (client, server):
        backing = bytearray(b"0123456789")
        client.t.write(b"bytes,")
        client.t.write(bytearray(b"bytearray,"))
        client.t.write(memoryview(backing)[2:5])
        client.t.writelines([b",lines", bytearray(b"-and-"), memoryview(b"more")])
        h.send_eof(client)
        await h.wait_until(lambda: server.eof, "the server saw EOF", server)
        _same(server.data, b"bytes,bytearray,234,lines-and-more", "data")
        await _close_both(client, server)


@_case
async def _case_write_rejects_non_bytes(h: _Harness) -> None:
    """write() of anything but a bytes-like object raises TypeError and sends nothing."""
    async with h.connect() as (client, server):
        for bad in ("text", 42, [b"list"]):
            try:
                client.t.write(bad)  # type: ignore[arg-type]
            except TypeError:
                pass
            else:
                raise AssertionError(f"write({bad!r}) did not raise TypeError")
        h.send_eof(client)
        await h.wait_until(lambda: server.eof, "the server saw EOF", server)
        _same(server.data, b"", "data")
        await _close_both(client, server)


@_case
async def _case_buffered_protocol(h: _Harness) -> None:
    """A BufferedProtocol gets every byte through get_buffer() and buffer_updated()."""
    size = h.random.randint(1, 64)
    # Reads of at most `size` bytes: up to 200,000 bytes, but no more than 4096
    # reads' worth (200,000 one-byte reads took seconds of protocol calls).
    total = min(200_000, size * 4096)
    async with h.connect(server_buffer_size=size) as (client, server):
        # The server's protocol writes too, before the client's EOF, which may end
        # the connection (on a pair that cannot half-close).
        server.t.write(b"and back")
        await h.wait_until(lambda: len(client.data) >= 8, "the client got 8 bytes", client, server)
        _same(client.data, b"and back", "data")
        chunks = _chunks(h, total)
        for chunk in chunks:
            client.t.write(chunk)
        h.send_eof(client)
        await h.wait_until(
            lambda: server.eof, f"the server saw EOF after {total} bytes", client, server
        )
        _same(server.data, b"".join(chunks), f"data through a {size}-byte buffer")
        await _close_both(client, server)


@_case
async def _case_buffered_protocol_empty_buffer(h: _Harness) -> None:
    """An empty buffer from get_buffer() is a fatal error: connection_lost(RuntimeError)."""
    async with h.connect(server_buffer_size=0) as (client, server):
        client.t.write(b"data")
        await h.wait_until(lambda: server.lost, "the server's connection was lost", server)
        # The expected report, taken before a check that may fail; the others stay,
        # for the failure to list.
        errors = h.take_loop_errors()
        h.loop_errors[:0] = [e for e in errors if not isinstance(e.get("exception"), RuntimeError)]
        _expect(
            isinstance(server.lost_exc, RuntimeError),
            f"connection_lost got {server.lost_exc!r}, expected the RuntimeError about the "
            "empty buffer",
        )
        _expect(
            any(isinstance(e.get("exception"), RuntimeError) for e in errors),
            f"the loop's exception handler was not told about the empty buffer: {errors}",
        )
        client.t.close()


@_case
async def _case_set_protocol_switches_delivery(h: _Harness) -> None:
    """set_protocol() sends later data, EOF and connection_lost to the new protocol only."""
    async with h.connect() as (client, server):
        client.t.write(b"one")
        await h.wait_until(lambda: server.data == b"one", "the server got b'one'", server)
        first = server.protocols[0]
        second = sanitize(server.make_protocol(buffer_size=16), connected=True)
        server.sanitized.append(second)
        server.t.set_protocol(second)
        _expect(server.t.get_protocol() is second, "get_protocol() is not the new protocol")
        client.t.write(b"two" * 20)
        await h.wait_until(lambda: len(server.data) == 63, "the server got 63 bytes", server)
        third_recorder = _Recorder(server)
        server.protocols.append(third_recorder)
        third = sanitize(third_recorder, connected=True)
        server.sanitized.append(third)
        server.t.set_protocol(third)
        client.t.write(b"three")
        h.send_eof(client)
        await h.wait_until(lambda: server.eof, "the server saw EOF", server)
        _same(first.received, b"one", "data through the first protocol")
        _same(server.protocols[1].received, b"two" * 20, "data through the BufferedProtocol")
        _same(third_recorder.received, b"three", "data through the third protocol")
        await _close_both(client, server)


@_case
async def _case_data_received_exception_is_fatal(h: _Harness) -> None:
    """An exception from data_received() closes the transport: connection_lost(exc), reported."""
    async with h.connect() as (client, server):
        failure = _CaseError("data_received failed on purpose")

        def fail(data: bytes) -> None:
            raise failure

        server.on_data = fail
        client.t.write(b"data")
        await h.wait_until(lambda: server.lost, "the server's connection was lost", server)
        _expect(
            server.lost_exc is failure, f"connection_lost got {server.lost_exc!r}, not {failure!r}"
        )
        errors = h.take_loop_errors()
        _expect(
            [e.get("exception") for e in errors] == [failure],
            f"expected one report of {failure!r} to the loop's exception handler, got {errors}",
        )
        client.t.close()


# -- EOF -------------------------------------------------------------------------


@_case
async def _case_write_after_write_eof(h: _Harness) -> None:
    """write() after write_eof() raises RuntimeError; write_eof() twice is harmless.

    A transport that cannot half-close refuses write_eof() instead, with
    NotImplementedError, as asyncio's TLS transport does, and goes on writing.
    """
    if not h.half_close:
        await _write_eof_refused(h)
        return
    async with h.connect() as (client, server):
        client.t.write(b"before")
        client.t.write_eof()
        try:
            client.t.write(b"after")
        except RuntimeError:
            pass
        else:
            raise AssertionError("write() after write_eof() did not raise RuntimeError")
        client.t.write_eof()
        _expect(not client.t.is_closing(), "is_closing() is True after write_eof()")
        await h.wait_until(lambda: server.eof, "the server saw EOF", server)
        _same(server.data, b"before", "data")
        await _close_both(client, server)


async def _write_eof_refused(h: _Harness) -> None:
    async with h.connect() as (client, server):
        client.t.write(b"before")
        for _ in range(2):
            try:
                client.t.write_eof()
            except NotImplementedError:
                pass
            else:
                raise AssertionError(
                    "write_eof() did not raise NotImplementedError on a transport whose "
                    "can_write_eof() is False"
                )
        _expect(not client.t.is_closing(), "is_closing() is True after a refused write_eof()")
        client.t.write(b" and after")
        await h.wait_until(
            lambda: len(server.data) >= 16, "the server got 16 bytes", client, server
        )
        _same(server.data, b"before and after", "data")
        _expect(not server.eof, "the server saw EOF after a refused write_eof()")
        await _close_both(client, server)


@_half_close_case
async def _case_eof_received_true_keeps_half_open(h: _Harness) -> None:
    """After write_eof(), a peer whose eof_received() returns True can still write back."""
    async with h.connect(server_eof_result=True) as (client, server):
        client.t.write(b"request")
        client.t.write_eof()
        await h.wait_until(lambda: server.eof, "the server saw EOF", server)
        _same(server.data, b"request", "request")
        await h.settle()
        _expect(not server.lost, f"the half-open server lost its connection: {server.lost_exc!r}")
        _expect(not server.t.is_closing(), "is_closing() is True on the half-open server")
        server.t.write(b"response")
        server.t.write_eof()
        await h.wait_until(lambda: client.eof, "the client saw EOF", client, server)
        _same(client.data, b"response", "response")
        await _close_both(client, server)


@_case
async def _case_eof_received_false_closes(h: _Harness) -> None:
    """A falsy eof_received() closes the transport: connection_lost(None), peer sees EOF."""
    async with h.connect(server_eof_result=False, client_eof_result=False) as (client, server):
        client.t.write(b"request")
        h.send_eof(client)
        await h.wait_until(lambda: server.lost, "the server closed", client, server)
        _expect(server.eof, "the server lost its connection without eof_received()")
        _expect(server.lost_exc is None, f"server's connection_lost got {server.lost_exc!r}")
        _same(server.data, b"request", "request")
        await h.wait_until(lambda: client.lost, "the client closed", client, server)
        if h.half_close:  # a client that closed reads no EOF
            _expect(client.eof, "the client lost its connection without eof_received()")
        _expect(client.lost_exc is None, f"client's connection_lost got {client.lost_exc!r}")


@_half_close_case
async def _case_write_eof_waits_for_buffer(h: _Harness) -> None:
    """write_eof() with data buffered sends all of it before EOF."""
    async with h.connect() as (client, server):
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        written = await h.clog(client, server)
        client.t.write(b"tail")
        client.t.write_eof()
        server.t.resume_reading()
        await h.wait_until(lambda: server.eof, "the server saw EOF", client, server)
        _expect(
            len(server.data) == written + 4 and server.data.endswith(b"tail"),
            f"the server received {len(server.data)} bytes before EOF, {written + 4} were written",
        )
        await _close_both(client, server)


# -- close and abort -------------------------------------------------------------


@_case
async def _case_close_is_idempotent(h: _Harness) -> None:
    """close() twice is harmless; is_closing() at once; connection_lost(None) later, once."""
    async with h.connect() as (client, server):
        client.inside = "close()"
        client.t.close()
        closing = client.t.is_closing()
        client.t.close()
        client.inside = None
        _expect(closing, "is_closing() is False right after close()")
        _expect(not client.t.is_reading(), "is_reading() is True right after close()")
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client)
        _expect(client.lost_exc is None, f"connection_lost got {client.lost_exc!r}, not None")
        client.t.close()
        await h.wait_until(lambda: server.eof, "the server saw EOF", server)
        _expect(not client.data, "the client received data")
        server.t.close()


@_case
async def _case_close_stops_reading(h: _Harness) -> None:
    """close() stops reading at once: data arriving after it is never delivered."""
    async with h.connect() as (client, server):
        server.t.write(b"in flight")
        client.t.close()
        await h.settle()
        _expect(not client.data, f"data_received got {bytes(client.data)!r} after close()")
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client)
        # The peer sees EOF or a reset, depending on whether the bytes reached the kernel.
        await h.wait_until(lambda: server.eof or server.lost, "the server saw the close", server)
        server.t.close()


@_case
async def _case_close_flushes_buffer(h: _Harness) -> None:
    """close() with data buffered still sends it, and what is written after close() too."""
    async with h.connect() as (client, server):
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        written = await h.clog(client, server)
        client.t.write(b"e" * _EXTRA)
        client.inside = "close()"
        client.t.close()
        client.inside = None
        client.t.write(b"after close")
        written += _EXTRA + len(b"after close")
        buffered = client.t.get_write_buffer_size()
        await h.settle()
        _expect(
            not client.lost,
            f"connection_lost came before the server read anything ({buffered} bytes were "
            "buffered at close(), and the server had paused reading): the buffer was dropped, "
            "or the server's pause_reading() did not stop it reading",
        )
        server.t.resume_reading()
        await h.wait_until(lambda: server.eof, "the server saw EOF", client, server)
        _expect(
            len(server.data) == written and server.data.endswith(b"after close"),
            f"the server received {len(server.data)} bytes, {written} were written",
        )
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client)
        _expect(client.lost_exc is None, f"connection_lost got {client.lost_exc!r}, not None")
        server.t.close()


@_case
async def _case_abort_discards_buffer(h: _Harness) -> None:
    """abort() drops the write buffer; the peer gets a prefix, then EOF or a reset."""
    async with h.connect() as (client, server):
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        written = await h.clog(client, server)
        client.t.write(b"e" * _EXTRA)
        written += _EXTRA
        client.inside = "abort()"
        client.t.abort()
        client.inside = None
        _expect(client.t.is_closing(), "is_closing() is False right after abort()")
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client)
        # uvloop empties the buffer only as the handle closes, so check after
        # connection_lost, and, under load, once the loop has run a little further.
        size = client.t.get_write_buffer_size()
        if size:
            await h.settle()
            size = client.t.get_write_buffer_size()
        _expect(size == 0, f"get_write_buffer_size() is {size} after abort()")
        _expect(client.lost_exc is None, f"connection_lost got {client.lost_exc!r}, not None")
        server.t.resume_reading()
        await h.wait_until(lambda: server.eof or server.lost, "the server saw the abort", server)
        _expect(
            len(server.data) < written,
            f"the server received all {written} bytes: abort() did not discard the buffer",
        )
        _expect(server.data.strip(b"c") == b"", "the server received bytes that were not sent")
        if server.lost and not (server.eof and server.lost_exc is None):
            # Lost, not after an EOF that closed it (eof_received() returned False).
            _expect(
                isinstance(server.lost_exc, ConnectionError),
                f"server's connection_lost got {server.lost_exc!r}, expected None after EOF "
                "or a ConnectionError",
            )
            _expect(not server.eof, "the server saw both EOF and a reset")
        server.t.close()


@_case
async def _case_abort_with_unread_data_resets_peer(h: _Harness) -> None:
    """Aborting with received bytes unread resets: the peer gets ConnectionResetError, no EOF."""
    async with h.connect() as (client, server):
        client.t.pause_reading()
        server.t.write(b"never read")
        await h.settle()
        client.t.abort()
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client)
        _expect(client.lost_exc is None, f"connection_lost got {client.lost_exc!r}, not None")
        await h.wait_until(lambda: server.lost, "the server's connection_lost", server)
        _expect(
            isinstance(server.lost_exc, ConnectionResetError),
            f"server's connection_lost got {server.lost_exc!r}, expected ConnectionResetError",
        )
        _expect(not server.eof, "the server saw EOF before the reset")
        _expect(not client.data, "the client received data while reading was paused")


@_case
async def _case_peer_close_fails_pending_writes(h: _Harness) -> None:
    """When the peer closes with bytes unread, pending writes fail: connection_lost(error)."""
    async with h.connect() as (client, server):
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        await h.clog(client, server)
        client.t.write(b"e" * _EXTRA)
        server.t.close()
        await h.wait_until(lambda: server.lost, "the server's connection_lost", client, server)
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client, server)
        _expect(
            isinstance(client.lost_exc, ConnectionResetError),
            f"client's connection_lost got {client.lost_exc!r}, expected ConnectionResetError",
        )
        _expect(not client.eof, "the client saw EOF before the reset")


@_case
async def _case_peer_reset_keeps_received_data(h: _Harness) -> None:
    """A reset leaves what had arrived to be read first: data, then ConnectionResetError."""
    async with h.connect() as (client, server):
        client.t.pause_reading()
        server.t.pause_reading()
        client.t.write(b"never read")
        server.t.write(b"response")
        await h.settle()
        # Closing with bytes unread ends the client's reads in ECONNRESET, over TCP
        # (the kernel sends RST) and Unix sockets (which have none) alike.
        server.t.close()
        await h.wait_until(lambda: server.lost, "the server's connection_lost", client, server)
        await h.settle()
        _expect(
            not client.data and not client.eof and not client.lost,
            f"the client noticed the reset while reading was paused: {client.describe()}",
        )
        client.t.resume_reading()
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client, server)
        _same(client.data, b"response", "data received before the reset")
        _expect(
            isinstance(client.lost_exc, ConnectionResetError),
            f"client's connection_lost got {client.lost_exc!r}, expected ConnectionResetError",
        )
        _expect(not client.eof, "the client saw EOF before the reset")


@_case
async def _case_peer_reset_ends_close(h: _Harness) -> None:
    """A close() waiting to flush ends in connection_lost(error) when the peer resets.

    The error is ConnectionResetError over TCP and BrokenPipeError over Unix sockets.
    """
    async with h.connect() as (client, server):
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        await h.clog(client, server)
        client.t.write(b"e" * _EXTRA)
        client.t.close()
        server.t.close()
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client, server)
        _expect(
            isinstance(client.lost_exc, ConnectionError),
            f"client's connection_lost got {client.lost_exc!r}, expected a ConnectionError",
        )


@_case
async def _case_use_after_connection_lost(h: _Harness) -> None:
    """After connection_lost: closing, not reading; close, abort and pausing are harmless."""
    async with h.connect() as (client, server):
        client.t.close()
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client)
        transport = client.t
        _expect(transport.is_closing(), "is_closing() is False after connection_lost")
        _expect(not transport.is_reading(), "is_reading() is True after connection_lost")
        transport.pause_reading()
        transport.resume_reading()
        transport.close()
        transport.abort()
        for _ in range(4):
            # The standard library drops these writes (and logs from the fifth on);
            # uvloop raises RuntimeError.  Either way nothing may be sent.
            try:
                transport.write(b"after connection_lost")
            except RuntimeError:
                pass
        await h.wait_until(lambda: server.eof, "the server saw EOF", server)
        await h.settle()
        _same(server.data, b"", "data after connection_lost")
        server.t.close()


@_case
async def _case_lost_at_the_peers_eof(h: _Harness) -> None:
    """Lost because the peer's EOF ended it: closing, not reading, as after close()."""
    async with h.connect(server_eof_result=False) as (client, server):
        client.t.close()
        await h.wait_until(lambda: server.lost, "the server's connection_lost", server)
        transport = server.t
        _expect(
            transport.is_closing(),
            "is_closing() is False after connection_lost, when the peer's EOF ended it",
        )
        _expect(
            not transport.is_reading(),
            "is_reading() is True after connection_lost, when the peer's EOF ended it",
        )
        transport.pause_reading()
        transport.resume_reading()
        transport.close()
        transport.abort()
