"""``nettest proxy``: the fault proxy on the command line.

`cli_main` runs a `FaultProxy` until SIGINT, SIGTERM or SIGHUP, for manual tests and
for programs not written in Python; `parse_fault` turns its ``--fault`` specs
(``latency=100ms,jitter=10ms``) into fault values.  The ``nettest`` command
(`nettest._cli`) dispatches its ``proxy`` subcommand to `cli_main`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import math
import os
import queue
import re
import signal
import stat
import sys
import threading
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from fractions import Fraction
from typing import Any

from . import _faults
from ._cli import silence_stdout
from ._faults import DIRECTIONS, Fault, Trigger
from ._proxy import FaultProxy, _check_faults
from ._proxy_sockets import Address, Kind, _parse_address, _parse_upstream
from ._recording import format_address
from ._seed import SEED_RANGE, check_seed
from ._server_base import check_host

if typing.TYPE_CHECKING:
    from ._fault_trace import ConnectionTrace

__all__ = ["cli_main", "parse_fault"]

_DURATION = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|ms|s|m)?", re.IGNORECASE)
# An exponent of two digits at most: Fraction() of 1e99999999 would build the int.
# B for bytes (KiB, kB, KB alike); a lower-case b, bits to a network engineer, is refused.
_SIZE = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]{1,2})?)\s*(?:([kKmMgG])[iI]?B?|B)?")
_NUMBER = re.compile(r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?")
_UNITS = {"us": Decimal("1e-6"), "ms": Decimal("1e-3"), "s": Decimal(1), "m": Decimal(60)}
_SIZES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

#: What stops the proxy gracefully: Ctrl-C, kill, and its terminal closing.
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)

#: Names of faults on the command line; the first field takes ``name=value``.
_CLI_NAMES = {
    "latency": "Latency",
    "bandwidth": "Bandwidth",
    "slice": "Slice",
    "truncate": "Truncate",
    "reset": "Reset",
    "blackhole": "Blackhole",
    "stall": "Stall",
    "slow_close": "SlowClose",
    "close_after": "CloseAfter",
    "refuse": "Refuse",
    "half_close": "HalfClose",
    "corrupt": "Corrupt",
    "drop": "Drop",
    "duplicate": "Duplicate",
    "reorder": "Reorder",
    "truncate_datagram": "TruncateDatagram",
    "unreachable": "Unreachable",
}
#: The options every fault takes, besides its own fields.
_OPTIONS = ("direction", "probability", "connection", "after", "pattern")


# -- values ---------------------------------------------------------------------------
# Each parser returns None for text not of its form; `parse_fault` then names the
# fault and the field and says what the field accepts.  Ranges past the form (a
# Slice size of 0, a mask of 256) are left to the fault, which names the field.


def _duration(text: str) -> float | None:
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    # Exact, then rounded once: 9ms is 0.009 (9 * 1e-3 gave 0.009000000000000001).  The
    # precision holds every digit of the product; too small for a float it is 0, as
    # float() makes it, and too large (inf) it is no duration, as "inf" is not.
    number = match.group(1)
    exact = Context(prec=len(number) + 2, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])
    unit = _UNITS[(match.group(2) or "s").lower()]
    seconds = float(exact.multiply(exact.create_decimal(number), unit))
    return seconds if seconds != math.inf else None


def _bytes(text: str) -> Fraction | None:
    # Exact, so that 1.5k is 1536 and 0.1k is refused as a fraction of a byte.
    match = _SIZE.fullmatch(text)
    if match is None:
        return None
    return Fraction(match.group(1)) * _SIZES[(match.group(2) or "").lower()]


def _whole_bytes(text: str) -> int | None:
    size = _bytes(text)
    if size is None or size.denominator != 1:
        return None
    return int(size)


def _byte_rate(text: str) -> float | None:
    # A rate may be a fraction (Bandwidth(0.5) is half a byte a second); a whole
    # number stays an int, so that 64k prints as Bandwidth(bytes_per_second=65536).
    size = _bytes(text)
    if size is None:
        return None
    return int(size) if size.denominator == 1 else float(size)


def _count(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _fraction(text: str) -> float | None:
    # A sign is taken, so that the fault's own check says what range a negative
    # value is outside of, as it does for 1.5.
    return float(text) if _NUMBER.fullmatch(text.removeprefix("-")) else None


def _mask(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def _positions(text: str) -> tuple[int, ...] | None:
    positions = [_count(part.strip()) for part in text.split("+")]
    if any(position is None for position in positions):
        return None
    return tuple(typing.cast("list[int]", positions))


_Parse = Callable[[str], object]
_DURATION_FIELD: tuple[_Parse, str] = (_duration, "a finite duration >= 0 such as 100ms or 1.5s")
_RATE_FIELD: tuple[_Parse, str] = (
    _byte_rate,
    "a number of bytes > 0 (a size such as 0.5, 512 or 64k)",
)
_FRACTION_FIELD: tuple[_Parse, str] = (_fraction, "a number in [0, 1] such as 0.1")
_MASK_FIELD: tuple[_Parse, str] = (_mask, "an int in 1..255 such as 255 or 0x0f")
_POSITIONS_FIELD: tuple[_Parse, str] = (
    _positions,
    "byte offsets (ints >= 0) joined by '+' such as 0+4",
)


def _bytes_field(minimum: int) -> tuple[_Parse, str]:
    return _whole_bytes, f"a whole number of bytes >= {minimum} (a size such as 512, 64k or 1M)"


def _count_field(minimum: int) -> tuple[_Parse, str]:
    return _count, f"an int >= {minimum}"


#: How each field of a fault is written, and what it accepts.  A field counted in
#: bytes takes a size, one counted in seconds a duration.
_FIELDS: dict[str, tuple[_Parse, str]] = {
    "delay": _DURATION_FIELD,
    "after_seconds": _DURATION_FIELD,
    "seconds": _DURATION_FIELD,
    "max_hold": _DURATION_FIELD,
    "bytes_per_second": _RATE_FIELD,
    "size": _bytes_field(1),
    "after_bytes": _bytes_field(0),
    "max_size": _bytes_field(0),
    "rate": _FRACTION_FIELD,
    "window": _count_field(2),
    "mask": _MASK_FIELD,
    "positions": _POSITIONS_FIELD,
    "probability": _FRACTION_FIELD,
    "connection": _count_field(1),
    "datagrams": (_positions, "datagram numbers (ints >= 1) joined by '+' such as 1+3"),
    "after": _bytes_field(0),
}


def _field(cls: type[Fault], key: str, annotation: object) -> tuple[_Parse, str]:
    if key == "jitter":
        # Slice's jitter counts bytes; Latency's is a duration.
        return _bytes_field(0) if annotation == "int" else _DURATION_FIELD
    try:
        return _FIELDS[key]
    except KeyError:
        raise RuntimeError(f"{cls.__name__}.{key} has no command-line syntax") from None


def _pattern(name: str, text: str) -> bytes:
    try:
        return text.encode().decode("unicode_escape").encode("latin-1")
    except UnicodeError:
        raise ValueError(
            f"{name}: pattern must be text with backslash escapes such as \\r\\n or "
            f"\\x00 (bytes up to \\xff), got {text!r}"
        ) from None


def _shown(text: str) -> str:
    """A value for a message: its start only, if it is long."""
    if len(text) <= 40:
        return repr(text)
    return f"{text[:20]!r}... ({len(text)} characters)"


def parse_fault(spec: str) -> Fault:
    """Parse ``name[=value][,key=value]...`` as used by ``nettest proxy --fault``.

    Durations take ``us``, ``ms``, ``s`` (default) or ``m``; sizes take ``k``,
    ``M`` or ``G`` (powers of 1024).  A field counted in whole bytes refuses a
    fraction (``truncate=1.7``); ``bandwidth`` takes one (``bandwidth=0.5``).
    The options are ``direction``, ``probability``, ``connection``, ``after``
    (bytes) and ``pattern`` (text).

    Raises:
        TypeError: *spec* is not a `str` (bytes included).  The message names
            ``spec`` and the type it got.
        ValueError: An unknown fault or field, a field given twice, a required
            field missing, or a bad value.  The message names the fault and the
            field and says what the field accepts.

    Example::

        parse_fault("latency=100ms,jitter=10ms,direction=both")
    """
    if not isinstance(spec, str):
        # parse_fault(1) once raised AttributeError: 'int' object has no attribute 'split'.
        raise TypeError(f"spec must be a str such as 'latency=100ms', got {type(spec).__name__}")
    head, *rest = [part.strip() for part in spec.split(",")]
    name, _, value = head.partition("=")
    name = name.strip().lower().replace("-", "_")
    if name not in _CLI_NAMES:
        raise ValueError(f"unknown fault {name!r}; choose from {', '.join(sorted(_CLI_NAMES))}")
    cls = typing.cast("type[Fault]", getattr(_faults, _CLI_NAMES[name]))
    types = {f.name: f.type for f in fields(cls)}
    own = [key for key in types if key not in ("direction", "probability", "trigger")]
    value = value.strip()
    if value and not own:
        raise ValueError(f"{name} takes no value, got {value!r}; options: {', '.join(_OPTIONS)}")
    pairs = [(own[0], value)] if value else []
    for part in rest:
        key, sep, val = part.partition("=")
        if not sep:
            raise ValueError(f"expected key=value in {spec!r}, got {part!r}")
        pairs.append((key.strip(), val.strip()))
    kwargs: dict[str, Any] = {}
    trigger: dict[str, Any] = {}
    seen: set[str] = set()
    for key, val in pairs:
        if key not in own and key not in _OPTIONS:
            raise ValueError(
                f"{name} has no field {key!r}; choose from {', '.join([*own, *_OPTIONS])}"
            )
        if key in seen:
            raise ValueError(f"{name}: {key} is given twice")
        seen.add(key)
        if key == "direction":
            if val not in DIRECTIONS:
                raise ValueError(
                    f"{name}: direction must be one of {', '.join(DIRECTIONS)}, got {val!r}"
                )
            kwargs[key] = val
            continue
        if key == "pattern":
            trigger[key] = _pattern(name, val)
            continue
        parse, accepts = _field(cls, key, types.get(key))
        try:
            parsed = parse(val)
        except ValueError:  # more digits than int() converts
            raise ValueError(f"{name}: {key} must be {accepts}, got {_shown(val)}") from None
        if parsed is None:
            bits = val.endswith("b") and "bytes" in accepts  # a size, as 1Mb
            bits_hint = " (B is bytes; b, bits, is not a unit here)" if bits else ""
            raise ValueError(f"{name}: {key} must be {accepts}, got {_shown(val)}{bits_hint}")
        if key == "connection":
            trigger[key] = parsed
        elif key == "after":
            trigger["after_bytes"] = parsed
        else:
            kwargs[key] = parsed
    for item in fields(cls):
        if item.name not in kwargs and item.default is MISSING and item.default_factory is MISSING:
            _, accepts = _field(cls, item.name, item.type)
            usage = f"{name}=VALUE" if item.name == own[0] else f"{name},{item.name}=VALUE"
            raise ValueError(
                f"{name}: {item.name} is required ({usage}, where VALUE is {accepts})"
            )
    try:
        if trigger:
            kwargs["trigger"] = Trigger(**trigger)
        return cls(**kwargs)
    except ValueError as exc:
        # The fault names the field and its range; say which fault it was.
        raise ValueError(f"{name}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nettest proxy",
        description="Run a fault-injecting proxy in front of a TCP or UDP server, for manual "
        "tests and programs not written in Python.  It prints its address, then one line per "
        "connection.  SIGINT, SIGTERM or SIGHUP stop it.",
        epilog="Faults: "
        + ", ".join(sorted(_CLI_NAMES))
        + ".  Examples: --fault latency=100ms,jitter=10ms  --fault bandwidth=64k  "
        "--fault reset,after=1k,direction=both  --fault drop=0.1 (with --udp).",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT|PATH",
        help="where to listen (default 127.0.0.1:0, any free port); a literal loopback "
        "address unless --allow-remote, or the path of a Unix socket (for TCP), starting "
        "with / or ./",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --listen on an address other machines can reach",
    )
    parser.add_argument(
        "--upstream",
        required=True,
        metavar="HOST:PORT",
        help="the server to forward to (or the path of a Unix socket, for TCP)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault: NAME[=VALUE][,KEY=VALUE]...; repeat for more",
    )
    parser.add_argument("--udp", action="store_true", help="proxy UDP instead of TCP")
    parser.add_argument(
        "--seed",
        type=_seed,
        default=0,
        metavar="N",
        help=f"seed for random faults, an int in {SEED_RANGE} (default 0)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print every connection's full trace when the proxy stops",
    )
    return parser


def _seed(text: str) -> int:
    """``--seed``: the same check as `FaultProxy`'s, reported as a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seed must be an int in {SEED_RANGE}, got {text!r}"
        ) from None
    try:
        return check_seed(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cli_main(argv: list[str]) -> int:
    """Run ``nettest proxy``; return the exit status.

    Example::

        nettest proxy --upstream 127.0.0.1:8080 --fault latency=100ms
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        kind: Kind = "udp" if args.udp else "tcp"
        listen = _parse_listen(args.listen, kind, args.allow_remote)
        upstream = _parse_cli_upstream(args.upstream, kind)
        faults = [parse_fault(spec) for spec in args.fault]
        _check_faults(kind, faults)
        proxy = _make_proxy(listen, upstream, faults, kind, args.seed)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc).replace("kind='udp' makes a UDP proxy", "--udp makes a UDP proxy"))
    serve = _serve(proxy, listen, upstream, faults, args.trace)
    try:
        return asyncio.run(serve)
    except OSError as exc:
        print(f"nettest proxy: {exc}", file=sys.stderr)
        return 1
    finally:
        serve.close()  # Ctrl-C before asyncio.run() started it: no "never awaited"


def _parse_listen(text: str, kind: Kind, allow_remote: bool) -> Address | str:
    """``--listen``: a loopback ``HOST:PORT``, or the path of a Unix socket for TCP."""
    if text.startswith(("/", "./")):
        if kind != "tcp":
            raise ValueError("--listen: a Unix socket path is for TCP; --udp listens on HOST:PORT")
        if allow_remote:
            raise ValueError("--allow-remote applies to --listen HOST:PORT, not to a path")
        return text
    if ":" not in text:
        raise ValueError(
            f"--listen must be HOST:PORT, or a Unix socket path starting with / or ./, "
            f"got {text!r}"
        )
    listen = _parse_address(text, "--listen")
    try:
        check_host(listen[0], allow_remote=allow_remote)
    except ValueError as exc:
        message = str(exc).replace("Pass allow_remote=True", "Pass --allow-remote")
        raise ValueError(f"--listen: {message}") from None
    return listen


def _parse_cli_upstream(text: str, kind: Kind) -> Address | str:
    """``--upstream``: `FaultProxy`'s check, its messages naming the option."""
    if kind == "udp" and text.startswith(("/", "./")):
        raise ValueError(f"--upstream must be HOST:PORT with --udp, not a path: got {text!r}")
    return _parse_upstream(text, kind, "--upstream")


def _make_proxy(
    listen: Address | str, upstream: Address | str, faults: list[Fault], kind: Kind, seed: int
) -> FaultProxy:
    if isinstance(listen, str):
        try:
            return FaultProxy(upstream, faults=faults, kind=kind, seed=seed, unix=listen)
        except ValueError as exc:  # a path too long for a Unix socket, say
            raise ValueError(f"--listen: {str(exc).removeprefix('unix: ')}") from None
    return FaultProxy(
        upstream,
        faults=faults,
        kind=kind,
        seed=seed,
        host=listen[0],
        port=listen[1],
        allow_remote=True,  # checked, with --allow-remote, when the arguments were parsed
    )


def _listen_failure(listen: Address | str, exc: OSError) -> OSError:
    """Why listening failed, for the user: a path in the way is not "address in use"."""
    where = format_address(listen)
    reason = exc.strerror or str(exc)
    if isinstance(listen, str) and exc.errno == errno.EADDRINUSE and os.path.lexists(listen):
        if not stat.S_ISSOCK(os.lstat(listen).st_mode):
            reason = "something that is not a socket is at that path"
        else:
            reason = "a socket file is at that path (remove it if nothing listens there)"
    return OSError(exc.errno, f"--listen {where}: {reason}")


async def _serve(
    proxy: FaultProxy,
    listen: Address | str,
    upstream: Address | str,
    faults: list[Fault],
    trace: bool,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    output = _Output()

    def announce(conn: ConnectionTrace) -> None:
        output.line(f"connection #{conn.index} from {format_address(conn.peer)}")

    proxy._on_connection = announce
    proxy._on_upstream_failure = lambda conn, failure: output.line(
        f"connection #{conn.index}: {failure}"
    )
    try:
        try:
            await proxy.start()
        except OSError as exc:
            raise _listen_failure(listen, exc) from None
        where = proxy.path if isinstance(listen, str) else format_address(proxy.address)
        output.line(
            f"nettest proxy {proxy.kind} listening on {where} -> {format_address(upstream)}"
        )
        output.line(f"faults: {', '.join(map(repr, faults)) or 'none'}; seed {proxy.seed}")
        await stop.wait()
        output.line("stopping")
    finally:
        await proxy.aclose()
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        if trace:
            output.line(proxy.format_traces())
        output.close()
    return 0


class _Output:
    """The proxy's lines to stdout, written by a thread of their own.

    The proxy must go on when its reader does not: a reader that stops reading
    (a test that reads the address and leaves the pipe) filled the pipe, and a
    print in the event loop then froze every connection; one that goes away
    (``| head -1``) broke the pipe, and each new connection failed in its
    callback.  Lines wait in a bounded queue (those beyond are dropped) and go
    to stdout's descriptor directly, so that a write blocked on a full pipe
    holds no lock that the interpreter's exit needs.  Once stdout is gone
    nothing more is written, and it is pointed at ``os.devnull``.
    """

    #: Lines held for a reader that is behind; later ones are dropped.
    HELD = 10_000
    #: Seconds `close` waits for the held lines to be written.
    CLOSE_WAIT = 2.0

    def __init__(self) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue(maxsize=self.HELD)
        try:
            sys.stdout.flush()
            self._fd: int | None = sys.stdout.fileno()
        except (OSError, ValueError, AttributeError):  # not a file (captured, say)
            self._fd = None
        self._encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        self._thread = threading.Thread(
            target=self._write, name="nettest proxy output", daemon=True
        )
        self._thread.start()

    def line(self, text: str) -> None:
        with contextlib.suppress(queue.Full):
            self._lines.put_nowait(text)

    def close(self) -> None:
        """Write what is held, waiting at most `CLOSE_WAIT` seconds for the reader."""
        try:
            self._lines.put(None, timeout=self.CLOSE_WAIT)
        except queue.Full:
            return
        self._thread.join(self.CLOSE_WAIT)

    def _write(self) -> None:
        gone = False
        while (text := self._lines.get()) is not None:
            if gone:
                continue  # drained, so that close() need not wait
            try:
                self._out(text + "\n")
            except (OSError, ValueError):  # the reader went away, or stdout was closed
                silence_stdout()
                gone = True

    def _out(self, text: str) -> None:
        if self._fd is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        try:  # a path's undecodable bytes, as the file system has them
            data = text.encode(self._encoding, "surrogateescape")
        except UnicodeEncodeError:
            data = text.encode(self._encoding, "backslashreplace")
        while data:
            data = data[os.write(self._fd, data) :]
