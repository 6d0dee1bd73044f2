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
from dataclasses import dataclass

import trustme

from nettest._tls import (
    _authority,
    _cadata,
    _leaf_identity,
    make_tls_client_context,
    make_tls_server_context,
    new_ca,
)
from nettest._tls_bad import make_tls_bad_case


@dataclass(frozen=True)
class Timing:
    """Seconds of CPU per call: the best round and the median round."""

    best: float
    median: float


def per_call(
    functions: dict[str, tuple[Callable[[], object], int]], rounds: int
) -> dict[str, Timing]:
    """Seconds of CPU per call for each function, over rounds of `repeat` calls.

    Rounds of the different functions are interleaved, so that all of them see
    the same background load, and CPU time is measured rather than wall time: on
    a shared machine, waiting for a core measures the neighbours, not the code.
    The best round is what the code costs (as timeit advises); the median round
    is reported too, as a check that the best is not a lucky outlier.
    """
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, (function, repeat) in functions.items():
            start = time.process_time()
            for _ in range(repeat):
                function()
            samples[name].append((time.process_time() - start) / repeat)
    return {
        name: Timing(min(values), statistics.median(values)) for name, values in samples.items()
    }


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
) -> tuple[float, float]:
    """Seconds per connection, median: TCP connect, TLS handshake, a byte each way.

    Returns the wall time and the CPU time.  Both ends run in this process, so the
    CPU time is the whole handshake's, comparable with the contexts' CPU time.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(1))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    wall, cpu = [], []
    try:
        for _ in range(count):
            start, start_cpu = time.perf_counter(), time.process_time()
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
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    finally:
        server.close()
        await server.wait_closed()
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run, a few seconds")
    args = parser.parse_args()
    baseline_repeat, nettest_repeat, rounds, handshake_count = (
        (1, 10, 5, 20) if args.quick else (5, 100, 21, 200)
    )

    # The session's work, done once: the CA, the intermediate and the leaf.
    start = time.process_time()
    ca = new_ca()
    make_tls_server_context(_server_cert(ca))
    session_setup = time.process_time() - start

    server_cert = _server_cert(ca)
    # The same OpenSSL calls as nettest's pair, made directly: what is left when
    # nettest's own code costs nothing.
    full_chain_file = _leaf_identity(server_cert).key_and_chain_file()
    leaf_only_file = _authority(ca).bad("incomplete_chain").key_and_chain_file()
    ca_der = _cadata(ca)

    def server_with(path: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(path)
        return context

    def client_trusting_ca() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # The same settings as nettest's client context: they are required, not extra.
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.hostname_checks_common_name = False
        context.load_verify_locations(cadata=ca_der)
        return context

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
            "context": (lambda: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), nettest_repeat),
            "key_leaf": (lambda: server_with(leaf_only_file), nettest_repeat),
            "key_chain": (lambda: server_with(full_chain_file), nettest_repeat),
            "trust": (client_trusting_ca, nettest_repeat),
        },
        rounds,
    )
    best = {name: timing.best for name, timing in measured.items()}
    median = {name: timing.median for name, timing in measured.items()}

    handshake_13, handshake_13_cpu = asyncio.run(
        handshakes(
            make_tls_server_context(server_cert),
            make_tls_client_context(ca),
            handshake_count,
        )
    )
    handshake_12, handshake_12_cpu = asyncio.run(
        handshakes(
            make_tls_server_context(server_cert, tls_version=ssl.TLSVersion.TLSv1_2),
            make_tls_client_context(ca, tls_version=ssl.TLSVersion.TLSv1_2),
            handshake_count,
        )
    )

    # What each OpenSSL step costs, from the differences of the direct calls.
    context = best["context"]
    certificate = best["key_chain"] - best["key_leaf"]
    key = best["key_leaf"] - context - certificate
    trust = best["trust"] - context
    floor = best["key_chain"] + best["trust"]
    # No verified pair can cost less: two contexts, the server's key, the leaf,
    # and one trusted root, with no intermediate at all.
    least = best["key_leaf"] + best["trust"]

    ms = 1000.0

    def line(label: str, name: str) -> None:
        print(f"{label:<47}{best[name] * ms:8.3f} ms  (median {median[name] * ms:7.3f})")

    print("CPU time per call: best of interleaved rounds, and the median round;")
    print("handshakes: median wall time, and median CPU time")
    print(f"{'session set-up, once (CA, intermediate, leaf):':<47}{session_setup * ms:8.3f} ms")
    line("trustme README pattern, per test (baseline):", "baseline")
    line("  of which the client's create_default_context:", "default_context")
    line("nettest server context, per test:", "server")
    line("nettest client context, per test:", "client")
    line("nettest context pair, per test:", "pair")
    line("nettest bad case (two contexts), per test:", "bad_case")
    for version, wall, cpu in (
        ("1.3", handshake_13, handshake_13_cpu),
        ("1.2", handshake_12, handshake_12_cpu),
    ):
        label = f"loopback TLS {version} handshake + 1 byte echo:"
        print(f"{label:<47}{wall * ms:8.3f} ms  (CPU {cpu * ms:7.3f})")
    print()
    print(f"where a pair's time goes ({ssl.OPENSSL_VERSION}):")
    print(f"{'  ssl.SSLContext(), each of two:':<47}{context * ms:8.3f} ms")
    print(f"{'  decoding the server key (in load_cert_chain):':<47}{key * ms:8.3f} ms")
    print(f"{'  decoding a certificate, each of three:':<47}{certificate * ms:8.3f} ms")
    print(f"{'  client flags + load_verify_locations(DER):':<47}{trust * ms:8.3f} ms")
    print(f"{'  the same stdlib calls, made directly:':<47}{floor * ms:8.3f} ms")
    print(f"{'  the least any pair costs (no intermediate):':<47}{least * ms:8.3f} ms")
    print()
    ratio = best["baseline"] / best["pair"]
    verdict = "met" if ratio >= 25 else "NOT met"
    ratios = {
        "baseline / nettest pair": ratio,
        "baseline / direct OpenSSL calls": best["baseline"] / floor,
        "baseline / least possible pair": best["baseline"] / least,
        "baseline / nettest bad case": best["baseline"] / best["bad_case"],
        "TLS 1.3 handshake / nettest pair": handshake_13_cpu / best["pair"],
        "baseline / TLS 1.3 handshake": best["baseline"] / handshake_13_cpu,
    }
    notes = {
        "baseline / nettest pair": f" (target >= 25x: {verdict}; "
        f"median rounds: {median['baseline'] / median['pair']:.1f}x)",
        "baseline / direct OpenSSL calls": " (the ceiling for this chain)",
        "baseline / least possible pair": " (the ceiling on this OpenSSL)",
        "TLS 1.3 handshake / nettest pair": " (CPU time both)",
        "baseline / TLS 1.3 handshake": " (CPU time both)",
    }
    for label, value in ratios.items():
        print(f"ratio: {label:<34} = {value:7.1f}x{notes.get(label, '')}")


def _server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return _authority(ca).server


if __name__ == "__main__":
    main()
