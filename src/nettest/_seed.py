"""The one check for every seed nettest takes: an int in [0, 2**64).

`inject_faults`, `FaultProxy` and ``nettest proxy --seed`` all call
`check_seed`, so a seed the memory pair accepts is one the proxy accepts too,
and the same seed gives the same faults on both.  A float is refused rather than
truncated (``FaultProxy(seed=1.5)`` once became seed 1 while the memory pair
seeded its generator with ``1.5``).
"""

from __future__ import annotations

__all__ = ["SEED_RANGE", "check_seed"]

#: The accepted range, as error messages and docs write it.
SEED_RANGE = "[0, 2**64)"


def check_seed(value: object, name: str = "seed") -> int:
    """Return *value* if it is an int in [0, 2**64) (a bool is not a seed).

    Args:
        value: What the caller passed.
        name: The parameter's name, for the error message.

    Raises:
        TypeError: *value* is not an int; the message names *name* and the range.
        ValueError: *value* is outside [0, 2**64).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int in {SEED_RANGE}, got {value!r}")
    if not 0 <= value < 2**64:
        raise ValueError(f"{name} must be in {SEED_RANGE}, got {value!r}")
    return int(value)
