"""The ``nettest`` command."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from nettest._cli import _demo, main


def run_nettest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nettest", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_demo_exchanges_messages_over_loopback() -> None:
    result = run_nettest("demo", "--messages", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"echo server listening on 127\.0\.0\.1:\d+", lines[0])
    assert re.fullmatch(r"#1 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+", lines[2])
    assert [line.split(maxsplit=1)[1] for line in lines[3:-2]] == [
        "client  b'hello 1\\n'",
        "server  b'hello 1\\n'",
        "client  b'hello 2\\n'",
        "server  b'hello 2\\n'",
        "client  EOF",
    ]
    assert lines[-2].endswith("closed (eof)")
    assert lines[-1] == "2 message(s) echoed intact; server closed"


def test_cli_console_script_is_installed() -> None:
    script = shutil.which("nettest", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script is not None
    result = subprocess.run(
        [script, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("nettest ")


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_cli_help(args: list[str]) -> None:
    result = run_nettest(*args)
    assert result.returncode == 0
    assert "usage: nettest" in result.stdout


def test_cli_demo_rejects_bad_message_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--messages", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: nettest demo")
    assert "nettest demo: error: --messages must be in 1..100, got 0" in err


@pytest.mark.parametrize("command", [["demo"], ["certs", "{tmp}"]])
def test_cli_runs_with_stdout_closed(command: list[str], tmp_path: Path) -> None:
    # `nettest demo >&-`: Python starts with sys.stdout None.
    args = " ".join(a.format(tmp=tmp_path / "certs") for a in command)
    result = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -m nettest {args} >&-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_cli_without_a_command_is_a_usage_error() -> None:
    result = run_nettest()
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: nettest" in result.stderr
    assert "proxy" in result.stderr


def test_cli_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_cli_demo_transcript_records_every_message() -> None:
    transcript = await _demo(3)
    sent = [line for line in transcript if "client  b'hello" in line]
    echoed = [line for line in transcript if "server  b'hello" in line]
    assert len(sent) == len(echoed) == 3


# -- nettest proxy: bad arguments are usage errors ---------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "1.5"], "argument --seed: seed must be an int in [0, 2**64), got '1.5'"),
        (["--seed", "abc"], "argument --seed: seed must be an int in [0, 2**64), got 'abc'"),
        (["--seed", "-1"], "argument --seed: seed must be in [0, 2**64), got -1"),
        (
            ["--seed", str(2**64)],
            f"argument --seed: seed must be in [0, 2**64), got {2**64}",
        ),
        (
            ["--udp", "--fault", "drop=abc"],
            "drop: rate must be a number in [0, 1] such as 0.1, got 'abc'",
        ),
        (["--fault", "latency=1s,connection=x"], "latency: connection must be an int >= 1"),
        (["--fault", "latency"], "latency: delay is required"),
        (["--fault", "truncate=1.7"], "truncate: after_bytes must be a whole number of bytes"),
        # More digits than int() converts: the field's message, not CPython's.
        (["--fault", f"reorder={'9' * 5000}"], "reorder: window must be an int >= 2, got '999"),
        (["--fault", f"truncate={'9' * 5000}"], "truncate: after_bytes must be a whole number"),
        (["--fault", f"latency=1,connection={'9' * 5000}"], "latency: connection must be an int"),
        (["--listen", f"127.0.0.1:{'9' * 5000}"], "--listen: the port must be in 0..65535"),
        (["--listen", "./" + "a" * 200], "--listen: Unix socket path is 202 bytes, over the"),
        (["--udp", "--upstream", "./x.sock"], "--upstream must be HOST:PORT with --udp, not a"),
    ],
)
def test_cli_proxy_bad_arguments_are_usage_errors(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def serve(*args: object) -> int:
        # The proxy would run until a signal: fail instead of hanging.
        raise AssertionError(f"nettest proxy started with bad arguments {args!r}")

    monkeypatch.setattr("nettest._proxy_cli._serve", serve)
    with pytest.raises(SystemExit) as exit_info:
        main(["proxy", "--upstream", "127.0.0.1:9", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: nettest proxy")
    assert f"nettest proxy: error: {message}" in err


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ("127.0.0.1:0", "--upstream: the port must be in 1..65535, got 0"),
        (f"127.0.0.1:{'9' * 5000}", "--upstream: the port must be in 1..65535, got a number"),
        (
            "127.0.0.1:-1234567",
            "--upstream: the port must be in 1..65535, got a negative number of 7 digits",
        ),
    ],
)
def test_cli_proxy_bad_upstream_is_named_as_the_option(
    upstream: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["proxy", "--upstream", upstream])
    assert exit_info.value.code == 2
    assert f"nettest proxy: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("there", ["file", "socket"])
def test_cli_proxy_listen_path_taken_says_what_is_there(
    there: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "listen"
    if there == "file":
        path.write_text("")
        reason = "something that is not a socket is at that path"
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
        reason = "a socket file is at that path (remove it if nothing listens there)"
    assert main(["proxy", "--upstream", "127.0.0.1:9", "--listen", str(path)]) == 1
    expected = f"nettest proxy: [Errno {errno.EADDRINUSE}] --listen {path}: {reason}\n"
    assert capsys.readouterr().err == expected


def test_cli_proxy_bad_fault_prints_no_traceback() -> None:
    result = run_nettest("proxy", "--upstream", "127.0.0.1:9", "--fault", "latency")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "nettest proxy: error: latency: delay is required "
        "(latency=VALUE, where VALUE is a finite duration >= 0 such as 100ms or 1.5s)"
    )


def test_cli_ctrl_c_while_starting_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before `nettest proxy` installs its signal handlers, SIGINT raises
    # KeyboardInterrupt wherever the main thread is: here, as the loop starts.
    def interrupted(coroutine: Any) -> None:
        coroutine.close()
        raise KeyboardInterrupt

    monkeypatch.setattr("nettest._proxy_cli.asyncio.run", interrupted)
    assert main(["proxy", "--upstream", "127.0.0.1:9"]) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "\n"


@pytest.mark.parametrize("seed", ["0", "18446744073709551615"])
def test_cli_proxy_seed_takes_the_whole_range(seed: str) -> None:
    from nettest._proxy_cli import _parser

    args = _parser().parse_args(["--upstream", "127.0.0.1:9", "--seed", seed])
    assert args.seed == int(seed)


@pytest.mark.parametrize("command", [["demo"], ["certs", "{tmp}"]])
def test_cli_reader_gone_ends_quietly_with_status_1(command: list[str], tmp_path: Path) -> None:
    # `nettest demo | head -1`: the reader is gone before the output is flushed.
    # As Python's docs advise, stdout is pointed at os.devnull and the status is
    # 1, with no BrokenPipeError traceback, whether the print or the final flush
    # meets the broken pipe.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = _run_nettest(command, tmp_path, stdout=write_end)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (1, "")


def _run_nettest(
    command: list[str], tmp_path: Path, *, stdout: int | typing.IO[str]
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m nettest`` with `command` ({tmp} stands for `tmp_path`)."""
    return subprocess.run(
        [sys.executable, "-m", "nettest", *(a.format(tmp=tmp_path) for a in command)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["demo"], ["certs", "{tmp}"]])
def test_cli_output_that_cannot_be_written_is_one_line_and_status_1(
    command: list[str], tmp_path: Path
) -> None:
    # `nettest demo > /dev/full`: every write fails with ENOSPC.  The command
    # says so in one line on stderr, with no traceback and no "Exception
    # ignored" as the interpreter flushes stdout at exit.
    with open("/dev/full", "w") as full:
        result = _run_nettest(command, tmp_path, stdout=full)
    message = f"nettest: cannot write to stdout: {os.strerror(errno.ENOSPC)}\n"
    assert (result.returncode, result.stderr) == (1, message)


def test_cli_proxy_prints_a_listen_path_with_its_own_bytes(tmp_path: Path) -> None:
    # A path that is not UTF-8 is printed as the file system has it, not as "\udcff".
    path = os.fsdecode(os.fsencode(tmp_path) + b"/\xff.sock")
    proxy = subprocess.Popen(
        [sys.executable, "-m", "nettest", "proxy", "--upstream", "127.0.0.1:9", "--listen", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proxy.stdout is not None
        line = proxy.stdout.readline()
    finally:
        proxy.send_signal(signal.SIGTERM)
        _, err = proxy.communicate(timeout=30)
    assert line == b"nettest proxy tcp listening on " + os.fsencode(path) + b" -> 127.0.0.1:9\n"
    assert (proxy.returncode, err) == (0, b"")
