"""The fault vocabulary and the sans-IO schedules, without any IO."""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable
from typing import Any

import pytest

import nettest.faults
from nettest._fault_actions import (
    Abort,
    Action,
    Close,
    Deliver,
    Pause,
    RefuseConnection,
    Resume,
    SendEof,
    UnreachableAction,
    Wake,
)
from nettest._fault_engine_datagram import DatagramSchedule
from nettest._fault_engine_stream import StreamSchedule
from nettest._faults import (
    Bandwidth,
    Blackhole,
    CloseAfter,
    Corrupt,
    Drop,
    Duplicate,
    Fault,
    Flow,
    HalfClose,
    Latency,
    Refuse,
    Reorder,
    Reset,
    Slice,
    SlowClose,
    Stall,
    Trigger,
    Truncate,
    TruncateDatagram,
    Unreachable,
)

# -- the vocabulary ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Latency(-0.1), "delay"),
        (lambda: Latency(0.1, jitter=-1), "jitter"),
        (lambda: Latency(float("inf")), "delay"),
        (lambda: Latency(10**400), "delay"),
        (lambda: Drop(-(10**400)), "rate"),
        (lambda: Bandwidth(0), "bytes_per_second"),
        (lambda: Bandwidth(-5), "bytes_per_second"),
        (lambda: Slice(0), "size"),
        (lambda: Slice(4, delay=-1), "delay"),
        (lambda: Truncate(-1), "after_bytes"),
        (lambda: Reset(after_bytes=-1), "after_bytes"),
        (lambda: Reset(after_seconds=-1), "after_seconds"),
        (lambda: SlowClose(-1), "delay"),
        (lambda: CloseAfter(-2), "^seconds must be >= 0 and finite, got -2$"),
        (lambda: Corrupt(), "Corrupt needs positions"),
        (lambda: Corrupt(rate=1.5), "rate"),
        (lambda: Corrupt(positions=(1,), mask=256), r"mask must be in 1\.\.255, got 256"),
        (lambda: Corrupt(positions=(1,), mask=0), r"mask must be in 1\.\.255, got 0"),
        (lambda: Corrupt(positions=(-1,)), "positions"),
        (lambda: Drop(1.1), "rate"),
        (lambda: Duplicate(-0.1), "rate"),
        (lambda: Reorder(1), "window"),
        (lambda: TruncateDatagram(-1), "max_size"),
        (lambda: Latency(0.1, probability=-0.01), "probability"),
        (lambda: Drop(0.1, probability=1.01), "probability"),
        (lambda: Latency(0.1, direction="sideways"), "direction"),  # type: ignore[arg-type]
        (lambda: Trigger(connection=0), "connection"),
        (lambda: Trigger(after_bytes=-1), "after_bytes"),
        (lambda: Trigger(pattern=b""), "pattern"),
        (lambda: Refuse(trigger=Trigger(after_bytes=3)), "trigger"),
    ],
)
def test_fault_bad_input_names_the_field(make: Callable[[], object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()


def test_fault_rejects_wrong_types() -> None:
    with pytest.raises(TypeError, match="delay must be a number"):
        Latency("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="size must be an int"):
        Slice(True)
    with pytest.raises(TypeError, match="trigger must be a Trigger"):
        Latency(1, trigger=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="base class"):
        Fault()
    # NaN is out of every range, and the message says which.
    nan = float("nan")
    cases: list[tuple[Callable[[], Fault], str]] = [
        (lambda: Latency(nan), "delay must be >= 0 seconds and finite, got nan"),
        (lambda: Latency(1, jitter=nan), "jitter must be >= 0 seconds and finite, got nan"),
        (lambda: Bandwidth(nan), "bytes_per_second must be > 0 and finite, got nan"),
        (lambda: Drop(nan), r"rate must be in \[0, 1\], got nan"),
        (lambda: SlowClose(nan), "delay must be >= 0 seconds and finite, got nan"),
        (lambda: Reset(after_seconds=nan), "after_seconds must be >= 0 seconds and finite"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()


def test_fault_values_are_frozen_hashable_and_compare_by_value() -> None:
    fault = Latency(0.1, direction="both")
    assert fault == Latency(0.1, direction="both")
    assert fault != Latency(0.1)
    assert len({fault, Latency(0.1, direction="both")}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        fault.delay = 2  # type: ignore[misc]
    assert not hasattr(fault, "__dict__")


def test_fault_repr_shows_own_fields_first_and_only_changed_options() -> None:
    assert repr(Latency(0.1)) == "Latency(delay=0.1)"
    assert repr(Reset(after_bytes=3, direction="both")) == "Reset(after_bytes=3, direction='both')"
    assert repr(Blackhole()) == "Blackhole()"
    assert repr(Unreachable()) == "Unreachable()"
    # A trigger prints as the code that makes it too.
    assert repr(Refuse(trigger=Trigger(connection=1))) == "Refuse(trigger=Trigger(connection=1))"
    assert (
        repr(Trigger(after_bytes=3, pattern=b"\r\n"))
        == "Trigger(after_bytes=3, pattern=b'\\r\\n')"
    )
    assert repr(Trigger()) == "Trigger()"
    for each in (Trigger(), Trigger(connection=2, after_bytes=1, pattern=b"x")):
        assert eval(repr(each)) == each


_ONE_OF_EACH: list[Fault] = [
    Latency(0.1, jitter=0.02),
    Bandwidth(1024, direction="upstream"),
    Slice(1, delay=0.01),
    Truncate(3, trigger=Trigger(connection=2, pattern=b"\r\n")),
    Reset(after_bytes=3, direction="both"),
    Blackhole(),
    SlowClose(0.5),
    CloseAfter(1.0),
    HalfClose(),
    Stall(direction="upstream"),
    Corrupt(positions=(3,)),
    Refuse(),
    Drop(0.3, direction="both"),
    Duplicate(0.5, probability=0.5),
    Reorder(4, max_hold=0.1),
    TruncateDatagram(8),
    Unreachable(),
]


@pytest.mark.parametrize("fault", _ONE_OF_EACH, ids=lambda fault: type(fault).__name__)
def test_hypothesis_prints_a_fault_as_code_that_makes_it_again(fault: Fault) -> None:
    # A "Falsifying example" must paste back: no private class attribute as an argument.
    from hypothesis.vendor.pretty import pretty

    text = pretty(fault)
    assert text == repr(fault)
    assert eval(text, vars(nettest.faults)) == fault
    assert [f.name for f in dataclasses.fields(fault)] == list(type(fault).__dataclass_fields__)


def test_one_of_each_covers_every_fault() -> None:
    public = {
        cls
        for cls in vars(nettest.faults).values()
        if isinstance(cls, type) and issubclass(cls, Fault) and cls is not Fault
    }
    assert {type(fault) for fault in _ONE_OF_EACH} == public


def test_fault_defaults() -> None:
    assert Latency(1).direction == "downstream"
    assert Latency(1).probability == 1.0
    assert Unreachable().direction == "upstream"
    assert Corrupt(positions=[3, 1]).positions == (3, 1)  # type: ignore[arg-type]


# -- helpers -------------------------------------------------------------------------------


def stream(*faults: Fault, index: int = 1, seed: int = 7) -> StreamSchedule:
    schedule = StreamSchedule(seed=seed, index=index, now=0.0, faults=faults)
    schedule.start(0.0)
    return schedule


def delivered(actions: list[Action], flow: Flow = "downstream") -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Deliver) and a.flow == flow)


def times(actions: list[Action]) -> list[float]:
    return [round(a.at, 9) for a in actions if isinstance(a, Deliver)]


class Ticker:
    """Calls a schedule's tick() at each `Wake` it asks for, as a driver's timer would."""

    def __init__(self, schedule: StreamSchedule | DatagramSchedule) -> None:
        self.schedule = schedule
        self.wakes: list[float] = []

    def take(self, actions: list[Action]) -> list[Action]:
        """Keep the wakes of `actions`; return the others."""
        self.wakes += [a.at for a in actions if isinstance(a, Wake)]
        return [a for a in actions if not isinstance(a, Wake)]

    def until(self, now: float = float("inf")) -> list[Action]:
        """Tick at each wake due by `now`, in time order; return what the ticks gave."""
        out: list[Action] = []
        while self.wakes and min(self.wakes) <= now:
            at = min(self.wakes)
            self.wakes.remove(at)
            out += self.take(self.schedule.tick(at))
        return out


# -- the stream schedule -----------------------------------------------------------------


def test_stream_without_faults_delivers_at_once_in_both_directions() -> None:
    schedule = stream()
    assert schedule.data("downstream", b"abc", 1.0) == [Deliver(1.0, "downstream", b"abc")]
    assert schedule.data("upstream", b"xy", 2.0) == [Deliver(2.0, "upstream", b"xy")]
    assert schedule.eof("upstream", 3.0) == [SendEof(3.0, "upstream")]
    assert schedule.trace.upstream_bytes == 2
    assert schedule.trace.downstream_bytes == 3


def test_latency_delays_only_its_direction() -> None:
    schedule = stream(Latency(0.5))
    assert schedule.data("downstream", b"abc", 1.0) == [Deliver(1.5, "downstream", b"abc")]
    assert schedule.data("upstream", b"q", 1.0) == [Deliver(1.0, "upstream", b"q")]
    assert schedule.eof("downstream", 2.0) == [SendEof(2.5, "downstream")]
    assert "Latency(delay=0.5)" in schedule.trace.fired


def test_latency_that_delays_only_an_eof_has_fired() -> None:
    # The trace said "faults fired: none" for a Latency that held back the EOF.
    schedule = stream(Latency(0.5))
    assert schedule.eof("downstream", 2.0) == [SendEof(2.5, "downstream")]
    assert "Latency(delay=0.5)" in schedule.trace.fired


def test_latency_jitter_never_reorders_a_stream() -> None:
    schedule = stream(Latency(0.1, jitter=0.09))
    actions: list[Action] = []
    for i in range(200):
        actions += schedule.data("downstream", bytes([i]), i * 0.001)
    at = times(actions)
    assert at == sorted(at)
    assert delivered(actions) == bytes(range(200))
    assert (
        min(b - a for a, b in zip([i * 0.001 for i in range(200)], at, strict=True)) >= 0.01 - 1e-9
    )


def test_latency_jitter_above_its_delay_sends_some_at_once_never_early() -> None:
    sent = [i * 0.001 for i in range(200)]
    stream_actions: list[Action] = []
    schedule = stream(Latency(0.01, jitter=0.2))
    for i, at in enumerate(sent):
        stream_actions += schedule.data("downstream", bytes([i]), at)
    lags = [due - at for at, due in zip(sent, times(stream_actions), strict=True)]
    assert min(lags) >= 0  # never before it was sent (nor before the chunk before it)
    assert delivered(stream_actions) == bytes(range(200))
    dgrams = datagrams(Latency(0.01, jitter=0.2))
    lags = [
        action.at - at
        for i, at in enumerate(sent)
        for action in dgrams.datagram("downstream", bytes([i]), at)
        if isinstance(action, Deliver)
    ]
    assert len(lags) == 200
    assert min(lags) == 0  # some at once: each datagram draws its own delay
    assert max(lags) > 0.1


def test_latency_in_both_directions() -> None:
    schedule = stream(Latency(1, direction="both"))
    assert times(schedule.data("upstream", b"a", 0)) == [1]
    assert times(schedule.data("downstream", b"b", 0)) == [1]


def test_bandwidth_spreads_bytes_at_the_cap() -> None:
    schedule = stream(Bandwidth(1000))
    ticker = Ticker(schedule)
    # The cap holds each piece until it is due, and asks for a tick then.
    assert schedule.data("downstream", b"x" * 500, 0.0) == [Wake(0.02)]
    ticker.wakes.append(0.02)
    actions = ticker.until(0.1)
    actions += ticker.take(schedule.data("downstream", b"y" * 500, 0.1))
    actions += ticker.until()
    assert delivered(actions) == b"x" * 500 + b"y" * 500
    assert times(actions)[-1] == pytest.approx(1.0)
    assert all(len(a.data) <= 20 for a in actions if isinstance(a, Deliver))
    # Each piece went out when due, not before.
    assert times(actions) == sorted(times(actions))
    assert times(actions)[0] == pytest.approx(0.02)
    # After the link has been idle, bytes go out at the rate again from "now".
    later = ticker.take(schedule.data("downstream", b"z" * 100, 5.0)) + ticker.until()
    assert times(later)[-1] == pytest.approx(5.1)


def test_slice_fragments_and_spaces_pieces() -> None:
    schedule = stream(Slice(3, delay=0.01))
    ticker = Ticker(schedule)
    actions = ticker.take(schedule.data("downstream", b"abcdefgh", 1.0))
    # The first piece goes at once; the others wait for their turn.
    assert actions == [Deliver(1.0, "downstream", b"abc", alone=True)]
    actions += ticker.until()
    assert [a.data for a in actions if isinstance(a, Deliver)] == [b"abc", b"def", b"gh"]
    assert times(actions) == [1.0, 1.01, 1.02]
    # Each piece is to be read alone, even with no delay between them.
    assert all(a.alone for a in actions if isinstance(a, Deliver))


def test_slice_pieces_stay_alone_through_later_faults() -> None:
    schedule = stream(Slice(2), Corrupt(positions=(0,)), Latency(1), Truncate(5))
    actions = schedule.data("downstream", b"abcdefgh", 0)
    pieces = [a for a in actions if isinstance(a, Deliver)]
    assert [(a.data, a.alone) for a in pieces] == [
        (b"\x9eb", True),
        (b"cd", True),
        (b"e", True),
    ]
    delayed = stream(Latency(1)).data("downstream", b"ab", 0)
    assert not any(a.alone for a in delayed if isinstance(a, Deliver))


def test_slice_jitter_varies_sizes_but_keeps_bytes() -> None:
    schedule = stream(Slice(4, jitter=3))
    data = bytes(range(256)) * 4
    actions = schedule.data("downstream", data, 0)
    sizes = {len(a.data) for a in actions if isinstance(a, Deliver)}
    assert delivered(actions) == data
    assert len(sizes) > 2
    assert max(sizes) <= 7


def test_truncate_passes_n_bytes_then_closes() -> None:
    schedule = stream(Truncate(5))
    first = schedule.data("downstream", b"abc", 0.0)
    assert first == [Deliver(0.0, "downstream", b"abc")]
    second = schedule.data("downstream", b"defgh", 1.0)
    assert second[0] == Deliver(1.0, "downstream", b"de")
    assert isinstance(second[1], Close)
    assert schedule.closed
    assert schedule.data("downstream", b"more", 2.0) == []
    assert schedule.data("upstream", b"more", 2.0) == []


def test_truncate_zero_closes_at_once() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[Truncate(0)])
    actions = schedule.start(0.0)
    assert len(actions) == 1
    assert isinstance(actions[0], Close)


def test_truncate_after_latency_closes_after_the_delayed_bytes() -> None:
    schedule = stream(Latency(1), Truncate(2))
    actions = schedule.data("downstream", b"abcd", 0)
    assert actions[0] == Deliver(1, "downstream", b"ab")
    assert isinstance(actions[1], Close)
    assert actions[1].at == 1


def test_reset_after_bytes_resets_the_receiver() -> None:
    schedule = stream(Reset(after_bytes=2))
    actions = schedule.data("downstream", b"abcd", 0)
    assert actions == [
        Deliver(0, "downstream", b"ab"),
        Abort(0, "downstream", ("downstream",), "Reset(after_bytes=2)"),
    ]


def test_reset_both_directions_resets_both_peers() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[Reset(direction="both")])
    actions = schedule.start(0.0)
    assert len(actions) == 1
    assert isinstance(actions[0], Abort)
    assert actions[0].flows == ("upstream", "downstream")


def test_reset_after_seconds_uses_a_timer() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=10.0, faults=[Reset(after_seconds=2)])
    assert schedule.start(10.0) == [Wake(12.0)]
    assert schedule.tick(11.0) == []
    assert len(schedule.data("downstream", b"abc", 11.5)) == 1
    actions = schedule.tick(12.0)
    assert len(actions) == 1
    assert isinstance(actions[0], Abort)
    assert schedule.tick(13.0) == []


def test_reset_timer_does_nothing_once_the_fault_is_removed() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[Reset(after_seconds=2)])
    schedule.start(0.0)
    assert schedule.update([], 1.0) == []
    assert schedule.tick(2.0) == []
    assert not schedule.closed


def test_close_after_closes_on_tick() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[CloseAfter(1.5)])
    assert schedule.start(0.0) == [Wake(1.5)]
    actions = schedule.tick(1.5)
    assert len(actions) == 1
    assert isinstance(actions[0], Close)


@pytest.mark.parametrize(
    ("fault", "line"),
    [
        (CloseAfter(1.5), "CloseAfter(seconds=1.5): closed after 1.5s"),
        (Reset(after_seconds=1.5), "Reset(after_seconds=1.5): reset after 1.5s"),
    ],
)
def test_a_timer_fault_s_trace_says_its_time_and_how_late_it_ran(fault: Fault, line: str) -> None:
    # As a byte limit says its count ("closed after 2 bytes"), not the timer's
    # lateness as a negative time left.
    on_time = StreamSchedule(seed=1, index=1, now=10.0, faults=[fault])
    on_time.start(10.0)
    on_time.tick(11.5)
    assert f"   1.500000 <- {line}\n" in str(on_time.trace)
    late = StreamSchedule(seed=1, index=1, now=10.0, faults=[fault])
    late.start(10.0)
    late.tick(11.75)
    assert f"   1.750000 <- {line} (the timer ran 0.250s late)\n" in str(late.trace)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.1 + 0.2, "0.3"), (1234567.0, "1234567.0"), (100.123456789, "100.123457"), (2, "2")],
)
def test_a_timer_fault_s_trace_says_its_time_without_float_noise(
    seconds: float, said: str
) -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[CloseAfter(seconds)])
    schedule.start(0.0)
    schedule.tick(seconds)
    assert f": closed after {said}s\n" in str(schedule.trace) + "\n"


def test_blackhole_forwards_nothing_not_even_the_fin() -> None:
    schedule = stream(Blackhole())
    assert schedule.data("downstream", b"abc", 0) == []
    assert schedule.eof("downstream", 1) == []
    assert schedule.data("upstream", b"up", 1) == [Deliver(1, "upstream", b"up")]
    assert not schedule.closed


def test_stall_holds_bytes_then_releases_them_in_order() -> None:
    schedule = stream(Stall(direction="upstream"))
    assert schedule.data("upstream", b"abc", 1) == []
    assert schedule.eof("upstream", 2) == []
    released = schedule.update([], 3)
    assert released == [
        Resume("upstream"),
        Deliver(3, "upstream", b"abc"),
        SendEof(3, "upstream"),
    ]


def test_stall_pauses_the_sender_when_armed() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[Stall(direction="upstream")])
    assert schedule.start(0.0) == [Pause("upstream")]


def test_stall_released_bytes_still_go_through_later_faults() -> None:
    schedule = stream(Stall(), Latency(1))
    assert schedule.data("downstream", b"abc", 0) == []
    assert schedule.update([Latency(1)], 5) == [
        Resume("downstream"),
        Deliver(6, "downstream", b"abc"),
    ]


@pytest.mark.parametrize(
    ("earlier", "released"),
    [
        # Each fault before the stall acted on the bytes once, as they reached it.
        (Corrupt(positions=(0,)), [Deliver(5, "downstream", b"\x9ebcde")]),
        (Truncate(3), [Deliver(5, "downstream", b"abc")]),
        (Latency(1), [Deliver(5, "downstream", b"abcde")]),
    ],
)
def test_stall_released_bytes_skip_the_faults_before_it(
    earlier: Fault, released: list[Action]
) -> None:
    stall = Stall()
    schedule = stream(earlier, stall)
    assert schedule.data("downstream", b"abcde", 0) == []
    actions = schedule.update([earlier], 5)
    assert actions[0] == Resume("downstream")
    assert [a for a in actions[1:] if isinstance(a, Deliver)] == released


def test_stall_removed_while_another_stall_holds_keeps_the_sender_paused() -> None:
    first, second = Stall(), Stall(trigger=Trigger(after_bytes=0))
    schedule = stream(first, second)
    schedule.data("downstream", b"abc", 0)
    # The bytes move on to the second stall, which holds them; reading stays off.
    assert schedule.update([second], 1) == []
    assert schedule.update([], 2) == [Resume("downstream"), Deliver(2, "downstream", b"abc")]


def test_stalls_removed_together_release_the_earliest_bytes_first() -> None:
    first, second = Stall(trigger=Trigger(after_bytes=2)), Stall()
    schedule = stream(first, second)
    # "ab" passes the first stall before it arms and waits at the second; "cd" waits
    # at the first.
    assert schedule.data("downstream", b"ab", 0) == [Pause("downstream")]
    assert schedule.data("downstream", b"cd", 1) == []
    actions = schedule.update([], 2)
    assert [a.data for a in actions if isinstance(a, Deliver)] == [b"ab", b"cd"]


def test_slow_close_holds_the_fin() -> None:
    schedule = stream(SlowClose(2))
    assert schedule.data("downstream", b"abc", 0) == [Deliver(0, "downstream", b"abc")]
    assert schedule.eof("downstream", 1) == [Wake(3)]
    assert schedule.tick(2.5) == []
    assert schedule.tick(3) == [SendEof(3, "downstream")]


def test_half_close_sends_eof_and_drops_the_rest_of_that_direction() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[HalfClose()])
    assert schedule.start(0.0) == [SendEof(0.0, "downstream")]
    assert schedule.data("downstream", b"late", 1) == []
    assert schedule.eof("downstream", 2) == []
    assert schedule.data("upstream", b"still", 3) == [Deliver(3, "upstream", b"still")]


def test_half_close_removed_does_not_write_after_the_fin() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[HalfClose()])
    schedule.start(0.0)
    schedule.update([], 1)
    assert schedule.data("downstream", b"late", 2) == []


def test_corrupt_positions_count_from_arming() -> None:
    schedule = stream(Corrupt(positions=(0, 4), trigger=Trigger(after_bytes=2)))
    actions = schedule.data("downstream", b"\x00" * 4, 0)
    actions += schedule.data("downstream", b"\x00" * 4, 1)
    assert delivered(actions) == b"\x00\x00\xff\x00\x00\x00\xff\x00"


def test_corrupt_rate_flips_about_that_share_of_bytes() -> None:
    schedule = stream(Corrupt(rate=0.1))
    data = bytes(20_000)
    out = delivered(schedule.data("downstream", data, 0))
    flipped = sum(1 for b in out if b)
    assert len(out) == len(data)
    assert 1_700 < flipped < 2_300


def test_corrupt_rate_one_flips_everything() -> None:
    schedule = stream(Corrupt(rate=1.0, mask=0x01))
    assert delivered(schedule.data("downstream", b"\x00\x00\x00", 0)) == b"\x01\x01\x01"


# -- triggers --------------------------------------------------------------------------


def test_trigger_after_bytes_splits_the_chunk_at_the_offset() -> None:
    schedule = stream(Latency(1, trigger=Trigger(after_bytes=3)))
    actions = schedule.data("downstream", b"abcdef", 0)
    assert actions == [Deliver(0, "downstream", b"abc"), Deliver(1, "downstream", b"def")]


def test_trigger_pattern_across_chunks() -> None:
    schedule = stream(Reset(trigger=Trigger(pattern=b"\r\n\r\n")))
    assert delivered(schedule.data("downstream", b"HTTP/1.1 200 OK\r\n\r", 0)) == (
        b"HTTP/1.1 200 OK\r\n\r"
    )
    actions = schedule.data("downstream", b"\nbody", 1)
    assert actions[0] == Deliver(1, "downstream", b"\n")
    assert isinstance(actions[1], Abort)


def test_trigger_pattern_and_after_bytes_use_the_later_offset() -> None:
    schedule = stream(Truncate(0, trigger=Trigger(after_bytes=6, pattern=b"b")))
    actions = schedule.data("downstream", b"abcdefgh", 0)
    assert actions[0] == Deliver(0, "downstream", b"abcdef")
    assert isinstance(actions[1], Close)


def test_trigger_pattern_in_the_other_direction_does_not_arm() -> None:
    schedule = stream(Reset(trigger=Trigger(pattern=b"X")))
    assert schedule.data("upstream", b"XXXX", 0) == [Deliver(0, "upstream", b"XXXX")]
    assert not schedule.closed


def test_trigger_connection_selects_only_that_connection() -> None:
    fault = Latency(1, trigger=Trigger(connection=2))
    first = stream(fault, index=1)
    second = stream(fault, index=2)
    assert times(first.data("downstream", b"a", 0)) == [0]
    assert times(second.data("downstream", b"a", 0)) == [1]


def test_fault_added_mid_connection_counts_from_then() -> None:
    schedule = stream()
    schedule.data("downstream", b"x" * 100, 0)
    assert schedule.update([Truncate(3)], 1) == []
    actions = schedule.data("downstream", b"abcdef", 2)
    assert actions[0] == Deliver(2, "downstream", b"abc")
    assert isinstance(actions[1], Close)


def test_removed_fault_stops_acting() -> None:
    schedule = stream(Latency(1))
    assert times(schedule.data("downstream", b"a", 0)) == [1]
    schedule.update([], 2)
    assert times(schedule.data("downstream", b"b", 3)) == [3]


def test_probability_is_drawn_once_per_connection() -> None:
    fault = Latency(1, probability=0.5)
    chosen = []
    for index in range(1, 201):
        schedule = stream(fault, index=index)
        first = times(schedule.data("downstream", b"a", 0))
        again = times(schedule.data("downstream", b"b", 10))
        # A connection either has the fault for all its bytes or for none.
        assert [first, again] in ([[0], [10]], [[1], [11]])
        chosen.append(first == [1])
    assert 60 < sum(chosen) < 140


def test_probability_zero_never_applies() -> None:
    for index in range(1, 50):
        schedule = stream(Reset(probability=0.0), index=index)
        assert schedule.data("downstream", b"a", 0) == [Deliver(0, "downstream", b"a")]


def test_refuse_refuses_at_start() -> None:
    schedule = StreamSchedule(seed=1, index=1, now=0.0, faults=[Refuse()])
    actions = schedule.start(0.0)
    assert actions == [RefuseConnection("Refuse()")]
    assert schedule.closed
    assert schedule.data("upstream", b"x", 1) == []


def test_refuse_nth_connection_only() -> None:
    fault = Refuse(trigger=Trigger(connection=2))
    results = [
        StreamSchedule(seed=1, index=i, now=0.0, faults=[fault]).start(0.0) for i in (1, 2, 3)
    ]
    assert [bool(r) for r in results] == [False, True, False]


def test_stream_schedule_rejects_datagram_faults() -> None:
    with pytest.raises(ValueError, match="UDP traffic only"):
        StreamSchedule(seed=1, index=1, now=0, faults=[Drop(0.5)]).start(0)
    with pytest.raises(TypeError, match="expected a fault"):
        StreamSchedule(seed=1, index=1, now=0, faults=["latency"]).start(0)  # type: ignore[list-item]


def test_trace_records_faults_and_bytes() -> None:
    schedule = stream(Latency(0.25))
    schedule.data("downstream", b"hello", 1)
    text = str(schedule.trace)
    assert "faults fired: Latency(delay=0.25)" in text
    assert "5 bytes b'hello'" in text
    assert "tcp connection #1" in text


def test_trace_lists_events_in_time_order() -> None:
    # The reply is held until 1.25; the request after it was forwarded at 1.1.
    schedule = stream(Latency(0.25, direction="downstream"))
    schedule.data("downstream", b"reply", 1.0)
    schedule.data("upstream", b"next", 1.1)
    schedule.data("downstream", b"more", 1.25)
    lines = str(schedule.trace).splitlines()[1:]
    assert [line.split(maxsplit=1)[0] for line in lines] == [
        "0.000000",
        "1.000000",
        "1.100000",
        "1.250000",
        "1.500000",
    ]
    assert "delaying" in lines[1]
    assert "b'next'" in lines[2]
    assert "b'reply'" in lines[3]
    assert [event.time for event in schedule.trace.events] == sorted(
        event.time for event in schedule.trace.events
    )


# -- determinism -----------------------------------------------------------------------


def _random_traffic(seed: int) -> list[tuple[str, bytes, float]]:
    rng = random.Random(seed)
    now = 0.0
    traffic = []
    for _ in range(300):
        now += rng.random() / 100
        flow = rng.choice(["upstream", "downstream"])
        traffic.append((flow, rng.randbytes(rng.randint(1, 200)), now))
    return traffic


def _run_stream(seed: int, index: int) -> list[Action]:
    faults: list[Fault] = [
        Latency(0.05, jitter=0.04, direction="both"),
        Slice(7, jitter=5),
        Corrupt(rate=0.01, direction="both"),
        Latency(1, probability=0.5, direction="upstream"),
        Reset(after_bytes=20_000, probability=0.3),
    ]
    schedule = StreamSchedule(seed=seed, index=index, now=0.0, faults=faults)
    actions = schedule.start(0.0)
    for flow, data, now in _random_traffic(99):
        actions += schedule.data(flow, data, now)  # type: ignore[arg-type]
    return actions


def test_stream_same_seed_same_traffic_same_actions() -> None:
    for index in (1, 2, 3):
        assert _run_stream(1234, index) == _run_stream(1234, index)
    assert _run_stream(1234, 1) != _run_stream(4321, 1)


def _run_datagrams(seed: int) -> list[Action]:
    faults: list[Fault] = [
        Drop(0.2, direction="both"),
        Duplicate(0.1),
        Reorder(3),
        Latency(0.01, jitter=0.01),
        Corrupt(rate=0.05),
    ]
    schedule = DatagramSchedule(seed=seed, index=1, now=0.0, faults=faults)
    actions: list[Action] = []
    for flow, data, now in _random_traffic(5):
        actions += schedule.datagram(flow, data, now)  # type: ignore[arg-type]
    actions += schedule.tick(100.0)
    return actions


def test_datagram_same_seed_same_traffic_same_actions() -> None:
    assert _run_datagrams(1) == _run_datagrams(1)
    assert _run_datagrams(1) != _run_datagrams(2)


def _per_flow(actions: list[Action]) -> dict[str, list[Action]]:
    flows: dict[str, list[Action]] = {"upstream": [], "downstream": []}
    for action in actions:
        flows[getattr(action, "flow", "upstream")].append(action)
    return flows


@pytest.mark.parametrize("kind", ["datagram", "stream"])
def test_each_direction_draws_apart_from_the_other(kind: str) -> None:
    # A request and its reply race: which of the two the proxy sees first must
    # not change what the faults do to either (one draw sequence per direction
    # made a retry's replay differ from run to run).
    if kind == "datagram":
        faults: list[Fault] = [Drop(0.3, direction="both"), Duplicate(0.2, direction="both")]
        faults += [Latency(0.01, jitter=0.01, direction="both")]
    else:
        faults = [Slice(3, jitter=2, direction="both"), Latency(0.01, jitter=0.01)]
        faults += [Corrupt(rate=0.05, direction="both")]

    def run(reply_first: bool) -> dict[str, list[Action]]:
        schedule: StreamSchedule | DatagramSchedule
        if kind == "datagram":
            schedule = DatagramSchedule(seed=7, index=1, now=0.0, faults=faults)
            send = schedule.datagram
        else:
            schedule = StreamSchedule(seed=7, index=1, now=0.0, faults=faults)
            send = schedule.data
        actions = schedule.start(0.0) if isinstance(schedule, StreamSchedule) else []
        for i in range(200):
            flows = (
                ["downstream", "upstream"] if reply_first and i % 3 else ["upstream", "downstream"]
            )
            for flow in flows:
                actions += send(flow, bytes([i % 256]) * 8, i / 100)  # type: ignore[arg-type]
        actions += schedule.tick(100.0)
        return _per_flow(actions)

    assert run(reply_first=False) == run(reply_first=True)


# -- the datagram schedule --------------------------------------------------------------


def datagrams(*faults: Fault, seed: int = 3) -> DatagramSchedule:
    return DatagramSchedule(seed=seed, index=1, now=0.0, faults=faults)


def test_datagram_without_faults() -> None:
    schedule = datagrams()
    assert schedule.datagram("upstream", b"ping", 1) == [Deliver(1, "upstream", b"ping")]


def test_drop_rate() -> None:
    schedule = datagrams(Drop(0.25))
    kept = sum(len(schedule.datagram("downstream", b"x", 0)) for _ in range(4000))
    assert 2800 < kept < 3200
    assert schedule.datagram("upstream", b"x", 0) == [Deliver(0, "upstream", b"x")]


def test_drop_all() -> None:
    schedule = datagrams(Drop())
    assert schedule.datagram("downstream", b"x", 0) == []
    assert "Drop()" in schedule.trace.fired


@pytest.mark.parametrize(
    ("fault", "what"), [(Latency(0.1), "delaying"), (Bandwidth(100), "throttling")]
)
def test_datagram_delays_are_traced_once(fault: Fault, what: str) -> None:
    # Like the stream faults of their kind: in fired, and in the trace at the first
    # datagram they act on, not at each.
    schedule = datagrams(fault)
    for at in (0.0, 10.0, 20.0):
        schedule.datagram("downstream", b"x", at)
    assert schedule.trace.fired == [repr(fault)]
    lines = [line for line in str(schedule.trace).splitlines() if what in line]
    (line,) = lines
    assert line.split()[0] == "0.000000"


def _sent_through(schedule: DatagramSchedule, flow: str, count: int) -> list[bytes]:
    actions: list[Action] = []
    for number in range(1, count + 1):
        actions += schedule.datagram(flow, b"%d" % number, number)  # type: ignore[arg-type]
    return [action.data for action in actions if isinstance(action, Deliver)]


def test_datagram_faults_act_on_the_datagrams_chosen_by_number() -> None:
    # Numbered in each direction from 1, as the sender sent them.
    schedule = datagrams(
        Drop(datagrams=(2, 4), direction="both"),
        Duplicate(datagrams=(3,)),
        TruncateDatagram(0, datagrams=(5,)),
    )
    assert _sent_through(schedule, "downstream", 6) == [b"1", b"3", b"3", b"", b"6"]
    assert _sent_through(schedule, "upstream", 6) == [b"1", b"3", b"5", b"6"]
    assert "dropped datagram 1 byte b'2'" in str(schedule.trace)


def test_datagram_numbers_are_the_senders_whatever_comes_before() -> None:
    # Reorder lets the first three out in another order; Drop still loses the
    # second one sent, and a rate applies to the chosen ones only.
    schedule = datagrams(Reorder(3), Drop(datagrams=(2,)), Drop(0.0, datagrams=(1, 3)))
    assert sorted(_sent_through(schedule, "downstream", 3)) == [b"1", b"3"]


def test_datagram_numbers_count_from_the_start_not_from_the_trigger() -> None:
    schedule = datagrams(Drop(datagrams=(1, 3), trigger=Trigger(pattern=b"2")))
    # The first datagram came before the fault armed (at "2"): it passes.
    assert _sent_through(schedule, "downstream", 4) == [b"1", b"2", b"4"]


@pytest.mark.parametrize(
    ("numbers", "error", "message"),
    [
        ((0,), ValueError, "each number in datagrams must be >= 1, got 0"),
        ((True,), TypeError, "each number in datagrams must be an int, got True"),
        (3, TypeError, "datagrams must be ints >= 1 (a tuple or a range), got 3"),
        ("12", TypeError, "datagrams must be ints >= 1 (a tuple or a range), got '12'"),
    ],
)
def test_datagram_numbers_are_checked(numbers: Any, error: type[Exception], message: str) -> None:
    for fault in (Drop, Duplicate, lambda **kw: TruncateDatagram(1, **kw)):
        with pytest.raises(error, match=re.escape(message)):
            fault(datagrams=numbers)


def test_datagram_numbers_are_kept_sorted_once() -> None:
    assert Drop(datagrams=[3, 1, 3]).datagrams == (1, 3)
    assert repr(Drop(datagrams=range(1, 3))) == "Drop(datagrams=(1, 2))"


def test_duplicate() -> None:
    schedule = datagrams(Duplicate())
    assert schedule.datagram("downstream", b"x", 0) == [
        Deliver(0, "downstream", b"x"),
        Deliver(0, "downstream", b"x"),
    ]


def test_reorder_window_releases_a_permutation() -> None:
    schedule = datagrams(Reorder(4))
    actions: list[Action] = []
    for i in range(4):
        actions += schedule.datagram("downstream", bytes([i]), i)
    out = [a.data for a in actions if isinstance(a, Deliver)]
    assert sorted(out) == [b"\x00", b"\x01", b"\x02", b"\x03"]
    assert Wake(0.05) in actions


@pytest.mark.parametrize("window", [2, 3])
def test_reorder_never_releases_a_group_in_the_order_it_came(window: int) -> None:
    # A uniform shuffle kept a pair in order half the time: a test of reordering
    # then passed without any.
    for seed in range(40):
        schedule = datagrams(Reorder(window), seed=seed)
        actions: list[Action] = []
        for i in range(window):
            actions += schedule.datagram("downstream", bytes([i]), i)
        out = [a.data for a in actions if isinstance(a, Deliver)]
        assert sorted(out) == [bytes([i]) for i in range(window)]
        assert out != sorted(out), seed


def test_reorder_flushes_after_max_hold() -> None:
    schedule = datagrams(Reorder(10, max_hold=0.5))
    assert schedule.datagram("downstream", b"a", 0) == [Wake(0.5)]
    assert schedule.datagram("downstream", b"b", 0.1) == []
    assert schedule.tick(0.4) == []
    released = schedule.tick(0.5)
    assert sorted(a.data for a in released if isinstance(a, Deliver)) == [b"a", b"b"]


def test_reorder_removed_releases_held_datagrams() -> None:
    schedule = datagrams(Reorder(10))
    schedule.datagram("downstream", b"a", 0)
    # Released at the removal, not at the time it arrived.
    assert schedule.update([], 1) == [Deliver(1, "downstream", b"a")]


def test_truncate_datagram() -> None:
    schedule = datagrams(TruncateDatagram(3))
    assert delivered(schedule.datagram("downstream", b"abcdef", 0)) == b"abc"
    assert delivered(schedule.datagram("downstream", b"ab", 0)) == b"ab"


def test_unreachable_reports_to_the_sender() -> None:
    schedule = datagrams(Unreachable())
    assert schedule.datagram("upstream", b"x", 2) == [UnreachableAction(2, "upstream")]
    assert schedule.datagram("downstream", b"y", 2) == [Deliver(2, "downstream", b"y")]


def test_datagram_latency_with_jitter_may_reorder() -> None:
    schedule = datagrams(Latency(0.1, jitter=0.1))
    at = []
    for i in range(50):
        at += times(schedule.datagram("downstream", b"x", i * 0.001))
    assert at != sorted(at)
    assert all(t >= 0 for t in at)


def test_datagram_corrupt_positions_are_per_datagram() -> None:
    schedule = datagrams(Corrupt(positions=(1,)))
    assert delivered(schedule.datagram("downstream", b"\x00\x00", 0)) == b"\x00\xff"
    assert delivered(schedule.datagram("downstream", b"\x00\x00", 0)) == b"\x00\xff"


def test_datagram_bandwidth_serialises() -> None:
    schedule = datagrams(Bandwidth(100))
    # The cap holds each datagram until it is due, and asks for a tick then.
    assert schedule.datagram("downstream", b"x" * 50, 0) == [Wake(0.5)]
    assert schedule.datagram("downstream", b"x" * 50, 0) == []
    assert schedule.tick(0.4) == []
    assert times(schedule.tick(0.5)) == [0.5]
    assert times(schedule.tick(1.0)) == [1.0]


def test_datagram_trigger_pattern_arms_from_the_next_datagram() -> None:
    schedule = datagrams(Drop(trigger=Trigger(pattern=b"STOP")))
    assert delivered(schedule.datagram("downstream", b"a STOP", 0)) == b"a STOP"
    assert schedule.datagram("downstream", b"b", 1) == []


def test_datagram_schedule_rejects_stream_faults() -> None:
    with pytest.raises(ValueError, match="TCP traffic only"):
        datagrams(Truncate(3))


def test_stream_discarded_counts_bytes_that_never_arrive() -> None:
    schedule = stream(Blackhole(trigger=Trigger(after_bytes=2)))
    schedule.data("downstream", b"abcde", 0)
    assert schedule.discarded == {"upstream": 0, "downstream": 3}
    truncated = stream(Truncate(3))
    truncated.data("downstream", b"abcde", 0)
    truncated.data("upstream", b"xy", 0)
    assert truncated.discarded == {"upstream": 2, "downstream": 2}
    stalled = stream(Stall())
    stalled.data("downstream", b"abc", 0)
    assert stalled.discarded == {"upstream": 0, "downstream": 0}


def test_trigger_pattern_at_the_end_of_a_chunk_fires_at_once() -> None:
    schedule = stream(Reset(trigger=Trigger(pattern=b"!")))
    actions = schedule.data("downstream", b"hi!", 0)
    assert actions[0] == Deliver(0, "downstream", b"hi!")
    assert isinstance(actions[1], Abort)


def test_trigger_after_bytes_at_a_chunk_boundary() -> None:
    schedule = stream(Latency(1, trigger=Trigger(after_bytes=3)))
    assert schedule.data("downstream", b"abc", 0) == [Deliver(0, "downstream", b"abc")]
    assert schedule.data("downstream", b"def", 0) == [Deliver(1, "downstream", b"def")]
