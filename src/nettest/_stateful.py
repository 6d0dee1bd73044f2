"""Hypothesis state machines whose rules, invariants and initializers may be coroutines.

Theory of operation
-------------------
Hypothesis calls each rule as ``rule.function(machine, **arguments)`` and each
invariant as ``invariant.function(machine)``, synchronously.  When a subclass of
`AsyncRuleBasedStateMachine` is created, every rule, initializer and invariant
defined as ``async def`` gets a synchronous twin that runs the coroutine to
completion on the machine's event loop, and the twin replaces the coroutine
function in hypothesis's record of the rule.  Everything else (bundles,
preconditions, shrinking, the printed steps) is hypothesis's own.

Each test case (one machine instance) gets a fresh loop from ``loop_factory``,
so no state leaks from one example to the next.  `teardown` runs the user's
teardown (a coroutine or not), cancels the tasks still pending, shuts down
async generators and the default executor, and closes the loop.

Every class's ``teardown`` (this one's included) is replaced by a wrapper, so
an override's ``super().teardown()`` reaches a wrapper too.  Only the
outermost call, hypothesis's, runs the loop and closes it; a call made while
a teardown is running just runs the base class's teardown, handing back
something to await when it is called from a coroutine (the loop is running
then, and must not be run again or closed under its own feet).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from hypothesis.stateful import RuleBasedStateMachine

__all__ = ["AsyncRuleBasedStateMachine", "StepCancelledError"]

_T = TypeVar("_T")

# The attribute names hypothesis.stateful uses to mark decorated functions.
_MARKERS = (
    "hypothesis_stateful_rule",
    "hypothesis_stateful_initialize_rule",
    "hypothesis_stateful_invariant",
)


def _synchronous(function: Callable[..., Coroutine[Any, Any, _T]]) -> Callable[..., _T]:
    @functools.wraps(function)
    def run(machine: AsyncRuleBasedStateMachine, *args: Any, **kwargs: Any) -> _T:
        return machine.run(function(machine, *args, **kwargs))

    return run


class StepCancelledError(Exception):
    """A step of an `AsyncRuleBasedStateMachine` raised `asyncio.CancelledError`.

    Raised in its place, with it as ``__cause__``: a `BaseException` stops
    hypothesis at once, unshrunk, while this failure is shrunk like any other.
    """


StepCancelledError.__module__ = "nettest.strategies"


class AsyncRuleBasedStateMachine(RuleBasedStateMachine):
    """A hypothesis `~hypothesis.stateful.RuleBasedStateMachine` whose steps may be coroutines.

    Rules, initializers, invariants and `teardown` may be ``async def``: each
    runs to completion on the machine's own event loop, one loop per test
    case.  So a client or server can be driven statefully, with tasks and
    transports that live across steps.  Use hypothesis's own decorators
    (`~hypothesis.stateful.rule`, `~hypothesis.stateful.initialize`,
    `~hypothesis.stateful.invariant`, `~hypothesis.stateful.precondition`,
    bundles); preconditions stay synchronous.

    Run the machine from a synchronous test (``TestX = Machine.TestCase`` or
    `~hypothesis.stateful.run_state_machine_as_test`): a loop cannot run
    inside another running loop.  Create loop-bound objects (streams,
    servers, futures) in an ``async def`` `~hypothesis.stateful.initialize`
    rule or ``async def`` rule (a plain ``def`` one runs outside the loop), not
    in ``__init__``.

    Attributes:
        loop_factory: Makes the loop of each test case, for example
            ``uvloop.new_event_loop``; `asyncio.new_event_loop` by default.
            To run every test case on a loop you own, return it from here
            and set ``close_loop`` to False.
        close_loop: Whether `teardown` closes the loop (True by default).
            Pending tasks are cancelled either way.
        loop: The loop of the running test case.

    Example::

        class EchoMachine(nst.AsyncRuleBasedStateMachine):
            @initialize()
            async def connect(self):
                self.reader, self.writer = await open_echo_connection()

            @rule(data=st.binary(min_size=1))
            async def echo(self, data):
                self.writer.write(data)
                assert await self.reader.readexactly(len(data)) == data

            async def teardown(self):
                self.writer.close()
                await self.writer.wait_closed()

        TestEcho = EchoMachine.TestCase
    """

    loop_factory: ClassVar[Callable[[], asyncio.AbstractEventLoop]] = staticmethod(
        asyncio.new_event_loop
    )
    close_loop: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        defined = _defined_here(cls)
        for name, value in defined.items():
            for marker in _MARKERS:
                record = getattr(value, marker, None)
                if record is None or not inspect.iscoroutinefunction(record.function):
                    continue
                replacement = copy.copy(record)
                # Rule is mutable, Invariant is frozen: set the field the same way for both.
                object.__setattr__(replacement, "function", _synchronous(record.function))
                setattr(cls, name, _as_method(value, marker, replacement))
        teardown = defined.get("teardown")
        if teardown is not None:
            setattr(cls, "teardown", _closing_teardown(teardown))  # noqa: B010

    def __init__(self) -> None:
        super().__init__()
        close_loop: object = type(self).close_loop
        if not isinstance(close_loop, bool):
            raise TypeError(
                f"{type(self).__name__}.close_loop must be True or False, got {close_loop!r}"
            )
        self._nettest_in_teardown = False
        self.loop: asyncio.AbstractEventLoop = type(self).loop_factory()
        from ._hygiene import instrument_loop

        instrument_loop(self.loop)

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` to completion on this test case's loop and return its result.

        Rules defined with ``async def`` are run this way; call it yourself
        from a synchronous rule or precondition when it needs the loop.

        Args:
            coroutine: The coroutine to run.

        Returns:
            What the coroutine returned.

        Raises:
            StepCancelledError: The coroutine raised `asyncio.CancelledError`
                (it awaited a cancelled future or task, say): hypothesis stops at
                a `BaseException` without shrinking the steps or printing them,
                and nothing outside the step can have cancelled it.

        Example::

            @rule()
            def check(self):
                assert self.run(self.client.ping()) == b"PONG"
        """
        with _CancelledStep(getattr(coroutine, "__qualname__", repr(coroutine))):
            return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        """Close the test case's loop, after cancelling the tasks still pending.

        Override it with a coroutine or a plain method to clean up your own
        objects first; the loop is closed after your teardown either way.  An
        override may call ``super().teardown()`` (``await`` it from a
        coroutine, whatever the base class's teardown is): that runs the base
        class's teardown, and the loop stays open until the outermost
        teardown returns.
        """
        # Nothing to do here: the wrapper below closes the loop once the outermost teardown ran.


class _CancelledStep:
    """Turns a step's `asyncio.CancelledError` into a `StepCancelledError`.

    A context manager rather than an ``except`` clause: hypothesis explains a
    failure by the lines only failing examples ran, and an ``except`` clause
    runs for every exception a step raises, while ``__exit__`` runs for every
    step, passing or failing.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        __tracebackhide__ = True
        if isinstance(error, asyncio.CancelledError):
            raise StepCancelledError(
                f"{self.name}() raised CancelledError, which hypothesis would not shrink; "
                "it awaited a cancelled future or task (the CancelledError is this "
                "error's cause)"
            ) from error


def _defined_here(cls: type) -> dict[str, Any]:
    """The attributes `cls` gets from its own body or from plain mixins.

    A mixin (a base that is no state machine) is never wrapped by a subclass
    hook of its own, so its ``async def`` rules and teardown are wrapped in each
    machine class that takes them; what a machine class defines was wrapped when
    that class was made, and is left alone.
    """
    found: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if base is cls or not issubclass(base, RuleBasedStateMachine):
            found.update(vars(base))
        else:
            for name in vars(base):
                found.pop(name, None)
    return found


def _as_method(value: Any, marker: str, record: Any) -> Any:
    """Return a copy of the decorated function `value` carrying `record` under `marker`."""

    @functools.wraps(value)
    def method(*args: Any, **kwargs: Any) -> Any:
        return value(*args, **kwargs)

    setattr(method, marker, record)
    return method


def _closing_teardown(
    teardown: Callable[[AsyncRuleBasedStateMachine], object],
) -> Callable[[AsyncRuleBasedStateMachine], Awaitable[None] | None]:
    """Wrap a class's ``teardown`` so that the outermost call runs it, then closes the loop."""

    @functools.wraps(teardown)
    def run_then_close(machine: AsyncRuleBasedStateMachine) -> Awaitable[None] | None:
        if machine._nettest_in_teardown:
            # An override's super().teardown(): the outermost call closes the loop.
            return _inner_teardown(machine, teardown)
        machine._nettest_in_teardown = True
        try:
            if inspect.iscoroutinefunction(teardown):
                machine.run(teardown(machine))
            else:
                teardown(machine)
        finally:
            machine._nettest_in_teardown = False
            _close_loop(machine.loop, close=type(machine).close_loop)
        return None

    return run_then_close


def _inner_teardown(
    machine: AsyncRuleBasedStateMachine,
    teardown: Callable[[AsyncRuleBasedStateMachine], object],
) -> Awaitable[None] | None:
    """Run a base class's ``teardown`` for an override that calls ``super().teardown()``.

    From a coroutine, the loop is already running: return the base's own
    coroutine, or a done future once a plain base teardown has run, so that
    ``await super().teardown()`` works whatever the base.  From a plain
    method, run the base's teardown to completion.
    """
    running = machine.loop.is_running()
    if inspect.iscoroutinefunction(teardown):
        coroutine = teardown(machine)
        if running:
            return typing.cast("Coroutine[Any, Any, None]", coroutine)
        machine.run(coroutine)
        return None
    teardown(machine)
    if not running:
        return None
    done: asyncio.Future[None] = machine.loop.create_future()
    done.set_result(None)
    return done


# The base's teardown is wrapped too, so that an override may call (or await) it.
setattr(  # noqa: B010
    AsyncRuleBasedStateMachine,
    "teardown",
    _closing_teardown(AsyncRuleBasedStateMachine.teardown),
)


def _close_loop(loop: asyncio.AbstractEventLoop, *, close: bool) -> None:
    if loop.is_closed():
        return
    if not close:
        _cancel_pending(loop)
        return
    try:
        _cancel_pending(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
