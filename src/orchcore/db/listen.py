"""One dedicated LISTEN connection per process, reconnecting by itself.

Notifications are JSON payloads on the ``orch`` channel, each naming a ``topic``.
NOTIFY has no replay: whatever happened while the connection was down is lost, so
subscribers are told when the connection comes back and refresh in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from orchcore.db.pool import connect
from orchcore.db.queries import Queries

log = logging.getLogger("orch.listen")
Q = Queries("orchcore.db")

CHANNEL = "orch"
Handler = Callable[[dict[str, Any]], None]
ReconnectHandler = Callable[[], Awaitable[None] | None]


class NotificationListener:
    def __init__(self, dsn: str, *, retry_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self._retry = retry_seconds
        self._handlers: list[Handler] = []
        self._reconnect_handlers: list[ReconnectHandler] = []
        self._state_handlers: list[Callable[[bool], None]] = []
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.connected = False
        self.last_error: str | None = None

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def unsubscribe(self, handler: Handler) -> None:
        """Stop calling ``handler`` (a console closing, say); unknown handlers are ignored."""
        if handler in self._handlers:
            self._handlers.remove(handler)

    def on_reconnect(self, handler: ReconnectHandler) -> None:
        self._reconnect_handlers.append(handler)

    def on_connection_state(self, handler: Callable[[bool], None]) -> None:
        self._state_handlers.append(handler)

    def remove_connection_state_handler(self, handler: Callable[[bool], None]) -> None:
        if handler in self._state_handlers:
            self._state_handlers.remove(handler)

    async def start(self) -> None:
        """Connect once (raising if the database is unreachable), then keep connected."""
        await self._connect()
        self._task = asyncio.create_task(self._supervise(), name="orch-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_connection()

    async def _connect(self) -> None:
        conn = await connect(self._dsn, server_settings={"application_name": "orch-listen"})
        conn.add_termination_listener(lambda _conn: self._lost.set())
        await conn.add_listener(CHANNEL, self._dispatch)
        self._conn = conn
        self._lost.clear()
        self._set_connected(True)

    async def _supervise(self) -> None:
        """Keep the connection up for ever: nothing but cancellation ends this task.

        An error of our own making (a handler that raises, say) must not end it either:
        a listener that silently stopped would leave every cache stale for good."""
        while True:
            try:
                await self._wait_until_lost()
                log.warning(
                    "notification connection lost (%s); reconnecting",
                    self.last_error or "closed by the server",
                )
                self._set_connected(False)
                await self._close_connection()
                await self._reconnect()
                log.info("notification connection restored")
                await self._tell_reconnected()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification listener failed; starting over")
                await asyncio.sleep(self._retry)

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(self._retry)
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                continue
            return

    async def _tell_reconnected(self) -> None:
        for handler in self._reconnect_handlers:
            try:
                result = handler()
                if result is not None:
                    await result
            except Exception:
                log.exception("reconnect handler failed")

    async def _wait_until_lost(self) -> None:
        """Wait for the termination callback, probing now and then for silent deaths."""
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), timeout=5.0)
                return
            except TimeoutError:
                pass
            if self._conn is None or self._conn.is_closed():
                return
            try:
                await asyncio.wait_for(self._conn.execute(Q.probe_connection), timeout=5.0)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                return

    async def _close_connection(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
            if not conn.is_closed():
                conn.terminate()

    def _set_connected(self, value: bool) -> None:
        if value != self.connected:
            self.connected = value
            for handler in self._state_handlers:
                try:
                    handler(value)
                except Exception:
                    log.exception("connection state handler failed")

    def _dispatch(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            message = json.loads(str(payload))
        except ValueError:
            log.warning("ignoring malformed notification %r", str(payload)[:200])
            return
        for handler in self._handlers:
            try:
                handler(message)
            except Exception:
                log.exception("notification handler failed")
