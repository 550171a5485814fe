"""How long sagas take to go on after a PostgreSQL restart.

A private PostgreSQL (orch's embedded server, in a temporary folder) serves one saga
runner in this process and a loopback participant that takes ``--call-ms`` to answer.
``--sagas`` four-step sagas start; once a third of their first calls are made the
server is stopped (``pg_ctl -m fast``: every connection is cut), kept down for
``--outage`` seconds and started again. Printed per run: how long after the server
came back every saga had completed, how many were claimed again after a lease
expired (0: the drives that held them carried on), and effects applied twice (0).

    .venv/bin/python bench/saga_outage.py [--runs 3] [--sagas 60] [--outage 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from scratch_database import register_caller, register_loopback_service

from orchcore import Orch, Settings
from orchcore.db.embedded import EmbeddedPostgres
from orchcore.db.migrate import SchemaMode
from orchcore.saga.runner import SagaRunner

SERVICE = "participant"
INITIATOR = "bench"
LEASE_SECONDS = 30.0
DEFINITION = {
    "name": "outage-saga",
    "steps": [
        {
            "name": f"step{n}",
            "type": "service_call",
            "order": n,
            "service_name": SERVICE,
            "endpoint": f"/step/{n}",
            "input_mapping": {"n": "n"},
            "timeout_seconds": 10,
        }
        for n in range(1, 5)
    ],
}


class Participant:
    """Answers every POST after a delay, applying each idempotency key's effect once."""

    def __init__(self, delay: float, stop_after: int) -> None:
        self.delay = delay
        self.calls = 0
        self.stop_after = stop_after
        self.enough_calls = asyncio.Event()
        self.effects: Counter[str] = Counter()
        self._seen: set[str] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                headers = dict(
                    line.split(": ", 1)
                    for line in head.decode("latin-1").split("\r\n")[1:]
                    if ": " in line
                )
                lowered = {k.lower(): v for k, v in headers.items()}
                await reader.readexactly(int(lowered.get("content-length", "0")))
                self.calls += 1
                if self.calls >= self.stop_after:
                    self.enough_calls.set()
                key = lowered.get("idempotency-key", "")
                if key not in self._seen:
                    self._seen.add(key)
                    self.effects[key] += 1
                await asyncio.sleep(self.delay)
                body = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def private_server() -> tuple[Path, EmbeddedPostgres]:
    folder = Path(tempfile.mkdtemp(prefix="orch-bench-outage-"))
    folder.chmod(0o755)  # as root, the server runs as an unprivileged user
    return folder, EmbeddedPostgres(folder, durable=False)


async def one_run(sagas: int, outage: float, call_ms: float) -> dict[str, float]:
    folder, server = await asyncio.to_thread(private_server)
    participant = Participant(call_ms / 1000, stop_after=sagas // 3)
    listener = await asyncio.start_server(participant.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        await asyncio.to_thread(server.acquire)
        orch = await Orch.open(Settings(database_url=server.dsn()), schema=SchemaMode.MIGRATE)
        await register_caller(orch, INITIATOR)
        await register_loopback_service(orch, SERVICE, port)
        await orch.discovery.refresh_all()
        await orch.workflow_definitions.register(DEFINITION, actor="bench")
        runner = SagaRunner(orch, owner="bench", actor="daemon:bench", lease_seconds=LEASE_SECONDS)
        orch.workflows.attach_runner(runner)
        loop = asyncio.create_task(runner.run_forever())
        for i in range(sagas):
            await orch.workflows.start(
                {
                    "workflow_name": DEFINITION["name"],
                    "initiating_service": INITIATOR,
                    "context_data": {"n": i},
                },
                actor="bench",
            )
        await participant.enough_calls.wait()
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(outage)
        await asyncio.to_thread(server.start)
        back = time.monotonic()
        while True:
            try:
                counts = await orch.workflows.status_counts()
                if counts["completed"] == sagas:
                    break
            except Exception:  # still reconnecting
                pass
            if time.monotonic() - back > 120:
                raise SystemExit(f"not every saga completed within 120 s: {counts}")
            await asyncio.sleep(0.05)
        resumed = time.monotonic() - back
        claimed = await orch.db.fetchval(
            "SELECT count(*) FROM workflow_events WHERE event = 'claimed'"
        )
        await runner.stop()
        await loop
        await orch.close()
    finally:
        listener.close()
        server.release()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    twice = sum(1 for n in participant.effects.values() if n > 1)
    return {"resumed_s": resumed, "reclaimed": float(claimed), "effects_twice": float(twice)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sagas", type=int, default=60)
    parser.add_argument("--outage", type=float, default=3.0, help="seconds the server is down")
    parser.add_argument("--call-ms", type=float, default=300.0)
    args = parser.parse_args()
    results = []
    for run in range(1, args.runs + 1):
        result = await one_run(args.sagas, args.outage, args.call_ms)
        results.append(result)
        print(
            f"run {run}: every saga completed {result['resumed_s']:.2f} s after the server "
            f"came back; re-claimed after a lease expired: {result['reclaimed']:.0f}; "
            f"effects applied twice: {result['effects_twice']:.0f}"
        )
    median = statistics.median(r["resumed_s"] for r in results)
    print(f"median over {args.runs} runs: {median:.2f} s (lease {LEASE_SECONDS:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
