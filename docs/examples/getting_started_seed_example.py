"""Seeded randomness: the same seed gives the same jittered schedule."""

import random


def backoff_delays(rng: random.Random, attempts: int) -> list[float]:
    """Exponential backoff with up to 50% jitter."""
    return [2**n * (1 + rng.uniform(0, 0.5)) for n in range(attempts)]


def test_backoff_is_reproducible(nettest_seed: int) -> None:
    delays = backoff_delays(random.Random(nettest_seed), attempts=5)
    assert delays == sorted(delays)
    assert delays == backoff_delays(random.Random(nettest_seed), attempts=5)
