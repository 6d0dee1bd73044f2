"""The transport and contract examples of the docs run as a user who copies them runs them.

A user's project registers only its own markers, and ``--strict-markers`` makes
any other one an error: an example may only use markers pytest and its plugins
register.
"""

from __future__ import annotations

import pathlib

import pytest

from nettest import CONFORMANCE_CASES

EXAMPLES = pathlib.Path(__file__).parent.parent / "docs" / "examples"


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_contract_suite_example_runs_in_a_project_with_strict_markers(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makeini(
        f"""
        [pytest]
        addopts = --strict-markers --strict-config
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        """
    )
    source = (EXAMPLES / "contract_suite_example.py").read_text()
    pytester.makepyfile(test_contract_suite=source)
    result = pytester.runpytest_subprocess(
        "-p", "no:looptime_plugin", "-p", "no:cacheprovider", "-ra", timeout=120
    )
    try:
        import uvloop  # noqa: F401
    except ImportError:  # the uvloop run is skipped, and says why
        uvloop_runs = 0
    else:
        uvloop_runs = 1
    # The TCP run, one socketpair run per case, and one run on each loop.
    result.assert_outcomes(
        passed=1 + len(CONFORMANCE_CASES) + 1 + uvloop_runs, skipped=1 - uvloop_runs
    )
