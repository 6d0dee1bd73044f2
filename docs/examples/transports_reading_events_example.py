"""A consumer that stops reading: the reading timeline says when, and what waits."""

import asyncio

import pytest

from nettest import memory_stream_pair


async def consume(reader, handle):
    """The code under test: read records and hand each to a handler."""
    while line := await reader.readline():
        await handle(line)


@pytest.mark.asyncio
async def test_a_stuck_handler_stops_reading_and_the_sender_waits():
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair(capacity=4096, limit=4096)
    release = asyncio.Event()

    async def stuck_handler(line):
        await release.wait()  # a handler blocked on something else

    consuming = asyncio.ensure_future(consume(s_reader, stuck_handler))
    c_writer.write(b"record\n" * 20_000)
    await asyncio.sleep(0.01)

    # The reader's buffer filled, the StreamReader paused its transport, the
    # bytes in flight filled up, and now the sender's drain() blocks.
    server, client = s_writer.transport, c_writer.transport
    server.assert_reading_paused()
    client.assert_writing_paused()
    (pause,) = server.reading_events
    assert pause.kind == "pause"

    release.set()  # the handler lets go: reading resumes, and the sender drains
    await asyncio.wait_for(c_writer.drain(), 5)
    server.assert_reading_not_paused()
    assert [e.kind for e in server.reading_events][:2] == ["pause", "resume"]

    c_writer.close()
    await asyncio.wait_for(consuming, 5)
    s_writer.close()
    for writer in (c_writer, s_writer):
        await writer.wait_closed()
