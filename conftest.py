"""Settings shared by the test suite and the docs' examples."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator

import pytest

# pytester's in-process sessions drop the modules imported after pytester's
# snapshot of sys.modules; a later re-import of cryptography's Python layer then
# no longer matches its compiled core ("curve must be an EllipticCurve instance").
# Importing trustme, and so cryptography, before any snapshot keeps them.
import trustme  # noqa: F401
from hypothesis import settings

from nettest._hygiene import GATE

# The suite checks what code does, not how fast (speed is the benchmarks' job):
# hypothesis's 200 ms deadline failed a real-parser example that took 556 ms on a
# machine loaded by xdist and tox.
settings.register_profile("nettest-suite", deadline=None)
settings.load_profile("nettest-suite")

#: The loop-scope default users are told to set, and no looptime plugin, which
#: leaves an unclosed event loop behind in the (shared) process after sync tests.
PYTESTER_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
addopts = -p no:looptime_plugin
"""


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> Iterator[pytest.Pytester]:
    """A pytester whose inner sessions are configured like the project's own."""
    pytester.makeini(PYTESTER_INI)
    yield pytester
    # Inner sessions leave event loops that asyncio created implicitly for pytest
    # plugins (``asyncio.get_event_loop()``) as garbage.  Finalise them here, where
    # they belong, rather than in whichever later test the collector happens to run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(autouse=True)
def _close_the_implicit_event_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close the event loop asyncio made implicitly for a test plugin, after sync tests.

    pytest-asyncio before 1.4 calls ``asyncio.get_event_loop()`` around tests, which
    makes a loop when none is set and sets it as the thread's current loop.  A later
    ``asyncio.run()`` replaces it without closing it, and its ResourceWarning then
    fails whichever test the garbage collector happens to run in.  The loops
    pytest-asyncio provides to tests (which the hygiene gate instruments) are
    left alone.
    """
    yield
    if request.node.get_closest_marker("asyncio") is not None:
        return
    policy = asyncio.get_event_loop_policy()
    loop = getattr(getattr(policy, "_local", None), "_loop", None)
    if (
        isinstance(loop, asyncio.AbstractEventLoop)
        and not loop.is_running()
        and loop not in GATE.instrumented
    ):
        loop.close()
        asyncio.set_event_loop(None)
