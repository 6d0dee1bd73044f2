"""Server behaviours for nettest's servers: built-in handlers and scripted conversations.

Re-exports only; the implementation lives in ``nettest._handlers``.

Example::

    from nettest import handlers

    server = await tcp_server(handlers.echo)
    server = await tcp_server(
        handlers.script(handlers.expect(b"PING\\n"), handlers.send(b"PONG\\n"), handlers.close)
    )
"""

from __future__ import annotations

from ._handlers import DatagramProtocolFactory as DatagramProtocolFactory
from ._handlers import DatagramReply as DatagramReply
from ._handlers import Handler as Handler
from ._handlers import HandlerError as HandlerError
from ._handlers import ProtocolFactory as ProtocolFactory
from ._handlers import Script as Script
from ._handlers import ScriptMismatch as ScriptMismatch
from ._handlers import Step as Step
from ._handlers import StreamHandler as StreamHandler
from ._handlers import close as close
from ._handlers import echo as echo
from ._handlers import expect as expect
from ._handlers import expect_eof as expect_eof
from ._handlers import expect_line as expect_line
from ._handlers import hang as hang
from ._handlers import read_until as read_until
from ._handlers import reset as reset
from ._handlers import script as script
from ._handlers import send as send
from ._handlers import sink as sink
from ._handlers import sleep as sleep
from ._handlers import start_tls as start_tls

__all__ = [
    "DatagramProtocolFactory",
    "DatagramReply",
    "Handler",
    "HandlerError",
    "ProtocolFactory",
    "Script",
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
    "start_tls",
]
