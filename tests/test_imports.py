"""Importing nettest and loading its plugin import neither hypothesis nor trustme."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_nettest_is_lazy() -> None:
    result = python(
        """
        import sys
        import nettest, nettest.plugin
        heavy = sorted(m for m in ("hypothesis", "trustme", "cryptography") if m in sys.modules)
        assert not heavy, heavy
        """
    )
    assert result.returncode == 0, result.stderr


def test_loading_the_plugin_is_lazy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_loaded():
            assert "nettest.plugin" in sys.modules
            assert "trustme" not in sys.modules
            assert "nettest.strategies" not in sys.modules
        """
    )
    # hypothesis's own pytest plugin is lazy too, but it is not ours to prove.
    result = pytester.runpytest_subprocess("-p", "no:hypothesispytest")
    result.assert_outcomes(passed=1)
