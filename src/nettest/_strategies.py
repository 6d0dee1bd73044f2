"""Hypothesis strategies that cut a byte stream into reads.

Theory of operation
-------------------
A chunking of ``data`` is fully described by its *cuts*: the sorted, distinct
offsets in ``1 .. len(data) - 1`` where one read ends and the next begins.
`chunkings` draws the cuts as a hypothesis list of offsets, each drawn on its
own, and cuts once at each distinct one (`_distinct_cuts`: not a list with
``unique=True``, whose elements depend on the ones before), so:

* hypothesis's list shrinking deletes elements, which removes cuts and leaves
  the others where they are, and lowering one offset onto another merges two
  cuts: examples shrink towards a single chunk, then towards the fewest chunks
  that still fail;
* each remaining offset is an integer that shrinks towards ``1``; a cut that only
  fails at one offset (between ``\\r`` and ``\\n``, inside a length prefix) cannot
  move, so the shrunk example has its cut exactly at the fault.

A fault that needs one particular offset is found quickly only if that offset is
drawn often.  Each cut is therefore drawn either uniformly or from a list of
*hints*: offsets around delimiters (±1), inside UTF-8 multi-byte sequences and
inside length prefixes.  The uniform branch comes first, which is the one
hypothesis prefers while shrinking; both branches produce the same offsets, so
the shrunk chunks do not depend on which branch drew them.

With ``exhaustive=True``, `_every_chunking` draws the number of chunks first,
then each cut above the one before.  Each chunking is then one sequence of
choices, so hypothesis tries each once; and the fewest, smallest choices, which
hypothesis shrinks towards, make the fewest chunks with the lowest cuts.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias, cast

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

__all__ = [
    "DEFAULT_DELIMITERS",
    "MessageStream",
    "all_chunkings",
    "all_splits",
    "chunkings",
    "message_streams",
]

#: Delimiters that `chunkings` biases its cuts towards unless told otherwise.
DEFAULT_DELIMITERS: Final[tuple[bytes, ...]] = (b"\r\n\r\n", b"\r\n", b"\n")

#: Most chunkings `chunkings(..., exhaustive=True)` and `all_chunkings` will list.
EXHAUSTIVE_LIMIT: Final = 1 << 16

Hints: TypeAlias = Iterable[int] | Callable[[bytes], Iterable[int]]

# A UTF-8 multi-byte sequence: a lead byte and its continuation bytes (RFC 3629).
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def _check_flag(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool; raise InvalidArgument naming ``name`` if not.

    Every on/off argument of every strategy goes through here, so that ``1``
    or ``"yes"`` is refused alike everywhere rather than taken as true.
    """
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be True or False, got {value!r}")
    return value


def _check_size_bounds(min_size: object, max_size: object) -> None:
    if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 1:
        raise InvalidArgument(f"min_size must be an integer >= 1, got {min_size!r}")
    if max_size is not None and (
        not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < min_size
    ):
        raise InvalidArgument(
            f"max_size must be None or an integer >= min_size={min_size}, got {max_size!r}"
        )


def _check_delimiters(delimiters: object) -> tuple[bytes, ...]:
    if isinstance(delimiters, (bytes, bytearray, memoryview, str)):
        raise InvalidArgument(
            f"delimiters must be an iterable of non-empty bytes, not a single value: "
            f"{delimiters!r}; write delimiters=[{delimiters!r}]"
        )
    try:
        values = tuple(cast("Iterable[object]", delimiters))
    except TypeError:
        raise InvalidArgument(
            f"delimiters must be an iterable of non-empty bytes, got {delimiters!r}"
        ) from None
    for value in values:
        if not isinstance(value, (bytes, bytearray, memoryview)) or not value:
            raise InvalidArgument(
                f"delimiters must be an iterable of non-empty bytes, got {value!r} in it"
            )
    return tuple(bytes(cast("bytes", value)) for value in values)


def _check_length_prefix(length_prefix: object) -> int | None:
    if length_prefix is None:
        return None
    if (
        not isinstance(length_prefix, int)
        or isinstance(length_prefix, bool)
        or not 1 <= length_prefix <= 8
    ):
        raise InvalidArgument(
            f"length_prefix must be None or a width in bytes from 1 to 8, got {length_prefix!r}"
        )
    return length_prefix


def _check_hints(hints: object) -> Hints | None:
    if hints is None or callable(hints):
        return cast("Hints | None", hints)
    offsets = _offsets(hints, "hints must be an iterable of offsets or a callable taking the data")
    # Offsets count from the start: -1 is no "before the last byte", as an index
    # would have it.  (A callable's, worked out from the data, may fall outside.)
    for offset in offsets:
        if offset < 0:
            raise InvalidArgument(
                f"hints must hold offsets >= 0, counted from the start of the data, got {offset}"
            )
    return offsets


def _offsets(hints: object, requirement: str) -> tuple[int, ...]:
    """Return `hints`, integer offsets, as a tuple; raise InvalidArgument if they are not."""
    if isinstance(hints, (bytes, str)):
        raise InvalidArgument(f"{requirement}, got {hints!r}")
    try:
        values = tuple(cast("Iterable[object]", hints))
    except TypeError:
        raise InvalidArgument(f"{requirement}, got {hints!r}") from None
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(f"hints must hold integer offsets, got {value!r} in it")
    return cast("tuple[int, ...]", values)


def _check_exact_data(data: object) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"data must be bytes, got {data!r}")
    return bytes(data)


def _check_byte_strings(
    name: str, values: Sequence[bytes] | SearchStrategy[Sequence[bytes]]
) -> tuple[bytes, ...] | SearchStrategy[Sequence[bytes]]:
    """Return `values` as a tuple, or the strategy; raise InvalidArgument naming `name`."""
    if isinstance(values, st.SearchStrategy):
        return values
    return _byte_strings(values, f"{name} must be a sequence of bytes or a strategy for one")


def _byte_strings(values: object, requirement: str) -> tuple[bytes, ...]:
    """Return `values`, a sequence of bytes-like objects, as a tuple of bytes.

    Raises:
        InvalidArgument: `requirement`, and what `values` is.
    """
    error = InvalidArgument(f"{requirement}, got {values!r}")
    if isinstance(values, (bytes, bytearray, memoryview, str)):
        raise error
    try:
        # One pass, so that a generator is checked and kept, not used up.
        strings = tuple(cast("Iterable[object]", values))
    except TypeError:
        raise error from None
    if not all(isinstance(value, (bytes, bytearray, memoryview)) for value in strings):
        raise error
    return tuple(bytes(cast("bytes", value)) for value in strings)


def _check_data(data: object) -> bytes | SearchStrategy[bytes]:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (bytes, st.SearchStrategy)):
        return data
    raise InvalidArgument(f"data must be bytes or a strategy for bytes, got {data!r}")


@dataclass(frozen=True, slots=True)
class _Bias:
    """What to bias cuts towards; computes the hinted offsets of one input."""

    delimiters: tuple[bytes, ...]
    utf8: bool
    length_prefix: int | None
    hints: Hints | None

    def offsets(self, data: bytes) -> list[int]:
        """Return the sorted, distinct hinted cut offsets of ``data`` (all in 1..len-1)."""
        n = len(data)
        found: set[int] = set()
        for delimiter in self.delimiters:
            width = len(delimiter)
            start = data.find(delimiter)
            while start != -1:
                # Before, inside and after the delimiter, one byte either side.
                found.update(range(start - 1, start + width + 2))
                start = data.find(delimiter, start + 1)
        if self.utf8:
            for match in _UTF8_SEQUENCE.finditer(data):
                found.update(range(match.start() + 1, match.end()))
        if self.length_prefix is not None:
            found.update(_length_prefix_offsets(data, self.length_prefix))
        if self.hints is not None:
            if callable(self.hints):
                requirement = "hints callable must return an iterable of offsets"
                found.update(_offsets(self.hints(data), requirement))
            else:
                found.update(self.hints)
        return sorted(offset for offset in found if 0 < offset < n)


def _length_prefix_offsets(data: bytes, width: int) -> Iterator[int]:
    """Yield the offsets around and inside each big-endian length prefix of a framed stream."""
    position = 0
    while position + width <= len(data):
        yield from range(position, position + width + 1)
        length = int.from_bytes(data[position : position + width], "big")
        position += width + length


def _cut(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Return ``data`` cut at the given sorted offsets."""
    bounds = [0, *cuts, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


#: The most choices the cuts `min_size` asks for may take one example: hypothesis
#: fails a test whose smallest example takes some hundreds more (as too large).
_MOST_REQUIRED_CHOICES = 500


def _cut_strategy(
    n: int, hinted: Sequence[int], min_cuts: int, max_cuts: int | None
) -> SearchStrategy[list[int]]:
    """Return a strategy for sorted, distinct cut offsets in ``1 .. n - 1``."""
    offsets: SearchStrategy[int] = st.integers(1, n - 1)
    limit = n - 1 if max_cuts is None else min(max_cuts, n - 1)
    min_cuts = min(min_cuts, limit)
    # The offsets left uncut take an index each, cheaper than a cut's offset:
    # measured, hypothesis takes twice as many.
    required = min_cuts if 2 * min_cuts <= n - 1 else (n - 1 - min_cuts) // 2
    if required > _MOST_REQUIRED_CHOICES:
        return _sampled_cuts(n, min_cuts, limit)
    if 2 * min_cuts > n - 1:
        # Most offsets must be cut: drawing distinct offsets would take a coupon
        # collector's time, so draw the few that are not cut instead.  Hints
        # are moot when nearly every offset is cut anyway.
        return _uncut_offsets(n, min_cuts, limit)
    if hinted:
        # Uniform first: that is the branch hypothesis shrinks towards.
        offsets = st.one_of(offsets, st.sampled_from(hinted))
    # Not unique=True: see _distinct_cuts.
    return _distinct_cuts(n, st.lists(offsets, min_size=min_cuts, max_size=limit), min_cuts)


@st.composite
def _distinct_cuts(
    draw: DrawFn, n: int, offsets: SearchStrategy[list[int]], min_cuts: int
) -> list[int]:
    """Draw offsets, any of them equal, and cut once at each; top up to ``min_cuts``.

    Each offset is drawn on its own and means the same whatever comes before
    it, so hypothesis's shrinker can delete any cut, or lower it onto another
    one, and keep the others where they are.  ``st.lists(..., unique=True)``
    defeats this: hypothesis draws a small range of integers as indices into
    the offsets not drawn yet (deleting a cut moves every later one), and a
    larger one by drawing again on a repeat.  Failures then stuck at
    ``[1, 2, 3]`` when ``[3]`` failed too.

    A repeat merges with the first.  Giving it a free offset instead, the next
    one up or one drawn from those left, lets the shrinker lower every cut
    onto 1 and rebuild ``[1, 2, 3]`` from the repeats (measured: far fewer
    failures then shrink to the fewest chunks).  The top-up, needed only when
    repeats leave fewer than ``min_cuts``, draws indices into the offsets left
    uncut, which shrink towards the lowest.
    """
    cuts = set(draw(offsets))
    if len(cuts) < min_cuts:
        uncut = [offset for offset in range(1, n) if offset not in cuts]
        for _ in range(min_cuts - len(cuts)):
            cuts.add(uncut.pop(draw(st.integers(0, len(uncut) - 1))))
    return sorted(cuts)


@st.composite
def _sampled_cuts(draw: DrawFn, n: int, min_cuts: int, max_cuts: int) -> list[int]:
    """Draw how many cuts, and one seed that places them all: for a huge ``min_size``.

    Drawing each of a thousand cuts makes an example hypothesis refuses as too
    large, so the cuts are sampled from a seed it draws instead.  They shrink as
    a whole: towards the fewest, then towards seed 0, evenly spaced cuts.
    """
    count = draw(st.integers(min_cuts, max_cuts))
    seed = draw(st.integers(0, 2**32 - 1))
    if seed == 0:
        return [(index * n) // (count + 1) for index in range(1, count + 1)]
    return sorted(random.Random(seed).sample(range(1, n), count))


@st.composite
def _uncut_offsets(draw: DrawFn, n: int, min_cuts: int, max_cuts: int) -> list[int]:
    """Draw cuts at all but a few offsets, shrinking towards the fewest cuts.

    Hypothesis prefers shorter choice sequences, so every example makes the same
    choices: one slot per offset that may stay uncut, each with an index into
    the offsets left and, beyond those that must stay uncut, a flag that skips
    it.  The simplest flags keep every slot, which means the fewest cuts.
    """
    remaining = list(range(1, n))
    must_uncut = n - 1 - max_cuts
    for slot in range(n - 1 - min_cuts):
        skipped = slot >= must_uncut and draw(st.booleans())
        index = draw(st.integers(0, len(remaining) - 1))
        if not skipped:
            remaining.pop(index)
    return remaining


@st.composite
def _draw_chunkings(
    draw: DrawFn,
    data: bytes | SearchStrategy[bytes],
    min_size: int,
    max_size: int | None,
    bias: _Bias,
    fixed: SearchStrategy[list[int]] | None,
) -> list[bytes]:
    value = draw(data) if isinstance(data, st.SearchStrategy) else data
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"data strategy must generate bytes, got {value!r}")
    value = bytes(value)
    if len(value) <= 1:
        return [value] if value else []
    cuts = fixed
    if cuts is None:
        max_cuts = None if max_size is None else max_size - 1
        cuts = _cut_strategy(len(value), bias.offsets(value), min_size - 1, max_cuts)
    return _cut(value, sorted(draw(cuts)))


@st.composite
def _every_chunking(draw: DrawFn, data: bytes, min_size: int, max_size: int | None) -> list[bytes]:
    """Draw any chunking of ``data``, each by exactly one sequence of choices.

    ``st.sampled_from(all_chunkings(data))`` tries each chunking once too, but
    hypothesis shrinks its index only downwards, so a failure could shrink to 3
    or 4 chunks when a 2-chunk chunking further down the list failed as well.
    Here the number of chunks comes first, then each cut in turn, above the one
    before and low enough to leave room for the rest: the shrinker lowers the
    number of chunks (which drops the last cut; it also tries dropping any
    other), then each cut.  One chunking per sequence means that hypothesis
    stops once it has tried them all.
    """
    n = len(data)
    if n == 0:
        return []
    size = draw(st.integers(min_size, n if max_size is None else min(max_size, n)))
    cuts: list[int] = []
    for later in range(size - 2, -1, -1):  # the cuts still to draw after this one
        cuts.append(draw(st.integers(cuts[-1] + 1 if cuts else 1, n - 1 - later)))
    return _cut(data, cuts)


def chunkings(
    data: bytes | SearchStrategy[bytes],
    *,
    min_size: int = 1,
    max_size: int | None = None,
    delimiters: Iterable[bytes] = DEFAULT_DELIMITERS,
    utf8: bool = True,
    length_prefix: int | None = None,
    hints: Iterable[int] | Callable[[bytes], Iterable[int]] | None = None,
    exhaustive: bool = False,
) -> SearchStrategy[list[bytes]]:
    """Return a strategy for ways to deliver ``data`` as a sequence of reads.

    Parsers break when a delimiter, a length prefix or a multi-byte character
    straddles a read boundary.  Each example is a list of non-empty `bytes`
    whose concatenation is ``data``: feed them one by one to the parser under
    test and check that it gives the same result as for the whole input.

    Cuts are drawn uniformly, and half of the time from *hinted* offsets: one byte
    before, inside and one byte after each delimiter, inside UTF-8 multi-byte
    sequences, inside length prefixes and at any offsets you give.

    Args:
        data: The bytes to cut, or a strategy for them.
        min_size: The fewest chunks, at least 1.  Given bytes shorter than
            this (but not empty) are refused; drawn data shorter than this has
            fewer chunks, one per byte.  Empty data, given or drawn, has no
            chunking but the empty list, which is what it always gives.
        max_size: The most chunks, or None for one chunk per byte.
        delimiters: Byte strings to cut around (±1 byte); pass ``()`` for none.
        utf8: Cut inside well-formed UTF-8 multi-byte sequences.
        length_prefix: The width of a big-endian unsigned length prefix
            framing each message of ``data`` (the length counts the payload
            only): cut inside, before and after each prefix.
        hints: More offsets to cut at, counted from the start of the data,
            or a callable that takes the data and returns them.  A negative
            offset given is refused; any beyond the data (drawn data may be
            shorter), and any a callable returns outside ``1 .. len(data) - 1``,
            are ignored.
        exhaustive: Draw from every chunking that `all_chunkings` lists,
            ignoring hints, so that a run of at least as many examples as
            there are chunkings tries each exactly once, then stops.
            ``data`` must then be short bytes.

    Returns:
        A strategy for lists of non-empty `bytes`.

    Raises:
        hypothesis.errors.InvalidArgument: An argument is out of range; the
            message names it.

    Example::

        from hypothesis import given
        from nettest import strategies as nst

        @given(nst.chunkings(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n"))
        def test_parser(chunks):
            parser = Parser()
            for chunk in chunks:
                parser.receive(chunk)
            assert parser.requests == [...]

    Examples shrink towards a single chunk, then towards the fewest chunks with
    each cut at the lowest offset that still fails.  (Unless ``exhaustive``,
    when ``min_size`` asks for more than half of the offsets to be cut, the
    few left uncut shrink towards the start instead, so the cuts gather at
    the end; and when ``min_size`` asks for more than about 500 cuts each
    drawn on its own, more than hypothesis takes in one example, the cuts
    are sampled from one drawn seed, and shrink as a whole towards evenly
    spaced ones.)
    """
    data = _check_data(data)
    _check_size_bounds(min_size, max_size)
    bias = _Bias(
        delimiters=_check_delimiters(delimiters),
        utf8=_check_flag("utf8", utf8),
        length_prefix=_check_length_prefix(length_prefix),
        hints=_check_hints(hints),
    )
    if isinstance(data, bytes):
        _check_min_size_fits(data, min_size)
    if _check_flag("exhaustive", exhaustive):
        if not isinstance(data, bytes):
            raise InvalidArgument("data must be bytes, not a strategy, when exhaustive=True")
        count = _count_chunkings(len(data), min_size, max_size)
        if count > EXHAUSTIVE_LIMIT:
            raise InvalidArgument(
                f"data is too long for exhaustive=True: {len(data)} bytes have {count} "
                f"chunkings, more than {EXHAUSTIVE_LIMIT}; pass a shorter data or max_size"
            )
        return _every_chunking(data, min_size, max_size)
    if isinstance(data, bytes):
        fixed = None
        if len(data) > 1:
            max_cuts = None if max_size is None else max_size - 1
            fixed = _cut_strategy(len(data), bias.offsets(data), min_size - 1, max_cuts)
        return _draw_chunkings(data, min_size, max_size, bias, fixed)
    return _draw_chunkings(data, min_size, max_size, bias, None)


def _check_min_size_fits(data: bytes, min_size: int) -> None:
    if data and min_size > len(data):
        raise InvalidArgument(
            f"min_size must be <= len(data)={len(data)}, got min_size={min_size}"
        )


def _count_chunkings(n: int, min_size: int, max_size: int | None) -> int:
    if n == 0:
        return 1
    top = n if max_size is None else min(max_size, n)
    return sum(math.comb(n - 1, k - 1) for k in range(min_size, top + 1))


def all_chunkings(
    data: bytes, *, min_size: int = 1, max_size: int | None = None
) -> list[list[bytes]]:
    """Yield every way to cut ``data`` into between ``min_size`` and ``max_size`` chunks.

    For short inputs, trying every chunking beats sampling them.  This is a
    plain list, for ``pytest.mark.parametrize``; `chunkings` with
    ``exhaustive=True`` draws the same chunkings.  Chunkings come with the
    fewest chunks first, and cuts at lower offsets first.

    Args:
        data: The bytes to cut; at most 2**16 chunkings are allowed, which
            ``len(data) <= 17`` guarantees.
        min_size: The fewest chunks, from 1 to ``len(data)``.
        max_size: The most chunks, or None for one chunk per byte.

    Returns:
        A list of lists of non-empty `bytes` whose concatenation is ``data``;
        empty data gives one empty list.

    Raises:
        hypothesis.errors.InvalidArgument: An argument is out of range.

    Example::

        @pytest.mark.parametrize("chunks", nst.all_chunkings(b"a\\r\\nb"))
        def test_lines(chunks):
            assert read_lines(chunks) == [b"a", b"b"]
    """
    data = _check_exact_data(data)
    _check_size_bounds(min_size, max_size)
    _check_min_size_fits(data, min_size)
    count = _count_chunkings(len(data), min_size, max_size)
    if count > EXHAUSTIVE_LIMIT:
        raise InvalidArgument(
            f"data is too long: {len(data)} bytes have {count} chunkings, more than "
            f"{EXHAUSTIVE_LIMIT}; pass a shorter data or max_size"
        )
    return list(_all_chunkings(data, min_size, max_size))


def _all_chunkings(data: bytes, min_size: int, max_size: int | None) -> Iterator[list[bytes]]:
    n = len(data)
    if n == 0:
        yield []
        return
    top = n if max_size is None else min(max_size, n)
    for size in range(min_size, top + 1):
        for cuts in itertools.combinations(range(1, n), size - 1):
            yield _cut(data, cuts)


def all_splits(data: bytes) -> list[list[bytes]]:
    """Yield ``data`` cut in two at every offset, from ``[data[:1], data[1:]]`` on.

    One cut at every offset finds most boundary bugs in ``len(data) - 1`` runs,
    where `all_chunkings` needs ``2 ** (len(data) - 1)``.  A plain list, for
    ``pytest.mark.parametrize``.

    Args:
        data: The bytes to cut, of any length.

    Returns:
        A list of two-chunk lists; empty for data shorter than 2 bytes.

    Raises:
        hypothesis.errors.InvalidArgument: ``data`` is not bytes.

    Example::

        @pytest.mark.parametrize("chunks", nst.all_splits(b"a\\r\\nb\\r\\n"))
        def test_lines(chunks):
            assert read_lines(chunks) == [b"a", b"b"]
    """
    data = _check_exact_data(data)
    return [_cut(data, [offset]) for offset in range(1, len(data))]


@typing.final
@dataclass(frozen=True, slots=True)
class MessageStream:
    """Messages, and the reads that deliver them back to back, drawn by `message_streams`.

    A read can hold the end of one message and the start of others, and one
    message can take many reads.

    Attributes:
        messages: The messages, in order.
        chunks: The reads; their concatenation is the concatenation of ``messages``.

    Raises:
        TypeError: built by hand with ``messages`` or ``chunks`` not a sequence
            of bytes (any bytes-like items are kept as bytes, in a tuple).
        ValueError: the chunks do not join to the messages' bytes, or one is
            empty (a read delivers at least one byte).
    """

    messages: tuple[bytes, ...]
    chunks: tuple[bytes, ...]

    def __post_init__(self) -> None:
        for name in ("messages", "chunks"):
            try:
                value = _byte_strings(getattr(self, name), f"{name} must be a sequence of bytes")
            except InvalidArgument as exc:
                raise TypeError(str(exc)) from None
            object.__setattr__(self, name, value)
        if b"" in self.chunks:
            raise ValueError(
                f"chunks must not be empty (a read delivers at least one byte), "
                f"got {self.chunks!r}"
            )
        if b"".join(self.chunks) != b"".join(self.messages):
            raise ValueError(
                f"chunks must join to the messages' bytes, got {self.chunks!r} "
                f"for {self.messages!r}"
            )

    def completed_by(self, read: int) -> int:
        """Return how many messages are complete once reads ``0 .. read`` have arrived.

        Args:
            read: The index of a read in ``chunks``.

        Returns:
            The number of messages whose last byte has arrived.

        Example::

            stream = MessageStream(messages=(b"ab", b"c"), chunks=(b"a", b"bc"))
            assert [stream.completed_by(i) for i in range(2)] == [0, 2]
        """
        if isinstance(read, bool) or not isinstance(read, int):
            raise TypeError(f"read must be an int in 0..{len(self.chunks) - 1}, got {read!r}")
        if not 0 <= read < len(self.chunks):
            raise IndexError(f"read must be in 0..{len(self.chunks) - 1}, got {read}")
        received = sum(len(chunk) for chunk in self.chunks[: read + 1])
        ends = itertools.accumulate(len(message) for message in self.messages)
        return sum(1 for end in ends if end <= received)


@st.composite
def _draw_message_streams(
    draw: DrawFn,
    messages: Sequence[bytes] | SearchStrategy[Sequence[bytes]],
    min_size: int,
    max_size: int | None,
    bias: _Bias,
) -> MessageStream:
    if isinstance(messages, st.SearchStrategy):
        values = _byte_strings(
            draw(messages), "messages strategy must generate sequences of bytes"
        )
    else:
        values = tuple(messages)
    data = b"".join(values)
    if len(data) <= 1:
        return MessageStream(messages=values, chunks=(data,) if data else ())
    hinted = set(bias.offsets(data))
    for end in itertools.accumulate(len(message) for message in values):
        hinted.update(offset for offset in (end - 1, end, end + 1) if 0 < offset < len(data))
    max_cuts = None if max_size is None else max_size - 1
    cuts = _cut_strategy(len(data), sorted(hinted), min_size - 1, max_cuts)
    return MessageStream(messages=values, chunks=tuple(_cut(data, sorted(draw(cuts)))))


def message_streams(
    messages: Sequence[bytes] | SearchStrategy[Sequence[bytes]],
    *,
    min_size: int = 1,
    max_size: int | None = None,
    delimiters: Iterable[bytes] = DEFAULT_DELIMITERS,
    utf8: bool = True,
    length_prefix: int | None = None,
    hints: Iterable[int] | Callable[[bytes], Iterable[int]] | None = None,
) -> SearchStrategy[MessageStream]:
    """Return a strategy for messages sent back to back and the reads that deliver them.

    Readers often assume one read holds one message.  Real streams coalesce:
    a read can end inside a message, hold several messages, or end one byte
    after a boundary.  Cuts are biased towards message boundaries (±1) as well
    as the offsets `chunkings` favours.

    Args:
        messages: The messages, or a strategy for a list of them.
        min_size: The fewest reads, at least 1 (fewer when there are not
            enough bytes).
        max_size: The most reads, or None for one per byte.
        delimiters: As for `chunkings`.
        utf8: As for `chunkings`.
        length_prefix: As for `chunkings`.
        hints: As for `chunkings`, offsets into the messages joined; a
            callable gets them joined.

    Returns:
        A strategy for `MessageStream` values.

    Raises:
        hypothesis.errors.InvalidArgument: An argument is out of range.

    Example::

        @given(nst.message_streams([b"PING\\r\\n", b"PING\\r\\n"]))
        def test_two_pings(stream):
            for chunk in stream.chunks:
                reader.feed(chunk)
            assert reader.messages == list(stream.messages)

    Examples shrink towards all messages in one read, then towards the fewest
    reads with each cut at the lowest offset that still fails.
    """
    messages = _check_byte_strings("messages", messages)
    _check_size_bounds(min_size, max_size)
    bias = _Bias(
        delimiters=_check_delimiters(delimiters),
        utf8=_check_flag("utf8", utf8),
        length_prefix=_check_length_prefix(length_prefix),
        hints=_check_hints(hints),
    )
    return _draw_message_streams(messages, min_size, max_size, bias)
