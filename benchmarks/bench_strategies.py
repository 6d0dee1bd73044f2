"""Example generation rate of `chunkings` against `st.binary` of the same size.

Run: ``.venv/bin/python benchmarks/bench_strategies.py [--quick]``.

Each strategy drives a trivial ``@given`` test with the generate phase only and
no database; the rate is examples per second of wall time.  The baseline,
``st.binary(min_size=4096, max_size=4096)``, is measured in the same run, and
each line prints its ratio to it (the target for `chunkings` is >= 0.5x).
"""

from __future__ import annotations

import argparse
import random
import time

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from nettest import strategies as nst

SIZE = 4096


def payload() -> bytes:
    """4 KiB of HTTP-like text: lines, CRLFs and a few multi-byte characters."""
    rng = random.Random(4096)
    lines = []
    while sum(len(line) + 2 for line in lines) < SIZE:
        words = [rng.choice(["GET", "Host:", "caf\u00e9", "x" * rng.randint(1, 30), "\u20ac"])]
        lines.append(" ".join(words * rng.randint(1, 4)).encode())
    return b"\r\n".join(lines)[:SIZE]


def rate(strategy: SearchStrategy[object], examples: int) -> float:
    calls = 0

    @settings(
        database=None,
        max_examples=examples,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(value: object) -> None:
        nonlocal calls
        calls += 1

    start = time.perf_counter()
    run()
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run of a few seconds")
    args = parser.parse_args()
    examples = 100 if args.quick else 1000
    rounds = 1 if args.quick else 3
    data = payload()
    assert len(data) == SIZE
    candidates: dict[str, SearchStrategy[object]] = {
        "chunkings(4 KiB bytes)": nst.chunkings(data),
        "chunkings(4 KiB bytes, no hints)": nst.chunkings(data, delimiters=(), utf8=False),
        "chunkings(st.binary(4096, 4096))": nst.chunkings(st.binary(min_size=SIZE, max_size=SIZE)),
        "message_streams(4 KiB in 32 messages)": nst.message_streams(
            [data[i : i + 128] for i in range(0, SIZE, 128)]
        ),
    }
    baseline_strategy = st.binary(min_size=SIZE, max_size=SIZE)
    print(f"{examples} examples per measurement, best of {rounds}")
    baseline = max(rate(baseline_strategy, examples) for _ in range(rounds))
    print(f"{'st.binary(min_size=4096, max_size=4096)':42} {baseline:9.0f} examples/s  (baseline)")
    for name, strategy in candidates.items():
        measured = max(rate(strategy, examples) for _ in range(rounds))
        print(f"{name:42} {measured:9.0f} examples/s  ratio {measured / baseline:.2f}x")


if __name__ == "__main__":
    main()
