"""Wake long-polling consumers when PGMQ inserts into their queue.

An insert into ``pgmq.q_<name>`` NOTIFYs the channel ``pgmq.q_<name>.INSERT`` at
commit, PGMQ's notify-on-insert, fired once per statement (orch_bus_enable_notify,
migrations 0007 and 0014) and throttled per producing session: each connection
notifies at most once per throttle interval (a throttle keeps a busy queue from
waking its listeners on every commit). orch uses a small throttle and makes up for it
here: each notification also schedules a second, trailing wake one interval later, for
the inserts the throttle kept quiet.

One dedicated LISTEN connection per process, opened on the first wait and listening
only to the queues someone waits on. NOTIFY has no replay, and a long transaction may
commit an insert whose notification the throttle swallowed, so waiters also re-read
after ``SAFETY_SECONDS`` at the latest (a safety net, not a polling loop), and when a
message's visibility timeout runs out (the caller asks when that is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from orchcore.db import Queries
from orchcore.db.pool import connect

log = logging.getLogger("orch.bus")
Q = Queries("orchcore.bus")

#: PGMQ's notify throttle for orch's queues (ms); see the module docstring.
NOTIFY_THROTTLE_MS = 10
#: A waiter re-reads at least this often, whatever it heard.
SAFETY_SECONDS = 1.0


def channel_of(queue_name: str) -> str:
    return f"pgmq.q_{queue_name}.INSERT"


class QueueSignal:
    """Wake-ups of one queue: take a ticket before reading, then wait on it."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self._event = asyncio.Event()
        self._trailing: asyncio.TimerHandle | None = None

    def ticket(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def heard(self) -> None:
        self.fire()
        if self._trailing is None:
            loop = asyncio.get_running_loop()
            self._trailing = loop.call_later(NOTIFY_THROTTLE_MS / 1000 + 0.003, self._trail)

    def _trail(self) -> None:
        self._trailing = None
        self.fire()

    def cancel(self) -> None:
        if self._trailing is not None:
            self._trailing.cancel()
            self._trailing = None

    @staticmethod
    async def wait(ticket: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket.wait(), timeout=max(timeout, 0.0))


class QueueWakeups:
    """The LISTEN connection of one process, shared by every waiting consumer in it."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        #: A waiter re-reads at least this often (tests raise it to prove the NOTIFY path).
        self.safety_seconds = SAFETY_SECONDS
        self._conn: asyncpg.Connection | None = None
        self._signals: dict[str, QueueSignal] = {}
        self._listening: set[str] = set()
        self._lock = asyncio.Lock()

    async def signal(self, queue_name: str) -> QueueSignal:
        """The queue's signal, with this process listening to it (connecting if need be)."""
        signal = self._signals.get(queue_name)
        if signal is None:
            signal = self._signals[queue_name] = QueueSignal(queue_name)
        if queue_name not in self._listening or self._conn is None or self._conn.is_closed():
            async with self._lock:
                try:
                    await self._listen(signal)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # Waiting still works, on the safety re-read alone, until it reconnects.
                    log.warning("bus LISTEN connection unavailable (%s)", exc)
        return signal

    async def _listen(self, signal: QueueSignal) -> None:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(
                self._dsn, server_settings={"application_name": "orch-bus-listen"}
            )
            self._conn.add_termination_listener(self._lost)
            self._listening.clear()
        name = signal.queue_name
        if name in self._listening:
            return
        await self._conn.add_listener(channel_of(name), self._dispatch)
        try:
            await self._conn.execute(Q.enable_queue_notify, name, NOTIFY_THROTTLE_MS)
        except asyncpg.PostgresError as exc:  # the safety re-read still covers this queue
            log.warning("could not restore PGMQ notifications for %r: %s", name, exc)
        self._listening.add(name)

    def is_listening(self, queue_name: str) -> bool:
        return queue_name in self._listening

    def _dispatch(self, _conn: Any, _pid: int, channel: str, _payload: object) -> None:
        name = channel.removeprefix("pgmq.q_").removesuffix(".INSERT")
        signal = self._signals.get(name)
        if signal is not None:
            signal.heard()

    def _lost(self, _conn: Any) -> None:
        """The connection died: everyone re-reads now, and the next wait reconnects."""
        self._listening.clear()
        for signal in self._signals.values():
            signal.fire()

    async def close(self) -> None:
        for signal in self._signals.values():
            signal.cancel()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
            if not conn.is_closed():
                conn.terminate()
        self._listening.clear()
