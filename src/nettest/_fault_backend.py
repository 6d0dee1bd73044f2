"""What the two backends of the fault vocabulary share.

The same fault values drive the loopback proxy (`nettest._proxy`) and the
memory transports (`nettest._memory_faults`).  A test changes the faults of
either in the same way, through `FaultsInForce`; and both carry out the actions
of a `StreamSchedule` in the same way, through one `ActionQueue` per flow.
This module holds each of those once.
"""

from __future__ import annotations

import collections
import dataclasses
import typing
from typing import TypeAlias

from ._fault_actions import Abort, Close, Deliver, SendEof
from ._fault_engine import _SLACK

# Imported at run time although only annotations use it: autodoc evaluates the
# annotations of the classes built on FaultsInForce, this one's ``_faults`` too.
from ._faults import Fault  # noqa: TC001

if typing.TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable

__all__ = ["ActionQueue", "FaultsInForce", "TimedAction"]


class FaultsInForce:
    """The faults in force on a proxy or a memory pair, and the calls that change them.

    A subclass sets ``_faults`` in its constructor, refuses what does not apply
    to it in `_check`, and carries a change out in `_faults_changed`.
    """

    _faults: tuple[Fault, ...]

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults in force, in the order they apply."""
        return self._faults

    def add(self, fault: Fault) -> None:
        """Add a fault; it applies at once, to what is already open too (counting from now).

        Raises:
            ValueError: The fault does not apply to this kind of proxy or pair.
        """
        self._set((*self._faults, *self._check([fault])))

    def remove(self, fault: Fault) -> None:
        """Remove a fault.  Never blocks; what it held back goes on at once.

        What the fault has not let go yet goes on now, in order, through the
        faults that remain, as if it reached them now: the bytes a
        `~nettest.faults.Stall` holds, those queued behind a
        `~nettest.faults.Bandwidth` cap or a `~nettest.faults.Slice`'s pace (and
        pieces need not be read one by one once no ``Slice`` is left), a
        `~nettest.faults.SlowClose`'s FIN; on UDP, what ``Bandwidth`` and
        `~nettest.faults.Reorder` hold.  A `~nettest.faults.Latency` holds nothing
        back: what it delayed is in flight and arrives when due (on TCP, the bytes
        sent after the removal follow it).

        Equal faults each apply, so when several equal *fault*, only the last of
        them (the one added last) goes: ``add(f); add(f); remove(f)`` leaves one
        ``f``, which keeps its state (what it holds, its draws).

        Raises:
            ValueError: The fault is not in force.
        """
        if fault not in self._faults:
            raise ValueError(f"{fault!r} is not in force; faults: {list(self._faults)}")
        # The schedules pair the Nth of equal faults before a change with the Nth
        # after it, so the last of them must be the one that goes.
        last = max(index for index, f in enumerate(self._faults) if f == fault)
        self._set(self._faults[:last] + self._faults[last + 1 :])

    def clear(self) -> None:
        """Remove every fault, each as ``remove()`` does: what they held back goes on at once."""
        self._set(())

    def _set(self, faults: tuple[Fault, ...]) -> None:
        self._faults = faults
        self._faults_changed(faults)

    def _check(self, faults: Iterable[Fault]) -> tuple[Fault, ...]:
        """Return *faults* as a tuple, refusing those that do not apply here."""
        raise NotImplementedError

    def _faults_changed(self, faults: tuple[Fault, ...]) -> None:
        """Apply the faults now in force to what is open."""
        raise NotImplementedError


#: The actions a driver queues per flow: each is carried out at its time.
TimedAction: TypeAlias = Deliver | SendEof | Close | Abort


class ActionQueue:
    """One flow's timed actions, carried out in order, each once its time has come.

    A `StreamSchedule` gives the actions of one flow in non-decreasing time
    order, to be carried out in that order.  asyncio's timer heap does not keep
    equal deadlines in order, so the actions wait in a FIFO and one timer waits
    for the head.

    Args:
        loop: The driver's loop, whose clock the schedule's times are on.
        perform: Carries out one due action.  The action has left the queue
            already, so `perform` may cause `kick` to run again (a receiver that
            answers at once, say).
        held: Whether a due action must wait all the same; `kick` again later.
        due: What the timer calls once the head is due; `kick` by default.
    """

    __slots__ = (
        "_actions",
        "_closed",
        "_due",
        "_held",
        "_loop",
        "_perform",
        "_timer",
        "_timer_at",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        perform: Callable[[TimedAction], None],
        *,
        held: Callable[[TimedAction], bool] | None = None,
        due: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self._perform = perform
        self._held = held
        self._due = due
        self._actions: collections.deque[TimedAction] = collections.deque()
        # Its time kept apart: uvloop's call_at() of a time past gives a plain
        # Handle, which has no when().
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._closed = False

    def __len__(self) -> int:
        """The number of actions waiting."""
        return len(self._actions)

    def append(self, action: TimedAction) -> None:
        """Queue *action* behind the others; `kick` carries it out."""
        self._actions.append(action)

    def join(self) -> None:
        """Let the queued pieces go out together: none needs to be read alone any more."""
        self._actions = collections.deque(
            dataclasses.replace(action, alone=False)
            if isinstance(action, Deliver) and action.alone
            else action
            for action in self._actions
        )

    def kick(self) -> None:
        """Carry out the actions that are due, and set the timer for the next one."""
        actions = self._actions
        # What is due within the slack: the timer fired for it (asyncio runs
        # timers up to its clock's resolution early), and waiting for a clock
        # that only moves when the loop idles (looptime) would spin for ever.
        now = self._loop.time() + _SLACK
        while actions and not self._closed:
            head = actions[0]
            at = head.at
            if at > now:
                timer = self._timer
                if timer is None or self._timer_at != at:
                    if timer is not None:
                        timer.cancel()
                    self._timer = self._loop.call_at(at, self._on_timer)
                    self._timer_at = at
                return
            if self._held is not None and self._held(head):
                return
            actions.popleft()
            self._perform(head)

    def close(self) -> list[TimedAction]:
        """Cancel the timer; carry out nothing more.  Return the actions left undone."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        left = list(self._actions)
        self._actions.clear()
        return left

    def _on_timer(self) -> None:
        self._timer = None
        if self._due is not None:
            self._due()
        else:
            self.kick()
