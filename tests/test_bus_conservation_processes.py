"""Nothing lost with real consumer processes SIGKILLed at random: 10,000 messages.

Three consumer processes (tests/support/bus_worker.py) drain a queue; one after another
is SIGKILLed at a random point of its work (holding a batch, acking it, or just after)
and replaced, twelve times. In the end every message sent is acked, dead-lettered
(poison ones, after exactly dlq_max_retries deliveries) or expired, exactly one of them;
the only acks no one reported are ones a killed process had started; and a message came
back only after a consumer died holding it, gave it back or overran its visibility
timeout, never after an ack returned.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from dataclasses import dataclass, field

import pytest

from orchcore import Orch, Settings
from tests.support.bus_worker import POISON_EVERY
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

ACTOR = "test"
QUEUE = "work"
TOTAL = 10_000
EXPIRING = 50
VISIBILITY = 3
RETRIES = 2
WORKERS = 3
KILLS = 12


@dataclass(frozen=True)
class Line:
    at: float
    worker: int
    word: str
    ids: tuple[str, ...]


@dataclass
class Worker:
    number: int
    process: asyncio.subprocess.Process
    kill_after_gets: int | None
    killed: bool = False
    gets: int = 0
    lines: list[Line] = field(default_factory=list)
    stderr: bytes = b""


class Crew:
    """Keeps WORKERS consumer processes running, killing KILLS of them on the way."""

    def __init__(self, dsn: str, rng: random.Random) -> None:
        self.dsn = dsn
        self.rng = rng
        self.workers: list[Worker] = []
        self.kills_left = KILLS

    async def spawn(self) -> None:
        kill_after = None
        if self.kills_left > 0:
            self.kills_left -= 1
            kill_after = self.rng.randint(1, 8)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.bus_worker",
            self.dsn, QUEUE, "worker", str(VISIBILITY),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker = Worker(len(self.workers), process, kill_after)
        self.workers.append(worker)

    async def run(self, worker: Worker) -> None:
        """Read the worker's lines until it exits; kill it at its chosen moment, and
        start a replacement when it did not finish the queue."""
        assert worker.process.stdout is not None and worker.process.stderr is not None
        errors = asyncio.create_task(worker.process.stderr.read())
        async for raw in worker.process.stdout:
            word, at, *ids = raw.decode().split()
            worker.lines.append(Line(float(at), worker.number, word, tuple(ids)))
            if word == "got":
                worker.gets += 1
                if worker.gets == worker.kill_after_gets:
                    worker.process.send_signal(signal.SIGKILL)
                    worker.killed = True
        code = await worker.process.wait()
        worker.stderr = await errors
        if worker.killed:
            await self.spawn()
            await self.run(self.workers[-1])
        else:
            assert code == 0, worker.stderr.decode(errors="replace")[-3000:]

    def lines(self) -> list[Line]:
        return sorted((line for w in self.workers for line in w.lines), key=lambda x: x.at)

    def killed(self) -> set[int]:
        return {w.number for w in self.workers if w.killed}


async def send_everything(orch: Orch) -> dict[str, int]:
    """TOTAL messages, the first EXPIRING of them past their TTL before anyone reads;
    returns message id → payload ``i``."""
    index: dict[str, int] = {}
    short_lived = [
        {"message_type": "t", "message_payload": {"i": i}, "ttl_seconds": 1}
        for i in range(EXPIRING)
    ]
    sent = await orch.bus.send_batch(QUEUE, short_lived, producer=None, actor=ACTOR)
    index.update({s.message_id: i for i, s in enumerate(sent)})
    deadline = await orch.db.fetchval(
        f"SELECT max((headers->>'x-orch-expires-at')::timestamptz) FROM pgmq.q_{QUEUE}"
    )
    await eventually(lambda: orch.db.fetchval("SELECT now() > $1", deadline), timeout=5)
    for start in range(EXPIRING, TOTAL, 1000):
        numbers = range(start, min(start + 1000, TOTAL))
        batch = await orch.bus.send_batch(
            QUEUE,
            [
                {"message_type": "t", "message_payload": {"i": i}, "ttl_seconds": 3600}
                if i % 3 == 0
                else {"message_type": "t", "message_payload": {"i": i}}
                for i in numbers
            ],
            producer=None,
            actor=ACTOR,
        )
        index.update({s.message_id: i for i, s in zip(numbers, batch, strict=True)})
    assert len(index) == TOTAL
    return index


@dataclass
class Holding:
    worker: int
    since: float
    state: str  # held | acking | acked | nacking (given back)


def replay(lines: list[Line], killed: set[int]) -> tuple[set[str], set[str], list[str], int]:
    """Walk every worker's lines in time order; returns the ids whose ack returned, the
    ids a killed worker was acking, the redeliveries nothing explains, and how many
    redeliveries followed a death."""
    latest: dict[str, Holding] = {}
    acked: set[str] = set()
    unexplained: list[str] = []
    after_death = 0
    for line in lines:
        for message_id in line.ids:
            before = latest.get(message_id)
            if line.word == "got":
                if before is not None:
                    died = before.worker in killed and before.state in ("held", "acking")
                    overran = line.at - before.since >= VISIBILITY - 0.5
                    if before.state == "acked" or not (
                        died or overran or before.state == "nacking"
                    ):
                        unexplained.append(f"{message_id} after {before}")
                    after_death += died
                latest[message_id] = Holding(line.worker, line.at, "held")
            elif line.word in ("acking", "nacking") and before is not None:
                before.state = line.word
            elif line.word == "acked":
                assert message_id not in acked, f"{message_id} acked twice"
                acked.add(message_id)
                if before is not None:
                    before.state = "acked"
    acking_when_killed = {
        m for m, h in latest.items() if h.state == "acking" and h.worker in killed
    }
    return acked, acking_when_killed, unexplained, after_death


async def test_consumer_processes_killed_at_random_lose_nothing(dsn: str) -> None:
    orch = await Orch.open(Settings(database_url=dsn))
    try:
        await orch.bus.create_queue(
            {"queue_name": QUEUE, "consumer_services": ["worker"], "dlq_max_retries": RETRIES},
            actor=ACTOR,
        )
        index = await send_everything(orch)
        sent = set(index)
        crew = Crew(dsn, random.Random(20261202))
        for _ in range(WORKERS):
            await crew.spawn()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(crew.run(w) for w in list(crew.workers))), timeout=300
            )
        finally:
            for worker in crew.workers:
                if worker.process.returncode is None:
                    worker.process.kill()
                    await worker.process.wait()

        assert (await orch.bus.metrics(QUEUE)).total_messages == 0
        acked, acking_when_killed, unexplained, after_death = replay(crew.lines(), crew.killed())
        dead_letters = await orch.bus.dead_letters(QUEUE, limit=TOTAL)
        dead = {d.original_message_id for d in dead_letters}
        expired = {
            r["message_id"]
            for r in await orch.db.fetch(
                "SELECT message_id FROM message_logs WHERE status = 'expired'"
            )
        }
        unreported = sent - acked - dead - expired

        assert unexplained == []
        assert len(crew.killed()) == KILLS and after_death > 0
        assert not (acked & dead) and not (acked & expired) and not (dead & expired)
        assert unreported <= acking_when_killed  # acks committed by a process then killed
        assert acked | dead | expired | unreported == sent
        assert dead == {m for m, i in index.items() if i % POISON_EVERY == 0 and i >= EXPIRING}
        # each dead letter had its first delivery and RETRIES more
        assert {d.attempts for d in dead_letters} == {RETRIES + 1}
        assert expired == {m for m, i in index.items() if i < EXPIRING}
        print(
            f"\nkills={KILLS} redelivered_after_death={after_death} acked={len(acked)} "
            f"unreported_acks={len(unreported)} dead={len(dead)} expired={len(expired)}"
        )
    finally:
        await orch.close()
