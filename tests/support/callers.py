"""Calling services known to orch: the call path refuses a source nobody registered."""

from __future__ import annotations

from orchcore import Orch


async def known_callers(orch: Orch, *names: str) -> None:
    """Register each name as a service (no instances: it only calls, nobody calls it);
    a name registered already stays as it is."""
    for name in names:
        if await orch.discovery.is_registered(name):
            continue
        await orch.registry.register_service(
            {"service_name": name, "service_type": "api", "deployment_environment": "staging"},
            actor="test",
        )
    await orch.discovery.refresh_all()
