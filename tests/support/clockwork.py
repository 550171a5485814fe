"""Run a coroutine that sleeps on a ManualClock, advancing the clock as it asks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from orchcore import ManualClock

T = TypeVar("T")


async def run_driving_clock(clock: ManualClock, coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro``; each time it sleeps on the clock, advance by what it asked for."""
    handled = len(clock.slept)
    task = asyncio.ensure_future(coro)
    while not task.done():
        await asyncio.sleep(0.001)
        while len(clock.slept) > handled:
            await clock.advance(clock.slept[handled])
            handled += 1
    return task.result()
