"""Faults removed mid-connection: what they hold goes on at once, and nothing else changes.

`Bandwidth`, `Slice`, `Stall` and `SlowClose` hold back what they have not let
go yet; removing one (``remove()`` or ``clear()``) lets it go at once, in order,
through the faults that remain.  A `Latency` holds nothing back: what it delayed
is in flight and keeps its time.  The sans-IO schedules first, then memory pairs
in loop time, then the proxy on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from nettest._datagrams import memory_datagram_pair
from nettest._fault_actions import Abort, Action, Deliver, JoinPieces, SendEof
from nettest._fault_engine_stream import StreamSchedule
from nettest._faults import (
    Bandwidth,
    CloseAfter,
    Fault,
    Latency,
    Reset,
    Slice,
    SlowClose,
    Stall,
    Trigger,
)
from nettest._memory_faults import inject_faults
from nettest._proxy import FaultProxyFactory
from nettest._transport_pairs import memory_stream_pair, memory_transport_pair
from test_faults import Ticker, datagrams, delivered, stream, times
from test_faults_memory import Reads, _Datagrams, run_in_loop_time

DATA = bytes(range(256)) * 20  # 5120 bytes: 5 s at 1000 B/s


# -- the stream schedule -------------------------------------------------------------------


def test_bandwidth_removed_lets_what_it_queued_go_at_once() -> None:
    schedule = stream(Bandwidth(1000))
    ticker = Ticker(schedule)
    out = ticker.take(schedule.data("downstream", DATA, 0.0))
    out += ticker.until(0.21)
    assert delivered(out) == DATA[:200]  # 0.2 s at the cap
    # The rest goes at the removal, whole, and nothing is left to go later.
    released = ticker.take(schedule.update([], 0.21))
    assert released == [Deliver(0.21, "downstream", DATA[200:])]
    assert ticker.until() == []


def test_slice_and_cap_cleared_let_the_rest_go_at_once_and_joined() -> None:
    schedule = stream(Slice(4), Bandwidth(1000))
    ticker = Ticker(schedule)
    out = ticker.take(schedule.data("downstream", DATA, 0.0)) + ticker.until(0.21)
    assert delivered(out) == DATA[:208]  # 0.2 s at the cap, in pieces of 4
    assert all(a.alone for a in out if isinstance(a, Deliver))
    released = ticker.take(schedule.update([], 0.21))
    assert released == [JoinPieces("downstream"), Deliver(0.21, "downstream", DATA[208:])]
    assert ticker.until() == []


def test_slice_removed_lets_the_rest_go_at_once_and_joined() -> None:
    schedule = stream(Slice(1, delay=0.01))
    ticker = Ticker(schedule)
    out = ticker.take(schedule.data("downstream", b"abcdefghij", 0.0)) + ticker.until(0.035)
    assert [a.data for a in out if isinstance(a, Deliver)] == [b"a", b"b", b"c", b"d"]
    # No Slice is left: the pieces the driver still queues need not be read alone
    # either, and the rest is one chunk again.
    assert ticker.take(schedule.update([], 0.035)) == [
        JoinPieces("downstream"),
        Deliver(0.035, "downstream", b"efghij"),
    ]
    assert ticker.until() == []


def test_slice_removed_while_another_remains_keeps_its_pieces_apart() -> None:
    first, second = Slice(2), Slice(1, delay=0.01)
    schedule = stream(first, second)
    ticker = Ticker(schedule)
    ticker.take(schedule.data("downstream", b"abcdef", 0.0))
    # The second slice holds "bcdef" as pieces of the first ("ab", "cd", "ef").
    released = ticker.take(schedule.update([first], 0.005))
    pieces = [(a.data, a.alone) for a in released if isinstance(a, Deliver)]
    assert pieces == [(b"b", True), (b"cd", True), (b"ef", True)]
    assert not any(isinstance(a, JoinPieces) for a in released)


@pytest.mark.parametrize(
    ("faults", "left", "at"),
    [
        # The cap's bytes reach the Latency at the removal: it delays them from then.
        ([Bandwidth(1000), Latency(1)], [Latency(1)], 1.5),
        # The Latency before the cap still holds them until 1.0, as it would.
        ([Latency(1), Bandwidth(1000)], [Latency(1)], 1.0),
    ],
    ids=["latency-after", "latency-before"],
)
def test_bandwidth_removed_lets_go_through_the_faults_that_remain(
    faults: list[Fault], left: list[Fault], at: float
) -> None:
    schedule = stream(*faults)
    ticker = Ticker(schedule)
    out = ticker.take(schedule.data("downstream", DATA, 0.0)) + ticker.until(0.5)
    out += ticker.take(schedule.update(left, 0.5))
    out += ticker.until()
    assert delivered(out) == DATA
    assert times(out)[-1] == pytest.approx(at)


def test_latency_removed_keeps_what_it_delayed_in_flight() -> None:
    schedule = stream(Latency(1))
    assert schedule.data("downstream", b"ab", 0) == [Deliver(1, "downstream", b"ab")]
    assert schedule.update([], 0.5) == []
    # Sent after the removal: not delayed, but never ahead of the bytes in flight.
    assert schedule.data("downstream", b"cd", 0.6) == [Deliver(1, "downstream", b"cd")]
    assert schedule.data("downstream", b"ef", 2) == [Deliver(2, "downstream", b"ef")]


def test_cap_removed_lets_the_eof_behind_it_go_too() -> None:
    schedule = stream(Bandwidth(100))
    schedule.data("downstream", b"x" * 100, 0)
    assert schedule.eof("downstream", 0) == []
    assert schedule.update([], 0.5) == [
        Deliver(0.5, "downstream", b"x" * 100),
        SendEof(0.5, "downstream"),
    ]


def test_slow_close_removed_lets_the_fin_go() -> None:
    schedule = stream(SlowClose(5))
    ticker = Ticker(schedule)
    assert ticker.take(schedule.eof("downstream", 0)) == []
    assert schedule.update([], 1) == [SendEof(1, "downstream")]
    assert ticker.until() == []


def test_equal_caps_removing_one_keeps_the_others_pace() -> None:
    cap = Bandwidth(1000)
    schedule = stream(cap, cap)
    ticker = Ticker(schedule)
    out = ticker.take(schedule.data("downstream", b"x" * 100, 0.0)) + ticker.until(0.021)
    assert out == []  # 20 bytes passed the first cap and wait at the second
    # remove() takes the last of equal faults: the second cap lets its 20 bytes go,
    # the first keeps its own pace for the other 80.
    out = ticker.take(schedule.update([cap], 0.03)) + ticker.until()
    assert delivered(out) == b"x" * 100
    assert times(out) == pytest.approx([0.03, 0.04, 0.06, 0.08, 0.1])


def test_close_cuts_what_a_cap_still_holds() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[Bandwidth(100), CloseAfter(0.5)])
    ticker = Ticker(schedule)
    assert ticker.take(schedule.start(0.0)) == []
    out = ticker.take(schedule.data("downstream", b"x" * 100, 0.0)) + ticker.until()
    # Closed at 0.5 s, "whatever is in progress": half the bytes went out by then.
    assert delivered(out) == b"x" * 50
    assert schedule.closed
    assert schedule.discarded["downstream"] == 50


def test_stall_removed_releases_slice_pieces_joined_once_no_slice_is_left() -> None:
    cut, stall = Slice(1), Stall()
    schedule = stream(cut, stall)
    schedule.data("downstream", b"abc", 0)
    released = schedule.update([], 1)
    assert [a for a in released if isinstance(a, (Deliver, JoinPieces))] == [
        JoinPieces("downstream"),
        Deliver(1, "downstream", b"a"),
        Deliver(1, "downstream", b"b"),
        Deliver(1, "downstream", b"c"),
    ]


def test_timer_after_a_pace_starts_when_its_byte_gets_through() -> None:
    # The third byte reaches the Reset at 0.2 s, late as after a Latency: it resets
    # then, after "abc", not when the sender sent it (which would cut "bc" too).
    schedule = stream(Slice(1, delay=0.1), Reset(trigger=Trigger(after_bytes=3)))
    ticker = Ticker(schedule)
    out = ticker.take(schedule.data("downstream", b"abcdef", 0.0)) + ticker.until()
    assert delivered(out) == b"abc"
    reset = out[-1]
    assert isinstance(reset, Abort)
    assert reset.at == pytest.approx(0.2)


@pytest.mark.parametrize("seed", range(40))
def test_fault_changes_never_lose_duplicate_or_reorder_bytes(seed: int) -> None:
    rng = random.Random(seed)
    pool: list[Fault] = [
        Latency(0.1),
        Latency(0.05, jitter=0.04),
        Bandwidth(2000),
        Bandwidth(500),
        Slice(3),
        Slice(2, jitter=1, delay=0.01),
        Stall(),
        SlowClose(0.3),
    ]
    in_force = [rng.choice(pool) for _ in range(rng.randint(1, 4))]
    schedule = stream(*in_force, seed=seed)
    ticker = Ticker(schedule)
    sent = bytearray()
    out: list[Action] = []
    now = 0.0
    for _ in range(60):
        now += rng.uniform(0, 0.05)
        out += ticker.until(now)
        roll = rng.random()
        if roll < 0.6:
            data = rng.randbytes(rng.randint(1, 80))
            sent += data
            out += ticker.take(schedule.data("downstream", data, now))
            continue
        if roll < 0.8 and in_force:
            # As FaultsInForce.remove: the last of equal faults goes.
            fault = rng.choice(in_force)
            del in_force[max(i for i, f in enumerate(in_force) if f == fault)]
        else:
            in_force.append(rng.choice(pool))
        out += ticker.take(schedule.update(in_force, now))
    out += ticker.take(schedule.eof("downstream", now))
    released = ticker.take(schedule.update([], now))
    # Once cleared, nothing is held for later, and nothing is cut up any more.
    assert ticker.until() == []
    assert not any(isinstance(a, Deliver) and a.alone for a in released)
    out += released
    assert delivered(out) == sent
    assert times(out) == sorted(times(out))
    assert isinstance([a for a in out if isinstance(a, (Deliver, SendEof))][-1], SendEof)


# -- the datagram schedule -----------------------------------------------------------------


def test_datagram_bandwidth_removed_lets_what_it_held_go_at_once() -> None:
    schedule = datagrams(Bandwidth(100), Latency(1))
    ticker = Ticker(schedule)
    for data in (b"a" * 50, b"b" * 50, b"c" * 50):
        ticker.take(schedule.datagram("downstream", data, 0))
    out = ticker.until(0.6)
    assert delivered(out) == b"a" * 50  # due at 0.5 s, delayed to 1.5 s
    out = ticker.take(schedule.update([Latency(1)], 0.6)) + ticker.until()
    # Held by the cap until 1.0 and 1.5 s; let go at 0.6 s, then delayed by the Latency.
    assert delivered(out) == b"b" * 50 + b"c" * 50
    assert times(out) == pytest.approx([1.6, 1.6])


# -- memory pairs, in loop time ------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Bandwidth(1000, direction="upstream"), Slice(1, delay=0.01, direction="upstream")],
    ids=["bandwidth", "slice"],
)
@pytest.mark.parametrize("how", ["remove", "clear"])
def test_memory_pacing_removed_lets_what_it_holds_go_at_once(fault: Fault, how: str) -> None:
    async def scenario() -> None:
        (_c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
        faults = inject_faults(c_writer, [fault])
        loop = asyncio.get_running_loop()
        c_writer.write(DATA)
        c_writer.write_eof()
        await asyncio.sleep(0.2)
        if how == "remove":
            faults.remove(fault)
        else:
            faults.clear()
        start = loop.time()
        # The old pace needs 4.9 s more (49 s one byte at a time); EOF comes too.
        assert await asyncio.wait_for(s_reader.read(), 10) == DATA
        assert loop.time() - start < 0.1
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


def test_memory_slice_removed_joins_the_pieces_it_queued() -> None:
    async def scenario() -> None:
        client, server = Reads(), Reads()
        client_transport, server_transport = memory_transport_pair(client, server)
        cut = Slice(1, direction="upstream")
        faults = inject_faults(client_transport, [cut])
        client_transport.write(b"abcdefghijklmnopqrst")
        for _ in range(4):
            await asyncio.sleep(0)
        read = len(server.chunks)
        assert server.chunks == [bytes([b]) for b in b"abcdefghijklmnopqrst"[:read]]
        faults.remove(cut)
        await asyncio.sleep(0.01)
        assert b"".join(server.chunks) == b"abcdefghijklmnopqrst"
        # The queued pieces went out together: one or two reads, not one per byte.
        assert len(server.chunks) - read <= 2
        client_transport.close()
        server_transport.close()

    run_in_loop_time(scenario)


def test_memory_datagram_bandwidth_cleared_lets_what_it_holds_go_at_once() -> None:
    async def scenario() -> None:
        client, server = _Datagrams(), _Datagrams()
        a, b = memory_datagram_pair(client, server)
        faults = inject_faults(a, [Bandwidth(100)])
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        for data in (b"a" * 50, b"b" * 50, b"c" * 50):
            b.sendto(data)
        await asyncio.sleep(0.6)
        assert client.received == [b"a" * 50]
        faults.clear()
        start = loop.time()
        while len(client.received) < 3:
            await asyncio.sleep(0.001)
        # The cap would have held "c" until 1.5 s.
        assert loop.time() - start < 0.1
        assert client.received == [b"a" * 50, b"b" * 50, b"c" * 50]
        a.close()
        b.close()

    run_in_loop_time(scenario)


def test_memory_latency_removed_keeps_what_it_delayed_in_flight() -> None:
    async def scenario() -> None:
        (_c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
        latency = Latency(10, direction="upstream")
        faults = inject_faults(c_writer, [latency])
        loop = asyncio.get_running_loop()
        start = loop.time()
        c_writer.write(b"a")
        await asyncio.sleep(1)
        faults.remove(latency)
        c_writer.write(b"b")
        # "a" arrives when due; "b", not delayed, does not overtake it.
        assert await s_reader.readexactly(2) == b"ab"
        assert loop.time() - start == pytest.approx(10)
        c_writer.write(b"c")
        assert await s_reader.readexactly(1) == b"c"
        assert loop.time() - start == pytest.approx(10)
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


# -- the proxy, on loopback ----------------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest_asyncio.fixture
async def echo_address() -> AsyncIterator[tuple[str, int]]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        yield host, port


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fault", [Bandwidth(1000), Slice(1, delay=0.01)], ids=["bandwidth", "slice"]
)
async def test_proxy_pacing_removed_lets_what_it_holds_go_at_once(
    fault_proxy: FaultProxyFactory, echo_address: tuple[str, int], fault: Fault
) -> None:
    proxy = await fault_proxy(upstream=echo_address, faults=[fault])
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        writer.write(DATA)
        await asyncio.sleep(0.2)
        proxy.remove(fault)
        # The old pace needs about 5 s more (50 s one byte at a time).
        assert await asyncio.wait_for(reader.readexactly(len(DATA)), 2) == DATA
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_proxy_cap_removed_while_it_pushes_back_lets_everything_through(
    fault_proxy: FaultProxyFactory,
) -> None:
    received = hashlib.sha256()
    size = 0
    done = asyncio.Event()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal size
        while data := await reader.read(65536):
            received.update(data)
            size += len(data)
        done.set()
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    async with server:
        cap = Bandwidth(64 * 1024, direction="upstream")
        proxy = await fault_proxy(upstream=server.sockets[0].getsockname()[:2], faults=[cap])
        payload = random.Random(1).randbytes(16 * 1024 * 1024)
        _, writer = await asyncio.open_connection(*proxy.address)
        try:
            writer.write(payload)
            # The cap pushes back: 256 s of bytes at its pace.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(writer.drain(), 0.3)
            proxy.remove(cap)
            await asyncio.wait_for(writer.drain(), 5)
            writer.write_eof()
            await asyncio.wait_for(done.wait(), 5)
        finally:
            writer.close()
            await writer.wait_closed()
    # Every byte, once, in order.
    assert size == len(payload)
    assert received.digest() == hashlib.sha256(payload).digest()
