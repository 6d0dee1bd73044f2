"""The actions a fault schedule asks its driver to carry out.

A schedule (`nettest._fault_engine`) takes events in and gives these frozen
values out; a driver (the proxy's sockets, the memory transports) carries them
out.  They are the whole interface between the two: see the theory of operation
in `nettest._fault_engine`.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TypeAlias

if typing.TYPE_CHECKING:
    from ._faults import Flow

__all__ = [
    "Abort",
    "Action",
    "Close",
    "Deliver",
    "JoinPieces",
    "Pause",
    "RefuseConnection",
    "Resume",
    "SendEof",
    "UnreachableAction",
    "Wake",
]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Write `data` to the receiver of `flow` at time `at`.

    `alone`: the receiver must read `data` apart from what was delivered before it
    (a piece of a `~nettest.faults.Slice`), so the driver waits until it has.
    """

    at: float
    flow: Flow
    data: bytes
    alone: bool = False


@dataclass(frozen=True, slots=True)
class SendEof:
    """Half-close towards the receiver of `flow` at time `at`."""

    at: float
    flow: Flow


@dataclass(frozen=True, slots=True)
class Close:
    """Close both sides of the connection (FIN) at time `at`."""

    at: float
    flow: Flow
    reason: str


@dataclass(frozen=True, slots=True)
class Abort:
    """Reset (RST) the receivers of `flows` at `at`, and close the other side."""

    at: float
    flow: Flow
    flows: tuple[Flow, ...]
    reason: str
    #: The RST is the sender's own, passed on (see `StreamSchedule.peer_reset`),
    #: rather than one a fault makes.
    by_peer: bool = False


@dataclass(frozen=True, slots=True)
class JoinPieces:
    """The pieces queued for `flow` need no longer be read alone.

    The last `~nettest.faults.Slice` on `flow` was removed: the driver lets the
    pieces it still holds go out together, as the bytes after them do.
    """

    flow: Flow


@dataclass(frozen=True, slots=True)
class Pause:
    """Stop reading from the sender of `flow`."""

    flow: Flow


@dataclass(frozen=True, slots=True)
class Resume:
    """Read from the sender of `flow` again."""

    flow: Flow


@dataclass(frozen=True, slots=True)
class Wake:
    """Call the schedule's ``tick()`` at time `at`."""

    at: float


@dataclass(frozen=True, slots=True)
class RefuseConnection:
    """Reset the new connection at once; do not connect upstream."""

    reason: str


@dataclass(frozen=True, slots=True)
class UnreachableAction:
    """Report ``ConnectionRefusedError`` to the sender of `flow` at `at`."""

    at: float
    flow: Flow


Action: TypeAlias = (
    Deliver
    | SendEof
    | Close
    | Abort
    | JoinPieces
    | Pause
    | Resume
    | Wake
    | RefuseConnection
    | UnreachableAction
)
