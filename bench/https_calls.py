"""https against http on the call path: requests a second at 1 and 16 calls in flight.

Two copies of the minimal loopback service run in processes of their own
(``bench/loopback_service.py``): one plain, one over TLS requiring a client
certificate from a test CA (mTLS, certificates made with ``trustme``). From one event
loop, each of these makes ``--calls`` GET requests a round, ``--concurrency`` at a time:

- orch transport: an ``httpx.AsyncClient`` on ``callpath/transport.py``'s
  ``HttpTransport`` (what every orchestrated call goes out on), with the same
  ``ssl.SSLContext`` the call path builds from orch's TLS settings;
- httpx transport: an ``httpx.AsyncClient`` on httpx's default transport (httpcore),
  ``verify=`` that same context (what https calls went through before);
- caller.call: ``ServiceCaller.call`` through the whole call path (mesh policy,
  breaker, discovery, events) to the service registered over http or https, on a
  scratch database.

Each kind, over http and over https, at each concurrency, is one round; a run does
every round once, in an order that rotates from run to run, after a warm-up round of
each (connections open, handshakes done). Figures are each run's requests a second
and the median across runs. The machine is shared: compare kinds within one command,
as ratios.

    .venv/bin/python bench/https_calls.py [--dsn DSN] [--runs 3] [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import trustme
from scratch_database import (
    DEFAULT_DSN,
    register_caller,
    register_loopback_service,
    scratch_database,
)

from orchcore import Orch, Settings
from orchcore.callpath.tls import TlsSettings, client_context
from orchcore.callpath.transport import HttpTransport

SERVICE = Path(__file__).with_name("loopback_service.py")
SOURCE = "booking"
Call = Callable[[], Awaitable[int]]


class Certificates:
    """A CA, the service's certificate for 127.0.0.1 and orch's client certificate,
    written as the files orch's settings and the service's flags name."""

    def __init__(self, folder: Path) -> None:
        ca = trustme.CA()
        service, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("orch@bench.example")
        self.ca = self._write(folder / "ca.pem", ca.cert_pem)
        self.service_cert = self._write(folder / "service.pem", service.cert_chain_pems[0])
        self.service_key = self._write(folder / "service.key", service.private_key_pem)
        self.client_cert = self._write(folder / "client.pem", client.cert_chain_pems[0])
        self.client_key = self._write(folder / "client.key", client.private_key_pem)

    @staticmethod
    def _write(path: Path, blob: trustme.Blob) -> str:
        blob.write_to_path(str(path))
        return str(path)

    def tls_settings(self) -> TlsSettings:
        return TlsSettings(self.ca, self.client_cert, self.client_key)

    def service_flags(self) -> list[str]:
        return [
            "--tls-cert", self.service_cert, "--tls-key", self.service_key,
            "--tls-client-ca", self.ca,
        ]  # fmt: skip


@asynccontextmanager
async def service(flags: list[str]) -> AsyncIterator[int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVICE), *flags, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        if not line:
            raise SystemExit("the loopback service did not start")
        yield int(line)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def measure(call: Call, calls: int, concurrency: int) -> tuple[float, float]:
    """``calls`` calls, ``concurrency`` in flight at all times: requests a second, and
    this process's CPU time a request in microseconds (less swayed by other load)."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await call()
            if status != 200:
                raise SystemExit(f"unexpected HTTP {status}")

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return calls / elapsed, cpu / calls * 1e6


def get(client: httpx.AsyncClient, url: str) -> Call:
    async def call() -> int:
        return (await client.get(url)).status_code

    return call


async def kinds(
    stack: AsyncExitStack, certificates: Certificates, ports: dict[str, int], dsn: str
) -> dict[str, Call]:
    """Every kind of call, by its row's label."""
    context = client_context(certificates.tls_settings())
    orch_client = httpx.AsyncClient(transport=HttpTransport(ssl_context=context))
    httpx_client = httpx.AsyncClient(verify=context)
    await stack.enter_async_context(orch_client)
    await stack.enter_async_context(httpx_client)
    found: dict[str, Call] = {}
    for scheme, port in ports.items():
        url = f"{scheme}://127.0.0.1:{port}/ping"
        found[f"orch transport {scheme}"] = get(orch_client, url)
        found[f"httpx transport {scheme}"] = get(httpx_client, url)
    scratch = await stack.enter_async_context(scratch_database(dsn))
    tls = certificates.tls_settings()
    settings = Settings(
        database_url=scratch,
        tls_ca_file=tls.ca_file,
        tls_cert_file=tls.cert_file,
        tls_key_file=tls.key_file,
    )
    orch = await Orch.open(settings)
    stack.push_async_callback(orch.close)
    await register_caller(orch, SOURCE)
    for scheme, port in ports.items():
        await register_loopback_service(orch, f"venue-{scheme}", port, scheme=scheme)
    await orch.discovery.refresh_all()
    caller = await orch.caller()
    for scheme in ports:

        def through_the_call_path(target: str = f"venue-{scheme}") -> Call:
            async def call() -> int:
                return (await caller.call(SOURCE, target, "/ping", method="GET")).status_code

            return call

        found[f"caller.call {scheme}"] = through_the_call_path()
    return found


async def main(args: argparse.Namespace) -> None:
    print(
        f"https against http: {args.calls} GETs a round at concurrency "
        f"{', '.join(map(str, args.concurrency))}, {args.runs} runs, "
        f"Python {platform.python_version()}, httpx {httpx.__version__}"
    )
    with tempfile.TemporaryDirectory() as folder:
        certificates = Certificates(Path(folder))
        async with AsyncExitStack() as stack:
            ports = {
                "http": await stack.enter_async_context(service([])),
                "https": await stack.enter_async_context(service(certificates.service_flags())),
            }
            calls = await kinds(stack, certificates, ports, args.dsn)
            rounds = [(label, c) for label in calls for c in args.concurrency]
            for label, concurrency in rounds:  # warm-up: connections and handshakes made
                await measure(calls[label], max(200, concurrency * 20), concurrency)
            figures: dict[tuple[str, int], list[tuple[float, float]]] = {r: [] for r in rounds}
            for run in range(args.runs):
                shift = run * len(rounds) // max(1, args.runs)
                for label, concurrency in rounds[shift:] + rounds[:shift]:
                    figures[label, concurrency].append(
                        await measure(calls[label], args.calls, concurrency)
                    )
                print(f"run {run + 1} done", flush=True)
    print_table(figures, args)


def print_table(
    figures: dict[tuple[str, int], list[tuple[float, float]]], args: argparse.Namespace
) -> None:
    rates = {key: statistics.median(r for r, _ in runs) for key, runs in figures.items()}
    cpu = {key: statistics.median(c for _, c in runs) for key, runs in figures.items()}
    labels = list(dict.fromkeys(label for label, _ in figures))
    header = " | ".join(f"{c} in flight: req/s (runs) | CPU us/req" for c in args.concurrency)
    print(f"| median of {args.runs} runs | {header} |")
    for label in labels:
        cells = []
        for concurrency in args.concurrency:
            runs = ", ".join(f"{rate:,.0f}" for rate, _ in figures[label, concurrency])
            cells.append(f"{rates[label, concurrency]:,.0f} ({runs})")
            cells.append(f"{cpu[label, concurrency]:,.0f}")
        print(f"| {label} | {' | '.join(cells)} |")
    for concurrency in args.concurrency:

        def ratio(
            a: str, b: str, of: dict[tuple[str, int], float] = rates, at: int = concurrency
        ) -> str:
            return f"{of[a, at] / of[b, at]:.2f}"

        print(
            f"at {concurrency} in flight, req/s: "
            f"orch https / orch http {ratio('orch transport https', 'orch transport http')}, "
            f"orch https / httpx https {ratio('orch transport https', 'httpx transport https')}, "
            f"orch http / httpx http {ratio('orch transport http', 'httpx transport http')}, "
            f"caller.call https / http {ratio('caller.call https', 'caller.call http')}; "
            f"CPU a request, orch https / httpx https "
            f"{ratio('orch transport https', 'httpx transport https', cpu)}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; a scratch db is made")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3000, help="calls a round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
