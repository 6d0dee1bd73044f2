"""Settings shared by the test suite and the docs' examples."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest

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
    # An in-process inner session drops the modules it imported when it ends; a
    # later re-import of cryptography's Python layer then no longer matches its
    # compiled core.  Importing trustme (and so cryptography) first keeps them.
    import trustme  # noqa: F401

    pytester.makeini(PYTESTER_INI)
    yield pytester
    # Inner sessions leave event loops that asyncio created implicitly for pytest
    # plugins (``asyncio.get_event_loop()``) as garbage.  Finalise them here, where
    # they belong, rather than in whichever later test the collector happens to run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
