"""What the hygiene gate costs per test.

Runs one generated test module (sync tests and async tests that open and close a
socket) in separate pytest processes: without nettest (``-p no:nettest``, the
baseline), and with the gate ``off``, ``own`` and ``strict``.  Each setting runs
`--repeat` times, interleaved, and the fastest run counts.  Prints the time per
test and the gate's cost per test against the baseline measured in the same run.

    python benchmarks/bench_hygiene.py [--tests N] [--repeat R] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TEST_MODULE = """
import asyncio, socket
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_sync(n):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))

@pytest.mark.parametrize("n", range({count}))
@pytest.mark.asyncio
async def test_async(n):
    await asyncio.sleep(0)
"""

SETTINGS = {
    "no nettest (baseline)": ["-p", "no:nettest"],
    "gate off": ["--nettest-leaks=off"],
    "gate own (default)": ["--nettest-leaks=own"],
    "gate strict": ["--nettest-leaks=strict"],
}


def run_once(directory: Path, args: list[str]) -> float:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:looptime_plugin",
        "-W",
        "error",
        *args,
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=directory, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{result.stdout.decode()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tests", type=int, default=1000, help="tests of each kind (default 1000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting (default 3)")
    parser.add_argument("--quick", action="store_true", help="100 tests of each kind, 1 run")
    options = parser.parse_args()
    if options.quick:
        options.tests, options.repeat = 100, 1
    if options.tests < 1 or options.repeat < 1:
        parser.error("--tests and --repeat must be >= 1")
    total = 2 * options.tests
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        (directory / "test_many.py").write_text(
            textwrap.dedent(TEST_MODULE.format(count=options.tests))
        )
        best = {name: float("inf") for name in SETTINGS}
        for _ in range(options.repeat):
            for name, args in SETTINGS.items():
                best[name] = min(best[name], run_once(directory, args))
    baseline = best["no nettest (baseline)"]
    gate_off = best["gate off"]
    print(f"{total} tests per run, best of {options.repeat} runs")
    print(
        f"{'setting':<24}{'seconds':>9}{'per test':>12}{'vs baseline':>13}"
        f"{'vs gate off':>13}{'gate cost':>12}"
    )
    for name, seconds in best.items():
        per_test = seconds / total * 1e6
        gate_cost = (seconds - gate_off) / total * 1e6
        print(
            f"{name:<24}{seconds:>9.2f}{per_test:>10.0f}us{seconds / baseline:>12.2f}x"
            f"{seconds / gate_off:>12.2f}x{gate_cost:>10.0f}us"
        )
    print(
        "gate cost: the time per test beyond the same session with the gate off; "
        "'gate off' vs the baseline is the plugin's fixed cost (mostly importing it) "
        f"spread over {total} tests"
    )


if __name__ == "__main__":
    main()
