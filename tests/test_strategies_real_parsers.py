"""Real parsers under arbitrary fragmentation: whole input and fragmented input agree.

h11's HTTP/1.1 parser and the standard library's `email.parser.BytesFeedParser`
are fed every chunking hypothesis draws; the parsed result must equal the result
for the whole input.  Parsers are also checked byte by byte and at every single
cut, as h11's own tests do.
"""

from __future__ import annotations

import email.parser
import email.policy
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nettest import strategies as nst

FAST = settings(database=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])

REQUESTS = [
    b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
    b"POST /stream HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
]


def h11_events(chunks: list[bytes]) -> list[Any]:
    """Parse a request as a server; merge adjacent Data events, which follow the reads."""
    connection = h11.Connection(h11.SERVER)
    events: list[Any] = []
    for chunk in [*chunks, b""]:
        connection.receive_data(chunk)
        while True:
            event = connection.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED):
                break
            if isinstance(event, h11.Data) and events and isinstance(events[-1], h11.Data):
                events[-1] = h11.Data(data=events[-1].data + event.data)
            elif isinstance(event, h11.Data):
                events.append(h11.Data(data=event.data))
            else:
                events.append(event)
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return events
    return events


@pytest.mark.parametrize("request_bytes", REQUESTS)
def test_h11_request_whole_byte_by_byte_and_every_split(request_bytes: bytes) -> None:
    whole = h11_events([request_bytes])
    assert isinstance(whole[-1], h11.EndOfMessage)
    assert h11_events([bytes([b]) for b in request_bytes]) == whole
    for chunks in nst.all_splits(request_bytes):
        assert h11_events(chunks) == whole


@FAST
@given(st.sampled_from(REQUESTS).flatmap(lambda r: st.tuples(st.just(r), nst.chunkings(r))))
def test_h11_request_under_fragmentation(request_and_chunks: tuple[bytes, list[bytes]]) -> None:
    request_bytes, chunks = request_and_chunks
    assert h11_events(chunks) == h11_events([request_bytes])


def chunked_request(body: list[bytes]) -> bytes:
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in body if part)
    head = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + encoded + b"0\r\n\r\n"


@FAST
@given(
    st.lists(st.binary(min_size=1, max_size=20), max_size=4)
    .map(chunked_request)
    .flatmap(lambda r: st.tuples(st.just(r), nst.chunkings(r)))
)
def test_h11_chunked_bodies_under_fragmentation(
    request_and_chunks: tuple[bytes, list[bytes]],
) -> None:
    request_bytes, chunks = request_and_chunks
    assert h11_events(chunks) == h11_events([request_bytes])


MESSAGE = (
    b"From: a@example.com\r\n"
    b"To: b@example.com\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"caf\xc3\xa9 au lait\r\n"
    b"--XYZ\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQ=\r\n"
    b"--XYZ--\r\n"
    b"epilogue\r\n"
)


def parse_email(chunks: list[bytes]) -> tuple[bytes, list[str], list[Any]]:
    parser = email.parser.BytesFeedParser(policy=email.policy.default)
    for chunk in chunks:
        parser.feed(chunk)
    message = parser.close()
    parts = [(part.get_content_type(), part.get_payload(decode=True)) for part in message.walk()]
    return message.as_bytes(), [str(d) for d in message.defects], parts


def test_email_whole_byte_by_byte_and_every_split() -> None:
    whole = parse_email([MESSAGE])
    assert len(whole[2]) == 3
    assert parse_email([bytes([b]) for b in MESSAGE]) == whole
    for chunks in nst.all_splits(MESSAGE):
        assert parse_email(chunks) == whole


@FAST
@given(nst.chunkings(MESSAGE))
def test_email_under_fragmentation(chunks: list[bytes]) -> None:
    assert parse_email(chunks) == parse_email([MESSAGE])


@FAST
@given(nst.message_streams([MESSAGE[:200], MESSAGE[200:400], MESSAGE[400:]]))
def test_email_under_coalesced_delivery(stream: nst.MessageStream) -> None:
    assert parse_email(list(stream.chunks)) == parse_email([MESSAGE])
