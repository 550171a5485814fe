"""The console's API source answers as the engine does: every read the panes make,
through the daemon's API under a token, equals the engine's own answer on the same
database (the same models, field for field)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic_core import to_jsonable_python

from orchcore import ManualClock, Orch
from orchcore.client.remote import ApiRefused, RemoteNotFound, RemoteOrch
from orchtui.source import ConsoleSource
from tests.console.helpers import mark, register_instances, register_service
from tests.console.seed_bus import BOOKINGS, a_queue, dead_letter, send
from tests.console.sources import api_source
from tests.console.test_service_map import seed_map
from tests.console.test_traces import seed_traces


async def test_every_read_of_the_panes_equals_the_engines(orch: Orch, clock: ManualClock) -> None:
    await seed_map(orch)  # the platform's services (venue among them), an hour of calls
    await register_instances(orch, "venue", 2)
    await mark(orch, "venue-1", "healthy")
    await a_queue(orch)
    await send(orch, 3)
    await dead_letter(orch, 1)
    await orch.bus.sample_depths(min_interval_seconds=0)
    await seed_traces(orch)
    async with api_source(orch) as remote:
        await _same_reads(orch, remote, clock)


async def _same_reads(orch: Orch, remote: ConsoleSource, clock: ManualClock) -> None:
    async def both(read: Any, normal: Any = lambda found: found) -> None:
        assert normal(await read(remote)) == normal(await read(orch))

    await both(lambda s: s.overview())
    await both(lambda s: s.registry.list_services())
    await both(lambda s: s.registry.get_service("venue"))
    await both(lambda s: s.registry.list_instances("venue"))
    await both(lambda s: s.registry.service_events("venue", limit=10))
    await both(lambda s: s.breakers.list_breakers())
    await both(lambda s: s.workflows.list_workflows(status=["failed", "completed"], limit=5))
    await both(lambda s: s.bus.list_queues(), _ageless)
    await both(lambda s: s.bus.all_metrics(), _ageless)
    await both(lambda s: s.bus.get_queue(BOOKINGS), _ageless)
    await both(lambda s: s.bus.queue_messages(BOOKINGS, limit=10), _ageless)
    await both(lambda s: s.bus.dead_letters(BOOKINGS, limit=10), _ageless)
    since = clock.now() - timedelta(minutes=15)
    await both(lambda s: s.bus.depth_history(BOOKINGS, since=since))
    await both(lambda s: s.mesh.overview())
    await both(lambda s: s.tracing.recent(limit=10))
    await both(lambda s: s.tracing.recent(limit=10, errors_only=True, min_duration_ms=1.0))
    await both(lambda s: s.service_map())
    listing = await orch.tracing.recent(limit=1)
    trace_id = listing.traces[0].trace_id
    await both(lambda s: s.tracing.trace(trace_id))
    for breaker in await orch.breakers.list_breakers():
        await both(lambda s, b=breaker: s.breakers.get(b.id))
        await both(lambda s, b=breaker: s.breakers.history(b.id, limit=10))
        await both(lambda s, b=breaker: s.breakers.metrics(b))


def _ageless(found: Any) -> Any:
    """Ages are of the moment of the read (the database's clock): two reads differ."""
    plain = to_jsonable_python(found)

    def drop(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop(v) for k, v in value.items() if not k.endswith("age_seconds")}
        if isinstance(value, list):
            return [drop(v) for v in value]
        return value

    return drop(plain)


async def test_refusals_come_back_as_the_engines_errors(orch: Orch) -> None:
    async with api_source(orch, role="monitoring_system") as remote:
        with pytest.raises(RemoteNotFound, match="not found"):
            await remote.registry.get_service("ghost")
        await register_service(orch, "venue")
        with pytest.raises(ApiRefused) as refused:
            await remote.registry.deactivate_service("venue", actor="x", reason="forged")
        assert refused.value.http_status == 403
        assert (await orch.registry.get_service("venue")).is_active


async def test_the_console_clock_is_the_daemons(orch: Orch, clock: ManualClock) -> None:
    """Ages on an API console are measured against the engine's time, not the laptop's."""
    await clock.advance(3 * 24 * 3600)
    async with api_source(orch) as remote:
        assert isinstance(remote, RemoteOrch)
        await remote.overview()
        assert abs(remote.clock.now() - clock.now()) < timedelta(seconds=5)


async def test_identical_reads_in_flight_together_are_one_request(orch: Orch) -> None:
    """The Queues pane asks for the queues and their figures at once: one GET serves both."""
    await a_queue(orch)
    async with api_source(orch) as remote:
        assert isinstance(remote, RemoteOrch)
        sent: list[str] = []

        async def count(request: httpx.Request) -> None:
            sent.append(request.url.path)

        remote._http.event_hooks["request"].append(count)
        queues, metrics = await asyncio.gather(remote.bus.list_queues(), remote.bus.all_metrics())
        assert [q.queue_name for q in queues] == [BOOKINGS] and BOOKINGS in metrics
        assert sent == ["/api/orchestration/messages/queues"]
        await remote.bus.list_queues()  # not in flight any more: asked again
        assert len(sent) == 2
