"""Who a call comes from: orch's own identities, and the audit of an operator naming one.

A call's source picks its breakers, its rate-limit bucket and the mesh rules that
apply, so it must be a name orch knows: a registered service or one of orch's own.
Which name a caller may use is the token's business (``Principal.acting_as``).
"""

from __future__ import annotations

from orchcore.audit import record_action
from orchcore.clock import Clock
from orchcore.db import Database

#: Sagas started without an initiator (the default of StartWorkflowRequest.initiating_service).
SAGA_SOURCE = "orch"
#: ``POST /api/orchestration/services/{service}/call`` when an operator names no source.
API_SOURCE = "orch-api"
#: ``orch call`` without ``--source``.
CLI_SOURCE = "orch-cli"
ORCH_IDENTITIES: tuple[str, ...] = (SAGA_SOURCE, API_SOURCE, CLI_SOURCE)


async def record_call_as(
    db: Database,
    clock: Clock,
    *,
    actor: str,
    source: str,
    target: str,
    method: str,
    endpoint: str,
    correlation_id: str,
) -> None:
    """Audit a call an operator makes in a service's name (before it is made, so a call
    that fails or is refused is on record too; its outcome is in service_events under
    the same correlation id)."""
    async with db.transaction() as conn:
        await record_action(
            conn,
            actor=actor,
            action="call.as_source",
            target_kind="service",
            target_id=target,
            at=clock.now(),
            details={
                "source": source,
                "method": method,
                "endpoint": endpoint[:500],
                "correlation_id": correlation_id,
            },
        )
