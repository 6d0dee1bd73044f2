"""The hygiene gate blames a leaked socket on the test that opened it."""

import pytest

# pytester is a plugin pytest ships disabled: this module enables it for itself.
pytest_plugins = ["pytester"]

LEAKY_TESTS = """
import socket

leaked = []

def test_leaks_a_socket():
    leaked.append(socket.socket())

def test_after_it():
    pass
"""


def test_leak_is_blamed_on_its_test(pytester: pytest.Pytester) -> None:
    # The inner session runs in a directory of its own, without your settings.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(LEAKY_TESTS)
    result = pytester.runpytest("--nettest-leaks=strict")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_socket*",
            "*left 1 thing behind (--nettest-leaks=strict)*",
            "*leaked.append(socket.socket())*",
        ]
    )
