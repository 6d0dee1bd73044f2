"""A datagram receiver under loss, duplication, reordering and truncation."""

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
