"""PGMQ's hot statements on one queue's table, prepared once per connection.

PGMQ's functions build their statement with ``format()`` and run it with ``EXECUTE``,
so PostgreSQL parses and plans it again on every call. Measured on one connection
(docs/BENCHMARKS.md), that is 100 µs of the server's 260 µs of CPU a ``pgmq.send``, and
100 of the 295 a ``pgmq.read`` + ``pgmq.delete`` of a message. orch runs the same
statements (queries.sql, ``direct_*``) on the same tables, ``pgmq."q_<name>"``, as
statements asyncpg prepares once per connection, so the server plans them once.

What stays PGMQ's: the tables and their columns (msg_id, read_ct, enqueued_at,
last_read_at, vt, message, headers, the layout of PGMQ 1.x, which any PGMQ client
reads), the semantics (visibility timeout, read count, oldest first, SKIP LOCKED), and
every other operation (create, archive, set_vt, topics, metrics), called as functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from orchcore.bus.envelope import EXPIRES_AT
from orchcore.db import Queries

Q = Queries("orchcore.bus")


@dataclass(frozen=True, slots=True)
class QueueStatements:
    """The prepared statements' texts for one queue."""

    send: str
    send_batch: str
    read: str
    ack_one: str
    ack_many: str


def queue_table(queue_name: str) -> str:
    """PGMQ's table of a queue, as SQL (pgmq.format_table_name, quoted)."""
    table = "q_" + queue_name.lower()
    return 'pgmq."' + table.replace('"', '""') + '"'


@lru_cache(maxsize=4096)
def statements(queue_name: str) -> QueueStatements:
    table = queue_table(queue_name)

    def on_table(template: str) -> str:
        return template.replace("{queue_table}", table)

    return QueueStatements(
        send=on_table(Q.direct_send),
        send_batch=on_table(Q.direct_send_batch),
        read=on_table(Q.direct_read),
        ack_one=on_table(Q.direct_ack_one),
        ack_many=on_table(Q.direct_ack_many),
    )


def maybe_due_for_setting_aside(row: Any, max_deliveries: int | None) -> bool:
    """Whether a message just read may have to be set aside instead of delivered: read
    more times than allowed, or past its TTL at the read (the database's time). When
    only the database can tell (a stamp without a zone), the answer is yes:
    orch_bus_set_aside decides, under the row's lock, and hands back what it keeps."""
    if max_deliveries is not None and row["read_ct"] > max_deliveries:
        return True
    headers = row["headers"]
    if not isinstance(headers, dict) or EXPIRES_AT not in headers:
        return False
    stamp = headers[EXPIRES_AT]
    if not isinstance(stamp, str):
        return True
    try:
        expires = datetime.fromisoformat(stamp)
    except ValueError:
        return True
    if expires.tzinfo is None:
        return True
    read_at: datetime = row["last_read_at"]
    return expires <= read_at
