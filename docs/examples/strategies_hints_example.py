"""Hinting the offsets no delimiter marks: inside an HTTP chunk-size line's hex digits."""

import re

import pytest
from hypothesis import given, settings

from nettest import strategies as nst

CHUNKS = [bytes(range(97, 123)) * 40, b"0123456789abcdef" * 64]  # 1040 and 1024 bytes
BODY = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in CHUNKS) + b"0\r\n\r\n"
DECODED = b"".join(CHUNKS)


def between_size_digits(data):
    """Every offset between two hex digits of a chunk-size line of a chunked body."""
    offsets, start = [], 0
    while (end := data.find(b"\r\n", start)) > start:
        offsets.extend(range(start + 1, end))
        start = end + 2 + int(data[start:end], 16) + 2  # past the chunk and its CRLF
    return offsets


def test_the_hints():
    assert between_size_digits(BODY) == [1, 2, 1048, 1049]  # "4|1|0", then "4|0|0"


class ChunkedDecoder:
    """Decodes a chunked body fed in pieces; `eager` parses a size before its line ends."""

    def __init__(self, eager=False):
        self.eager = eager
        self.buffer = b""
        self.size = None  # the current chunk's size, once its line is read
        self.body = b""

    def feed(self, data):
        self.buffer += data
        while True:
            if self.size is None:
                line, crlf, rest = self.buffer.partition(b"\r\n")
                if not crlf and not (self.eager and re.fullmatch(rb"[0-9a-fA-F]+", line)):
                    return
                self.size, self.buffer = int(line, 16), rest  # eager: "4" of "410" is 4
                if self.eager and not crlf:
                    self.buffer = b""
                    return
            if self.size == 0 or len(self.buffer) < self.size + 2:
                return
            self.body += self.buffer[: self.size]
            self.buffer, self.size = self.buffer[self.size + 2 :], None

    def decode(self, chunks):
        """The body, or None if the decoder found it malformed."""
        try:
            for chunk in chunks:
                self.feed(chunk)
        except ValueError:
            return None
        return self.body


@given(nst.chunkings(BODY, hints=between_size_digits))
def test_chunked_decoder(chunks):
    assert ChunkedDecoder().decode(chunks) == DECODED


def test_the_hint_finds_the_eager_decoder_s_bug():
    reported = []

    @settings(database=None)
    @given(nst.chunkings(BODY, hints=between_size_digits))
    def test_eager_decoder(chunks):
        reported.append(chunks)
        assert ChunkedDecoder(eager=True).decode(chunks) == DECODED

    with pytest.raises(AssertionError):
        test_eager_decoder()
    # The shrunk example cuts the first size line, "410", between its digits.
    assert reported[-1][0] in (b"4", b"41")
