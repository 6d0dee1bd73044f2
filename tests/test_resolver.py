"""FakeResolver: host names resolved as the test says, for asyncio and blocking clients."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from typing import Any

import pytest

import nettest
from nettest._resolver import FakeResolver
from nettest._servers import has_ipv6_loopback

IPV6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")


@pytest.fixture
def resolver() -> Any:
    with FakeResolver() as installed:
        yield installed


@pytest.mark.asyncio
async def test_asyncio_clients_connect_by_name(
    resolver: FakeResolver, tcp_server: nettest.TCPServerFactory
) -> None:
    server = await tcp_server(nettest.handlers.echo)
    resolver.add("db.test", "127.0.0.1")
    reader, writer = await asyncio.open_connection("DB.Test.", server.port)
    writer.write(b"ping\n")
    assert await reader.readline() == b"ping\n"
    writer.close()
    await writer.wait_closed()
    assert resolver.lookups == ("db.test",)


def test_blocking_clients_connect_by_name(resolver: FakeResolver) -> None:
    resolver.add("db.test", "127.0.0.1")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("db.test", port), timeout=5) as client:
            accepted, _ = listener.accept()
            accepted.close()
            assert client.getpeername() == ("127.0.0.1", port)


QUERIES = [
    {},
    {"type": socket.SOCK_STREAM},
    {"type": socket.SOCK_DGRAM},
    {"family": socket.AF_INET, "proto": socket.IPPROTO_TCP},
    {"family": socket.AF_INET6},
    {"flags": socket.AI_PASSIVE},
]


@IPV6
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("port", [443, "https", None])
@pytest.mark.asyncio
async def test_entries_are_what_the_system_gives_for_the_addresses(
    resolver: FakeResolver, query: dict[str, int], port: Any
) -> None:
    real = resolver._real
    resolver.add("both.test", "127.0.0.1", "::1")
    expected = []
    for address in ("127.0.0.1", "::1"):
        try:
            expected += real(address, port, **query)
        except socket.gaierror:
            pass
    assert socket.getaddrinfo("both.test", port, **query) == expected
    loop = asyncio.get_running_loop()
    assert await loop.getaddrinfo("both.test", port, **query) == expected


def test_a_canonical_name_is_the_name_looked_up(resolver: FakeResolver) -> None:
    resolver.add("db.test", "127.0.0.1")
    (first, *rest) = socket.getaddrinfo("db.test", 80, flags=socket.AI_CANONNAME)
    assert first[3] == "db.test"
    assert all(entry[3] == "" for entry in rest)


def test_a_family_the_name_has_no_address_in_fails_as_the_system_does(
    resolver: FakeResolver,
) -> None:
    # glibc answers EAI_NONAME for a name (EAI_ADDRFAMILY only for a literal address).
    resolver.add("v4.test", "127.0.0.1")
    with pytest.raises(socket.gaierror, match="no address of family AF_INET6") as raised:
        socket.getaddrinfo("v4.test", 80, socket.AF_INET6)
    assert raised.value.errno == socket.EAI_NONAME
    with pytest.raises(socket.gaierror) as literal:
        socket.getaddrinfo("127.0.0.1", 80, socket.AF_INET6)
    assert literal.value.errno == socket.EAI_ADDRFAMILY


@IPV6
def test_gethostbyname_and_gethostbyname_ex_answer_too(resolver: FakeResolver) -> None:
    resolver.add("db.test", "::1", "127.0.0.2", "127.0.0.3")
    assert socket.gethostbyname("db.test") == "127.0.0.2"  # IPv4 only, as the real one
    assert socket.gethostbyname_ex("DB.test.") == ("DB.test", [], ["127.0.0.2", "127.0.0.3"])
    resolver.add("v6.test", "::1")
    resolver.fail("down.test", socket.EAI_AGAIN)
    for name, code in [("v6.test", socket.EAI_NONAME), ("down.test", socket.EAI_AGAIN)]:
        for lookup in (socket.gethostbyname, socket.gethostbyname_ex):
            with pytest.raises(socket.gaierror) as raised:
                lookup(name)
            assert raised.value.errno == code
    with pytest.raises(socket.gaierror, match="was not added"):
        socket.gethostbyname("example.com")
    assert socket.gethostbyname("127.0.0.1") == "127.0.0.1"
    assert socket.gethostbyname_ex("localhost")[2] == ["127.0.0.1"]


def test_a_resolver_inside_another_answers_what_it_knows_and_asks_the_outer(
    resolver: FakeResolver,
) -> None:
    resolver.add("outer.test", "127.0.0.1")
    resolver.add("both.test", "127.0.0.1")
    with FakeResolver() as inner:
        inner.add("both.test", "127.0.0.2")
        assert socket.gethostbyname("both.test") == "127.0.0.2"
        assert socket.gethostbyname("outer.test") == "127.0.0.1"
        with pytest.raises(socket.gaierror, match=r"'nobody\.test' was not added"):
            socket.gethostbyname("nobody.test")
        assert inner.lookups == ("both.test", "outer.test", "nobody.test")
    assert socket.gethostbyname("both.test") == "127.0.0.1"
    assert resolver.lookups == ("outer.test", "nobody.test", "both.test")


@pytest.mark.parametrize("code", [socket.EAI_NONAME, socket.EAI_AGAIN, socket.EAI_FAIL])
@pytest.mark.asyncio
async def test_failures_raise_gaierror_with_the_c_librarys_message(
    resolver: FakeResolver, code: int
) -> None:
    resolver.fail("down.test", code)
    with pytest.raises(socket.gaierror) as blocking:
        socket.create_connection(("down.test", 80))
    with pytest.raises(socket.gaierror) as in_loop:
        await asyncio.open_connection("down.test", 80)
    assert blocking.value.errno == in_loop.value.errno == code
    assert str(blocking.value) == str(in_loop.value)
    if sys.platform == "linux":  # glibc's messages
        messages = {
            socket.EAI_NONAME: "Name or service not known",
            socket.EAI_AGAIN: "Temporary failure in name resolution",
            socket.EAI_FAIL: "Non-recoverable failure in name resolution",
        }
        assert blocking.value.strerror == messages[code]


@pytest.mark.asyncio
async def test_names_not_added_fail_without_reaching_dns(resolver: FakeResolver) -> None:
    with pytest.raises(socket.gaierror, match=r"'example\.com' was not added") as raised:
        await asyncio.open_connection("example.com", 80)
    assert raised.value.errno == socket.EAI_NONAME
    with pytest.raises(socket.gaierror, match=r"'example\.com' was not added"):
        socket.getaddrinfo("example.com", 80)
    # Literal addresses and localhost go to the real resolver (no DNS needed).
    assert socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)[0][4] == ("127.0.0.1", 80)
    assert socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    assert resolver.lookups == ("example.com", "example.com", "localhost")


@pytest.mark.asyncio
async def test_a_delay_is_loop_time_for_asyncio(resolver: FakeResolver) -> None:
    resolver.add("slow.test", "127.0.0.1", delay=0.3)
    loop = asyncio.get_running_loop()
    with pytest.raises((TimeoutError, asyncio.TimeoutError)):
        await asyncio.wait_for(loop.getaddrinfo("slow.test", 80), 0.05)
    start = loop.time()
    assert await loop.getaddrinfo("slow.test", 80)
    assert loop.time() - start >= 0.3
    resolver.fail("slow.test", socket.EAI_AGAIN, delay=0.1)
    start = loop.time()
    with pytest.raises(socket.gaierror):
        await loop.getaddrinfo("slow.test", 80)
    assert loop.time() - start >= 0.1


def test_a_delay_is_wall_time_for_blocking_clients(resolver: FakeResolver) -> None:
    resolver.add("slow.test", "127.0.0.1", delay=0.1)
    start = time.monotonic()
    assert socket.getaddrinfo("slow.test", 80)
    assert time.monotonic() - start >= 0.1


def test_add_again_replaces_and_remove_forgets(resolver: FakeResolver) -> None:
    resolver.add("db.test", "127.0.0.1")
    resolver.add("db.test", "127.0.0.2")
    assert {e[4][0] for e in socket.getaddrinfo("db.test", 80)} == {"127.0.0.2"}
    resolver.remove("DB.TEST")
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("db.test", 80)
    with pytest.raises(KeyError, match=r"'db\.test' was not added"):
        resolver.remove("db.test")


def test_a_loop_the_test_makes_itself_uses_it(resolver: FakeResolver) -> None:
    resolver.add("db.test", "127.0.0.1")

    async def resolve() -> list[Any]:
        return await asyncio.get_running_loop().getaddrinfo("db.test", 80)

    assert asyncio.run(resolve())[0][4] == ("127.0.0.1", 80)


def test_installed_only_inside_the_block() -> None:
    def installed() -> tuple[object, ...]:
        return (
            socket.getaddrinfo,
            socket.gethostbyname,
            socket.gethostbyname_ex,
            asyncio.base_events.BaseEventLoop.getaddrinfo,
        )

    original = installed()
    resolver = FakeResolver()
    with resolver:
        assert all(a is not b for a, b in zip(installed(), original, strict=True))
        with pytest.raises(RuntimeError, match="installed already"):
            resolver.__enter__()
    assert installed() == original


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda r: r.add("db.test"), ValueError, "needs at least one address"),
        (
            lambda r: r.add("db.test", "10.0.0.1"),
            ValueError,
            r"^address '10\.0\.0\.1' is not a loopback address: only loopback addresses "
            r"\(127\.0\.0\.0/8 and ::1\) are accepted here$",
        ),
        (lambda r: r.add("db.test", "localhost"), ValueError, "address must be a literal IP"),
        (lambda r: r.add("127.0.0.1", "127.0.0.1"), ValueError, "not an IP address"),
        (lambda r: r.add(".", "127.0.0.1"), ValueError, "name must be a host name"),
        (lambda r: r.add(b"db", "127.0.0.1"), TypeError, "name must be a str, got bytes"),
        (lambda r: r.add("db.test", "127.0.0.1", delay=-1), ValueError, "delay must be >= 0"),
        (lambda r: r.fail("db.test", delay=float("inf")), ValueError, "delay must be >= 0"),
        (lambda r: r.fail("db.test", 5), ValueError, r"code must be one of socket\.EAI_"),
        (lambda r: r.fail("db.test", "x"), TypeError, "code must be an int"),
    ],
)
def test_bad_arguments_are_refused(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call(FakeResolver())


def test_the_fixture_is_removed_at_teardown_even_after_a_failure(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import socket

        real = socket.getaddrinfo

        def test_fails(fake_resolver):
            fake_resolver.add("db.test", "127.0.0.1")
            assert socket.getaddrinfo is not real
            raise AssertionError("boom")

        def test_after():
            assert socket.getaddrinfo is real
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
