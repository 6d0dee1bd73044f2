"""Settings shared by every capability, set by the pytest plugin from its options."""

from __future__ import annotations

import sys

#: Seconds every nettest wait allows by default (``--nettest-timeout``).
DEFAULT_TIMEOUT = 10.0

timeout: float = DEFAULT_TIMEOUT


def default_timeout() -> float | None:
    """Return the default timeout for nettest's waits, or None under a debugger.

    A test stopped at a breakpoint must not fail because a wait ran out, so the
    timeout is off while a trace function (a debugger or coverage tool in trace
    mode) is active.
    """
    if sys.gettrace() is not None and "coverage" not in type(sys.gettrace()).__module__:
        return None
    return timeout
