"""Put services with healthy instances in the registry, the way checks would."""

from __future__ import annotations

from collections.abc import Sequence

from orchcore import Orch
from tests.support.http import SwitchableServer


async def mark(orch: Orch, instance_id: str, to_status: str) -> None:
    """Move an instance to ``to_status`` through the registry's own transition."""
    inst = await orch.registry.get_instance(instance_id)
    async with orch.db.transaction() as conn:
        assert await orch.registry._transition(
            conn,
            inst.id,
            inst.service_id,
            inst.status,
            to_status,
            reason="test",
            actor="test",
            at=orch.clock.now(),
        )


async def healthy_service(
    orch: Orch,
    name: str,
    servers: Sequence[SwitchableServer],
    *,
    versions: Sequence[str] | None = None,
    weights: Sequence[int] | None = None,
    base_url: str | None = None,
) -> list[str]:
    """Register ``name`` with one healthy instance per server; return the instance ids."""
    await orch.registry.register_service(
        {
            "service_name": name,
            "service_type": "api",
            "deployment_environment": "staging",
            **({"base_url": base_url} if base_url else {}),
        },
        actor="test",
    )
    ids = []
    for index, server in enumerate(servers):
        metadata = {"weight": weights[index]} if weights else {}
        instance = await orch.registry.register_instance(
            name,
            {
                "instance_id": f"{name}-{index}",
                "ip_address": "127.0.0.1",
                "port": server.port,
                "version": versions[index] if versions else "1.0.0",
                "metadata": metadata,
            },
            actor="test",
        )
        await mark(orch, instance.instance_id, "healthy")
        ids.append(instance.instance_id)
    await orch.discovery.refresh_all()
    return ids
