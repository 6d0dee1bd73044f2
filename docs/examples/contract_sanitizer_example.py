"""Check the order in which a transport calls a protocol."""

import asyncio
import socket

import pytest

from nettest import ProtocolViolation, sanitize


@pytest.mark.asyncio
async def test_the_loop_calls_a_stream_reader_protocol_in_order():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    # The sanitizer forwards everything, so the StreamReader works as usual.
    protocol = sanitize(asyncio.StreamReaderProtocol(reader))
    ours, theirs = socket.socketpair()
    with theirs:
        transport, _ = await loop.create_connection(lambda: protocol, sock=ours)
        theirs.sendall(b"ping\n")
        theirs.shutdown(socket.SHUT_WR)
        assert await reader.read() == b"ping\n"
        transport.close()
        await asyncio.sleep(0)  # connection_lost comes on the next loop turn
    protocol.check(lost=True)
    assert protocol.calls == (
        "connection_made",
        "data_received(5 bytes)",
        "eof_received",
        "connection_lost(None)",
    )


class CarelessTransport(asyncio.Transport):
    """A hand-made transport that keeps delivering after it reported the connection lost."""

    def __init__(self, protocol):
        super().__init__()
        self.protocol = protocol

    def start(self):
        self.protocol.connection_made(self)

    def feed(self, data):
        self.protocol.data_received(data)

    def close(self):
        self.protocol.connection_lost(None)


def test_the_sanitizer_catches_data_after_connection_lost():
    protocol = sanitize(asyncio.Protocol())
    transport = CarelessTransport(protocol)
    transport.start()
    transport.feed(b"fine")
    transport.close()
    # Raised inside the offending callback, so the traceback shows the transport's bug...
    with pytest.raises(ProtocolViolation, match="called after connection_lost"):
        transport.feed(b"too late")
    # ...and again by check(), in case the transport swallowed it.
    with pytest.raises(ProtocolViolation) as excinfo:
        protocol.check()
    assert "data_received(8 bytes) called after connection_lost" in str(excinfo.value)


def test_the_sanitizer_catches_a_double_pause():
    protocol = sanitize(asyncio.Protocol(), raise_on_violation=False)
    protocol.connection_made(CarelessTransport(protocol))
    protocol.pause_writing()
    protocol.pause_writing()  # recorded, and forwarded: nothing is raised yet
    assert protocol.violations == (
        "pause_writing called twice in a row: pause_writing and resume_writing alternate, "
        "so resume_writing must come in between; calls before it: connection_made, "
        "pause_writing",
    )
