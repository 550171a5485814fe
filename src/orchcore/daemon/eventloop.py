"""The event loop a daemon runs on: uvloop where it is installed, asyncio's otherwise.

A daemon's time goes to sockets: the HTTP API, calls to services, PostgreSQL. uvloop
(libuv, in C) does that socket and callback work in a fraction of the pure-Python
loop's time; on the saga benchmark it was the difference between the machine's two
cores running out at ~200 sagas/s or not (see docs/BENCHMARKS.md). asyncpg and
httpx/anyio run on it unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # e.g. a platform uvloop does not support
        return asyncio.run(main)
    return uvloop.run(main)
