"""What a test pays for its TLS contexts, and for one loopback handshake.

Compares, in the same run:

* trustme's README pattern, run in every test: a new CA, ``issue_cert``,
  ``ssl.create_default_context`` on both sides, ``configure_cert`` and
  ``configure_trust``;
* nettest's pair, made for every test from certificates cached for the session:
  ``make_tls_server_context`` and ``make_tls_client_context`` (what the
  ``tls_server_context`` and ``tls_client_context`` fixtures return);

and then the cost of one full TLS handshake over loopback with nettest's
contexts (asyncio server and client, connect to close).

Run: ``python benchmarks/bench_tls.py`` (``--quick`` for a few-second run).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import time
from collections.abc import Callable

import trustme

from nettest._tls import make_tls_client_context, make_tls_server_context, new_ca
from nettest._tls_bad import make_tls_bad_case


def per_call(
    functions: dict[str, tuple[Callable[[], object], int]], rounds: int
) -> dict[str, float]:
    """Seconds of CPU per call for each function: the best round of `repeat` calls.

    Rounds of the different functions are interleaved, so that all of them see
    the same background load, and CPU time is measured rather than wall time: on
    a shared machine, waiting for a core measures the neighbours, not the code.
    The minimum over rounds is kept, as timeit advises.
    """
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(rounds):
        for name, (function, repeat) in functions.items():
            start = time.process_time()
            for _ in range(repeat):
                function()
            best[name] = min(best[name], (time.process_time() - start) / repeat)
    return best


def trustme_readme_pattern() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


async def handshakes(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, count: int
) -> float:
    """Wall seconds per connection (median): TCP connect, TLS handshake, a byte each way."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(1))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    times = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
            )
            writer.write(b"x")
            await reader.readexactly(1)
            writer.close()
            try:
                await writer.wait_closed()
            except (ssl.SSLError, ConnectionError):
                pass
            times.append(time.perf_counter() - start)
    finally:
        server.close()
        await server.wait_closed()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run, a few seconds")
    args = parser.parse_args()
    baseline_repeat, nettest_repeat, rounds, handshake_count = (
        (1, 20, 5, 20) if args.quick else (5, 200, 15, 200)
    )

    # The session's work, done once: the CA, the intermediate and the leaf.
    start = time.process_time()
    ca = new_ca()
    make_tls_server_context(_server_cert(ca))
    session_setup = time.process_time() - start

    server_cert = _server_cert(ca)
    measured = per_call(
        {
            "baseline": (trustme_readme_pattern, baseline_repeat),
            # The client side loads the system's CA store; the server side does not
            # (CERT_NONE), so this is nearly all of the baseline's context cost.
            "default_context": (ssl.create_default_context, baseline_repeat),
            "server": (lambda: make_tls_server_context(server_cert), nettest_repeat),
            "client": (lambda: make_tls_client_context(ca), nettest_repeat),
            "pair": (
                lambda: (make_tls_server_context(server_cert), make_tls_client_context(ca)),
                nettest_repeat,
            ),
            "bad_case": (lambda: make_tls_bad_case(ca, "expired"), nettest_repeat),
        },
        rounds,
    )
    baseline, default_context = measured["baseline"], measured["default_context"]
    server_only, client_only = measured["server"], measured["client"]
    pair, bad_case = measured["pair"], measured["bad_case"]

    handshake_13 = asyncio.run(
        handshakes(
            make_tls_server_context(_server_cert(ca)),
            make_tls_client_context(ca),
            handshake_count,
        )
    )
    handshake_12 = asyncio.run(
        handshakes(
            make_tls_server_context(_server_cert(ca), tls_version=ssl.TLSVersion.TLSv1_2),
            make_tls_client_context(ca, tls_version=ssl.TLSVersion.TLSv1_2),
            handshake_count,
        )
    )

    ms = 1000.0
    print("CPU time per call (best of interleaved rounds); handshakes in wall time (median)")
    print(f"session set-up, once (CA, intermediate, leaf): {session_setup * ms:8.3f} ms")
    print(f"trustme README pattern, per test (baseline):   {baseline * ms:8.3f} ms")
    print(f"  of which the client's create_default_context: {default_context * ms:8.3f} ms")
    print(f"nettest server context, per test:              {server_only * ms:8.3f} ms")
    print(f"nettest client context, per test:              {client_only * ms:8.3f} ms")
    print(f"nettest context pair, per test:                {pair * ms:8.3f} ms")
    print(f"nettest bad case (two contexts), per test:     {bad_case * ms:8.3f} ms")
    print(f"loopback TLS 1.3 handshake + 1 byte echo:      {handshake_13 * ms:8.3f} ms")
    print(f"loopback TLS 1.2 handshake + 1 byte echo:      {handshake_12 * ms:8.3f} ms")
    print()
    print(f"ratio: baseline / nettest pair            = {baseline / pair:7.1f}x (target >= 25x)")
    print(f"ratio: baseline / nettest bad case        = {baseline / bad_case:7.1f}x")
    print(f"ratio: TLS 1.3 handshake / nettest pair   = {handshake_13 / pair:7.1f}x")
    print(f"ratio: baseline / TLS 1.3 handshake       = {baseline / handshake_13:7.1f}x")


def _server_cert(ca: trustme.CA) -> trustme.LeafCert:
    from nettest._tls import _authority

    return _authority(ca).server


if __name__ == "__main__":
    main()
