"""nettest's servers and memory pairs in unittest's IsolatedAsyncioTestCase."""

import asyncio
import unittest

import nettest
from nettest import handlers


class EchoTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        # Closed by the clean-up, even when the test fails.
        self.server = await nettest.TCPServer(handlers.echo).start()
        self.addAsyncCleanup(self.server.aclose)

    async def test_echo(self):
        reader, writer = await asyncio.open_connection(*self.server.address)
        writer.write(b"ping\n")
        self.assertEqual(await reader.readline(), b"ping\n")
        writer.close()
        await writer.wait_closed()
        (conn,) = await self.server.wait_for_connections(1)
        await conn.wait_closed()
        self.assertEqual(conn.received, b"ping\n")

    async def test_memory_pair(self):
        (_, writer), (server_reader, server_writer) = nettest.memory_stream_pair()
        writer.write(b"hello")
        self.assertEqual(await server_reader.readexactly(5), b"hello")
        for end in (writer, server_writer):
            end.close()
            await end.wait_closed()


if __name__ == "__main__":
    unittest.main()
