"""The hygiene gate: what a nettest object made for itself is reported with it, once.

A server's listening socket, the transport that serves a datagram server, a
proxy's listener and sockets, a `BoundSocket`'s socket: strict mode tracks each
socket too, and the garbage collector warns about each one it frees open.  A
report of the object says it all; the part is listed on its own only when the
object was closed and the part was not.
"""

from __future__ import annotations

import asyncio
import fnmatch
import gc
import re
import socket
import sys
import warnings

import pytest

from nettest import LeakError
from nettest import _hygiene as hygiene
from nettest import _hygiene_instruments as hygiene_instruments

MODES = pytest.mark.parametrize("asyncio_mode", ["strict", "auto"])
LEAKS = pytest.mark.parametrize("leaks", ["own", "strict"])
HAS_UNIX = hasattr(socket, "AF_UNIX")


def collect_garbage() -> None:
    """Finalise what earlier tests left as garbage, so the gate's own collection cannot meet it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def reports(result: pytest.RunResult) -> dict[str, list[str]]:
    """Each test's LeakError items, by test name: the ``- ...`` lines, stacks left out.

    A garbage-collector item keeps its second line (the warning), joined to its first.
    """
    found: dict[str, list[str]] = {}
    items: list[str] | None = None
    for line in result.outlines:
        # The ERRORS section's own line, not the short summary's: under CI=1 pytest
        # prints the summary untruncated, and its copy of the report would be read too.
        match = re.match(
            r"E\s+nettest\.LeakError: test_leaky\.py::(\S+) left \d+ things? behind", line
        )
        if match:
            items = found.setdefault(match.group(1), [])
        elif items is not None and line.startswith("      - "):
            items.append(line.strip())
        elif (
            items is not None and line.startswith("        ") and not line.startswith("         ")
        ):
            if items and items[-1].startswith("- while the garbage collector"):
                items[-1] += " | " + line.strip()
        elif not line.startswith(" "):
            items = None
    return found


# Kept alive by nothing but reference cycles (the loop's, once it closed): with
# automatic collections off, the gate's own collection finalises them.
_LEAKY = """
import gc, socket
import pytest
from nettest import (
    BoundSocket, FaultProxy, TCPServer, UDPServer, UnixDatagramServer, UnixServer, handlers,
)

gc.disable()
KINDS = ["tcp", "udp", "proxy-tcp", "proxy-udp"]
if hasattr(socket, "AF_UNIX"):
    KINDS += ["unix", "unix-datagram"]
kept = []

async def start(kind):
    if kind == "tcp":
        return await TCPServer(handlers.echo).start()
    if kind == "udp":
        return await UDPServer(handlers.echo).start()
    if kind == "unix":
        return await UnixServer(handlers.echo).start()
    if kind == "unix-datagram":
        return await UnixDatagramServer(handlers.echo).start()
    if kind == "proxy-tcp":
        return await FaultProxy(("127.0.0.1", 9)).start()
    return await FaultProxy(("127.0.0.1", 9), kind="udp").start()

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_drops(kind):
    await start(kind)

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_keeps(kind):
    kept.append(await start(kind))

def test_keeps_bound_socket():
    kept.append(BoundSocket.tcp())

def test_drops_bound_socket():
    BoundSocket.udp()

@pytest.mark.nettest_leaks("strict")
@pytest.mark.asyncio
async def test_closes_the_server_not_its_socket():
    server = await TCPServer(handlers.echo).start()
    kept.append(server)
    server._status = "closed"  # as a nettest bug would: closed, its socket left open

def test_after():
    assert kept[-1]._sock.fileno() == -1, "the gate closed the socket it reported"
"""

_NAMES = {
    "tcp": "TCPServer 127.0.0.1:*",
    "udp": "UDPServer 127.0.0.1:*",
    "unix": "UnixServer /*",
    "unix-datagram": "UnixDatagramServer /*",
    "proxy-tcp": "FaultProxy tcp 127.0.0.1:* -> 127.0.0.1:9",
    "proxy-udp": "FaultProxy udp 127.0.0.1:* -> 127.0.0.1:9",
}


def assert_items(items: list[str], patterns: list[str]) -> None:
    """Assert that `items` are exactly those `patterns` (``*`` matches anything)."""
    assert len(items) == len(patterns), (items, patterns)
    for item, pattern in zip(items, patterns, strict=True):
        assert fnmatch.fnmatchcase(item, pattern), (item, pattern)


@LEAKS
@MODES
def test_gate_lists_a_nettest_object_left_open_once(
    pytester: pytest.Pytester, leaks: str, asyncio_mode: str
) -> None:
    # Strict mode listed a leaked server four times over: the server, its
    # listening socket (same stack), and the garbage collector's warning about
    # each.  A proxy's listener was listed too, in every mode, and so was the
    # collector's warning about a datagram server's transport.  A part left open
    # by an object that thinks itself closed (a nettest bug) is still listed.
    # The object's own finaliser does not warn while its test's check is to
    # come: the report says it (a state machine's next example would otherwise
    # meet the warning first, as pytest's unraisable-exception error).
    pytester.makepyfile(test_leaky=_LEAKY)
    collect_garbage()
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--nettest-leaks={leaks}",
        f"--asyncio-mode={asyncio_mode}",
        "-W",
        "error::ResourceWarning",
    )
    kinds = list(_NAMES) if HAS_UNIX else ["tcp", "udp", "proxy-tcp", "proxy-udp"]
    result.assert_outcomes(passed=2 * len(kinds) + 4, errors=2 * len(kinds) + 3)
    found = reports(result)
    for kind in kinds:
        what = _NAMES[kind]
        assert_items(found[f"test_drops[{kind}]"], [f"- {what} dropped while open, created at:"])
        assert_items(found[f"test_keeps[{kind}]"], [f"- open {what}, created at:"])
    assert_items(
        found["test_keeps_bound_socket"], ["- open bound TCP socket 127.0.0.1:*, created at:"]
    )
    assert_items(
        found["test_drops_bound_socket"],
        ["- bound UDP socket 127.0.0.1:* dropped while open, created at:"],
    )
    # A part left open (strict mode sees sockets): listed on its own, with its stack.
    assert_items(
        found["test_closes_the_server_not_its_socket"],
        # (Python 3.10 names the family and type: AddressFamily.AF_INET.)
        ["- open socket <socket.socket fd=*, laddr=('127.0.0.1', *)>, created at:"],
    )
    result.stdout.fnmatch_lines(
        [
            "*LeakError: test_leaky.py::test_closes_the_server_not_its_socket left 1 thing*",
            "*- open socket <socket.socket *",
            '*File "*test_leaky.py", line *, in test_closes_the_server_not_its_socket',
            "*server = await TCPServer(handlers.echo).start()",
        ]
    )
    out = result.stdout.str()
    # Nothing else about their sockets, nor the transports over them: not in a
    # report, nor in the warnings of what was freed outside the gate's collection.
    assert "unclosed <socket.socket" not in out
    assert "unclosed transport" not in out
    assert "listener" not in out
    assert "ResourceWarning: unclosed <" not in out


class Thing:
    """A tracked object that can be closed, and warns if it is freed open (in a cycle)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False
        self.cycle = self

    def close(self) -> None:
        self.closed = True

    def is_open(self) -> bool:
        return not self.closed

    def __del__(self) -> None:
        if not self.closed:
            warnings.warn(f"unclosed Thing {self.name}", ResourceWarning, stacklevel=1)


def track(gate: hygiene._Gate, name: str) -> Thing:
    return gate.track(Thing(name), what=name, is_open=Thing.is_open, close=Thing.close)


def check(gate: hygiene._Gate, owner: str) -> list[str]:
    """Check `owner`, warnings as errors; return the items (a warning joined to its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(LeakError) as excinfo:
            gate.check(owner, "own", frozenset())
    items: list[str] = []
    for line in str(excinfo.value).splitlines():
        if line.startswith("  - "):
            items.append(line.strip())
        elif line.startswith("    ResourceWarning: "):
            items[-1] += " | " + line.strip()
    return items


_COLLECTED = (
    "- while the garbage collector finalised them: Exception ignored in: <function Thing.__del__"
)


def test__gate_lists_parts_only_once_their_object_is_closed() -> None:
    collect_garbage()
    gate = hygiene._Gate()
    with gate.owned_by("test_x"):
        parent, part = track(gate, "parent"), track(gate, "part")
    gate.parts_of(parent, part)
    assert check(gate, "test_x") == ["- open parent, created at:"]
    assert parent.closed
    assert part.closed, "the gate closes the parts it does not list"

    with gate.owned_by("test_y"):
        parent, part = track(gate, "parent"), track(gate, "part")
    gate.parts_of(parent, part)
    parent.close()  # and not its part: a bug of the parent's
    assert check(gate, "test_y") == ["- open part, created at:"]
    assert part.closed


def test__gate_leaves_out_the_collectors_warnings_about_parts_of_what_it_reports() -> None:
    # A part the gate does not track (a socket in own mode) dropped with its
    # object: the object's "dropped while open" says it all, for the part's
    # finaliser and for the object's own.
    collect_garbage()
    gate = hygiene._Gate()
    with gate.owned_by("test_x"):
        parent = track(gate, "parent")
    part = parent.part = Thing("part")  # type: ignore[attr-defined]
    gate.parts_of(parent, part)
    del parent, part
    items = check(gate, "test_x")
    assert items == ["- parent dropped while open, created at:"], items

    # Its object closed, a part freed open is the collector's to report.
    with gate.owned_by("test_y"):
        parent, kept = track(gate, "parent"), track(gate, "kept")
    part = Thing("part")
    gate.parts_of(parent, part)
    parent.close()
    del parent, part
    items = check(gate, "test_y")
    assert items[0] == "- open kept, created at:"
    assert [item.split(" at 0x")[0] for item in items[1:]] == [_COLLECTED], items
    assert items[1].endswith("ResourceWarning: unclosed Thing part")
    assert kept.closed


def test__gate_parts_of_an_untracked_object_are_nobodys() -> None:
    gate = hygiene._Gate()
    parent, part = Thing("parent"), Thing("part")
    gate.parts_of(parent, part, None)  # made outside a test: nothing to note, no error
    assert not gate.tracked
    assert not gate.bookkeeping_errors
    parent.close()
    part.close()


def test__gate_lists_the_first_ten_things_made_at_each_place() -> None:
    # A property-based test that leaks leaks in every example: 500 examples made
    # a 9,000-line report of the same stack.  Ten of each place, then a count.
    gate = hygiene._Gate()
    with gate.owned_by("test_x"):
        repeated = [track(gate, f"repeated {n}") for n in range(25)]
        elsewhere = []
        for n in range(3):
            elsewhere.append(track(gate, f"elsewhere {n}"))
    with pytest.raises(LeakError) as excinfo:
        gate.check("test_x", "own", frozenset())
    report = str(excinfo.value)
    assert report.splitlines()[0] == "test_x left 28 things behind (--nettest-leaks=own):"
    assert "- open repeated 9, created at:" in report
    assert "repeated 10" not in report
    assert all(f"- open elsewhere {n}, created at:" in report for n in range(3))
    assert report.endswith(
        "  - and 15 more things made at the same places as those above "
        "(the first 10 made at each place are shown)"
    )
    assert all(thing.closed for thing in repeated + elsewhere)


def test__gate_lists_the_first_ten_calls_to_the_loops_exception_handler() -> None:
    # A property-based test repeats its failure in every example: 25 calls, one
    # report of a readable length, and the header still counts them all, apart
    # from the things left behind (a test out of descriptors makes thousands).
    gate = hygiene._Gate()
    loop = asyncio.new_event_loop()
    try:
        gate.instrument_loop(loop)
        with gate.owned_by("test_x"):
            for n in range(25):
                loop.call_exception_handler({"message": f"failure {n}"})
            leaked = track(gate, "thing")
        with pytest.raises(LeakError) as excinfo:
            gate.check("test_x", "own", frozenset())
    finally:
        loop.close()
    report = str(excinfo.value)
    assert report.splitlines()[0] == (
        "test_x left 1 thing behind, and made the loop's exception handler run 25 times "
        "(--nettest-leaks=own):"
    )
    assert "failure 9" in report
    assert "failure 10" not in report
    summary = "  - and 15 more calls to the loop's exception handler (the first 10 are shown)"
    assert summary in report
    assert "- open thing" in report
    assert leaked.closed


async def _handler_task_cancelled_contexts() -> list[dict[str, object]]:
    """The exception-handler calls of a start_server handler task cancelled mid-read."""
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    started = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started.set()
        try:
            await reader.read()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        _, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        await started.wait()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.sleep(0.01)
        writer.close()
    return contexts


@pytest.mark.uvloop
@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="cpython#113538 is 3.11's")
def test__a_cancelled_handler_tasks_callback_error_is_known_on_uvloop() -> None:
    # uvloop's handle keeps its callback to itself: the gate did not know the
    # call, and blamed it on whichever test ran as it came.
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        contexts = loop.run_until_complete(_handler_task_cancelled_contexts())
    finally:
        loop.close()
    assert contexts
    assert all(hygiene_instruments._a_handler_task_cancelled(c) for c in contexts)
