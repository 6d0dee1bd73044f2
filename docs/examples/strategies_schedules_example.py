"""A stream-based client under pauses, delays, EOF and resets: schedules and feed_async."""

import asyncio

from hypothesis import given, settings

from nettest import strategies as nst

RESPONSE = b"+OK hello\r\n+OK world\r\n"


async def read_replies(reader):
    """Reads replies until EOF; a lost connection ends the list early."""
    replies = []
    try:
        while line := await reader.readline():
            if not line.endswith(b"\r\n"):
                break  # EOF in the middle of a reply
            replies.append(line[:-2])
    except ConnectionResetError:
        pass
    return replies


async def deliver(schedule):
    reader = asyncio.StreamReader()
    consumer = asyncio.ensure_future(read_replies(reader))
    await nst.feed_async(reader, schedule)
    return await consumer


@settings(max_examples=50)
@given(nst.schedules(RESPONSE, errors=[ConnectionResetError], early_eof=True))
def test_replies_arrive_whole_or_not_at_all(schedule):
    replies = asyncio.run(deliver(schedule))
    assert replies == [b"+OK hello", b"+OK world"][: len(replies)]
    if schedule[-1] == nst.Eof():
        # early_eof=True: the EOF may come before the last byte.  Every reply
        # sent whole has arrived, and a reply cut short is dropped.
        sent = b"".join(event.data for event in schedule if isinstance(event, nst.Chunk))
        assert len(replies) == sent.count(b"\r\n")


def test_an_eof_in_the_middle_of_a_reply():
    assert asyncio.run(deliver([b"+OK hello\r\n+OK wo", nst.Eof()])) == [b"+OK hello"]


def test_a_hand_written_schedule():
    schedule = [
        b"+OK hel",
        nst.PauseReading(),  # these two reads are held back...
        b"lo\r\n+OK",
        b" world\r\n",
        nst.ResumeReading(),  # ...and arrive as one
        nst.Delay(0.01),
        nst.Eof(),
    ]
    assert asyncio.run(deliver(schedule)) == [b"+OK hello", b"+OK world"]
