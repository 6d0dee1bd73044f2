"""Driving an asyncio echo server statefully with coroutine rules."""

import asyncio

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from nettest import memory_stream_pair
from nettest import strategies as nst


async def echo(reader, writer):
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


class EchoMachine(nst.AsyncRuleBasedStateMachine):
    @initialize()
    async def connect(self):
        (self.reader, self.writer), (server_reader, server_writer) = memory_stream_pair()
        self.server = asyncio.ensure_future(echo(server_reader, server_writer))
        self.sent = b""
        self.received = b""

    @rule(data=st.binary(min_size=1, max_size=64))
    async def send(self, data):
        self.writer.write(data)
        await self.writer.drain()
        self.sent += data

    @rule()
    async def receive_all(self):
        while len(self.received) < len(self.sent):
            self.received += await asyncio.wait_for(self.reader.read(1024), 5)

    @invariant()
    def received_a_prefix(self):
        assert self.sent.startswith(self.received)

    async def teardown(self):
        self.writer.write_eof()
        await self.reader.read()  # the rest of the echo, until the server closes
        await self.server
        self.writer.close()
        await self.writer.wait_closed()


TestEcho = EchoMachine.TestCase
TestEcho.settings = settings(max_examples=20, stateful_step_count=10)
