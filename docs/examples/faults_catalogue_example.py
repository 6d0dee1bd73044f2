"""One test per fault in the catalogue: what the client sees, on memory pairs and the proxy."""

import asyncio

import looptime
import pytest
import pytest_asyncio

from nettest import faults, handlers, inject_faults, memory_datagram_pair, memory_stream_pair


def run_in_loop_time(scenario):
    """Run `scenario()` on looptime's fast-forwarding loop: its waits cost no wall time."""
    loop = looptime.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


# -- TCP on a memory stream: timing faults, in loop time ----------------------------------


def test_bandwidth_makes_a_download_slow():
    async def scenario():
        (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
        inject_faults(c_writer, [faults.Bandwidth(1000)])  # 1000 bytes a second
        loop = asyncio.get_running_loop()
        start = loop.time()
        s_writer.write(b"x" * 5000)
        s_writer.write_eof()
        assert len(await c_reader.read()) == 5000
        assert loop.time() - start == pytest.approx(5, abs=0.01)
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


def test_slow_close_delays_the_eof_not_the_bytes():
    async def scenario():
        (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
        inject_faults(c_writer, [faults.SlowClose(2)])
        loop = asyncio.get_running_loop()
        start = loop.time()
        s_writer.write(b"bye\n")
        s_writer.write_eof()
        assert await c_reader.readline() == b"bye\n"
        assert loop.time() - start == pytest.approx(0, abs=0.01)
        assert await asyncio.wait_for(c_reader.read(), 60) == b""  # the EOF, 2 s late
        assert loop.time() - start == pytest.approx(2, abs=0.01)
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


def test_close_after_ends_a_long_poll():
    async def scenario():
        (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
        inject_faults(c_writer, [faults.CloseAfter(30)])
        loop = asyncio.get_running_loop()
        start = loop.time()
        s_writer.write(b"event 1\n")  # then the server goes quiet, for ever
        assert await c_reader.readline() == b"event 1\n"
        assert await asyncio.wait_for(c_reader.readline(), 60) == b""  # EOF at 30 s
        assert loop.time() - start == pytest.approx(30, abs=0.01)
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


@pytest.mark.parametrize(
    ("fault", "after_clear"),
    [
        (faults.Blackhole(), b"second\n"),  # lost: the first line never comes
        (faults.Stall(), b"first\n"),  # held: the first line comes late
    ],
)
def test_a_silent_link_until_the_fault_is_removed(fault, after_clear):
    async def scenario():
        (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
        in_force = inject_faults(c_writer, [fault])
        s_writer.write(b"first\n")
        with pytest.raises(asyncio.TimeoutError):  # no EOF, no error: the client's timeout
            await asyncio.wait_for(c_reader.readline(), 10)
        in_force.clear()
        s_writer.write(b"second\n")
        assert await c_reader.readline() == after_clear
        c_writer.close()
        s_writer.close()

    run_in_loop_time(scenario)


# -- TCP on a memory stream: what the bytes look like -------------------------------------


@pytest.mark.asyncio
async def test_slice_splits_every_read():
    (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [faults.Slice(2)])
    s_writer.write(b"OK\r\n\r\n")
    s_writer.write_eof()

    async def read_until_eof():
        reads = [await c_reader.read(100)]
        while reads[-1]:
            reads.append(await c_reader.read(100))
        return reads

    # A parser that expects the whole "\r\n\r\n" in one read() breaks here.
    assert await asyncio.wait_for(read_until_eof(), 5) == [b"OK", b"\r\n", b"\r\n", b""]
    c_writer.close()
    s_writer.close()


@pytest.mark.asyncio
async def test_corrupt_flips_the_bytes_a_checksum_guards():
    (c_reader, c_writer), (_s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [faults.Corrupt(positions=(1,))])  # XOR 0xFF at offset 1
    s_writer.write(b"\x02\x10\x20")
    length, *payload = await c_reader.readexactly(3)
    assert (length, payload) == (2, [0xEF, 0x20])  # 0x10 ^ 0xFF
    c_writer.close()
    s_writer.close()


@pytest.mark.asyncio
async def test_half_close_ends_one_direction_only():
    (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [faults.HalfClose()])  # downstream: the client reads EOF
    assert await asyncio.wait_for(c_reader.read(), 5) == b""
    c_writer.write(b"still here\n")  # but the client may still send
    assert await s_reader.readline() == b"still here\n"
    c_writer.close()
    s_writer.close()


# -- UDP on a memory datagram pair -------------------------------------------------------


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.replies = asyncio.Queue()
        self.errors = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.replies.put_nowait(data)

    def error_received(self, exc):
        self.errors.put_nowait(exc)


def test_reorder_shuffles_datagrams(nettest_seed):
    async def scenario():
        client = Client()
        c_end, s_end = memory_datagram_pair(client, asyncio.DatagramProtocol())
        inject_faults(c_end, [faults.Reorder(4)], seed=nettest_seed)
        await asyncio.sleep(0)  # connection_made
        sent = [b"%d" % n for n in range(20)]
        for data in sent:
            s_end.sendto(data)
        received = [await client.replies.get() for _ in sent]
        # Each group of 4 in a seeded order: all five in order is a 1 in 24**5 chance.
        assert sorted(received) == sorted(sent)
        assert received != sent
        c_end.close()
        s_end.close()

    run_in_loop_time(scenario)


# -- Through the fault proxy, in front of a real server -----------------------------------


async def fetch(address, request):
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        writer.write_eof()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_refuse_resets_the_first_attempt_only(fault_proxy, tcp_server):
    server = await tcp_server(handlers.echo)
    refuse_first = faults.Refuse(trigger=faults.Trigger(connection=1))
    proxy = await fault_proxy(upstream=server, faults=[refuse_first])
    with pytest.raises(ConnectionResetError):
        await fetch(proxy.address, b"ping")
    assert await fetch(proxy.address, b"ping") == b"ping"  # the retry gets through
    assert proxy.traces[0].fired == [repr(refuse_first)]


@pytest_asyncio.fixture
async def udp_client():
    """Open a connected UDP client to an address; closed after the test."""
    transports = []

    async def connect(address):
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_datagram_endpoint(Client, remote_addr=address)
        transports.append(transport)
        return transport, client

    yield connect
    for transport in transports:
        transport.close()


@pytest.mark.asyncio
async def test_truncate_datagram_cuts_a_big_reply(fault_proxy, udp_server, udp_client):
    server = await udp_server(handlers.echo)
    proxy = await fault_proxy(upstream=server, kind="udp", faults=[faults.TruncateDatagram(512)])
    transport, client = await udp_client(proxy.address)
    transport.sendto(b"x" * 1200)
    assert len(await asyncio.wait_for(client.replies.get(), 5)) == 512


@pytest.mark.asyncio
async def test_unreachable_closes_the_port_while_in_force(fault_proxy, udp_server, udp_client):
    server = await udp_server(handlers.echo)
    unreachable = faults.Unreachable()
    proxy = await fault_proxy(upstream=server, kind="udp", faults=[unreachable])
    transport, client = await udp_client(proxy.address)
    transport.sendto(b"ping")  # the kernel answers with ICMP "port unreachable"
    assert isinstance(await asyncio.wait_for(client.errors.get(), 5), ConnectionRefusedError)
    proxy.remove(unreachable)  # the port is open again when remove() returns
    transport.sendto(b"ping")
    assert await asyncio.wait_for(client.replies.get(), 5) == b"ping"


# -- Faults from the command-line syntax -------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("latency=100ms,jitter=10ms", faults.Latency(0.1, jitter=0.01)),
        ("bandwidth=64k", faults.Bandwidth(64 * 1024)),
        ("refuse,connection=1", faults.Refuse(trigger=faults.Trigger(connection=1))),
    ],
)
def test_parse_fault_reads_a_nettest_proxy_spec(spec, fault):
    # Handy for faults chosen outside the test, e.g. from an environment variable.
    assert faults.parse_fault(spec) == fault
