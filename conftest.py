"""Settings shared by the test suite and the docs' examples."""

from __future__ import annotations

import pytest

#: The loop-scope default users are told to set, and no looptime plugin, which
#: leaves an unclosed event loop behind in the (shared) process after sync tests.
PYTESTER_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
addopts = -p no:looptime_plugin
"""


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester whose inner sessions are configured like the project's own."""
    # An in-process inner session drops the modules it imported when it ends; a
    # later re-import of cryptography's Python layer then no longer matches its
    # compiled core.  Importing trustme (and so cryptography) first keeps them.
    import trustme  # noqa: F401

    pytester.makeini(PYTESTER_INI)
    return pytester
