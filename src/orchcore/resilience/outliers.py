"""Outlier ejection, per daemon (as Envoy does per proxy).

After ``consecutive_5xx`` 5xx answers in a row an instance is ejected for
``base_ejection_seconds`` × the number of times it has been ejected. At most
``max_ejection_percent`` of a service's instances are ejected at once, but one
instance may always be ejected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from orchcore.clock import Clock
from orchcore.mesh.models import OutlierDetectionConfig
from orchcore.registry.endpoint import Endpoint


@dataclass
class _InstanceRecord:
    service: str = ""
    consecutive_5xx: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # clock.monotonic()


class OutlierDetector:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._records: dict[UUID, _InstanceRecord] = {}

    def usable(
        self, candidates: Sequence[Endpoint], config: OutlierDetectionConfig | None
    ) -> Sequence[Endpoint]:
        """The candidates not currently ejected (all of them if none would remain)."""
        if config is None or not self._records:
            return candidates
        now = self._clock.monotonic()
        kept = [e for e in candidates if self._records.get(e.id, _NEVER).ejected_until <= now]
        return kept or candidates

    def record(
        self,
        endpoint: Endpoint,
        status_code: int | None,
        config: OutlierDetectionConfig | None,
        service_size: int,
    ) -> bool:
        """Count an answer; True if this answer got the instance ejected."""
        if config is None:
            return False
        record = self._records.setdefault(endpoint.id, _InstanceRecord(endpoint.service_name))
        if status_code is None or status_code < 500:
            record.consecutive_5xx = 0
            return False
        record.consecutive_5xx += 1
        if record.consecutive_5xx < config.consecutive_5xx:
            return False
        now = self._clock.monotonic()
        if record.ejected_until > now:
            return False
        if self._ejected_count(endpoint.service_name, now) >= self._max_ejected(
            config, service_size
        ):
            return False
        record.ejections += 1
        record.consecutive_5xx = 0
        record.ejected_until = now + config.base_ejection_seconds * record.ejections
        return True

    def is_ejected(self, endpoint: Endpoint) -> bool:
        record = self._records.get(endpoint.id)
        return record is not None and record.ejected_until > self._clock.monotonic()

    def _ejected_count(self, service: str, now: float) -> int:
        return sum(
            1 for r in self._records.values() if r.service == service and r.ejected_until > now
        )

    @staticmethod
    def _max_ejected(config: OutlierDetectionConfig, service_size: int) -> int:
        return max(1, math.floor(service_size * config.max_ejection_percent / 100))


_NEVER = _InstanceRecord()
