"""Property-testing a line reader under fragmentation, from the first test to the fix."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nettest import strategies as nst


class NaiveLineReader:
    """Splits a byte stream into CRLF-terminated lines."""

    def __init__(self):
        self.buffer = b""
        self.lines = []

    def feed(self, data):
        start = len(self.buffer)
        self.buffer += data
        # Only search the new bytes: the old ones held no complete delimiter.
        while (end := self.buffer.find(b"\r\n", start)) >= 0:
            self.lines.append(self.buffer[:end])
            self.buffer = self.buffer[end + 2 :]
            start = 0


class LineReader(NaiveLineReader):
    """The fix: a delimiter can start in the last byte of the old data."""

    def feed(self, data):
        start = max(len(self.buffer) - 1, 0)
        self.buffer += data
        while (end := self.buffer.find(b"\r\n", start)) >= 0:
            self.lines.append(self.buffer[:end])
            self.buffer = self.buffer[end + 2 :]
            start = 0


REQUEST = b"GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
LINES = [b"GET / HTTP/1.1", b"Host: example.com", b"Accept: */*", b""]


def read_lines(reader, chunks):
    for chunk in chunks:
        reader.feed(chunk)
    return reader.lines


@given(nst.chunkings(REQUEST))
def test_line_reader(chunks):
    assert read_lines(LineReader(), chunks) == LINES


def test_naive_line_reader_fails_with_the_shrunk_example():
    reported = []

    @settings(database=None)
    @given(nst.chunkings(REQUEST))
    def test_naive_line_reader(chunks):
        reported.append(chunks)
        assert read_lines(NaiveLineReader(), chunks) == LINES

    with pytest.raises(AssertionError):
        test_naive_line_reader()
    # Hypothesis replays the shrunk example last: two reads, cut inside a CRLF.
    shrunk = reported[-1]
    assert len(shrunk) == 2
    assert shrunk[0].endswith(b"\r")
    assert shrunk[1].startswith(b"\n")


lines = st.lists(st.binary(max_size=20).filter(lambda line: b"\r\n" not in line), min_size=1)


@st.composite
def lines_and_chunkings(draw):
    drawn = draw(lines)
    return drawn, draw(nst.chunkings(b"\r\n".join(drawn) + b"\r\n"))


@given(lines_and_chunkings())
def test_line_reader_on_any_lines(lines_and_chunks):
    lines, chunks = lines_and_chunks
    assert read_lines(LineReader(), chunks)[: len(lines)] == lines
