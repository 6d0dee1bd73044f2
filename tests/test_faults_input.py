"""Bad input to the fault machinery: seeds, and ``nettest proxy --fault`` specs.

Every public seed is an int in [0, 2**64), checked by one helper, so a seed the
memory pair takes is one the proxy takes too.  `parse_fault` names the fault and
the field of every bad value, and refuses a fraction of a whole number instead of
truncating it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable

import pytest

from nettest._datagrams import memory_datagram_pair
from nettest._faults import (
    Bandwidth,
    CloseAfter,
    Corrupt,
    Drop,
    Duplicate,
    Fault,
    Latency,
    Reorder,
    Reset,
    Slice,
    SlowClose,
    Trigger,
    Truncate,
    TruncateDatagram,
)
from nettest._memory_faults import inject_faults
from nettest._proxy import FaultProxy
from nettest._proxy_cli import _CLI_NAMES, parse_fault
from nettest._seed import check_seed
from nettest._transport_pairs import memory_stream_pair

# -- seeds ------------------------------------------------------------------------------

#: (seed, the exception it raises); None is no "draw one" value anywhere.
BAD_SEEDS = [
    ("abc", TypeError),
    ("7", TypeError),
    (None, TypeError),
    (1.5, TypeError),
    (1.0, TypeError),
    (True, TypeError),
    (-1, ValueError),
    (2**64, ValueError),
]
SEED_ERROR = r"^seed must be (an int )?in \[0, 2\*\*64\), got "


@pytest.mark.parametrize(("seed", "error"), BAD_SEEDS)
def test__check_seed_names_the_parameter_and_the_range(
    seed: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=SEED_ERROR + re.escape(repr(seed))):
        check_seed(seed)
    with pytest.raises(error, match=r"^marker_seed must be"):
        check_seed(seed, "marker_seed")


@pytest.mark.parametrize("seed", [0, 1, 2**64 - 1])
def test__check_seed_returns_seeds_in_range(seed: int) -> None:
    assert check_seed(seed) == seed


@pytest.mark.parametrize(("seed", "error"), BAD_SEEDS)
@pytest.mark.asyncio
async def test_inject_faults_rejects_bad_seeds(seed: object, error: type[Exception]) -> None:
    (_c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
    a, b = memory_datagram_pair(asyncio.DatagramProtocol(), asyncio.DatagramProtocol())
    try:
        for end in (c_writer, a):
            with pytest.raises(error, match=SEED_ERROR):
                inject_faults(end, [Corrupt(rate=0.5)], seed=seed)  # type: ignore[arg-type]
    finally:
        c_writer.close()
        s_writer.close()
        a.close()
        b.close()


@pytest.mark.parametrize(("seed", "error"), BAD_SEEDS)
def test_fault_proxy_rejects_bad_seeds(seed: object, error: type[Exception]) -> None:
    # FaultProxy(seed=1.5) once became seed 1, and seed="abc" failed inside int().
    with pytest.raises(error, match=SEED_ERROR):
        FaultProxy(("127.0.0.1", 9), seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 2**64 - 1])
def test_fault_proxy_keeps_seeds_in_range(seed: int) -> None:
    assert FaultProxy(("127.0.0.1", 9), seed=seed, kind="udp").seed == seed


@pytest.mark.asyncio
async def test_same_seed_corrupts_the_same_bytes_on_both_backends() -> None:
    seed, faults, payload = 2**64 - 1, [Corrupt(rate=0.2)], b"a" * 200

    (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, faults, seed=seed)
    s_writer.write(payload)
    s_writer.write_eof()
    in_memory = await asyncio.wait_for(c_reader.read(), 5)
    c_writer.close()
    s_writer.close()

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        writer.write_eof()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(send, "127.0.0.1", 0)
    async with (
        server,
        FaultProxy(server.sockets[0].getsockname()[:2], faults=faults, seed=seed) as proxy,
    ):
        reader, writer = await asyncio.open_connection(*proxy.address)
        proxied = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
    assert in_memory == proxied != payload


# -- parse_fault: every error names the fault and the field ----------------------------------


def _fault_class(name: str) -> type[Fault]:
    import nettest._faults

    cls: type[Fault] = getattr(nettest._faults, _CLI_NAMES[name])
    return cls


def _own_fields(name: str) -> list[str]:
    common = ("direction", "probability", "trigger")
    return [f.name for f in dataclasses.fields(_fault_class(name)) if f.name not in common]


#: The options every fault takes on the command line (docs/proxy-cli.rst).
OPTIONS = ["direction", "probability", "connection", "after", "pattern"]
EVERY_FIELD = [(name, key) for name in _CLI_NAMES for key in [*_own_fields(name), *OPTIONS]]


@pytest.mark.parametrize(("name", "key"), EVERY_FIELD)
def test_parse_fault_bad_value_of_any_field_names_fault_and_field(name: str, key: str) -> None:
    # "\x" is no number, size, duration, direction, mask or escape sequence.
    with pytest.raises(ValueError, match=rf"^{name}: {key} must be "):
        parse_fault(f"{name},{key}=\\x")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("drop=abc", "drop: rate must be a number in [0, 1] such as 0.1, got 'abc'"),
        # Out of range either way, the fault's own check says so alike.
        ("drop=-0.5", "drop: rate must be in [0, 1], got -0.5"),
        ("latency=1s,probability=-1", "latency: probability must be in [0, 1], got -1.0"),
        ("duplicate=x", "duplicate: rate must be a number in [0, 1] such as 0.1, got 'x'"),
        ("corrupt,rate=nan", "corrupt: rate must be a number in [0, 1] such as 0.1, got 'nan'"),
        (
            "latency=1s,probability=x",
            "latency: probability must be a number in [0, 1] such as 0.1, got 'x'",
        ),
        ("latency=1s,connection=x", "latency: connection must be an int >= 1, got 'x'"),
        ("latency=1s,connection=-1", "latency: connection must be an int >= 1, got '-1'"),
        ("reorder=x", "reorder: window must be an int >= 2, got 'x'"),
        (
            "corrupt,mask=zz",
            "corrupt: mask must be an int in 1..255 such as 255 or 0x0f, got 'zz'",
        ),
        (
            "corrupt,positions=a",
            "corrupt: positions must be byte offsets (ints >= 0) joined by '+' such as 0+4, "
            "got 'a'",
        ),
        (
            "corrupt,positions=0+",
            "corrupt: positions must be byte offsets (ints >= 0) joined by '+' such as 0+4, "
            "got '0+'",
        ),
        (
            "latency=soon",
            "latency: delay must be a finite duration >= 0 such as 100ms or 1.5s, got 'soon'",
        ),
        (
            "latency=-1s",
            "latency: delay must be a finite duration >= 0 such as 100ms or 1.5s, got '-1s'",
        ),
        # Too large for a float is no duration, as "inf" is none.
        (
            "latency=1e400",
            "latency: delay must be a finite duration >= 0 such as 100ms or 1.5s, got '1e400'",
        ),
        (
            "latency=inf",
            "latency: delay must be a finite duration >= 0 such as 100ms or 1.5s, got 'inf'",
        ),
        (
            "bandwidth=-1",
            "bandwidth: bytes_per_second must be a number of bytes > 0 "
            "(a size such as 0.5, 512 or 64k), got '-1'",
        ),
        (
            "latency=1s,pattern=\\x",
            "latency: pattern must be text with backslash escapes such as \\r\\n or \\x00 "
            "(bytes up to \\xff), got '\\\\x'",
        ),
        (
            "latency=1s,pattern=\\u20ac",
            "latency: pattern must be text with backslash escapes such as \\r\\n or \\x00 "
            "(bytes up to \\xff), got '\\\\u20ac'",
        ),
        # Trailing data is no part of a value.
        (
            "truncate=10x",
            "truncate: after_bytes must be a whole number of bytes >= 0 "
            "(a size such as 512, 64k or 1M), got '10x'",
        ),
        (
            "latency=1s2",
            "latency: delay must be a finite duration >= 0 such as 100ms or 1.5s, got '1s2'",
        ),
        # Ranges are the fault's to check; the message says which fault.
        ("slice=0", "slice: size must be >= 1, got 0"),
        ("reorder=1", "reorder: window must be >= 2, got 1"),
        ("latency=1s,connection=0", "latency: connection must be >= 1, got 0"),
        ("corrupt,mask=256", "corrupt: mask must be in 1..255, got 256"),
        ("corrupt,mask=0", "corrupt: mask must be in 1..255, got 0"),
        ("drop=1.5", "drop: rate must be in [0, 1], got 1.5"),
        ("bandwidth=0", "bandwidth: bytes_per_second must be > 0 and finite, got 0"),
        (
            "latency=1s,direction=sideways",
            "latency: direction must be one of upstream, downstream, both, got 'sideways'",
        ),
        ("latency=1s,pattern=", "latency: pattern must not be empty"),
        # The spec itself.
        (
            "latency=1s,colour=red",
            "latency has no field 'colour'; choose from delay, jitter, direction, probability, "
            "connection, after, pattern",
        ),
        ("latency=1s,delay=2s", "latency: delay is given twice"),
        ("latency=1s,after=1,after=2", "latency: after is given twice"),
        (
            "blackhole=5",
            "blackhole takes no value, got '5'; options: direction, probability, connection, "
            "after, pattern",
        ),
    ],
)
def test_parse_fault_error_messages(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_fault(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "latency",
            "latency: delay is required (latency=VALUE, where VALUE is a finite duration >= 0 "
            "such as 100ms or 1.5s)",
        ),
        ("latency=", "latency: delay is required (latency=VALUE, "),
        ("latency,jitter=1ms", "latency: delay is required (latency=VALUE, "),
        ("bandwidth", "bandwidth: bytes_per_second is required (bandwidth=VALUE, "),
        ("slice,delay=1ms", "slice: size is required (slice=VALUE, "),
        ("truncate", "truncate: after_bytes is required (truncate=VALUE, "),
        ("slow_close", "slow_close: delay is required (slow_close=VALUE, "),
        ("close_after", "close_after: seconds is required (close_after=VALUE, "),
        (
            "truncate_datagram",
            "truncate_datagram: max_size is required (truncate_datagram=VALUE, ",
        ),
    ],
)
def test_parse_fault_missing_value_is_a_value_error(spec: str, message: str) -> None:
    # "latency" alone once raised TypeError: Latency.__init__() missing 1 required ...
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        parse_fault(spec)


# -- parse_fault: whole numbers stay whole, fractions stay fractions ---------------------------

WHOLE_BYTES = "must be a whole number of bytes"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("truncate=1.7", f"truncate: after_bytes {WHOLE_BYTES} >= 0"),
        ("truncate=0.1k", f"truncate: after_bytes {WHOLE_BYTES} >= 0"),
        ("slice=2.5", f"slice: size {WHOLE_BYTES} >= 1"),
        ("slice=10,jitter=1.5", f"slice: jitter {WHOLE_BYTES} >= 0"),
        ("reset=1.5", f"reset: after_bytes {WHOLE_BYTES} >= 0"),
        ("reset,after_bytes=0.1k", f"reset: after_bytes {WHOLE_BYTES} >= 0"),
        ("truncate_datagram=1.5", f"truncate_datagram: max_size {WHOLE_BYTES} >= 0"),
        ("latency=1s,after=0.5", f"latency: after {WHOLE_BYTES} >= 0"),
        ("reorder=2.5", "reorder: window must be an int >= 2"),
        ("latency=1s,connection=1.5", "latency: connection must be an int >= 1"),
        ("latency=1s,connection=1.0", "latency: connection must be an int >= 1"),
        ("corrupt,positions=0+1.5", "corrupt: positions must be byte offsets (ints >= 0)"),
        ("drop,datagrams=1+1.5", "drop: datagrams must be datagram numbers (ints >= 1)"),
        ("corrupt,mask=1.5", "corrupt: mask must be an int in 1..255"),
    ],
)
def test_parse_fault_refuses_a_fraction_of_an_int_field(spec: str, message: str) -> None:
    # truncate=1.7 once became Truncate(1), slice=2.5 Slice(2).
    value = spec.rpartition("=")[2]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}.*, got '{re.escape(value)}'$"):
        parse_fault(spec)


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        # Bandwidth(0.5) is a valid fault; bandwidth=0.5 once became 0 and was refused.
        ("bandwidth=0.5", Bandwidth(0.5)),
        ("bandwidth=0.1k", Bandwidth(102.4)),
        ("bandwidth=1.5k", Bandwidth(1536)),
        ("bandwidth=1M", Bandwidth(1024**2)),
        ("truncate=1.5k", Truncate(1536)),
        ("truncate=1KiB", Truncate(1024)),
        ("truncate=1kB", Truncate(1024)),
        ("reset=2k", Reset(after_bytes=2048)),
        ("reset,pattern=\\r\\n\\r\\n", Reset(trigger=Trigger(pattern=b"\r\n\r\n"))),
        ("latency=1.5s,jitter=250us", Latency(1.5, jitter=0.00025)),
        ("latency=1m", Latency(60.0)),
        ("latency=1e-3", Latency(0.001)),
        ("latency=1s,after=1k,connection=2", Latency(1.0, trigger=Trigger(2, after_bytes=1024))),
        ("slow_close=2s", SlowClose(2.0)),
        ("close_after=30s", CloseAfter(30.0)),
        ("drop=.25", Drop(0.25)),
        ("duplicate=0.5,probability=1e-1", Duplicate(0.5, probability=0.1)),
        ("corrupt,positions=0+4", Corrupt(positions=(0, 4))),
        ("corrupt=7,mask=0x0f", Corrupt(positions=(7,), mask=0x0F)),
        ("drop,datagrams=1+3", Drop(datagrams=(1, 3))),
        ("duplicate,datagrams=2", Duplicate(datagrams=(2,))),
        ("truncate_datagram=0,datagrams=5", TruncateDatagram(0, datagrams=(5,))),
        ("latency = 1s , jitter = 5ms", Latency(1.0, jitter=0.005)),
    ],
)
def test_parse_fault_accepts_documented_values(spec: str, fault: Fault) -> None:
    parsed = parse_fault(spec)
    assert parsed == fault
    assert repr(parsed) == repr(fault)


# -- parse_fault: a duration is the float its decimal text names ------------------------------


def test_parse_fault_durations_with_units_are_exact() -> None:
    # latency=9ms once gave Latency(0.009000000000000001), computed as 9 * 0.001.
    for n in range(1, 1001):
        assert parse_fault(f"latency={n}ms") == Latency(n / 1000), n
        assert parse_fault(f"latency={n}us") == Latency(n / 1_000_000), n
        assert parse_fault(f"latency={n}") == Latency(float(n)), n
        assert parse_fault(f"latency={n}s") == Latency(float(n)), n
        assert parse_fault(f"latency={n}m") == Latency(n * 60.0), n


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("latency=1s,jitter={}", lambda d: Latency(1.0, jitter=d)),
        ("slice=1,delay={}", lambda d: Slice(1, delay=d)),
        ("reset,after_seconds={}", lambda d: Reset(after_seconds=d)),
        ("slow_close={}", SlowClose),
        ("close_after={}", CloseAfter),
        ("reorder=2,max_hold={}", lambda d: Reorder(2, max_hold=d)),
    ],
)
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("9ms", 0.009),
        ("13ms", 0.013),
        ("5us", 0.000005),
        ("0.1ms", 0.0001),
        ("1.5e-2ms", 0.000015),
        ("250us", 0.00025),
        ("0.009ms", 0.000009),
        ("0.3", 0.3),
        ("1.5m", 90.0),
        ("0.009m", 0.54),
    ],
)
def test_parse_fault_every_duration_field_is_exact(
    spec: str, fault: Callable[[float], Fault], text: str, seconds: float
) -> None:
    parsed = parse_fault(spec.format(text))
    assert parsed == fault(seconds)
    assert repr(parsed) == repr(fault(seconds))


@pytest.mark.parametrize("faults", [Drop(), 3, None, "drop=0.5", b"drop"])
@pytest.mark.asyncio
async def test_faults_must_be_a_list_and_the_error_says_so(faults: object) -> None:
    # A single fault used to fail with "'Drop' object is not iterable".
    message = "^faults must be a list of faults"
    with pytest.raises(TypeError, match=message):
        FaultProxy(("127.0.0.1", 9), kind="udp", faults=faults)  # type: ignore[arg-type]
    client, _server = memory_datagram_pair(asyncio.DatagramProtocol(), asyncio.DatagramProtocol())
    try:
        with pytest.raises(TypeError, match=message):
            inject_faults(client, faults)  # type: ignore[arg-type]
    finally:
        client.close()
        _server.close()
    if isinstance(faults, Fault):
        with pytest.raises(TypeError, match=r"use \[Drop\(\)\]"):
            FaultProxy(("127.0.0.1", 9), kind="udp", faults=faults)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [0, -1, float("inf")])
def test_bandwidth_names_its_range(rate: float) -> None:
    with pytest.raises(ValueError, match=r"^bytes_per_second must be > 0 and finite, got "):
        Bandwidth(rate)


@pytest.mark.parametrize("spec", [1, None, b"latency=1s", ["latency=1s"]])
def test_parse_fault_refuses_a_spec_that_is_not_a_str(spec: object) -> None:
    # parse_fault(1) once raised AttributeError: 'int' object has no attribute 'split'.
    message = f"^spec must be a str such as 'latency=100ms', got {type(spec).__name__}$"
    with pytest.raises(TypeError, match=message):
        parse_fault(spec)  # type: ignore[arg-type]
