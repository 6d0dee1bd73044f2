"""Server behaviours: the built-in handlers and scripted conversations.

A server's handler is one of:

* a built-in `Handler` from `nettest.handlers` (`echo`, `sink`, `close`,
  `reset`, `hang`, or a `script`);
* an ``async def handler(reader, writer)`` coroutine function (stream servers);
* a protocol factory: an `asyncio.Protocol` (or `asyncio.DatagramProtocol`)
  subclass, or any callable returning one.

Scripts are sequences of steps.  A stream server runs its script once per
connection; a datagram server runs it once over all the datagrams it receives.
A step the client does not satisfy raises `ScriptMismatch` inside the server,
which the server raises again at teardown.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import ssl
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._recording import _UNSET, Connection, check_bytes, check_seconds, show
from ._settings import default_timeout

__all__ = [
    "DatagramProtocolFactory",
    "Handler",
    "HandlerError",
    "ProtocolFactory",
    "ScriptMismatch",
    "Step",
    "StreamHandler",
    "close",
    "echo",
    "expect",
    "expect_eof",
    "expect_line",
    "hang",
    "read_until",
    "reset",
    "script",
    "send",
    "sink",
    "sleep",
]

#: An ``async def handler(reader, writer)`` coroutine function, or any callable
#: taking ``(reader, writer)`` (what it returns is awaited if it is awaitable).
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[object] | None]
#: A callable returning the `asyncio.Protocol` that serves a connection.
ProtocolFactory = Callable[[], asyncio.BaseProtocol]
#: A callable returning the `asyncio.DatagramProtocol` that serves a datagram socket.
DatagramProtocolFactory = Callable[[], asyncio.DatagramProtocol]
#: A function a datagram server calls with each datagram and its sender's
#: address: the bytes it returns are sent back to the sender, None sends nothing.
DatagramReply = Callable[[bytes, Any], bytes | bytearray | memoryview | None]


class HandlerError(Exception):
    """A server's handler raised, or a script was not followed; raised at teardown.

    The message names each failing connection (or datagram), the exception and
    the bytes that the client had sent when it happened.  The first exception is
    also the ``__cause__``, so that the report shows where the handler raised,
    unless it is a `ScriptMismatch`: its message here says all, and its
    traceback would show only nettest's script runner.

    Attributes:
        errors: every exception the handlers raised, in order.
    """

    def __init__(self, message: str, errors: tuple[BaseException, ...]) -> None:
        super().__init__(message)
        self.errors = errors


def handler_error(lines: list[str], errors: tuple[BaseException, ...]) -> HandlerError:
    """The `HandlerError` a server raises at teardown for `errors` (see its docstring)."""
    error = HandlerError("\n".join(lines), errors)
    error.__cause__ = None if isinstance(errors[0], ScriptMismatch) else errors[0]
    error.__suppress_context__ = True
    return error


class ScriptMismatch(AssertionError):
    """The client did not follow a `~nettest.handlers.script`: it sent other bytes, or too few.

    Raised inside the server's handler, and raised again (inside `HandlerError`)
    when the server is closed.  The message shows what the step expected, what
    came, and where they first differ.
    """


class Handler:
    """A built-in server behaviour: pass one as a server's handler.

    This type has no public constructor; use the instances and functions in
    `nettest.handlers`.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"nettest.handlers.{self.name}"

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        raise NotImplementedError  # pragma: no cover


class _Echo(Handler):
    __slots__ = ()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            return
        writer.close()


class _Sink(Handler):
    __slots__ = ()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            return
        writer.close()


class _Close(Handler):
    __slots__ = ()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        writer.close()


class _Reset(Handler):
    __slots__ = ()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        conn.reset()


class _Hang(Handler):
    __slots__ = ()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        # Stop reading so that the kernel buffers fill and the client feels it.
        typing.cast("asyncio.Transport", writer.transport).pause_reading()
        await conn.wait_closed(timeout=None)


#: Send back every byte received; close after the client's EOF.  On a datagram
#: server, send every datagram back to its sender.
echo: typing.Final[Handler] = _Echo("echo")
#: Read and record everything, send nothing; close after the client's EOF.
sink: typing.Final[Handler] = _Sink("sink")
#: Accept, then close at once (FIN).  Also the last step of a `script`.
close: typing.Final[Handler] = _Close("close")
#: Accept, then reset at once (RST, through SO_LINGER(1, 0)).  Also the last step
#: of a `script`.
reset: typing.Final[Handler] = _Reset("reset")
#: Accept and never read nor write: the client's writes back up in the kernel.
#: Also the last step of a `script`.
hang: typing.Final[Handler] = _Hang("hang")


# -- scripts ------------------------------------------------------------------


class Step:
    """One step of a `script`.

    This type has no public constructor; make steps with `expect`,
    `expect_line`, `read_until`, `expect_eof`, `send`, `sleep` and `start_tls`, or end a
    script with `close`, `reset` or `hang`.
    """

    __slots__ = ()

    def describe(self) -> str:
        """Return the step as it would be written: ``expect(b'PING')``."""
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True, slots=True, repr=False)
class _Expect(Step):
    data: bytes
    timeout: float | None

    def describe(self) -> str:
        return f"expect({show(self.data, 64)})"


@dataclass(frozen=True, slots=True, repr=False)
class _ExpectLine(Step):
    line: bytes | re.Pattern[bytes]
    timeout: float | None

    def describe(self) -> str:
        if isinstance(self.line, re.Pattern):
            return f"expect_line(re.compile({self.line.pattern!r}))"
        return f"expect_line({show(self.line, 64)})"


@dataclass(frozen=True, slots=True, repr=False)
class _ReadUntil(Step):
    delimiter: bytes
    timeout: float | None

    def describe(self) -> str:
        return f"read_until({self.delimiter!r})"


@dataclass(frozen=True, slots=True, repr=False)
class _ExpectEOF(Step):
    timeout: float | None

    def describe(self) -> str:
        return "expect_eof()"


@dataclass(frozen=True, slots=True, repr=False)
class _Send(Step):
    data: bytes

    def describe(self) -> str:
        return f"send({show(self.data, 64)})"


@dataclass(frozen=True, slots=True, repr=False)
class _Sleep(Step):
    seconds: float

    def describe(self) -> str:
        return f"sleep({self.seconds!r})"


@dataclass(frozen=True, slots=True, repr=False)
class _StartTLS(Step):
    context: ssl.SSLContext
    timeout: float | None

    def describe(self) -> str:
        return "start_tls(...)"


@dataclass(frozen=True, slots=True, repr=False)
class _End(Step):
    handler: Handler

    def describe(self) -> str:
        return repr(self.handler).rsplit(".", 1)[-1]


def _step_timeout(timeout: float | None, none_means: str = "to wait for ever") -> Any:
    if timeout is _UNSET:
        return _UNSET
    return check_seconds("timeout", timeout, allow_none=True, none_means=none_means)


def expect(data: bytes, *, timeout: float | None = _UNSET) -> Step:
    """Script step: the client sends exactly ``data`` next.

    On a stream, reads ``len(data)`` bytes and compares them; on a datagram
    server, the next datagram must equal ``data``.

    Args:
        data: the bytes expected (not empty).
        timeout: seconds to wait for them (> 0 and finite); nettest's default
            timeout if not given, None for ever.

    Raises:
        TypeError: ``data`` is not bytes, or ``timeout`` not a number.
        ValueError: ``data`` is empty, or ``timeout`` out of range.

    Example::

        script(expect(b"PING\\r\\n"), send(b"PONG\\r\\n"), close)
    """
    if not check_bytes("data", data):
        raise ValueError("data must not be empty; use expect_eof() to expect the end")
    return _Expect(data, _step_timeout(timeout))


def expect_line(line: bytes | typing.Pattern[bytes], *, timeout: float | None = _UNSET) -> Step:
    """Script step: the client sends a line equal to ``line`` (or matching the pattern).

    Reads up to and including ``b"\\n"``, and compares the line without its line
    ending (``\\r\\n`` or ``\\n``).  A compiled pattern must match the whole line.

    Example::

        script(expect_line(b"GET / HTTP/1.1"), read_until(b"\\r\\n\\r\\n"), send(reply))
    """
    if not isinstance(line, re.Pattern):
        check_bytes("line", line)
    elif not isinstance(line.pattern, bytes):
        raise TypeError("line must be bytes or a bytes pattern (re.compile(rb'...'))")
    return _ExpectLine(line, _step_timeout(timeout))


def read_until(delimiter: bytes, *, timeout: float | None = _UNSET) -> Step:
    """Script step: read whatever the client sends, up to and including ``delimiter``.

    For parts of a request the test does not care about, such as HTTP headers.
    """
    if not check_bytes("delimiter", delimiter):
        raise ValueError("delimiter must not be empty")
    return _ReadUntil(delimiter, _step_timeout(timeout))


def expect_eof(*, timeout: float | None = _UNSET) -> Step:
    """Script step: the client sends nothing more and closes its side (EOF)."""
    return _ExpectEOF(_step_timeout(timeout))


def send(data: bytes) -> Step:
    """Script step: send ``data`` to the client (on a datagram server, to the last sender)."""
    return _Send(check_bytes("data", data))


def sleep(seconds: float) -> Step:
    """Script step: wait ``seconds`` (on the event loop's clock) before the next step.

    ``seconds`` is a finite number >= 0; to wait for ever, end the script with `hang`.

    Raises:
        TypeError: ``seconds`` is not a number.
        ValueError: ``seconds`` is negative, NaN or infinite.
    """
    return _Sleep(check_seconds("seconds", seconds, allow_zero=True))


@typing.final
class Script(Handler):
    """A scripted conversation; make one with `script`.

    This type has no public constructor.
    """

    __slots__ = ("steps",)

    def __init__(self, steps: tuple[Step, ...]) -> None:
        super().__init__("script")
        self.steps = steps

    def __repr__(self) -> str:
        return f"nettest.handlers.script({', '.join(s.describe() for s in self.steps)})"

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection
    ) -> None:
        total = len(self.steps)
        for number, step in enumerate(self.steps, 1):
            where = f"script step {number} of {total}, {step.describe()}"
            if isinstance(step, _Send):
                writer.write(step.data)
                await writer.drain()
            elif isinstance(step, _Sleep):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, _StartTLS):
                if not await _start_tls(step, where, reader, writer, conn):
                    return
            elif isinstance(step, _End):
                await step.handler._serve(reader, writer, conn)
                return
            else:
                await _run_read_step(step, where, reader, conn)
        writer.close()


def start_tls(context: ssl.SSLContext, *, timeout: float | None = _UNSET) -> Step:
    """Script step: upgrade the connection to TLS as its server (STARTTLS), with ``context``.

    The steps after it read and send over TLS; the server's recording stays in
    cleartext on both sides of the upgrade.  If the handshake fails (the client
    refused the certificate, or hung up), the script ends there and raises
    nothing: the failure is the server's ``handshake_failures`` entry (wait for
    it with ``wait_for_handshake_failures``), and the connection stays in
    ``connections`` with what crossed in the clear.
    Bytes the client sent in the clear after the command and before its
    handshake are a `~nettest.ScriptMismatch` (read as TLS input they would be
    injected).  Needs Python 3.11 (``StreamWriter.start_tls``).

    Args:
        context: the server's context (``tls_server_context``, say).
        timeout: seconds for the handshake (> 0 and finite); nettest's default
            timeout if not given, None for asyncio's own (60 s).

    Raises:
        TypeError: ``context`` is not an `ssl.SSLContext`, or ``timeout`` not a number.
        ValueError: ``context`` is a client context (``PROTOCOL_TLS_CLIENT``), or
            ``timeout`` out of range.
        RuntimeError: Python 3.10, which has no ``StreamWriter.start_tls``.

    Example::

        script(
            send(b"220 ready\\r\\n"),
            expect_line(b"STARTTLS"),
            send(b"220 go ahead\\r\\n"),
            start_tls(tls_server_context),
            expect_line(b"EHLO client"),
            send(b"250 hello\\r\\n"),
            close,
        )
    """
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"context must be an ssl.SSLContext, got {context!r}")
    if context.protocol == ssl.PROTOCOL_TLS_CLIENT:
        # Taken, it would fail every client's handshake: a negative test would pass.
        raise ValueError(
            "context must be a server context (ssl.PROTOCOL_TLS_SERVER, such as "
            "tls_server_context), got a client context (ssl.PROTOCOL_TLS_CLIENT)"
        )
    if not hasattr(asyncio.StreamWriter, "start_tls"):
        raise RuntimeError(
            "handlers.start_tls needs Python 3.11 or newer (StreamWriter.start_tls); "
            "on 3.10 serve TLS from the start with ssl="
        )
    return _StartTLS(context, _step_timeout(timeout, none_means="for asyncio's 60 s"))


def script(*steps: Step | Handler) -> Script:
    """Make a handler that follows a scripted conversation, step by step.

    Steps: `expect`, `expect_line`, `read_until`, `expect_eof`, `send`, `sleep`
    and `start_tls`; `close`, `reset` or `hang` may end the script.  A stream server runs
    the script on each connection and closes the connection when it ends.  When
    the client deviates, the handler raises `~nettest.ScriptMismatch`, and the server
    raises it again at teardown with a readable diff.

    Args:
        steps: the steps, in order.

    Raises:
        TypeError: a step is not a step.
        ValueError: no steps, or `close`/`reset`/`hang` before the last step.

    Example::

        reply = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"
        server = await tcp_server(
            handlers.script(
                handlers.expect_line(b"GET / HTTP/1.1"),
                handlers.read_until(b"\\r\\n\\r\\n"),
                handlers.send(reply),
                handlers.close,
            )
        )
    """
    if not steps:
        raise ValueError("script needs at least one step")
    made: list[Step] = []
    for number, step in enumerate(steps, 1):
        if isinstance(step, Handler) and step.name in ("close", "reset", "hang"):
            if number != len(steps):
                raise ValueError(
                    f"step {number}: handlers.{step.name} ends a script; it must be the last step"
                )
            made.append(_End(step))
        elif isinstance(step, Step):
            made.append(step)
        elif (maker := _step_maker(step)) is not None:
            raise TypeError(
                f"step {number} is handlers.{maker} itself, which makes a step: "
                f"call it, handlers.{maker}({'' if maker == 'expect_eof' else '...'})"
            )
        else:
            raise TypeError(
                f"step {number} must be a script step (expect, expect_line, read_until, "
                f"expect_eof, send, sleep, start_tls) or handlers.close/reset/hang; "
                f"got {step!r}"
            )
    return Script(tuple(made))


async def _start_tls(
    step: _StartTLS,
    where: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    conn: Connection,
) -> bool:
    """Upgrade the connection to TLS; return whether the handshake succeeded.

    Bytes the client sent in the clear after the command and before its
    handshake are a mismatch: a server that read them as if they had come over
    TLS would be open to command injection (CVE-2011-0411), so a client must
    wait.  A handshake that fails (recorded in the server's
    ``handshake_failures``), or that the server's closing cuts short, ends the
    script quietly.
    """
    buffered = bytes(getattr(reader, "_buffer", b""))
    if buffered:
        raise ScriptMismatch(
            f"{where}: the client sent {show(buffered, 64)} in the clear before its TLS "
            "handshake; a client must wait for the handshake to send more (read as TLS "
            f"input, it would be injected){_so_far(conn)}"
        )
    timeout = default_timeout() if step.timeout is _UNSET else step.timeout
    plain = writer.transport
    try:
        await writer.start_tls(  # type: ignore[attr-defined, unused-ignore]
            step.context, ssl_handshake_timeout=timeout
        )
    except (ssl.SSLError, ConnectionError, TimeoutError) as error:
        conn._actions.tls_failed(error)
        writer.transport.abort()
        return False
    except AttributeError:
        tls = getattr(writer, "_transport", None)
        if tls is not None and tls is not plain and tls.is_closing():
            # The handshake was done, and the client closed at once: start_tls()
            # then failed asking the TLS transport, closed meanwhile, what it
            # carries.  The script goes on and reads what the client sent, and its
            # EOF; the writer gets the closed socket's transport, which drops what
            # a later step sends, as after any close (the TLS one would raise).
            writer._transport = plain  # type: ignore[attr-defined]
            return True
        # The server closed the connection during the handshake: asyncio's
        # start_tls() then has no transport to hand on, gives the writer None,
        # and says so this way.  The writer gets its closed transport back, or
        # its finaliser would fail on None.
        if tls is not None or not plain.is_closing():
            raise
        writer._transport = plain  # type: ignore[attr-defined]
        return False
    # Read now, while the TLS layer answers: from 3.12 it no longer does once the
    # client has closed, and Connection.tls would stay None.
    _ = conn.tls
    return True


def upgrades_to_tls(handler: object) -> bool:
    """Whether `handler` is a script with a `start_tls` step (a plain server's TLS)."""
    return isinstance(handler, Script) and any(
        isinstance(step, _StartTLS) for step in handler.steps
    )


def _step_maker(step: object) -> str | None:
    """The name of the function that makes script steps that `step` is, if it is one.

    One passed to `script` uncalled is a mistake worth naming.
    """
    makers = (expect, expect_line, read_until, expect_eof, send, sleep, start_tls)
    return next((maker.__name__ for maker in makers if maker is step), None)


def _timeout_of(step: _Expect | _ExpectLine | _ReadUntil | _ExpectEOF) -> float | None:
    return default_timeout() if step.timeout is _UNSET else step.timeout


async def _run_read_step(
    step: Step, where: str, reader: asyncio.StreamReader, conn: Connection
) -> None:
    assert isinstance(step, (_Expect, _ExpectLine, _ReadUntil, _ExpectEOF))
    timeout = _timeout_of(step)
    try:
        if isinstance(step, _Expect):
            got = await asyncio.wait_for(reader.readexactly(len(step.data)), timeout)
            if got != step.data:
                raise ScriptMismatch(_diff(where, step.data, got, conn))
        elif isinstance(step, _ExpectLine):
            raw = await asyncio.wait_for(reader.readuntil(b"\n"), timeout)
            line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            if isinstance(step.line, re.Pattern):
                if step.line.fullmatch(line) is None:
                    raise ScriptMismatch(
                        f"{where}: the line does not match\n"
                        f"  pattern:  {step.line.pattern!r}\n  received: {show(line)}"
                        + _so_far(conn)
                    )
            elif line != step.line:
                raise ScriptMismatch(_diff(where, step.line, line, conn))
        elif isinstance(step, _ReadUntil):
            await asyncio.wait_for(reader.readuntil(step.delimiter), timeout)
        else:
            extra = await asyncio.wait_for(reader.read(65536), timeout)
            if extra:
                raise ScriptMismatch(
                    f"{where}: expected EOF; the client sent {show(extra)}" + _so_far(conn)
                )
            if not conn.eof_received:  # the reader's EOF came from the server closing
                raise ScriptMismatch(f"{where}: not met when the server closed" + _so_far(conn))
            if conn._eof_answered_close:
                raise ScriptMismatch(
                    f"{where}: not met when the server closed (the client's EOF came only "
                    "in answer to the server's close, as a TLS client answers close_notify)"
                    + _so_far(conn)
                )
    except asyncio.TimeoutError:
        raise ScriptMismatch(
            f"{where}: nothing matching arrived in {timeout:g} s" + _so_far(conn)
        ) from None
    except asyncio.IncompleteReadError as exc:
        if conn.eof_received:
            what = f"the client closed its side after sending {show(exc.partial)}"
        else:
            what = "the connection closed before it arrived"
        raise ScriptMismatch(f"{where}: {what}" + _so_far(conn)) from None
    except asyncio.LimitOverrunError:
        raise ScriptMismatch(
            f"{where}: no line ending within the stream limit" + _so_far(conn)
        ) from None
    except ConnectionError as exc:
        raise ScriptMismatch(
            f"{where}: the connection broke ({type(exc).__name__})" + _so_far(conn)
        ) from None
    except asyncio.CancelledError:
        raise ScriptMismatch(f"{where}: not met when the server closed" + _so_far(conn)) from None


def _so_far(conn: Connection) -> str:
    return f"\n  received on connection #{conn.index} so far: {show(conn.received)}"


def _diff(where: str, expected: bytes, got: bytes, conn: Connection | None) -> str:
    """Show `expected` over `got` with a caret under their first difference."""
    index = next(
        (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    shown_expected, shown_got = show(expected), show(got)
    caret = ""
    if len(expected) <= 512 and len(got) <= 512:
        column = len(repr(got[:index])) - 1
        caret = f"\n            {' ' * column}^ first difference at byte {index}"
    text = (
        f"{where}: the client sent something else\n"
        f"  expected: {shown_expected}\n  received: {shown_got}{caret}"
    )
    return text + (_so_far(conn) if conn is not None else "")


# -- datagram scripts ---------------------------------------------------------


class ServerClosing(Exception):
    """What a datagram script's `receive` raises once nothing more can arrive."""


async def run_datagram_script(
    steps: tuple[Step, ...],
    receive: Callable[[float | None], Awaitable[tuple[bytes, object]]],
    sendto: Callable[[bytes, object], None],
) -> None:
    """Run a script over datagrams: `receive(timeout)` gives the next ``(data, peer)``.

    `receive` raises `ServerClosing` (or the task is cancelled) when the server
    closes: the step waiting for a datagram is then not met.
    """
    total = len(steps)
    peer: object = None
    for number, step in enumerate(steps, 1):
        where = f"script step {number} of {total}, {step.describe()}"
        if isinstance(step, _Send):
            if peer is None:
                raise ScriptMismatch(f"{where}: no datagram has arrived yet, so no one to send to")
            sendto(step.data, peer)
        elif isinstance(step, _Sleep):
            try:
                await asyncio.sleep(step.seconds)
            except asyncio.CancelledError:
                # The server closed during the sleep: a datagram still expected
                # after it can no longer come.
                for later, unmet in enumerate(steps[number:], number + 1):
                    if isinstance(unmet, (_Expect, _ExpectLine)):
                        raise ScriptMismatch(
                            f"script step {later} of {total}, {unmet.describe()}: not met "
                            f"when the server closed (during step {number}, "
                            f"{step.describe()})"
                        ) from None
                raise
        elif isinstance(step, (_Expect, _ExpectLine)):
            timeout = _timeout_of(step)
            try:
                data, peer = await receive(timeout)
            except (asyncio.CancelledError, ServerClosing):
                raise ScriptMismatch(f"{where}: not met when the server closed") from None
            except (TimeoutError, asyncio.TimeoutError):
                raise ScriptMismatch(f"{where}: no datagram arrived in {timeout:g} s") from None
            if isinstance(step, _Expect):
                if data != step.data:
                    raise ScriptMismatch(_diff(where, step.data, data, None))
            else:
                line = data.rstrip(b"\n").removesuffix(b"\r")
                ok = (
                    step.line.fullmatch(line) is not None
                    if isinstance(step.line, re.Pattern)
                    else line == step.line
                )
                if not ok:
                    expected = (
                        step.line.pattern if isinstance(step.line, re.Pattern) else step.line
                    )
                    raise ScriptMismatch(_diff(where, expected, line, None))
        else:  # pragma: no cover - rejected when the server is made
            raise ScriptMismatch(f"{where}: this step has no meaning for datagrams")


def check_datagram_script(handler: Script) -> None:
    """Raise ValueError if ``handler`` has steps with no meaning for datagrams."""
    for number, step in enumerate(handler.steps, 1):
        if not isinstance(step, (_Expect, _ExpectLine, _Send, _Sleep)):
            raise ValueError(
                f"handler: script step {number}, {step.describe()}, has no meaning for "
                "datagrams; datagram scripts use expect, expect_line, send and sleep"
            )


# -- classifying a handler ----------------------------------------------------

HandlerKind = typing.Literal["builtin", "stream", "protocol", "reply"]


def classify(handler: object, *, datagram: bool = False) -> HandlerKind:
    """Say what kind of handler ``handler`` is, or raise TypeError naming what is accepted."""
    accepted = (
        "a nettest.handlers handler (echo, sink, script(...)), a DatagramProtocol factory "
        "or a function reply(data, addr)"
        if datagram
        else "a nettest.handlers handler, an `async def handler(reader, writer)` "
        "or a protocol factory"
    )
    if isinstance(handler, Handler):
        return "builtin"
    if inspect.iscoroutine(handler):
        handler.close()
        raise TypeError(
            f"handler must be {accepted}; got a coroutine object (pass the function, "
            "do not call it)"
        )
    if handler is script:
        raise TypeError(f"handler must be {accepted}; call handlers.script(step, ...)")
    if not callable(handler):
        raise TypeError(f"handler must be {accepted}; got {type(handler).__name__}")
    call: object = getattr(handler, "__call__", None)  # noqa: B004
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call):
        if datagram:
            raise TypeError(f"handler must be {accepted}; got a coroutine function")
        try:
            signature = inspect.signature(handler)
        except (TypeError, ValueError):  # no signature to read
            return "stream"
        if _accepts(signature, 2):
            return "stream"
        raise TypeError(
            f"handler must be {accepted}; got the async function "
            f"{_described(handler, signature)}, which cannot be called with (reader, writer)"
        )
    if isinstance(handler, type):
        wanted = asyncio.DatagramProtocol if datagram else asyncio.BaseProtocol
        if not issubclass(handler, wanted):
            raise TypeError(f"handler must be {accepted}; got the class {handler.__name__}")
        return "protocol"
    # A plain callable: a protocol factory takes no arguments.  Like
    # asyncio.start_server's client_connected_cb, one taking (reader, writer) is a
    # stream handler whose result, if awaitable, is awaited (a lambda wrapping an
    # async function, say).
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return "protocol"
    if _accepts(signature, 0):
        return "protocol"
    if _accepts(signature, 2):
        return "reply" if datagram else "stream"
    raise TypeError(
        f"handler must be {accepted}; got {_described(handler, signature)}, which takes "
        "neither no arguments (a protocol factory) nor two, "
        + (
            "(data, addr) (a reply function)"
            if datagram
            else "(reader, writer) (a stream handler)"
        )
    )


def _described(handler: object, signature: inspect.Signature) -> str:
    """``name(parameters)``, for an error about a handler's signature."""
    name = getattr(handler, "__qualname__", type(handler).__name__)
    return f"{name}{signature.replace(return_annotation=inspect.Signature.empty)}"


def _accepts(signature: inspect.Signature, count: int) -> bool:
    """Whether a callable of this signature can be called with `count` positional arguments."""
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


_P = typing.TypeVar("_P", bound=asyncio.BaseProtocol)


def make_protocol(factory: Callable[[], object], wanted: type[_P], name: str) -> _P:
    """Call a handler that is a protocol factory; raise TypeError unless it made a `wanted`.

    `name` is how the error names `wanted`, such as ``asyncio.Protocol``.
    """
    protocol = factory()
    if not isinstance(protocol, wanted):
        raise TypeError(
            f"the handler (a protocol factory) returned {type(protocol).__name__}, not an {name}"
        )
    return protocol
