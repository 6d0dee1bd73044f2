"""The same fault values on memory transports: a 30-second timeout tested in no time."""

import asyncio

import looptime
import pytest

from nettest import faults, inject_faults, memory_stream_pair


async def request(reader, writer, line, *, timeout):
    """The code under test: send a line, wait at most `timeout` seconds for the answer."""
    writer.write(line)
    return await asyncio.wait_for(reader.readline(), timeout)


async def answer_one(reader, writer):
    writer.write((await reader.readline()).upper())


@pytest.mark.asyncio
async def test_a_reset_after_the_request(nettest_seed):
    (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
    inject_faults(c_writer, [faults.Reset(after_bytes=3)], seed=nettest_seed)
    asyncio.get_running_loop().create_task(answer_one(s_reader, s_writer))
    with pytest.raises(ConnectionResetError):
        await request(c_reader, c_writer, b"hello\n", timeout=5)
    c_writer.close()
    s_writer.close()


def test_slow_answers_time_out_in_loop_time():
    async def scenario():
        (c_reader, c_writer), (s_reader, s_writer) = memory_stream_pair()
        inject_faults(c_writer, [faults.Latency(20)])  # 20 s for every answer
        asyncio.get_running_loop().create_task(answer_one(s_reader, s_writer))
        with pytest.raises(asyncio.TimeoutError):
            await request(c_reader, c_writer, b"hello\n", timeout=10)
        c_writer.close()
        s_writer.close()

    # looptime's loop fast-forwards through the waits: this takes milliseconds.
    # (With looptime's pytest plugin enabled, @pytest.mark.looptime does the same.)
    loop = looptime.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
