"""The ``nettest`` command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

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
    assert main(["demo", "--messages", "0"]) == 2
    assert "--messages must be in 1..100, got 0" in capsys.readouterr().err


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
