"""``nettest proxy``: the fault proxy on the command line.

`cli_main` runs a `FaultProxy` until SIGINT or SIGTERM, for manual tests and
for programs not written in Python; `parse_fault` turns its ``--fault`` specs
(``latency=100ms,jitter=10ms``) into fault values.  The ``nettest`` command
(`nettest._cli`) dispatches its ``proxy`` subcommand to `cli_main`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import typing
from dataclasses import fields
from typing import Any

from . import _faults
from ._faults import Fault, Trigger
from ._proxy import FaultProxy, _check_faults
from ._proxy_sockets import Address, Kind, _format_address, _parse_address, _parse_upstream
from ._server_base import check_host

if typing.TYPE_CHECKING:
    from ._fault_trace import ConnectionTrace

__all__ = ["cli_main", "parse_fault"]

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(us|ms|s|m)?\s*$")
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)(i?[bB])?\s*$")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, None: 1.0}
_SIZES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

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
_TIME_FIELDS = {"delay", "jitter", "after_seconds", "seconds", "max_hold"}
_SIZE_FIELDS = {"bytes_per_second", "after_bytes"}


def _duration(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 100ms or 1.5s, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _size(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a size such as 512, 64k or 1M, got {text!r}")
    return int(float(match.group(1)) * _SIZES[match.group(2).lower()])


def parse_fault(spec: str) -> Fault:
    """Parse ``name[=value][,key=value]...`` as used by ``nettest proxy --fault``.

    Durations take ``us``, ``ms``, ``s`` (default) or ``m``; sizes take ``k``,
    ``M`` or ``G`` (powers of 1024).  The options are ``direction``,
    ``probability``, ``connection``, ``after`` (bytes) and ``pattern`` (text).

    Raises:
        ValueError: An unknown fault or field, or a bad value.

    Example::

        parse_fault("latency=100ms,jitter=10ms,direction=both")
    """
    head, *rest = [part.strip() for part in spec.split(",")]
    name, _, value = head.partition("=")
    name = name.strip().lower().replace("-", "_")
    if name not in _CLI_NAMES:
        raise ValueError(f"unknown fault {name!r}; choose from {', '.join(sorted(_CLI_NAMES))}")
    cls = typing.cast("type[Fault]", getattr(_faults, _CLI_NAMES[name]))
    types = {f.name: f.type for f in fields(cls)}
    own = [name for name in types if name not in ("direction", "probability", "trigger")]
    kwargs: dict[str, Any] = {}
    trigger: dict[str, Any] = {}
    pairs = [(own[0] if own else "", value)] if value else []
    for part in rest:
        key, sep, val = part.partition("=")
        if not sep:
            raise ValueError(f"expected key=value in {spec!r}, got {part!r}")
        pairs.append((key.strip(), val.strip()))
    for key, val in pairs:
        if key == "direction":
            kwargs["direction"] = val
        elif key == "probability":
            kwargs["probability"] = float(val)
        elif key == "connection":
            trigger["connection"] = int(val)
        elif key == "after":
            trigger["after_bytes"] = _size(val)
        elif key == "pattern":
            trigger["pattern"] = val.encode().decode("unicode_escape").encode("latin-1")
        elif key not in own:
            raise ValueError(f"{name} has no field {key!r}; fields: {', '.join(own) or 'none'}")
        elif key == "positions":
            kwargs[key] = tuple(int(p) for p in val.split("+"))
        elif key == "mask":
            kwargs[key] = int(val, 0)
        elif key in _SIZE_FIELDS or types[key] == "int":
            # A byte count, like Slice's jitter (Latency's jitter is a duration).
            kwargs[key] = _size(val)
        elif key in _TIME_FIELDS:
            kwargs[key] = _duration(val)
        else:
            kwargs[key] = float(val)
    if trigger:
        kwargs["trigger"] = Trigger(**trigger)
    return cls(**kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nettest proxy",
        description="Run a fault-injecting proxy in front of a TCP or UDP server, for manual "
        "tests and programs not written in Python.  It prints its address, then one line per "
        "connection.  SIGINT or SIGTERM stop it.",
        epilog="Faults: "
        + ", ".join(sorted(_CLI_NAMES))
        + ".  Examples: --fault latency=100ms,jitter=10ms  --fault bandwidth=64k  "
        "--fault reset,after=1k,direction=both  --fault drop=0.1 (with --udp).",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:0, any free port); a literal loopback "
        "address unless --allow-remote",
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
    parser.add_argument("--seed", type=int, default=0, help="seed for random faults (default 0)")
    parser.add_argument(
        "--trace", action="store_true", help="print each connection's full trace when it ends"
    )
    return parser


def cli_main(argv: list[str]) -> int:
    """Run ``nettest proxy``; return the exit status.

    Example::

        nettest proxy --upstream 127.0.0.1:8080 --fault latency=100ms
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        listen = _parse_address(args.listen, "--listen")
        try:
            check_host(listen[0], allow_remote=args.allow_remote)
        except ValueError as exc:
            message = str(exc).replace("Pass allow_remote=True", "Pass --allow-remote")
            raise ValueError(f"--listen: {message}") from None
        kind: Kind = "udp" if args.udp else "tcp"
        upstream = _parse_upstream(args.upstream, kind)
        faults = [parse_fault(spec) for spec in args.fault]
        _check_faults(kind, faults)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    try:
        return asyncio.run(_serve(listen, upstream, faults, kind, args.seed, args.trace))
    except OSError as exc:
        print(f"nettest proxy: {exc}", file=sys.stderr)
        return 1


async def _serve(
    listen: Address,
    upstream: Address | str,
    faults: list[Fault],
    kind: Kind,
    seed: int,
    trace: bool,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    proxy = FaultProxy(
        upstream,
        faults=faults,
        kind=kind,
        seed=seed,
        host=listen[0],
        port=listen[1],
        allow_remote=True,  # checked, with --allow-remote, when the arguments were parsed
    )

    def announce(conn: ConnectionTrace) -> None:
        print(f"connection #{conn.index} from {conn.peer[0]}:{conn.peer[1]}", flush=True)  # type: ignore[index]

    proxy._on_connection = announce
    try:
        await proxy.start()
        host, port = proxy.address
        print(f"nettest proxy {kind} listening on {host}:{port} -> {_format_address(upstream)}")
        print(f"faults: {', '.join(map(repr, faults)) or 'none'}; seed {seed}", flush=True)
        await stop.wait()
        print("stopping", flush=True)
    finally:
        await proxy.aclose()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if trace:
        print(proxy.format_traces(), flush=True)
    return 0
