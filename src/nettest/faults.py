"""The fault vocabulary: frozen values that say what goes wrong on the wire.

This namespace only re-exports.  The same values drive the loopback proxy
(`nettest.FaultProxy`, the ``fault_proxy`` fixture) and the memory transports
(`nettest.inject_faults`).  Use it as::

    from nettest import faults

    proxy = await fault_proxy(upstream=server.address, faults=[faults.Latency(0.1)])
"""

from __future__ import annotations

from ._fault_trace import ConnectionTrace as ConnectionTrace
from ._fault_trace import TraceEvent as TraceEvent
from ._faults import Bandwidth as Bandwidth
from ._faults import Blackhole as Blackhole
from ._faults import CloseAfter as CloseAfter
from ._faults import Corrupt as Corrupt
from ._faults import Direction as Direction
from ._faults import Drop as Drop
from ._faults import Duplicate as Duplicate
from ._faults import Fault as Fault
from ._faults import HalfClose as HalfClose
from ._faults import Latency as Latency
from ._faults import Refuse as Refuse
from ._faults import Reorder as Reorder
from ._faults import Reset as Reset
from ._faults import Slice as Slice
from ._faults import SlowClose as SlowClose
from ._faults import Stall as Stall
from ._faults import Trigger as Trigger
from ._faults import Truncate as Truncate
from ._faults import TruncateDatagram as TruncateDatagram
from ._faults import Unreachable as Unreachable
from ._proxy_cli import parse_fault as parse_fault

__all__ = [
    "Bandwidth",
    "Blackhole",
    "CloseAfter",
    "ConnectionTrace",
    "Corrupt",
    "Direction",
    "Drop",
    "Duplicate",
    "Fault",
    "HalfClose",
    "Latency",
    "Refuse",
    "Reorder",
    "Reset",
    "Slice",
    "SlowClose",
    "Stall",
    "TraceEvent",
    "Trigger",
    "Truncate",
    "TruncateDatagram",
    "Unreachable",
    "parse_fault",
]
