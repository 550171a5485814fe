"""Overview: the numbers of the whole system, as the engine counts them."""

from __future__ import annotations

from orchcore import ManualClock, Orch
from orchcore.resilience.retry import RetryPolicy
from tests.console.helpers import (
    SIZE,
    mark,
    off_screen,
    on_screen,
    pane_loaded,
    register_instances,
    register_service,
)
from tests.console.sources import SourceOf, console_on
from tests.support.callers import known_callers
from tests.support.http import SwitchableServer
from tests.support.registry import healthy_service


async def test_overview_counts_services_instances_and_daemons(
    orch: Orch, as_source: SourceOf
) -> None:
    await register_service(orch, "booking")  # 2 of 2 healthy: healthy
    await register_instances(orch, "booking", 2, port=9100)
    await register_service(orch, "venue")  # 1 of 3 healthy: degraded
    await register_instances(orch, "venue", 3, port=9200)
    await register_service(orch, "payments")  # its one instance leaves below: no instances
    await register_instances(orch, "payments", 1, port=9300)
    for instance_id in ("booking-1", "booking-2", "venue-1"):
        await mark(orch, instance_id, "healthy")
    await mark(orch, "venue-2", "unhealthy")
    await mark(orch, "venue-3", "unhealthy")
    await mark(orch, "venue-3", "critical")
    await orch.registry.deregister_instance("payments", "payments-1", actor="test")
    daemon = await orch.daemons.join(name="orch-a", listen=None, version="0.1.0")

    app = console_on(await as_source(orch))
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "overview")
        await on_screen(
            app,
            # 3 of 5 live instances healthy (payments-1 left): 60 %.
            "60% ▲ 3 of 5 live instances healthy",
            "3 total  ● 1 healthy  ▲ 1 degraded  ✖ 0 unhealthy  ○ 1 idle",
            "5 live  ● 3 healthy  ◌ 0 starting  ✖ 1 unhealthy  ✖ 1 critical",
            "⊘ 1 terminating",
            "● 1 alive  orch-a",
            # worst first, each with how much of it is healthy
            "Attention  ○ payments  no live instances",
            "           ▲ venue  1/3 healthy",
        )

        await mark(orch, "venue-2", "healthy")  # live: the numbers follow
        await on_screen(app, "80% ▲ 4 of 5 live instances healthy", "▲ venue  2/3 healthy")
        await orch.daemons.leave(daemon)


async def test_overview_of_an_empty_system(orch: Orch, as_source: SourceOf) -> None:
    app = console_on(await as_source(orch))
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "overview")
        await on_screen(
            app,
            "100% no live instances",
            "0 total",
            "none yet (made on a service's first call)",
            "✖ none alive",
            "no services registered",
        )


async def test_overview_counts_breakers_and_names_the_open_ones(
    orch: Orch, http_server: SwitchableServer, clock: ManualClock, as_source: SourceOf
) -> None:
    await known_callers(orch, "booking")
    await healthy_service(orch, "venue", [http_server])
    await healthy_service(orch, "payments", [http_server])
    caller = await orch.caller()
    once = RetryPolicy.single_attempt()

    async def calls(target: str, times: int) -> None:
        for _ in range(times):
            await caller.call("booking", target, "/x", method="GET", retry=once, timeout=2)

    await calls("venue", 1)
    await calls("payments", 1)
    for target in ("catering", "photographer"):
        await orch.breakers.create({"service_name": "booking", "target_service": target}, actor="t")
    catering = await orch.breakers.find("booking", "catering")
    await orch.breakers.force_open(catering.id, actor="t", reason="drill")
    photographer = await orch.breakers.find("booking", "photographer")
    await orch.breakers.disable(photographer.id, actor="t", reason="maintenance")
    await http_server.set_mode("error")
    await calls("payments", 5)  # open
    await clock.advance(61)
    await http_server.set_mode("ok")
    await calls("payments", 1)  # the first trial succeeds: half-open, 1 of 3

    app = console_on(await as_source(orch))
    async with app.run_test(size=SIZE):
        await pane_loaded(app, "overview")
        await on_screen(
            app,
            "Breakers   ✖ 1 open (1 forced)  ◐ 1 half-open  ● 1 closed  ○ 1 disabled",
            "✖ booking → catering *  forced-open for 1m",
            "◐ booking → payments *  half-open for 0s",
        )
        await http_server.set_mode("error")
        await calls("venue", 5)  # live: the counts and the list follow without a key
        text = await on_screen(
            app,
            "✖ 2 open (1 forced)  ◐ 1 half-open  ● 0 closed",
            "✖ booking → venue *  open for 0s",
            # Named too: a frame drawn before the list's new height is laid out shows
            # only its first lines.
            "◐ booking → payments *  half-open",
            timeout=1.0,
        )
        # Open and forced-open breakers come before half-open ones.
        assert text.index("booking → venue") < text.index("booking → payments")
        assert "every service is healthy" not in text

        breaker = await orch.breakers.find("booking", "venue")
        await orch.breakers.reset(breaker.id, actor="t", reason="fixed")
        await off_screen(app, "booking → venue *")
