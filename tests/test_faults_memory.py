"""The fault values applied to memory transports, in loop time."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import looptime
import pytest

from nettest._contract_suite import check_transport_case
from nettest._datagrams import memory_datagram_pair
from nettest._faults import (
    Bandwidth,
    Blackhole,
    CloseAfter,
    Corrupt,
    Drop,
    Duplicate,
    Fault,
    HalfClose,
    Latency,
    Refuse,
    Reorder,
    Reset,
    Slice,
    Stall,
    Trigger,
    Truncate,
    Unreachable,
)
from nettest._hygiene import instrument_loop
from nettest._memory_faults import inject_faults
from nettest._transport_pairs import memory_stream_pair, memory_transport_pair


def run_in_loop_time(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run `scenario` on looptime's fast-forwarding loop: sleeps cost no wall time."""
    loop = looptime.new_event_loop()
    instrument_loop(loop)
    try:
        loop.run_until_complete(scenario())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def test_memory_latency_of_ten_seconds_takes_no_wall_time() -> None:
    async def scenario() -> None:
        (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
        faults = inject_faults(c_writer, [Latency(10, direction="both")])
        loop = asyncio.get_running_loop()
        wall, start = time.perf_counter(), loop.time()
        c_writer.write(b"ping\n")
        assert await s_reader.readline() == b"ping\n"
        assert loop.time() - start == pytest.approx(10)
        s_writer.write(b"pong\n")
        assert await c_reader.readline() == b"pong\n"
        assert loop.time() - start == pytest.approx(20)
        # Twenty seconds of loop time, in (far) less than one of wall time.
        assert time.perf_counter() - wall < 1.0
        assert faults.trace.fired == ["Latency(delay=10, direction='both')"]
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


@pytest.mark.asyncio
async def test_memory_truncate_gives_eof(nettest_seed: int) -> None:
    (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [Truncate(3)], seed=nettest_seed)
    s_writer.write(b"abcdef")
    assert await asyncio.wait_for(c_reader.read(), 5) == b"abc"
    c_writer.close()
    s_writer.close()


@pytest.mark.asyncio
async def test_memory_reset_after_bytes() -> None:
    (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [Reset(after_bytes=2)])
    s_writer.write(b"abcdef")
    assert await asyncio.wait_for(c_reader.readexactly(2), 5) == b"ab"
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(c_reader.read(), 5)
    c_writer.close()
    s_writer.close()


@pytest.mark.asyncio
async def test_memory_refuse_resets_at_once() -> None:
    (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [Refuse()])
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(c_reader.read(), 5)
    c_writer.close()
    s_writer.close()


@pytest.mark.asyncio
async def test_memory_slice_fragments_reads() -> None:
    class Recorder(asyncio.Protocol):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.chunks.append(data)

    client, server = Recorder(), Recorder()
    client_transport, server_transport = memory_transport_pair(client, server)
    inject_faults(client_transport, [Slice(2, delay=0.01, direction="upstream")])
    await asyncio.sleep(0)
    client_transport.write(b"abcdefg")
    await asyncio.sleep(0.1)
    assert server.chunks == [b"ab", b"cd", b"ef", b"g"]
    client_transport.close()
    server_transport.close()


class Reads(asyncio.Protocol):
    """Records each read."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)


class SmallBuffer(asyncio.BufferedProtocol):
    """Reads into a 3-byte buffer, and records each read."""

    def __init__(self) -> None:
        self.buffer = bytearray(3)
        self.chunks: list[bytes] = []

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.chunks.append(bytes(self.buffer[:nbytes]))


@pytest.mark.asyncio
@pytest.mark.parametrize("make", [Reads, SmallBuffer])
async def test_memory_slice_with_no_delay_gives_one_piece_per_read(
    make: Callable[[], Reads | SmallBuffer],
) -> None:
    client, server = Reads(), make()
    client_transport, server_transport = memory_transport_pair(client, server)
    inject_faults(client_transport, [Slice(2, direction="both")])
    client_transport.write(b"abcdefg")
    server_transport.write(b"xyz")
    # One loop turn for each piece to be read, and one more.
    for _ in range(6):
        await asyncio.sleep(0)
    assert server.chunks == [b"ab", b"cd", b"ef", b"g"]
    assert client.chunks == [b"xy", b"z"]
    client_transport.close()
    server_transport.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "pieces"),
    [
        # 20 writes of 5 bytes: pieces of 7 across the writes, as a socket's reader
        # (the proxy's) finds the writes of one loop turn joined in its buffer.
        (Slice(7, direction="upstream"), [7] * 14 + [2]),
        # 20 writes of 1000 bytes: no piece of 100 left at the end of each.
        (Slice(300, direction="upstream"), [300] * 66 + [200]),
    ],
    ids=["small", "large"],
)
async def test_memory_slice_cuts_the_stream_not_each_write(
    fault: Slice, pieces: list[int]
) -> None:
    client, server = Reads(), Reads()
    client_transport, server_transport = memory_transport_pair(client, server)
    inject_faults(client_transport, [fault])
    size = 5 if fault.size == 7 else 1000
    for i in range(20):
        client_transport.write(bytes([65 + i]) * size)
    client_transport.write_eof()
    for _ in range(200):
        await asyncio.sleep(0)
    assert [len(chunk) for chunk in server.chunks] == pieces
    assert b"".join(server.chunks) == b"".join(bytes([65 + i]) * size for i in range(20))
    client_transport.close()
    server_transport.close()


@pytest.mark.asyncio
async def test_memory_slice_pieces_are_not_joined_while_the_reader_is_paused() -> None:
    client, server = Reads(), Reads()
    client_transport, server_transport = memory_transport_pair(client, server)
    inject_faults(client_transport, [Slice(1, direction="upstream")])
    server_transport.pause_reading()
    client_transport.write(b"abc")
    client_transport.write_eof()
    await asyncio.sleep(0.01)
    server_transport.resume_reading()
    await asyncio.sleep(0.01)
    assert server.chunks == [b"a", b"b", b"c"]
    client_transport.close()
    server_transport.close()


@pytest.mark.asyncio
async def test_memory_slice_gives_a_stream_reader_one_piece_per_read() -> None:
    (_c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [Slice(1, direction="upstream")])
    c_writer.write(b"GET\r\n")
    c_writer.write_eof()

    async def read_all() -> list[bytes]:
        reads = [await s_reader.read(100)]
        while reads[-1]:
            reads.append(await s_reader.read(100))
        return reads

    # A task that reads again as soon as it has a piece gets one piece per read().
    assert await asyncio.wait_for(read_all(), 5) == [b"G", b"E", b"T", b"\r", b"\n", b""]
    c_writer.close()
    s_writer.close()


@pytest.mark.asyncio
async def test_only_a_faulted_pairs_readers_pay_for_pacing_pieces() -> None:
    # The pacing hooks cost a loop callback per read: a pair without faults keeps
    # asyncio's own StreamReader.
    (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    assert type(c_reader) is type(s_reader) is asyncio.StreamReader
    inject_faults(c_writer, [Slice(2)])
    assert isinstance(c_reader, asyncio.StreamReader)
    assert type(c_reader) is not asyncio.StreamReader
    assert repr(c_reader).startswith("<StreamReader")
    c_writer.close()
    s_writer.close()


async def _read_in_a_task_each(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.ensure_future(reader.read(100))


async def _read_through_wait_for(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(100), 5)


@pytest.mark.asyncio
@pytest.mark.parametrize("read", [_read_in_a_task_each, _read_through_wait_for])
async def test_memory_slice_gives_one_piece_per_read_however_the_read_is_awaited(
    read: Callable[[asyncio.StreamReader], Awaitable[bytes]],
) -> None:
    # A read in a task of its own (wait_for() runs it so before 3.12) comes back
    # turns after the transport handed the piece over: the next waits for it.
    (_c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [Slice(2, direction="upstream")])
    c_writer.write(b"VALUE abc\n")
    c_writer.write_eof()
    reads = [await read(s_reader)]
    while reads[-1]:
        reads.append(await read(s_reader))
    assert reads == [b"VA", b"LU", b"E ", b"ab", b"c\n", b""]
    c_writer.close()
    s_writer.close()


@pytest.mark.asyncio
async def test_memory_slice_feeds_a_read_that_waits_for_more_than_a_piece() -> None:
    # Bytes wait unread in the reader while readexactly() waits for more: the
    # pieces still come, one read of the transport each.
    (_c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [Slice(2, direction="upstream")])
    c_writer.write(b"0123456789")
    assert await asyncio.wait_for(s_reader.readexactly(7), 5) == b"0123456"
    assert await asyncio.wait_for(s_reader.read(100), 5) == b"7"  # the rest of a piece
    assert await asyncio.wait_for(s_reader.read(100), 5) == b"89"
    c_writer.close()
    s_writer.close()


def test_memory_stall_fills_the_sender_until_removed() -> None:
    async def scenario() -> None:
        (_c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair(capacity=1024)
        stall = Stall(direction="upstream")
        faults = inject_faults(c_writer, [stall])
        c_writer.write(b"x" * 200_000)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c_writer.drain(), 5)
        assert c_writer.transport.get_write_buffer_size() > 100_000
        faults.remove(stall)
        c_writer.write_eof()
        data = await asyncio.wait_for(s_reader.read(), 5)
        assert len(data) == 200_000
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


def test_memory_stall_removed_releases_what_the_faults_before_it_let_through() -> None:
    async def scenario() -> None:
        (_c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
        stall = Stall(direction="upstream")
        corrupt = Corrupt(positions=(0,), direction="upstream")
        faults = inject_faults(c_writer, [corrupt, Truncate(3, direction="upstream"), stall])
        c_writer.write(b"hello")
        await asyncio.sleep(1)
        faults.remove(stall)
        # Each fault acted once: one byte flipped, three bytes, then the end.
        assert await asyncio.wait_for(s_reader.read(), 5) == b"\x97el"
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


def test_memory_blackhole_loses_bytes_without_blocking_the_sender() -> None:
    async def scenario() -> None:
        (_c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair(capacity=1024)
        inject_faults(c_writer, [Blackhole(direction="upstream")])
        c_writer.write(b"x" * 100_000)
        await asyncio.wait_for(c_writer.drain(), 5)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(s_reader.read(1), 5)
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


@pytest.mark.asyncio
async def test_memory_half_close_and_corrupt() -> None:
    (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [HalfClose(), Corrupt(positions=(0,), direction="upstream")])
    assert await asyncio.wait_for(c_reader.read(), 5) == b""
    c_writer.write(b"\x00\x01")
    assert await asyncio.wait_for(s_reader.readexactly(2), 5) == b"\xff\x01"
    c_writer.close()
    s_writer.close()


def test_memory_close_after_and_fault_changes() -> None:
    async def scenario() -> None:
        (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
        faults = inject_faults(c_writer)
        latency = Latency(3)
        faults.add(latency)
        loop = asyncio.get_running_loop()
        start = loop.time()
        s_writer.write(b"a")
        assert await c_reader.readexactly(1) == b"a"
        assert loop.time() - start == pytest.approx(3)
        faults.clear()
        faults.add(CloseAfter(60))
        assert await c_reader.read() == b""
        assert loop.time() - start == pytest.approx(63)
        with pytest.raises(ValueError, match="not in force"):
            faults.remove(latency)
        with pytest.raises(ValueError, match="datagram transports only"):
            faults.add(Drop(0.5))
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


@pytest.mark.asyncio
async def test_memory_inject_faults_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="client end of a memory pair"):
        inject_faults(object(), [Latency(1)])


@pytest.mark.asyncio
async def test_memory_inject_faults_twice_on_a_pair_raises_and_keeps_the_first() -> None:
    (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
    first = inject_faults(c_writer, [Corrupt(positions=(0,))])
    # Either end: both are the same pair.  It once took the first one's place, whose
    # faults, add() and trace then did nothing.
    for end in (c_writer, s_writer, c_writer.transport):
        with pytest.raises(RuntimeError, match=r"already has faults injected.* add\(\)"):
            inject_faults(end, [Truncate(0)])
    s_writer.write(b"\x00a")
    assert await asyncio.wait_for(c_reader.readexactly(2), 5) == b"\xffa"
    first.add(Truncate(0))
    assert await asyncio.wait_for(c_reader.read(), 5) == b""
    assert first.trace.fired == ["Corrupt(positions=(0,))", "Truncate(after_bytes=0)"]
    c_writer.close()
    s_writer.close()


# -- datagrams ----------------------------------------------------------------------------


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.append(data)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


def test_memory_datagrams_drop_duplicate_reorder_latency(nettest_seed: int) -> None:
    async def scenario() -> None:
        client, server = _Datagrams(), _Datagrams()
        a, b = memory_datagram_pair(client, server)
        faults = inject_faults(
            a,
            [Drop(trigger=Trigger(pattern=b"drop")), Duplicate(), Latency(5), Reorder(3)],
            seed=nettest_seed,
        )
        await asyncio.sleep(0)
        for data in (b"drop", b"1", b"2"):
            b.sendto(data)
        await asyncio.sleep(10)
        # "drop" armed the fault after itself; 1 and 2 were lost, and "drop" was
        # duplicated, delayed and held by Reorder until max_hold passed.
        assert client.received == [b"drop", b"drop"]
        faults.clear()
        b.sendto(b"3")
        await asyncio.sleep(0.01)
        assert client.received[-1] == b"3"
        a.sendto(b"up")
        await asyncio.sleep(0.01)
        assert server.received == [b"up"]
        a.close()
        b.close()

    run_in_loop_time(scenario)


def test_memory_datagrams_lose_the_chosen_ones(nettest_seed: int) -> None:
    async def scenario() -> None:
        client, server = _Datagrams(), _Datagrams()
        a, b = memory_datagram_pair(client, server)
        # The first two ACKs the server sends are lost; the client's third datagram too.
        inject_faults(a, [Drop(datagrams=(1, 2)), Drop(datagrams=(3,), direction="upstream")])
        await asyncio.sleep(0)
        for number in range(1, 5):
            b.sendto(b"ack %d" % number)
            a.sendto(b"data %d" % number)
        await asyncio.sleep(0.01)
        assert client.received == [b"ack 3", b"ack 4"]
        assert server.received == [b"data 1", b"data 2", b"data 4"]
        a.close()
        b.close()

    run_in_loop_time(scenario)


@pytest.mark.asyncio
async def test_memory_inject_faults_twice_on_a_datagram_pair_raises_and_keeps_the_first() -> None:
    client, server = _Datagrams(), _Datagrams()
    a, b = memory_datagram_pair(client, server)
    first = inject_faults(a, [Blackhole()])
    for end in (a, b):
        with pytest.raises(RuntimeError, match="already has faults injected"):
            inject_faults(end, [Duplicate()])
    await asyncio.sleep(0)
    b.sendto(b"lost")
    await asyncio.sleep(0.01)
    assert client.received == []
    first.clear()
    b.sendto(b"once")
    await asyncio.sleep(0.01)
    assert client.received == [b"once"]
    a.close()
    b.close()


@pytest.mark.asyncio
async def test_memory_datagram_unreachable_reaches_error_received() -> None:
    client, server = _Datagrams(), _Datagrams()
    a, b = memory_datagram_pair(client, server)
    inject_faults(a, [Unreachable()])
    await asyncio.sleep(0)
    a.sendto(b"hello?")
    await asyncio.sleep(0.01)
    assert server.received == []
    assert len(client.errors) == 1
    assert isinstance(client.errors[0], ConnectionRefusedError)
    a.close()
    b.close()


async def _reset_or_not(faults: list[Reset], seed: int, connection: int) -> str:
    """Send a line through a pair numbered `connection`; say whether the client saw a reset."""
    (c_reader, c_writer), (_, s_writer) = memory_stream_pair()
    layer = inject_faults(c_writer, faults, seed=seed, connection=connection)
    assert str(layer.trace).startswith(f"memory pair: tcp connection #{connection} from ")
    s_writer.write(b"line\n")
    try:
        await asyncio.wait_for(c_reader.readline(), 5)
        outcome = "ok"
    except ConnectionResetError:
        outcome = "reset"
    c_writer.close()
    s_writer.close()
    return outcome


@pytest.mark.asyncio
async def test_memory_pairs_numbered_meet_the_faults_as_connections() -> None:
    nth = [Reset(trigger=Trigger(connection=2))]
    assert [await _reset_or_not(nth, 7, i) for i in (1, 2, 3)] == ["ok", "reset", "ok"]
    # Each connection draws its own: a coin per connection, not one for all.
    coin = [Reset(probability=0.5)]
    outcomes = [await _reset_or_not(coin, 7, i) for i in range(1, 21)]
    assert set(outcomes) == {"ok", "reset"}
    assert outcomes == [await _reset_or_not(coin, 7, i) for i in range(1, 21)]
    assert await _reset_or_not(nth, 7, 1) == "ok"  # 1 unless told otherwise
    (_, c_writer), (_, s_writer) = memory_stream_pair()
    with pytest.raises(ValueError, match="connection must be >= 1, got 0"):
        inject_faults(c_writer, nth, connection=0)
    with pytest.raises(TypeError, match="connection must be an int >= 1, got '2'"):
        inject_faults(c_writer, nth, connection="2")  # type: ignore[arg-type]
    c_writer.close()
    s_writer.close()


@pytest.mark.asyncio
async def test_memory_same_seed_same_faults() -> None:
    async def run(seed: int) -> list[bytes]:
        client, server = _Datagrams(), _Datagrams()
        a, b = memory_datagram_pair(client, server)
        inject_faults(a, [Drop(0.3), Corrupt(rate=0.05)], seed=seed)
        await asyncio.sleep(0)
        for i in range(100):
            b.sendto(bytes([i]) * 8)
        # One datagram a loop turn: counted in turns, not in wall time, which a
        # loaded machine stretches.
        for _ in range(400):
            await asyncio.sleep(0)
        a.close()
        b.close()
        return client.received

    assert await run(5) == await run(5)
    assert await run(5) != await run(6)


def test_memory_fault_traces_are_in_the_failure_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from nettest import inject_faults, memory_stream_pair
        from nettest.faults import Truncate

        @pytest.mark.asyncio
        async def test_reads_too_little(nettest_seed):
            (reader, writer), (s_reader, s_writer) = memory_stream_pair()
            inject_faults(writer, [Truncate(3)], seed=nettest_seed)
            s_writer.write(b"hello")  # downstream: to the client
            try:
                assert await reader.read() == b"hello"
            finally:
                for w in (writer, s_writer):
                    w.close()

        @pytest.mark.asyncio
        async def test_passes():
            (reader, writer), (s_reader, s_writer) = memory_stream_pair()
            inject_faults(writer, [Truncate(3)])
            for w in (writer, s_writer):
                w.close()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--nettest-seed=7")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- nettest memory faults -*",
            "<MemoryFaults stream [[]Truncate(after_bytes=3)[]]> seed=*",
            "*Truncate(after_bytes=3)*",
        ]
    )
    assert result.stdout.str().count("<MemoryFaults") == 1  # the failed test's alone


def test_the_failure_report_shows_the_last_memory_fault_layers_only(
    pytester: pytest.Pytester,
) -> None:
    # A property test makes a layer per example; the report shows the last ones,
    # nearest the failure, and says how many came before.
    pytester.makepyfile(
        """
        import pytest
        from nettest import inject_faults, memory_stream_pair
        from nettest.faults import Latency

        @pytest.mark.asyncio
        async def test_many_pairs():
            for i in range(25):
                (reader, writer), (s_reader, s_writer) = memory_stream_pair()
                inject_faults(writer, [Latency(i)])
                for w in (writer, s_writer):
                    w.close()
            assert False
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- nettest memory faults -*",
            "... 15 earlier fault layers not shown (the last 10 are below)",
            "<MemoryFaults stream [[]Latency(delay=15*",
        ]
    )
    out = result.stdout.str()
    assert out.count("<MemoryFaults") == 10
    assert "Latency(delay=24" in out
    assert "Latency(delay=14" not in out


def test_a_property_test_s_report_shows_the_failing_example_s_layers_alone(
    pytester: pytest.Pytester,
) -> None:
    # The layers of the examples hypothesis tried while it shrank come before the
    # failing example's in the test's list: the report leaves them out.  The
    # failing example makes two layers, both shown.
    pytester.makepyfile(
        """
        import pytest
        from hypothesis import given, settings, strategies as st
        from nettest import inject_faults, memory_stream_pair
        from nettest.faults import Latency

        @settings(max_examples=100, database=None, deadline=None)
        @given(st.integers(0, 1000))
        @pytest.mark.asyncio
        async def test_small_numbers(n):
            for i in range(2):
                (reader, writer), (s_reader, s_writer) = memory_stream_pair()
                inject_faults(writer, [Latency(n + i / 10)])
                for w in (writer, s_writer):
                    w.close()
            assert n < 500
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- nettest memory faults -*",
            "... * earlier fault layers not shown (the failing example's are below)",
            "",
            "<MemoryFaults stream [[]Latency(delay=500.0)[]]> seed=*",
        ]
    )
    out = result.stdout.str()
    assert out.count("<MemoryFaults") == 2
    assert "<MemoryFaults stream [Latency(delay=500.1)]>" in out


def test_a_property_test_s_report_heads_each_failing_example_s_layers(
    pytester: pytest.Pytester,
) -> None:
    # Two distinct failures: hypothesis runs each failing example once more to
    # report it, and numbers them in that order; each one's layers are under a
    # heading, in the same order.
    pytester.makepyfile(
        """
        import pytest
        from hypothesis import given, settings, strategies as st
        from nettest import inject_faults, memory_stream_pair
        from nettest.faults import Latency

        @settings(max_examples=300, database=None, deadline=None, derandomize=True)
        @given(st.integers(0, 1000))
        @pytest.mark.asyncio
        async def test_two_bugs(n):
            (reader, writer), (s_reader, s_writer) = memory_stream_pair()
            inject_faults(writer, [Latency(n)])
            for w in (writer, s_writer):
                w.close()
            if n >= 500:
                raise ValueError(n)
            if n >= 100:
                raise KeyError(n)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    section = out[out.index("- nettest memory faults -") :]
    headings = [line for line in section.splitlines() if line.endswith("injected faults:")]
    assert headings == [
        "the first failing example that injected faults:",
        "the second failing example that injected faults:",
    ], section
    first, second = section.split(headings[1])
    # The failures as hypothesis reports them, numbered in the same order.
    groups = out[: out.index("- nettest memory faults -")].split("+---------------- 2 -")
    assert len(groups) == 2, out
    for layers, report in zip((first, second), groups, strict=True):
        n = 100 if "n=100," in report.split("+---------------- 1 -")[-1] else 500
        assert f"Latency(delay={n})" in layers, (layers, report)
        assert layers.count("<MemoryFaults") == 1
    assert (
        "(below, the layers of the 2 failing examples that injected faults, each under a "
        "heading, in the order hypothesis reports its failures)"
    ) in out


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is new in 3.11")
@pytest.mark.asyncio
async def test_memory_slice_over_tls_lets_the_close_through_to_a_reader_with_unread_bytes(
    tls_server_context: ssl.SSLContext, tls_client_context: ssl.SSLContext
) -> None:
    # The pieces are TLS records once start_tls() runs: held back for the plaintext
    # the client had not read, the server's close_notify was too, and the client's
    # wait_closed() took asyncio's 30-second shutdown timeout.
    (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [Slice(200, direction="both")])

    async def serve() -> None:
        await s_writer.start_tls(tls_server_context)  # type: ignore[attr-defined,unused-ignore]
        s_writer.write(b"R" * 3000)
        await s_writer.drain()
        await s_reader.read()  # until the client's close_notify
        s_writer.close()

    server = asyncio.create_task(serve())
    await c_writer.start_tls(  # type: ignore[attr-defined,unused-ignore]
        tls_client_context, server_hostname="localhost"
    )
    assert await asyncio.wait_for(c_reader.read(10), 5)
    c_writer.close()
    await asyncio.wait_for(c_writer.wait_closed(), 5)
    await asyncio.wait_for(server, 5)


class _Recorder(asyncio.Protocol):
    """Records what arrives, and when, in loop time."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.events: list[tuple[float, str, object]] = []
        self.lost: asyncio.Future[Exception | None] = self.loop.create_future()

    def data_received(self, data: bytes) -> None:
        self.events.append((self.loop.time(), "data", data))

    def eof_received(self) -> bool:
        self.events.append((self.loop.time(), "eof", None))
        return True  # half-closed: the transport stays open

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append((self.loop.time(), "lost", type(exc)))
        self.lost.set_result(exc)

    def data(self) -> bytes:
        return b"".join(data for _, kind, data in self.events if kind == "data")  # type: ignore[misc]


@pytest.mark.parametrize(
    "faults",
    [[Slice(3)], [Slice(3, delay=0.001)], [Latency(0.2)], [Bandwidth(20)]],
    ids=repr,
)
def test_memory_peer_reset_follows_the_bytes_faults_hold(faults: list[Fault]) -> None:
    # A server that closes with bytes unread sends an RST, which travels behind
    # what it sent before: the faults that hold those bytes hold the RST too, as
    # the proxy does.  The RST used to reach the client at once and discard them.
    async def scenario() -> None:
        client, server = _Recorder(), _Recorder()
        client_end, server_end = memory_transport_pair(client, server)
        handle = inject_faults(client_end, faults)
        await asyncio.sleep(0)
        client_end.pause_reading()  # reads later, once everything has arrived
        server_end.pause_reading()  # never reads what the client sends
        client_end.write(b"never read")
        server_end.write(b"response")
        await asyncio.sleep(0.05)
        server_end.close()  # bytes unread: an RST
        await asyncio.sleep(1)
        client_end.resume_reading()
        assert isinstance(await client.lost, ConnectionResetError)
        assert client.data() == b"response"
        assert "reset downstream: server reset" in str(handle.trace)
        await server.lost

    run_in_loop_time(scenario)


def test_memory_peer_reset_arrives_when_the_latency_lets_it() -> None:
    async def scenario() -> None:
        client, server = _Recorder(), _Recorder()
        client_end, server_end = memory_transport_pair(client, server)
        inject_faults(client_end, [Latency(1)])
        await asyncio.sleep(0)
        start = asyncio.get_running_loop().time()
        server_end.pause_reading()
        client_end.write(b"request")
        await asyncio.sleep(0.1)
        server_end.write(b"response")
        server_end.close()
        assert isinstance(await client.lost, ConnectionResetError)
        assert [(round(at - start, 3), kind) for at, kind, _ in client.events] == [
            (1.1, "data"),
            (1.1, "lost"),
        ]
        assert client.data() == b"response"
        await server.lost

    run_in_loop_time(scenario)


@pytest.mark.parametrize(
    "faults",
    [
        [Latency(1, direction="both"), Truncate(5, direction="upstream")],
        [Truncate(5, direction="upstream"), Latency(1, direction="both")],
    ],
    ids=["latency-then-truncate", "truncate-then-latency"],
)
def test_memory_peer_reset_queues_behind_a_fault_s_close_on_its_way(faults: list[Fault]) -> None:
    # The Truncate has fired, and its close waits behind the latency: a reset sent
    # meanwhile follows the bytes the latency holds, rather than overtake them.
    async def scenario() -> None:
        client, server = _Recorder(), _Recorder()
        client_end, server_end = memory_transport_pair(client, server)
        handle = inject_faults(client_end, faults)
        await asyncio.sleep(0)
        server_end.pause_reading()
        server_end.write(b"response")
        client_end.write(b"0123456789")
        await asyncio.sleep(0.1)
        server_end.close()  # bytes unread: an RST
        await asyncio.sleep(3)
        assert client.data() == b"response"
        assert "reset downstream: server reset" in str(handle.trace)
        client_end.abort()
        await asyncio.sleep(0)

    run_in_loop_time(scenario)


def test_memory_close_with_bytes_still_on_their_way_sends_a_fin_then_a_reset() -> None:
    # A kernel counts as unread only what reached its receive queue: an end that
    # closes while a fault still holds bytes for it sends a FIN, and answers the
    # bytes with an RST when they reach it, as through the proxy.  The memory
    # pair used to reset the peer at once.
    async def scenario() -> None:
        client, server = _Recorder(), _Recorder()
        client_end, server_end = memory_transport_pair(client, server)
        handle = inject_faults(client_end, [Latency(0.5, direction="downstream")])
        await asyncio.sleep(0)
        start = asyncio.get_running_loop().time()
        server_end.write(b"reply")  # held on its way for 0.5 s
        await asyncio.sleep(0.1)
        client_end.close()  # nothing has arrived: nothing unread
        await client.lost
        await asyncio.sleep(1)
        assert [(round(at - start, 3), kind) for at, kind, _ in server.events] == [(0.1, "eof")]
        assert client.data() == b""
        trace = str(handle.trace)
        assert "reset upstream: client reset" in trace  # when the reply reached it
        # After EOF asyncio reads no more, so the RST shows at the next write.
        server_end.write(b"more")
        assert isinstance(await server.lost, BrokenPipeError)

    run_in_loop_time(scenario)


def test_memory_reset_for_bytes_sent_to_a_closed_end_follows_its_fin() -> None:
    # Bytes that reach an end after it closed are answered with an RST, which
    # takes the same way as the FIN and the bytes the end sent before it.
    async def scenario() -> None:
        client, server = _Recorder(), _Recorder()
        client_end, server_end = memory_transport_pair(client, server)
        inject_faults(client_end, [Latency(1)])
        await asyncio.sleep(0)
        server_end.write(b"goodbye")
        server_end.close()  # nothing unread: a FIN, held by the latency
        await server.lost
        client_end.write(b"late")  # reaches the closed server at once: an RST back
        await asyncio.sleep(2)
        assert [kind for _, kind, _ in client.events] == ["data", "eof"]
        assert client.data() == b"goodbye"
        # After EOF asyncio reads no more, so the RST shows at the next write.
        client_end.write(b"later")
        assert isinstance(await client.lost, BrokenPipeError)  # reset after the FIN

    run_in_loop_time(scenario)


@pytest.mark.asyncio
@pytest.mark.parametrize("faults", [[Slice(3)], [Latency(0.05)]], ids=repr)
async def test_memory_faulted_pair_keeps_data_at_a_peer_reset(faults: list[Fault]) -> None:
    @contextlib.asynccontextmanager
    async def make_pair(
        client_factory: Callable[[], asyncio.BaseProtocol],
        server_factory: Callable[[], asyncio.BaseProtocol],
    ) -> AsyncIterator[None]:
        client_end, _ = memory_transport_pair(client_factory(), server_factory())
        inject_faults(client_end, faults)
        yield

    await check_transport_case(make_pair, "peer_reset_keeps_received_data", timeout=5)
