"""Tests for AsyncRuleBasedStateMachine: coroutine rules, invariants and clean loops."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import looptime
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from nettest import strategies as nst
from nettest._transport_pairs import memory_stream_pair, memory_transport_pair

FAST = settings(
    database=None,
    max_examples=15,
    stateful_step_count=8,
    suppress_health_check=[HealthCheck.too_slow],
)

loops: list[asyncio.AbstractEventLoop] = []


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.arrived.set()


class EchoMachine(nst.AsyncRuleBasedStateMachine):
    """Drives an echo server over a memory transport pair."""

    sent = Bundle("sent")

    @initialize()  # type: ignore[arg-type]
    async def connect(self) -> None:
        loops.append(asyncio.get_running_loop())
        self.client = ClientProtocol()
        self.transports = memory_transport_pair(self.client, EchoProtocol())
        await asyncio.sleep(0)
        self.expected = b""

    @rule(target=sent, data=st.binary(min_size=1, max_size=8))
    async def send(self, data: bytes) -> bytes:
        self.transports[0].write(data)
        self.expected += data
        while len(self.client.received) < len(self.expected):
            self.client.arrived.clear()
            await asyncio.wait_for(self.client.arrived.wait(), 1)
        return data

    @rule(data=sent)
    def resend(self, data: bytes) -> None:
        self.run(self.send.__wrapped__(self, data))  # type: ignore[attr-defined]

    @precondition(lambda self: len(self.expected) > 0)
    @invariant()
    async def echoed(self) -> None:
        await asyncio.sleep(0)
        assert self.client.received == self.expected

    async def teardown(self) -> None:  # type: ignore[override]
        for transport in self.transports:
            transport.close()
        await asyncio.sleep(0)


def test_async_rules_invariants_and_teardown_run_on_a_fresh_loop_each_time() -> None:
    loops.clear()
    run_state_machine_as_test(EchoMachine, settings=FAST)
    assert len(loops) >= 2
    assert len({id(loop) for loop in loops}) == len(loops)
    assert all(loop.is_closed() for loop in loops)


class BuggyCounter:
    """Loses an increment when two arrive in the same loop turn."""

    def __init__(self) -> None:
        self.value = 0

    async def increment(self) -> None:
        value = self.value
        await asyncio.sleep(0)
        self.value = value + 1


class CounterMachine(nst.AsyncRuleBasedStateMachine):
    @initialize()  # type: ignore[arg-type]
    async def start(self) -> None:
        self.counter = BuggyCounter()
        self.expected = 0

    @rule(n=st.integers(1, 3))  # type: ignore[arg-type]
    async def increment_concurrently(self, n: int) -> None:
        await asyncio.gather(*(self.counter.increment() for _ in range(n)))
        self.expected += n

    @invariant()
    def counted(self) -> None:
        assert self.counter.value == self.expected


def test_a_race_in_an_async_rule_is_found_and_shrunk() -> None:
    with pytest.raises(AssertionError) as failure:
        run_state_machine_as_test(CounterMachine, settings=settings(FAST, max_examples=100))
    steps = "\n".join(getattr(failure.value, "__notes__", []))
    assert "state.increment_concurrently(n=2)" in steps
    assert "state.increment_concurrently(n=1)" not in steps
    assert steps.count("state.increment_concurrently") == 1


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()  # a line only failing examples run: the others never close


class EchoCountMachine(nst.AsyncRuleBasedStateMachine):
    @initialize()  # type: ignore[arg-type]
    async def connect(self) -> None:
        (self.reader, self.writer), server = memory_stream_pair()
        self.server = asyncio.ensure_future(_echo(*server))
        self.sent = 0

    @rule(n=st.integers(1, 10))  # type: ignore[arg-type]
    async def send(self, n: int) -> None:
        self.writer.write(b"x" * n)
        await self.writer.drain()
        self.sent += n
        await self.reader.readexactly(n)
        if self.sent >= 15:
            problem = f"{self.sent} bytes are too many"  # only failing examples, too
            raise ValueError(problem)

    async def teardown(self) -> None:  # type: ignore[override]
        self.writer.close()
        await self.writer.wait_closed()
        await self.server


def test_hypothesis_explains_a_failure_by_the_test_s_lines_not_the_step_runner_s() -> None:
    # hypothesis lists the lines only failing examples ran; running a step must add
    # none of its own (an except clause every failing step passed through did).
    # Long runs, derandomized: with eight steps hypothesis found nothing to explain.
    explaining = settings(FAST, max_examples=100, stateful_step_count=50, derandomize=True)
    with pytest.raises(ValueError, match="are too many") as failure:
        run_state_machine_as_test(EchoCountMachine, settings=explaining)
    notes = "\n".join(getattr(failure.value, "__notes__", []))
    if "Explanation:" not in notes:
        pytest.skip("hypothesis explains only when it can trace (no coverage, no debugger)")
    explained = notes[notes.index("Explanation:") :]
    assert __file__ in explained
    assert "nettest/_stateful.py" not in explained


class CancelsTheOtherTasksMachine(nst.AsyncRuleBasedStateMachine):
    """Cancels every task but its own: a common clean-up, which a step must survive."""

    @initialize()  # type: ignore[arg-type]
    async def start(self) -> None:
        self.background = asyncio.ensure_future(asyncio.sleep(3600))
        self.finished = 0

    @rule()  # type: ignore[arg-type]
    async def cancel_the_others(self) -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        self.finished += 1

    @invariant()
    def background_ended(self) -> None:
        assert self.finished == 0 or self.background.cancelled()


def test_a_step_that_cancels_the_other_tasks_runs_to_its_end() -> None:
    # The step is the only task the runner makes: nothing else of nettest's is
    # among "the others" to be cancelled under it.
    run_state_machine_as_test(CancelsTheOtherTasksMachine, settings=settings(FAST))


class CancelledStepMachine(nst.AsyncRuleBasedStateMachine):
    @rule(n=st.integers(0, 10))  # type: ignore[arg-type]
    async def step(self, n: int) -> None:
        future = asyncio.get_running_loop().create_future()
        if n > 5:
            future.cancel()
            await future  # CancelledError, a BaseException


def test_a_step_ending_in_cancelled_error_is_a_failure_hypothesis_shrinks() -> None:
    with pytest.raises(nst.StepCancelledError, match=r"step\(\) raised CancelledError") as failure:
        run_state_machine_as_test(CancelledStepMachine, settings=settings(FAST, max_examples=100))
    assert isinstance(failure.value.__cause__, asyncio.CancelledError)
    # Shrunk, and its steps printed: one step, at the least failing value.
    steps = "\n".join(getattr(failure.value, "__notes__", []))
    assert steps.count("state.step(") == 1
    assert "state.step(n=6)" in steps


class PendingTaskMachine(nst.AsyncRuleBasedStateMachine):
    tasks: ClassVar[list[asyncio.Task[None]]] = []

    @rule()  # type: ignore[arg-type]
    async def leave_a_task_running(self) -> None:
        self.tasks.append(asyncio.ensure_future(asyncio.sleep(3600)))


def test_teardown_cancels_pending_tasks_and_closes_the_loop() -> None:
    PendingTaskMachine.tasks.clear()
    run_state_machine_as_test(PendingTaskMachine, settings=FAST)
    assert PendingTaskMachine.tasks
    assert all(task.cancelled() for task in PendingTaskMachine.tasks)


made: list[asyncio.AbstractEventLoop] = []


def tracked_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    made.append(loop)
    return loop


class FactoryMachine(nst.AsyncRuleBasedStateMachine):
    loop_factory = tracked_loop

    @rule()  # type: ignore[arg-type]
    async def step(self) -> None:
        assert asyncio.get_running_loop() is self.loop

    def teardown(self) -> None:
        assert not self.loop.is_closed()


def test_loop_factory_and_a_synchronous_teardown() -> None:
    made.clear()
    run_state_machine_as_test(FactoryMachine, settings=FAST)
    assert made
    assert all(loop.is_closed() for loop in made)


class SyncMachine(nst.AsyncRuleBasedStateMachine):
    @rule()
    def step(self) -> None:
        assert self.run(asyncio.sleep(0, result=42)) == 42


def test_synchronous_rules_still_work_and_can_run_coroutines() -> None:
    run_state_machine_as_test(SyncMachine, settings=FAST)


TestEchoMachine = EchoMachine.TestCase
TestEchoMachine.settings = FAST


class GivenLoopMachine(nst.AsyncRuleBasedStateMachine):
    given_loop: ClassVar[asyncio.AbstractEventLoop]
    loop_factory = staticmethod(lambda: GivenLoopMachine.given_loop)
    close_loop = False
    tasks: ClassVar[list[asyncio.Task[None]]] = []

    @rule()  # type: ignore[arg-type]
    async def step(self) -> None:
        self.tasks.append(asyncio.ensure_future(asyncio.sleep(3600)))


def test_a_given_loop_is_reused_and_left_open() -> None:
    loop = GivenLoopMachine.given_loop = asyncio.new_event_loop()
    try:
        run_state_machine_as_test(GivenLoopMachine, settings=FAST)
        assert not loop.is_closed()
        assert GivenLoopMachine.tasks
        assert all(task.cancelled() for task in GivenLoopMachine.tasks)
    finally:
        loop.close()


class LoopTimeMachine(nst.AsyncRuleBasedStateMachine):
    loop_factory = staticmethod(looptime.new_event_loop)

    @rule()  # type: ignore[arg-type]
    async def wait_an_hour(self) -> None:
        start = self.loop.time()
        await asyncio.sleep(3600)
        assert self.loop.time() - start >= 3600


def test_rules_can_run_in_loop_time() -> None:
    wall = time.monotonic()
    run_state_machine_as_test(LoopTimeMachine, settings=FAST)
    assert time.monotonic() - wall < 30


teardowns: list[tuple[str, bool]] = []


def _note(who: str, machine: nst.AsyncRuleBasedStateMachine) -> None:
    teardowns.append((who, machine.loop.is_closed()))


class AsyncBaseMachine(nst.AsyncRuleBasedStateMachine):
    @rule()  # type: ignore[arg-type]
    async def step(self) -> None:
        await asyncio.sleep(0)

    async def teardown(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        _note("async base", self)


class AsyncChildMachine(AsyncBaseMachine):
    async def teardown(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        _note("async child", self)
        await super().teardown()


class AsyncGrandchildMachine(AsyncChildMachine):
    async def teardown(self) -> None:  # type: ignore[override]
        _note("async grandchild", self)
        await super().teardown()


class SyncChildMachine(AsyncBaseMachine):
    def teardown(self) -> None:  # type: ignore[override]
        _note("sync child", self)
        super().teardown()  # type: ignore[unused-coroutine]  # run to completion


class AwaitsTheNettestBaseMachine(nst.AsyncRuleBasedStateMachine):
    @rule()  # type: ignore[arg-type]
    async def step(self) -> None:
        await asyncio.sleep(0)

    async def teardown(self) -> None:  # type: ignore[override]
        _note("awaits the nettest base", self)
        await super().teardown()  # type: ignore[misc]
        _note("awaits the nettest base", self)


class SyncBaseMachine(nst.AsyncRuleBasedStateMachine):
    @rule()
    def step(self) -> None:
        pass

    def teardown(self) -> None:
        _note("sync base", self)
        super().teardown()


class AsyncOverSyncMachine(SyncBaseMachine):
    async def teardown(self) -> None:  # type: ignore[override]
        _note("async over sync", self)
        await super().teardown()  # type: ignore[misc]


ONE_STEP = settings(FAST, max_examples=2, stateful_step_count=1)


@pytest.mark.parametrize(
    ("machine", "order"),
    [
        (AsyncChildMachine, ["async child", "async base"]),
        (AsyncGrandchildMachine, ["async grandchild", "async child", "async base"]),
        (SyncChildMachine, ["sync child", "async base"]),
        (AwaitsTheNettestBaseMachine, ["awaits the nettest base"] * 2),
        (AsyncOverSyncMachine, ["async over sync", "sync base"]),
    ],
)
def test_teardown_overrides_can_call_super_and_the_loop_closes_once_after_them(
    machine: type[nst.AsyncRuleBasedStateMachine], order: list[str]
) -> None:
    teardowns.clear()
    made.clear()
    # Make every loop through tracked_loop, to check each is closed in the end.
    machine.loop_factory = tracked_loop
    try:
        run_state_machine_as_test(machine, settings=ONE_STEP)
    finally:
        del machine.loop_factory
    assert made
    assert teardowns == [(who, False) for who in order] * len(made)
    assert all(loop.is_closed() for loop in made)


class OverridingRulesMachine(AsyncBaseMachine):
    """Rules, initializers and invariants that await the base class's version."""

    calls: ClassVar[list[str]] = []

    @initialize()  # type: ignore[arg-type]
    async def start(self) -> None:
        self.calls.append("start")

    @rule()  # type: ignore[arg-type]
    async def step(self) -> None:
        await super().step()  # type: ignore[misc]
        self.calls.append("step")

    @invariant()
    async def checked(self) -> None:
        await asyncio.sleep(0)
        self.calls.append("checked")


class OverridingAgainMachine(OverridingRulesMachine):
    @initialize()  # type: ignore[arg-type]
    async def start(self) -> None:
        await super().start()  # type: ignore[misc]
        self.calls.append("start again")

    @rule()  # type: ignore[arg-type]
    async def step(self) -> None:
        await super().step()  # type: ignore[misc]
        self.calls.append("step again")

    @invariant()
    async def checked(self) -> None:
        await super().checked()
        self.calls.append("checked again")

    async def teardown(self) -> None:  # type: ignore[override]
        await super().teardown()


def test_rules_initializers_and_invariants_can_await_the_base_classs_version() -> None:
    OverridingRulesMachine.calls.clear()
    teardowns.clear()
    run_state_machine_as_test(OverridingAgainMachine, settings=settings(FAST, max_examples=5))
    calls = OverridingRulesMachine.calls
    assert calls[:4] == ["start", "start again", "checked", "checked again"]
    assert calls.count("step") == calls.count("step again") > 0
    assert teardowns
    assert set(teardowns) == {("async base", False)}


class ConnectionsMixin:
    """A plain mixin (no state machine) whose async rules and teardown a machine takes."""

    conns = Bundle("conns")
    seen: ClassVar[list[object]] = []

    @initialize(target=conns)
    async def open(self) -> str:
        await asyncio.sleep(0)
        return "conn"

    @rule(conn=conns)  # type: ignore[arg-type]
    async def use(self, conn: object) -> None:
        await asyncio.sleep(0)
        self.seen.append(conn)

    async def teardown(self) -> None:
        await asyncio.sleep(0)
        self.seen.append("teardown")


class MixedInMachine(ConnectionsMixin, nst.AsyncRuleBasedStateMachine):  # type: ignore[misc]
    @rule(conn=ConnectionsMixin.conns)
    def check(self, conn: object) -> None:
        assert conn == "conn"  # the initializer's result, not its coroutine


def test_a_plain_mixins_async_rules_and_teardown_run_on_the_loop() -> None:
    ConnectionsMixin.seen.clear()
    run_state_machine_as_test(MixedInMachine, settings=settings(FAST, max_examples=5))
    seen = ConnectionsMixin.seen
    assert set(seen) <= {"conn", "teardown"}
    assert seen.count("teardown") == 5


class BadCloseLoopMachine(nst.AsyncRuleBasedStateMachine):
    close_loop = 1  # type: ignore[assignment]

    @rule()
    def step(self) -> None:
        pass


def test_close_loop_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"BadCloseLoopMachine\.close_loop must be True or False"):
        run_state_machine_as_test(BadCloseLoopMachine, settings=ONE_STEP)
