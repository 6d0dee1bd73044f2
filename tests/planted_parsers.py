"""Small stream readers, each with one planted fragmentation bug, and their fixed twins.

The strategies' tests prove that `nettest.strategies` finds each bug and shrinks
it to a minimal delivery.  Each reader takes reads through `feed` and records what
it parsed; ``fixed=True`` removes the bug, so every test has a passing twin.
"""

from __future__ import annotations


class LineReader:
    """Split a stream into CRLF-terminated lines.

    Planted bug: a bare ``\\r`` at the end of a read is taken for noise and
    dropped, so a ``\\r\\n`` split across two reads no longer ends the line.
    """

    def __init__(self, *, fixed: bool = False) -> None:
        self.fixed = fixed
        self.lines: list[bytes] = []
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        if not self.fixed and data.endswith(b"\r"):
            data = data[:-1]
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\r\n")
        self.lines.extend(lines)


class LengthPrefixedReader:
    """Read messages framed by a 4-byte big-endian length prefix.

    Planted bug: the prefix is decoded from whatever bytes of it have arrived,
    so a prefix split across reads gives a wrong length.
    """

    WIDTH = 4

    def __init__(self, *, fixed: bool = False) -> None:
        self.fixed = fixed
        self.messages: list[bytes] = []
        self._buffer = b""
        self._length: int | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._length is None:
                if not self._buffer or (self.fixed and len(self._buffer) < self.WIDTH):
                    return
                self._length = int.from_bytes(self._buffer[: self.WIDTH], "big")
                self._buffer = self._buffer[self.WIDTH :]
            if len(self._buffer) < self._length:
                return
            self.messages.append(self._buffer[: self._length])
            self._buffer = self._buffer[self._length :]
            self._length = None


class Utf8Reader:
    """Decode a UTF-8 stream into text.

    Planted bug: each read is decoded on its own, so a character split across
    reads turns into replacement characters.
    """

    def __init__(self, *, fixed: bool = False) -> None:
        import codecs

        self.fixed = fixed
        self.text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> None:
        if self.fixed:
            self.text += self._decoder.decode(data)
        else:
            self.text += data.decode("utf-8", errors="replace")


class MessageReader:
    """Split a stream into newline-terminated messages.

    Planted bug: only the first complete message of each read is taken; a
    second message delivered in the same read is dropped.
    """

    def __init__(self, *, fixed: bool = False) -> None:
        self.fixed = fixed
        self.messages: list[bytes] = []
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if self.fixed:
            *messages, self._buffer = self._buffer.split(b"\n")
            self.messages.extend(messages)
            return
        message, newline, rest = self._buffer.partition(b"\n")
        if newline:
            self.messages.append(message)
            self._buffer = rest.rpartition(b"\n")[2]
        else:
            self._buffer = message
