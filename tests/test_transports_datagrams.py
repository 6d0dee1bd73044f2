"""MemoryDatagramTransport and memory_datagram_pair, checked against real UDP."""

from __future__ import annotations

import asyncio
import contextvars
import errno
import gc
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from nettest import _endpoint, has_ipv6_loopback
from nettest._datagrams import MemoryDatagramTransport, memory_datagram_pair
from nettest._endpoint import MAX_DATAGRAM_SIZE
from support import turns

PY313 = sys.version_info >= (3, 13)


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.events.append(("made",))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.events.append(("datagram", data, addr))

    def error_received(self, exc: Exception) -> None:
        self.events.append(("error", type(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))

    def pause_writing(self) -> None:
        self.events.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self) -> None:
        self.events.append(("resume", self.transport.get_write_buffer_size()))


@pytest.mark.asyncio
async def test_memory_datagram_pair_exchanges_datagrams_with_addresses() -> None:
    a_proto, b_proto = Datagrams(), Datagrams()
    a, b = memory_datagram_pair(
        a_proto, b_proto, address_a=("127.0.0.1", 5000), address_b=("127.0.0.1", 53)
    )
    assert a_proto.events == []  # connection_made comes from the loop
    await turns()
    a.sendto(b"query")
    b.sendto(b"answer", ("127.0.0.1", 5000))
    b.sendto(b"answer 2", ("127.0.0.1", 5000))
    await turns()
    assert b_proto.events == [("made",), ("datagram", b"query", ("127.0.0.1", 5000))]
    assert a_proto.events == [
        ("made",),
        ("datagram", b"answer", ("127.0.0.1", 53)),
        ("datagram", b"answer 2", ("127.0.0.1", 53)),
    ]
    assert a.get_extra_info("peername") == ("127.0.0.1", 53)
    assert a.get_extra_info("socket").getpeername() == ("127.0.0.1", 53)
    assert a.get_extra_info("socket").type == socket.SOCK_DGRAM
    with pytest.raises(ValueError, match=r"Invalid address: must be None or \('127.0.0.1', 53\)"):
        a.sendto(b"x", ("127.0.0.1", 9))
    with pytest.raises(TypeError, match="bytes-like object, not 'str'"):
        a.sendto("x")  # type: ignore[arg-type]
    a.close()
    b.close()
    await turns()
    assert a_proto.events[-1] == ("lost", None)


@pytest.mark.asyncio
async def test_memory_datagram_pair_unconnected_drops_unknown_addresses() -> None:
    a_proto, b_proto = Datagrams(), Datagrams()
    a, b = memory_datagram_pair(a_proto, b_proto, connected=False)
    await turns()
    assert a.get_extra_info("peername") is None
    with pytest.raises(OSError, match="not connected"):
        a.get_extra_info("socket").getpeername()
    a.sendto(b"lost", ("192.0.2.1", 9))
    a.sendto(b"found", b.get_extra_info("sockname"))
    await turns()
    assert [e[1] for e in b_proto.events if e[0] == "datagram"] == [b"found"]
    a.close()
    b.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_to_a_closed_peer_is_refused_like_real_udp() -> None:
    loop = asyncio.get_running_loop()
    real = Datagrams()
    # Bind a port, then close it: nobody listens there any more.
    probe, _ = await loop.create_datagram_endpoint(Datagrams, local_addr=("127.0.0.1", 0))
    closed_addr = probe.get_extra_info("sockname")
    probe.close()
    transport, _ = await loop.create_datagram_endpoint(lambda: real, remote_addr=closed_addr)
    transport.sendto(b"anyone?")
    for _ in range(200):
        if ("error", ConnectionRefusedError) in real.events:
            break
        await asyncio.sleep(0.005)
    transport.close()
    assert ("error", ConnectionRefusedError) in real.events

    a_proto, b_proto = Datagrams(), Datagrams()
    a, b = memory_datagram_pair(a_proto, b_proto)
    await turns()
    b.close()
    await turns()
    a.sendto(b"anyone?")
    await turns()
    assert a_proto.events[-1] == ("error", ConnectionRefusedError)
    a.close()
    await turns()


async def _client_and_server_run(
    client_end: asyncio.DatagramTransport,
    server_end: asyncio.DatagramTransport,
    client: Datagrams,
    server: Datagrams,
) -> list[object]:
    """A connected client and an unconnected server, then the server goes away."""
    seen: list[object] = [
        client_end.get_extra_info("peername") == server_end.get_extra_info("sockname"),
        server_end.get_extra_info("peername"),
    ]
    client_end.sendto(b"ping")
    for _ in range(100):
        if any(event[0] == "datagram" for event in server.events):
            break
        await asyncio.sleep(0.005)
    (_, data, source) = next(event for event in server.events if event[0] == "datagram")
    seen.append((data, source == client_end.get_extra_info("sockname")))
    server_end.sendto(b"pong", source)
    server_end.sendto(b"no address")  # an unconnected socket needs one: fatal
    for _ in range(100):
        if server.events[-1][0] == "lost" and len(client.events) > 1:
            break
        await asyncio.sleep(0.005)
    seen.append([(event[0], type(event[-1])) for event in server.events[1:]])
    client_end.sendto(b"anyone?")  # the server is gone: refused
    for _ in range(100):
        if client.events[-1][0] == "error":
            break
        await asyncio.sleep(0.005)
    server_address = server_end.get_extra_info("sockname")
    seen.append(
        [
            (event[0], event[1], event[2] == server_address) if event[0] == "datagram" else event
            for event in client.events[1:]
        ]
    )
    client_end.close()
    await turns()
    return seen


@pytest.mark.asyncio
async def test_memory_datagram_pair_with_one_end_connected_matches_real_udp() -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: None)  # the fatal TypeError's log
    client, server = Datagrams(), Datagrams()
    server_end, _ = await loop.create_datagram_endpoint(
        lambda: server, local_addr=("127.0.0.1", 0)
    )
    client_end, _ = await loop.create_datagram_endpoint(
        lambda: client, remote_addr=server_end.get_extra_info("sockname")
    )
    real = await _client_and_server_run(client_end, server_end, client, server)

    client, server = Datagrams(), Datagrams()
    client_end, server_end = memory_datagram_pair(client, server, connected="a")
    await turns()
    memory = await _client_and_server_run(client_end, server_end, client, server)
    # Only the client's address differs: not part of what is compared.
    assert memory == real
    assert real[1] is None  # the server end has no peer
    assert real[3] == [("datagram", tuple), ("lost", TypeError)]
    assert real[4] == [("datagram", b"pong", True), ("error", ConnectionRefusedError)]


def test_memory_datagram_pair_connected_names_its_values() -> None:
    with pytest.raises(ValueError, match="connected must be True, False, 'a' or 'b', got 'c'"):
        memory_datagram_pair(Datagrams(), Datagrams(), connected="c")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="connected must be True, False, 'a' or 'b', got 1"):
        memory_datagram_pair(Datagrams(), Datagrams(), connected=1)  # type: ignore[arg-type]


_WHO_SET = contextvars.ContextVar[str]("who_set", default="nobody")


class ContextRecorder(Datagrams):
    """Records which value of _WHO_SET each datagram_received() call sees, then sets it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.seen.append(_WHO_SET.get())
        _WHO_SET.set("datagram_received")
        super().datagram_received(data, addr)


async def _send_from_a_task(transport: asyncio.DatagramTransport, data: bytes) -> None:
    async def send() -> None:
        _WHO_SET.set("the sender")
        transport.sendto(data)

    await asyncio.create_task(send())


@pytest.mark.asyncio
async def test_datagrams_arrive_in_the_receiver_context_like_real_udp() -> None:
    loop = asyncio.get_running_loop()
    real = ContextRecorder()
    rx, _ = await loop.create_datagram_endpoint(lambda: real, local_addr=("127.0.0.1", 0))
    tx, _ = await loop.create_datagram_endpoint(
        Datagrams, remote_addr=rx.get_extra_info("sockname")
    )
    for data in (b"one", b"two"):
        await _send_from_a_task(tx, data)
        for _ in range(200):
            if any(e[0] == "datagram" and e[1] == data for e in real.events):
                break
            await asyncio.sleep(0.005)
    tx.close()
    rx.close()

    memory = ContextRecorder()
    a, b = memory_datagram_pair(Datagrams(), memory)
    await turns()
    for data in (b"one", b"two"):
        await _send_from_a_task(a, data)
        await turns()
    a.close()
    b.close()
    await turns()
    assert memory.seen == real.seen == ["nobody", "datagram_received"]


async def _over_udp_and_in_memory(
    seen: Callable[[ContextRecorder, asyncio.DatagramTransport], Awaitable[list[str]]],
) -> tuple[list[str], list[str]]:
    """What `seen(receiver, sender)` returns over real UDP endpoints, then in memory."""
    loop = asyncio.get_running_loop()
    real = ContextRecorder()
    rx, _ = await loop.create_datagram_endpoint(lambda: real, local_addr=("127.0.0.1", 0))
    tx, _ = await loop.create_datagram_endpoint(
        Datagrams, remote_addr=rx.get_extra_info("sockname")
    )
    try:
        real_seen = await seen(real, tx)
    finally:
        tx.close()
        rx.close()
    memory = ContextRecorder()
    a, b = memory_datagram_pair(Datagrams(), memory)
    await turns()
    try:
        memory_seen = await seen(memory, a)
    finally:
        a.close()
        b.close()
        await turns()
    return real_seen, memory_seen


async def _resume_as(who: str, transport: asyncio.DatagramTransport) -> None:
    _WHO_SET.set(who)
    transport.resume_reading()  # type: ignore[attr-defined]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10's datagram transport cannot pause")
@pytest.mark.asyncio
async def test_datagrams_after_resume_reading_arrive_in_the_resumers_context_like_real_udp() -> (
    None
):
    async def seen(receiver: ContextRecorder, sender: asyncio.DatagramTransport) -> list[str]:
        for data in (b"one", b"two", b"three"):
            if data == b"two":
                receiver.transport.pause_reading()
                await asyncio.create_task(_resume_as("the resumer", receiver.transport))
            sender.sendto(data)
            for _ in range(200):
                if any(e[0] == "datagram" and e[1] == data for e in receiver.events):
                    break
                await asyncio.sleep(0.005)
        return receiver.seen

    real_seen, memory_seen = await _over_udp_and_in_memory(seen)
    assert memory_seen == real_seen == ["nobody", "the resumer", "datagram_received"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10's datagram transport cannot pause")
@pytest.mark.asyncio
async def test_a_datagram_due_as_reading_pauses_and_resumes_arrives_in_the_resumers_context() -> (
    None
):
    # pause_reading() removes the reader, cancelling a read already due; the one
    # resume_reading() makes runs in its caller's context, as a socket's does.
    async def seen(receiver: ContextRecorder, sender: asyncio.DatagramTransport) -> list[str]:
        async def send_pause_resume() -> None:
            _WHO_SET.set("the resumer")
            sender.sendto(b"x")
            receiver.transport.pause_reading()
            receiver.transport.resume_reading()

        await asyncio.create_task(send_pause_resume())
        for _ in range(200):
            if receiver.seen:
                break
            await asyncio.sleep(0.005)
        return receiver.seen

    real_seen, memory_seen = await _over_udp_and_in_memory(seen)
    assert memory_seen == real_seen == ["the resumer"]


@pytest.mark.asyncio
async def test_memory_datagram_unconnected_sendto_without_address_is_fatal() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    try:
        protocol = Datagrams()
        a, b = memory_datagram_pair(protocol, Datagrams(), connected=False)
        await turns()
        a.sendto(b"where to?")
        await turns()
        b.close()
        await turns()
    finally:
        loop.set_exception_handler(None)
    assert protocol.events[-1][0] == "lost"
    assert str(protocol.events[-1][1]) == "sendto(): AF_INET address must be tuple, not NoneType"
    assert contexts[0]["message"] == "Fatal write error on datagram transport"


@pytest.mark.asyncio
async def test_datagram_empty_payload_matches_real_udp() -> None:
    """Up to 3.12 sendto(b"") is dropped; from 3.13 an empty datagram is sent."""
    loop = asyncio.get_running_loop()
    real_rx = Datagrams()
    rx_transport, _ = await loop.create_datagram_endpoint(
        lambda: real_rx, local_addr=("127.0.0.1", 0)
    )
    tx_transport, _ = await loop.create_datagram_endpoint(
        Datagrams, remote_addr=rx_transport.get_extra_info("sockname")
    )
    tx_transport.sendto(b"")
    tx_transport.sendto(b"end")
    for _ in range(200):
        if any(e[0] == "datagram" and e[1] == b"end" for e in real_rx.events):
            break
        await asyncio.sleep(0.005)
    real = [e[1] for e in real_rx.events if e[0] == "datagram"]
    tx_transport.close()
    rx_transport.close()

    a_proto, b_proto = Datagrams(), Datagrams()
    a, b = memory_datagram_pair(a_proto, b_proto)
    await turns()
    a.sendto(b"")
    a.sendto(b"end")
    await turns()
    memory = [e[1] for e in b_proto.events if e[0] == "datagram"]
    a.close()
    b.close()
    await turns()
    assert memory == real == ([b"", b"end"] if PY313 else [b"end"])


@pytest.mark.asyncio
async def test_memory_datagram_buffer_accounting_follows_the_running_python() -> None:
    protocol = Datagrams()
    transport = MemoryDatagramTransport(protocol, remote_addr=("127.0.0.1", 53))
    transport.set_write_buffer_limits(high=20, low=0)
    await turns()
    header = 8 if PY313 else 0
    transport.sendto(b"0123456789")
    assert transport.get_write_buffer_size() == 10 + header
    transport.sendto(b"0123456789")
    assert transport.get_write_buffer_size() == 20 + 2 * header
    transport.sendto(b"x")
    pauses = [e for e in protocol.events if e[0] == "pause"]
    # 20 is not above high=20 without header bytes; 36 is.
    assert pauses == [("pause", 36 if PY313 else 21)]
    assert transport.get_write_buffer_size() == 21 + 3 * header
    assert transport.take_sent(2) == [(b"0123456789", ("127.0.0.1", 53))] * 2
    await turns(1)
    sent = transport.take_sent()
    assert sent == [(b"x", ("127.0.0.1", 53))]
    await turns(1)
    left = 3 * header if (3, 13) <= sys.version_info[:3] < (3, 13, 6) else 0
    assert transport.get_write_buffer_size() == left  # CPython gh-135444 on 3.13.0-3.13.5
    if left == 0:
        assert protocol.events[-1] == ("resume", 0)
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_transport_test_as_peer() -> None:
    protocol = Datagrams()
    transport = MemoryDatagramTransport(protocol, local_addr=("::1", 4000, 0, 0))
    transport.feed_datagram(b"hello", ("::1", 5353, 0, 0))
    await turns()
    assert protocol.events == [("made",), ("datagram", b"hello", ("::1", 5353, 0, 0))]
    assert transport.get_extra_info("socket").family == socket.AF_INET6
    asyncio.get_running_loop().call_later(0.01, transport.sendto, b"reply", ("::1", 5353, 0, 0))
    assert await transport.receive_sent(1, timeout=2) == [(b"reply", ("::1", 5353, 0, 0))]
    with pytest.raises(TimeoutError, match="expected 1 datagrams sent by the protocol"):
        await transport.receive_sent(1, timeout=0.01)
    transport.feed_error(ConnectionRefusedError(111, "Connection refused"))
    await turns()
    assert protocol.events[-1] == ("error", ConnectionRefusedError)
    transport.close()
    await turns()
    assert protocol.events[-1:] == [("lost", None)]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("remote", "source", "received"),
    [
        # As the socket reports a source: IPv6 as a 4-tuple, localhost as a number.
        (("::1", 53), ("::1", 53), ("::1", 53, 0, 0)),
        (("localhost", 53), ("localhost", 53), ("127.0.0.1", 53)),
        (None, ("::1", 5353), ("::1", 5353, 0, 0)),
    ],
)
async def test_memory_datagram_feed_reads_the_address_as_a_socket_reports_it(
    remote: Any, source: Any, received: Any
) -> None:
    protocol = Datagrams()
    local = ("::1", 4000) if remote is None else None
    transport = MemoryDatagramTransport(protocol, local_addr=local, remote_addr=remote)
    transport.feed_datagram(b"hello", source)
    await turns()
    assert protocol.events == [("made",), ("datagram", b"hello", received)]
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_feed_from_an_unbound_unix_sender() -> None:
    protocol = Datagrams()
    transport = MemoryDatagramTransport(protocol, local_addr="/tmp/server.sock")
    transport.feed_datagram(b"hello", None)  # a sender that bound no address
    await turns()
    assert protocol.events == [("made",), ("datagram", b"hello", None)]
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_connected_transport_hears_only_its_peer() -> None:
    protocol = Datagrams()
    transport = MemoryDatagramTransport(protocol, remote_addr=("127.0.0.1", 53))
    transport.feed_datagram(b"stray", ("127.0.0.1", 54))  # dropped, as by the kernel
    transport.feed_datagram(b"reply", ("127.0.0.1", 53))
    await turns()
    assert protocol.events == [("made",), ("datagram", b"reply", ("127.0.0.1", 53))]
    transport.close()
    await turns()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("notaddr", TypeError, "addr is not an AF_INET address: AF_INET address must be tuple"),
        (("::1", 53, 0, 0), TypeError, "addr is not an AF_INET address: AF_INET address must be"),
        (("127.0.0.1", 70000), ValueError, "addr is not an AF_INET address: port must be"),
        (("::1", 53), ValueError, "addr is not an AF_INET address: .*family"),
    ],
)
async def test_memory_datagram_feed_refuses_what_is_no_address_of_its_family(
    source: Any, error: type[Exception], message: str
) -> None:
    transport = MemoryDatagramTransport(Datagrams(), remote_addr=("127.0.0.1", 53))
    with pytest.raises(error, match=message):
        transport.feed_datagram(b"x", source)
    transport.close()
    await turns()


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        ("1", TypeError, "timeout must be a number > 0, or None to wait for ever, got '1'"),
        (-1, ValueError, "timeout must be > 0 and finite, or None to wait for ever, got -1"),
    ],
)
@pytest.mark.asyncio
async def test_memory_datagram_receive_sent_checks_its_timeout_first(
    timeout: Any, error: type[Exception], message: str
) -> None:
    # As every nettest timeout, before anything waits.
    transport = MemoryDatagramTransport(Datagrams())
    await turns()
    with pytest.raises(error) as raised:
        await asyncio.wait_for(transport.receive_sent(1, timeout=timeout), 5)
    assert str(raised.value) == message
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_pair_manual_pump_and_close_waits_for_the_buffer() -> None:
    a_proto, b_proto = Datagrams(), Datagrams()
    a, b = memory_datagram_pair(a_proto, b_proto, manual=True)
    await turns()
    for i in range(3):
        a.sendto(b"%d" % i)
    a.close()
    await turns()
    assert a_proto.events == [("made",)]  # buffered datagrams keep it open
    assert a.pump(2) == 2
    await turns()
    assert [e[1] for e in b_proto.events if e[0] == "datagram"] == [b"0", b"1"]
    a.pump()
    await turns()
    assert a_proto.events[-1] == ("lost", None)
    with pytest.raises(ValueError, match="max_datagrams must be >= 1, got 0"):
        a.pump(0)
    b.abort()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_sends_after_close_are_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = memory_datagram_pair(Datagrams(), Datagrams())
    await turns()
    a.abort()
    b.close()
    await turns()
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        for _ in range(5):
            a.sendto(b"x")
    assert [r.getMessage() for r in caplog.records] == ["socket.send() raised exception."]


@pytest.mark.parametrize("real", [False, True], ids=["memory", "loopback"])
@pytest.mark.asyncio
async def test_datagram_sendto_of_an_unconnected_end_after_connection_lost_crashes(
    real: bool,
) -> None:
    # asyncio's transport lets go of its socket and loop in connection_lost; a
    # connected one then drops what is sent, but an unconnected one tries the
    # send and fails reporting its error.  The memory end dropped it silently.
    loop = asyncio.get_running_loop()
    if real:
        a, _ = await loop.create_datagram_endpoint(Datagrams, local_addr=("127.0.0.1", 0))
        b, _ = await loop.create_datagram_endpoint(Datagrams, local_addr=("127.0.0.1", 0))
    else:
        a, b = memory_datagram_pair(Datagrams(), Datagrams(), connected=False)
    await turns()
    a.close()
    a.sendto(b"between close() and connection_lost: sent", b.get_extra_info("sockname"))
    await turns()
    with pytest.raises(AttributeError, match="no attribute 'call_exception_handler'"):
        a.sendto(b"late", b.get_extra_info("sockname"))
    b.close()
    await turns()


@pytest.mark.nettest_leaks("off")  # it drops one open on purpose
@pytest.mark.asyncio
async def test_memory_datagram_transport_dropped_unclosed_warns() -> None:
    transport = MemoryDatagramTransport(Datagrams())
    await turns()
    del transport
    with pytest.warns(ResourceWarning, match="unclosed transport <MemoryDatagramTransport"):
        gc.collect()


# -- what the kernel checks at sendto(), against real sockets ------------------------------

_IPV6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
_UNIX = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no AF_UNIX")
_FAMILIES = [
    pytest.param(socket.AF_INET, id="ipv4"),
    pytest.param(socket.AF_INET6, id="ipv6", marks=_IPV6),
    pytest.param(getattr(socket, "AF_UNIX", 0), id="unix", marks=_UNIX),
]


class Outcome(Datagrams):
    """Records what each sendto() led to: errors inside the call, data, connection_lost."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[tuple[type[BaseException], int | None]] = []

    def error_received(self, exc: Exception) -> None:
        self.errors.append((type(exc), getattr(exc, "errno", None)))

    def summary(self, peer: Datagrams) -> tuple[Any, ...]:
        received = [e[1] for e in peer.events if e[0] == "datagram"]
        lost = [(type(e[1]), str(e[1])) for e in self.events if e[0] == "lost" and e[1]]
        return received, self.errors, lost


def _addresses(family: int, directory: str) -> tuple[Any, Any]:
    """Two addresses of `family` for the real sockets (port 0: the kernel picks)."""
    if family == socket.AF_INET:
        return ("127.0.0.1", 0), ("127.0.0.1", 0)
    if family == socket.AF_INET6:
        return ("::1", 0), ("::1", 0)
    return os.path.join(directory, "a"), os.path.join(directory, "b")


def _memory_addresses(family: int) -> tuple[Any, Any]:
    if family == socket.AF_INET:
        return ("127.0.0.1", 40001), ("127.0.0.1", 40002)
    if family == socket.AF_INET6:
        return ("::1", 40001, 0, 0), ("::1", 40002, 0, 0)
    return "/tmp/nettest-a.sock", "/tmp/nettest-b.sock"


async def _real_sendto(
    family: int, data: bytes, make_addr: Callable[[Any], Any] | None
) -> tuple[Any, ...]:
    """Send one datagram between two real sockets; None for make_addr means connected."""
    loop = asyncio.get_running_loop()
    sender, receiver = Outcome(), Datagrams()
    with tempfile.TemporaryDirectory(prefix="nt") as directory:
        local_a, local_b = _addresses(family, directory)
        kwargs: dict[str, Any] = (
            {"family": family} if family == getattr(socket, "AF_UNIX", 0) else {}
        )
        rx, _ = await loop.create_datagram_endpoint(lambda: receiver, local_addr=local_b, **kwargs)
        address_b = rx.get_extra_info("sockname")
        if make_addr is None:
            remote = address_b if isinstance(address_b, str) else address_b[:2]
            tx, _ = await loop.create_datagram_endpoint(
                lambda: sender, remote_addr=remote, **kwargs
            )
        else:
            tx, _ = await loop.create_datagram_endpoint(
                lambda: sender, local_addr=local_a, **kwargs
            )
        await asyncio.sleep(0)
        tx.sendto(data, None if make_addr is None else make_addr(address_b))
        in_the_call = list(sender.errors)
        for _ in range(100):
            if receiver.events[1:] or sender.errors or sender.events[1:]:
                break
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.01)
        tx.close()
        rx.close()
        await turns()
    assert in_the_call == sender.errors  # errors come inside sendto() or not at all
    return sender.summary(receiver)


async def _memory_sendto(
    family: int, data: bytes, make_addr: Callable[[Any], Any] | None
) -> tuple[Any, ...]:
    sender, receiver = Outcome(), Datagrams()
    address_a, address_b = _memory_addresses(family)
    a, b = memory_datagram_pair(
        sender, receiver, address_a=address_a, address_b=address_b, connected=make_addr is None
    )
    await turns()
    a.sendto(data, None if make_addr is None else make_addr(address_b))
    in_the_call = list(sender.errors)
    await turns()
    a.close()
    b.close()
    await turns()
    assert in_the_call == sender.errors
    return sender.summary(receiver)


def _quiet_loop(contexts: list[dict[str, Any]]) -> None:
    asyncio.get_running_loop().set_exception_handler(lambda loop, c: contexts.append(c))


@pytest.mark.asyncio
@pytest.mark.parametrize("family", _FAMILIES)
@pytest.mark.parametrize("over", [0, 1], ids=["largest", "one byte more"])
@pytest.mark.parametrize("connected", [True, False], ids=["connected", "unconnected"])
async def test_datagram_size_limit_matches_real_sockets(
    family: int, over: int, connected: bool
) -> None:
    if family == getattr(socket, "AF_UNIX", 0):
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            if probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) != 212992:
                pytest.skip(
                    "the AF_UNIX limit follows net.core.wmem_default, not the default here"
                )
    data = b"x" * (MAX_DATAGRAM_SIZE[family] + over)

    def same(address: Any) -> Any:
        return address

    make_addr = None if connected else same
    real = await _real_sendto(family, data, make_addr)
    memory = await _memory_sendto(family, data, make_addr)
    assert memory == real
    if over:
        assert real == ([], [(OSError, errno.EMSGSIZE)], [])
    else:
        assert real[0] == [data]


@pytest.mark.asyncio
async def test_memory_datagram_pump_outside_manual_mode_or_with_the_test_as_peer() -> None:
    a_proto, b_proto = Datagrams(), Datagrams()
    a, b = memory_datagram_pair(a_proto, b_proto)
    await turns()
    a.sendto(b"now")  # nothing waits outside manual mode
    assert a.pump() == 0
    await turns()
    assert [e[1] for e in b_proto.events if e[0] == "datagram"] == [b"now"]
    a.close()
    b.close()

    protocol = Outcome()
    transport = MemoryDatagramTransport(protocol, remote_addr=("127.0.0.1", 53))
    await turns()
    transport.sendto(b"query")
    with pytest.raises(RuntimeError, match=r"the test plays .* take_sent\(\)"):
        transport.pump()
    await turns()
    assert protocol.errors == []  # nothing was sent into the void
    assert transport.take_sent() == [(b"query", ("127.0.0.1", 53))]
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_pair_take_sent_takes_what_waits_for_pump() -> None:
    a_proto, b_proto = Datagrams(), Datagrams()
    a, b = memory_datagram_pair(a_proto, b_proto, manual=True)
    await turns()
    a.sendto(b"one")
    a.sendto(b"two")
    peer = b.get_extra_info("sockname")
    assert a.take_sent() == [(b"one", peer), (b"two", peer)]  # lost, as the test decides
    assert a.pump() == 0
    await turns()
    assert [e for e in b_proto.events if e[0] == "datagram"] == []
    a.close()
    b.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_too_large_when_pumped_or_taken_by_the_test() -> None:
    a_proto, b_proto = Outcome(), Datagrams()
    a, b = memory_datagram_pair(a_proto, b_proto, manual=True)
    await turns()
    a.sendto(b"small")
    a.sendto(b"x" * 65508)  # queued behind "small": checked when it leaves
    assert a_proto.errors == []
    assert a.pump() == 1
    assert a_proto.errors == [(OSError, errno.EMSGSIZE)]
    await turns()
    assert [e[1] for e in b_proto.events if e[0] == "datagram"] == [b"small"]
    a.close()
    b.close()
    await turns()

    protocol = Outcome()
    transport = MemoryDatagramTransport(protocol, remote_addr=("::1", 53, 0, 0))
    await turns()
    transport.sendto(b"x" * 65528)  # what the test takes was sent: checked at once
    transport.sendto(b"x" * 65527)
    assert protocol.errors == [(OSError, errno.EMSGSIZE)]
    assert [len(data) for data, _ in transport.take_sent()] == [65527]
    transport.close()
    await turns()


def _v4(host: Any) -> Callable[[Any], Any]:
    return lambda address: (host, address[1])


_SENDTO_ADDRESSES = [
    pytest.param(socket.AF_INET, _v4("localhost"), id="ipv4-localhost"),
    pytest.param(socket.AF_INET, _v4("LocalHost"), id="ipv4-LocalHost"),
    pytest.param(socket.AF_INET, _v4("127.1"), id="ipv4-127.1"),
    pytest.param(socket.AF_INET, _v4(b"127.0.0.1"), id="ipv4-bytes"),
    pytest.param(socket.AF_INET, _v4("0.0.0.0"), id="ipv4-unspecified"),
    pytest.param(socket.AF_INET, _v4("127.0.0.2"), id="ipv4-nobody"),
    pytest.param(socket.AF_INET, _v4("::1"), id="ipv4-an-ipv6-address"),
    pytest.param(socket.AF_INET, _v4("<broadcast>"), id="ipv4-broadcast-not-allowed"),
    pytest.param(socket.AF_INET, _v4("127.255.255.255"), id="ipv4-lo-broadcast-not-allowed"),
    pytest.param(socket.AF_INET, lambda a: list(a), id="ipv4-list"),
    pytest.param(socket.AF_INET, lambda a: (a[0], str(a[1])), id="ipv4-str-port"),
    pytest.param(socket.AF_INET, lambda a: (a[0], 70000), id="ipv4-port-too-large"),
    pytest.param(socket.AF_INET, lambda a: (a[0], 0), id="ipv4-port-0"),
    pytest.param(socket.AF_INET, lambda a: (a[0],), id="ipv4-no-port"),
    pytest.param(socket.AF_INET, lambda a: (1, a[1]), id="ipv4-int-host"),
    pytest.param(socket.AF_INET6, _v4("localhost"), id="ipv6-localhost", marks=_IPV6),
    pytest.param(socket.AF_INET6, _v4("::1"), id="ipv6-pair", marks=_IPV6),
    pytest.param(socket.AF_INET6, lambda a: ("0:0::1", a[1], 5, 0), id="ipv6-long", marks=_IPV6),
    pytest.param(socket.AF_INET6, _v4("::"), id="ipv6-unspecified", marks=_IPV6),
    pytest.param(socket.AF_INET6, _v4("127.0.0.1"), id="ipv6-an-ipv4-address", marks=_IPV6),
    pytest.param(socket.AF_INET6, _v4("<broadcast>"), id="ipv6-broadcast", marks=_IPV6),
    pytest.param(socket.AF_INET6, lambda a: list(a), id="ipv6-list", marks=_IPV6),
    pytest.param(socket.AF_INET6, lambda a: (*a[:2], 2**20), id="ipv6-flowinfo", marks=_IPV6),
    pytest.param(getattr(socket, "AF_UNIX", 0), lambda a: a, id="unix-path", marks=_UNIX),
    pytest.param(
        getattr(socket, "AF_UNIX", 0), lambda a: a.encode(), id="unix-bytes", marks=_UNIX
    ),
    pytest.param(getattr(socket, "AF_UNIX", 0), lambda a: (a, 0), id="unix-tuple", marks=_UNIX),
    pytest.param(getattr(socket, "AF_UNIX", 0), lambda a: "", id="unix-empty", marks=_UNIX),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("family", "make_addr"), _SENDTO_ADDRESSES)
async def test_memory_datagram_sendto_addresses_match_real_sockets(
    family: int, make_addr: Callable[[Any], Any]
) -> None:
    # What the socket module and the kernel make of an address: a name resolves
    # (localhost as this machine's hosts file says, without DNS), a malformed one is
    # a fatal error, and one that does not resolve reaches error_received at once.
    contexts: list[dict[str, Any]] = []
    _quiet_loop(contexts)
    try:
        real = await _real_sendto(family, b"hi", make_addr)
        real_messages = [c["message"] for c in contexts]
        contexts.clear()
        memory = await _memory_sendto(family, b"hi", make_addr)
    finally:
        asyncio.get_running_loop().set_exception_handler(None)
    assert memory == real
    assert [c["message"] for c in contexts] == real_messages


@pytest.mark.asyncio
async def test_memory_datagram_localhost_reaches_the_peer() -> None:
    # The reviewer's case: on IPv4, "localhost" is 127.0.0.1 wherever nettest runs.
    a_proto, b_proto = Datagrams(), Datagrams()
    a, b = memory_datagram_pair(a_proto, b_proto, connected=False, address_b=("127.0.0.1", 9999))
    await turns()
    a.sendto(b"hi", ("localhost", 9999))
    await turns()
    assert b_proto.events[1:] == [("datagram", b"hi", a.get_extra_info("sockname"))]
    a.close()
    b.close()
    await turns()


class Log(asyncio.DatagramProtocol):
    """Records datagrams (with who sent them) and errors (with their errno)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.names: dict[Any, str] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        key = addr[:2] if isinstance(addr, tuple) else addr
        self.events.append(("datagram", data, self.names.get(key, repr(addr))))

    def error_received(self, exc: Exception) -> None:
        self.events.append(("error", type(exc), getattr(exc, "errno", None)))


async def _play(
    tx: Any, rx: Any, sender: Log, receiver: Log, targets: dict[str, Any], steps: list[str]
) -> list[tuple[Any, ...]]:
    """Run `steps` (a target to send to, or "close" the receiver); log what each led to."""
    for log in (sender, receiver):
        for name, transport in (("sender", tx), ("receiver", rx)):
            address = transport.get_extra_info("sockname")
            log.names[address[:2] if isinstance(address, tuple) else address] = name
    played = []
    for number, step in enumerate(steps):
        seen = len(sender.events), len(receiver.events)
        if step == "close":
            rx.close()
        else:
            tx.sendto(b"%d" % number, targets[step])
        in_the_call = sender.events[seen[0] :]
        for _ in range(50):
            await asyncio.sleep(0.002)
            if (len(sender.events), len(receiver.events)) != seen:
                break
        await asyncio.sleep(0.01)
        played.append(
            (
                step,
                in_the_call,
                sender.events[seen[0] + len(in_the_call) :],
                receiver.events[seen[1] :],
            )
        )
    tx.close()
    rx.close()
    await turns()
    return played


_UNCONNECTED_STEPS = ["self", "nobody", "peer", "close", "peer"]
_CONNECTED_STEPS = ["connected", "close", "connected", "connected"]


@pytest.mark.asyncio
@pytest.mark.parametrize("family", _FAMILIES)
@pytest.mark.parametrize("connected", [True, False], ids=["connected", "unconnected"])
async def test_memory_datagram_receivers_match_real_sockets(family: int, connected: bool) -> None:
    # Who gets a datagram, and what the sender hears when nobody does: a datagram
    # to one's own address comes back; UDP loses one nobody takes (a connected
    # sender hears ECONNREFUSED later, from ICMP); AF_UNIX refuses it inside
    # sendto() (ENOENT for a path nobody bound, ECONNREFUSED once a connected
    # peer closed, then ENOTCONN).
    steps = _CONNECTED_STEPS if connected else _UNCONNECTED_STEPS
    if family == socket.AF_INET6:
        steps = [step for step in steps if step != "nobody"]  # no spare IPv6 loopback
    loop = asyncio.get_running_loop()
    unix = family == getattr(socket, "AF_UNIX", 0)
    with tempfile.TemporaryDirectory(prefix="nt") as directory:
        local_a, local_b = _addresses(family, directory)
        kwargs: dict[str, Any] = {"family": family} if unix else {}
        receiver, sender = Log(), Log()
        rx, _ = await loop.create_datagram_endpoint(lambda: receiver, local_addr=local_b, **kwargs)
        address_b = rx.get_extra_info("sockname")
        remote = {"remote_addr": address_b[:2] if not unix else address_b} if connected else {}
        tx, _ = await loop.create_datagram_endpoint(
            lambda: sender, local_addr=local_a, **remote, **kwargs
        )
        address_a = tx.get_extra_info("sockname")
        nobody = os.path.join(directory, "nobody") if unix else ("127.0.0.2", address_b[1])
        targets = {"self": address_a, "peer": address_b, "nobody": nobody, "connected": None}
        real = await _play(tx, rx, sender, receiver, targets, steps)

    address_a, address_b = _memory_addresses(family)
    receiver, sender = Log(), Log()
    a, b = memory_datagram_pair(
        sender, receiver, address_a=address_a, address_b=address_b, connected=connected
    )
    await turns()
    nobody = "/tmp/nettest-nobody.sock" if unix else ("127.0.0.2", address_b[1])
    targets = {"self": address_a, "peer": address_b, "nobody": nobody, "connected": None}
    memory = await _play(a, b, sender, receiver, targets, steps)
    assert memory == real
    if unix and connected:
        assert [played[1] for played in real] == [
            [],
            [],
            [("error", ConnectionRefusedError, errno.ECONNREFUSED)],
            [("error", OSError, errno.ENOTCONN)],
        ]


@pytest.mark.asyncio
async def test_memory_datagram_unix_peer_disconnects_and_abstract_names() -> None:
    protocol = Outcome()
    a, b = memory_datagram_pair(protocol, Datagrams(), address_b=b"\0nettest-b")
    await turns()
    b.close()
    await turns()
    a.sendto(b"x")
    with pytest.raises(OSError, match="not connected") as caught:
        a.get_extra_info("socket").getpeername()
    assert caught.value.errno == errno.ENOTCONN
    assert a.get_extra_info("peername") == b"\0nettest-b"  # asyncio keeps what it read
    a.close()
    await turns()

    protocol = Outcome()
    c, d = memory_datagram_pair(protocol, Datagrams(), address_a="/tmp/c.sock", connected=False)
    await turns()
    c.sendto(b"x", b"\0nettest-nobody")  # an abstract name nobody holds: no file to miss
    assert protocol.errors == [(ConnectionRefusedError, errno.ECONNREFUSED)]
    c.close()
    d.close()
    await turns()


def _ports_hidden(address: Any, port: int) -> Any:
    """`address` with `port` (an ephemeral port the kernel or nettest picked) as "any"."""
    if isinstance(address, tuple) and address[1] == port:
        return (address[0], "any", *address[2:])
    return address


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "kwargs",
    [
        {"local_addr": ("127.0.0.1", 0)},
        {"local_addr": ("localhost", 0)},
        {"local_addr": (b"127.0.0.1", 0)},
        {"local_addr": ("0.0.0.0", 0)},
        {"remote_addr": ("localhost", 53)},
        {"remote_addr": ("127.1", 53)},
        pytest.param({"remote_addr": ("::1", 53)}, marks=_IPV6),
        pytest.param({"local_addr": ("::1", 0)}, marks=_IPV6),
        pytest.param({"local_addr": ("0:0::1", 0), "remote_addr": ("::1", 53)}, marks=_IPV6),
    ],
    ids=repr,
)
async def test_memory_datagram_addresses_read_back_as_real_sockets_report_them(
    kwargs: dict[str, Any],
) -> None:
    # As create_datagram_endpoint(): port 0 binds an ephemeral port, localhost and
    # other numeric forms resolve, IPv6 addresses are 4-tuples; and a connected
    # end then takes only that resolved address in sendto().
    loop = asyncio.get_running_loop()
    real, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, **kwargs)
    memory = MemoryDatagramTransport(asyncio.DatagramProtocol(), **kwargs)
    try:
        for transport in (real, memory):
            assert transport.get_extra_info("sockname")[1] != 0
        extras = [
            [
                _ports_hidden(t.get_extra_info(name), t.get_extra_info("sockname")[1])
                for name in ("sockname", "peername")
            ]
            for t in (real, memory)
        ]
        assert extras[0] == extras[1]
        if "remote_addr" in kwargs:
            for transport in (real, memory):
                transport.sendto(b"x", transport.get_extra_info("peername"))
                with pytest.raises(ValueError, match="Invalid address"):
                    transport.sendto(b"x", kwargs["remote_addr"])
    finally:
        real.close()
        memory.close()
        await turns()


@pytest.mark.asyncio
async def test_memory_datagram_pair_addresses_read_back_resolved() -> None:
    a_proto, b_proto = Datagrams(), Datagrams()
    a, b = memory_datagram_pair(a_proto, b_proto, address_a=("localhost", 0))
    await turns()
    sockname = a.get_extra_info("sockname")
    assert sockname[0] == "127.0.0.1"
    assert sockname[1] != 0
    assert b.get_extra_info("peername") == sockname
    b.sendto(b"hi")
    await turns()
    assert a_proto.events[1:] == [("datagram", b"hi", b.get_extra_info("sockname"))]
    unix_a, unix_b = memory_datagram_pair(
        Datagrams(), Datagrams(), address_a=b"/tmp/a.sock", address_b=b"\0abstract"
    )
    assert unix_a.get_extra_info("sockname") == "/tmp/a.sock"  # a path reads back as str
    assert unix_b.get_extra_info("sockname") == b"\0abstract"  # an abstract name as bytes
    for transport in (a, b, unix_a, unix_b):
        transport.close()
    await turns()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("address_a", "address_b"),
    [
        (("127.0.0.1", 53), ("127.0.0.1", 53)),
        (("127.0.0.1", 53), ("localhost", 53)),
        ("/tmp/same.sock", b"/tmp/same.sock"),
    ],
)
async def test_memory_datagram_pair_refuses_one_address_twice(
    address_a: Any, address_b: Any
) -> None:
    with pytest.raises(ValueError, match="address_a and address_b must not clash"):
        memory_datagram_pair(Datagrams(), Datagrams(), address_a=address_a, address_b=address_b)


@pytest.mark.asyncio
@pytest.mark.parametrize("bound_to", ["0.0.0.0", "127.0.0.1", "127.255.255.255"])
@pytest.mark.parametrize("sent_to", ["<broadcast>", "255.255.255.255", "127.255.255.255"])
async def test_memory_datagram_broadcast_reaches_whom_loopback_reaches(
    bound_to: str, sent_to: str
) -> None:
    # With SO_BROADCAST (allow_broadcast=True): who receives a broadcast over
    # loopback, compared with real sockets.
    loop = asyncio.get_running_loop()
    receiver, sender = Log(), Log()
    rx, _ = await loop.create_datagram_endpoint(lambda: receiver, local_addr=(bound_to, 0))
    port = rx.get_extra_info("sockname")[1]
    tx, _ = await loop.create_datagram_endpoint(
        lambda: sender, local_addr=("127.0.0.1", 0), allow_broadcast=True
    )
    targets = {"broadcast": (sent_to, port)}
    real = await _play(tx, rx, sender, receiver, targets, ["broadcast"])

    receiver, sender = Log(), Log()
    a, b = memory_datagram_pair(
        sender,
        receiver,
        address_a=("127.0.0.1", 0),
        address_b=(bound_to, 0),
        connected=False,
        allow_broadcast=True,
    )
    await turns()
    targets = {"broadcast": (sent_to, b.get_extra_info("sockname")[1])}
    memory = await _play(a, b, sender, receiver, targets, ["broadcast"])
    assert memory == real
    assert bool(real[0][3]) == (bound_to == "0.0.0.0" or bound_to == sent_to)


@pytest.mark.asyncio
async def test_memory_datagram_allow_broadcast_sets_so_broadcast() -> None:
    transport = MemoryDatagramTransport(asyncio.DatagramProtocol(), allow_broadcast=True)
    assert transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
    transport.sendto(b"x", ("<broadcast>", 9))
    assert transport.take_sent() == [(b"x", ("<broadcast>", 9))]
    transport.close()
    with pytest.raises(TypeError, match="allow_broadcast must be True or False, got 1"):
        MemoryDatagramTransport(asyncio.DatagramProtocol(), allow_broadcast=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="manual must be True or False, got 'yes'"):
        memory_datagram_pair(Datagrams(), Datagrams(), manual="yes")  # type: ignore[arg-type]
    await turns()


def _factory(protocol: Any) -> Callable[[], Any]:
    """A protocol factory that returns `protocol`, for create_datagram_endpoint()."""
    return lambda: protocol


class Fussy(Datagrams):
    """Raises on a datagram that says so."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        super().datagram_received(data, addr)
        if data == b"raise":
            raise ValueError("bad datagram")


@pytest.mark.asyncio
async def test_memory_datagram_protocol_error_is_not_fatal_as_on_real_sockets() -> None:
    # A datagram_received() that raises goes to the loop's exception handler; the
    # transport stays open and later datagrams still arrive.
    contexts: list[dict[str, Any]] = []
    _quiet_loop(contexts)
    loop = asyncio.get_running_loop()
    results = []
    try:
        for make in ("real", "memory"):
            receiver = Fussy()
            if make == "real":

                def factory(protocol: Fussy = receiver) -> Fussy:
                    return protocol

                rx, _ = await loop.create_datagram_endpoint(factory, local_addr=("127.0.0.1", 0))
                tx, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=rx.get_extra_info("sockname")
                )
            else:
                tx, rx = memory_datagram_pair(asyncio.DatagramProtocol(), receiver)
                await turns()
            for data in (b"raise", b"after"):
                tx.sendto(data)
                for _ in range(100):
                    if receiver.events[-1][1:2] == (data,):
                        break
                    await asyncio.sleep(0.002)
            results.append(
                (
                    [event[:2] for event in receiver.events],
                    rx.is_closing(),
                    [type(c.get("exception")) for c in contexts],
                    [c["message"].startswith("Exception in callback") for c in contexts],
                )
            )
            contexts.clear()
            tx.close()
            rx.close()
            await turns()
    finally:
        loop.set_exception_handler(None)
    assert results[1] == results[0]
    assert results[0] == (
        [("made",), ("datagram", b"raise"), ("datagram", b"after")],
        False,
        [ValueError],
        [True],
    )


class Lost(asyncio.DatagramProtocol):
    """Records what its transport shows of protocol and socket in connection_lost."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.during_lost: tuple[Any, ...] = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.during_lost = self.shown()

    def shown(self) -> tuple[Any, ...]:
        sock = self.transport.get_extra_info("socket")
        names: list[Any] = []
        for name in ("getsockname", "getpeername"):
            try:
                names.append(getattr(sock, name)() == self.transport.get_extra_info(name[3:]))
            except OSError as exc:
                names.append(errno.errorcode[exc.errno or 0])
        return (self.transport.get_protocol() is self, *names)


@pytest.mark.asyncio
async def test_memory_datagram_lets_go_of_protocol_and_socket_after_connection_lost() -> None:
    # As for streams: in connection_lost both are there; afterwards get_protocol()
    # is None and the socket is closed, while the extras keep the addresses.
    real, memory = Lost(), Lost()
    await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: real, remote_addr=("127.0.0.1", 9)
    )
    MemoryDatagramTransport(memory, remote_addr=("127.0.0.1", 9))
    await turns()
    results = []
    for protocol in (real, memory):
        protocol.transport.close()
        await turns()
        results.append(
            (protocol.during_lost, protocol.shown(), protocol.transport.get_extra_info("peername"))
        )
    assert results[1] == results[0]
    assert results[0] == ((True, True, True), (False, "EBADF", "EBADF"), ("127.0.0.1", 9))


@pytest.mark.asyncio
async def test_memory_datagram_wildcard_end_reads_back_and_receives_as_a_socket() -> None:
    # A socket bound to 0.0.0.0 sends from 127.0.0.1 and takes what is sent to any
    # 127/8 address on its port; connect() to 0.0.0.0 reads back as 127.0.0.1.
    loop = asyncio.get_running_loop()
    results = []
    for make in ("real", "memory"):
        wild, other = Datagrams(), Datagrams()
        if make == "real":
            tw, _ = await loop.create_datagram_endpoint(_factory(wild), local_addr=("0.0.0.0", 0))
            to, _ = await loop.create_datagram_endpoint(
                _factory(other), local_addr=("127.0.0.1", 0)
            )
        else:
            tw, to = memory_datagram_pair(
                wild, other, address_a=("0.0.0.0", 0), address_b=("127.0.0.1", 0), connected=False
            )
            await turns()
        port = tw.get_extra_info("sockname")[1]
        other_address = to.get_extra_info("sockname")
        tw.sendto(b"from wildcard", other_address)
        to.sendto(b"to 127.0.0.2", ("127.0.0.2", port))
        for _ in range(50):
            if wild.events[1:] and other.events[1:]:
                break
            await asyncio.sleep(0.002)
        results.append(
            (
                [(e[1], e[2] == other_address) for e in wild.events[1:]],
                [(e[1], e[2] == ("127.0.0.1", port)) for e in other.events[1:]],
            )
        )
        tw.close()
        to.close()
        await turns()
    assert results[1] == results[0]
    assert results[0] == ([(b"to 127.0.0.2", True)], [(b"from wildcard", True)])
    a, b = memory_datagram_pair(Datagrams(), Datagrams(), address_b=("0.0.0.0", 0))
    assert a.get_extra_info("peername") == ("127.0.0.1", b.get_extra_info("sockname")[1])
    a.close()
    b.close()
    await turns()


@pytest.mark.asyncio
@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_memory_datagram_ipv6_address_reads_back_without_flow_label() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind(("::1", 0, 5, 3))
        real = sock.getsockname()[2:]
    transport = MemoryDatagramTransport(asyncio.DatagramProtocol(), local_addr=("::1", 0, 5, 3))
    assert transport.get_extra_info("sockname")[2:] == real == (0, 0)
    transport.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_pair_never_picks_a_port_the_other_end_holds() -> None:
    # bind(port 0) never picks a port in use: the default for the other end skips it.
    upcoming = _endpoint.datagram_address(socket.AF_INET)[1] + 1
    a, b = memory_datagram_pair(Datagrams(), Datagrams(), address_a=("127.0.0.1", upcoming))
    assert b.get_extra_info("sockname")[1] != upcoming
    a.close()
    b.close()
    with pytest.raises(ValueError, match="must not clash"):
        memory_datagram_pair(
            Datagrams(), Datagrams(), address_a=("127.0.0.2", 40000), address_b=("0.0.0.0", 40000)
        )
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_allow_broadcast_leaves_the_socket_unconnected() -> None:
    # create_datagram_endpoint(remote_addr=..., allow_broadcast=True) does not
    # connect(): no peername, no ICMP refusal, but sendto() still takes only it.
    loop = asyncio.get_running_loop()
    results = []
    for make in ("real", "memory"):
        sender = Log()
        if make == "real":
            rx, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
            tx, _ = await loop.create_datagram_endpoint(
                _factory(sender),
                remote_addr=rx.get_extra_info("sockname"),
                allow_broadcast=True,
            )
        else:
            tx, rx = memory_datagram_pair(sender, asyncio.DatagramProtocol(), allow_broadcast=True)
            await turns()
        peername = tx.get_extra_info("peername")
        rx.close()
        await asyncio.sleep(0.02)
        tx.sendto(b"x")
        await asyncio.sleep(0.05)
        with pytest.raises(ValueError, match="Invalid address"):
            tx.sendto(b"x", ("127.0.0.1", 9))
        results.append((peername, sender.events))
        tx.close()
        await turns()
    assert results[1] == results[0] == (None, [])


@pytest.mark.asyncio
async def test_memory_datagram_noncontiguous_memoryview_is_fatal_unless_buffered() -> None:
    protocol = Outcome()
    a, b = memory_datagram_pair(protocol, Datagrams(), manual=True)
    await turns()
    a.sendto(b"first")
    a.sendto(memoryview(b"abcdef")[::2])  # buffered: copied to bytes, as asyncio does
    assert [data for data, _ in a.take_sent()] == [b"first", b"ace"]
    contexts: list[dict[str, Any]] = []
    _quiet_loop(contexts)
    try:
        a.sendto(memoryview(b"abcdef")[::2])  # sent at once: socket.sendto() refuses it
        await turns()
    finally:
        asyncio.get_running_loop().set_exception_handler(None)
    assert [c["message"] for c in contexts] == ["Fatal write error on datagram transport"]
    assert isinstance(protocol.events[-1][1], BufferError)
    b.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_unix_peer_takes_datagrams_until_its_socket_closes() -> None:
    # close() closes the socket with connection_lost, a loop turn later: a datagram
    # sent meanwhile is taken (and never read), not refused.
    protocol = Outcome()
    a, b = memory_datagram_pair(
        protocol, Datagrams(), address_a="/tmp/a.sock", address_b="/tmp/b.sock"
    )
    await turns()
    b.close()
    a.sendto(b"same turn")
    assert protocol.errors == []
    await turns()
    a.sendto(b"later")
    assert protocol.errors == [(ConnectionRefusedError, errno.ECONNREFUSED)]
    a.close()
    await turns()


@pytest.mark.asyncio
async def test_memory_datagram_take_sent_checks_and_resolves_each_datagram() -> None:
    protocol = Outcome()
    a, b = memory_datagram_pair(protocol, Datagrams(), connected=False, manual=True)
    await turns()
    port = b.get_extra_info("sockname")[1]
    a.sendto(b"1", ("localhost", port))
    a.sendto(b"2", ("localhost", port))
    a.sendto(b"3", ("localhost", 0))  # queued: checked when it leaves
    sent = a.take_sent()
    assert sent == [(b"1", ("127.0.0.1", port)), (b"2", ("127.0.0.1", port))]
    assert protocol.errors == [(OSError, errno.EINVAL)]
    a.close()
    b.close()
    await turns()


@pytest.mark.asyncio
@pytest.mark.parametrize("allow_broadcast", [False, True])
@pytest.mark.parametrize(
    ("local", "remote"),
    [
        (("127.0.0.1", 0), ("0.0.0.0", 9)),
        pytest.param(("::1", 0), ("::", 9), marks=_IPV6),
    ],
)
async def test_memory_datagram_takes_back_the_wildcard_remote_addr_it_was_given(
    local: Any, remote: Any, allow_broadcast: bool
) -> None:
    # asyncio keeps remote_addr as given (a wildcard host included), while the
    # connected socket's peername reads loopback: sendto() takes the former.
    loop = asyncio.get_running_loop()
    results = []
    for make in ("real", "memory"):
        kwargs = {"local_addr": local, "remote_addr": remote, "allow_broadcast": allow_broadcast}
        transport: Any
        if make == "real":
            transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, **kwargs)
        else:
            transport = MemoryDatagramTransport(asyncio.DatagramProtocol(), **kwargs)
        outcomes = []
        for address in (
            remote,
            (_endpoint.loopback(transport.get_extra_info("socket").family), 9),
        ):
            try:
                transport.sendto(b"x", address)
                outcomes.append("sent")
            except ValueError:
                outcomes.append("ValueError")
        peername = transport.get_extra_info("peername")
        results.append((outcomes, None if peername is None else peername[0]))
        transport.close()
        await turns()
    assert results[1] == results[0]
    # Over IPv6 asyncio keeps the 4-tuple getaddrinfo gives, so the 2-tuple given
    # is refused too.
    assert results[0][0] == (
        ["sent", "ValueError"]
        if len(remote) == 2 and ":" not in remote[0]
        else ["ValueError", "ValueError"]
    )


@pytest.mark.asyncio
@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_memory_datagram_ipv4_mapped_loopback_needs_a_dual_stack_wildcard_end() -> None:
    protocol = Outcome()
    wild, bound = Datagrams(), Outcome()
    a, b = memory_datagram_pair(
        wild, bound, address_a=("::", 0), address_b=("::1", 0), connected=False
    )
    await turns()
    port = a.get_extra_info("sockname")[1]
    b.sendto(b"from ::1", ("::ffff:127.0.0.1", port))  # ::1 cannot reach IPv4
    a.sendto(b"to itself", ("::ffff:127.0.0.1", port))  # the wildcard end can
    await turns()
    assert bound.errors == [(OSError, errno.ENETUNREACH)]
    assert [e[1] for e in wild.events if e[0] == "datagram"] == [b"to itself"]
    assert protocol.errors == []
    a.close()
    b.close()
    await turns()


@pytest.mark.parametrize(
    ("hosts", "ipv4", "ipv6"),
    [
        ("127.0.0.1 localhost\n::1 localhost ip6-localhost\n", "127.0.0.1", "::1"),
        ("# comment\n127.0.0.1\tLocalHost # here\n::1 ip6-localhost\n", "127.0.0.1", None),
        ("::1 localhost\n", None, "::1"),
        (None, "127.0.0.1", "::1"),  # no hosts file: the loopback addresses
    ],
)
def test__localhost_follows_the_hosts_file(
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    hosts: str | None,
    ipv4: str | None,
    ipv6: str | None,
) -> None:
    path = tmp_path / "hosts"
    if hosts is not None:
        path.write_text(hosts)
    monkeypatch.setattr(_endpoint, "_HOSTS_FILE", str(path))
    _endpoint._localhost.cache_clear()
    try:
        assert _endpoint._localhost(socket.AF_INET) == ipv4
        assert _endpoint._localhost(socket.AF_INET6) == ipv6
    finally:
        _endpoint._localhost.cache_clear()
        _endpoint._resolve_host.cache_clear()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"address_a": ["127.0.0.1", 5]}, TypeError, r"address_a must be a \(host, port\) tuple"),
        ({"address_b": 53}, TypeError, "address_b must be a .* or an AF_UNIX path, got 53"),
        (
            {"address_a": ("127.0.0.1", "53")},
            TypeError,
            "address_a is not an AF_INET address: 'str' object cannot be interpreted as an "
            r"integer \(one is \(host, port\), the port an int\)",
        ),
        (
            {"address_a": ("127.0.0.1", 70000)},
            ValueError,
            "address_a is not an AF_INET address: port must be 0-65535",
        ),
        (
            {"address_a": ("::1", 5), "address_b": ("127.0.0.1", 6)},
            ValueError,
            r"address_a and address_b must be of one family, got \('::1', 5\)",
        ),
        (  # an IPv6 end (a 3-tuple) cannot have an IPv4 address, as bind() says
            {"address_a": ("127.0.0.1", 5, 0)},
            ValueError,
            "address_a is not an AF_INET6 address: .*family",
        ),
    ],
)
async def test_memory_datagram_pair_bad_addresses(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        memory_datagram_pair(Datagrams(), Datagrams(), **kwargs)
    local = kwargs.get("address_a")
    remote = kwargs.get("address_b")
    with pytest.raises(
        error, match=message.replace("address_a", "local_addr").replace("address_b", "remote_addr")
    ):
        MemoryDatagramTransport(Datagrams(), local_addr=local, remote_addr=remote)


@pytest.mark.asyncio
async def test_memory_datagram_default_address_follows_the_other_family() -> None:
    a, b = memory_datagram_pair(Datagrams(), Datagrams(), address_b=("::1", 53, 0, 0))
    assert a.get_extra_info("sockname")[0] == "::1"
    assert a.get_extra_info("socket").family == socket.AF_INET6
    transport = MemoryDatagramTransport(Datagrams(), remote_addr=("::1", 53))
    assert transport.get_extra_info("socket").family == socket.AF_INET6
    unix_a, unix_b = memory_datagram_pair(Datagrams(), Datagrams(), address_a="/tmp/x.sock")
    assert unix_b.get_extra_info("socket").family == socket.AF_UNIX
    for t in (a, b, transport, unix_a, unix_b):
        t.close()
    await turns()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda t: t.take_sent(1.5), TypeError, "max_datagrams must be an int >= 1, got 1.5"),
        (lambda t: t.take_sent(-1), ValueError, "max_datagrams must be >= 1, got -1"),
        (lambda t: t.take_sent(True), TypeError, "max_datagrams must be an int >= 1, got True"),
        (lambda t: t.pump(2.5), TypeError, "max_datagrams must be an int >= 1, got 2.5"),
        (lambda t: t.pump(0), ValueError, "max_datagrams must be >= 1, got 0"),
    ],
)
async def test_memory_datagram_counts_are_checked_before_anything_moves(
    call: Callable[[MemoryDatagramTransport], Any], error: type[Exception], message: str
) -> None:
    transport = MemoryDatagramTransport(Datagrams(), remote_addr=("127.0.0.1", 53))
    await turns()
    for data in (b"one", b"two"):
        transport.sendto(data)
    with pytest.raises(error, match=message):
        call(transport)
    assert transport.get_write_buffer_size() == 6 + 2 * (8 if PY313 else 0)
    with pytest.raises(ValueError, match="count must be >= 1, got 0"):
        await transport.receive_sent(0)
    assert [data for data, _ in transport.take_sent()] == [b"one", b"two"]
    transport.close()
    await turns()


# -- reading paused, against real sockets ---------------------------------------------------

PAUSES_READING = sys.version_info >= (3, 11)


async def _connected_pair(
    real: bool, a: Datagrams, b: Datagrams, *, connected: bool = True, directory: str = ""
) -> tuple[Any, Any]:
    """Two ends connected to each other: UDP sockets on loopback, or a memory pair.

    With `directory`, AF_UNIX datagram sockets bound to paths in it.
    """
    family = socket.AF_UNIX if directory else socket.AF_INET
    addresses: list[Any] = (
        [os.path.join(directory, name) for name in ("a", "b")]
        if directory
        else [("127.0.0.1", 0)] * 2
    )
    if not real:
        ends = memory_datagram_pair(
            a, b, address_a=addresses[0], address_b=addresses[1], connected=connected
        )
        await turns()
        return ends
    loop = asyncio.get_running_loop()
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(2)]
    for sock, address in zip(socks, addresses, strict=True):
        sock.bind(address)
    if connected:
        socks[0].connect(socks[1].getsockname())
        socks[1].connect(socks[0].getsockname())
    ta, _ = await loop.create_datagram_endpoint(_factory(a), sock=socks[0])
    tb, _ = await loop.create_datagram_endpoint(_factory(b), sock=socks[1])
    return ta, tb


def _read(protocol: Datagrams) -> list[tuple[Any, ...]]:
    """What reached the protocol after connection_made, without addresses."""
    return [event[:2] for event in protocol.events[1:]]


async def _until_read(protocol: Datagrams, count: int) -> None:
    """Wait (half a second at most) until `count` things reached the protocol."""
    for _ in range(250):
        if len(protocol.events) > count:
            return
        await asyncio.sleep(0.002)


async def _reading_paused(real: bool) -> list[tuple[Any, ...]]:
    """Pause A; datagrams from B and an ICMP error arrive; resume; then close A."""
    a, b = Datagrams(), Datagrams()
    ta, tb = await _connected_pair(real, a, b)
    seen: list[tuple[Any, ...]] = []
    ta.pause_reading()
    ta.pause_reading()  # paused already: nothing changes
    seen.append(("reading", ta.is_reading()))
    tb.sendto(b"1")
    tb.sendto(b"2")
    await asyncio.sleep(0.02)
    tb.close()
    await asyncio.sleep(0.02)
    ta.sendto(b"x")  # to a closed port: the ICMP reply leaves an error pending on A
    await asyncio.sleep(0.02)
    seen.append(("paused", _read(a)))
    ta.resume_reading()
    seen.append(("inside resume_reading()", _read(a)))
    ta.resume_reading()  # reading already: nothing changes
    seen.append(("reading", ta.is_reading()))
    await _until_read(a, 3)
    await asyncio.sleep(0.01)
    seen.append(("resumed", _read(a)))
    ta.close()
    seen.append(("closing", ta.is_reading()))
    ta.resume_reading()
    ta.pause_reading()
    seen.append(("closing", ta.is_reading()))
    await turns()
    return seen


@pytest.mark.asyncio
async def test_datagram_pause_reading_matches_real_udp() -> None:
    # What arrives while paused waits for resume_reading(): the pending socket error
    # first (the kernel reports it before queued datagrams), then the datagrams in
    # order; pausing or resuming twice, or once closing, changes nothing.
    if not PAUSES_READING:  # 3.10's datagram transport inherits ReadTransport's methods
        for over_sockets in (True, False):
            a, b = Datagrams(), Datagrams()
            ta, tb = await _connected_pair(over_sockets, a, b)
            for call in (ta.pause_reading, ta.resume_reading, ta.is_reading):
                with pytest.raises(NotImplementedError):
                    call()
            ta.close()
            tb.close()
            await turns()
        return
    real = await _reading_paused(real=True)
    memory = await _reading_paused(real=False)
    assert memory == real
    assert real == [
        ("reading", False),
        ("paused", []),
        ("inside resume_reading()", []),
        ("reading", True),
        ("resumed", [("error", ConnectionRefusedError), ("datagram", b"1"), ("datagram", b"2")]),
        ("closing", False),
        ("closing", False),
    ]


@pytest.mark.skipif(not PAUSES_READING, reason="3.10's datagram transports cannot pause")
@pytest.mark.asyncio
async def test_datagram_reading_events_count_the_bytes_waiting() -> None:
    a, b = Datagrams(), Datagrams()
    ta, tb = await _connected_pair(False, a, b)
    ta.pause_reading()
    ta.assert_reading_paused()
    tb.sendto(b"1")
    tb.sendto(b"234")
    await turns()
    with pytest.raises(AssertionError, match=r"^reading is paused since .*: 4 bytes waiting"):
        ta.assert_reading_not_paused()
    with pytest.raises(AssertionError, match="the peer's reading is paused since"):
        tb.assert_writing_paused()
    ta.resume_reading()
    await turns()
    assert _read(a) == [("datagram", b"1"), ("datagram", b"234")]
    assert [(e.kind, e.waiting) for e in ta.reading_events] == [("pause", 0), ("resume", 4)]
    ta.assert_reading_not_paused()
    ta.close()
    tb.close()
    await turns()


class PausesAndRaises(Datagrams):
    """Pauses reading on b"pause", raises on b"raise"."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        super().datagram_received(data, addr)
        if data == b"pause":
            self.transport.pause_reading()
        elif data == b"raise":
            raise ValueError("bad datagram")


async def _paused_by_the_protocol(real: bool) -> list[tuple[Any, ...]]:
    a, b = PausesAndRaises(), Datagrams()
    ta, tb = await _connected_pair(real, a, b)
    for data in (b"pause", b"raise", b"3", b"pause", b"5"):
        tb.sendto(data)
    seen: list[tuple[Any, ...]] = []
    for count in (1, 4, 5):  # what each pause lets through
        await _until_read(a, count)
        await asyncio.sleep(0.02)  # and nothing more
        seen.append((ta.is_reading(), _read(a)))
        ta.resume_reading()
    ta.close()
    tb.close()
    await turns()
    return seen


@pytest.mark.asyncio
@pytest.mark.skipif(not PAUSES_READING, reason="pause_reading() on datagrams came in 3.11")
async def test_datagram_pause_reading_from_the_protocol_matches_real_udp() -> None:
    # A protocol that pauses in datagram_received() stops the reads after it; one
    # that raises does not (the loop's exception handler gets it).
    contexts: list[dict[str, Any]] = []
    _quiet_loop(contexts)
    try:
        real = await _paused_by_the_protocol(real=True)
        real_errors = [type(c.get("exception")) for c in contexts]
        contexts.clear()
        memory = await _paused_by_the_protocol(real=False)
    finally:
        asyncio.get_running_loop().set_exception_handler(None)
    assert memory == real
    assert [type(c.get("exception")) for c in contexts] == real_errors == [ValueError]
    datagrams = [("datagram", data) for data in (b"pause", b"raise", b"3", b"pause", b"5")]
    assert real == [(False, datagrams[:1]), (False, datagrams[:4]), (True, datagrams)]


@pytest.mark.asyncio
@pytest.mark.skipif(not PAUSES_READING, reason="pause_reading() on datagrams came in 3.11")
async def test_memory_datagram_paused_keeps_every_datagram_and_the_latest_error() -> None:
    # Unlike a socket's receive buffer (about 256 datagrams by default on Linux),
    # nothing is dropped; a socket keeps one pending error, the latest.
    protocol = Datagrams()
    transport = MemoryDatagramTransport(protocol, local_addr=("127.0.0.1", 53))
    await turns()
    transport.pause_reading()
    peer = ("127.0.0.1", 5353)
    for number in range(1000):
        transport.feed_datagram(b"%d" % number, peer)
    transport.feed_error(ConnectionRefusedError())
    transport.feed_error(PermissionError())
    await turns()
    assert protocol.events == [("made",)]
    transport.resume_reading()
    assert protocol.events == [("made",)]
    await turns(1)
    assert protocol.events[1:] == [("error", PermissionError)]  # one per loop turn
    transport.feed_datagram(b"late", peer)  # behind those that waited
    await _until_read(protocol, 1002)
    assert protocol.events[2:] == [
        ("datagram", data, peer) for data in [b"%d" % n for n in range(1000)] + [b"late"]
    ]
    transport.close()
    await turns()


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("exc", "message"),
    [
        ("boom", "exc must be an exception instance, got 'boom'"),
        (None, "exc must be an exception instance, got None"),
        (ValueError, "exc must be an exception instance, got <class 'ValueError'>"),
    ],
)
async def test_memory_datagram_feed_error_takes_only_an_exception_instance(
    exc: Any, message: str
) -> None:
    protocol = Datagrams()
    transport = MemoryDatagramTransport(protocol, remote_addr=("127.0.0.1", 53))
    await turns()
    with pytest.raises(TypeError) as raised:
        transport.feed_error(exc)
    assert str(raised.value) == message
    transport.feed_error(ValueError("any exception"))
    await turns()
    assert protocol.events == [("made",), ("error", ValueError)]
    transport.close()
    await turns()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("protocols", "name", "got"),
    [
        ((None, None), "protocol_a", "None"),
        (("Datagrams", None), "protocol_b", "None"),
        (("Datagrams", asyncio.Protocol()), "protocol_b", "<asyncio.protocols.Protocol object"),
        ((Datagrams, "Datagrams"), "protocol_a", "<class 'test_transports_datagrams.Datagrams'>"),
    ],
)
async def test_memory_datagram_pair_refuses_what_is_no_protocol_at_once(
    protocols: tuple[Any, Any], name: str, got: str
) -> None:
    contexts: list[dict[str, Any]] = []
    _quiet_loop(contexts)
    try:
        a, b = (Datagrams() if p == "Datagrams" else p for p in protocols)
        with pytest.raises(TypeError) as raised:
            memory_datagram_pair(a, b)
        wanted = f"{name} must be a datagram protocol (an asyncio.DatagramProtocol instance, "
        wanted += f"or an object with its methods), got {got}"
        assert str(raised.value).startswith(wanted)
        with pytest.raises(TypeError) as raised:
            MemoryDatagramTransport(a if name == "protocol_a" else b)
        assert str(raised.value).startswith(wanted.replace(name, "protocol"))
        await turns()
    finally:
        asyncio.get_running_loop().set_exception_handler(None)
    assert contexts == []  # nothing was left to fail in the loop


@pytest.mark.asyncio
async def test_memory_datagram_pair_takes_a_protocol_that_only_has_the_methods() -> None:
    class DuckTyped:  # asyncio needs no subclass of DatagramProtocol
        def __init__(self) -> None:
            self.received: list[bytes] = []

        def connection_made(self, transport: object) -> None:
            pass

        def datagram_received(self, data: bytes, addr: object) -> None:
            self.received.append(data)

        def error_received(self, exc: Exception) -> None:
            pass

        def connection_lost(self, exc: Exception | None) -> None:
            pass

    duck = DuckTyped()
    a, b = memory_datagram_pair(Datagrams(), duck)  # type: ignore[arg-type]
    await turns()
    a.sendto(b"quack")
    await turns()
    assert duck.received == [b"quack"]
    a.close()
    b.close()
    await turns()


# -- the pending socket error, against real sockets -------------------------------------------


async def _refused_burst(real: bool, connected: bool) -> list[tuple[Any, ...]]:
    """B closes; A sends three datagrams to it in one turn, then one more later."""
    a, b = Datagrams(), Datagrams()
    ta, tb = await _connected_pair(real, a, b, connected=connected)
    to = None if connected else tb.get_extra_info("sockname")
    tb.close()
    await asyncio.sleep(0.02)
    seen: list[tuple[Any, ...]] = []
    for data in (b"x1", b"x2", b"x3"):
        ta.sendto(data, to)
        seen.append((data, _read(a)))
    await asyncio.sleep(0.02)
    seen.append(("later", _read(a)))
    ta.sendto(b"x4", to)
    seen.append((b"x4", _read(a)))
    await asyncio.sleep(0.02)
    seen.append(("later", _read(a)))
    ta.close()
    await turns()
    return seen


@pytest.mark.asyncio
@pytest.mark.parametrize("connected", [True, False])
async def test_datagram_refused_burst_matches_real_udp(connected: bool) -> None:
    # The ICMP reply to x1 leaves an error pending at once; sending x2 takes it
    # (error_received inside sendto(), x2 not sent); x3's reply is read on a later
    # turn.  An unconnected socket hears nothing of ICMP.
    real = await _refused_burst(real=True, connected=connected)
    memory = await _refused_burst(real=False, connected=connected)
    assert memory == real
    refused = ("error", ConnectionRefusedError)
    expected = [
        (b"x1", []),
        (b"x2", [refused]),
        (b"x3", [refused]),
        ("later", [refused] * 2),
        (b"x4", [refused] * 2),
        ("later", [refused] * 3),
    ]
    assert real == (expected if connected else [(step, []) for step, _ in expected])


async def _paused_error_then_send(real: bool) -> list[tuple[Any, ...]]:
    """A paused; B sends 1, 2 and closes; A sends x (refused), y, then z; A resumes."""
    a, b = Datagrams(), Datagrams()
    ta, tb = await _connected_pair(real, a, b)
    ta.pause_reading()
    tb.sendto(b"1")
    tb.sendto(b"2")
    await asyncio.sleep(0.02)
    tb.close()
    await asyncio.sleep(0.02)
    seen: list[tuple[Any, ...]] = []
    for data in (b"x", b"y", b"z"):
        ta.sendto(data)
        seen.append((data, _read(a)))
        await asyncio.sleep(0.02)
    ta.resume_reading()
    await _until_read(a, 4)
    await asyncio.sleep(0.01)
    seen.append(("resumed", _read(a)))
    ta.close()
    await turns()
    return seen


@pytest.mark.asyncio
@pytest.mark.skipif(not PAUSES_READING, reason="pause_reading() on datagrams came in 3.11")
async def test_datagram_paused_pending_error_is_taken_by_a_send_as_on_real_udp() -> None:
    # Reading paused, the pending error is taken by the next send all the same (y
    # is not sent); z's reply leaves a new one, read before what waited.
    real = await _paused_error_then_send(real=True)
    memory = await _paused_error_then_send(real=False)
    assert memory == real
    refused = ("error", ConnectionRefusedError)
    assert real == [
        (b"x", []),
        (b"y", [refused]),
        (b"z", [refused]),
        ("resumed", [refused, refused, ("datagram", b"1"), ("datagram", b"2")]),
    ]


async def _unix_peer_closed(real: bool, send: bool) -> list[tuple[Any, ...]]:
    """A paused; B sends 1, 2 and closes; A maybe sends x; A resumes."""
    a, b = Datagrams(), Datagrams()
    with tempfile.TemporaryDirectory() as directory:
        ta, tb = await _connected_pair(real, a, b, directory=directory)
        ta.pause_reading()
        tb.sendto(b"1")
        tb.sendto(b"2")
        await asyncio.sleep(0.02)
        tb.close()
        await asyncio.sleep(0.02)
        seen: list[tuple[Any, ...]] = []
        if send:
            ta.sendto(b"x")
            seen.append(("sent", _read(a)))
        ta.resume_reading()
        await _until_read(a, 3)
        await asyncio.sleep(0.01)
        seen.append(("resumed", _read(a)))
        ta.close()
        await turns()
    return seen


@pytest.mark.asyncio
@pytest.mark.skipif(not PAUSES_READING, reason="pause_reading() on datagrams came in 3.11")
@pytest.mark.parametrize("send", [True, False])
async def test_datagram_unix_send_to_a_closed_peer_drops_what_waited_as_real(send: bool) -> None:
    # Linux's unix_dgram_disconnected: the send that finds the peer closed empties
    # the sender's receive queue.
    real = await _unix_peer_closed(real=True, send=send)
    memory = await _unix_peer_closed(real=False, send=send)
    assert memory == real
    if send:
        refused = [("error", ConnectionRefusedError)]
        assert real == [("sent", refused), ("resumed", refused)]
    else:
        assert real == [("resumed", [("datagram", b"1"), ("datagram", b"2")])]


@pytest.mark.asyncio
async def test_memory_datagram_feed_error_is_pending_until_a_read_or_a_send() -> None:
    # A fed error is the socket's pending error: a send takes it first (inside
    # sendto(), and that datagram is not sent); else a read on a later turn.
    protocol = Datagrams()
    peer = ("127.0.0.1", 5353)
    transport = MemoryDatagramTransport(protocol, remote_addr=peer)
    await turns()
    transport.feed_error(ConnectionRefusedError())
    transport.feed_error(PermissionError())  # the latest replaces it
    transport.sendto(b"lost")
    assert protocol.events[1:] == [("error", PermissionError)]
    transport.sendto(b"sent")
    await turns()
    assert protocol.events[1:] == [("error", PermissionError)]  # nothing left to read
    assert transport.take_sent() == [(b"sent", peer)]
    transport.feed_error(ValueError("not an OSError"))
    transport.feed_datagram(b"after", peer)
    assert protocol.events[1:] == [("error", PermissionError)]
    await turns()
    assert protocol.events[2:] == [("error", ValueError), ("datagram", b"after", peer)]
    transport.close()
    await turns()


async def _received_per_turn(sender: Any, receiver: Datagrams, count: int) -> list[int]:
    """Send `count` datagrams in one turn; how many the receiver has after each turn."""
    for number in range(count):
        sender.sendto(b"%d" % number)
    seen = []
    for _ in range(count + 2):
        await asyncio.sleep(0)
        seen.append(sum(event[0] == "datagram" for event in receiver.events))
    return seen


@pytest.mark.asyncio
async def test_a_burst_is_read_one_datagram_per_turn_like_real_udp() -> None:
    # A socket transport reads one datagram per select(): code whose consumer runs
    # between datagrams sees them one at a time, never the whole burst in a turn.
    loop = asyncio.get_running_loop()
    real = Datagrams()
    rx, _ = await loop.create_datagram_endpoint(lambda: real, local_addr=("127.0.0.1", 0))
    tx, _ = await loop.create_datagram_endpoint(
        Datagrams, remote_addr=rx.get_extra_info("sockname")
    )
    real_counts = await _received_per_turn(tx, real, 4)
    tx.close()
    rx.close()
    memory = Datagrams()
    a, b = memory_datagram_pair(Datagrams(), memory)
    await turns()
    memory_counts = await _received_per_turn(a, memory, 4)
    a.close()
    b.close()
    await turns()
    assert real_counts == [0, 1, 2, 3, 4, 4]
    # One per turn too, from one turn earlier (see the docs' "one turn earlier").
    assert memory_counts == [1, 2, 3, 4, 4, 4]
    assert [event[1] for event in memory.events if event[0] == "datagram"] == [
        b"0",
        b"1",
        b"2",
        b"3",
    ]
