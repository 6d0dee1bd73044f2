"""The benchmarks' documented command runs to the end on every supported Python.

Each benchmark is run with ``--quick`` in a subprocess; the figures it prints are
not checked (speed targets are for the benchmarks themselves), only that it
finishes and prints its ratios against the baselines measured in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("bench_*.py"))


def test_every_benchmark_is_found() -> None:
    assert {path.stem for path in BENCHMARKS} >= {
        "bench_faults",
        "bench_hygiene",
        "bench_servers",
        "bench_strategies",
        "bench_tls",
        "bench_transports",
    }


@pytest.mark.parametrize("script", BENCHMARKS, ids=[path.stem for path in BENCHMARKS])
def test_benchmark_quick_run_completes(script: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ratio" in result.stdout or "vs baseline" in result.stdout, result.stdout
