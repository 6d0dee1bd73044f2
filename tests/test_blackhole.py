"""BlackholePort: connects that hang until the client's own timeout, on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from nettest._blackhole import BlackholePort
from nettest._servers import has_ipv6_loopback

HOSTS = [
    "127.0.0.1",
    pytest.param(
        "::1", marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_asyncio_connects_hang_until_the_clients_timeout(host: str) -> None:
    with BlackholePort(host) as blackhole:
        assert blackhole.address == (host, blackhole.port)
        # Several clients, one after the other and at once: the queue stays full.
        for _ in range(2):
            attempts = [
                asyncio.ensure_future(asyncio.open_connection(*blackhole.address))
                for _ in range(3)
            ]
            done, pending = await asyncio.wait(attempts, timeout=0.2)
            assert not done  # neither connected nor refused
            for attempt in pending:
                attempt.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


@pytest.mark.parametrize("host", HOSTS)
def test_a_blocking_connect_times_out(host: str) -> None:
    with BlackholePort(host) as blackhole, pytest.raises(TimeoutError):
        socket.create_connection(blackhole.address, timeout=0.2)


@pytest.mark.asyncio
async def test_a_connect_still_waiting_is_refused_once_the_port_closes() -> None:
    blackhole = BlackholePort()
    attempt = asyncio.ensure_future(asyncio.open_connection(*blackhole.address))
    await asyncio.sleep(0.05)
    assert not attempt.done()
    blackhole.close()
    blackhole.close()  # idempotent
    assert blackhole.closed
    assert repr(blackhole) == f"<BlackholePort 127.0.0.1:{blackhole.port} closed>"
    # The SYN is retransmitted about a second later, and the closed port resets it.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(attempt, 10)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(blackhole.address, timeout=5).close()


@pytest.mark.parametrize(
    ("host", "error", "message"),
    [
        ("localhost", ValueError, "host must be a literal IP address"),
        (
            "10.1.2.3",
            ValueError,
            r"^host '10\.1\.2\.3' is not a loopback address: only loopback addresses "
            r"\(127\.0\.0\.0/8 and ::1\) are accepted here$",
        ),
        (1, TypeError, "host must be a str, got int"),
    ],
)
def test_bad_hosts_are_refused(host: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        BlackholePort(host)  # type: ignore[arg-type]


@pytest.mark.nettest_leaks("off")  # it drops one open on purpose
def test_dropped_open_warns_and_closes() -> None:
    blackhole = BlackholePort()
    with pytest.warns(ResourceWarning, match="unclosed <BlackholePort 127.0.0.1:"):
        blackhole.__del__()
    assert blackhole.closed


def test_the_fixture_closes_it_at_teardown_and_the_gate_reports_one_left_open(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import socket
        import pytest
        from nettest import BlackholePort

        seen = []

        def test_fixture(blackhole_port):
            seen.append(blackhole_port)
            assert blackhole_port.host == "127.0.0.1"
            with pytest.raises(TimeoutError):
                socket.create_connection(blackhole_port.address, timeout=0.1)

        def test_closed_after_teardown():
            assert seen[0].closed

        def test_left_open():
            seen.append(BlackholePort())
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_left_open left 1 thing behind*", "*open blackhole port 127.0.0.1:*"]
    )


def test_strict_mode_reports_a_port_left_open_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from nettest import BlackholePort

        kept = []

        def test_left_open():
            kept.append(BlackholePort())
        """
    )
    result = pytester.runpytest(
        "-p", "no:randomly", "-p", "no:cacheprovider", "--nettest-leaks=strict"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_left_open left 1 thing behind*", "*open blackhole port*"])
    result.stdout.no_fnmatch_line("*socket*")
