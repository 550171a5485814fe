"""Supervised background tasks: a crash is logged and the task restarted with backoff.

A side task that dies silently leaves its owner half-alive (a daemon that drives
workflows without renewing their leases, say). Every long-running side task of the
engine and the daemon runs under a :class:`TaskSupervisor` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

#: A task that ran this long before crashing starts its backoff afresh.
_HEALTHY_RUN_SECONDS = 60.0


class TaskSupervisor:
    def __init__(self, *, max_backoff: float = 30.0, logger: str = "orch.daemon") -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._max_backoff = max_backoff
        self._log = logging.getLogger(logger)
        #: crashes by task name, for whoever watches (tests, status pages)
        self.crashes: Counter[str] = Counter()

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        self._tasks[name] = asyncio.create_task(self._keep_running(name, factory), name=name)

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    async def _keep_running(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        backoff = 0.5
        while True:
            started = time.monotonic()
            try:
                await factory()
                self._log.info("task %s finished", name, extra={"task": name})
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.crashes[name] += 1
                if time.monotonic() - started > _HEALTHY_RUN_SECONDS:
                    backoff = 0.5
                self._log.exception(
                    "task %s crashed; restarting in %.1fs",
                    name,
                    backoff,
                    extra={"task": name, "error": str(exc)},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def wait(self, name: str, *, timeout: float) -> None:
        """Let a task finish on its own (it was asked to), cancelling it after ``timeout``."""
        task = self._tasks.get(name)
        if task is None:
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        await self.stop(name)

    async def stop(self, name: str | None = None) -> None:
        names = [name] if name else list(self._tasks)
        for key in names:
            task = self._tasks.pop(key, None)
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
