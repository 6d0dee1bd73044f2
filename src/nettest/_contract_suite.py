"""The transport side of the contract: a conformance suite for asyncio stream transports.

A user hands :func:`check_transport_pair` a factory that connects two
transports; it runs every case of ``_contract_cases`` on a fresh pair, with
sanitized recording protocols (``_contract_harness``), and reports the first
case that fails by name.  :func:`check_transport_case` runs one, so that a test
suite can parametrize over :data:`CONFORMANCE_CASES`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from typing import Any

from . import _contract_cases, _contract_cases_flow  # noqa: F401  (they register the cases)
from ._contract import ProtocolViolation
from ._contract_harness import (
    _CASES,
    _HALF_CLOSE_CASES,
    PairFactoryMisuse,
    TransportPairFactory,
    _CaseError,
    _expect,
    _Harness,
)
from ._hygiene_instruments import _a_handler_task_cancelled
from ._recording import check_seconds
from ._seed import check_seed
from ._settings import default_timeout

__all__ = [
    "CONFORMANCE_CASES",
    "HALF_CLOSE_CASES",
    "ConformanceError",
    "TransportPairFactory",
    "check_transport_case",
    "check_transport_pair",
]


class _DefaultTimeout:
    def __repr__(self) -> str:
        return "default_timeout()"


#: Stands for nettest's default timeout, read when a check starts.
_DEFAULT_TIMEOUT: Any = _DefaultTimeout()

#: The names of the conformance cases, in the order :func:`check_transport_pair` runs them.
CONFORMANCE_CASES: tuple[str, ...] = tuple(_CASES)

#: The cases that check half-close itself (``write_eof()`` and what follows it),
#: which need a pair that can half-close: ``half_close=False`` leaves them out.
HALF_CLOSE_CASES: frozenset[str] = frozenset(_HALF_CLOSE_CASES)


def _check_arguments(make_pair: object, seed: object) -> None:
    if not callable(make_pair):
        raise TypeError(
            f"make_pair must be a TransportPairFactory (a callable), got {make_pair!r}"
        )
    try:
        signature = inspect.signature(make_pair)
    except (TypeError, ValueError):
        signature = None  # none to read (a builtin): the call will say
    if signature is not None:
        try:
            signature.bind(None, None)
        except TypeError:
            raise TypeError(
                "make_pair must take the client's and the server's protocol factories, as "
                f"TransportPairFactory does; {make_pair!r} takes {signature}"
            ) from None
    check_seed(seed)


def _check_half_close(half_close: object) -> bool:
    if not isinstance(half_close, bool):
        raise TypeError(
            f"half_close must be True or False (whether the transports can write_eof()), "
            f"got {half_close!r}"
        )
    return half_close


def _check_timeout(timeout: object) -> float | None:
    if timeout is _DEFAULT_TIMEOUT:
        return default_timeout()
    return check_seconds("timeout", timeout, allow_none=True)


class ConformanceError(AssertionError):
    """A transport pair failed a conformance case.

    The message names the case and says what was expected and what happened
    instead.
    """

    def __init__(self, case: str, message: str) -> None:
        super().__init__(f"conformance case {case!r} failed: {message}")
        #: The name of the case that failed, one of :data:`CONFORMANCE_CASES`.
        self.case = case


async def check_transport_case(
    make_pair: TransportPairFactory,
    case: str,
    *,
    seed: int = 0,
    timeout: float | None = _DEFAULT_TIMEOUT,
    half_close: bool = True,
) -> None:
    """Run one conformance case on the transports *make_pair* connects.

    Use it to run the suite as separate pytest tests, one per case, by
    parametrizing over :data:`CONFORMANCE_CASES`: each failure then names its
    case in the test id, and the other cases still run.

    Args:
        make_pair: connects a client and a server transport; see
            :class:`TransportPairFactory`.
        case: one of :data:`CONFORMANCE_CASES`.
        seed: seeds the sizes and contents of the writes, an int in [0, 2**64).
        timeout: seconds each wait of the case may take, a finite number > 0 (by
            default nettest's default timeout; None waits forever).
        half_close: False for transports that cannot half-close (``can_write_eof()``
            is False, as for TLS): the case then ends a stream with ``close()``
            instead of ``write_eof()``, and requires ``write_eof()`` to raise
            :exc:`NotImplementedError`.

    Raises:
        ConformanceError: if the transports break the contract.
        ValueError: if *case* is not one of :data:`CONFORMANCE_CASES`, or is one of
            :data:`HALF_CLOSE_CASES` with *half_close* False, *timeout* is not > 0
            and finite, or *seed* is outside [0, 2**64).
        TypeError: if *case* is not a str, *timeout* not a number (a bool or a
            str included), *seed* not an int, *half_close* not a bool, or
            *make_pair* not callable, not taking two protocol factories, or not
            returning an async context manager.

    Example::

        @pytest.mark.asyncio
        @pytest.mark.parametrize("case", nettest.CONFORMANCE_CASES)
        async def test_my_transport_conforms(case):
            await nettest.check_transport_case(my_pair, case)
    """
    _check_arguments(make_pair, seed)
    if not isinstance(case, str):
        raise TypeError(f"case must be a name from CONFORMANCE_CASES (a str), got {case!r}")
    try:
        function = _CASES[case]
    except KeyError:
        raise ValueError(
            f"case must be one of CONFORMANCE_CASES ({', '.join(_CASES)}), got {case!r}"
        ) from None
    if not _check_half_close(half_close) and case in HALF_CLOSE_CASES:
        raise ValueError(
            f"case {case!r} checks half-close, which half_close=False says the transports "
            "cannot do: run the cases of CONFORMANCE_CASES not in HALF_CLOSE_CASES"
        )
    timeout = _check_timeout(timeout)
    loop = asyncio.get_running_loop()
    harness = _Harness(make_pair, seed=seed, timeout=timeout, half_close=half_close)
    previous = loop.get_exception_handler()

    def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _a_handler_task_cancelled(context):
            # asyncio's own report as a pair factory cancels a start_server handler
            # task (cpython#113538), not the transports': as it would go.
            if previous is None:
                loop.default_exception_handler(context)
            else:
                previous(loop, context)
            return
        harness.loop_errors.append(context)

    loop.set_exception_handler(record)
    try:
        await function(harness)
        unexpected = harness.take_loop_errors()
        _expect(not unexpected, f"the loop's exception handler was called: {_listed(unexpected)}")
    except PairFactoryMisuse as exc:
        # A TypeError as it prints too, not the private class that marks it.
        raise TypeError(str(exc)) from None
    except (AssertionError, ProtocolViolation) as exc:
        raise ConformanceError(case, str(exc) + _meanwhile(harness)) from exc
    except Exception as exc:
        raise ConformanceError(case, f"unexpected {exc!r}{_meanwhile(harness)}") from exc
    finally:
        loop.set_exception_handler(previous)


def _listed(contexts: list[dict[str, Any]]) -> str:
    return "; ".join(f"{c.get('message')!r} {c.get('exception')!r}" for c in contexts)


def _meanwhile(harness: _Harness) -> str:
    """The exception handler's reports a failed case had not checked yet: often its cause.

    Not those of the exceptions the case itself made a protocol raise: the
    case expects them, and they explain nothing.
    """
    unexpected = [
        context
        for context in harness.take_loop_errors()
        if not isinstance(context.get("exception"), _CaseError)
    ]
    if not unexpected:
        return ""
    return f" (meanwhile the loop's exception handler was called: {_listed(unexpected)})"


async def check_transport_pair(
    make_pair: TransportPairFactory,
    *,
    seed: int = 0,
    timeout: float | None = _DEFAULT_TIMEOUT,
    skip: Iterable[str] = (),
    half_close: bool = True,
) -> None:
    """Run every conformance case on the transports *make_pair* connects.

    The suite checks what every asyncio stream transport owes its protocols, as
    the standard library's socket transports and uvloop's behave: callback
    order, data integrity, EOF and half-close, close and abort, write flow
    control and its water marks, read pausing, ``BufferedProtocol`` delivery,
    ``set_protocol``, ``get_extra_info``, and the errors bad calls get.  Every
    protocol the suite connects is wrapped with :func:`sanitize`.  Cases run one
    after another, each on a fresh pair; the first failure stops the run.

    Args:
        make_pair: connects a client and a server transport; see
            :class:`TransportPairFactory`.
        seed: seeds the sizes and contents of the writes, an int in [0, 2**64).
        timeout: seconds each wait may take, a finite number > 0 (by default
            nettest's default timeout; None waits forever).
        skip: names of cases not to run, from :data:`CONFORMANCE_CASES` (such as
            ``["start_tls"]`` for transports that cannot carry TLS).
        half_close: False for transports that cannot half-close (``can_write_eof()``
            is False, as for TLS): the cases of :data:`HALF_CLOSE_CASES` are left
            out, the others end a stream with ``close()`` instead of
            ``write_eof()``, and ``write_eof()`` must raise :exc:`NotImplementedError`.

    Raises:
        ConformanceError: naming the first case that failed.
        ValueError: if *timeout* is not > 0 and finite, *seed* is outside
            [0, 2**64), or *skip* names something that is not a case.
        TypeError: if *timeout* is not a number (a bool or a str included),
            *seed* not an int, *half_close* not a bool, *make_pair* not callable,
            not taking two protocol factories or not returning an async context
            manager, or *skip* a single string rather than a list of names.

    Example::

        @pytest.mark.asyncio
        async def test_my_transport_conforms():
            await nettest.check_transport_pair(my_pair)
    """
    _check_arguments(make_pair, seed)
    timeout = _check_timeout(timeout)
    skipped = _check_skip(skip)
    if not _check_half_close(half_close):
        skipped |= HALF_CLOSE_CASES
    for case in CONFORMANCE_CASES:
        if case not in skipped:
            await check_transport_case(
                make_pair, case, seed=seed, timeout=timeout, half_close=half_close
            )


def _check_skip(skip: object) -> frozenset[str]:
    if isinstance(skip, (str, bytes)) or not isinstance(skip, Iterable):
        raise TypeError(f"skip must be a list of case names, such as ['start_tls'], got {skip!r}")
    names = list(skip)
    unknown = [name for name in names if not isinstance(name, str) or name not in _CASES]
    if unknown:
        raise ValueError(
            f"skip must name cases of CONFORMANCE_CASES ({', '.join(_CASES)}), got "
            f"{', '.join(map(repr, unknown))}"
        )
    return frozenset(names)
