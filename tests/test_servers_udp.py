"""Datagram servers: UDP echo/record/script, multicast, broadcast, Unix datagrams."""

# ruff: noqa: F811  (fixtures imported from their module are redefined as parameters)

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import socket
import sys
import time
import typing

import pytest

from nettest import handlers
from nettest._handlers import HandlerError, ScriptMismatch
from nettest._recording import Datagram
from nettest._servers import has_ipv6_loopback
from nettest._udp import (
    UDPServer,
    UDPServerFactory,
    UnixDatagramServer,
    UnixDatagramServerFactory,
    multicast_socket,
    udp_server,  # noqa: F401
    unix_datagram_server,  # noqa: F401
)

pytestmark = pytest.mark.asyncio

HOSTS = [
    "127.0.0.1",
    pytest.param(
        "::1", marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
    ),
]


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)


@contextlib.asynccontextmanager
async def _client(address: tuple[str, int]):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Client, remote_addr=address)
    try:
        yield transport, protocol
    finally:
        transport.close()


@pytest.mark.parametrize("host", HOSTS)
async def test_udp_echo_records_both_directions(udp_server: UDPServerFactory, host: str) -> None:
    server = await udp_server(handlers.echo, host=host)
    assert server.address == (host, server.port)
    assert server.sockname[:2] == server.address
    async with _client(server.address) as (transport, client):
        transport.sendto(b"one")
        transport.sendto(b"two")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"one"
        assert await asyncio.wait_for(client.queue.get(), 5) == b"two"
        local = transport.get_extra_info("sockname")
    received = await server.wait_for_datagrams(2)
    assert [d.data for d in received] == [b"one", b"two"]
    assert all(d.peer[:2] == local[:2] for d in received)
    assert [d.data for d in server.sent] == [b"one", b"two"]
    assert [d.direction for d in server.events] == ["received", "sent", "received", "sent"]
    assert "-> " in server.transcript()


async def test_udp_sink_records_only(udp_server: UDPServerFactory) -> None:
    server = await udp_server(handlers.sink)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(5):
            sock.sendto(b"%d" % i, server.address)
        datagrams = await server.wait_for_datagrams(5)
    assert [d.data for d in datagrams] == [b"0", b"1", b"2", b"3", b"4"]
    assert server.sent == ()
    assert isinstance(datagrams[0], Datagram)


async def test_udp_empty_datagram_is_received(udp_server: UDPServerFactory) -> None:
    server = await udp_server(handlers.sink)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"", server.address)
        (datagram,) = await server.wait_for_datagrams(1)
    assert datagram.data == b""


async def test_udp_wait_timeout_lists_what_arrived(udp_server: UDPServerFactory) -> None:
    server = await udp_server(handlers.sink)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"only", server.address)
        await server.wait_for_datagrams(1)
        with pytest.raises(TimeoutError, match=r"expected 2 datagrams; 1 arrived: b'only'"):
            await server.wait_for_datagrams(2, timeout=0.05)
    other = await udp_server(handlers.sink)
    with pytest.raises(TimeoutError, match=r"expected 1 datagram; 0 arrived \(waited 0.05 s"):
        await other.wait_for_datagrams(1, timeout=0.05)


async def test_a_protocol_handler_transport_says_what_it_is(udp_server: UDPServerFactory) -> None:
    transports: list[asyncio.BaseTransport] = []

    class Keep(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transports.append(transport)

    server = await udp_server(Keep)
    (transport,) = transports
    port = server.address[1]
    assert re.fullmatch(
        rf"<<_SelectorDatagramTransport fd=\d+ read=.*>, its sends recorded by "
        rf"UDPServer 127\.0\.0\.1:{port}>",
        repr(transport),
    )


@pytest.mark.parametrize("datagrams", [0, 1, 2])
async def test_udp_wait_for_a_parametrized_number_of_datagrams(
    udp_server: UDPServerFactory, datagrams: int
) -> None:
    # n=0 once raised "n must be an int >= 1, got 0".
    server = await udp_server(handlers.sink)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(datagrams):
            sock.sendto(b"%d" % i, server.address)
        # For ever: a wait for 0 returns at once, one for the datagrams once they arrive.
        received = await asyncio.wait_for(server.wait_for_datagrams(datagrams, timeout=None), 5)
    assert [d.data for d in received] == [b"%d" % i for i in range(datagrams)]
    assert await server.wait_for_datagrams(0, timeout=None) == ()
    with pytest.raises(ValueError, match=r"^n must be an int >= 0, got -1$"):
        await server.wait_for_datagrams(-1)
    with pytest.raises(TypeError, match=r"^n must be an int >= 0, got True$"):
        await server.wait_for_datagrams(True)


async def test_udp_wait_for_no_datagrams_on_a_closed_server_returns_at_once() -> None:
    server = await UDPServer(handlers.sink).start()
    await server.aclose()
    assert await server.wait_for_datagrams(0) == ()


async def test_udp_wait_on_a_closed_server_fails_at_once() -> None:
    server = await UDPServer(handlers.sink).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"only", server.address)
        await server.wait_for_datagrams(1)
    waiting = asyncio.ensure_future(server.wait_for_datagrams(2, timeout=60))
    await asyncio.sleep(0)
    await server.aclose()
    with pytest.raises(TimeoutError, match=r"b'only'; the server is closed \(failed at"):
        await asyncio.wait_for(waiting, 5)


async def test_udp_script_conversation(udp_server: UDPServerFactory) -> None:
    server = await udp_server(
        handlers.script(
            handlers.expect(b"HELLO"),
            handlers.send(b"WELCOME"),
            handlers.expect_line(b"BYE"),
            handlers.send(b"CIAO"),
        )
    )
    async with _client(server.address) as (transport, client):
        transport.sendto(b"HELLO")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"WELCOME"
        transport.sendto(b"BYE\n")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"CIAO"


async def test_udp_script_deviation_raises_at_teardown() -> None:
    server = await UDPServer(handlers.script(handlers.expect(b"HELLO"))).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"HELLP", server.address)
        await server.wait_for_datagrams(1)
    with pytest.raises(HandlerError) as info:
        await server.aclose()
    (error,) = info.value.errors
    assert isinstance(error, ScriptMismatch)
    assert "first difference at byte 4" in str(error)
    assert "datagrams received (1): b'HELLP' from 127.0.0.1:" in str(info.value)


async def test_udp_script_unmet_at_teardown_raises() -> None:
    server = await UDPServer(handlers.script(handlers.expect(b"HELLO"))).start()
    with pytest.raises(HandlerError, match="not met when the server closed"):
        await server.aclose()


@pytest.mark.parametrize("sent", [2, 1])
async def test_udp_script_sees_what_a_blocking_client_sent_before_teardown(sent: int) -> None:
    # A blocking client sends without the loop running: at teardown the datagrams
    # wait in the socket's buffer or the script's queue, and the script must see
    # them.  The negative twin sends one too few: the second step is not met.
    steps = handlers.script(handlers.expect(b"one"), handlers.expect(b"two"))
    server = await UDPServer(steps).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in [b"one", b"two"][:sent]:
            sock.sendto(data, server.address)
    if sent == 2:
        await server.aclose()
        assert [d.data for d in server.datagrams] == [b"one", b"two"]
    else:
        with pytest.raises(HandlerError, match=r"step 2 of 2, expect\(b'two'\): not met"):
            await server.aclose()


@pytest.mark.parametrize("then_expect", [True, False])
async def test_udp_script_sleeping_at_teardown_reports_what_is_still_expected(
    then_expect: bool,
) -> None:
    # Teardown cancels a script still sleeping after a second: a datagram it
    # still expects is not met; with nothing more expected, nothing failed.
    steps = [handlers.expect(b"a"), handlers.sleep(30)]
    if then_expect:
        steps.append(handlers.expect(b"b"))
    server = await UDPServer(handlers.script(*steps)).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"a", server.address)
    await server.wait_for_datagrams(1)
    if then_expect:
        message = r"step 3 of 3, expect\(b'b'\): not met when the server closed \(during step 2"
        with pytest.raises(HandlerError, match=message):
            await server.aclose()
    else:
        await server.aclose()


async def test_udp_protocol_factory(udp_server: UDPServerFactory) -> None:
    class Upper(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.DatagramTransport)
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data.upper(), addr)

    server = await udp_server(Upper)
    async with _client(server.address) as (transport, client):
        transport.sendto(b"quiet")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"QUIET"
    assert [d.data for d in server.sent] == [b"QUIET"]


async def test_udp_protocol_exception_raises_at_teardown() -> None:
    class Broken(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if data == b"q07":
                raise ValueError(data)

    server = await UDPServer(Broken).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(30):
            sock.sendto(b"q%02d" % n, server.address)
        await server.wait_for_datagrams(30)
        port = sock.getsockname()[1]
    with pytest.raises(HandlerError) as info:
        await server.aclose()
    # Which of many datagrams the handler failed on, and the last ones received.
    message = str(info.value)
    assert f"(datagram_received(b'q07', 127.0.0.1:{port}) raised)" in message
    assert "datagrams received (30; the last 20, transcript() has them all): b'q10' from" in (
        message
    )
    assert "b'q09'" not in message


async def test_a_reply_function_answers_each_datagram(udp_server: UDPServerFactory) -> None:
    # A DNS-like reply copies the query's id: a script's fixed bytes cannot.
    def answer(data: bytes, addr: tuple[str, int]) -> bytes | None:
        if data.startswith(b"IGNORE"):
            return None
        return data[:2] + b" answer to " + data[2:]

    server = await udp_server(answer)
    async with _client(server.address) as (transport, client):
        transport.sendto(b"\x12\x34query")
        transport.sendto(b"IGNORE me")
        transport.sendto(b"\xab\xcdagain")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"\x12\x34 answer to query"
        assert await asyncio.wait_for(client.queue.get(), 5) == b"\xab\xcd answer to again"
        await server.wait_for_datagrams(3)
    assert [d.data for d in server.sent] == [
        b"\x12\x34 answer to query",
        b"\xab\xcd answer to again",
    ]


async def test_a_reply_functions_errors_name_the_datagram() -> None:
    def answer(data: bytes, addr: object) -> object:
        if data == b"bad":
            raise ValueError("cannot parse")
        return "text"  # not bytes

    server = await UDPServer(answer).start()  # type: ignore[arg-type]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"bad", server.address)
        sock.sendto(b"good", server.address)
        await server.wait_for_datagrams(2)
        port = sock.getsockname()[1]
    with pytest.raises(HandlerError) as info:
        await server.aclose()
    message = str(info.value)
    where = "test_a_reply_functions_errors_name_the_datagram.<locals>.answer"
    assert f"ValueError: cannot parse\n    ({where}(b'bad', 127.0.0.1:{port}) raised)" in message
    assert (
        f"TypeError: a reply function must return bytes or None, {where}(b'good', "
        f"127.0.0.1:{port}) returned str: 'text'" in message
    )
    assert server.sent == ()


async def test_udp_protocol_factory_error_raises_at_teardown() -> None:
    def factory() -> asyncio.DatagramProtocol:
        raise ValueError("no protocol today")

    server = await UDPServer(factory).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"unanswered", server.address)
        await server.wait_for_datagrams(1)
    assert [str(e) for e in server.errors] == ["no protocol today"]
    with pytest.raises(HandlerError, match=r"no protocol today\n.*\(a protocol factory\) failed"):
        await server.aclose()


# -- what server.sent records, and the transport a handler protocol gets ----------------------

PY311 = sys.version_info >= (3, 11)
PY313 = sys.version_info >= (3, 13)


class _Sender(asyncio.DatagramProtocol):
    """Answers a datagram by sending each of `payloads` back; logs what each call did."""

    def __init__(self, payloads: list[object], log: list[str]) -> None:
        self.payloads = payloads
        self.log = log

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast("asyncio.DatagramTransport", transport)

    def datagram_received(self, data: bytes, addr: object) -> None:
        _send_each(self.transport, self.payloads, addr, self.log)

    def error_received(self, exc: Exception) -> None:
        self.log.append(f"error_received: {errno.errorcode[getattr(exc, 'errno', 0)]}")


def _send_each(
    transport: asyncio.DatagramTransport, payloads: list[object], addr: object, log: list[str]
) -> None:
    for payload in payloads:
        try:
            transport.sendto(payload, addr)  # type: ignore[arg-type]
        except Exception as exc:
            log.append(f"{type(exc).__name__}: {exc}")
        else:
            log.append("returned")


async def _what_a_real_transport_does(payloads: list[object]) -> list[str]:
    """What the same sendto() calls do on a plain asyncio UDP transport (sent to itself)."""
    loop = asyncio.get_running_loop()
    log: list[str] = []
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Sender(payloads, log), local_addr=("127.0.0.1", 0)
    )
    try:
        _send_each(transport, payloads, transport.get_extra_info("sockname"), log)
    finally:
        transport.close()
    await asyncio.sleep(0)
    return log


async def test_udp_sent_records_only_what_the_handler_really_sent(
    udp_server: UDPServerFactory,
) -> None:
    # A call that raised sent nothing (and raises asyncio's own error); nor did one
    # the kernel refused inside the call (EMSGSIZE, through error_received).
    payloads: list[object] = [3, [104, 105], "str", b"x" * 70000, b"ok"]
    log: list[str] = []
    server = await udp_server(lambda: _Sender(payloads, log))
    async with _client(server.address) as (transport, client):
        transport.sendto(b"go")
        assert await asyncio.wait_for(client.queue.get(), 5) == b"ok"
    assert log == await _what_a_real_transport_does(payloads)
    assert log[2] == "TypeError: data argument must be a bytes-like object, not 'str'"
    assert "error_received: EMSGSIZE" in log
    assert [d.data for d in server.sent] == [b"ok"]
    assert [getattr(e, "errno", None) for e in server.errors_received] == [errno.EMSGSIZE]


async def test_udp_sent_omits_a_send_that_was_a_fatal_error() -> None:
    # A non-contiguous memoryview is a fatal error inside sendto(): the transport
    # closes, the datagram never leaves.
    contexts: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: contexts.append(context))
    try:
        server = await UDPServer(lambda: _Sender([memoryview(b"abcdef")[::2]], [])).start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"go", server.address)
            await server.wait_for_datagrams(1)
        for _ in range(5):
            await asyncio.sleep(0)
        with pytest.raises(HandlerError):  # the error that closed the transport
            await server.aclose()
    finally:
        loop.set_exception_handler(None)
    assert [c["message"] for c in contexts] == ["Fatal write error on datagram transport"]
    assert server.sent == ()


@pytest.mark.parametrize("kind", ["udp", "unix"])
async def test_datagram_server_whose_transport_an_error_closed_says_so(
    kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A handler's sendto() without an address, on the unconnected server socket, is
    # a fatal error: asyncio closes the transport.  The server can receive nothing
    # more; it says so at once, and raises the error at teardown.
    class ForgetsTheAddress(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = typing.cast("asyncio.DatagramTransport", transport)

        def datagram_received(self, data: bytes, addr: object) -> None:
            self.transport.sendto(data.upper())

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: None)  # asyncio logs the error
    try:
        if kind == "udp":
            server: UDPServer | UnixDatagramServer = await UDPServer(ForgetsTheAddress).start()
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        else:
            server = await UnixDatagramServer(ForgetsTheAddress).start()
            client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with client:
            client.sendto(b"ping", server.address)
            await server.wait_for_datagrams(1)
            for _ in range(5):
                await asyncio.sleep(0)
            (error,) = server.errors
            assert isinstance(error, TypeError)
            assert "an error closed its transport (TypeError: " in repr(server)
            start = loop.time()
            with pytest.raises(TimeoutError, match=r"; an error closed its transport \(TypeError"):
                await server.wait_for_datagrams(2, timeout=30)
            assert loop.time() - start < 10  # at once, not after the timeout
            with pytest.raises(HandlerError, match=r"\(it closed the server's transport\)"):
                await server.aclose()
    finally:
        loop.set_exception_handler(None)
    assert server.closed


async def test_udp_sent_omits_an_empty_datagram_where_asyncio_drops_it(
    udp_server: UDPServerFactory,
) -> None:
    # asyncio drops sendto(b"") before 3.13 (CPython gh-113812), and sends it from 3.13.
    server = await udp_server(lambda: _Sender([b"", b"end"], []))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"go", server.address)
        loop = asyncio.get_running_loop()
        got = [await loop.run_in_executor(None, sock.recv, 100)]
        if got == [b""]:
            got.append(await loop.run_in_executor(None, sock.recv, 100))
    assert got == ([b"", b"end"] if PY313 else [b"end"])
    assert [d.data for d in server.sent] == got


async def test_udp_echo_records_an_empty_reply_only_where_it_is_sent(
    udp_server: UDPServerFactory,
) -> None:
    server = await udp_server(handlers.echo)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"", server.address)
        sock.sendto(b"end", server.address)
        loop = asyncio.get_running_loop()
        got = [await loop.run_in_executor(None, sock.recv, 100)]
        if got == [b""]:
            got.append(await loop.run_in_executor(None, sock.recv, 100))
    assert got == ([b"", b"end"] if PY313 else [b"end"])
    assert [d.data for d in server.datagrams] == [b"", b"end"]
    assert [d.data for d in server.sent] == got


_TRANSPORT_API = (
    "set_write_buffer_limits",
    "get_write_buffer_limits",
    "pause_reading",
    "resume_reading",
    "is_reading",
)


def _attempt(call: typing.Callable[[], object]) -> str:
    try:
        return repr(call())
    except Exception as exc:
        return type(exc).__name__


def _api_of(transport: asyncio.BaseTransport) -> dict[str, object]:
    """Which of the API a transport has, and what each call does, in one order."""
    seen: dict[str, object] = {name: hasattr(transport, name) for name in _TRANSPORT_API}
    t = typing.cast("asyncio.Transport", transport)
    seen["set limits"] = _attempt(lambda: t.set_write_buffer_limits(high=4096))
    seen["limits"] = _attempt(t.get_write_buffer_limits)
    seen["set bad limits"] = _attempt(lambda: t.set_write_buffer_limits(high=1, low=2))
    calls = ["is_reading", "pause_reading", "is_reading", "pause_reading", "resume_reading"]
    seen["reading"] = [_attempt(getattr(t, name)) if hasattr(t, name) else "-" for name in calls]
    return seen


class _Probe(asyncio.DatagramProtocol):
    def __init__(self, found: dict[str, object], transports: list[asyncio.BaseTransport]) -> None:
        self.found = found
        self.transports = transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.found.update(_api_of(transport))
        self.transports.append(transport)


async def _real_api() -> dict[str, object]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        return _api_of(transport)
    finally:
        transport.close()
        await asyncio.sleep(0)


async def test_udp_handler_transport_has_the_real_transports_api(
    udp_server: UDPServerFactory,
) -> None:
    found: dict[str, object] = {}
    transports: list[asyncio.BaseTransport] = []
    server = await udp_server(lambda: _Probe(found, transports))
    assert found == await _real_api()
    assert found["limits"] == "(1024, 4096)"
    if not PY311:  # its transport inherits ReadTransport's methods
        assert found["reading"] == ["NotImplementedError"] * 5
        return
    assert found["reading"] == ["True", "None", "False", "None", "None"]
    # Pausing through the handler's transport pauses the socket: the datagram waits.
    (transport,) = transports
    typing.cast("asyncio.Transport", transport).pause_reading()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"later", server.address)
        await asyncio.sleep(0.05)
        assert server.datagrams == ()
        typing.cast("asyncio.Transport", transport).resume_reading()
        (datagram,) = await server.wait_for_datagrams(1)
    assert datagram.data == b"later"


def _run_on_uvloop(main: typing.Callable[[], typing.Awaitable[None]]) -> None:
    """Run `main()` on a fresh uvloop loop (in a thread: the test's loop is running)."""
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.uvloop
async def test_udp_handler_on_uvloop_sees_uvloops_transport() -> None:
    # uvloop drops sendto(b"") on every version (and any empty data, even 0),
    # and its transport has no pause_reading: the handler's has none either.
    found: dict[str, object] = {}
    log: list[str] = []

    class Both(_Sender):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            found.update(_api_of(transport))

    async def main() -> None:
        real = await _real_api()
        async with (
            UDPServer(lambda: Both([b"", 0, b"end"], log)) as server,
            _client(server.address) as (transport, client),
        ):
            transport.sendto(b"go")
            assert await asyncio.wait_for(client.queue.get(), 5) == b"end"
        assert found == real
        assert not found["pause_reading"]
        assert log == ["returned"] * 3
        assert [d.data for d in server.sent] == [b"end"]

    await asyncio.to_thread(_run_on_uvloop, main)


async def test_udp_bad_handlers_and_hosts() -> None:
    with pytest.raises(ValueError, match=r"handlers\.close has no meaning for datagrams"):
        UDPServer(handlers.close)
    with pytest.raises(ValueError, match=r"read_until.*has no meaning for datagrams"):
        UDPServer(handlers.script(handlers.read_until(b"\n")))
    with pytest.raises(TypeError, match="DatagramProtocol factory"):
        UDPServer("echo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allow_remote=True"):
        UDPServer(host="0.0.0.0")
    with pytest.raises(ValueError, match="multicast address"):
        UDPServer(group="10.0.0.1")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"group": 1}, TypeError, r"^group must be a str, got int"),
        ({"group": "ssdp"}, ValueError, r"^group must be a literal IP address"),
        ({"group": "ff02::1"}, ValueError, r"^group must be an IPv4 multicast address"),
        ({"rcvbuf": "x"}, TypeError, r"^rcvbuf must be an int from 1 to 2147483647"),
        ({"sndbuf": 2**31}, ValueError, r"^sndbuf must be an int from 1 to 2147483647"),
    ],
)
async def test_udp_bad_options_name_the_parameter(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        UDPServer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ttl", "error"),
    [(-1, ValueError), (256, ValueError), (1.5, TypeError), ("1", TypeError), (True, TypeError)],
)
async def test_multicast_socket_ttl_must_be_0_to_255(ttl: object, error: type[Exception]) -> None:
    with pytest.raises(
        error, match=rf"^ttl must be an int from 0 to 255, got {re.escape(repr(ttl))}$"
    ):
        multicast_socket(ttl=ttl).close()  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [0, 255])
async def test_multicast_socket_ttl_range_ends(ttl: int) -> None:
    with multicast_socket(ttl=ttl) as sock:
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == ttl


@pytest.mark.parametrize(
    ("interface", "error", "match"),
    [
        (1, TypeError, r"^interface must be a str, got int$"),
        # One message for every refusal, naming what it takes: nothing about an
        # allow_remote it has not, nor IPv6, which it cannot send from.
        (
            "localhost",
            ValueError,
            r"^interface must be a literal IPv4 loopback address .*'localhost'$",
        ),
        (
            "10.0.0.1",
            ValueError,
            r"^interface must be a literal IPv4 loopback address .*'10\.0\.0\.1'$",
        ),
        (
            "::1",
            ValueError,
            r"^interface must be a literal IPv4 loopback address such as '127\.0\.0\.1', "
            r"got '::1'$",
        ),
    ],
)
async def test_multicast_socket_names_a_bad_interface(
    interface: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        multicast_socket(interface).close()  # type: ignore[arg-type]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's ENODEV")
async def test_multicast_server_on_an_interface_that_cannot_join_names_it() -> None:
    # 127.255.255.255 is loopback, and passes the host check, but is no interface's
    # address: the kernel's bare "No such device" said nothing of which argument.
    with pytest.raises(
        OSError,
        match=r"No such device: cannot join group '239\.1\.2\.3' on the interface "
        r"host='127\.255\.255\.255'",
    ):
        await UDPServer(group="239.1.2.3", host="127.255.255.255").start()


async def test_udp_wait_on_another_loop_is_refused(udp_server: UDPServerFactory) -> None:
    server = await udp_server(handlers.sink)

    def on_another_loop() -> str:
        with pytest.raises(RuntimeError, match="another event loop") as caught:
            asyncio.run(server.wait_for_datagrams(1, timeout=0.1))
        return str(caught.value)

    message = await asyncio.get_running_loop().run_in_executor(None, on_another_loop)
    assert message.startswith(f"{server._name} belongs to another event loop")
    with pytest.raises(RuntimeError, match="not started"):
        await UDPServer().wait_for_datagrams(1)


@pytest.mark.parametrize("kind", ["udp", "unix"])
async def test_udp_aclose_on_another_loop_is_refused_and_the_server_stays_open(
    udp_server: UDPServerFactory, unix_datagram_server: UnixDatagramServerFactory, kind: str
) -> None:
    server = await (udp_server if kind == "udp" else unix_datagram_server)(handlers.sink)

    def on_another_loop() -> tuple[str, float]:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="another event loop") as caught:
            asyncio.run(server.aclose())
        return str(caught.value), time.monotonic() - started

    message, seconds = await asyncio.get_running_loop().run_in_executor(None, on_another_loop)
    assert message.startswith(f"{server._name} belongs to another event loop")
    assert seconds < 0.5  # at once, not after waiting for the script and the transport
    assert not server.closed
    family = socket.AF_INET if kind == "udp" else socket.AF_UNIX
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"still here", server.address)
    await server.wait_for_datagrams(1)
    await server.aclose()  # on its own loop
    assert server.closed


async def test_udp_context_manager_closes() -> None:
    async with UDPServer() as server:
        assert not server.closed
    assert server.closed


async def test_udp_small_receive_buffer(udp_server: UDPServerFactory) -> None:
    server = await udp_server(handlers.sink, rcvbuf=2048)
    (transport_sock,) = _sockets_of(server)
    assert transport_sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) <= 4608


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _sockets_of(server: UDPServer) -> list[socket.socket]:
    assert server._transport is not None
    return [server._transport.get_extra_info("socket")]


# -- multicast and broadcast --------------------------------------------------------


async def test_multicast_ssdp_style_receiver(udp_server: UDPServerFactory) -> None:
    try:
        server = await udp_server(handlers.sink, group="239.255.255.250")
    except OSError as exc:  # pragma: no cover - hosts without multicast on loopback
        pytest.skip(f"multicast on loopback unavailable: {exc}")
    assert server.address == ("239.255.255.250", server.port)
    search = b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\n\r\n'
    with multicast_socket() as sock:
        sock.sendto(search, server.address)
        (datagram,) = await server.wait_for_datagrams(1)
        assert datagram.data == search
        assert datagram.peer == sock.getsockname()


async def test_multicast_reaches_every_member(udp_server: UDPServerFactory) -> None:
    first = await udp_server(handlers.sink, group="239.255.255.250", reuse_port=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
        second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        second.bind(first.address)
        second.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton("239.255.255.250") + socket.inet_aton("127.0.0.1"),
        )
        second.settimeout(5)
        with multicast_socket() as sock:
            sock.sendto(b"NOTIFY", first.address)
            await first.wait_for_datagrams(1)
            assert second.recv(100) == b"NOTIFY"


async def test_broadcast_on_loopback(udp_server: UDPServerFactory) -> None:
    server = await udp_server(handlers.sink, host="127.255.255.255")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            sock.sendto(b"anyone?", server.address)
        except OSError as exc:  # pragma: no cover - the OS forbids it
            pytest.skip(f"broadcast on loopback not allowed here: {exc}")
        (datagram,) = await server.wait_for_datagrams(1)
    assert datagram.data == b"anyone?"


async def test_broadcast_flag_lets_the_server_send_broadcasts(
    udp_server: UDPServerFactory,
) -> None:
    server = await udp_server(broadcast=True)
    assert server._transport is not None
    sock = server._transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 1


# -- Unix datagrams -------------------------------------------------------------------------


async def test_unix_datagram_sink_and_cleanup(
    unix_datagram_server: UnixDatagramServerFactory,
) -> None:
    server = await unix_datagram_server(handlers.sink)
    assert _exists(server.path)
    assert len(os.fsencode(server.path)) <= 107
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"log line", server.address)
        (datagram,) = await server.wait_for_datagrams(1)
    assert datagram.data == b"log line"
    await server.aclose()
    assert not _exists(os.path.dirname(server.path))


async def test_unix_datagram_echo_to_a_bound_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    async with UnixDatagramServer(handlers.echo) as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("")  # an autobound abstract address the server can answer
            sock.settimeout(5)
            sock.sendto(b"ping", server.path)
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, sock.recv, 100)
    assert reply == b"ping"


async def test_unix_datagram_echo_records_no_reply_to_an_unbound_client() -> None:
    async with UnixDatagramServer(handlers.echo) as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"ping", server.path)  # from no address: nothing can answer it
            await server.wait_for_datagrams(1)
    assert server.sent == ()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
async def test_unix_datagram_abstract(unix_datagram_server: UnixDatagramServerFactory) -> None:
    server = await unix_datagram_server(handlers.sink, abstract=True)
    assert server.path.startswith("\0")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"hidden", server.path)
        await server.wait_for_datagrams(1)
