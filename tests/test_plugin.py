"""The plugin's wiring: options and their ini twins, the seed, markers and the report header."""

from __future__ import annotations

import os
import pathlib
import re
import signal

import pytest

import nettest
from nettest import _server_base
from nettest._processes import _pid_namespace
from support import dead_pid

MODES = pytest.mark.parametrize("asyncio_mode", ["strict", "auto"])


def test_plugin_report_header_shows_version_and_settings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--nettest-seed=1234", "--nettest-leaks=strict")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"nettest {nettest.__version__}: seed=1234 leaks=strict timeout=10s"]
    )


def test_plugin_disabled_by_no_nettest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_uses_seed(nettest_seed):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:nettest")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'nettest_seed' not found*"])
    assert "nettest 0" not in result.stdout.str()
    result = pytester.runpytest("-p", "no:nettest", "--nettest-seed=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="POSIX signals")
def test_a_failure_raised_from_a_signal_handler_does_not_start_in_nettest(
    pytester: pytest.Pytester,
) -> None:
    # As pytest-timeout's signal method fails a hanging test: the traceback is
    # the whole stack, which started with nettest's runtest_call wrapper.
    pytester.makeconftest(
        """
        import signal
        import pytest

        def fail_in(seconds):
            def timeout(signum, frame):
                pytest.fail("Timeout")

            signal.signal(signal.SIGALRM, timeout)
            signal.setitimer(signal.ITIMER_REAL, seconds)
        """
    )
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        from conftest import fail_in

        @pytest.mark.asyncio
        async def test_hangs():
            fail_in(0.2)
            await asyncio.sleep(10)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Failed: Timeout*"])
    assert "nettest/plugin.py" not in result.stdout.str()


def test_plugin_loaded_through_entry_point() -> None:
    from importlib.metadata import entry_points

    (entry,) = [ep for ep in entry_points(group="pytest11") if ep.name == "nettest"]
    assert entry.value == "nettest.plugin"
    # The package index's "nettest" is another project: the distribution is
    # pytest-nettest, as the docs' install command says.
    assert entry.dist is not None
    assert entry.dist.name == "pytest-nettest"


@MODES
def test_nettest_seed_is_stable_per_test_and_replayable(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    pytester.makepyfile(
        """
        import pytest
        SEEDS = {}

        def test_a(nettest_seed):
            print("SEED a", nettest_seed)

        @pytest.mark.asyncio
        async def test_b(nettest_seed):
            print("SEED b", nettest_seed)

        @pytest.mark.nettest_seed(7)
        def test_fixed(nettest_seed):
            assert nettest_seed == 7
        """
    )
    args = ["-s", f"--asyncio-mode={asyncio_mode}", "-p", "no:cacheprovider"]

    def seeds(*extra: str) -> dict[str, int]:
        result = pytester.runpytest(*args, *extra)
        result.assert_outcomes(passed=3)
        return {
            name: int(value) for name, value in re.findall(r"SEED (\w) (\d+)", result.stdout.str())
        }

    first = seeds("--nettest-seed=99")
    assert first == seeds("--nettest-seed=99")
    assert first["a"] != first["b"]
    assert first != seeds("--nettest-seed=100")
    # Selection and order do not change a test's seed.
    assert seeds("--nettest-seed=99", "-k", "b or fixed")["b"] == first["b"]


def test_xdist_workers_share_the_session_seed_in_the_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_seed(i, request):
            worker = os.environ.get("PYTEST_XDIST_WORKER")
            print("SESSION", worker, request.config.option.nettest_seed)
        """
    )
    # No --nettest-seed: the controller draws one, and every worker must use it.
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-rP")
    result.assert_outcomes(passed=6)
    header = re.search(r"nettest \S+: seed=(\d+)", result.stdout.str())
    assert header is not None
    used = set(re.findall(r"SESSION (gw\d) (\d+)", result.stdout.str()))
    assert {worker for worker, _ in used} == {"gw0", "gw1"}
    assert {seed for _, seed in used} == {header.group(1)}


@pytest.mark.parametrize(
    ("marker", "error"),
    [
        ("-5", "seed must be *[[]0, 2**64), got -5"),
        ("2**64", "seed must be *[[]0, 2**64), got 18446744073709551616"),
        ("1.9", "seed must be *[[]0, 2**64), got 1.9"),
        ('"abc"', "seed must be *[[]0, 2**64), got 'abc'"),
        # nettest_seed(1, 2) used to run with 1, silently.
        ("1, 2", "takes one seed, as *"),
        ("", "takes one seed, as *"),
        ("1, seed=2", "takes one seed, as *"),
        ("sed=1", "takes one seed, as *"),
    ],
)
@pytest.mark.parametrize("uses_the_seed", [True, False], ids=["seeded", "unseeded"])
def test_bad_nettest_seed_marker_fails_the_test(
    pytester: pytest.Pytester, marker: str, error: str, uses_the_seed: bool
) -> None:
    # Checked whether or not the test asks for the seed, as nettest_leaks is: a
    # marker is not silently ignored until the test happens to use it.
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.nettest_seed({marker})
        def test_fixed({"nettest_seed" if uses_the_seed else ""}):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_fixed _*",
            # The report is the message: no frames of the hooks that led to it.
            f"nettest_seed marker on *test_fixed: {error}",
            "*= short test summary info =*",
        ],
        consecutive=True,
    )
    result.assert_outcomes(errors=1)


def test_nettest_seed_marker_takes_a_keyword(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.nettest_seed(seed=7)
        def test_fixed(nettest_seed):
            assert nettest_seed == 7
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_nettest_seed_printed_on_failure_of_a_test_that_used_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_direct="""
        def test_fails(nettest_seed):
            print("SEED", nettest_seed)
            assert False
        """,
        test_through_a_fixture="""
        def test_fails(fault_proxy_thread):
            assert False
        """,
        test_without_it="""
        def test_fails():
            assert False
        """,
    )
    result = pytester.runpytest("--nettest-seed=5", "test_through_a_fixture.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "nettest_seed: * (this test's, drawn from the run's seed; replay the run with "
            "--nettest-seed=5)"
        ]
    )
    # A failing test that used no seed has none to print.
    result = pytester.runpytest("--nettest-seed=5", "test_without_it.py")
    result.assert_outcomes(failed=1)
    assert "nettest_seed:" not in result.stdout.str()
    result = pytester.runpytest("--nettest-seed=5", "test_direct.py")
    result.assert_outcomes(failed=1)
    seed = re.search(r"SEED (\d+)", result.stdout.str())
    assert seed is not None
    result.stdout.fnmatch_lines(
        [
            "*- nettest -*",
            f"nettest_seed: {seed.group(1)} (this test's, drawn from the run's seed; "
            "replay the run with --nettest-seed=5)",
        ]
    )


def test_ini_twins_and_flag_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:looptime_plugin\n"
        "nettest_seed = 42\n"
        "nettest_leaks = off\n"
        "nettest_timeout = 2.5\n"
    )
    pytester.makepyfile(
        """
        from nettest._settings import default_timeout
        def test_timeout():
            assert default_timeout() in (2.5, None)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["nettest *: seed=42 leaks=off timeout=2.5s"])
    result = pytester.runpytest("--nettest-seed=43", "--nettest-leaks=own")
    result.stdout.fnmatch_lines(["nettest *: seed=43 leaks=own timeout=2.5s"])


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("nettest_leaks = sometimes", "be one of off, own, strict*"),
        ("nettest_seed = abc", "be an int in [[]0, 2**64), got 'abc'*"),
        ("nettest_seed = -1", "be in [[]0, 2**64), got -1*"),
        ("nettest_timeout = 0", "be > 0 seconds and finite; got 0.0"),
        ("nettest_timeout = nan", "be > 0 seconds and finite; got nan"),
        # inf was taken, and then every wait of the thread-backed servers refused it.
        ("nettest_timeout = inf", "be > 0 seconds and finite; got inf"),
        ("nettest_timeout = soon", "be a number*"),
    ],
)
def test_bad_settings_are_usage_errors(pytester: pytest.Pytester, ini: str, message: str) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        f"addopts = -p no:looptime_plugin\n{ini}\n"
    )
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    name = ini.split(" = ")[0]  # the error names where the value came from
    result.stderr.fnmatch_lines([f"ERROR: the {name} ini option must {message}"])


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "Infinity"])
def test_bad_timeout_flag_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(f"--nettest-timeout={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --nettest-timeout must be > 0 seconds and finite; got *"])


def test_nettest_seed_last_replays_the_last_runs_seed(pytester: pytest.Pytester) -> None:
    # As pytest-randomly's --randomly-seed=last: a --lf run draws a new seed, and
    # a failure that depends on the seed then need not come back.
    pytester.makepyfile("def test_a(nettest_seed):\n    print('SEED', nettest_seed)\n")

    def session_seed(*args: str) -> str:
        result = pytester.runpytest_subprocess("-s", *args)
        result.assert_outcomes(passed=1)
        header = re.search(r"nettest \S+: seed=(\d+)", result.stdout.str())
        assert header is not None
        return header.group(1)

    result = pytester.runpytest_subprocess("--nettest-seed=last")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --nettest-seed 'last': no earlier run's seed is in pytest's cache; *"]
    )
    drawn = session_seed()
    assert session_seed("--nettest-seed=last") == drawn
    assert session_seed("--nettest-seed=last", "-n", "2") == drawn
    assert session_seed("-o", "nettest_seed=last") == drawn
    assert session_seed("--nettest-seed=5") == "5"
    assert session_seed("--nettest-seed=last") == "5"
    result = pytester.runpytest_subprocess("--nettest-seed=last", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --nettest-seed 'last' needs pytest's cache, which -p no:cacheprovider *"]
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "ERROR: --nettest-seed must be in [[]0, 2**64), got -1"),
        ("x", "*argument --nettest-seed: must be an int in [[]0, 2**64) or 'last', got 'x'"),
    ],
)
def test_bad_seed_flag_is_a_usage_error_naming_the_flag(
    pytester: pytest.Pytester, value: str, message: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(f"--nettest-seed={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_leaks_flag_lists_choices(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--nettest-leaks=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid choice: 'maybe' (choose from *off*own*strict*)*"])


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.nettest_leaks(mode)*", "@pytest.mark.nettest_seed(seed)*"]
    )


def test_every_fixture_has_a_standalone_first_docstring_line(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    text = result.stdout.str()
    section = text.split("fixtures defined from nettest.plugin", 1)
    assert len(section) == 2, text
    body = section[1].split("\n-----", 1)[0].split("\n=====", 1)[0]
    entries = re.findall(r"^(\w+)(?: \[\w+ scope\])? -- .*\n((?:    .*\n?)*)", body, re.MULTILINE)
    assert entries, body
    for name, doc in entries:
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        assert first, f"fixture {name} has no docstring"
        assert first.endswith("."), f"fixture {name}: first line does not stand alone: {first!r}"


RERUN_TESTS = """
import asyncio
import pytest
from nettest import memory_stream_pair

attempts = {}
seeds = []
held = []

def attempt(name):
    attempts[name] = attempts.get(name, 0) + 1
    return attempts[name]

@pytest.mark.asyncio
async def test_fails_then_passes_leaving_a_pair_open():
    first = attempt("a") == 1
    held.append(memory_stream_pair())
    if first:
        assert False, "first attempt"

@pytest.mark.asyncio
async def test_fails_leaking_then_passes_clean():
    if attempt("b") == 1:
        held.append(memory_stream_pair())
        assert False, "first attempt"

@pytest.mark.asyncio
async def test_proxy_seed_is_the_same_on_a_rerun(tcp_server, fault_proxy):
    server = await tcp_server()
    proxy = await fault_proxy(upstream=server)
    seeds.append(proxy.seed)
    if attempt("c") == 1:
        assert False, "first attempt"
    assert seeds[0] == seeds[1]

def test_release():
    held.clear()
"""


def test_a_rerun_is_checked_afresh(pytester: pytest.Pytester) -> None:
    # pytest-rerunfailures runs the same item again: the rerun that passes is
    # failed for what it leaves open, does not repeat the first attempt's list,
    # and its proxies get the seeds the first attempt's got.
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(test_reruns=RERUN_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--reruns", "1", "-p", "no:randomly")
    assert result.parseoutcomes() == {"passed": 4, "errors": 1, "rerun": 3}
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_fails_then_passes_leaving_a_pair_open*",
            "*test_fails_then_passes_leaving_a_pair_open left 2 things behind*",
        ]
    )
    assert "test_fails_leaking_then_passes_clean left" not in result.stdout.str()


@pytest.mark.skipif(os.name != "posix", reason="probes processes with os.kill(pid, 0)")
def test_each_session_removes_the_key_directories_of_dead_processes(
    pytester: pytest.Pytester, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A session killed before its teardown leaves its TLS key directory: the next
    # session removes it as it starts, whether or not it makes keys itself.
    left = tmp_path / f"nettest-tls-{dead_pid()}-{_pid_namespace()}-abc"
    left.mkdir()
    (left / "server-key.pem").write_bytes(b"key")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not left.exists()


def test_an_unraisable_exception_group_is_reported_not_an_internal_error(
    pytester: pytest.Pytester,
) -> None:
    # pytest's unraisable-exception check raises a group of its warnings from its
    # own hook, under the gate's wrappers; pytest 8.3 and 8.4 filter out every
    # frame of its traceback but the gate's, and stopped with an INTERNALERROR
    # when the gate hid its own too.
    pytester.makepyfile(
        """
        import gc

        class Noisy:
            def __init__(self):
                self.me = self  # a cycle: freed by the collection below

            def __del__(self):
                raise RuntimeError("raised in __del__")

        def test_drops_two():
            Noisy(), Noisy()
            gc.collect()
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-W", "error::pytest.PytestUnraisableExceptionWarning"
    )
    result.assert_outcomes(failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*RuntimeError: raised in __del__*"])


def test_the_gates_wrappers_hide_their_frames_but_for_an_exception_group() -> None:
    from nettest.plugin import _hidden_unless_a_group

    def excinfo_of(error: BaseException) -> pytest.ExceptionInfo[BaseException]:
        try:
            raise error
        except BaseException:
            return pytest.ExceptionInfo.from_current()

    assert _hidden_unless_a_group(excinfo_of(AssertionError()))
    group = _server_base._exception_group("two", [ValueError(), OSError()])
    assert not _hidden_unless_a_group(excinfo_of(group))
