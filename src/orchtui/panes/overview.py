"""Overview: the whole system on one screen.

Fetch: :meth:`orchcore.Orch.overview`, plus the services, breakers and workflows that
need attention, and the bus's figures (every queue's in one round trip; the depth
history only of queues holding dead letters, to tell whether they grow). Render:
one line per section. A later concern (workflows, breakers, queues) adds its figures
to the snapshot and a function to :data:`SECTIONS` that turns them into its line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from orchcore.overview import SystemOverview
from orchcore.registry.models import GONE_STATUSES, LIVE_STATUSES
from orchtui.formatting import age, plural
from orchtui.pane import Pane
from orchtui.panes.breaker_view import TROUBLED, counts_text
from orchtui.panes.depth_chart import WINDOW
from orchtui.panes.queue_view import BUS_TOPICS, QueueFigures, oldest, visible_queues
from orchtui.panes.workflow_view import NEEDS_INTERVENTION, STATUSES, status_word
from orchtui.source import ConsoleSource
from orchtui.symbols import (
    health_percent_state,
    state_style,
    state_symbol,
    state_text,
    state_word,
)

HEALTH_BAR_WIDTH = 20


#: How many services, breakers and workflows the attention line names before "and N more".
ATTENTION_LIMIT = 6
#: Where the workflow counts wrap (the value column of an 80-column screen).
VALUE_WIDTH = 64


@dataclass(frozen=True)
class TroubledService:
    name: str
    status: str  # degraded or unhealthy
    healthy: int
    live: int


@dataclass(frozen=True)
class TroubledBreaker:
    label: str  # booking → venue *
    state: str  # open, forced_open or half_open
    since: datetime


@dataclass(frozen=True)
class StuckWorkflow:
    label: str  # full-service-booking bk-1045
    step: str | None  # whose compensation failed


@dataclass(frozen=True)
class QueueTotals:
    """The bus at a glance: what waits in every queue, and what gave up."""

    queues: int  # not counting topics
    depth: int  # ready, in flight and delayed
    oldest_seconds: float | None
    dead_letters: int


@dataclass(frozen=True)
class GrowingDeadLetters:
    queue: str
    dead_letters: int
    #: how many more than at the start of the depth history's window
    growth: int


@dataclass(frozen=True)
class OverviewSnapshot:
    system: SystemOverview
    #: services not healthy, worst first
    attention: list[TroubledService]
    taken_at: datetime
    #: breakers refusing calls or trying them again, open ones first
    breakers: list[TroubledBreaker] = field(default_factory=list)
    #: workflows needing intervention, newest first (the first few)
    stuck: list[StuckWorkflow] = field(default_factory=list)
    queues: QueueTotals | None = None
    #: dead-letter queues that grew over the last 15 minutes, fastest first
    growing: list[GrowingDeadLetters] = field(default_factory=list)


async def fetch_overview(orch: ConsoleSource) -> OverviewSnapshot:
    system, services, breakers, stuck, (totals, growing) = await asyncio.gather(
        orch.overview(),
        orch.registry.list_services(),
        orch.breakers.list_breakers(),
        orch.workflows.list_workflows(status=[NEEDS_INTERVENTION], limit=ATTENTION_LIMIT),
        fetch_queue_totals(orch),
    )
    severity = {"unhealthy": 0, "degraded": 1}
    troubled = sorted(
        (s for s in services if s.health_status != "healthy"),
        key=lambda s: (severity[s.health_status], s.service_name),
    )
    attention = [
        TroubledService(s.service_name, s.health_status, s.healthy_instances, s.live_instances)
        for s in troubled
    ]
    troubled_breakers = [
        TroubledBreaker(
            label=f"{b.service_name} → {b.target_service} {b.endpoint_pattern}",
            state=b.current_state,
            since=b.state_changed_at,
        )
        for b in sorted(
            (b for b in breakers if b.current_state in TROUBLED),
            key=lambda b: TROUBLED.index(b.current_state),
        )
    ]
    return OverviewSnapshot(
        system=system,
        attention=attention,
        taken_at=orch.clock.now(),
        breakers=troubled_breakers,
        stuck=[
            StuckWorkflow(f"{w.workflow_name} {w.correlation_id}", w.failed_step)
            for w in stuck.workflows
        ],
        queues=totals,
        growing=growing,
    )


async def fetch_queue_totals(orch: ConsoleSource) -> tuple[QueueTotals, list[GrowingDeadLetters]]:
    """The bus's totals, and which dead-letter queues grew in the depth history's window
    (a queue whose dead letters have sat still is known, not news)."""
    now = orch.clock.now()
    queues, metrics = await asyncio.gather(orch.bus.list_queues(), orch.bus.all_metrics())
    figures = [QueueFigures(q, metrics.get(q.queue_name)) for q in queues]
    # Topics hold nothing of their own: what is sent to them waits in their bound queues.
    shown = [q for q in visible_queues(figures) if not q.is_topic]
    ages = [q.oldest_seconds for q in shown if q.oldest_seconds is not None]
    totals = QueueTotals(
        queues=len(shown),
        depth=sum(q.depth for q in shown),
        oldest_seconds=max(ages) if ages else None,
        dead_letters=sum(q.dead_letters for q in shown),
    )
    holding = [q for q in shown if q.dead_letters]
    histories = await asyncio.gather(
        *(orch.bus.depth_history(q.name, since=now - WINDOW) for q in holding)
    )
    growing = []
    for queue, history in zip(holding, histories, strict=True):
        if history:
            first = min(history, key=lambda sample: sample.sampled_at)
            growth = queue.dead_letters - first.dead_letters
            if growth > 0:
                growing.append(GrowingDeadLetters(queue.name, queue.dead_letters, growth))
    growing.sort(key=lambda g: (-g.growth, g.queue))
    return totals, growing


# -- sections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverviewLine:
    label: str
    value: RenderableType


def health_line(snapshot: OverviewSnapshot) -> OverviewLine:
    system = snapshot.system
    percent = system.health_percent
    state = health_percent_state(percent)
    filled = round(HEALTH_BAR_WIDTH * percent / 100)
    text = Text()
    text.append("█" * filled, style=state_style(state))
    text.append("░" * (HEALTH_BAR_WIDTH - filled), style="bright_black")
    text.append(f" {percent:.0f}% ", style="bold")
    healthy = system.instances_by_state.get("healthy", 0)
    if system.instances_live:
        text.append_text(
            state_text(state, f"{healthy} of {system.instances_live} live instances healthy")
        )
    else:
        text.append("no live instances", style="bright_black")
    return OverviewLine("Health", text)


def services_line(snapshot: OverviewSnapshot) -> OverviewLine:
    system = snapshot.system
    text = Text(f"{system.services_total} total  ", style="bold")
    for state, count in (
        ("healthy", system.services_healthy),
        ("degraded", system.services_degraded),
        ("unhealthy", system.services_unhealthy),
    ):
        text.append_text(_count(state, count))
    if system.services_idle:
        # No live instance: empty rather than unhealthy (the Services pane's ○ no
        # instances), and named only when there are any.
        style = state_style("no_instances")
        text.append(f"{state_symbol('no_instances')} {system.services_idle} idle", style)
    return OverviewLine("Services", text)


def instances_line(snapshot: OverviewSnapshot) -> OverviewLine:
    system = snapshot.system
    by_state = system.instances_by_state
    text = Text(f"{system.instances_live} live  ", style="bold")
    for state in ("healthy", *[s for s in LIVE_STATUSES if s != "healthy"]):
        text.append_text(_count(state, by_state.get(state, 0)))
    gone = {s: by_state[s] for s in GONE_STATUSES if by_state.get(s)}
    if gone:
        text.append("\n")
        for state, count in gone.items():
            text.append_text(_count(state, count))
    return OverviewLine("Instances", text)


def breakers_line(snapshot: OverviewSnapshot) -> OverviewLine:
    by_state = snapshot.system.breakers_by_state
    if not sum(by_state.values()):
        return OverviewLine(
            "Breakers", Text("none yet (made on a service's first call)", style="bright_black")
        )
    # No total, unlike the lines above: the counts by state fill the width already.
    return OverviewLine("Breakers", counts_text(by_state))


def workflows_line(snapshot: OverviewSnapshot) -> OverviewLine:
    """``12 total  ⚠ 1 needs intervention  ▲ 1 open alert  ▶ 3 running …``.

    What needs a person comes first (zeros too: "none" is news); then every status that
    has workflows, wrapped between counts, never inside one.
    """
    system = snapshot.system
    by_status = system.workflows_by_status
    total = sum(by_status.values())
    if not total:
        return OverviewLine("Workflows", Text("none yet", style="bright_black"))
    stuck, alerts = system.workflows_needing_intervention, system.open_alerts
    items = [
        Text(f"{total} total", style="bold"),
        Text(
            f"{state_symbol(NEEDS_INTERVENTION)} {stuck} needs intervention",
            style=state_style(NEEDS_INTERVENTION) if stuck else "bright_black",
        ),
        Text(
            f"{state_symbol('degraded')} {alerts} open alert{'' if alerts == 1 else 's'}",
            style=state_style("degraded") if alerts else "bright_black",
        ),
    ]
    for status in STATUSES:
        count = by_status.get(status, 0)
        if count and status != NEEDS_INTERVENTION:
            word = status_word(status)
            items.append(Text(f"{state_symbol(status)} {count} {word}", state_style(status)))
    lines: list[Text] = [Text()]
    for item in items:
        line = lines[-1]
        if line.cell_len and line.cell_len + 2 + item.cell_len > VALUE_WIDTH:
            lines.append(Text())
            line = lines[-1]
        if line.cell_len:
            line.append("  ")
        line.append_text(item)
    return OverviewLine("Workflows", Text("\n").join(lines))


def queues_line(snapshot: OverviewSnapshot) -> OverviewLine:
    """``4 total  depth 47  oldest 4m  ✖ 7 dead letters``: what waits, and what gave up."""
    totals = snapshot.queues
    if totals is None or not totals.queues:
        return OverviewLine("Queues", Text("none yet", style="bright_black"))
    text = Text(f"{totals.queues} total  ", style="bold")
    text.append(f"depth {totals.depth}  oldest {oldest(totals.oldest_seconds)}  ")
    dead = plural(totals.dead_letters, "dead letter")
    if totals.dead_letters:
        text.append(f"{state_symbol('failing')} {dead}", style=state_style("failing"))
    else:
        text.append(dead, style="bright_black")
    return OverviewLine("Queues", text)


def attention_line(snapshot: OverviewSnapshot) -> OverviewLine:
    stuck, growing = snapshot.stuck, snapshot.growing
    if not snapshot.system.services_total and not snapshot.breakers and not stuck and not growing:
        return OverviewLine("Attention", Text("no services registered", style="bright_black"))
    if not snapshot.attention and not snapshot.breakers and not stuck and not growing:
        return OverviewLine("Attention", state_text("healthy", "every service is healthy"))
    lines: list[Text] = []
    # A workflow needing intervention waits for a person, so it is named first.
    for workflow in stuck:
        line = state_text(NEEDS_INTERVENTION, workflow.label)
        what = f"undo of {workflow.step} failed" if workflow.step else "compensation failed"
        line.append(f"  {what}", style="bright_black")
        lines.append(line)
    for service in snapshot.attention:
        if service.live:
            line = state_text(service.status, service.name)
            line.append(f"  {service.healthy}/{service.live} healthy", style="bright_black")
        else:
            line = state_text("no_instances", service.name)
            line.append("  no live instances", style="bright_black")
        lines.append(line)
    for breaker in snapshot.breakers:
        line = state_text(breaker.state, breaker.label)
        line.append(
            f"  {state_word(breaker.state)} for {age(breaker.since, snapshot.taken_at)}",
            style="bright_black",
        )
        lines.append(line)
    for queue in growing:
        line = state_text("failing", queue.queue)
        line.append(
            f"  {plural(queue.dead_letters, 'dead letter')}, +{queue.growth} in "
            f"{int(WINDOW.total_seconds() // 60)}m",
            style="bright_black",
        )
        lines.append(line)
    text = Text("\n").join(lines[:ATTENTION_LIMIT])
    # Lines past the limit, by kind; more workflows than fetched are counted by the engine.
    shown_stuck = min(len(stuck), ATTENTION_LIMIT)
    hidden_stuck = snapshot.system.workflows_needing_intervention - shown_stuck
    room = ATTENTION_LIMIT - shown_stuck
    hidden_services = max(0, len(snapshot.attention) - room)
    room = max(0, room - len(snapshot.attention))
    hidden_breakers = max(0, len(snapshot.breakers) - room)
    room = max(0, room - len(snapshot.breakers))
    hidden_queues = max(0, len(growing) - room)
    more = [
        f"{count} more {kind} (:{pane})"
        for count, kind, pane in (
            (hidden_stuck, "workflows" if hidden_stuck > 1 else "workflow", "workflows"),
            (hidden_services, "services" if hidden_services > 1 else "service", "services"),
            (hidden_breakers, "breakers" if hidden_breakers > 1 else "breaker", "breakers"),
            (
                hidden_queues,
                "dead-letter queues" if hidden_queues > 1 else "dead-letter queue",
                "queues",
            ),
        )
        if count > 0
    ]
    if more:
        text.append("\nand " + ", ".join(more), style="bright_black")
    return OverviewLine("Attention", text)


def daemons_line(snapshot: OverviewSnapshot) -> OverviewLine:
    system = snapshot.system
    alive = [d for d in system.daemons if d.alive]
    if not alive:
        return OverviewLine("Daemons", state_text("unhealthy", "none alive"))
    text = state_text("healthy", f"{len(alive)} alive")
    names = ", ".join(d.daemon_name for d in alive[:3])
    more = f" and {len(alive) - 3} more" if len(alive) > 3 else ""
    text.append(f"  {names}{more}", style="bright_black")
    return OverviewLine("Daemons", text)


def _count(state: str, count: int) -> Text:
    style = state_style(state) if count else "bright_black"
    return Text(f"{state_symbol(state)} {count} {state_word(state)}  ", style=style)


#: The Overview's lines, top to bottom. Later concerns append theirs.
SECTIONS: list[Callable[[OverviewSnapshot], OverviewLine]] = [
    health_line,
    services_line,
    instances_line,
    breakers_line,
    workflows_line,
    queues_line,
    daemons_line,
    attention_line,
]


def render_overview(snapshot: OverviewSnapshot) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for index, section in enumerate(SECTIONS):
        line = section(snapshot)
        if section is attention_line and index:
            # The figures read as one block, set apart from what to act on; a blank line
            # between every section would push the attention list off a 24-row screen.
            table.add_row("", "")
        table.add_row(line.label, line.value)
    return Group(table)


class OverviewPane(Pane[OverviewSnapshot]):
    NAME = "overview"
    ALIASES = ("ov", "status")
    TITLE = "Overview"
    SUMMARY = "health of services, instances, breakers, workflows at a glance"
    TOPICS = frozenset({"service", "instance", "breaker", "workflow", "alert"}) | BUS_TOPICS
    ACTIONS = ()

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="overview-scroll"):
            yield Static("loading…", id="overview-body")

    def focus_primary(self) -> None:
        # The scroll area takes the keys, so a long overview scrolls with the arrows.
        self.query_one("#overview-scroll", VerticalScroll).focus()

    async def fetch(self, orch: ConsoleSource) -> OverviewSnapshot:
        return await fetch_overview(orch)

    def show(self, snapshot: OverviewSnapshot) -> None:
        self.query_one("#overview-body", Static).update(render_overview(snapshot))


__all__ = [
    "SECTIONS",
    "GrowingDeadLetters",
    "OverviewLine",
    "OverviewPane",
    "OverviewSnapshot",
    "QueueTotals",
    "StuckWorkflow",
    "TroubledBreaker",
    "fetch_overview",
]
