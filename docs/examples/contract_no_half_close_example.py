"""Run the conformance suite on transports that cannot half-close: asyncio's TLS."""

import asyncio
import contextlib
import sys

import pytest

from nettest import CONFORMANCE_CASES, HALF_CLOSE_CASES, check_transport_case

#: Where asyncio's own TLS transport (Python 3.11 to 3.13) breaks the contract.
ASYNCIO_TLS_DEVIATIONS = {
    "buffered_protocol": "loses data read into a bytearray buffer (CPython gh-156275)",
    "buffered_protocol_empty_buffer": "an empty buffer is not a fatal error",
    "close_is_idempotent": "is_reading() raises AttributeError after close()",
    "close_flushes_buffer": "drops what is written after close()",
    "abort_with_unread_data_resets_peer": "reads ahead, so the peer sees a close, not a reset",
    "peer_reset_keeps_received_data": "reads ahead, so the peer sees a close, not a reset",
    "use_after_connection_lost": "is_reading() is True after connection_lost",
    "lost_at_the_peers_eof": "is_reading() is True after connection_lost",
    "write_buffer_limits": "its water marks default to 128 KiB and 512 KiB",
    "write_buffer_limits_only_pause": "raising the limits resumes writing at once",
    "close_inside_data_received": "calls eof_received() after close(), at the peer's answer",
    "write_inside_pause_writing": "sends what pause_writing() writes before the write that paused",
    "stream_writer_drain": "resumes writing before the peer reads",
}


def tls_pair(server_context, client_context):
    """A pair factory: a loopback TLS server and a client, with the suite's protocols."""

    @contextlib.asynccontextmanager
    async def connect(client_factory, server_factory):
        loop = asyncio.get_running_loop()
        server = await loop.create_server(server_factory, "127.0.0.1", 0, ssl=server_context)
        try:
            port = server.sockets[0].getsockname()[1]
            await loop.create_connection(
                client_factory, "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
            )
            yield
        finally:
            server.close()

    return connect


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10's TLS never calls eof_received()")
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "case",
    [
        case
        for case in CONFORMANCE_CASES
        if case not in HALF_CLOSE_CASES and case not in ASYNCIO_TLS_DEVIATIONS
    ],
)
async def test_asyncio_tls_conforms(case, tls_server_context, tls_client_context):
    # half_close=False: streams end with close(), and write_eof() must raise
    # NotImplementedError, as it does on every transport whose can_write_eof() is False.
    make_pair = tls_pair(tls_server_context, tls_client_context)
    await check_transport_case(make_pair, case, half_close=False)
