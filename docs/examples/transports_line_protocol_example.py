"""Testing a line protocol with MemoryTransport: the test plays the client."""

import asyncio

import pytest

from nettest import MemoryTransport


class EchoUpper(asyncio.Protocol):
    """Answers each line with the line in upper case; ``QUIT`` closes."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line == b"QUIT":
                self.transport.close()
                return
            self.transport.write(line.upper() + b"\n")


@pytest.mark.asyncio
async def test_lines_split_anywhere_are_answered():
    transport = MemoryTransport(EchoUpper())
    transport.feed_data(b"hel")  # a line arriving in pieces
    transport.feed_data(b"lo\nwor")
    assert await transport.receive_written(6) == b"HELLO\n"
    transport.feed_data(b"ld\n")
    assert await transport.receive_written(6) == b"WORLD\n"
    transport.feed_data(b"QUIT\n")
    await asyncio.sleep(0)
    assert transport.is_closing()
    transport.close()


@pytest.mark.asyncio
async def test_eof_from_the_peer_closes_the_connection():
    protocol = EchoUpper()
    transport = MemoryTransport(protocol)
    transport.feed_data(b"last\n")
    transport.feed_eof()  # eof_received() returns None: the transport closes
    assert await transport.receive_written(5) == b"LAST\n"
    with pytest.raises(EOFError):  # waits for the protocol's side to close
        await transport.receive_written(1)
    assert transport.is_closing()
    assert transport.written_eof


@pytest.mark.asyncio
async def test_a_reset_reaches_connection_lost():
    lost = asyncio.get_running_loop().create_future()

    class Watcher(EchoUpper):
        def connection_lost(self, exc):
            lost.set_result(exc)

    transport = MemoryTransport(Watcher())
    transport.feed_reset()
    assert isinstance(await lost, ConnectionResetError)
