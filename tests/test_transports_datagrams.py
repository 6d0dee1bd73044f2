"""MemoryDatagramTransport and memory_datagram_pair, checked against real UDP."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import socket
import sys
from typing import Any

import pytest

from nettest._datagrams import MemoryDatagramTransport, memory_datagram_pair

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


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


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


@pytest.mark.asyncio
async def test_memory_datagram_transport_dropped_unclosed_warns() -> None:
    transport = MemoryDatagramTransport(Datagrams())
    await turns()
    del transport
    with pytest.warns(ResourceWarning, match="unclosed transport <MemoryDatagramTransport"):
        gc.collect()
