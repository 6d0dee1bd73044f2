"""Several messages in one read, one message in many: a length-prefixed reader."""

from hypothesis import given

from nettest import strategies as nst


class FrameReader:
    """Reads messages framed by a 2-byte big-endian length."""

    def __init__(self):
        self.buffer = b""
        self.messages = []

    def feed(self, data):
        self.buffer += data
        while len(self.buffer) >= 2:
            length = int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < 2 + length:
                break
            self.messages.append(self.buffer[2 : 2 + length])
            self.buffer = self.buffer[2 + length :]


def frame(payload):
    return len(payload).to_bytes(2, "big") + payload


FRAMES = [frame(b"hello"), frame(b""), frame(b"world" * 60)]


@given(nst.message_streams(FRAMES, length_prefix=2))
def test_frame_reader(stream):
    reader = FrameReader()
    for read, chunk in enumerate(stream.chunks):
        reader.feed(chunk)
        # Every message whose last byte has arrived has been parsed.
        assert len(reader.messages) == stream.completed_by(read)
    assert reader.messages == [b"hello", b"", b"world" * 60]
