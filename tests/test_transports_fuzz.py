"""Seeded random scenarios over memory pairs: the byte stream and the callback rules hold."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from nettest._transport_pairs import memory_transport_pair
from nettest._transports import MemoryTransport


class Checked(asyncio.Protocol):
    """Checks the callback order rules and records what arrived."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.transport: Any = None
        self.received = bytearray()
        self.state = "new"
        self.writing_paused = False
        self.flow_callbacks: list[tuple[str, int]] = []
        self.lost = asyncio.get_running_loop().create_future()
        self.errors: list[str] = []

    def _expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.errors.append(message)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._expect(self.state == "new", f"connection_made in state {self.state}")
        self.state = "open"
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._expect(self.state == "open", f"data_received in state {self.state}")
        self._expect(len(data) > 0, "empty data_received")
        self._expect(self.transport.is_reading(), "data_received while reading is paused")
        self.received += data

    def eof_received(self) -> bool:
        self._expect(self.state == "open", f"eof_received in state {self.state}")
        self.state = "eof"
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._expect(self.state in ("open", "eof"), f"connection_lost in state {self.state}")
        self.state = "lost"
        self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self._expect(not self.writing_paused, "double pause_writing")
        self.writing_paused = True
        self.flow_callbacks.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self) -> None:
        self._expect(self.writing_paused, "resume_writing without pause")
        self.writing_paused = False
        self.flow_callbacks.append(("resume", self.transport.get_write_buffer_size()))


def random_policy(rng: random.Random) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"capacity": rng.choice([1, 7, 100, 4096, 65536, 1 << 20])}
    choice = rng.random()
    if choice < 0.3:
        kwargs["partial_writes"] = rng.randint(1, 5000)
    elif choice < 0.5:
        kwargs["partial_writes"] = lambda n: rng.randint(0, n)
    choice = rng.random()
    if choice < 0.3:
        kwargs["chunks"] = [rng.randint(1, 300) for _ in range(rng.randint(1, 20))]
    elif choice < 0.5:
        kwargs["chunks"] = lambda n: rng.randint(1, n)
    return kwargs


async def run_scenario(rng: random.Random) -> None:
    client, server = Checked(rng), Checked(rng)
    kwargs = random_policy(rng)
    c, s = memory_transport_pair(client, server, **kwargs)
    ends: list[tuple[MemoryTransport, Checked, Checked]] = [
        (c, client, server),
        (s, server, client),
    ]
    for transport, _, _ in ends:
        high = rng.choice([0, 10, 1000, 65536])
        transport.set_write_buffer_limits(high=high, low=rng.randint(0, high))
    await asyncio.sleep(0)
    sent = {id(c): bytearray(), id(s): bytearray()}
    for _ in range(rng.randint(1, 60)):
        transport, _, peer = rng.choice(ends)
        action = rng.random()
        if action < 0.6:
            sizes = [1, 10, 100] if kwargs["capacity"] < 100 else [1, 10, 1000, 70000]
            data = rng.randbytes(rng.choice(sizes))
            transport.write(data)
            sent[id(transport)] += data
        elif action < 0.75:
            peer.transport.pause_reading()
        elif action < 0.9:
            peer.transport.resume_reading()
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
    for transport, _, peer in ends:
        peer.transport.resume_reading()
        transport.write_eof()
    # Until both saw EOF, or the bytes stop moving: a policy of tiny partial writes
    # takes a loop turn per few bytes, so no fixed number of turns is enough.
    stalled, moved = 0, -1
    while client.state != "eof" or server.state != "eof":
        now_moved = len(client.received) + len(server.received)
        stalled = stalled + 1 if now_moved == moved else 0
        moved = now_moved
        if stalled > 10_000:
            break
        await asyncio.sleep(0)
    for transport, protocol, peer in ends:
        assert peer.received == sent[id(transport)]
        assert peer.state == "eof"
        assert transport.get_write_buffer_size() == 0
        recorded = [(e.kind, e.buffer_size) for e in transport.flow_events]
        assert recorded == protocol.flow_callbacks
        for event in transport.flow_events:
            if event.kind == "pause":
                assert event.buffer_size > event.high
            else:
                assert event.buffer_size <= event.low
        assert not protocol.writing_paused
    c.close()
    s.close()
    await asyncio.wait_for(asyncio.gather(client.lost, server.lost), 5)
    assert client.errors == []
    assert server.errors == []


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", range(25))
async def test_memory_transport_pair_random_scenarios(nettest_seed: int, scenario: int) -> None:
    await run_scenario(random.Random(nettest_seed * 1000 + scenario))
