"""Overview: the numbers of the whole system, as the engine counts them."""

from __future__ import annotations

from orchcore import Orch
from orchtui.app import OrchConsole
from tests.console.helpers import (
    SIZE,
    mark,
    on_screen,
    pane_loaded,
    register_instances,
    register_service,
)


async def test_overview_counts_services_instances_and_daemons(orch: Orch) -> None:
    await register_service(orch, "booking")  # 2 of 2 healthy: healthy
    await register_instances(orch, "booking", 2, port=9100)
    await register_service(orch, "venue")  # 1 of 3 healthy: degraded
    await register_instances(orch, "venue", 3, port=9200)
    await register_service(orch, "payments")  # none healthy: unhealthy
    await register_instances(orch, "payments", 1, port=9300)
    for instance_id in ("booking-1", "booking-2", "venue-1"):
        await mark(orch, instance_id, "healthy")
    await mark(orch, "venue-2", "unhealthy")
    await mark(orch, "venue-3", "unhealthy")
    await mark(orch, "venue-3", "critical")
    await orch.registry.deregister_instance("payments", "payments-1", actor="test")
    daemon = await orch.daemons.join(name="orch-a", listen=None, version="0.1.0")

    app = OrchConsole(orch)
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "overview")
        await on_screen(
            app,
            # 3 of 5 live instances healthy (payments-1 left): 60 %.
            "60% ▲ 3 of 5 live instances healthy",
            "3 total  ● 1 healthy  ▲ 1 degraded  ✖ 1 unhealthy",
            "5 live  ● 3 healthy  ◌ 0 starting  ✖ 1 unhealthy  ✖ 1 critical",
            "⊘ 1 terminating",
            "● 1 alive  orch-a",
            # worst first, each with how much of it is healthy
            "Attention  ✖ payments  0/0 healthy",
            "           ▲ venue  1/3 healthy",
        )

        await mark(orch, "venue-2", "healthy")  # live: the numbers follow
        await on_screen(app, "80% ▲ 4 of 5 live instances healthy", "▲ venue  2/3 healthy")
        await orch.daemons.leave(daemon)


async def test_overview_of_an_empty_system(orch: Orch) -> None:
    app = OrchConsole(orch)
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "overview")
        await on_screen(
            app, "100% no live instances", "0 total", "✖ none alive", "no services registered"
        )
