"""Fault injection per instance: how healthy, slow or flaky an instance pretends to be.

Knobs are set at start-up (``--knobs``) or at runtime (``POST /_knobs``) and act on
the next request. Waits (latency, hang) end early when the platform stops, so a
hanging request never holds up a clean shutdown.
"""

from __future__ import annotations

import asyncio
import random
from typing import Literal

from fastapi import HTTPException
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

HealthMode = Literal["ok", "fail", "throttle", "hang"]


class Knobs(BaseModel):
    """The current faults of one instance; the defaults are a well-behaved instance."""

    model_config = ConfigDict(extra="forbid")

    health: HealthMode = Field(
        default="ok",
        description="ok: 200; fail: 503; throttle: 429; hang: /health never answers",
    )
    latency_ms: int = Field(
        default=0, ge=0, le=600_000, description="added before every answer but /_ endpoints"
    )
    failure_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="share of business calls answered 503"
    )
    hang: bool = Field(default=False, description="business endpoints never answer")
    event_reject_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share of pushed bus events answered 422 (the bus dead-letters them)",
    )

    @model_serializer(mode="wrap")
    def _shown(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """event_reject_rate concerns the notification service only: shown when set."""
        data: dict[str, object] = handler(self)
        if not self.event_reject_rate:
            data.pop("event_reject_rate", None)
        return data


class KnobsUpdate(BaseModel):
    """A partial change of knobs: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    health: HealthMode | None = None
    latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    failure_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    hang: bool | None = None
    event_reject_rate: float | None = Field(default=None, ge=0.0, le=1.0)


class FaultInjector:
    """Applies an instance's knobs to its requests."""

    def __init__(self, rng: random.Random, stopping: asyncio.Event) -> None:
        self.knobs = Knobs()
        self._rng = rng
        self._stopping = stopping

    def update(self, change: KnobsUpdate) -> Knobs:
        given = change.model_dump(exclude_none=True)
        self.knobs = self.knobs.model_copy(update=given)
        return self.knobs

    def reset(self) -> Knobs:
        self.knobs = Knobs()
        return self.knobs

    async def health_answer(self) -> tuple[int, dict[str, str]]:
        """Status code and body of ``GET /health`` under the current knobs."""
        await self._add_latency()
        mode = self.knobs.health
        if mode == "hang":
            await self._hang()
        if mode == "fail":
            return 503, {"status": "fail"}
        if mode == "throttle":
            return 429, {"status": "throttled"}
        return 200, {"status": "ok"}

    async def before_business_call(self) -> None:
        """Delay, hang or fail a business call as the knobs say (raising the HTTP error)."""
        await self._add_latency()
        if self.knobs.hang:
            await self._hang()
        rate = self.knobs.failure_rate
        if rate > 0 and self._rng.random() < rate:
            raise HTTPException(503, detail="injected failure (failure_rate knob)")

    def rejects_event(self) -> bool:
        """Whether to refuse this pushed event for good (the event_reject_rate knob)."""
        rate = self.knobs.event_reject_rate
        return rate > 0 and self._rng.random() < rate

    async def _add_latency(self) -> None:
        if self.knobs.latency_ms > 0:
            await self._wait_unless_stopping(self.knobs.latency_ms / 1000)

    async def _hang(self) -> None:
        """Never answer, except to release the request when the platform stops."""
        await self._stopping.wait()
        raise HTTPException(503, detail="shutting down")

    async def _wait_unless_stopping(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise HTTPException(503, detail="shutting down")


def parse_knob_settings(spec: str) -> dict[str, KnobsUpdate]:
    """``venue-1:failure_rate=0.2,venue:latency_ms=50`` -> {target: change}.

    A target is an instance id or a service name (meaning all its instances).
    Raises ValueError with a one-line reason on a malformed or invalid setting.
    """
    raw: dict[str, dict[str, str]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        target, colon, setting = item.partition(":")
        name, equals, value = setting.partition("=")
        if not (colon and equals and target and name):
            raise ValueError(f"--knobs: {item!r} is not TARGET:KNOB=VALUE")
        raw.setdefault(target.strip(), {})[name.strip()] = value.strip()
    changes: dict[str, KnobsUpdate] = {}
    for target, values in raw.items():
        try:
            changes[target] = KnobsUpdate.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = first["loc"][0] if first["loc"] else "?"
            raise ValueError(f"--knobs: {target}:{where}: {first['msg']}") from None
    return changes
