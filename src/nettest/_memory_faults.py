"""Fault injection for memory transports: the same fault values, in loop time.

Theory of operation
-------------------
A memory stream pair moves bytes through one `nettest._links.Link` per
direction.  `inject_faults` replaces each link's ``carry``, ``carry_eof`` and
``carry_reset`` (the seam the links leave for this; once per pair, so a second
call finds it taken and refuses) with a `StreamSchedule` driver: bytes and
EOF go into the schedule with ``loop.time()``, and its actions come out as
``link.arrive()``, ``link.arrive_eof()``, ``link.lose()`` or ``link.reset()``,
delayed with ``loop.call_at``.  An end's own RST (it closed with bytes unread,
or bytes reached it closed) goes into the schedule as a peer reset, behind the
bytes sent before it, as through the proxy, and comes out as
``link.arrive_reset()``.  Nothing sleeps on the wall clock, so under a
fast-forwarding clock such as looptime ten seconds of `Latency` cost
nothing.  Bytes held by a delay or a `Stall` stay "in flight": they use the
link's capacity, so a sender fills up exactly as it would behind a slow network.
Bytes a fault throws away are released with ``link.lose()``.

A memory datagram pair has no links; each end's ``_transmit`` (the one place a
datagram leaves) is wrapped instead, and a `DatagramSchedule` decides when, and
whether, the datagram reaches the peer.  `Unreachable` reaches the sender's
protocol as ``error_received(ConnectionRefusedError)``.

Differences from the proxy, where a real socket allows no better: a `Reset`
resets both ends (the link has no notion of a one-sided RST), and `Close`
(from `Truncate` or `CloseAfter`) delivers EOF both ways and drops later bytes
instead of closing the transports.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import sys
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ._datagrams import MemoryDatagramTransport
from ._endpoint import check_count, os_error
from ._fault_actions import (
    Abort,
    Action,
    Close,
    Deliver,
    JoinPieces,
    RefuseConnection,
    SendEof,
    UnreachableAction,
    Wake,
)
from ._fault_backend import ActionQueue, FaultsInForce, TimedAction
from ._fault_engine_datagram import DatagramSchedule
from ._fault_engine_stream import StreamSchedule
from ._fault_trace import TRACES_SHOWN
from ._faults import FLOWS, Fault, Flow, check_faults, other_flow
from ._hygiene import GATE
from ._seed import check_seed
from ._transports import MemoryTransport

if typing.TYPE_CHECKING:
    from ._fault_trace import ConnectionTrace
    from ._links import Link

__all__ = ["MemoryFaults", "inject_faults"]


@typing.final
class MemoryFaults(FaultsInForce):
    """The faults in force on one memory pair; returned by `inject_faults`.

    This type has no public constructor.  Change the faults at any time with
    `add`, `remove` and `clear`; `trace` records what passed and which faults
    fired.
    """

    def __init__(self, *, _kind: str, _faults: tuple[Fault, ...]) -> None:
        self._kind = _kind
        self._faults = _faults
        self._on_change: Callable[[tuple[Fault, ...]], None] = lambda faults: None
        self._trace: ConnectionTrace | None = None

    @property
    def trace(self) -> ConnectionTrace:
        """What the pair carried and which faults fired."""
        assert self._trace is not None
        return self._trace

    def _check(self, faults: Iterable[Fault]) -> tuple[Fault, ...]:
        return _check(self._kind, faults)

    def _faults_changed(self, faults: tuple[Fault, ...]) -> None:
        self._on_change(faults)

    def __repr__(self) -> str:
        return f"<MemoryFaults {self._kind} {list(self._faults)}>"


def _check(kind: str, faults: Iterable[Fault]) -> tuple[Fault, ...]:
    other = "stream" if kind == "datagram" else "datagram"
    return check_faults(
        faults, kind, lambda fault: f"{fault!r} applies to {other} transports only"
    )


def inject_faults(
    end: object, faults: Iterable[Fault] = (), *, seed: int = 0, connection: int = 1
) -> MemoryFaults:
    """Apply faults to a memory pair, in loop time.

    Pass the *client* end: a `MemoryTransport` (or the `asyncio.StreamWriter`
    of `memory_stream_pair`) or a `MemoryDatagramTransport`.  "upstream" is what
    that end sends, "downstream" what it receives.  Call it right after making
    the pair, before any byte moves (faults count bytes and time from the
    call); faults may be changed later.

    A pair takes faults once: the `MemoryFaults` returned holds them for as long
    as the pair lives.  To change them (a fixture injected some, the test wants
    others), call `~MemoryFaults.add`, `~MemoryFaults.remove` or
    `~MemoryFaults.clear` on it; a second ``inject_faults`` on either end of
    the pair raises `RuntimeError` rather than quietly take the first one's place.

    A pair is one connection, as one through the proxy is: number 1 unless
    *connection* says otherwise.  Its number decides a ``Trigger(connection=N)``
    and, with *seed*, every random draw; number the pairs of a test that makes
    several (``connection=i``) for them to meet the faults as the proxy's
    connections would.

    Args:
        end: The client end of a memory pair.
        faults: The faults in force from the start.
        seed: Seeds every random choice; an int in [0, 2**64), 0 by default,
            which draws the same in every run.  Pass the ``nettest_seed``
            fixture to draw anew each run and replay with ``--nettest-seed``.
        connection: The pair's connection number, an int >= 1.

    Returns:
        A `MemoryFaults` to change the faults and read the trace.

    Raises:
        TypeError: *end* is not an end of a memory pair, or *seed* or
            *connection* is not an int.
        ValueError: A fault that does not apply to the pair, *seed* outside
            [0, 2**64), or *connection* below 1.
        RuntimeError: The pair has faults injected already.

    Example::

        (reader, writer), server = memory_stream_pair()
        inject_faults(writer, [Latency(10)], seed=nettest_seed)
    """
    seed = check_seed(seed)
    index = check_count("connection", connection)
    transport = getattr(end, "transport", end)
    if isinstance(transport, MemoryTransport):
        if getattr(transport, "_peer", None) is None:
            raise TypeError("inject_faults needs an end of memory_transport_pair()")
        checked = _check("stream", faults)
        # A fault layer holds a link's seam already (see nettest._links): only ours takes it.
        if any(link.carry is not link._arrive for link in (transport._out, transport._in)):
            raise _injected_already()
        return _made(_StreamDriver(transport, checked, seed, index).handle, seed)
    if isinstance(transport, MemoryDatagramTransport):
        if transport._peer is None:
            raise TypeError("inject_faults needs an end of memory_datagram_pair()")
        checked = _check("datagram", faults)
        # The datagram seam: an instance attribute shadows the method (see _DatagramDriver).
        if any("_transmit" in vars(end) for end in (transport, transport._peer)):
            raise _injected_already()
        return _made(_DatagramDriver(transport, checked, seed, index).handle, seed)
    raise TypeError(
        "inject_faults needs the client end of a memory pair (a MemoryTransport, "
        f"a StreamWriter over one, or a MemoryDatagramTransport), got {end!r}"
    )


class _Made:
    """The fault layers one test made: how many, and the last `TRACES_SHOWN` with seeds.

    Only the last are kept: a property test makes a pair per example, thousands
    of them, and its report needs the failing example's, which come last.  Each
    layer says whether hypothesis made it while it ran the failing example one
    last time, to report it (`_in_final_example`): the report then shows those
    alone, not the shrink attempts that came before.
    """

    def __init__(self) -> None:
        self.count = 0
        #: Each layer with its seed and which final example made it (1 for the first
        #: hypothesis reports; 0 for a layer made outside one).
        self.last: collections.deque[tuple[MemoryFaults, int, int]] = collections.deque(
            maxlen=TRACES_SHOWN
        )
        #: The final example's build context the last layer came from, and how many
        #: final examples made layers: a test with several distinct failures has one
        #: final example each.
        self.final_context: object = None
        self.finals = 0

    def example(self) -> int:
        """Which final example is running (counting from 1), or 0 outside one."""
        context = _final_example_context()
        if context is None:
            return 0
        if context is not self.final_context:
            self.final_context = context
            self.finals += 1
        return self.finals


#: The fault layers each running test made, for its failure report.
_MADE_BY: dict[str, _Made] = {}


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def _final_example_context() -> object:
    """The build context of the failing example hypothesis runs one last time to report it.

    None outside such a run.
    """
    control = sys.modules.get("hypothesis.control")
    if control is None or not control.currently_in_test_context():
        return None
    context: object = control.current_build_context()
    return context if getattr(context, "is_final", False) else None


def _made(handle: MemoryFaults, seed: int) -> MemoryFaults:
    if GATE.owner is not None:
        made = _MADE_BY.setdefault(GATE.owner, _Made())
        made.count += 1
        made.last.append((handle, seed, made.example()))
    return handle


def format_memory_traces_for(nodeid: str) -> str | None:
    """Return the traces of the memory fault layers a test made, for its failure report."""
    made = _MADE_BY.get(nodeid)
    if made is None:
        return None
    shown = [layer for layer in made.last if layer[2]]
    examples = {example for _, _, example in shown}
    if len(examples) > 1:
        # hypothesis numbers the failures it reports in the order it reruns them,
        # but a failing example that injected no faults has no layers to head: the
        # headings keep that order without claiming its numbers.
        note = (
            f"below, the layers of the {len(examples)} failing examples that injected "
            "faults, each under a heading, in the order hypothesis reports its failures"
        )
    elif shown:
        note = "the failing example's are below"
    else:
        shown = list(made.last)
        note = f"the last {len(shown)} are below"
    sections = []
    for index, (handle, seed, example) in enumerate(shown):
        if len(examples) > 1 and (index == 0 or shown[index - 1][2] != example):
            ordinal = _ORDINALS[example - 1] if example <= len(_ORDINALS) else f"#{example}"
            sections.append(f"the {ordinal} failing example that injected faults:")
        sections.append(f"{handle!r} seed={seed}\n{handle.trace}")
    earlier = made.count - len(shown)
    if earlier:
        sections.insert(0, f"... {earlier} earlier fault layers not shown ({note})")
    elif len(examples) > 1:
        sections.insert(0, f"({note})")
    return "\n\n".join(sections)


def forget_memory_faults(nodeid: str) -> None:
    """Let go of what a test made, once its reports are made."""
    _MADE_BY.pop(nodeid, None)


def _injected_already() -> RuntimeError:
    # Replacing the seams would leave the first handle in force on paper only: its
    # faults, add() and trace would no longer touch the pair.
    return RuntimeError(
        "inject_faults: this memory pair already has faults injected by an earlier "
        "inject_faults() call (on either end); change them with add(), remove() or "
        "clear() on the MemoryFaults that call returned"
    )


class _PacedStreamReader(asyncio.StreamReader):
    """A memory pair's reader under faults: a `Slice`'s pieces come one per read.

    The transport hands each piece to the protocol as it arrives, and a reader
    not waiting in a read as it does (one whose read runs in a task of its own,
    as ``asyncio.wait_for()`` runs it before Python 3.12) would find two pieces
    joined in its buffer.  So the fault layer holds a piece back while the
    reader holds bytes no read asked for (see `_StreamDriver._unread_before`),
    and hears from it when a read takes bytes or starts to wait.  A pair's
    readers become this class only once faults are injected: the others pay
    nothing for it.
    """

    _link: Link

    @classmethod
    def pace(cls, reader: asyncio.StreamReader, link: Link) -> None:
        """Make `reader` tell `link`'s fault layer when it takes bytes or waits."""
        if type(reader) is asyncio.StreamReader:
            reader.__class__ = cls
        if isinstance(reader, cls):
            reader._link = link

    def _tell_link(self) -> None:
        on_read = self._link.on_read
        if on_read is not None:
            on_read()

    def _maybe_resume_transport(self) -> None:
        super()._maybe_resume_transport()  # type: ignore[misc]
        self._tell_link()

    async def _wait_for_data(self, func_name: str) -> None:
        # Once the read waits: its waiter is set after this call, before it awaits.
        self._loop.call_soon(self._tell_link)  # type: ignore[attr-defined]
        await super()._wait_for_data(func_name)  # type: ignore[misc]


class _StreamDriver:
    def __init__(
        self, client: MemoryTransport, faults: tuple[Fault, ...], seed: int, index: int
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.links: dict[Flow, Link] = {"upstream": client._out, "downstream": client._in}
        peer = client.get_extra_info("sockname")
        self.schedule = StreamSchedule(
            seed=seed, index=index, now=self.loop.time(), faults=faults, peer=peer
        )
        self.handle = MemoryFaults(_kind="stream", _faults=faults)
        self.handle._trace = self.schedule.trace
        self.schedule.trace._in_memory = True
        self.handle._on_change = self.update
        self.queues = {
            flow: ActionQueue(self.loop, self._perform, held=self._unread_before) for flow in FLOWS
        }
        self.lost: dict[Flow, int] = {"upstream": 0, "downstream": 0}
        #: What each flow sent this loop turn, not yet handed to the schedule.
        self.pending: dict[Flow, list[bytes]] = {flow: [] for flow in FLOWS}
        self.eof_sent: set[Flow] = set()
        self.done = False
        for flow, link in self.links.items():
            link.carry = self._carrier(flow)
            link.carry_eof = self._eof_carrier(flow)
            link.carry_reset = self._reset_carrier(flow, link)
            link.on_read = functools.partial(self.kick, flow)
            if link.reader_above is not None:
                _PacedStreamReader.pace(link.reader_above[1], link)
        self.apply(self.schedule.start(self.loop.time()))

    def _carrier(self, flow: Flow) -> Callable[[bytes], None]:
        def carry(data: bytes) -> None:
            # What one loop turn sends reaches the faults as one chunk, as a
            # receiving socket (the proxy's) finds the sender's writes joined in
            # its buffer: a Slice cuts the stream, not each write.
            pending = self.pending[flow]
            if not pending:
                self.loop.call_soon(self._flush, flow)
            pending.append(data)

        return carry

    def _flush(self, flow: Flow) -> None:
        pending = self.pending[flow]
        if pending:
            data = b"".join(pending)
            pending.clear()
            self.apply(self.schedule.data(flow, data, self.loop.time()))

    def _eof_carrier(self, flow: Flow) -> Callable[[], None]:
        def carry_eof() -> None:
            self._flush(flow)
            self.apply(self.schedule.eof(flow, self.loop.time()))

        return carry_eof

    def _reset_carrier(self, flow: Flow, link: Link) -> Callable[[], None]:
        sender = "client" if flow == "upstream" else "server"

        def carry_reset() -> None:
            reason = f"{sender} reset"
            if self.done:
                # A fault's close or reset has ended the connection: nothing holds it.
                link.arrive_reset()
            elif self.schedule.closed:
                # A fault's close or reset is on its way: the RST goes behind what
                # this flow has queued, and, like it, is dropped once that ends the
                # connection first.
                now = self.loop.time()
                self.schedule.trace._record(now, flow, f"reset {flow}: {reason}")
                self.queues[flow].append(Abort(now, flow, (flow,), reason, True))
                self.kick(flow)
            else:
                self._flush(flow)
                self.apply(self.schedule.peer_reset(flow, self.loop.time(), reason))

        return carry_reset

    def update(self, faults: tuple[Fault, ...]) -> None:
        for flow in FLOWS:  # sent before the change: under the faults it was sent under
            self._flush(flow)
        self.apply(self.schedule.update(faults, self.loop.time()))

    def apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, RefuseConnection):
                self.links["upstream"].reset()
                self.done = True
            elif isinstance(action, (Deliver, SendEof, Close, Abort)):
                self.queues[action.flow].append(action)
            elif isinstance(action, Wake):
                self.loop.call_at(action.at, self._tick)
            elif isinstance(action, JoinPieces):
                self.queues[action.flow].join()
            # Pause and Resume need nothing: held bytes stay in flight and fill the link.
        self._release_discarded()
        for flow in FLOWS:
            self.kick(flow)

    def _release_discarded(self) -> None:
        for flow, link in self.links.items():
            extra = self.schedule.discarded[flow] - self.lost[flow]
            if extra:
                self.lost[flow] += extra
                link.lose(extra)

    def _tick(self) -> None:
        if not self.done:
            self.apply(self.schedule.tick(self.loop.time()))

    def kick(self, flow: Flow) -> None:
        self.queues[flow].kick()

    def _unread_before(self, action: TimedAction) -> bool:
        """Whether `action` is a piece to be read alone and the receiver has unread bytes.

        Unread by its protocol, or, above a memory stream pair's transport, by
        the code reading its StreamReader (which is not waiting in a read).  Not
        once ``start_tls()`` put a TLS layer over the transport: the pieces are
        records then, and holding one back for the plaintext the reader holds
        would hold back the peer's ``close_notify`` with it.
        """
        if not isinstance(action, Deliver) or not action.alone or self.done:
            return False
        link = self.links[action.flow]
        receiver = link.receiver
        if receiver is None or receiver._closing:
            return False
        if receiver._rx._size:
            return True
        above = link.reader_above
        if above is None or receiver.get_protocol() is not above[0]:
            # start_tls() put a TLS layer between: its records are what is read here.
            return False
        reader = above[1]
        return bool(reader._buffer) and reader._waiter is None  # type: ignore[attr-defined]

    def _perform(self, action: TimedAction) -> None:
        if isinstance(action, Deliver):
            link = self.links[action.flow]
            if self.done:
                link.lose(len(action.data))
            else:
                link.arrive(action.data)
        elif isinstance(action, SendEof):
            if not self.done and action.flow not in self.eof_sent:
                self.eof_sent.add(action.flow)
                self.links[action.flow].arrive_eof()
        elif isinstance(action, Close):
            if not self.done:
                for flow, link in self.links.items():
                    if flow not in self.eof_sent:
                        self.eof_sent.add(flow)
                        link.arrive_eof()
            self.done = True
        elif isinstance(action, Abort):
            if not self.done:
                # What was delivered before it is still read first, as a kernel
                # keeps its receive queue when an RST arrives.
                if action.by_peer:
                    self.links[action.flow].arrive_reset()
                else:
                    self.links[action.flow].reset()
            self.done = True


class _DatagramDriver:
    def __init__(
        self, client: MemoryDatagramTransport, faults: tuple[Fault, ...], seed: int, index: int
    ) -> None:
        self.loop = asyncio.get_running_loop()
        server = client._peer
        assert server is not None
        self.ends: dict[Flow, MemoryDatagramTransport] = {
            "upstream": client,
            "downstream": server,
        }
        self.schedule = DatagramSchedule(
            seed=seed,
            index=index,
            now=self.loop.time(),
            faults=faults,
            peer=client.get_extra_info("sockname"),
        )
        self.handle = MemoryFaults(_kind="datagram", _faults=faults)
        self.handle._trace = self.schedule.trace
        self.schedule.trace._in_memory = True
        self.handle._on_change = self.update
        self.originals: dict[Flow, Callable[[bytes, Any], None]] = {}
        for flow, sender in self.ends.items():
            self.originals[flow] = sender._transmit
            # The datagram seam: every datagram a memory end sends leaves through
            # _transmit (an instance attribute shadows the method).
            sender._transmit = self._transmitter(flow)  # type: ignore[method-assign, assignment]

    def _transmitter(self, flow: Flow) -> Callable[[bytes, Any], None]:
        original = self.ends[flow]._transmit
        receiver = self.ends[other_flow(flow)]

        def transmit(data: bytes, addr: Any) -> None:
            if addr != receiver.get_extra_info("sockname"):
                original(data, addr)  # not for the pair: lost as before
                return
            self.apply(self.schedule.datagram(flow, data, self.loop.time()), addr)

        return transmit

    def update(self, faults: tuple[Fault, ...]) -> None:
        self.apply(self.schedule.update(faults, self.loop.time()), None)

    def apply(self, actions: Iterable[Action], addr: Any) -> None:
        now = self.loop.time()
        for action in actions:
            if isinstance(action, Deliver):
                target = addr
                if target is None:
                    target = self.ends[other_flow(action.flow)].get_extra_info("sockname")
                send = self.originals[action.flow]
                if action.at <= now:
                    send(action.data, target)
                else:
                    self.loop.call_at(action.at, send, action.data, target)
            elif isinstance(action, UnreachableAction):
                error = os_error(errno.ECONNREFUSED)
                self.loop.call_at(action.at, self.ends[action.flow].feed_error, error)
            elif isinstance(action, Wake):
                self.loop.call_at(action.at, self._tick)

    def _tick(self) -> None:
        self.apply(self.schedule.tick(self.loop.time()), None)
