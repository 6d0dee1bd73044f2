#!/usr/bin/env python3
"""Developer tasks that set themselves up: ``python3 tasks.py TASK``.

Each task first makes sure ``.venv`` exists and holds the project with its
development extras (reinstalling when pyproject.toml changes), so a fresh clone
needs nothing but Python 3.10 or newer.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".nettest-installed"


def _run(*command: str | Path) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    result = subprocess.run([str(part) for part in command], cwd=ROOT, env=_env(), check=False)
    if result.returncode:
        sys.exit(result.returncode)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Writing bytecode halves pytest's start-up time on every run after the first.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def setup() -> None:
    """Create .venv and install the project with its dev extras, unless already current."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"+ creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    _run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def setup_only(args: list[str]) -> None:
    """Nothing beyond the set-up every task does."""


def demo(args: list[str]) -> None:
    _run(BIN / "nettest", "demo", *args)


def test(args: list[str]) -> None:
    """The whole test suite: tests/ and the docs' examples, on two xdist workers."""
    _run(PYTHON, "-m", "pytest", "-n", "2", *args)


def lint(args: list[str]) -> None:
    _run(BIN / "ruff", "check", ".")
    _run(BIN / "ruff", "format", "--check", ".")
    _run(BIN / "mypy", "--strict", "src", "tests")


def docs(args: list[str]) -> None:
    _run(
        BIN / "sphinx-build", "-n", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


def bench(args: list[str]) -> None:
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        _run(PYTHON, script, *args)


def tox(args: list[str]) -> None:
    _run(BIN / "tox", *args)


TASKS = {
    "setup": setup_only,
    "demo": demo,
    "test": test,
    "lint": lint,
    "docs": docs,
    "bench": bench,
    "tox": tox,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(f"usage: python3 tasks.py {{{'|'.join(TASKS)}}} [ARGS...]", file=sys.stderr)
        sys.exit(2)
    setup()
    TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
