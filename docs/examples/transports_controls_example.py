"""Controls on memory pairs: pumping by hand, partial writes, chunking, resets."""

import asyncio

import pytest

from nettest import memory_stream_pair, memory_transport_pair


class Collect(asyncio.Protocol):
    def __init__(self):
        self.chunks = []
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.chunks.append(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@pytest.mark.asyncio
async def test_nothing_moves_until_the_test_pumps():
    (_, c_writer), (s_reader, s_writer) = memory_stream_pair(manual=True)
    c_writer.write(b"GET / HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0)
    assert c_writer.transport.get_write_buffer_size() == 18
    c_writer.transport.pump(5)  # at most 5 bytes this time
    assert await s_reader.read(100) == b"GET /"
    c_writer.transport.pump()
    assert await s_reader.readuntil(b"\r\n\r\n") == b" HTTP/1.1\r\n\r\n"
    for writer in (c_writer, s_writer):
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_reads_are_cut_as_the_test_says():
    server = Collect()
    client_transport, _ = memory_transport_pair(asyncio.Protocol(), server, chunks=[1, 2, 3])
    client_transport.write(b"abcdefghij")
    await asyncio.sleep(0.01)
    # After the listed sizes, reads deliver everything that has arrived.
    assert server.chunks == [b"a", b"bc", b"def", b"ghij"]
    client_transport.close()
    await server.lost


@pytest.mark.asyncio
async def test_partial_writes_leave_the_rest_in_the_buffer():
    client_transport, server_transport = memory_transport_pair(
        asyncio.Protocol(), Collect(), partial_writes=100
    )
    client_transport.write(b"x" * 250)  # each send takes at most 100 bytes
    assert client_transport.get_write_buffer_size() == 150
    await asyncio.sleep(0)
    assert client_transport.get_write_buffer_size() == 50
    client_transport.close()
    server_transport.close()
    await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_a_reset_reaches_both_ends_without_eof():
    client, server = Collect(), Collect()
    client_transport, _ = memory_transport_pair(client, server)
    await asyncio.sleep(0)
    client_transport.reset()
    assert isinstance(await client.lost, ConnectionResetError)
    assert isinstance(await server.lost, ConnectionResetError)
