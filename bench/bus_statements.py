"""PGMQ's functions against the same statements prepared, and the notify triggers.

Why orch's bus runs PGMQ's statements itself (orchcore.bus.direct): PGMQ's ``send``,
``read`` and ``delete`` build their one statement with ``format()`` and ``EXECUTE`` it,
so the server plans it on every call. On one connection to a fresh scratch database,
alternating in rounds, this measures each way's wall time and the server backend's CPU
(from ``/proc``, so run it on the database's machine) a message:

- send: ``pgmq.send(queue, msg)``; the INSERT it runs, prepared; the same with orch's
  insert trigger (migration 0014: once a statement, throttled per session); the same
  with the trigger orch had before (PGMQ's throttle row, updated by every notifying
  insert), rebuilt here for the comparison;
- read + delete: ``pgmq.read(queue, 30, 10)`` then ``pgmq.delete(queue, id)`` of each,
  against the prepared read and delete orch runs.

    .venv/bin/python bench/bus_statements.py [--dsn DSN] [--rounds 10] [--messages 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from bus_consumer import payload, pgmq_message
from scratch_database import DEFAULT_DSN, scratch_database

from orchcore.bus import direct

#: The trigger function orch used until migration 0014, for the comparison only.
ROW_THROTTLE_TRIGGER = """
CREATE FUNCTION bench_row_throttle_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pgmq.notify_insert_throttle
    SET last_notified_at = clock_timestamp()
    WHERE queue_name = substring(TG_TABLE_NAME from 3)
      AND (throttle_interval_ms = 0
           OR clock_timestamp() - last_notified_at
              >= throttle_interval_ms * interval '1 millisecond');
    IF FOUND THEN
        PERFORM pg_notify('pgmq.' || TG_TABLE_NAME || '.' || TG_OP, NULL);
    END IF;
    RETURN NULL;
END $$;
"""


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks


async def setup_queues(conn: asyncpg.Connection) -> None:
    for name in ("fn", "prepared", "session", "rowthrottle", "readfn", "readprep"):
        await conn.execute("SELECT pgmq.create($1)", name)
    await conn.execute("SELECT orch_bus_enable_notify('session', 10)")
    await conn.execute(ROW_THROTTLE_TRIGGER)
    await conn.execute(
        "INSERT INTO pgmq.notify_insert_throttle (queue_name, throttle_interval_ms) "
        "VALUES ('rowthrottle', 10)"
    )
    await conn.execute(
        "CREATE TRIGGER bench_notify AFTER INSERT ON pgmq.q_rowthrottle "
        "FOR EACH STATEMENT EXECUTE FUNCTION bench_row_throttle_notify()"
    )


def send_ways(conn: asyncpg.Connection, message: str) -> dict[str, Callable[[], Awaitable[object]]]:
    def prepared(queue: str) -> Callable[[], Awaitable[object]]:
        sql = direct.statements(queue).send
        return lambda: conn.fetchval(sql, message, None, None, 0)

    return {
        "pgmq.send": lambda: conn.fetchval("SELECT pgmq.send('fn', $1::text::jsonb)", message),
        "prepared INSERT": prepared("prepared"),
        "prepared INSERT + orch's trigger": prepared("session"),
        "prepared INSERT + row-throttle trigger": prepared("rowthrottle"),
    }


async def drain(conn: asyncpg.Connection, queue: str, *, prepared: bool) -> int:
    if prepared:
        st = direct.statements(queue)
        read = lambda: conn.fetch(st.read, 10, 30)  # noqa: E731
        delete = lambda msg_id: conn.fetchrow(st.ack_one, msg_id)  # noqa: E731
    else:
        read = lambda: conn.fetch("SELECT * FROM pgmq.read($1, 30, 10)", queue)  # noqa: E731
        delete = lambda msg_id: conn.fetchval(  # noqa: E731
            "SELECT pgmq.delete($1::text, $2::bigint)", queue, msg_id
        )
    taken = 0
    while rows := await read():
        for row in rows:
            await delete(row["msg_id"])
            taken += 1
    return taken


async def main(args: argparse.Namespace) -> None:
    async with scratch_database(args.dsn) as dsn:
        conn = await asyncpg.connect(dsn)
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await setup_queues(conn)
        message = json.dumps(pgmq_message(payload(1, 100)))
        sends = send_ways(conn, message)
        results: dict[str, list[tuple[float, float]]] = {}
        n = args.messages
        for _ in range(args.rounds):
            for label, send in sends.items():
                cpu, began = backend_cpu(pid), time.perf_counter()
                for _ in range(n):
                    await send()
                results.setdefault("send: " + label, []).append(
                    ((time.perf_counter() - began) / n * 1e6, (backend_cpu(pid) - cpu) / n * 1e6)
                )
            for queue, prepared in (("readfn", False), ("readprep", True)):
                await conn.execute(
                    "SELECT pgmq.send_batch($1, array_fill($2::jsonb, ARRAY[$3::int]))",
                    queue, message, n * 4,
                )  # fmt: skip
                cpu, began = backend_cpu(pid), time.perf_counter()
                taken = await drain(conn, queue, prepared=prepared)
                assert taken == n * 4, taken
                label = "read+delete: " + ("prepared" if prepared else "pgmq.read + pgmq.delete")
                results.setdefault(label, []).append(
                    (
                        (time.perf_counter() - began) / taken * 1e6,
                        (backend_cpu(pid) - cpu) / taken * 1e6,
                    )
                )
        await conn.close()
    print(
        f"medians of {args.rounds} rounds ({n} sends, {4 * n} read+deletes a round), µs a message"
    )
    print(f"{'':46} {'wall':>8} {'server CPU':>11}")
    for label, values in results.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{label:46} {wall:8.0f} {cpu:11.0f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN; a scratch db is made")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--messages", type=int, default=500, help="sends a way a round")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
