"""The ``nettest`` command: ``demo``, ``certs``, ``proxy`` and friends.

Each subcommand that belongs to a capability is dispatched to that capability's
``cli_main(argv)``, imported only when the subcommand runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence

from ._version import __version__

#: Subcommands handled by a capability module: name -> (module, one-line help).
_DELEGATED: dict[str, tuple[str, str]] = {
    "certs": ("._tls_files", "write a CA, a server certificate and its key into a directory"),
    "proxy": ("._proxy_cli", "run a fault-injecting proxy in front of a TCP or UDP server"),
}


def _demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nettest demo",
        description="Start a loopback echo server, connect a client, exchange a few "
        "messages and print what crossed the wire.",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=3,
        metavar="N",
        help="how many messages the client sends (1 to 100, default 3)",
    )
    return parser


async def _demo(messages: int) -> list[str]:
    """Run the echo exchange against a recording `TCPServer`; return the lines to print."""
    from ._handlers import echo
    from ._servers import TCPServer

    async with TCPServer(echo) as server:
        host, port = server.address
        lines = [f"echo server listening on {host}:{port}"]
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for number in range(1, messages + 1):
                line = f"hello {number}\n".encode()
                writer.write(line)
                reply = await asyncio.wait_for(reader.readline(), timeout=10)
                if reply != line:
                    raise RuntimeError(f"echo mismatch: sent {line!r}, got {reply!r}")
            writer.write_eof()
            await asyncio.wait_for(reader.read(), timeout=10)
        finally:
            writer.close()
            await writer.wait_closed()
        (connection,) = await server.wait_for_connections(1)
        await connection.wait_closed()
        lines.append("what crossed the wire, as the server recorded it:")
        lines.extend(server.transcript().splitlines())
    lines.append(f"{messages} message(s) echoed intact; server closed")
    return lines


def _run_demo(argv: Sequence[str]) -> int:
    parser = _demo_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= 100:
        parser.error(f"--messages must be in 1..100, got {args.messages}")
    write_lines(asyncio.run(_demo(args.messages)))
    return 0


def _main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nettest",
        description="nettest: network test fixtures and fault injection for asyncio.",
    )
    parser.add_argument("--version", action="version", version=f"nettest {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo", help="exchange messages with a loopback echo server", add_help=False
    )
    for name, (_, help_text) in _DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nettest`` command and return its exit status.

    Ctrl-C before a command installs its own handling (``nettest proxy`` shuts
    down gracefully once it listens) ends it with status 130, as a shell reports
    SIGINT, without a traceback.  A reader that leaves early (``nettest demo |
    head -1``) ends it with status 1, also without one; so does output that
    cannot be written (``> /dev/full``), with a line on stderr saying why.
    """
    if sys.stdout is None:  # started with stdout closed (>&-): write nowhere
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
    try:
        status = _main(argv)
        write_lines([])  # flush here, rather than at exit, where a failure is a traceback
        return status
    except KeyboardInterrupt:
        print(file=sys.stderr)  # end the line the terminal echoed ^C on
        return 130
    except BrokenPipeError:
        silence_stdout()
        return 1
    except OutputError as exc:
        silence_stdout()
        print(f"nettest: cannot write to stdout: {exc}", file=sys.stderr)
        return 1


class OutputError(Exception):
    """Stdout could not be written (a full disk, say), for `main` to report in one line."""


def write_lines(lines: Sequence[str]) -> None:
    """Print ``lines`` to stdout and flush it, raising `OutputError` if that fails.

    A broken pipe stays a `BrokenPipeError`: the reader went away, which is no
    error of ours to report.
    """
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: stdout closed under us
        raise OutputError(getattr(exc, "strerror", None) or str(exc)) from None


def silence_stdout() -> None:
    """Point stdout at ``os.devnull``, as Python's docs advise after a broken pipe."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _main_parser()
    if not args:  # a usage error: the help goes to stderr, as argparse's errors do
        parser.print_help(sys.stderr)
        return 2
    if args[0] not in {"demo", *_DELEGATED}:
        parser.parse_args(args)  # --help, --version, or an error naming the commands
        return 2
    command, rest = args[0], args[1:]
    if command == "demo":
        return _run_demo(rest)
    module = importlib.import_module(_DELEGATED[command][0], __package__)
    return int(module.cli_main(rest))
