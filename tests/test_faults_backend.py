"""What the proxy and the memory transports share.

Fault checks, fault changes, action queues, and the fault engine both drive:
triggers on datagrams, and equal faults applied each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

import pytest

from nettest._datagrams import memory_datagram_pair
from nettest._fault_actions import (
    Abort,
    Action,
    Close,
    Deliver,
    Pause,
    Resume,
    SendEof,
    Wake,
)
from nettest._fault_backend import ActionQueue, FaultsInForce, TimedAction
from nettest._fault_engine_datagram import DatagramSchedule
from nettest._fault_engine_stream import StreamSchedule
from nettest._fault_trace import ConnectionTrace
from nettest._faults import (
    Bandwidth,
    Blackhole,
    CloseAfter,
    Drop,
    Duplicate,
    Fault,
    HalfClose,
    Latency,
    Reorder,
    Reset,
    Stall,
    Trigger,
    Truncate,
    TruncateDatagram,
    check_faults,
    other_flow,
)
from nettest._memory_faults import inject_faults
from nettest._proxy import FaultProxy, FaultProxyFactory
from nettest._transport_pairs import memory_stream_pair
from test_faults_memory import run_in_loop_time

# -- check_faults and other_flow ---------------------------------------------------------


def test_check_faults_returns_a_tuple_of_what_it_was_given() -> None:
    faults = [Latency(0.1), Stall()]
    assert check_faults(iter(faults), "stream", repr) == (Latency(0.1), Stall())


def test_check_faults_refuses_a_non_fault() -> None:
    with pytest.raises(TypeError, match=r"expected a fault such as Latency\(0.1\), got 'x'"):
        check_faults(["x"], "stream", repr)  # type: ignore[list-item]


def test_check_faults_refuses_the_other_kind_in_the_callers_words() -> None:
    with pytest.raises(ValueError, match=r"^Drop\(\) is not for streams$"):
        check_faults([Latency(0.1), Drop()], "stream", lambda f: f"{f!r} is not for streams")
    assert check_faults([Drop()], "datagram", repr) == (Drop(),)


def test_other_flow() -> None:
    assert other_flow("upstream") == "downstream"
    assert other_flow("downstream") == "upstream"


# -- FaultsInForce ---------------------------------------------------------------------------


class _Backend(FaultsInForce):
    def __init__(self) -> None:
        self._faults = ()
        self.changes: list[tuple[Fault, ...]] = []

    def _check(self, faults: Iterable[Fault]) -> tuple[Fault, ...]:
        return check_faults(faults, "stream", lambda f: f"{f!r} does not apply here")

    def _faults_changed(self, faults: tuple[Fault, ...]) -> None:
        self.changes.append(faults)


def test_faults_in_force_add_remove_clear_report_each_change() -> None:
    backend = _Backend()
    backend.add(Latency(0.1))
    backend.add(Stall())
    backend.remove(Latency(0.1))
    backend.clear()
    assert backend.changes == [(Latency(0.1),), (Latency(0.1), Stall()), (Stall(),), ()]
    assert backend.faults == ()


def test_faults_in_force_refuses_without_changing_anything() -> None:
    backend = _Backend()
    backend.add(Latency(0.1))
    with pytest.raises(ValueError, match=r"^Drop\(\) does not apply here$"):
        backend.add(Drop())
    with pytest.raises(ValueError, match=r"Stall\(\) is not in force; faults: \[Latency"):
        backend.remove(Stall())
    assert backend.faults == (Latency(0.1),)
    assert backend.changes == [(Latency(0.1),)]


# -- ActionQueue ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_action_queue_keeps_order_at_equal_deadlines() -> None:
    loop = asyncio.get_running_loop()
    done: list[bytes] = []
    queue = ActionQueue(loop, lambda action: done.append(_data(action)))
    at = loop.time() + 0.02
    for index in range(20):
        queue.append(Deliver(at, "downstream", b"%d" % index))
    queue.kick()
    assert done == []
    await asyncio.sleep(0.05)
    assert done == [b"%d" % index for index in range(20)]


@pytest.mark.asyncio
async def test_action_queue_performs_each_action_once_when_perform_kicks_again() -> None:
    loop = asyncio.get_running_loop()
    done: list[bytes] = []

    def perform(action: TimedAction) -> None:
        done.append(_data(action))
        queue.kick()  # as a receiver that answers at once would

    queue = ActionQueue(loop, perform)
    for data in (b"a", b"b", b"c"):
        queue.append(Deliver(loop.time(), "upstream", data))
    queue.kick()
    assert done == [b"a", b"b", b"c"]


@pytest.mark.asyncio
async def test_action_queue_held_actions_wait_for_the_next_kick() -> None:
    loop = asyncio.get_running_loop()
    done: list[TimedAction] = []
    ready = False
    queue = ActionQueue(loop, done.append, held=lambda action: not ready)
    eof = SendEof(loop.time(), "upstream")
    queue.append(eof)
    queue.kick()
    assert done == []
    ready = True
    queue.kick()
    assert done == [eof]


@pytest.mark.asyncio
async def test_action_queue_timer_calls_due_and_close_stops_everything() -> None:
    loop = asyncio.get_running_loop()
    done: list[TimedAction] = []
    calls: list[str] = []
    queue = ActionQueue(loop, done.append, due=lambda: calls.append("due"))
    queue.append(Close(loop.time() + 0.01, "upstream", "test"))
    queue.kick()
    await asyncio.sleep(0.03)
    assert calls == ["due"]
    assert done == []  # `due` decides when to kick
    queue.close()
    queue.kick()
    assert done == []

    closed = ActionQueue(loop, done.append)
    closed.append(Close(loop.time() + 0.01, "upstream", "test"))
    closed.kick()
    closed.close()
    await asyncio.sleep(0.03)
    assert done == []


def _data(action: TimedAction) -> bytes:
    assert isinstance(action, Deliver)
    return action.data


# -- ConnectionTrace._forwarded ---------------------------------------------------------------


@pytest.mark.parametrize(("kind", "prefix"), [("tcp", ""), ("udp", "datagram ")])
def test_trace_forwarded_counts_each_direction(kind: str, prefix: str) -> None:
    trace = ConnectionTrace(_index=1, _kind=kind, _peer=None, _start=10.0)
    trace._forwarded(10.5, "upstream", b"abc")
    trace._forwarded(11.0, "downstream", b"de")
    assert (trace.upstream_bytes, trace.downstream_bytes) == (3, 2)
    assert [event.what for event in trace.events] == [
        f"{prefix}3 bytes b'abc'",
        f"{prefix}2 bytes b'de'",
    ]
    assert [event.time for event in trace.events] == [0.5, 1.0]


def test_trace_keeps_events_of_one_time_in_the_order_recorded_past_its_first_200() -> None:
    trace = ConnectionTrace(_index=1, _kind="tcp", _peer=None, _start=0.0)
    for n in range(199):
        trace._record(n / 1000, None, f"early {n}")
    trace._record(5.0, None, "A, recorded first at 5")
    trace._record(5.0, None, "B, recorded second at 5")  # the first in the tail
    trace._record(1.0, None, "late to record, at 1")  # takes A's place in the head
    assert [event.what for event in trace.events[-3:]] == [
        "late to record, at 1",
        "A, recorded first at 5",
        "B, recorded second at 5",
    ]


def test_trace_keeps_the_first_and_last_events_of_a_long_connection() -> None:
    trace = ConnectionTrace(_index=1, _kind="tcp", _peer=None, _start=0.0)
    trace._record(0.0, None, "accepted")
    for n in range(1, 1000):
        trace._forwarded(n, "downstream", b"x")
    trace._record(999.0, "downstream", "reset downstream")  # at the time of the last byte
    trace._record(1000.0, None, "finished")
    trace._record(0.5, "upstream", "late to record, early in time")
    events = trace.events
    assert len(events) == 400
    assert [event.time for event in events] == sorted(event.time for event in events)
    assert [event.what for event in events[:3]] == [
        "accepted",
        "late to record, early in time",
        "1 byte b'x'",
    ]
    assert [event.what for event in events[-3:]] == ["1 byte b'x'", "reset downstream", "finished"]
    lines = str(trace).splitlines()
    assert lines[200:203] == [
        "  198.000000 <- 1 byte b'x'",
        "  ... 603 more events not recorded",
        "  802.000000 <- 1 byte b'x'",
    ]
    assert lines[-1] == "  1000.000000    finished"


# -- datagram triggers see every datagram as sent --------------------------------------------

_STOP = Trigger(pattern=b"STOP")


def _datagrams(*faults: Fault, seed: int = 1) -> DatagramSchedule:
    return DatagramSchedule(seed=seed, index=1, now=0.0, faults=faults)


def _sent(actions: Iterable[Action]) -> list[bytes]:
    return [action.data for action in actions if isinstance(action, Deliver)]


def _send_all(schedule: DatagramSchedule, datagrams: Sequence[bytes]) -> list[Action]:
    actions: list[Action] = []
    for number, data in enumerate(datagrams):
        actions += schedule.datagram("downstream", data, number * 0.001)
    return actions


def test_datagram_trigger_sees_a_pattern_an_earlier_reorder_holds() -> None:
    # "STOP" waits in Reorder when it arrives; the Drop after it must arm all the same.
    schedule = _datagrams(Reorder(2), Drop(trigger=_STOP))
    actions = _send_all(schedule, [b"STOP", b"a", b"b", b"c", b"d", b"e"])
    assert _sent(actions) == [b"STOP"]


def test_datagram_trigger_offset_is_the_datagrams_own_after_reorder() -> None:
    # Drop arms after byte 4: "STOP" (bytes 0-3) passes, even if released with "a".
    schedule = _datagrams(Reorder(2), Drop(trigger=Trigger(after_bytes=4)))
    assert _sent(_send_all(schedule, [b"STOP", b"a"])) == [b"STOP"]


def test_datagram_trigger_applies_to_datagrams_reorder_releases_on_time() -> None:
    schedule = _datagrams(Reorder(4, max_hold=0.5), Drop(trigger=_STOP))
    assert _send_all(schedule, [b"STOP", b"a"]) == [Wake(0.5)]
    assert _sent(schedule.tick(0.5)) == [b"STOP"]


def test_datagram_trigger_sees_a_pattern_an_earlier_fault_dropped() -> None:
    latency = Latency(5, trigger=Trigger(pattern=b"SLOW"))
    schedule = _datagrams(Drop(), latency)
    assert schedule.datagram("downstream", b"SLOW", 0) == []
    schedule.update([latency], 1)
    assert schedule.datagram("downstream", b"x", 1) == [Deliver(6, "downstream", b"x")]


def test_datagram_reorder_removed_sends_what_it_held_through_the_later_faults() -> None:
    drop = Drop(trigger=_STOP)
    schedule = _datagrams(Reorder(10), drop)
    assert _sent(_send_all(schedule, [b"STOP", b"a", b"b"])) == []
    assert _sent(schedule.update([drop], 1)) == [b"STOP"]


def test_datagram_trigger_pattern_lies_inside_one_datagram() -> None:
    schedule = _datagrams(Drop(trigger=_STOP))
    assert _sent(_send_all(schedule, [b"ST", b"OP", b"x"])) == [b"ST", b"OP", b"x"]
    assert _sent(_send_all(schedule, [b"a STOP b", b"y"])) == [b"a STOP b"]


def test_datagram_trigger_replay_by_seed_is_deterministic() -> None:
    def run(seed: int) -> list[Action]:
        schedule = _datagrams(Reorder(3), Drop(0.5, trigger=_STOP), Reorder(2), seed=seed)
        actions = _send_all(schedule, [b"%d" % n for n in range(10)] + [b"STOP"])
        return actions + _send_all(schedule, [b"%d" % n for n in range(10, 40)])

    assert run(3) == run(3)
    assert run(3) != run(4)


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.append(data)


_Path = Callable[[Sequence[Fault], Sequence[bytes], int], Awaitable[list[bytes]]]


async def _settle(trace: Callable[[], ConnectionTrace | None], sink: _Sink, sent: int) -> None:
    """Wait until the trace says what became of every datagram sent, and the sink has them."""
    for _ in range(500):
        found = trace()
        if found is not None:
            ups = [event.what for event in found.events if event.flow == "upstream"]
            forwarded = sum(what.startswith("datagram ") for what in ups)
            dropped = sum(": dropped " in what for what in ups)
            if forwarded + dropped == sent and len(sink.received) == forwarded:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the datagrams were never all accounted for")


async def _through_memory(
    faults: Sequence[Fault], datagrams: Sequence[bytes], seed: int
) -> list[bytes]:
    client, server = _Sink(), _Sink()
    a, b = memory_datagram_pair(client, server)
    await asyncio.sleep(0)
    handle = inject_faults(a, faults, seed=seed)
    try:
        for data in datagrams:
            a.sendto(data)
            await asyncio.sleep(0.005)
        await _settle(lambda: handle.trace, server, len(datagrams))
    finally:
        a.close()
        b.close()
    return server.received


async def _through_proxy(
    faults: Sequence[Fault], datagrams: Sequence[bytes], seed: int
) -> list[bytes]:
    loop = asyncio.get_running_loop()
    server_transport, server = await loop.create_datagram_endpoint(
        _Sink, local_addr=("127.0.0.1", 0)
    )
    try:
        upstream = server_transport.get_extra_info("sockname")
        async with FaultProxy(upstream, kind="udp", faults=faults, seed=seed) as proxy:
            client_transport, _ = await loop.create_datagram_endpoint(
                _Sink, remote_addr=proxy.address
            )
            try:
                for data in datagrams:
                    client_transport.sendto(data)
                    await asyncio.sleep(0.005)
                await _settle(
                    lambda: proxy.traces[0] if proxy.traces else None, server, len(datagrams)
                )
            finally:
                client_transport.close()
    finally:
        server_transport.close()
        await asyncio.sleep(0)
    return server.received


@pytest.mark.asyncio
@pytest.mark.parametrize("through", [_through_memory, _through_proxy], ids=["memory", "proxy"])
@pytest.mark.parametrize(
    ("faults", "datagrams"),
    [
        # The pattern arrives while Reorder holds it.
        ([Reorder(2), Drop(trigger=_STOP)], [b"STOP", b"a", b"b", b"c", b"d", b"e"]),
        # Reorder lets "STOP" out with "a", after the Drop armed at byte 4.
        ([Reorder(2), Drop(trigger=Trigger(after_bytes=4))], [b"STOP", b"a"]),
        # Reorder lets both out on a timer.
        ([Reorder(4, max_hold=0.05), Drop(trigger=_STOP)], [b"STOP", b"a"]),
    ],
    ids=["pattern", "after-bytes", "max-hold"],
)
async def test_datagram_trigger_behind_reorder_on_both_backends(
    through: _Path, faults: list[Fault], datagrams: list[bytes], nettest_seed: int
) -> None:
    upstream = [dataclasses.replace(fault, direction="upstream") for fault in faults]
    assert await through(upstream, datagrams, nettest_seed) == [b"STOP"]


# -- equal faults each apply; remove() takes the last ------------------------------------------


def test_faults_in_force_remove_takes_the_last_of_equal_faults() -> None:
    backend = _Backend()
    backend.add(Latency(0.1))
    backend.add(Stall())
    backend.add(Latency(0.1))
    backend.remove(Latency(0.1))
    backend.remove(Latency(0.1))
    # list.remove() would have left (Stall(), Latency(0.1)) in between.
    assert backend.changes[-2:] == [(Latency(0.1), Stall()), (Stall(),)]
    assert backend.faults == (Stall(),)


def test_stream_schedule_applies_each_of_equal_faults() -> None:
    schedule = StreamSchedule(
        seed=1, index=1, now=0.0, faults=[Latency(1), Bandwidth(100), Latency(1)]
    )
    assert schedule.start(0.0) == []
    # The first Latency's delay, then the cap's time for one byte; the cap holds it.
    [wake] = schedule.data("downstream", b"x", 0.0)
    assert isinstance(wake, Wake)
    assert wake.at == pytest.approx(1.01)
    [deliver] = schedule.tick(wake.at)
    assert isinstance(deliver, Deliver)
    assert deliver.at == pytest.approx(2.01)


def test_datagram_schedule_applies_each_of_equal_faults() -> None:
    schedule = _datagrams(Duplicate(), Duplicate())
    assert _sent(schedule.datagram("downstream", b"x", 0)) == [b"x"] * 4


def test_equal_faults_draw_their_probability_apart_and_replay_by_seed() -> None:
    def delays(seed: int) -> list[float]:
        out: list[float] = []
        for index in range(1, 41):
            latency = Latency(1, probability=0.5)
            schedule = StreamSchedule(seed=seed, index=index, now=0.0, faults=[latency, latency])
            schedule.start(0.0)
            out += [a.at for a in schedule.data("downstream", b"x", 0.0) if isinstance(a, Deliver)]
        return out

    assert set(delays(1)) == {0, 1, 2}
    assert delays(1) == delays(1)


def test_stream_schedule_removing_one_of_equal_stalls_keeps_the_others_bytes() -> None:
    stall = Stall()
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[stall, Latency(1), stall])
    assert schedule.start(0.0) == [Pause("downstream"), Pause("downstream")]
    assert schedule.data("downstream", b"abc", 0.0) == []
    # The first stall holds the bytes: removing the last one lets nothing through.
    assert schedule.update([stall, Latency(1)], 1.0) == []
    assert schedule.update([Latency(1)], 2.0) == [
        Resume("downstream"),
        Deliver(3.0, "downstream", b"abc"),
    ]


def test_memory_equal_latencies_add_up_and_remove_takes_one() -> None:
    latency = Latency(5, direction="upstream")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        (_, c_writer), (s_reader, s_writer) = memory_stream_pair()
        try:
            faults = inject_faults(c_writer, [latency, latency])
            start = loop.time()
            c_writer.write(b"a\n")
            assert await s_reader.readline() == b"a\n"
            assert loop.time() - start == pytest.approx(10)
            faults.remove(latency)
            assert faults.faults == (latency,)
            start = loop.time()
            c_writer.write(b"b\n")
            assert await s_reader.readline() == b"b\n"
            assert loop.time() - start == pytest.approx(5)
        finally:
            c_writer.close()
            s_writer.close()

    run_in_loop_time(scenario)


def test_memory_removing_one_of_two_stalls_keeps_holding() -> None:
    stall = Stall(direction="upstream")

    async def scenario() -> None:
        (_, c_writer), (s_reader, s_writer) = memory_stream_pair()
        try:
            faults = inject_faults(c_writer, [stall, stall])
            c_writer.write(b"abc")
            faults.remove(stall)
            assert faults.faults == (stall,)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(s_reader.read(3), 5)
            faults.remove(stall)
            assert await asyncio.wait_for(s_reader.read(3), 5) == b"abc"
        finally:
            c_writer.close()
            s_writer.close()

    run_in_loop_time(scenario)


@contextlib.asynccontextmanager
async def _tcp_echo() -> AsyncIterator[tuple[str, int]]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        name = server.sockets[0].getsockname()
        yield name[0], name[1]
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    start = time.monotonic()
    writer.write(b"x")
    assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
    return time.monotonic() - start


@pytest.mark.asyncio
async def test_proxy_equal_latencies_add_up_and_remove_takes_one(
    fault_proxy: FaultProxyFactory,
) -> None:
    latency = Latency(0.2)
    async with _tcp_echo() as address:
        proxy = await fault_proxy(upstream=address, faults=[latency, latency])
        reader, writer = await asyncio.open_connection(*proxy.address)
        try:
            assert await _round_trip(reader, writer) >= 0.39
            proxy.remove(latency)
            assert proxy.faults == (latency,)
            assert 0.19 <= await _round_trip(reader, writer) < 0.39
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@pytest.mark.asyncio
async def test_proxy_removing_one_of_two_stalls_keeps_holding(
    fault_proxy: FaultProxyFactory,
) -> None:
    stall = Stall(direction="upstream")
    async with _tcp_echo() as address:
        proxy = await fault_proxy(upstream=address, faults=[stall, stall])
        reader, writer = await asyncio.open_connection(*proxy.address)
        try:
            writer.write(b"abc")
            await writer.drain()
            proxy.remove(stall)
            assert proxy.faults == (stall,)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(3), 0.2)
            proxy.remove(stall)
            assert await asyncio.wait_for(reader.readexactly(3), 5) == b"abc"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# -- held bytes that arm a later fault, timers behind a fault that holds or drops --------


@pytest.mark.parametrize(
    ("later", "expected"),
    [
        (Latency(1, trigger=Trigger(after_bytes=5)), b"0123456789"),
        (Latency(1, trigger=Trigger(pattern=b"34")), b"0123456789"),
        (Truncate(3, trigger=Trigger(after_bytes=5)), b"01234567"),
    ],
    ids=["after_bytes", "pattern", "truncate"],
)
def test_stream_schedule_removing_a_stall_releases_bytes_that_arm_a_later_fault(
    later: Fault, expected: bytes
) -> None:
    stall = Stall(trigger=Trigger(after_bytes=2))
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[stall, later])
    schedule.start(0.0)
    first = schedule.data("downstream", b"0123456789", 0.0)
    assert Pause("downstream") in first
    released = schedule.update([later], 1.0)
    assert released[0] == Resume("downstream")
    assert b"".join(_sent(first + released)) == expected


@pytest.mark.parametrize(
    ("holder", "timed", "end"),
    [
        (Blackhole(), CloseAfter(0.5, trigger=Trigger(after_bytes=5)), Close),
        (Stall(), CloseAfter(0.5, trigger=Trigger(after_bytes=5)), Close),
        (Stall(), Reset(after_seconds=0.5, trigger=Trigger(pattern=b"34")), Abort),
    ],
    ids=["blackhole-closeafter", "stall-closeafter", "stall-reset"],
)
def test_stream_schedule_timer_behind_a_holder_arms_on_the_bytes_as_sent(
    holder: Fault, timed: Fault, end: type[Close | Abort]
) -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[holder, timed])
    schedule.start(0.0)
    assert Wake(0.5) in schedule.data("downstream", b"0123456789", 0.0)
    assert schedule.tick(0.4) == []
    [action] = schedule.tick(0.5)
    assert isinstance(action, end)
    assert action.at == 0.5


def test_stream_schedule_timer_still_arms_when_the_delayed_bytes_reach_it() -> None:
    close = CloseAfter(0.5, trigger=Trigger(after_bytes=5))
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[Latency(1), close])
    schedule.start(0.0)
    assert Wake(1.5) in schedule.data("downstream", b"0123456789", 0.0)


def test_datagram_schedule_removing_reorder_times_held_datagrams_from_the_removal() -> None:
    reorder = Reorder(4, max_hold=30)
    schedule = _datagrams(reorder, Latency(0.5))
    assert schedule.datagram("downstream", b"held", 0.0) == [Wake(30.0)]
    assert schedule.update([Latency(0.5)], 0.4) == [Deliver(0.9, "downstream", b"held")]


@pytest.mark.parametrize("holder", [Blackhole(), Stall()], ids=["blackhole", "stall"])
@pytest.mark.parametrize(
    "fault",
    [
        Reset(trigger=Trigger(after_bytes=5)),
        Reset(after_bytes=0, trigger=Trigger(after_bytes=5)),
        Truncate(0, trigger=Trigger(after_bytes=5)),
    ],
    ids=["reset", "reset-after-0", "truncate-0"],
)
def test_stream_schedule_a_fault_acting_at_arming_acts_behind_a_holder(
    holder: Fault, fault: Fault
) -> None:
    # Reset() and Reset(after_bytes=0) (and Truncate(0)) all act the moment they
    # arm: behind a holder, on the bytes as sent, as when first in the list.
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[holder, fault])
    schedule.start(0.0)
    actions = schedule.data("downstream", b"0123456789", 0.0)
    assert any(isinstance(action, (Abort, Close)) for action in actions), actions


def test_stream_schedule_arms_each_added_stage_once() -> None:
    # HalfClose's EOF, delayed 1 s by Latency, arms CloseAfter inline at 1.0; the
    # loop over the added stages must not arm it again at 0.0 (a close 1 s early).
    schedule = StreamSchedule(
        seed=1, index=1, now=0.0, faults=[HalfClose(), Latency(1), CloseAfter(1)]
    )
    actions = schedule.start(0.0)
    armed = [event for event in schedule.trace.events if "armed" in event.what]
    assert len(armed) == 1, armed
    assert [action for action in actions if isinstance(action, Wake)] == [Wake(2.0)]


def test_datagram_trace_shows_what_each_fault_did_to_which_datagram() -> None:
    schedule = _datagrams(TruncateDatagram(2), Drop())
    _send_all(schedule, [b"x", b"STOP now"])
    assert [event.what for event in schedule.trace.events][1:] == [
        "Drop(): dropped datagram 1 byte b'x'",
        "TruncateDatagram(max_size=2): cut datagram 8 bytes b'STOP now' to 2",
        "Drop(): dropped datagram 2 bytes b'ST'",
    ]
