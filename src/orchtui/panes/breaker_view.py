"""How a circuit breaker reads on screen, and what an operator can do to it.

Shared by the Breakers pane, a breaker's detail pane and the Overview, so a breaker
is named and its state drawn the same way everywhere, and the three operator actions
ask the same question wherever they are pressed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text

from orchcore.resilience.breakers import Breaker
from orchtui.actions import ConsoleAction, Mutation
from orchtui.formatting import age, countdown
from orchtui.source import BreakersSource
from orchtui.symbols import state_style, state_symbol, state_text, state_word

#: Breaker states as the engine stores them, in the order the counts read.
STATES = ("open", "forced_open", "half_open", "closed", "disabled")
#: States that need an operator's eye: calls are being refused, or tried again.
TROUBLED = ("open", "forced_open", "half_open")

BREAKER_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "r",
        "reset",
        "Reset",
        "Close the breaker, clearing its counts",
        mutating=True,
    ),
    ConsoleAction(
        "o",
        "force_open",
        "Force open",
        "Refuse every call through the breaker until reset",
        mutating=True,
    ),
    ConsoleAction(
        "x",
        "disable",
        "Disable",
        "Let every call through, counting nothing, until reset",
        mutating=True,
    ),
)


def breaker_label(breaker: Breaker) -> str:
    """``booking → venue /reservations/*``: the breaker's identity, as the engine says it."""
    return f"{breaker.service_name} → {breaker.target_service} {breaker.endpoint_pattern}"


def next_attempt(breaker: Breaker, now: datetime) -> str:
    """When an open breaker lets a trial call through; only open breakers have one."""
    if breaker.current_state != "open":
        return "–"
    return countdown(breaker.next_attempt_at, now)


def state_summary(breaker: Breaker, now: datetime) -> Text:
    """``✖ open for 2m · next attempt in 58s · 4/5 failures`` (what the state means now)."""
    state = breaker.current_state
    text = state_text(state, f"{state_word(state)} for {age(breaker.state_changed_at, now)}")
    # Forced-open and disabled breakers count nothing, so they say what they do instead.
    if state == "forced_open":
        text.append(" · no calls until reset")
    elif state == "disabled":
        text.append(" · unguarded until reset")
    elif state == "half_open":
        succeeded = f"{breaker.success_count}/{breaker.success_threshold}"
        text.append(f" · {succeeded} trial calls succeeded")
    else:
        if state == "open":
            text.append(f" · next attempt {next_attempt(breaker, now)}")
        text.append(f" · {breaker.failure_count}/{breaker.failure_threshold} failures")
    return text


@dataclass(frozen=True)
class BreakerCounts:
    open: int
    forced_open: int
    half_open: int
    closed: int
    disabled: int

    @classmethod
    def of(cls, by_state: Mapping[str, int]) -> BreakerCounts:
        return cls(**{state: by_state.get(state, 0) for state in STATES})

    @property
    def total(self) -> int:
        return self.open + self.forced_open + self.half_open + self.closed + self.disabled


def counts_text(by_state: Mapping[str, int]) -> Text:
    """``✖ 2 open (1 forced)  ◐ 1 half-open  ● 4 closed  ○ 1 disabled``.

    Forced-open breakers are counted with the open ones (both refuse every call) and
    named in brackets, since only a reset ends them.
    """
    counts = BreakerCounts.of(by_state)
    text = Text()
    refusing = counts.open + counts.forced_open
    forced = f" ({counts.forced_open} forced)" if counts.forced_open else ""
    text.append_text(_count("open", refusing, f"open{forced}"))
    text.append_text(_count("half_open", counts.half_open, "half-open"))
    text.append_text(_count("closed", counts.closed, "closed"))
    text.append_text(_count("disabled", counts.disabled, "disabled"))
    text.rstrip()
    return text


def _count(state: str, count: int, word: str) -> Text:
    style = state_style(state) if count else "bright_black"
    return Text(f"{state_symbol(state)} {count} {word}  ", style=style)


# -- the operator's actions -----------------------------------------------------------------


def reset_mutation(breaker: Breaker, breakers: BreakersSource) -> Mutation:
    async def reset(actor: str, reason: str) -> None:
        await breakers.reset(breaker.id, actor=actor, reason=reason)

    label = breaker_label(breaker)
    return Mutation(
        title="Reset circuit breaker",
        question=f"Reset breaker {label}?",
        consequence=(
            f"It is {_now(breaker)}. Resetting closes it and clears its counts: calls "
            f"from {breaker.service_name} to {breaker.target_service} go through again."
        ),
        verb="Reset",
        perform=reset,
        done=f"Breaker {label} is closed",
    )


def force_open_mutation(breaker: Breaker, breakers: BreakersSource) -> Mutation:
    async def force_open(actor: str, reason: str) -> None:
        await breakers.force_open(breaker.id, actor=actor, reason=reason)

    label = breaker_label(breaker)
    return Mutation(
        title="Force breaker open",
        question=f"Force open breaker {label}?",
        consequence=(
            f"It is {_now(breaker)}. Forced open, it refuses every call it guards from "
            f"{breaker.service_name} to {breaker.target_service} until someone resets it."
        ),
        verb="Force open",
        perform=force_open,
        done=f"Breaker {label} is forced open",
    )


def disable_mutation(breaker: Breaker, breakers: BreakersSource) -> Mutation:
    async def disable(actor: str, reason: str) -> None:
        await breakers.disable(breaker.id, actor=actor, reason=reason)

    label = breaker_label(breaker)
    return Mutation(
        title="Disable circuit breaker",
        question=f"Disable breaker {label}?",
        consequence=(
            f"It is {_now(breaker)}. Disabled, it lets every call through unguarded and "
            "counts no failures until someone resets it."
        ),
        verb="Disable",
        perform=disable,
        done=f"Breaker {label} is disabled",
    )


def _now(breaker: Breaker) -> str:
    state = breaker.current_state
    return f"{state_symbol(state)} {state_word(state)}"
