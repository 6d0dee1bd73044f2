"""Hypothesis strategies for delivery schedules of streams and datagrams.

A stream schedule is a chunking (see `nettest._strategies`) with events woven in
between reads: pauses of reading, delays in loop time, and an end that is an
EOF, nothing, or a lost connection.  Every extra is drawn as a choice whose
simplest value is "no extra", so schedules shrink towards the bare chunks.
An early EOF (``early_eof=True``) is drawn as the number of bytes it drops
from the end, so that it shrinks towards dropping one byte, the stream that is
nearly whole, rather than towards an EOF before any byte.

Drawn schedules always resume reading before their end.  The drivers would
deliver an end that comes while reading is paused, then a `ResumeReading`,
exactly as the resume followed by the end (the end waits for the resume), so
drawing it would find no more bugs, and would move the end from the last
place of the schedule, where tests look for it.  An end with no resume after
it would never reach the target at all, which is the protocol stalling, not
something the peer does.

Errors of `ConnectionLost` are built as a socket raises them: an OSError
subclass with an errno (``ConnectionResetError(ECONNRESET, 'Connection reset
by peer')``), so that code which sorts errors by errno sees what it sees in
production.

A datagram schedule decides a fate for each datagram sent (delivered, lost,
duplicated or truncated), then an order: a delay for each arrival, in places
behind those due after it.  No delay anywhere is the original order, which is
what the shrinker aims for.  The order covers every possible arrival (each
datagram and its duplicate) whatever the fates, so that a loss never makes an
example shorter, hence simpler, to hypothesis.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal, cast, overload

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ._faults import _number
from ._feed import (
    Chunk,
    ConnectionLost,
    Datagram,
    Delay,
    Eof,
    Event,
    PauseReading,
    ResumeReading,
)
from ._strategies import (
    DEFAULT_DELIMITERS,
    _Bias,
    _byte_strings,
    _check_byte_strings,
    _check_delimiters,
    _check_flag,
    _check_hints,
    _check_length_prefix,
    chunkings,
)

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

__all__ = ["datagram_schedules", "schedules"]

_DELAY = "delay"
_PAUSE = "pause"


# The errno a socket reports with each OSError subclass (the one `OSError(code,
# ...)` maps to that subclass; EACCES of the two PermissionError codes, as a
# socket's sendto() gives it, and EPIPE of BrokenPipeError's two).
_ERRNOS: dict[type[OSError], int] = {
    BlockingIOError: errno.EAGAIN,
    BrokenPipeError: errno.EPIPE,
    ChildProcessError: errno.ECHILD,
    ConnectionAbortedError: errno.ECONNABORTED,
    ConnectionRefusedError: errno.ECONNREFUSED,
    ConnectionResetError: errno.ECONNRESET,
    FileExistsError: errno.EEXIST,
    FileNotFoundError: errno.ENOENT,
    InterruptedError: errno.EINTR,
    IsADirectoryError: errno.EISDIR,
    NotADirectoryError: errno.ENOTDIR,
    PermissionError: errno.EACCES,
    ProcessLookupError: errno.ESRCH,
    TimeoutError: errno.ETIMEDOUT,
}


def _error(error_type: type[Exception]) -> Exception:
    """Return an instance of `error_type` as a socket would raise it.

    An OSError subclass (yours too, through its bases) gets its errno and
    ``os.strerror`` text; any other type, `OSError` and `ConnectionError`
    themselves included (no errno belongs to them alone), gets a message.
    """
    for base in error_type.__mro__:
        code = _ERRNOS.get(base)
        if code is not None:
            return error_type(code, os.strerror(code))
    return error_type(f"{error_type.__name__} from the schedule")


def _truncate(pieces: list[bytes], kept: int) -> list[bytes]:
    """Return the chunks of the first ``kept`` bytes of ``pieces``."""
    result: list[bytes] = []
    for piece in pieces:
        if kept <= 0:
            break
        result.append(piece[:kept])
        kept -= len(piece)
    return result


@st.composite
def _draw_schedules(
    draw: DrawFn,
    chunks: SearchStrategy[list[bytes]],
    eof: bool | None,
    operations: tuple[str | None, ...],
    delays: SearchStrategy[float],
    errors: tuple[type[Exception], ...],
    early_eof: _Bias | None,
) -> list[Event]:
    pieces = draw(chunks)
    events: list[Event] = []
    paused = False
    lost_before: int | None = None
    if errors:
        lost_before = draw(st.none() | st.integers(0, len(pieces)))
    early = False
    if early_eof is not None and lost_before is None and pieces:
        data = b"".join(pieces)
        # How many bytes the EOF drops from the end: None first, then the
        # fewest, so that examples shrink towards the whole stream.  Hinted
        # offsets (mid-delimiter, mid-character, mid-prefix) as for the cuts.
        dropped: SearchStrategy[int] = st.integers(1, len(data))
        hinted = sorted(len(data) - offset for offset in early_eof.offsets(data))
        if hinted:
            dropped = st.one_of(dropped, st.sampled_from(hinted))
        drop = draw(st.none() | dropped)
        if drop is not None and draw(st.integers(0, 3)) == 3:
            # A quarter of early EOFs drop all of it: the peer closing before it
            # sent a byte, one value among many otherwise, is a bug of its own.
            drop = len(data)
        if drop is not None:
            early = True
            pieces = _truncate(pieces, len(data) - drop)
    for index, piece in enumerate(pieces):
        if index == lost_before:
            break
        if index and len(operations) > 1:
            operation = draw(st.sampled_from(operations))
            if operation == _DELAY:
                events.append(Delay(draw(delays)))
            elif operation == _PAUSE:
                events.append(ResumeReading() if paused else PauseReading())
                paused = not paused
                if paused and _DELAY in operations:
                    events.append(Delay(draw(delays)))
        events.append(Chunk(piece))
    if paused:
        events.append(ResumeReading())
    if lost_before is not None:
        events.append(ConnectionLost(_error(draw(st.sampled_from(errors)))))
    elif early or eof is True or (eof is None and not draw(st.booleans())):
        events.append(Eof())
    return events


def schedules(
    data: bytes | SearchStrategy[bytes],
    *,
    min_size: int = 1,
    max_size: int | None = None,
    eof: bool | None = True,
    early_eof: bool = False,
    pauses: bool = True,
    delays: bool = True,
    max_delay: float = 0.01,
    errors: Iterable[type[Exception]] = (),
    delimiters: Iterable[bytes] = DEFAULT_DELIMITERS,
    utf8: bool = True,
    length_prefix: int | None = None,
    hints: Iterable[int] | Callable[[bytes], Iterable[int]] | None = None,
) -> SearchStrategy[list[Event]]:
    """Return a strategy for schedules that deliver ``data`` in reads, with pauses and delays.

    Chunking alone misses bugs that need time to pass between reads, reading
    to stop and start again (the reads then coalesce), or the connection to
    break partway.  Deliver the drawn schedule with `feed_async` (or `feed`
    when ``delays=False``).

    Args:
        data: The bytes to deliver, or a strategy for them.
        min_size: The fewest reads, as for `chunkings`.
        max_size: The most reads, as for `chunkings`.
        eof: End with `Eof` (True), never (False), or either (None).
        early_eof: True to let the `Eof` come before the last byte too: the
            schedule may deliver only a drawn prefix of ``data`` (possibly
            none of it), then `Eof`, to find bugs with an EOF in the middle
            of a frame.  The prefix often ends at a hinted offset (inside a
            delimiter, a UTF-8 character or a length prefix).  False, the
            default, always delivers all of ``data`` before an `Eof`.
            Needs ``eof`` True or None.
        pauses: Put `PauseReading`/`ResumeReading` pairs between reads.
        delays: Put `Delay` events between reads.
        max_delay: The longest delay, in seconds of loop time (>= 0 and
            finite).  Without looptime every delay is real time, hence the
            small default.
        errors: Exception types: when given, the connection may instead be
            lost before any read with one of them (`ConnectionLost`), for
            example ``[ConnectionResetError]``.  An OSError subclass is built
            as a socket raises it, with its errno and ``os.strerror`` text:
            ``ConnectionResetError(ECONNRESET, 'Connection reset by peer')``,
            `BrokenPipeError` with ``EPIPE``, `ConnectionAbortedError` with
            ``ECONNABORTED``, `TimeoutError` with ``ETIMEDOUT``, and so on;
            other types, `OSError` itself included, get a message only.
        delimiters: As for `chunkings`.
        utf8: As for `chunkings`.
        length_prefix: As for `chunkings`.
        hints: As for `chunkings` (and where an early EOF may fall).

    Returns:
        A strategy for lists of events (`Chunk`, `PauseReading`,
        `ResumeReading`, `Delay`, `Eof` and `ConnectionLost`).

    Raises:
        hypothesis.errors.InvalidArgument: An argument is out of range; the
            message names it.

    Example::

        @given(nst.schedules(b"PING\\r\\n" * 3))
        async def test_pings(schedule):
            ...
            await nst.feed_async(protocol, schedule)

    Examples shrink towards the bare chunks of `chunkings`, then EOF, with no
    pauses, delays or lost connection; an early EOF shrinks towards the whole
    data, one byte short.
    """
    chunks = chunkings(
        data,
        min_size=min_size,
        max_size=max_size,
        delimiters=delimiters,
        utf8=utf8,
        length_prefix=length_prefix,
        hints=hints,
    )
    if eof is not None and not isinstance(eof, bool):
        raise InvalidArgument(f"eof must be True, False or None, got {eof!r}")
    early: _Bias | None = None
    if _check_flag("early_eof", early_eof):
        if eof is False:
            raise InvalidArgument(
                "early_eof=True needs eof=True or None, got eof=False: "
                "a schedule without an EOF has no early EOF"
            )
        early = _Bias(
            delimiters=_check_delimiters(delimiters),
            utf8=utf8,
            length_prefix=_check_length_prefix(length_prefix),
            hints=_check_hints(hints),
        )
    operations: tuple[str | None, ...] = (None,)
    if _check_flag("delays", delays):
        operations += (_DELAY,)
    if _check_flag("pauses", pauses):
        operations += (_PAUSE,)
    return _draw_schedules(
        chunks, eof, operations, _delay_values(max_delay), _error_types(errors), early
    )


def _delay_values(max_delay: object) -> SearchStrategy[float]:
    """The delays a schedule draws, 0 to `max_delay` seconds; checked."""
    if isinstance(max_delay, bool) or not isinstance(max_delay, (int, float)):
        raise InvalidArgument(f"max_delay must be a number >= 0, got {max_delay!r}")
    longest = _number("max_delay", max_delay)  # an int too large for a float is inf
    if not 0 <= longest < math.inf:
        raise InvalidArgument(f"max_delay must be >= 0 and finite, got {max_delay!r}")
    return st.floats(0, longest, allow_nan=False, allow_infinity=False)


def _error_types(errors: object) -> tuple[type[Exception], ...]:
    """`errors` as a tuple of exception types; checked."""
    if isinstance(errors, type):
        raise InvalidArgument(
            "errors must be an iterable of exception types, not a single class; "
            f"write errors=[{errors.__name__}]"
        )
    try:
        error_types = tuple(cast("Iterable[object]", errors))
    except TypeError:
        raise InvalidArgument(
            f"errors must be an iterable of exception types, such as "
            f"[ConnectionResetError], got {errors!r}"
        ) from None
    for error in error_types:
        if not (isinstance(error, type) and issubclass(error, Exception)):
            raise InvalidArgument(f"errors must hold Exception subclasses, got {error!r} in it")
        try:
            _error(error)
        except Exception as failure:
            raise InvalidArgument(
                f"errors: {error.__name__} cannot be made as a schedule makes each error, "
                "with (errno, message) for an OSError and one message otherwise: "
                f"{type(failure).__name__}: {failure}"
            ) from None
    return cast("tuple[type[Exception], ...]", error_types)


_DELIVER = "deliver"
_LOSE = "lose"
_DUPLICATE = "duplicate"
_TRUNCATE = "truncate"


@st.composite
def _draw_datagram_schedules(
    draw: DrawFn,
    datagrams: Sequence[bytes] | SearchStrategy[Sequence[bytes]],
    fates: tuple[str, ...],
    reordering: bool,
    delay_values: SearchStrategy[float] | None,
    errors: tuple[type[Exception], ...],
) -> list[Datagram | Delay | ConnectionLost]:
    if isinstance(datagrams, st.SearchStrategy):
        requirement = "datagrams strategy must generate sequences of bytes"
        sent = _byte_strings(draw(datagrams), requirement)
    else:
        sent = tuple(datagrams)
    arriving: dict[int, Datagram] = {}
    for index, data in enumerate(sent):
        fate = draw(st.sampled_from(fates)) if len(fates) > 1 else _DELIVER
        if fate == _TRUNCATE:
            size = draw(_kept_sizes(len(data))) if data else 0
            arriving[index] = Datagram(bytes(data[:size]), index)
        elif fate != _LOSE:
            arriving[index] = Datagram(bytes(data), index)
        if fate == _DUPLICATE:
            arriving[len(sent) + index] = arriving[index]
    # The order is drawn over every possible arrival, whatever the fates, so that
    # losing a datagram never makes an example simpler to hypothesis.
    # In order, a duplicate arrives right after its original.
    copies = (0, len(sent)) if _DUPLICATE in fates else (0,)
    slots = [index + copy for index in range(len(sent)) for copy in copies]
    if reordering:
        # Each arrival is drawn a delay: it comes behind the arrivals due up to
        # that many places after it, in its own order among those delayed as far.
        # Delays shrink to 0, and lowering one only moves its arrival back towards
        # its place: a reordering shrinks to the fewest arrivals out of place.
        # Every order can be drawn (delays up to 2n - 1 place each arrival).
        delays = [draw(st.integers(0, 2 * len(slots) - 1)) for _ in slots]
        order = sorted(
            range(len(slots)), key=lambda due: (due + delays[due], delays[due] > 0, due)
        )
        slots = [slots[due] for due in order]
    if delay_values is None and not errors:
        return [arriving[slot] for slot in slots if slot in arriving]
    # Around the arrivals: an ICMP error (error_received) and a pause before each,
    # and an error after the last.  None, the first choice, shrinks them away.
    # Drawn for every possible arrival, as the order is, and kept for those that
    # arrive: a loss must not make an example shorter, hence simpler.
    events: list[Datagram | Delay | ConnectionLost] = []
    for slot in [*slots, None]:
        error = draw(st.none() | st.sampled_from(errors)) if errors else None
        seconds = None
        if slot is not None and delay_values is not None:
            seconds = draw(st.none() | delay_values)
        if slot is not None and slot not in arriving:
            continue
        if error is not None:
            events.append(ConnectionLost(_error(error)))
        if seconds is not None:
            events.append(Delay(seconds))
        if slot is not None:
            events.append(arriving[slot])
    return events


def _kept_sizes(n: int) -> SearchStrategy[int]:
    """How much of an `n`-byte datagram a truncation keeps: 0 to n - 1 bytes.

    Drawn as often near whole as near empty (hypothesis favours small numbers,
    which alone made a cut that keeps most of a datagram rare), and shrinking
    towards keeping little, then towards the shortest cut that fails.
    """
    return st.one_of(st.integers(0, n - 1), st.integers(1, n).map(lambda lost: n - lost))


@overload
def datagram_schedules(
    datagrams: Sequence[bytes] | SearchStrategy[Sequence[bytes]],
    *,
    loss: bool = ...,
    duplication: bool = ...,
    reordering: bool = ...,
    truncation: bool = ...,
    delays: Literal[False] = ...,
    max_delay: float = ...,
    errors: tuple[()] = ...,
) -> SearchStrategy[list[Datagram]]: ...


@overload
def datagram_schedules(
    datagrams: Sequence[bytes] | SearchStrategy[Sequence[bytes]],
    *,
    loss: bool = ...,
    duplication: bool = ...,
    reordering: bool = ...,
    truncation: bool = ...,
    delays: bool,
    max_delay: float = ...,
    errors: Iterable[type[Exception]] = ...,
) -> SearchStrategy[list[Datagram | Delay | ConnectionLost]]: ...


@overload
def datagram_schedules(
    datagrams: Sequence[bytes] | SearchStrategy[Sequence[bytes]],
    *,
    loss: bool = ...,
    duplication: bool = ...,
    reordering: bool = ...,
    truncation: bool = ...,
    max_delay: float = ...,
    errors: Iterable[type[Exception]],
) -> SearchStrategy[list[Datagram | Delay | ConnectionLost]]: ...


def datagram_schedules(
    datagrams: Sequence[bytes] | SearchStrategy[Sequence[bytes]],
    *,
    loss: bool = True,
    duplication: bool = True,
    reordering: bool = True,
    truncation: bool = True,
    delays: bool = False,
    max_delay: float = 0.01,
    errors: Iterable[type[Exception]] = (),
) -> SearchStrategy[list[Datagram]] | SearchStrategy[list[Datagram | Delay | ConnectionLost]]:
    """Return a strategy for what arrives when ``datagrams`` are sent over a lossy network.

    UDP promises nothing: datagrams get lost, duplicated and reordered, and a
    receive buffer that is too small truncates them.  Deliver the drawn list
    to a `asyncio.DatagramProtocol` with `feed` or `feed_async` (`feed_async`
    only with ``delays``).  With ``delays`` or ``errors`` the list holds
    `Delay` and `ConnectionLost` events too, for a client's timeouts, retries
    and ICMP errors.

    Args:
        datagrams: The datagrams sent, in order, or a strategy for them.
        loss: Some datagrams may not arrive.
        duplication: Some datagrams may arrive twice.
        reordering: Datagrams may arrive in any order.
        truncation: Some datagrams may arrive cut short (possibly empty).
        delays: Put a `Delay` before some arrivals (the first too: an answer
            later than the client waits).
        max_delay: The longest delay, in seconds of loop time (>= 0 and
            finite), as for `schedules`.
        errors: Exception types, such as ``[ConnectionRefusedError]`` (an ICMP
            "port unreachable"): a `ConnectionLost` with one of them may come
            before any arrival and after the last, which the feed hands to
            ``error_received``; built as for `schedules`.

    Returns:
        A strategy for lists of `Datagram` values, each with the index of the
        datagram it came from, with `Delay` and `ConnectionLost` events among
        them when asked for.

    Raises:
        hypothesis.errors.InvalidArgument: An argument is not of the accepted type.

    Example::

        @given(nst.datagram_schedules([b"a", b"b", b"c"]))
        def test_receiver(arrivals):
            nst.feed(protocol, arrivals, addr=("127.0.0.1", 9))

    Examples shrink towards every datagram arriving once, whole and in order,
    with no delay and no error.
    With reordering the only fault in play, a reordering shrinks to the fewest
    datagrams out of place; with loss in play too, the shrinker may lose the
    datagrams that would have to move instead.
    """
    datagrams = _check_byte_strings("datagrams", datagrams)
    fates: tuple[str, ...] = (_DELIVER,)
    if _check_flag("loss", loss):
        fates += (_LOSE,)
    if _check_flag("duplication", duplication):
        fates += (_DUPLICATE,)
    if _check_flag("truncation", truncation):
        fates += (_TRUNCATE,)
    reorder = _check_flag("reordering", reordering)
    delay_values: SearchStrategy[float] | None = _delay_values(max_delay)  # checked anyway
    if not _check_flag("delays", delays):
        delay_values = None
    return _draw_datagram_schedules(datagrams, fates, reorder, delay_values, _error_types(errors))
