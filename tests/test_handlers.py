"""Scripted conversations and handler validation."""

# ruff: noqa: F811  (fixtures imported from their module are redefined as parameters)

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import typing

import pytest

from nettest import handlers
from nettest._handlers import HandlerError, ScriptMismatch, _diff, classify
from nettest._recording import Ending
from nettest._servers import TCPServer, TCPServerFactory, tcp_server  # noqa: F401

HTTP_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"


async def _talk(server: TCPServer, *chunks: bytes, eof: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection(*server.address)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
    if eof:
        writer.write_eof()
    try:
        return await reader.read()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def _mismatch(server: TCPServer) -> str:
    with pytest.raises(HandlerError) as info:
        await server.aclose()
    (error,) = info.value.errors
    assert isinstance(error, ScriptMismatch)
    return str(error)


@pytest.mark.asyncio
async def test_script_http_exchange(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(
        handlers.script(
            handlers.expect_line(b"GET /index.html HTTP/1.1"),
            handlers.read_until(b"\r\n\r\n"),
            handlers.send(HTTP_REPLY),
            handlers.close,
        )
    )
    request = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    # Delivered a byte at a time, the script still reads whole steps.
    reply = await _talk(server, *(request[i : i + 1] for i in range(len(request))))
    assert reply == HTTP_REPLY
    (conn,) = server.connections
    assert conn.received == request
    assert await conn.wait_closed() is Ending.CLOSED


@pytest.mark.asyncio
async def test_script_runs_once_per_connection(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.script(handlers.expect(b"hi"), handlers.send(b"yo")))
    for _ in range(3):
        assert await _talk(server, b"hi") == b"yo"
    assert len(server.connections) == 3


@pytest.mark.asyncio
async def test_script_expect_line_pattern_and_eof(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(
        handlers.script(
            handlers.expect_line(re.compile(rb"HELO [a-z.]+")),
            handlers.send(b"250 ok\n"),
            handlers.expect_eof(),
            handlers.send(b"bye\n"),
        )
    )
    assert await _talk(server, b"HELO example.org\r\n", eof=True) == b"250 ok\nbye\n"


@pytest.mark.asyncio
async def test_script_sleep_delays_the_next_step(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(
        handlers.script(handlers.send(b"a"), handlers.sleep(0.2), handlers.send(b"b"))
    )
    reader, writer = await asyncio.open_connection(*server.address)
    assert await reader.readexactly(1) == b"a"
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await reader.readexactly(1) == b"b"
    assert loop.time() - started >= 0.15
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_script_ending_with_reset(tcp_server: TCPServerFactory) -> None:
    server = await tcp_server(handlers.script(handlers.expect(b"x"), handlers.reset))
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"x")
    with pytest.raises(ConnectionResetError):
        await reader.read()
    writer.close()
    (conn,) = server.connections
    assert await conn.wait_closed() is Ending.ABORTED


@pytest.mark.asyncio
async def test_script_ending_with_hang_keeps_the_connection_open(
    tcp_server: TCPServerFactory,
) -> None:
    server = await tcp_server(handlers.script(handlers.send(b"banner\n"), handlers.hang))
    reader, writer = await asyncio.open_connection(*server.address)
    assert await reader.readline() == b"banner\n"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.1)
    assert server.connections[0].is_open
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_script_deviation_shows_a_diff() -> None:
    server = await TCPServer(
        handlers.script(handlers.expect_line(b"GET / HTTP/1.1"), handlers.send(HTTP_REPLY))
    ).start()
    assert await _talk(server, b"GET /admin HTTP/1.1\r\n") == b""
    message = await _mismatch(server)
    assert message == (
        "script step 1 of 2, expect_line(b'GET / HTTP/1.1'): the client sent something else\n"
        "  expected: b'GET / HTTP/1.1'\n"
        "  received: b'GET /admin HTTP/1.1'\n"
        "                   ^ first difference at byte 5\n"
        "  received on connection #1 so far: b'GET /admin HTTP/1.1\\r\\n'"
    )


@pytest.mark.asyncio
async def test_script_client_sends_too_little() -> None:
    server = await TCPServer(handlers.script(handlers.expect(b"PING\r\n"))).start()
    assert await _talk(server, b"PI", eof=True) == b""
    message = await _mismatch(server)
    assert "expect(b'PING\\r\\n'): the client closed its side after sending b'PI'" in message


@pytest.mark.asyncio
async def test_script_step_timeout_says_what_arrived() -> None:
    server = await TCPServer(handlers.script(handlers.expect(b"PING", timeout=0.05))).start()
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(b"PI")
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    message = await _mismatch(server)
    assert "nothing matching arrived in 0.05 s" in message
    assert "so far: b'PI'" in message


@pytest.mark.asyncio
async def test_script_unmet_at_teardown_is_an_error() -> None:
    server = await TCPServer(handlers.script(handlers.expect(b"never"))).start()
    _, writer = await asyncio.open_connection(*server.address)
    await server.wait_for_connections(1)
    message = await _mismatch(server)
    assert "expect(b'never'): the connection closed before it arrived" in message
    writer.close()


@pytest.mark.asyncio
async def test_script_expect_eof_unmet_when_the_server_closes() -> None:
    server = await TCPServer(handlers.script(handlers.expect_eof())).start()
    _, writer = await asyncio.open_connection(*server.address)
    await server.wait_for_connections(1)
    # The client never half-closes: the reader's EOF at teardown is the server's own.
    message = await _mismatch(server)
    assert "expect_eof(): not met when the server closed" in message
    writer.close()


@pytest.mark.asyncio
async def test_script_unexpected_eof_and_extra_data() -> None:
    server = await TCPServer(handlers.script(handlers.expect_eof())).start()
    assert await _talk(server, b"surprise", eof=True) == b""
    assert "expected EOF; the client sent b'surprise'" in await _mismatch(server)


def test_script_validation() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        handlers.script()
    with pytest.raises(ValueError, match="must be the last step"):
        handlers.script(handlers.close, handlers.send(b"x"))
    with pytest.raises(TypeError, match="step 1 must be a script step"):
        handlers.script(b"data")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="step 1 must be a script step"):
        handlers.script(handlers.echo)
    with pytest.raises(TypeError, match="step 1 must be a script step"):
        handlers.script([handlers.close])  # type: ignore[arg-type]
    # A step maker passed uncalled, as handlers.close is passed.
    with pytest.raises(
        TypeError,
        match=r"^step 2 is handlers.expect_eof itself, which makes a step: "
        r"call it, handlers.expect_eof\(\)$",
    ):
        handlers.script(handlers.send(b"x"), handlers.expect_eof)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"step 1 is handlers.send itself.*handlers.send\(...\)"):
        handlers.script(handlers.send)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data must not be empty"):
        handlers.expect(b"")
    with pytest.raises(TypeError, match="data must be bytes"):
        handlers.send("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="line must be bytes"):
        handlers.expect_line(re.compile("text"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        handlers.sleep(-1)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        handlers.expect(b"x", timeout=0)
    with pytest.raises(ValueError, match="delimiter must not be empty"):
        handlers.read_until(b"")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("1", TypeError),
        (True, TypeError),
        (b"1", TypeError),
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (10**400, ValueError),
    ],
)
def test_step_seconds_name_the_parameter_and_range(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^seconds must be (a number )?>= 0"):
        handlers.sleep(value)  # type: ignore[arg-type]
    timeout: typing.Any = value
    steps: list[typing.Callable[[], object]] = [
        lambda: handlers.expect(b"x", timeout=timeout),
        lambda: handlers.expect_line(b"x", timeout=timeout),
        lambda: handlers.read_until(b"x", timeout=timeout),
        lambda: handlers.expect_eof(timeout=timeout),
    ]
    for step in steps:
        with pytest.raises(error, match=r"^timeout must be .*> 0.*or None to wait for ever"):
            step()


def test_step_seconds_accept_ints_floats_and_none() -> None:
    assert repr(handlers.script(handlers.sleep(0), handlers.sleep(2))) == (
        "nettest.handlers.script(sleep(0.0), sleep(2.0))"
    )
    handlers.expect(b"x", timeout=None)
    handlers.expect_eof(timeout=1)


def test_script_repr_reads_like_the_call() -> None:
    script = handlers.script(
        handlers.expect(b"a"),
        handlers.expect_line(re.compile(rb"\d+")),
        handlers.read_until(b"\n"),
        handlers.sleep(0.5),
        handlers.send(b"b"),
        handlers.reset,
    )
    assert repr(script) == (
        "nettest.handlers.script(expect(b'a'), expect_line(re.compile(b'\\\\d+')), "
        "read_until(b'\\n'), sleep(0.5), send(b'b'), reset)"
    )
    assert repr(handlers.echo) == "nettest.handlers.echo"


def test__diff_marks_the_first_difference() -> None:
    text = _diff("step", b"abcdef", b"abXdef", None)
    lines = text.splitlines()
    assert lines[1] == "  expected: b'abcdef'"
    assert lines[2] == "  received: b'abXdef'"
    assert lines[3].index("^") == lines[2].index("X")
    # A shorter reply differs where it ends.
    assert "first difference at byte 2" in _diff("step", b"abc", b"ab", None)


def test_classify_kinds() -> None:
    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass

    class Callable:
        async def __call__(self, reader: object, writer: object) -> None:
            pass

    assert classify(handlers.echo) == "builtin"
    assert classify(stream) == "stream"
    assert classify(Callable()) == "stream"
    assert classify(asyncio.Protocol) == "protocol"
    assert classify(lambda: asyncio.Protocol()) == "protocol"
    assert classify(asyncio.DatagramProtocol, datagram=True) == "protocol"
    with pytest.raises(TypeError, match=r"or a function reply\(data, addr\); got a coroutine fun"):
        classify(stream, datagram=True)
    with pytest.raises(TypeError, match="got the class Protocol"):
        classify(asyncio.Protocol, datagram=True)


def test_classify_reads_a_plain_callables_signature() -> None:
    async def serve(reader: object, writer: object, greeting: bytes) -> None:
        pass

    def plain(reader: object, writer: object) -> None:
        pass

    # As asyncio.start_server takes them: any callable of (reader, writer).
    assert classify(lambda r, w: serve(r, w, b"hi")) == "stream"
    assert classify(plain) == "stream"
    assert classify(functools.partial(serve, greeting=b"hi")) == "stream"
    # A protocol factory takes no arguments; defaults do not change that.
    assert classify(lambda *args: asyncio.Protocol()) == "protocol"
    assert classify(functools.partial(asyncio.Protocol)) == "protocol"
    # For a datagram server, a function of two is a reply function.
    assert classify(plain, datagram=True) == "reply"
    with pytest.raises(TypeError, match=r"nor two, \(data, addr\) \(a reply function\)$"):
        classify(lambda a: None, datagram=True)
    with pytest.raises(TypeError, match=r"<lambda>\(a\), which takes neither no arguments"):
        classify(lambda a: None)


def test_classify_reads_an_async_functions_signature() -> None:
    # Refused when the server is made, not at each connection's teardown error.
    async def forgot_the_writer(reader: object) -> None:
        pass

    async def wants_more(reader: object, writer: object, greeting: bytes) -> None:
        pass

    async def any_arguments(*args: object) -> None:
        pass

    class Handler:
        async def __call__(self, reader: object, writer: object) -> None:
            pass

    with pytest.raises(
        TypeError,
        match=r"got the async function .*forgot_the_writer\(reader[^,]*\), which cannot "
        r"be called with \(reader, writer\)",
    ):
        classify(forgot_the_writer)
    with pytest.raises(TypeError, match=r"wants_more\(reader.*greeting.*\), which cannot"):
        classify(wants_more)
    assert classify(any_arguments) == "stream"
    assert classify(Handler()) == "stream"
    assert classify(functools.partial(wants_more, greeting=b"hi")) == "stream"


@pytest.mark.asyncio
async def test_a_plain_function_handler_serves_and_its_result_is_awaited() -> None:
    from nettest import TCPServer

    async def serve(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: bytes
    ) -> None:
        await reader.readexactly(1)
        writer.write(reply)

    seen: list[bytes] = []

    def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(b"called")
        writer.write(b"sync")
        writer.close()

    for handler, expected in ((lambda r, w: serve(r, w, b"async"), b"async"), (plain, b"sync")):
        async with TCPServer(handler) as server:
            reader, writer = await asyncio.open_connection(*server.address)
            if expected == b"async":
                writer.write(b"x")
            assert await asyncio.wait_for(reader.read(), 5) == expected
            writer.close()
            await writer.wait_closed()
    assert seen == [b"called"]


def test_a_steps_default_timeout_says_what_it_is_in_its_signature() -> None:
    # It showed as <object object at 0x7f...> in help() and in an editor.
    for step in (handlers.expect, handlers.expect_line, handlers.read_until, handlers.expect_eof):
        assert "timeout: 'float | None' = <the session's timeout>" in str(inspect.signature(step))
