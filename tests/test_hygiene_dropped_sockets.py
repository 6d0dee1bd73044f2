"""Strict mode reports a socket the test dropped while open, whatever the warning filters.

A socket freed while open (by reference counting, as a helper returns early on
an error) is closed by its C finaliser, which only warns: by the check its
descriptor is closed and the gate's weak reference dead.  Unless the program
closed it (``close()``, a ``with`` block, ``detach()``, a transport, its
``makefile()`` files), strict mode reports it as dropped while open, with its
stack.  Each inner session holds one such socket, whose report proves that the
gate watched the sockets the session leaves unreported.
"""

from __future__ import annotations

import fnmatch

import pytest

from test_hygiene import MODES, run
from test_hygiene_parts import reports

_HELPERS = """
        import asyncio, gc, os, socket, ssl, threading
        import pytest

        def listener():
            return socket.create_server(("127.0.0.1", 0))

        def connect_or_none(address):
            # The planted bug: the socket is not closed when connect() fails.
            sock = socket.socket()
            try:
                sock.connect(address)
            except OSError:
                return None
            return sock

        def tls_client(address):
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            raw = socket.create_connection(address)
            # It detaches raw, whose descriptor is its own from now on.
            return context.wrap_socket(
                raw, server_hostname="localhost", do_handshake_on_connect=False
            )
"""


def assert_reports(result: pytest.RunResult, expected: dict[str, list[str]]) -> None:
    """Assert that the tests reported are those of `expected`, each with its items.

    Items are matched as patterns (``*`` matches anything), in order.
    """
    found = reports(result)
    assert sorted(found) == sorted(expected), found
    for name, patterns in expected.items():
        items = found[name]
        assert len(items) == len(patterns), (name, items)
        for item, pattern in zip(items, patterns, strict=True):
            assert fnmatch.fnmatchcase(item, pattern), (name, item, pattern)


@MODES
def test_gate_reports_a_socket_dropped_open_in_strict_mode(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    # No -W option: the finaliser's ResourceWarning is only a warning.
    result = run(
        pytester,
        _HELPERS
        + """
        def test_plain():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            del sock

        def test_create_connection():
            with listener() as server:
                sock = socket.create_connection(server.getsockname())
                sock = None

        def test_failed_connect():
            with socket.socket() as refusing:  # bound, not listening: connect is refused
                refusing.bind(("127.0.0.1", 0))
                assert connect_or_none(refusing.getsockname()) is None

        @pytest.mark.asyncio
        async def test_async():
            loop = asyncio.get_running_loop()
            with listener() as server:
                sock = socket.socket()
                sock.setblocking(False)
                await loop.sock_connect(sock, server.getsockname())
                del sock

        def test_tls():
            with listener() as server:
                tls_client(server.getsockname())

        def test_thread():
            def make():
                socket.socket()

            thread = threading.Thread(target=make, name="maker")
            thread.start()
            thread.join()

        def test_collected_by_the_test():
            cycle = [socket.socket()]
            cycle.append(cycle)
            del cycle
            gc.collect()
        """,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
        subprocess=True,
    )
    plain = "- socket <socket.socket fd=*> dropped while open, created at:"
    expected = {
        "test_plain": plain,
        "test_create_connection": plain,
        "test_failed_connect": plain,
        "test_async": plain,
        # The TLS socket alone: the socket it wrapped was detached.
        "test_tls": "- socket <ssl.SSLSocket fd=*> dropped while open, created at:",
        "test_thread": "- socket <socket.socket fd=*> dropped while open, created on thread "
        "maker at:",
        "test_collected_by_the_test": plain,
    }
    result.assert_outcomes(passed=len(expected), errors=len(expected))
    assert_reports(result, {name: [item] for name, item in expected.items()})
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_failed_connect*",
            "*- socket <socket.socket fd=*> dropped while open, created at:",
            '*File "*test_leaky.py", line *, in test_failed_connect',
            "*assert connect_or_none(refusing.getsockname()) is None",
            '*File "*test_leaky.py", line *, in connect_or_none',
            "*sock = socket.socket()",
            "*ERROR at teardown of test_async*",
            "*- socket <socket.socket fd=*> dropped while open, created at:",
            '*File "*test_leaky.py", line *, in test_async',
            "*sock = socket.socket()",
        ]
    )


@MODES
def test_gate_never_reports_a_socket_the_program_closed(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    # Nor one that is not the test's: a module-scoped fixture's, an own-mode
    # test's, or one the gate reported open and closed at an earlier check.
    result = run(
        pytester,
        _HELPERS
        + """
        kept = []

        @pytest.fixture(scope="module")
        def module_sockets():
            return [socket.socket()]

        def test_close():
            sock = socket.socket()
            sock.close()
            del sock

        def test_with():
            with socket.socket() as sock:
                pass
            del sock

        def test_detach():
            sock = socket.socket()
            fd = sock.detach()
            del sock
            os.close(fd)

        def test_detach_handed_on():
            sock = socket.socket()
            other = socket.socket(fileno=sock.detach())
            del sock
            other.close()

        def test_makefile_closed_last():
            with listener() as server:
                sock = socket.create_connection(server.getsockname())
                file = sock.makefile("rb")
                sock.close()  # its descriptor stays open for the file
                file.close()
                del sock, file

        def test_makefile_dropped():
            with listener() as server:
                sock = socket.create_connection(server.getsockname())
                file = sock.makefile("rb")
                sock.close()
                del sock, file  # the file's finaliser closes it

        def test_socketpair_and_fromfd():
            a, b = socket.socketpair()
            dup = socket.fromfd(a.fileno(), a.family, a.type)
            for sock in (a, b, dup):
                sock.close()

        def test_tls_closed():
            with listener() as server:
                tls = tls_client(server.getsockname())
                tls.close()
                del tls

        def test_accepted_on_a_thread():
            with listener() as server:
                def serve():
                    conn, _ = server.accept()
                    conn.close()

                thread = threading.Thread(target=serve)
                thread.start()
                with socket.create_connection(server.getsockname()):
                    thread.join()

        @pytest.mark.asyncio
        async def test_streams():
            server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
            del reader, writer, server

        @pytest.mark.asyncio
        async def test_closed_by_its_transport():
            loop = asyncio.get_running_loop()
            with listener() as server:
                sock = socket.socket()
                sock.setblocking(False)
                await loop.sock_connect(sock, server.getsockname())
                transport, _ = await loop.create_connection(asyncio.Protocol, sock=sock)
                del sock
                transport.close()
                await asyncio.sleep(0)  # it closes its socket a turn later
                del transport

        def test_module_fixture(module_sockets):
            module_sockets.clear()  # the fixture's socket, freed open: nobody's leak

        @pytest.mark.nettest_leaks("own")
        def test_own_mode():
            socket.socket()

        def test_keeps():
            kept.append(socket.socket())  # reported open, and closed by the gate

        def test_frees_what_an_earlier_test_kept():
            kept.clear()

        def test_drops():
            socket.socket()
        """,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
        subprocess=True,
    )
    result.assert_outcomes(passed=16, errors=2)
    assert_reports(
        result,
        {
            "test_keeps": ["- open socket <socket.socket fd=*>, created at:"],
            "test_drops": ["- socket <socket.socket fd=*> dropped while open, created at:"],
        },
    )


@MODES
def test_gate_reports_a_socket_dropped_open_by_a_strict_test_only(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    # A marker makes one test strict: the wrappers come off after it.
    result = run(
        pytester,
        """
        import socket
        import pytest

        @pytest.mark.nettest_leaks("strict")
        def test_strict_drops():
            socket.socket()

        @pytest.mark.nettest_leaks("strict")
        def test_strict_closes():
            with socket.socket():
                pass

        def test_own_drops():
            socket.socket()

        def test_wrappers_removed():
            for name in ("__init__", "close", "_real_close", "detach"):
                assert not hasattr(vars(socket.socket)[name], "__wrapped__"), name
        """,
        f"--asyncio-mode={asyncio_mode}",
        subprocess=True,
    )
    result.assert_outcomes(passed=4, errors=1)
    assert_reports(
        result,
        {"test_strict_drops": ["- socket <socket.socket fd=*> dropped while open, created at:"]},
    )


@MODES
def test_gate_lists_a_socket_its_own_collection_frees_once(
    pytester: pytest.Pytester, asyncio_mode: str
) -> None:
    # Kept alive by a reference cycle only, with automatic collections off: the
    # gate's collection frees it, and its finaliser's warning (an error here) was
    # listed as well as the socket.
    result = run(
        pytester,
        """
        import gc, socket

        gc.disable()

        class Holder:
            def __init__(self):
                self.cycle = self
                self.sock = socket.socket()
                self.sock.bind(("127.0.0.1", 0))

        def test_drops_in_a_cycle():
            Holder()
        """,
        "--nettest-leaks=strict",
        f"--asyncio-mode={asyncio_mode}",
        "-W",
        "error::ResourceWarning",
        subprocess=True,
    )
    result.assert_outcomes(passed=1, errors=1)
    # Named as the check saw it last, bound.
    assert_reports(
        result,
        {
            "test_drops_in_a_cycle": [
                "- socket <socket.socket fd=*, laddr=('127.0.0.1', *)> dropped while open, "
                "created at:"
            ]
        },
    )
    assert "unclosed <socket.socket" not in result.stdout.str()


def test_a_socket_closed_while_its_file_is_open_is_reported_as_such(
    pytester: pytest.Pytester,
) -> None:
    # close() was called, but the makefile() file keeps the descriptor open.
    result = run(
        pytester,
        """
        import socket

        KEPT = []

        def test_file_left_open():
            a, b = socket.socketpair()
            b.close()
            KEPT.append(a.makefile("rb"))
            a.close()
        """,
        "--nettest-leaks=strict",
        subprocess=True,
    )
    result.assert_outcomes(passed=1, errors=1)
    assert_reports(
        result,
        {
            "test_file_left_open": [
                "- socket <socket.socket [[]closed[]] fd=*> closed, but a makefile() file "
                "still holds it open, created at:"
            ]
        },
    )
