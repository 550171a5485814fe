"""What a workflow should do next: a pure function of its state and the time.

The drive asks :func:`plan` after every outcome and commits what it decided; keeping
the decision free of I/O keeps every rule here, in one place, and testable alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchcore.saga.models import DecisionConditions
from orchcore.saga.paths import PathError, read
from orchcore.saga.state import StepState, WorkflowState
from orchcore.saga.status import (
    COMPENSATION_SETTLED,
    RUNNABLE,
    STEP_DONE,
    STEP_ENDED_BADLY,
    STEP_MAY_HAVE_EFFECT,
    CompensationStatus,
    Phase,
    StepStatus,
)


@dataclass(frozen=True)
class Stop:
    """Nothing to do now (terminal, paused, or waiting for a person)."""


@dataclass(frozen=True)
class Wait:
    until: datetime


@dataclass(frozen=True)
class Complete:
    pass


@dataclass(frozen=True)
class RunStep:
    step: StepState


@dataclass(frozen=True)
class Publish:
    """A publish step: its messages go out with the commit that records it."""

    step: StepState


@dataclass(frozen=True)
class Decide:
    step: StepState


@dataclass(frozen=True)
class StartDelay:
    step: StepState


@dataclass(frozen=True)
class FinishDelay:
    step: StepState


@dataclass(frozen=True)
class RunParallel:
    """Run the branches that have something due now."""

    step: StepState


@dataclass(frozen=True)
class FinishParallel:
    """Every branch is done, or one ended badly."""

    step: StepState


@dataclass(frozen=True)
class BeginCompensation:
    reason: str


@dataclass(frozen=True)
class Compensate:
    step: StepState


@dataclass(frozen=True)
class FinishCompensation:
    pass


Action = (
    Stop
    | Wait
    | Complete
    | RunStep
    | Publish
    | Decide
    | StartDelay
    | FinishDelay
    | RunParallel
    | FinishParallel
    | BeginCompensation
    | Compensate
    | FinishCompensation
)


def plan(state: WorkflowState, now: datetime) -> Action:
    if state.status not in RUNNABLE:
        return Stop()
    if state.phase == Phase.COMPENSATE:
        return _plan_compensation(state, now)
    if now >= state.timeout_at:
        minutes = state.definition.timeout_minutes
        return BeginCompensation(f"workflow timed out after {minutes:g} min")
    step = next((s for s in state.top_level() if s.status not in STEP_DONE), None)
    if step is None:
        return Complete()
    if step.status in STEP_ENDED_BADLY:
        return BeginCompensation(_why_ended(step))
    if step.type in ("service_call", "publish"):
        if _waiting(step, now):
            return Wait(min(_due(step), state.timeout_at))
        return RunStep(step) if step.type == "service_call" else Publish(step)
    if step.type == "decision":
        return Decide(step)
    if step.type == "delay":
        if step.status != StepStatus.WAITING:
            return StartDelay(step)
        if step.next_attempt_at is not None and step.next_attempt_at > now:
            return Wait(min(step.next_attempt_at, state.timeout_at))
        return FinishDelay(step)
    return _plan_parallel(state, step, now)


def _why_ended(step: StepState) -> str:
    if step.status == StepStatus.UNCERTAIN:
        return f"step {step.name}'s outcome is unknown: {step.error_message}"
    return f"step {step.name} failed: {step.error_message}"


def _waiting(step: StepState, now: datetime) -> bool:
    return (
        step.status == StepStatus.RETRYING
        and step.next_attempt_at is not None
        and (step.next_attempt_at > now)
    )


def _due(step: StepState) -> datetime:
    assert step.next_attempt_at is not None
    return step.next_attempt_at


def branch_fronts(state: WorkflowState, parallel: StepState) -> dict[str, StepState | None]:
    """Each branch's first step not yet done (None: the branch is done)."""
    names = sorted({s.branch for s in state.children(parallel.name) if s.branch})
    return {
        name: next(
            (s for s in state.branch_steps(parallel.name, name) if s.status not in STEP_DONE),
            None,
        )
        for name in names
    }


def branch_due(front: StepState | None, now: datetime) -> bool:
    """Whether the branch has a step to run now."""
    if front is None or front.status in STEP_ENDED_BADLY:
        return False
    return not _waiting(front, now)


def _plan_parallel(state: WorkflowState, step: StepState, now: datetime) -> Action:
    if step.status != StepStatus.RUNNING:
        return RunParallel(step)
    fronts = list(branch_fronts(state, step).values())
    if all(front is None for front in fronts):
        return FinishParallel(step)
    if any(front is not None and front.status in STEP_ENDED_BADLY for front in fronts):
        return FinishParallel(step)
    if any(branch_due(front, now) for front in fronts):
        return RunParallel(step)
    due = min(_due(front) for front in fronts if front is not None)
    return Wait(min(due, state.timeout_at))


def _plan_compensation(state: WorkflowState, now: datetime) -> Action:
    targets = compensation_targets(state)
    if not targets:
        return FinishCompensation()
    target = targets[0]
    if target.compensation_status == CompensationStatus.FAILED:
        return Stop()
    due = target.compensation_next_attempt_at
    if target.compensation_status == CompensationStatus.RETRYING and due is not None and due > now:
        return Wait(due)
    return Compensate(target)


def compensation_scope(state: WorkflowState) -> set[str] | None:
    """The step names to compensate, or None for all of them."""
    request = state.compensation_request or {}
    strategy = request.get("strategy") or state.definition.compensation_strategy
    if strategy == "custom":
        return set(request.get("custom_steps") or [])
    if strategy == "partial":
        return set(state.definition.compensate_steps or [])
    return None


def compensation_targets(state: WorkflowState) -> list[StepState]:
    """Steps whose effect may exist, still to undo, most recently ended first."""
    scope = compensation_scope(state)
    pending = [
        s
        for s in state.steps.values()
        if s.status in STEP_MAY_HAVE_EFFECT
        and s.compensable
        and s.compensation_status not in COMPENSATION_SETTLED
        and (scope is None or s.name in scope or (s.parent is not None and s.parent in scope))
    ]
    return sorted(pending, key=lambda s: s.completion_seq or 0, reverse=True)


def decision_target(conditions: DecisionConditions, context: Any) -> tuple[bool, str | None]:
    """Whether the conditions hold, and the step to go to (None: the next one)."""
    holds = all(_test(read(context, path, None), test) for path, test in conditions.if_.items())
    return holds, conditions.then if holds else conditions.else_


def _test(value: Any, test: Any) -> bool:
    if not isinstance(test, dict):
        return bool(value == test)
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda v, t: v == t,
        "ne": lambda v, t: v != t,
        "gt": lambda v, t: v is not None and v > t,
        "gte": lambda v, t: v is not None and v >= t,
        "lt": lambda v, t: v is not None and v < t,
        "lte": lambda v, t: v is not None and v <= t,
        "in": lambda v, t: v in t,
        "exists": lambda v, t: (v is not None) == bool(t),
    }
    try:
        return all(checks[op](value, expected) for op, expected in test.items())
    except TypeError:
        return False  # comparing unlike types (a string with a number): the test fails


__all__ = ["PathError", "plan"]
