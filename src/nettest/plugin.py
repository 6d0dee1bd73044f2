"""nettest's pytest plugin: options, ini keys, markers, fixtures and the hygiene gate.

Wiring only: each fixture's logic lives in its capability's module.  This module
imports pytest, the standard library and nettest, never hypothesis or trustme.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import random
import warnings
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, cast

import pytest

from . import _settings
from ._blackhole import blackhole_port  # noqa: F401
from ._hygiene import GATE, LEAK_MODES, LeakError, LeakMode, left_at_the_end
from ._hygiene_report import THREAD_LEFT_RUNNING
from ._memory_faults import forget_memory_faults, format_memory_traces_for
from ._prebound import bound_tcp_socket, bound_udp_socket, unix_socket_path  # noqa: F401
from ._proxy import fault_proxy, forget_proxies, format_traces_for  # noqa: F401
from ._proxy_thread import fault_proxy_thread  # noqa: F401
from ._resolver import fake_resolver  # noqa: F401
from ._seed import SEED_RANGE, check_seed
from ._server_base import (
    forget_servers,
    format_transcripts_for,
    remove_dead_processes_unix_dirs,
)
from ._servers import tcp_server, unix_server  # noqa: F401
from ._threads import (  # noqa: F401
    tcp_server_thread,
    udp_server_thread,
    unix_datagram_server_thread,
    unix_server_thread,
)
from ._tls import (  # noqa: F401  (fixtures are found by name in this module)
    remove_dead_processes_key_dirs,
    tls_ca,
    tls_certificate,
    tls_client_certificate,
    tls_client_context,
    tls_client_context_factory,
    tls_mutual_client_context,
    tls_mutual_server_context,
    tls_server_context,
    tls_version,
)
from ._tls_bad import tls_bad_case_factory  # noqa: F401
from ._tls_files import tls_files  # noqa: F401
from ._udp import udp_server, unix_datagram_server  # noqa: F401
from ._version import __version__

if TYPE_CHECKING:
    from _pytest.fixtures import FixtureDef, SubRequest

_SEED_KEY = pytest.StashKey[int]()
_FDS_KEY = pytest.StashKey[frozenset[tuple[int, int]]]()
#: What the gate released after a test that failed (in setup or call, GATE.failed,
#: or in its teardown), for its teardown report.
_RELEASED_KEY = pytest.StashKey[str]()
#: Whether the gate was strict for a session that was running when this one began
#: (pytester runs sessions inside a test): restored when this one ends.
_OUTER_STRICT_KEY = pytest.StashKey[bool]()
_OUTER_WATCHES_WRITERS_KEY = pytest.StashKey[bool]()
#: The test's leak mode, as its setup read it (the session's, if its marker is bad).
_MODE_KEY = pytest.StashKey[LeakMode]()

# -- options ------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nettest", "nettest: network test fixtures and fault injection")
    group.addoption(
        "--nettest-seed",
        dest="nettest_seed",
        type=_seed_option,
        default=None,
        metavar="N|last",
        help="Session seed for nettest's randomness; each test's seed is derived from it. "
        "'last' takes the seed of the last run (pytest's cache keeps it). "
        "Default: random, printed in the report header.",
    )
    parser.addini(
        "nettest_seed", "Session seed for nettest's randomness (--nettest-seed wins).", default=""
    )
    group.addoption(
        "--nettest-leaks",
        dest="nettest_leaks",
        choices=LEAK_MODES,
        default=None,
        help="Hygiene gate: 'off', 'own' (objects nettest made; the default) or 'strict' "
        "(every socket and task the test left).",
    )
    parser.addini(
        "nettest_leaks",
        "Hygiene gate mode: off, own or strict (--nettest-leaks wins).",
        default="",
    )
    group.addoption(
        "--nettest-timeout",
        dest="nettest_timeout",
        type=float,
        default=None,
        help=f"Seconds nettest's waits allow by default (default {_settings.DEFAULT_TIMEOUT:g}).",
    )
    parser.addini(
        "nettest_timeout",
        "Seconds nettest's waits allow by default (--nettest-timeout wins).",
        default="",
    )


def _setting(config: pytest.Config, name: str) -> tuple[object, str]:
    """The value of setting *name*, and where it came from, as an error names it."""
    value = config.getoption(name)
    if value is not None:
        return value, "--" + name.replace("_", "-")
    ini = str(config.getini(name)).strip()
    return ini or None, f"the {name} ini option"


def _leak_mode(config: pytest.Config) -> LeakMode:
    value, source = _setting(config, "nettest_leaks")
    mode = str(value or "own")
    if mode not in LEAK_MODES:
        raise pytest.UsageError(f"{source} must be one of {', '.join(LEAK_MODES)}; got {mode!r}")
    return mode


#: Where pytest's cache keeps the session seed, for ``--nettest-seed=last``.
_LAST_SEED_KEY = "nettest/last_seed"


def _seed_option(text: str) -> int | str:
    """``--nettest-seed``: an int (`_session_seed` checks its range), or ``last``."""
    if text == "last":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an int in {SEED_RANGE} or 'last', got {text!r}"
        ) from None


def _session_seed(config: pytest.Config) -> int:
    value, source = _setting(config, "nettest_seed")
    if value is None:
        seed = random.SystemRandom().randrange(2**32)
    elif value == "last":
        seed = _last_seed(config, source)
    else:
        seed = _checked_seed(value, source)
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    if cache is not None:
        cache.set(_LAST_SEED_KEY, seed)
    return seed


def _last_seed(config: pytest.Config, source: str) -> int:
    """The seed the last run used (as pytest-randomly's ``--randomly-seed=last``)."""
    cache = getattr(config, "cache", None)
    if cache is None:
        raise pytest.UsageError(
            f"{source} 'last' needs pytest's cache, which -p no:cacheprovider turned off"
        )
    seed = cache.get(_LAST_SEED_KEY, None)
    if isinstance(seed, bool) or not isinstance(seed, int):  # none yet, or not ours
        raise pytest.UsageError(
            f"{source} 'last': no earlier run's seed is in pytest's cache; "
            "pass the seed its report header showed"
        )
    return _checked_seed(seed, f"the last seed in pytest's cache, for {source} 'last',")


def _checked_seed(value: object, source: str) -> int:
    try:
        seed = int(cast("int | str", value))
    except ValueError:
        message = f"{source} must be an int in {SEED_RANGE}, got {value!r}"
        raise pytest.UsageError(message) from None
    try:
        return check_seed(seed, source)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _timeout(config: pytest.Config) -> float:
    value, source = _setting(config, "nettest_timeout")
    if value is None:
        return _settings.DEFAULT_TIMEOUT
    try:
        timeout = float(cast("float | str", value))
    except ValueError:
        raise pytest.UsageError(f"{source} must be a number; got {value!r}") from None
    # Every wait takes it as its timeout: a finite number of seconds.
    if not (timeout > 0 and math.isfinite(timeout)):
        raise pytest.UsageError(f"{source} must be > 0 seconds and finite; got {timeout}")
    return timeout


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "nettest_leaks(mode): run this test's hygiene gate in mode 'off', 'own' or 'strict'.",
    )
    config.addinivalue_line(
        "markers", "nettest_seed(seed): give this test a fixed nettest_seed, whatever the session."
    )
    # Under xdist the controller draws the session seed and hands it to every
    # worker (pytest_configure_node), so all derive the same per-test seeds.
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "nettest_seed" in workerinput:
        config.option.nettest_seed = int(workerinput["nettest_seed"])
    else:
        config.option.nettest_seed = _session_seed(config)
    mode = config.option.nettest_leaks = _leak_mode(config)
    _settings.timeout = _timeout(config)
    # An in-process session (pytester's) leaves what the outer session installed.
    config.stash[_OUTER_STRICT_KEY] = GATE.strict
    config.stash[_OUTER_WATCHES_WRITERS_KEY] = GATE.watching_writers()
    GATE.strict = mode == "strict"
    GATE.watch_writers()
    GATE.watch_loops()
    if GATE.strict:
        GATE.watch_socket_creation()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: give the worker the controller's session seed (workers re-parse options)."""
    node.workerinput["nettest_seed"] = node.config.option.nettest_seed


_SESSION_KEY = pytest.StashKey[pytest.Session]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SESSION_KEY] = session
    # A session killed before its teardown (kill -9, pytest-timeout's thread method)
    # leaves its /tmp/nt-<pid>-* directories and its TLS key directories: the next
    # session removes them.
    remove_dead_processes_unix_dirs()
    remove_dead_processes_key_dirs()


#: The key under which an xdist worker hands its session-end list to the controller.
_LEFT_AT_THE_END_KEY = "nettest_left_at_the_end"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if GATE.catching_until_the_end:
        GATE.catch_until_the_end()  # again: pytest before 8.4 put its own hook back
    # An xdist worker's summary is not shown: the controller shows its list.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # After a failed last teardown, collect now: what is freed after this
        # hook would never reach the controller.
        GATE.collect_at_the_end()
        # Named, as the same fixture's leak on two workers reads the same.
        worker = session.config.workerinput.get("workerid", "worker")  # type: ignore[attr-defined]
        workeroutput[_LEFT_AT_THE_END_KEY] = [
            f"  - [{worker}] {line.removeprefix('  - ')}" for line in GATE.left_at_the_end
        ]
        GATE.left_at_the_end = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist: take a finished worker's session-end list, for the summary."""
    GATE.left_at_the_end += getattr(node, "workeroutput", {}).get(_LEFT_AT_THE_END_KEY, [])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show what the session's last collection freed open (see `_Gate.check`'s `last`)."""
    _report_left_at_the_end(terminalreporter.config, terminalreporter)


def _report_left_at_the_end(config: pytest.Config, reporter: Any) -> None:
    """List what the session's last collection freed open; fail the session as pytest would.

    Without the gate, pytest's own collection as the session ends (from pytest
    8.4) would have freed it, and failed the session where its warning filters
    make `pytest.PytestUnraisableExceptionWarning` an error.  pytest's own check
    decides: the gate hands it what it freed (`_Gate.hand_to_pytest`) and runs it
    now, so that the session fails as it would have, with a line saying why
    rather than pytest's traceback.
    """
    left, GATE.left_at_the_end = GATE.left_at_the_end, []
    # Only to pytest's own hook: another (a plugin's, Python's default) may refuse
    # what is not a real sys.UnraisableHookArgs.
    pytest_takes_them = config.pluginmanager.has_plugin("unraisableexception")
    fails = GATE.hand_to_pytest(pytest_takes_them) and _pytest_check_fails(config)
    if left and reporter is not None:
        reporter.section("nettest: left open at the end of the session", yellow=True)
        reporter.line(left_at_the_end(config.option.nettest_leaks == "strict"))
        for line in left:
            reporter.line(line)
        if fails:
            reporter.line(
                "pytest fails the session for these: its warning filters make "
                "pytest.PytestUnraisableExceptionWarning an error, as without nettest."
            )
    session = config.stash.get(_SESSION_KEY, None)
    if fails and session is not None and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _pytest_check_fails(config: pytest.Config) -> bool:
    """Run pytest's check of what finalisers raised (pytest 8.4+); return whether it failed.

    Where pytest has no such check, what was handed to its hook waits for its
    own, which reports it as it would have.
    """
    try:
        from _pytest.unraisableexception import collect_unraisable
    except ImportError:
        return False
    try:
        # A warning that is no error is not shown again: the list shows it.
        with warnings.catch_warnings(record=True):
            collect_unraisable(config)
    except KeyError:  # pytest's own plugin is off (its queue was never made)
        return False
    except Exception:  # the warning, as an error; or a group of them
        return True
    return False


# Not trylast: before pytest's own unraisable-exception check of the session's end
# (its plugin was registered before this one, and is called after it).
def pytest_unconfigure(config: pytest.Config) -> None:
    # After a last teardown that failed, what its error held (see catch_until_the_end).
    GATE.collect_at_the_end()
    _report_left_at_the_end(config, config.pluginmanager.get_plugin("terminalreporter"))
    GATE.strict = config.stash.get(_OUTER_STRICT_KEY, False)
    if not GATE.strict:
        GATE.unwatch_socket_creation()
    if not config.stash.get(_OUTER_WATCHES_WRITERS_KEY, False):
        GATE.unwatch_writers()
        GATE.unwatch_loops()
    _settings.timeout = _settings.DEFAULT_TIMEOUT


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"nettest {__version__}: seed={config.option.nettest_seed} "
        f"leaks={config.option.nettest_leaks} timeout={_settings.timeout:g}s"
    )


# -- the seed -------------------------------------------------------------------


_NO_MARKER = object()


def _marker_value(item: pytest.Item, name: str, keyword: str, example: str) -> object:
    """The one value of `item`'s closest `name` marker, given alone or as `keyword`.

    `_NO_MARKER` if it has none.  Anything else (none, two, another keyword) is
    the test's setup error, rather than a value quietly taken or dropped.
    """
    marker = item.get_closest_marker(name)
    if marker is None:
        return _NO_MARKER
    given = [*marker.args, *marker.kwargs.values()]
    if len(given) != 1 or set(marker.kwargs) - {keyword}:
        raise pytest.UsageError(
            f"{name} marker on {item.nodeid}: takes one {keyword}, as {example}, "
            f"got {marker.args!r} {marker.kwargs!r}"
        )
    return given[0]


def _test_seed(item: pytest.Item) -> int:
    seed = _marker_value(item, "nettest_seed", "seed", "nettest_seed(1234)")
    if seed is not _NO_MARKER:
        try:
            return check_seed(seed)
        except (TypeError, ValueError) as exc:
            raise pytest.UsageError(f"nettest_seed marker on {item.nodeid}: {exc}") from None
    session_seed = int(item.config.option.nettest_seed)
    digest = hashlib.blake2b(f"{session_seed}:{item.nodeid}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


@pytest.fixture
def nettest_seed(request: pytest.FixtureRequest) -> int:
    """The seed for this test's randomness; --nettest-seed replays a run.

    Derived from the session seed and the test's node id, so a test keeps its seed
    whatever else is selected, in whatever order, on whichever xdist worker.  It is
    printed in the report of a failing test.
    """
    item = cast("pytest.Item", request.node)
    if _SEED_KEY in item.stash:  # worked out by the setup hook, unless a marker is bad
        return item.stash[_SEED_KEY]
    try:
        seed = item.stash[_SEED_KEY] = _test_seed(item)
    except pytest.UsageError as error:
        bad_marker = str(error)
    else:
        return seed
    # The marker's error is the report: not the hooks' frames that led here.
    pytest.fail(bad_marker, pytrace=False)


# -- the hygiene gate ---------------------------------------------------------


def _gate_mode(item: pytest.Item) -> LeakMode:
    mode = _marker_value(item, "nettest_leaks", "mode", 'nettest_leaks("strict")')
    if mode is not _NO_MARKER:
        if mode not in LEAK_MODES:
            raise pytest.UsageError(
                f"nettest_leaks marker on {item.nodeid}: mode must be one of "
                f"{', '.join(LEAK_MODES)}; got {mode!r}"
            )
        return mode
    return cast("LeakMode", item.config.option.nettest_leaks)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    # A rerun (pytest-rerunfailures runs the same item again) starts afresh: not
    # failed (GATE.begin), nothing released, no proxies (their seeds count them).
    # Its seed stays.
    if _RELEASED_KEY in item.stash:
        del item.stash[_RELEASED_KEY]
    forget_proxies(item)
    bad_marker = None
    mode = cast("LeakMode", item.config.option.nettest_leaks)
    try:
        mode = _gate_mode(item)
        if _SEED_KEY not in item.stash:  # a rerun keeps its seed
            # A bad nettest_seed marker fails even a test that uses no seed.
            item.stash[_SEED_KEY] = _test_seed(item)
    except pytest.UsageError as error:  # the test's setup error: its body does not run
        bad_marker = error
    item.stash[_MODE_KEY] = mode
    # Strict mode, by the session's mode or by a marker on the test, its class or
    # its module, starts here: the descriptors open now are not the test's.
    item.stash[_FDS_KEY] = GATE.begin(item.nodeid, mode)
    with GATE.owned_by(item.nodeid):
        result = yield
    if bad_marker is not None:  # after the fixtures' setup, which their teardown expects
        pytest.fail(str(bad_marker), pytrace=False)  # the message says it all
    return result


def _hidden_unless_a_group(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    """The `__tracebackhide__` of the gate's wrappers: hidden, but for an exception group.

    pytest's unraisable-exception check raises its group of warnings from its
    own hook, inside these wrappers: every other frame of that traceback is
    pytest's or pluggy's, which pytest leaves out, and pytest 8 stops with an
    INTERNALERROR on a group whose traceback it left empty.  A failure's
    traceback starts in the test anyway: pytest cuts it there.
    """
    return not any(cls.__name__ == "BaseExceptionGroup" for cls in type(excinfo.value).__mro__)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = _hidden_unless_a_group
    with GATE.owned_by(item.nodeid):
        return (yield)


# trylast: the innermost wrapper, so that what the gate's garbage collection
# finalises is reported by pytest's unraisable-exception check of this teardown.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    __tracebackhide__ = _hidden_unless_a_group
    GATE.end_left_by_an_off_test(item.nodeid)
    try:
        with GATE.owned_by(item.nodeid):
            try:
                result = yield
            except BaseException:
                # The teardown failed (a fixture's, or pytest's report of an
                # exception raised in a finaliser): the test errors already, so what
                # it left open is listed under that error, not raised.
                try:
                    _check(item, failed=True)
                except LeakError as late:  # tasks of earlier tests that failed since
                    item.stash[_RELEASED_KEY] = str(late)
                if nextitem is None:  # its error holds what it left: see pytest_unconfigure
                    GATE.catch_until_the_end()
                raise
        if nextitem is None and isinstance(item, pytest.Function):
            # Every fixture is torn down: let go of their values now, as pytest
            # does after this hook, so that the last check's collection frees what
            # a wider fixture left open (and the summary lists it), not pytest's
            # unconfigure, which raised its warnings as an internal error.
            item.funcargs = {}
        _check(item, failed=item.nodeid in GATE.failed, last=nextitem is None)
    finally:
        # Whatever happened, a strict test's instruments come off here.
        GATE.end(item.nodeid)
    return result


def _check(item: pytest.Item, *, failed: bool, last: bool = False) -> None:
    """Run the gate's check of `item`; keep what it released from a failed test."""
    __tracebackhide__ = True
    released = GATE.check(
        item.nodeid,
        item.stash[_MODE_KEY] if _MODE_KEY in item.stash else _gate_mode(item),
        item.stash.get(_FDS_KEY, frozenset()),
        failed=failed,
        last=last,
        wider=lambda: _wider_fixture_values(item),
    )
    if released is not None:
        item.stash[_RELEASED_KEY] = released


#: Plugins whose fixtures of wider scope are the test run's machinery (event loops
#: and their policies, temporary directories), not what a test suite shares.
_MACHINERY = frozenset(
    {"_pytest", "pytest", "pytest_asyncio", "anyio", "hypothesis", "xdist", "nettest"}
)


def _wider_fixture_values(item: pytest.Item) -> list[object]:
    """The values of `item`'s own fixtures of wider scope that are still set up.

    Not those of pytest, pytest-asyncio and other plugins' machinery: an event
    loop policy reaches asyncio's child watcher, and through it every child
    process a test left running.
    """
    info = getattr(item, "_fixtureinfo", None)
    values: list[object] = []
    for definitions in getattr(info, "name2fixturedefs", {}).values():
        for definition in definitions:
            cached = getattr(definition, "cached_result", None)
            module = getattr(definition.func, "__module__", None) or ""
            if (
                definition.scope != "function"
                and cached is not None
                and module.partition(".")[0] not in _MACHINERY
            ):
                values.append(cached[0])
    return values


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: FixtureDef[Any], request: SubRequest
) -> Generator[None, object, object]:
    if fixturedef.scope == "function":
        result = yield
        _instrument_runner(fixturedef, result)
    else:
        # What a wider-scoped fixture makes belongs to it, not to the test that
        # happened to be first to need it: its event loop too (made in no test,
        # the gate leaves what is open on it as it closes to it).
        with GATE.wider_fixture():
            result = yield
            _instrument_runner(fixturedef, result)
    return result


def _instrument_runner(fixturedef: FixtureDef[Any], result: object) -> None:
    """Watch the loops pytest-asyncio makes, and note their tasks before they close.

    pytest-asyncio provides each loop scope's loop through a fixture: an
    ``asyncio.Runner`` (``_<scope>_scoped_runner``, from 1.1) or the loop itself
    (``_<scope>_event_loop``, in 1.0).
    """
    get_loop = getattr(result, "get_loop", None)
    if isinstance(result, asyncio.AbstractEventLoop):
        loop = result
    elif fixturedef.argname.endswith("_scoped_runner") and callable(get_loop):
        loop = cast("asyncio.AbstractEventLoop", get_loop())
    else:
        return
    GATE.instrument_loop(loop)
    # Runs before the runner closes the loop and cancels what is still pending.
    fixturedef.addfinalizer(lambda: GATE.note_pending_tasks(loop))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    failing = call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception)
    if call.when in ("setup", "call") and failing:
        # Before the report is made: formatting its traceback can run the garbage
        # collector, which frees what the failed test dropped (see GATE.failed).
        GATE.failed.add(item.nodeid)
    report = yield
    if report.when == "teardown" and _RELEASED_KEY in item.stash:
        released = item.stash[_RELEASED_KEY]
        # pytest prints a teardown section ("teardown" in its name) under the failure.
        closed = "closed, threads aside" if THREAD_LEFT_RUNNING in released else "closed"
        note = f"({closed}: this test failed already, not again for what it left open)"
        # Only under what this test left: another test's late failure is not its own.
        own = f"{item.nodeid} left " in released
        report.sections.append(
            ("nettest hygiene at teardown", f"{released}\n{note}" if own else released)
        )
    if report.when in ("setup", "call") and (report.failed or hasattr(report, "wasxfail")):
        GATE.failed.add(item.nodeid)  # a strict xfail that passed has no exception
    memory_traces = format_memory_traces_for(item.nodeid) if report.failed else None
    traces = format_traces_for(item) if report.failed else None
    transcripts = format_transcripts_for(item) if report.failed else None
    if report.when == "teardown":
        # The teardown's is the test's last report: what its reports needed goes, or
        # every proxy a test made (with its closed loop) lived as long as the session.
        forget_memory_faults(item.nodeid)
        forget_proxies(item)
        forget_servers(item)
    if not report.failed:
        return report
    # Every test has a seed (its setup checks the marker), but only one that took it,
    # itself or through a fixture such as fault_proxy, has a use for it.
    if _SEED_KEY in item.stash and "nettest_seed" in getattr(item, "fixturenames", ()):
        seed = item.stash[_SEED_KEY]
        report.sections.append(
            (
                "nettest",
                f"nettest_seed: {seed} (this test's, drawn from the run's seed; replay the "
                f"run with --nettest-seed={item.config.option.nettest_seed})",
            )
        )
    if transcripts:
        report.sections.append(("nettest servers", transcripts))
    if traces:
        report.sections.append(("nettest fault proxy", traces))
    if memory_traces:
        report.sections.append(("nettest memory faults", memory_traces))
    return report
