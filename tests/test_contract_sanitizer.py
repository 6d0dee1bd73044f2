"""The protocol sanitizer, driven by hand with legal and illegal call sequences."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

import pytest

from nettest._contract import (
    ProtocolViolation,
    SanitizedBufferedProtocol,
    SanitizedDatagramProtocol,
    SanitizedProtocol,
    sanitize,
)
from nettest._transport_pairs import memory_transport_pair


class _Transport(asyncio.Transport):
    """A do-nothing transport to hand to connection_made."""


class _Stream(asyncio.Protocol):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append(("connection_made", transport))

    def data_received(self, data: bytes) -> None:
        self.calls.append(("data_received", data))

    def eof_received(self) -> bool:
        self.calls.append(("eof_received", None))
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append(("connection_lost", exc))

    def pause_writing(self) -> None:
        self.calls.append(("pause_writing", None))

    def resume_writing(self) -> None:
        self.calls.append(("resume_writing", None))


class _Buffered(asyncio.BufferedProtocol):
    def __init__(self, size: int = 8) -> None:
        self.buffer = bytearray(size)
        self.received = bytearray()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.received += self.buffer[:nbytes]


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Any]] = []
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


Step = Callable[[Any], object]
T = _Transport()

made: Step = lambda p: p.connection_made(T)  # noqa: E731
data: Step = lambda p: p.data_received(b"abc")  # noqa: E731
eof: Step = lambda p: p.eof_received()  # noqa: E731
lost: Step = lambda p: p.connection_lost(None)  # noqa: E731
pause: Step = lambda p: p.pause_writing()  # noqa: E731
resume: Step = lambda p: p.resume_writing()  # noqa: E731

LEGAL_STREAM = {
    "made-lost": [made, lost],
    "data-eof-lost": [made, data, data, eof, lost],
    "lost-with-error": [made, data, lambda p: p.connection_lost(ConnectionResetError())],
    "flow": [made, pause, data, resume, pause, eof, resume, pause, lost],
    "flow-after-eof": [made, eof, pause, resume, lost],
}

ILLEGAL_STREAM = {
    "data-before-made": ([data], "data_received(3 bytes) called before connection_made"),
    "made-twice": ([made, made], "connection_made called again"),
    "data-after-eof": ([made, eof, data], "called after eof_received"),
    "data-after-lost": ([made, lost, data], "called after connection_lost"),
    "eof-twice": ([made, eof, eof], "eof_received called again"),
    "eof-before-made": ([eof], "eof_received called before connection_made"),
    "lost-twice": ([made, lost, lost], "connection_lost(None) called again"),
    "lost-before-made": ([lost], "connection_lost(None) called before connection_made"),
    "made-after-lost": ([made, lost, made], "connection_made called again"),
    "resume-first": (
        [made, resume],
        "resume_writing called before any pause_writing: resume_writing only ends a pause",
    ),
    "resume-first-after-data": ([made, data, resume], "called before any pause_writing"),
    "resume-twice": ([made, pause, resume, resume], "resume_writing called twice in a row"),
    "pause-twice": ([made, pause, pause], "pause_writing called twice in a row"),
    "pause-before-made": ([pause], "pause_writing called before connection_made"),
    "resume-after-lost": ([made, pause, lost, resume], "resume_writing called after"),
    "empty-data": (
        [made, lambda p: p.data_received(b"")],
        "data_received(0 bytes) is never legal",
    ),
}


@pytest.mark.parametrize("steps", LEGAL_STREAM.values(), ids=LEGAL_STREAM)
def test_sanitize_passes_legal_stream_sequences(steps: list[Step]) -> None:
    inner = _Stream()
    protocol = sanitize(inner)
    for step in steps:
        step(protocol)
    protocol.check(lost=True)
    assert protocol.violations == ()
    assert [name for name, _ in inner.calls] == [call.split("(")[0] for call in protocol.calls]


@pytest.mark.parametrize(("steps", "message"), ILLEGAL_STREAM.values(), ids=ILLEGAL_STREAM)
def test_sanitize_raises_in_the_illegal_callback(steps: list[Step], message: str) -> None:
    inner = _Stream()
    protocol = sanitize(inner)
    *legal, illegal = steps
    for step in legal:
        step(protocol)
    forwarded = len(inner.calls)
    with pytest.raises(ProtocolViolation, match=re.escape(message)):
        illegal(protocol)
    # The illegal call never reaches the wrapped protocol.
    assert len(inner.calls) == forwarded
    with pytest.raises(ProtocolViolation, match=re.escape(message)) as info:
        protocol.check()
    assert "1 protocol contract violation" in str(info.value)


@pytest.mark.parametrize(("steps", "message"), ILLEGAL_STREAM.values(), ids=ILLEGAL_STREAM)
def test_sanitize_records_without_raising(steps: list[Step], message: str) -> None:
    inner = _Stream()
    protocol = sanitize(inner, raise_on_violation=False)
    for step in steps:
        step(protocol)
    assert len(inner.calls) == len(steps)
    assert len(protocol.violations) == 1
    assert message in protocol.violations[0]
    with pytest.raises(ProtocolViolation, match=re.escape(message)):
        protocol.check()


def test_sanitize_violation_message_lists_earlier_calls() -> None:
    protocol = sanitize(_Stream(), raise_on_violation=False)
    made(protocol)
    data(protocol)
    eof(protocol)
    data(protocol)
    (violation,) = protocol.violations
    assert violation == (
        "data_received(3 bytes) called after eof_received: no data may follow EOF; "
        "calls before it: connection_made, data_received(3 bytes), eof_received"
    )


def test_sanitize_check_lost() -> None:
    protocol = sanitize(_Stream())
    protocol.check(lost=False)
    made(protocol)
    protocol.check()
    protocol.check(lost=False)
    with pytest.raises(ProtocolViolation, match="connection_lost was never called"):
        protocol.check(lost=True)
    lost(protocol)
    protocol.check(lost=True)
    with pytest.raises(ProtocolViolation, match="connection_lost was called"):
        protocol.check(lost=False)


def test_sanitize_state_properties() -> None:
    protocol = sanitize(_Stream())
    assert (protocol.connected, protocol.eof, protocol.lost, protocol.transport) == (
        False,
        False,
        False,
        None,
    )
    made(protocol)
    assert protocol.connected
    assert protocol.transport is T
    eof(protocol)
    assert (protocol.connected, protocol.eof) == (True, True)
    lost(protocol)
    assert (protocol.connected, protocol.eof, protocol.lost) == (False, True, True)


def test_sanitize_forwards_return_values_and_attributes() -> None:
    inner = _Stream()
    inner.custom = "attribute"  # type: ignore[attr-defined]
    protocol = sanitize(inner)
    assert protocol.wrapped is inner
    made(protocol)
    assert protocol.eof_received() is True
    assert protocol.custom == "attribute"
    with pytest.raises(AttributeError):
        protocol.no_such_attribute  # noqa: B018
    protocol.custom = "changed"
    assert inner.custom == "changed"
    assert repr(protocol) == f"<SanitizedProtocol of {inner!r}>"


def test_sanitize_refuses_to_set_what_its_own_attributes_hide() -> None:
    # p.eof = x then read back p.eof gave the sanitizer's False, not x.
    inner = _Stream()
    protocol = sanitize(inner)
    for name in ("eof", "lost", "connected", "transport", "calls", "wrapped", "check"):
        with pytest.raises(AttributeError, match=rf"'{name}' is the sanitizer's own.*wrapped"):
            setattr(protocol, name, "mine")
    protocol.wrapped.eof = "mine"
    assert vars(inner)["eof"] == "mine"
    assert protocol.eof is False


def test_sanitize_forwards_exceptions_after_recording() -> None:
    class Failing(_Stream):
        def data_received(self, data: bytes) -> None:
            raise KeyError("from the protocol")

    protocol = sanitize(Failing())
    made(protocol)
    with pytest.raises(KeyError):
        data(protocol)
    assert protocol.calls == ("connection_made", "data_received(3 bytes)")
    protocol.check()


def test_sanitize_picks_the_wrapper_by_protocol_kind() -> None:
    assert type(sanitize(_Stream())) is SanitizedProtocol
    assert type(sanitize(_Buffered())) is SanitizedBufferedProtocol
    assert type(sanitize(_Datagram())) is SanitizedDatagramProtocol
    # Transports choose the delivery path with isinstance().
    assert isinstance(sanitize(_Buffered()), asyncio.BufferedProtocol)
    assert not isinstance(sanitize(_Stream()), asyncio.BufferedProtocol)
    assert isinstance(sanitize(_Datagram()), asyncio.DatagramProtocol)
    with pytest.raises(TypeError, match=r"protocol must be an asyncio\.BaseProtocol instance"):
        sanitize(object())  # type: ignore[call-overload]


def test_sanitize_connected_adopts_mid_connection() -> None:
    protocol = sanitize(_Stream(), connected=True)
    data(protocol)
    lost(protocol)
    protocol.check(lost=True)
    with pytest.raises(
        ProtocolViolation,
        match="connection_made called on a protocol sanitized with connected=True, which "
        "counts connection_made as made already",
    ):
        made(sanitize(_Stream(), connected=True))
    adopted = sanitize(_Stream(), connected=True, raise_on_violation=False)
    made(adopted)
    made(adopted)  # said once: a second one is the ordinary repeat
    assert "connection_made called again" in adopted.violations[1]


def test_sanitize_buffered_protocol() -> None:
    inner = _Buffered(size=4)
    protocol = sanitize(inner)
    protocol.connection_made(T)
    buffer = protocol.get_buffer(-1)
    assert buffer is inner.buffer
    buffer[:3] = b"xyz"
    protocol.buffer_updated(3)
    protocol.get_buffer(100)
    protocol.get_buffer(100)  # a read found nothing: get_buffer again is fine
    inner.buffer[:4] = b"abcd"
    protocol.buffer_updated(4)
    protocol.eof_received()
    protocol.connection_lost(None)
    protocol.check(lost=True)
    assert inner.received == b"xyzabcd"
    assert protocol.calls[:3] == ("connection_made", "get_buffer(-1)", "buffer_updated(3)")


def test_sanitize_buffered_protocol_get_buffer_after_eof() -> None:
    # A buffer asked for after EOF carries no data: asyncio's TLS transport asks for
    # one more as it shuts down, and fills none of it.
    protocol = sanitize(_Buffered())
    protocol.connection_made(T)
    protocol.eof_received()
    protocol.get_buffer(0)
    protocol.get_buffer(-1)
    protocol.connection_lost(None)
    protocol.check(lost=True)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([lambda p: p.buffer_updated(1)], "buffer_updated(1) called before connection_made"),
        ([made, lambda p: p.buffer_updated(1)], "called without a get_buffer() call before it"),
        (
            [
                made,
                lambda p: p.get_buffer(-1),
                lambda p: p.buffer_updated(1),
                lambda p: p.buffer_updated(1),
            ],
            "called without a get_buffer() call before it",
        ),
        ([made, lambda p: p.get_buffer(-1), lambda p: p.buffer_updated(9)], "outside 1..8"),
        ([made, lambda p: p.get_buffer(-1), lambda p: p.buffer_updated(0)], "outside 1..8"),
        (
            [made, eof, lambda p: p.get_buffer(-1), lambda p: p.buffer_updated(1)],
            "buffer_updated(1) called after eof_received",
        ),
        (
            [made, lambda p: p.get_buffer(-1), eof, lambda p: p.buffer_updated(1)],
            "buffer_updated(1) called after eof_received",
        ),
        ([made, lost, lambda p: p.get_buffer(-1)], "called after connection_lost"),
    ],
    ids=[
        "before-made",
        "no-get-buffer",
        "updated-twice",
        "too-many",
        "zero",
        "after-eof",
        "buffer-before-eof",
        "after-lost",
    ],
)
def test_sanitize_buffered_protocol_violations(steps: list[Step], message: str) -> None:
    protocol = sanitize(_Buffered(), raise_on_violation=False)
    for step in steps:
        step(protocol)
    with pytest.raises(ProtocolViolation, match=re.escape(message)):
        protocol.check()


def test_sanitize_datagram_protocol() -> None:
    inner = _Datagram()
    protocol = sanitize(inner)
    protocol.connection_made(T)
    protocol.datagram_received(b"one", ("127.0.0.1", 1))
    protocol.error_received(ConnectionRefusedError())
    protocol.pause_writing()
    protocol.resume_writing()
    protocol.connection_lost(None)
    protocol.check(lost=True)
    assert inner.datagrams == [(b"one", ("127.0.0.1", 1))]
    assert len(inner.errors) == 1
    with pytest.raises(ProtocolViolation, match=r"datagram_received.* called after"):
        protocol.datagram_received(b"two", None)
    fresh = sanitize(_Datagram())
    with pytest.raises(ProtocolViolation, match=r"error_received.* called before"):
        fresh.error_received(OSError())


@pytest.mark.asyncio
async def test_sanitize_wraps_stream_reader_protocol_on_real_sockets() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = sanitize(asyncio.StreamReaderProtocol(reader))
    left, right = socket.socketpair()
    with right:
        transport, _ = await loop.create_connection(lambda: protocol, sock=left)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        right.sendall(b"hello\n")
        assert await reader.readline() == b"hello\n"
        writer.write(b"back")
        # StreamWriter reaches into the protocol for _drain_helper: forwarded.
        await writer.drain()
        assert right.recv(4) == b"back"
        right.shutdown(socket.SHUT_WR)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
    protocol.check(lost=True)
    assert protocol.calls == (
        "connection_made",
        "data_received(6 bytes)",
        "eof_received",
        "connection_lost(None)",
    )


@pytest.mark.asyncio
async def test_sanitize_wraps_a_datagram_protocol_on_a_real_endpoint() -> None:
    loop = asyncio.get_running_loop()
    inner = _Datagram()
    protocol = sanitize(inner)
    transport, returned = await loop.create_datagram_endpoint(
        lambda: protocol, local_addr=("127.0.0.1", 0)
    )
    assert returned is protocol
    try:
        address = transport.get_extra_info("sockname")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"datagram", address)
            for _ in range(100):
                if inner.datagrams:
                    break
                await asyncio.sleep(0.01)
    finally:
        transport.close()
    await asyncio.sleep(0)
    protocol.check(lost=True)
    assert [data for data, _ in inner.datagrams] == [b"datagram"]
    assert protocol.calls[0] == "connection_made"
    assert protocol.calls[1].startswith("datagram_received(8 bytes, ('127.0.0.1', ")
    assert protocol.calls[-1] == "connection_lost(None)"


@pytest.mark.asyncio
async def test_sanitize_buffered_protocol_on_real_sockets() -> None:
    loop = asyncio.get_running_loop()
    inner = _Buffered(size=3)
    protocol = sanitize(inner)
    ours, theirs = socket.socketpair()
    with theirs:
        transport, _ = await loop.create_connection(lambda: protocol, sock=ours)
        theirs.sendall(b"0123456789")
        for _ in range(100):
            if len(inner.received) == 10:
                break
            await asyncio.sleep(0.01)
        transport.close()
        await asyncio.sleep(0)
    protocol.check(lost=True)
    assert inner.received == b"0123456789"
    # A 3-byte buffer takes at least four reads for ten bytes.
    assert sum(call.startswith("buffer_updated") for call in protocol.calls) >= 4


async def _wait_lost(*protocols: SanitizedProtocol | SanitizedBufferedProtocol) -> None:
    for _ in range(500):
        if all(protocol.lost for protocol in protocols):
            return
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["tcp", "memory"])
async def test_sanitize_buffered_protocol_over_tls(
    backend: str,
    tls_version: ssl.TLSVersion,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> None:
    loop = asyncio.get_running_loop()
    inner = _Buffered(size=64)
    server_protocol = sanitize(inner)
    client_protocol = sanitize(_Stream())
    if backend == "tcp":
        server = await loop.create_server(
            lambda: server_protocol, "127.0.0.1", 0, ssl=tls_server_context
        )
        try:
            port = server.sockets[0].getsockname()[1]
            client, _ = await loop.create_connection(
                lambda: client_protocol,
                "127.0.0.1",
                port,
                ssl=tls_client_context,
                server_hostname="localhost",
            )
            client.write(b"hello")
            client.close()
            await _wait_lost(server_protocol, client_protocol)
            server_end = inner.transport
        finally:
            server.close()
            await server.wait_closed()
    else:
        client_raw, server_raw = memory_transport_pair(client_protocol, server_protocol)
        await asyncio.sleep(0)
        # The server's TLS layer must be in place before the ClientHello arrives.
        server_upgrade = asyncio.ensure_future(
            loop.start_tls(server_raw, server_protocol, tls_server_context, server_side=True)
        )
        await asyncio.sleep(0)
        client_tls = await loop.start_tls(
            client_raw, client_protocol, tls_client_context, server_hostname="localhost"
        )
        server_end = await server_upgrade
        assert client_tls is not None
        client_tls.write(b"hello")
        client_tls.close()
        await _wait_lost(server_protocol, client_protocol)
    # The server closes its end too, as a server does when its peer has gone (on
    # 3.10 the TLS transport warns "unclosed" otherwise).
    assert server_end is not None
    server_end.close()
    # On close_notify, asyncio's TLS transport calls eof_received(), then get_buffer()
    # once more as it shuts down: legal, as no data comes with it.
    server_protocol.check(lost=True)
    client_protocol.check(lost=True)
    assert inner.received == b"hello"
    if sys.version_info >= (3, 11):  # 3.10's older TLS layer never calls eof_received()
        calls = server_protocol.calls
        assert "get_buffer(0)" in calls[calls.index("eof_received") :]


@pytest.mark.parametrize("flag", ["raise_on_violation", "connected"])
def test_sanitize_switches_take_only_true_or_false(flag: str) -> None:
    # raise_on_violation="no" used to raise on violations all the same.
    with pytest.raises(TypeError, match=f"^{flag} must be True or False, got 'no'"):
        sanitize(_Stream(), **{flag: "no"})  # type: ignore[call-overload]


def test_check_says_a_repeated_violation_once_with_a_count() -> None:
    # A transport that repeats one mistake: 2000 resume_writing calls with no
    # pause made a message of nearly a million characters.
    protocol = sanitize(_Stream(), raise_on_violation=False)
    protocol.connection_made(_Transport())
    for _ in range(2000):
        protocol.resume_writing()
    protocol.pause_writing()
    protocol.pause_writing()
    with pytest.raises(ProtocolViolation) as info:
        protocol.check(lost=True)
    message = str(info.value)
    assert len(protocol.violations) == 2001
    assert message.startswith("2002 protocol contract violation(s) on")
    lines = message.splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("  - resume_writing called before any pause_writing")
    assert lines[1].endswith("(and 1999 more like it)")
    assert lines[2].startswith("  - pause_writing called twice in a row")
    assert lines[3].startswith("  - connection_lost was never called; calls: ..., ")
    assert len(message) < 3000
