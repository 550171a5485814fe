"""How states read on screen: always a symbol and a word, colour only on top.

The design rule is that state is never colour alone, so every state below renders
the same under NO_COLOR or on a 16-colour terminal, just without the tint.
"""

from __future__ import annotations

from rich.text import Text

from orchcore.saga.status import StepStatus, WorkflowStatus

#: (symbol, style) per state word. Styles use the 16 ANSI names so they survive
#: limited terminals; the symbol carries the meaning when colour is absent.
_STATES: dict[str, tuple[str, str]] = {
    # services
    "healthy": ("●", "green"),
    "degraded": ("▲", "yellow"),
    "unhealthy": ("✖", "red"),
    # instances (healthy and unhealthy as above)
    "starting": ("◌", "cyan"),
    "critical": ("✖", "bold red"),
    "terminating": ("⊘", "magenta"),
    "deregistered": ("–", "bright_black"),
    # health check results
    "passing": ("✓", "green"),
    "warning": ("▲", "yellow"),
    "failing": ("✖", "red"),
    "no_instances": ("○", "bright_black"),
    "deactivated": ("◌", "bright_black"),
    # circuit breakers
    "closed": ("●", "green"),
    "open": ("✖", "red"),
    "half_open": ("◐", "yellow"),
    "forced_open": ("✖", "bold magenta"),
    "disabled": ("○", "bright_black"),
    # mesh policies (disabled as above)
    "enabled": ("●", "green"),
    # workflows, their steps and compensations (the CLI's set: orch workflow list),
    # keyed by the core's vocabulary so a status added there is missed here visibly
    # (tests/console/test_vocabulary.py)
    WorkflowStatus.PENDING: ("○", "bright_black"),
    WorkflowStatus.RUNNING: ("▶", "cyan"),
    WorkflowStatus.RETRYING: ("↻", "yellow"),
    StepStatus.WAITING: ("◔", "cyan"),
    WorkflowStatus.PAUSED: ("‖", "magenta"),
    WorkflowStatus.COMPENSATING: ("↶", "yellow"),
    WorkflowStatus.COMPENSATED: ("↺", "blue"),
    WorkflowStatus.COMPLETED: ("●", "green"),
    WorkflowStatus.FAILED: ("✖", "red"),
    WorkflowStatus.COMPENSATION_FAILED: ("⚠", "bold red"),
    WorkflowStatus.CANCELLED: ("◌", "bright_black"),
    StepStatus.SKIPPED: ("↷", "bright_black"),
    # may have taken effect: a warning, not a failure (compensation undoes it)
    StepStatus.UNCERTAIN: ("◇", "bold yellow"),
    # an operator's action waiting for the call in flight
    "queued": ("⧗", "magenta"),
    # connection
    "live": ("●", "green"),
    "offline": ("✖", "bold red"),
    "polling": ("◌", "yellow"),
}
_UNKNOWN = ("?", "")


def state_symbol(state: str) -> str:
    return _STATES.get(state, _UNKNOWN)[0]


def state_style(state: str) -> str:
    return _STATES.get(state, _UNKNOWN)[1]


def state_word(state: str) -> str:
    """The state as a word on screen: ``half_open`` reads ``half-open``."""
    return state.replace("_", "-")


def state_text(state: str, label: str | None = None) -> Text:
    """``● healthy``: the state's symbol, then the label (the state's own word by default)."""
    symbol, style = _STATES.get(state, _UNKNOWN)
    return Text(f"{symbol} {label if label is not None else state_word(state)}", style=style)


def check_text(result: str | None, output: str | None) -> Text:
    """A health check outcome: its symbol, then what the check said (or the result word)."""
    if result is None:
        return Text("never checked", style="bright_black")
    symbol, style = _STATES.get(result, _UNKNOWN)
    return Text(f"{symbol} {output or result}", style=style)


def health_percent_state(percent: float) -> str:
    """The state word for a system health percentage (all healthy, some, or worse)."""
    if percent >= 99.95:
        return "healthy"
    if percent >= 50:
        return "degraded"
    return "unhealthy"


def service_text(health: str, live: int, *, active: bool = True) -> Text:
    """A service's state: a service with nothing running is not "unhealthy" but empty."""
    if not active:
        return state_text("deactivated")
    if live == 0:
        return state_text("no_instances", "no instances")
    return state_text(health)
