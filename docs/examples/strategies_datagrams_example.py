"""A datagram receiver under loss, duplication, reordering and truncation, and a timeout."""

import asyncio

from hypothesis import given

from nettest import strategies as nst


class SequencedReceiver(asyncio.DatagramProtocol):
    """Keeps the payload of each 4-byte-sequenced datagram once, ignoring runts."""

    def __init__(self):
        self.payloads = {}

    def datagram_received(self, data, addr):
        if len(data) < 4:
            return
        self.payloads.setdefault(int.from_bytes(data[:4], "big"), data[4:])


SENT = [n.to_bytes(4, "big") + b"payload %d" % n for n in range(5)]


@given(nst.datagram_schedules(SENT))
def test_receiver_keeps_each_sequence_number_once(arrivals):
    receiver = SequencedReceiver()
    nst.feed(receiver, arrivals, addr=("192.0.2.1", 5353))
    for number, payload in receiver.payloads.items():
        assert SENT[number][4:].startswith(payload)
    intact = {a.index for a in arrivals if a.data == SENT[a.index]}
    assert intact <= set(receiver.payloads)


class OneAnswer(asyncio.DatagramProtocol):
    """Waits `timeout` seconds for the first answer; an ICMP error ends the wait at once."""

    def __init__(self, timeout):
        self.answer = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(timeout, self._give_up)

    def datagram_received(self, data, addr):
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc):
        if not self.answer.done():
            self.answer.set_exception(exc)

    def _give_up(self):
        if not self.answer.done():
            self.answer.set_exception(TimeoutError())


ANSWERS = nst.datagram_schedules(
    [b"answer"], duplication=False, delays=True, max_delay=0.02, errors=[ConnectionRefusedError]
)


@given(ANSWERS)
def test_the_first_answer_an_error_or_the_timeout(events):
    async def wait():
        client = OneAnswer(timeout=0.01)
        await nst.feed_async(client, events, addr=("192.0.2.1", 53))
        try:
            return await asyncio.wait_for(client.answer, 1)
        except (TimeoutError, ConnectionRefusedError) as error:
            return type(error)

    outcome = asyncio.run(wait())
    first = next((e for e in events if not isinstance(e, nst.Delay)), None)
    if isinstance(first, nst.ConnectionLost):
        assert outcome is ConnectionRefusedError
    elif first is None:
        assert outcome is TimeoutError
    else:
        assert outcome in (first.data, TimeoutError)  # the answer, unless it came late
