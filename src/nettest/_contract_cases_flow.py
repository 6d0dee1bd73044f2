"""Conformance cases for flow control, streams, TLS and extra info.

See ``_contract_cases`` for the others; both register their cases with
``_case``, in the order the guide lists them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

from ._contract_harness import (
    _EXTRA,
    _NO_PAUSE,
    _case,
    _CaseError,
    _close_both,
    _End,
    _expect,
    _Harness,
    _same,
    _StreamRecorder,
)

__all__: list[str] = []


# -- flow control ----------------------------------------------------------------


def _expect_tail(end: _End, total: int, last: bytes, extra: bytes, callback: str) -> None:
    """Check that *end* got *total* bytes, ending with *extra*, written inside *callback*."""
    received = len(end.data)
    _expect(received == total, f"the {end.name} received {received} bytes, {total} were written")
    tail = last + extra
    _expect(
        end.data.endswith(tail),
        f"the {end.name} received the right number of bytes, ending with "
        f"{bytes(end.data[-len(tail) :])!r} rather than {tail!r}: what {callback}() wrote "
        f"must go out after {last!r}, written before it",
    )


@_case
async def _case_write_buffer_limits(h: _Harness) -> None:
    """Water marks default to 64 KiB and high // 4; invalid ones raise ValueError."""
    async with h.connect() as (client, server):
        transport = client.t
        for kwargs, expected in (
            ({}, (16384, 65536)),
            ({"high": 100}, (25, 100)),
            ({"low": 10}, (10, 40)),
            ({"high": 0}, (0, 0)),
            ({"high": 50, "low": 50}, (50, 50)),
        ):
            transport.set_write_buffer_limits(**kwargs)
            limits = transport.get_write_buffer_limits()
            _expect(
                limits == expected,
                f"get_write_buffer_limits() is {limits} after set_write_buffer_limits"
                f"({kwargs}), expected (low, high) == {expected}",
            )
        for kwargs in ({"high": 1, "low": 2}, {"low": -1}, {"high": -1}, {"high": 1, "low": -1}):
            try:
                transport.set_write_buffer_limits(**kwargs)
            except ValueError as exc:
                message = str(exc)
                _expect(
                    "high" in message and "low" in message,
                    f"the ValueError for {kwargs} does not name high and low: {message!r}",
                )
            else:
                raise AssertionError(f"set_write_buffer_limits({kwargs}) did not raise ValueError")
            limits = transport.get_write_buffer_limits()
            _expect(limits == (50, 50), f"a rejected call changed the limits to {limits}")
        _expect(not client.flow, f"pause or resume without data: {client.flow}")
        await _close_both(client, server)


@_case
async def _case_pause_writing_above_high(h: _Harness) -> None:
    """pause_writing exactly when the buffer exceeds high; resume_writing at <= low."""
    async with h.connect() as (client, server):
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        written = await h.clog(client, server)
        low = client.t.get_write_buffer_size()
        high = low + 100
        client.t.set_write_buffer_limits(high=high, low=low)
        _expect(not client.flow, f"set_write_buffer_limits() paused at size {low} <= {high}")
        for _ in range(200):
            client.t.write(b"w")
            written += 1
            size = client.t.get_write_buffer_size()
            if client.paused != (size > high):
                raise AssertionError(
                    f"after a write the buffer holds {size} bytes with high={high}, and "
                    f"pause_writing was {'' if client.paused else 'not '}called: a transport "
                    "pauses when, and only when, the buffer exceeds the high-water mark"
                )
            if client.paused:
                break
        _expect(client.paused, f"the buffer never went above high={high}")
        (_, size), *_ = client.flow
        _expect(size > high, f"pause_writing was called with {size} bytes buffered, high={high}")

        def write_more() -> None:
            # resume_writing may write synchronously, and the bytes must still go out.
            client.t.write(b"written by resume_writing")

        client.on_resume = write_more
        server.t.resume_reading()
        await h.wait_until(lambda: not client.paused, "resume_writing was called", client, server)
        _, size = client.flow[1]
        _expect(size <= low, f"resume_writing was called with {size} bytes buffered, low={low}")
        h.send_eof(client)
        await h.wait_until(lambda: server.eof, "the server saw EOF", client, server)
        total = written + len(b"written by resume_writing")
        _expect_tail(server, total, b"w", b"written by resume_writing", "resume_writing")
        await _close_both(client, server)


#: Set by the writing task and by the reader in ``resume_writing_not_in_the_readers_context``.
_WHO_SET = contextvars.ContextVar[str]("nettest_contract_flow_who_set", default="nobody")


@_case
async def _case_resume_writing_not_in_the_readers_context(h: _Harness) -> None:
    """resume_writing() never sees the context variables the reading peer set."""
    async with h.connect() as (client, server):
        seen: list[str] = []
        client.on_resume = lambda: seen.append(_WHO_SET.get())

        def on_data(data: bytes) -> None:
            _WHO_SET.set("the reader")

        server.on_data = on_data

        async def fill() -> None:
            _WHO_SET.set("the writer")
            client.t.set_write_buffer_limits(high=0)
            await h.clog(client, server)

        await asyncio.create_task(fill())
        _expect(client.paused, "the writer did not pause with a full buffer and high=0")
        # Only the resume the reader's reads cause counts: something between the ends
        # (a relay) may have drained the buffer, and resumed writing, while it filled.
        seen.clear()
        server.t.resume_reading()
        await h.wait_until(lambda: not client.paused, "resume_writing was called", client, server)
        _expect(
            seen[0] != "the reader",
            "resume_writing() ran in the reading peer's context (it saw a context variable "
            "set in data_received()); a transport writes in a context of its own",
        )
        await _close_both(client, server)


@_case
async def _case_write_buffer_limits_only_pause(h: _Harness) -> None:
    """Lowering the limits below the buffer pauses at once; raising them never resumes."""
    async with h.connect() as (client, server):
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        await h.clog(client, server)
        size = client.t.get_write_buffer_size()
        client.t.set_write_buffer_limits(high=size - 1, low=0)
        _expect(
            client.flow[:1] == [("pause_writing", size)],
            f"set_write_buffer_limits(high={size - 1}) with {size} bytes buffered did not call "
            f"pause_writing at once: {client.flow}",
        )
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        _expect(
            len(client.flow) == 1,
            f"raising the limits called resume_writing synchronously: {client.flow}",
        )
        server.t.resume_reading()
        await h.wait_until(lambda: not client.paused, "resume_writing was called", client, server)
        await _close_both(client, server)


@_case
async def _case_pause_writing_exception_reported(h: _Harness) -> None:
    """Exceptions from pause_writing/resume_writing go to the loop's handler, never to write()."""
    async with h.connect() as (client, server):
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        await h.clog(client, server)
        failures = [_CaseError("pause_writing failed"), _CaseError("resume_writing failed")]

        def fail_pause() -> None:
            raise failures[0]

        def fail_resume() -> None:
            raise failures[1]

        client.on_pause = fail_pause
        client.on_resume = fail_resume
        client.t.set_write_buffer_limits(high=client.t.get_write_buffer_size())
        client.t.write(b"x")  # must not raise
        _expect(client.paused, "pause_writing was not called")
        errors = [e.get("exception") for e in h.take_loop_errors()]
        _expect(errors == failures[:1], f"expected {failures[:1]} reported, got {errors}")
        server.t.resume_reading()
        await h.wait_until(lambda: not client.paused, "resume_writing was called", client, server)
        errors = [e.get("exception") for e in h.take_loop_errors()]
        _expect(errors == failures[1:], f"expected {failures[1:]} reported, got {errors}")
        await _close_both(client, server)


@_case
async def _case_pause_reading(h: _Harness) -> None:
    """While reading is paused nothing arrives, EOF included; it arrives after resume_reading."""
    async with h.connect() as (client, server):
        server.t.pause_reading()
        server.t.pause_reading()
        _expect(not server.t.is_reading(), "is_reading() is True after pause_reading()")
        client.t.write(b"while paused")
        h.send_eof(client)
        await h.settle()
        _expect(not server.data and not server.eof, "data or EOF arrived while reading was paused")
        server.inside = "resume_reading()"
        server.t.resume_reading()
        server.t.resume_reading()
        server.inside = None
        _expect(server.t.is_reading(), "is_reading() is False after resume_reading()")
        await h.wait_until(lambda: server.eof, "the server saw EOF", client, server)
        _same(server.data, b"while paused", "data")
        await _close_both(client, server)


def _act_in_first_read(client: _End, server: _End, act: Callable[[], None]) -> list[bytes]:
    """Have the server `act` inside its first data_received(); return what it gets.

    The client writes three pieces in one loop turn: they may arrive in one read.
    """
    calls: list[bytes] = []

    def on_data(data: bytes) -> None:
        calls.append(data)
        if len(calls) == 1:
            act()

    server.on_data = on_data
    for piece in (b"one", b"two", b"three"):
        client.t.write(piece)
    return calls


@_case
async def _case_pause_reading_inside_data_received(h: _Harness) -> None:
    """A pause_reading() from inside data_received() holds the rest of that read too."""
    async with h.connect() as (client, server):
        # A layer that cuts a read into several data_received() calls (framing,
        # TLS) must stop cutting at the pause.
        calls = _act_in_first_read(client, server, lambda: server.t.pause_reading())
        await h.wait_until(lambda: bool(calls), "the server received data", client, server)
        client.t.write(b"four")
        h.send_eof(client)
        await h.settle()
        paused_in = f"pause_reading() inside data_received({calls[0]!r})"
        _expect(len(calls) == 1, f"data_received{tuple(calls[1:])} came after {paused_in}")
        _expect(not server.eof, f"eof_received() came after {paused_in}")
        server.inside = "resume_reading()"
        server.t.resume_reading()
        server.inside = None
        await h.wait_until(lambda: server.eof, "the server saw EOF", client, server)
        _same(server.data, b"onetwothreefour", "data")
        await _close_both(client, server)


@_case
async def _case_close_inside_data_received(h: _Harness) -> None:
    """A close() from inside data_received() ends delivery, the rest of that read included."""
    async with h.connect() as (client, server):
        # A layer that cuts a read into several data_received() calls must stop
        # cutting at close().
        calls = _act_in_first_read(client, server, lambda: server.t.close())
        await h.wait_until(lambda: server.lost, "the server's connection_lost", client, server)
        await h.settle()
        closed_in = f"close() inside data_received({calls[0]!r})" if calls else "close()"
        _expect(len(calls) == 1, f"data_received{tuple(calls[1:])} came after {closed_in}")
        _expect(not server.eof, f"eof_received() came after {closed_in}")
        client.t.close()


@_case
async def _case_write_inside_pause_writing(h: _Harness) -> None:
    """A write from inside pause_writing() is buffered without a second pause_writing()."""
    async with h.connect() as (client, server):
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        written = await h.clog(client, server)

        def write_more() -> None:
            # The transport marks itself paused before it calls pause_writing().
            client.t.write(b"written by pause_writing")

        client.on_pause = write_more
        client.t.set_write_buffer_limits(high=client.t.get_write_buffer_size())
        client.t.write(b"x")
        _expect(
            [name for name, _ in client.flow] == ["pause_writing"],
            f"expected one pause_writing, got {client.flow}",
        )
        server.t.resume_reading()
        await h.wait_until(lambda: not client.paused, "resume_writing was called", client, server)
        h.send_eof(client)
        await h.wait_until(lambda: server.eof, "the server saw EOF", client, server)
        total = written + 1 + len(b"written by pause_writing")
        _expect_tail(server, total, b"x", b"written by pause_writing", "pause_writing")
        await _close_both(client, server)


@_case
async def _case_stream_writer_drain(h: _Harness) -> None:
    """StreamWriter.drain() waits while writing is paused; after the close it raises."""
    loop = asyncio.get_running_loop()
    async with h.connect(client_streams=True) as (client, server):
        protocol = client.protocols[0]
        assert isinstance(protocol, _StreamRecorder)
        writer = asyncio.StreamWriter(client.t, client.sanitized[0], protocol.reader, loop)
        client.t.set_write_buffer_limits(high=_NO_PAUSE)
        written = await h.clog(client, server)
        # Far more than the kernel could still take, so drain() cannot return early.
        writer.write(b"e" * _EXTRA)
        written += _EXTRA
        client.t.set_write_buffer_limits(high=client.t.get_write_buffer_size())
        writer.write(b"over the mark")
        written += len(b"over the mark")
        _expect(client.paused, "writing did not pause above the high-water mark")
        drain = asyncio.ensure_future(writer.drain())
        try:
            await h.settle()
            _expect(not drain.done(), "drain() returned while writing was paused")
            server.t.resume_reading()
            await h.wait_until(drain.done, "drain() returned after the peer read", client, server)
            await drain
        finally:
            drain.cancel()
        _expect(not client.paused, "drain() returned before resume_writing")
        if h.half_close:
            writer.write_eof()
        else:
            writer.close()
        await h.wait_until(lambda: server.eof, "the server saw EOF", client, server)
        _expect(len(server.data) == written, f"the server got {len(server.data)} of {written}")
        writer.close()
        await h.wait_until(lambda: client.lost, "the client's connection_lost", client)
        try:
            await writer.drain()
        except ConnectionResetError:
            pass
        else:
            raise AssertionError("drain() after connection_lost did not raise")
        server.t.close()


_START_TLS_REFUSED = (
    "asyncio's start_tls() takes a transport whose class sets _start_tls_compatible = "
    "True, and uvloop's only its own transports; set it if yours can carry TLS, or "
    "leave this case out (skip=['start_tls'])"
)


@_case
async def _case_start_tls(h: _Harness) -> None:
    """loop.start_tls() upgrades both ends; the protocols exchange data over TLS and close."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    loop = asyncio.get_running_loop()
    # TLS ignores what eof_received() returns, and logs a warning if it is true.
    async with h.connect(client_eof_result=False, server_eof_result=False) as (client, server):
        # The server's TLS layer must be in place before the ClientHello arrives.
        server_upgrade = asyncio.ensure_future(
            loop.start_tls(server.t, server.t.get_protocol(), server_context, server_side=True)
        )
        await asyncio.sleep(0)
        try:
            try:
                client_tls = await loop.start_tls(
                    client.t, client.t.get_protocol(), client_context, server_hostname="localhost"
                )
            finally:
                server_tls = await server_upgrade
        except TypeError as exc:
            if "not supported by start_tls" not in str(exc):
                raise
            raise AssertionError(f"{exc}: {_START_TLS_REFUSED}") from exc
        _expect(client_tls is not None and server_tls is not None, "start_tls() returned None")
        assert client_tls is not None
        assert server_tls is not None
        _expect(
            client_tls.get_extra_info("ssl_object") is not None
            and server_tls.get_extra_info("peercert") is None
            and client_tls.get_extra_info("peercert") is not None,
            "the TLS transports do not report ssl_object and peercert",
        )
        client_tls.write(b"secret request")
        await h.wait_until(lambda: len(server.data) == 14, "the server got 14 bytes", server)
        _same(server.data, b"secret request", "request over TLS")
        server_tls.write(b"secret response")
        await h.wait_until(lambda: len(client.data) == 15, "the client got 15 bytes", client)
        _same(client.data, b"secret response", "response over TLS")
        _expect(
            (client.t.is_closing(), client_tls.is_closing()) == (False, False),
            "a transport is closing before close()",
        )
        client_tls.close()
        await h.wait_until(lambda: server.lost or server.eof, "the server saw the close", server)
        server_tls.close()


# -- extra info ------------------------------------------------------------------


@_case
async def _case_extra_info(h: _Harness) -> None:
    """peername and sockname mirror each other, and agree with the 'socket' if there is one."""
    async with h.connect() as (client, server):
        for end, peer in ((client, server), (server, client)):
            sockname = end.t.get_extra_info("sockname")
            peername = end.t.get_extra_info("peername")
            _expect(sockname is not None, f"{end.name}: get_extra_info('sockname') is None")
            _expect(peername is not None, f"{end.name}: get_extra_info('peername') is None")
            peer_sockname = peer.t.get_extra_info("sockname")
            _expect(
                peername == peer_sockname,
                f"{end.name}'s peername {peername!r} is not the {peer.name}'s sockname "
                f"{peer_sockname!r}",
            )
            sock = end.t.get_extra_info("socket")
            if sock is not None:
                _expect(
                    (sock.getsockname(), sock.getpeername()) == (sockname, peername),
                    f"{end.name}: the socket's names {sock.getsockname()!r}, "
                    f"{sock.getpeername()!r} differ from sockname {sockname!r}, "
                    f"peername {peername!r}",
                )
            default = object()
            _expect(
                end.t.get_extra_info("no such key", default) is default,
                f"{end.name}: get_extra_info() ignores its default",
            )
        await _close_both(client, server)
