"""Seed a database with the demo platform and open the console on it, as a user would.

    ORCH_DATABASE_URL=postgresql://... python -m tests.console.demo [--readonly] [--no-seed]

The database must be empty or already seeded (``--no-seed``). Seeded times end now,
so the ages on screen are real.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from orchcore import ManualClock, Orch, Settings
from orchtui.app import run_console
from tests.console.seed import SEED_START, STORY_START, seed_story


async def seed(settings: Settings) -> None:
    platform_start = datetime.now(UTC) - timedelta(seconds=125)
    clock = ManualClock(start=platform_start - (SEED_START - STORY_START))
    async with await Orch.open(settings, clock=clock, start_discovery=False) as orch:
        await seed_story(orch, clock)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readonly", action="store_true")
    parser.add_argument("--no-seed", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    if settings.database_url is None:
        parser.error("set ORCH_DATABASE_URL to a fresh database")
    if not args.no_seed:
        asyncio.run(seed(settings))
    return run_console(settings, readonly=args.readonly, dsn=None)


if __name__ == "__main__":
    raise SystemExit(main())
