"""What the proxy and the memory transports share: fault checks, fault changes, action queues."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from nettest._fault_actions import Close, Deliver, SendEof
from nettest._fault_backend import ActionQueue, FaultsInForce, TimedAction
from nettest._fault_trace import ConnectionTrace
from nettest._faults import Drop, Fault, Latency, Stall, check_faults, other_flow

# -- check_faults and other_flow ---------------------------------------------------------


def test_check_faults_returns_a_tuple_of_what_it_was_given() -> None:
    faults = [Latency(0.1), Stall()]
    assert check_faults(iter(faults), "stream", repr) == (Latency(0.1), Stall())


def test_check_faults_refuses_a_non_fault() -> None:
    with pytest.raises(TypeError, match=r"expected a fault such as Latency\(0.1\), got 'x'"):
        check_faults(["x"], "stream", repr)  # type: ignore[list-item]


def test_check_faults_refuses_the_other_kind_in_the_callers_words() -> None:
    with pytest.raises(ValueError, match=r"^Drop\(\) is not for streams$"):
        check_faults([Latency(0.1), Drop()], "stream", lambda f: f"{f!r} is not for streams")
    assert check_faults([Drop()], "datagram", repr) == (Drop(),)


def test_other_flow() -> None:
    assert other_flow("upstream") == "downstream"
    assert other_flow("downstream") == "upstream"


# -- FaultsInForce ---------------------------------------------------------------------------


class _Backend(FaultsInForce):
    def __init__(self) -> None:
        self._faults = ()
        self.changes: list[tuple[Fault, ...]] = []

    def _check(self, faults: Iterable[Fault]) -> tuple[Fault, ...]:
        return check_faults(faults, "stream", lambda f: f"{f!r} does not apply here")

    def _faults_changed(self, faults: tuple[Fault, ...]) -> None:
        self.changes.append(faults)


def test_faults_in_force_add_remove_clear_report_each_change() -> None:
    backend = _Backend()
    backend.add(Latency(0.1))
    backend.add(Stall())
    backend.remove(Latency(0.1))
    backend.clear()
    assert backend.changes == [(Latency(0.1),), (Latency(0.1), Stall()), (Stall(),), ()]
    assert backend.faults == ()


def test_faults_in_force_refuses_without_changing_anything() -> None:
    backend = _Backend()
    backend.add(Latency(0.1))
    with pytest.raises(ValueError, match=r"^Drop\(\) does not apply here$"):
        backend.add(Drop())
    with pytest.raises(ValueError, match=r"Stall\(\) is not in force; faults: \[Latency"):
        backend.remove(Stall())
    assert backend.faults == (Latency(0.1),)
    assert backend.changes == [(Latency(0.1),)]


# -- ActionQueue ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_action_queue_keeps_order_at_equal_deadlines() -> None:
    loop = asyncio.get_running_loop()
    done: list[bytes] = []
    queue = ActionQueue(loop, lambda action: done.append(_data(action)))
    at = loop.time() + 0.02
    for index in range(20):
        queue.append(Deliver(at, "downstream", b"%d" % index))
    queue.kick()
    assert done == []
    await asyncio.sleep(0.05)
    assert done == [b"%d" % index for index in range(20)]


@pytest.mark.asyncio
async def test_action_queue_performs_each_action_once_when_perform_kicks_again() -> None:
    loop = asyncio.get_running_loop()
    done: list[bytes] = []

    def perform(action: TimedAction) -> None:
        done.append(_data(action))
        queue.kick()  # as a receiver that answers at once would

    queue = ActionQueue(loop, perform)
    for data in (b"a", b"b", b"c"):
        queue.append(Deliver(loop.time(), "upstream", data))
    queue.kick()
    assert done == [b"a", b"b", b"c"]


@pytest.mark.asyncio
async def test_action_queue_held_actions_wait_for_the_next_kick() -> None:
    loop = asyncio.get_running_loop()
    done: list[TimedAction] = []
    ready = False
    queue = ActionQueue(loop, done.append, held=lambda action: not ready)
    eof = SendEof(loop.time(), "upstream")
    queue.append(eof)
    queue.kick()
    assert done == []
    ready = True
    queue.kick()
    assert done == [eof]


@pytest.mark.asyncio
async def test_action_queue_timer_calls_due_and_close_stops_everything() -> None:
    loop = asyncio.get_running_loop()
    done: list[TimedAction] = []
    calls: list[str] = []
    queue = ActionQueue(loop, done.append, due=lambda: calls.append("due"))
    queue.append(Close(loop.time() + 0.01, "upstream", "test"))
    queue.kick()
    await asyncio.sleep(0.03)
    assert calls == ["due"]
    assert done == []  # `due` decides when to kick
    queue.close()
    queue.kick()
    assert done == []

    closed = ActionQueue(loop, done.append)
    closed.append(Close(loop.time() + 0.01, "upstream", "test"))
    closed.kick()
    closed.close()
    await asyncio.sleep(0.03)
    assert done == []


def _data(action: TimedAction) -> bytes:
    assert isinstance(action, Deliver)
    return action.data


# -- ConnectionTrace._forwarded ---------------------------------------------------------------


@pytest.mark.parametrize(("kind", "prefix"), [("tcp", ""), ("udp", "datagram ")])
def test_trace_forwarded_counts_each_direction(kind: str, prefix: str) -> None:
    trace = ConnectionTrace(_index=1, _kind=kind, _peer=None, _start=10.0)
    trace._forwarded(10.5, "upstream", b"abc")
    trace._forwarded(11.0, "downstream", b"de")
    assert (trace.upstream_bytes, trace.downstream_bytes) == (3, 2)
    assert [event.what for event in trace.events] == [
        f"{prefix}3 bytes b'abc'",
        f"{prefix}2 bytes b'de'",
    ]
    assert [event.time for event in trace.events] == [0.5, 1.0]
