"""Hypothesis strategies and drivers for testing parsers and protocols under fragmentation.

This namespace only re-exports; it is not imported by ``import nettest``, so
that projects which do not use hypothesis never import it.  Use it as::

    from nettest import strategies as nst
"""

from __future__ import annotations

from ._feed import Chunk as Chunk
from ._feed import ConnectionLost as ConnectionLost
from ._feed import Datagram as Datagram
from ._feed import Delay as Delay
from ._feed import Eof as Eof
from ._feed import Event as Event
from ._feed import PauseReading as PauseReading
from ._feed import ResumeReading as ResumeReading
from ._feed import feed as feed
from ._feed import feed_async as feed_async
from ._schedules import datagram_schedules as datagram_schedules
from ._schedules import schedules as schedules
from ._stateful import AsyncRuleBasedStateMachine as AsyncRuleBasedStateMachine
from ._stateful import StepCancelledError as StepCancelledError
from ._strategies import DEFAULT_DELIMITERS as DEFAULT_DELIMITERS
from ._strategies import MessageStream as MessageStream
from ._strategies import all_chunkings as all_chunkings
from ._strategies import all_splits as all_splits
from ._strategies import chunkings as chunkings
from ._strategies import message_streams as message_streams

__all__ = [
    "DEFAULT_DELIMITERS",
    "AsyncRuleBasedStateMachine",
    "Chunk",
    "ConnectionLost",
    "Datagram",
    "Delay",
    "Eof",
    "Event",
    "MessageStream",
    "PauseReading",
    "ResumeReading",
    "StepCancelledError",
    "all_chunkings",
    "all_splits",
    "chunkings",
    "datagram_schedules",
    "feed",
    "feed_async",
    "message_streams",
    "schedules",
]
