"""A backpressure test with memory_stream_pair: drain() blocks until the peer reads."""

import asyncio

import pytest

from nettest import memory_stream_pair


async def send_all(writer, data, chunk=16 * 1024):
    """The code under test: write in chunks and respect backpressure."""
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])
        await writer.drain()


@pytest.mark.asyncio
async def test_the_sender_waits_for_a_slow_reader():
    # 16 KiB in flight per direction and a small reader buffer: easy to fill.
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair(capacity=16 * 1024, limit=4096)
    payload = bytes(range(256)) * 4096  # 1 MiB
    sending = asyncio.ensure_future(send_all(c_writer, payload))
    await asyncio.sleep(0.01)
    assert not sending.done()  # nobody reads: the sender is blocked in drain()
    transport = c_writer.transport
    transport.assert_writing_paused()
    # The buffer never grew past the high-water mark plus one chunk.
    low, high = transport.get_write_buffer_limits()
    transport.assert_write_buffer_at_most(high + 16 * 1024)

    assert await s_reader.readexactly(len(payload)) == payload
    await sending
    kinds = [event.kind for event in transport.flow_events]
    assert kinds[:2] == ["pause", "resume"]
    assert all(e.buffer_size > high for e in transport.flow_events if e.kind == "pause")
    assert all(e.buffer_size <= low for e in transport.flow_events if e.kind == "resume")

    for writer in (c_writer, s_writer):
        writer.close()
        await writer.wait_closed()
