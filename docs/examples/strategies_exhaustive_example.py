"""Every split and every chunking of a short input, as pytest parameters or examples."""

import codecs

import pytest
from hypothesis import given, settings

from nettest import strategies as nst

TEXT = "naïve €".encode()


def decode(chunks):
    decoder = codecs.getincrementaldecoder("utf-8")()
    return "".join(decoder.decode(chunk) for chunk in chunks) + decoder.decode(b"", final=True)


@pytest.mark.parametrize("chunks", nst.all_splits(TEXT))
def test_decoder_at_every_offset(chunks):
    assert decode(chunks) == "naïve €"


@pytest.mark.parametrize("chunks", nst.all_chunkings(b"\xe2\x82\xac\r\n"))
def test_decoder_under_every_chunking(chunks):
    assert decode(chunks) == "€\r\n"


@settings(max_examples=100)  # at least the 16 chunkings: each is tried once
@given(nst.chunkings(b"\xe2\x82\xac\r\n", exhaustive=True))
def test_decoder_under_every_chunking_with_hypothesis(chunks):
    assert decode(chunks) == "€\r\n"
