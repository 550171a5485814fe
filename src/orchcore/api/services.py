"""Service registry routes (the seed's shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel

from orchcore.api.auth import Caller, Engine, allowed
from orchcore.api.contract import ContractRoute, OperatorsReason
from orchcore.auth import Action, Principal
from orchcore.registry.models import (
    HeartbeatRequest,
    Instance,
    InstanceStateEvent,
    RegisterInstanceRequest,
    RegisterServiceRequest,
    Service,
    UpdateServiceRequest,
)

router = APIRouter(prefix="/api/orchestration", tags=["services"], route_class=ContractRoute)


class ServiceResourceUsage(BaseModel):
    cpu_percent: float
    memory_mb: float
    requests_per_minute: float


class ServiceSummary(BaseModel):
    """One entry of the seed's GetServicesResponse."""

    id: str
    service_name: str
    service_version: str
    service_type: str
    deployment_environment: str
    health_status: Literal["healthy", "degraded", "unhealthy"]
    instance_count: int
    healthy_instances: int
    dependencies: list[str]
    resource_usage: ServiceResourceUsage
    last_deployment: datetime


class GetServicesResponse(BaseModel):
    services: list[ServiceSummary]
    total_services: int
    healthy_services: int


class InstanceResourceUsage(BaseModel):
    cpu_percent: float
    memory_mb: float
    disk_mb: float


class InstanceSummary(BaseModel):
    """One entry of the seed's GetServiceInstancesResponse, plus the check state."""

    id: str
    instance_id: str
    node_name: str | None
    ip_address: str
    port: int
    status: str
    version: str
    resource_usage: InstanceResourceUsage
    health_check_failures: int
    started_at: datetime
    last_seen_at: datetime
    last_health_check: datetime | None
    last_check_result: str | None
    last_check_output: str | None
    metadata: dict[str, Any]


class GetServiceInstancesResponse(BaseModel):
    instances: list[InstanceSummary]
    total_count: int


def _summary(service: Service, instances_usage: list[dict[str, Any]]) -> ServiceSummary:
    def total(key: str) -> float:
        return float(sum(float(u.get(key, 0) or 0) for u in instances_usage))

    return ServiceSummary(
        id=str(service.id),
        service_name=service.service_name,
        service_version=service.service_version,
        service_type=service.service_type,
        deployment_environment=service.deployment_environment,
        health_status=service.health_status,
        instance_count=service.live_instances,
        healthy_instances=service.healthy_instances,
        dependencies=service.dependencies,
        resource_usage=ServiceResourceUsage(
            cpu_percent=total("cpu_percent"),
            memory_mb=total("memory_mb"),
            requests_per_minute=total("requests_per_minute"),
        ),
        last_deployment=service.updated_at,
    )


def _instance(instance: Instance) -> InstanceSummary:
    usage = instance.resource_usage
    return InstanceSummary(
        id=str(instance.id),
        instance_id=instance.instance_id,
        node_name=instance.node_name,
        ip_address=instance.ip_address,
        port=instance.port,
        status=instance.status,
        version=instance.version,
        resource_usage=InstanceResourceUsage(
            cpu_percent=float(usage.get("cpu_percent", 0) or 0),
            memory_mb=float(usage.get("memory_mb", 0) or 0),
            disk_mb=float(usage.get("disk_mb", 0) or 0),
        ),
        health_check_failures=instance.health_check_failures,
        started_at=instance.started_at,
        last_seen_at=instance.last_seen_at,
        last_health_check=instance.last_health_check,
        last_check_result=instance.last_check_result,
        last_check_output=instance.last_check_output,
        metadata=instance.metadata,
    )


async def _service_name_for_instance_action(orch: Any, service_id: str, caller: Principal) -> str:
    """Resolve the path's service and check the caller may manage its instances."""
    service = await orch.registry.get_service(service_id)
    caller.require(Action.INSTANCE_SELF, service_name=service.service_name)
    name: str = service.service_name
    return name


@router.get("/services", response_model=GetServicesResponse, dependencies=[allowed(Action.READ)])
async def list_services(
    orch: Engine,
    environment: str | None = Query(default=None, description="only this environment"),
    include_inactive: bool = Query(default=False),
) -> GetServicesResponse:
    services = await orch.registry.list_services(
        environment=environment, include_inactive=include_inactive
    )
    usage = await orch.registry.resource_usage_by_service()
    summaries = [_summary(s, usage.get(s.id, [])) for s in services]
    return GetServicesResponse(
        services=summaries,
        total_services=len(summaries),
        healthy_services=sum(1 for s in summaries if s.health_status == "healthy"),
    )


@router.post(
    "/services",
    response_model=Service,
    status_code=status.HTTP_201_CREATED,
    dependencies=[allowed(Action.WRITE)],
)
async def register_service(
    request: RegisterServiceRequest, orch: Engine, caller: Caller
) -> Service:
    return await orch.registry.register_service(request, actor=caller.actor)


@router.get("/services/{service_id}", response_model=Service, dependencies=[allowed(Action.READ)])
async def get_service(service_id: str, orch: Engine) -> Service:
    return await orch.registry.get_service(service_id)


@router.put("/services/{service_id}", response_model=Service, dependencies=[allowed(Action.WRITE)])
async def update_service(
    service_id: str, request: UpdateServiceRequest, orch: Engine, caller: Caller
) -> Service:
    return await orch.registry.update_service(service_id, request, actor=caller.actor)


@router.get(
    "/services/{service_id}/instances",
    response_model=GetServiceInstancesResponse,
    dependencies=[allowed(Action.READ)],
)
async def list_instances(
    service_id: str, orch: Engine, include_gone: bool = Query(default=False)
) -> GetServiceInstancesResponse:
    instances = await orch.registry.list_instances(service_id, include_gone=include_gone)
    return GetServiceInstancesResponse(
        instances=[_instance(i) for i in instances], total_count=len(instances)
    )


@router.post(
    "/services/{service_id}/instances",
    response_model=InstanceSummary,
    status_code=status.HTTP_201_CREATED,
)
async def register_instance(
    service_id: str, request: RegisterInstanceRequest, orch: Engine, caller: Caller
) -> InstanceSummary:
    name = await _service_name_for_instance_action(orch, service_id, caller)
    return _instance(await orch.registry.register_instance(name, request, actor=caller.actor))


@router.delete("/services/{service_id}/instances/{instance_id}", response_model=InstanceSummary)
async def deregister_instance(
    service_id: str,
    instance_id: str,
    orch: Engine,
    caller: Caller,
    reason: str | None = Query(default=None, max_length=500),
) -> InstanceSummary:
    name = await _service_name_for_instance_action(orch, service_id, caller)
    instance = await orch.registry.deregister_instance(
        name, instance_id, actor=caller.actor, reason=reason
    )
    return _instance(instance)


@router.put(
    "/services/{service_id}/instances/{instance_id}/heartbeat", response_model=InstanceSummary
)
async def heartbeat(
    service_id: str,
    instance_id: str,
    orch: Engine,
    caller: Caller,
    request: HeartbeatRequest | None = None,
) -> InstanceSummary:
    name = await _service_name_for_instance_action(orch, service_id, caller)
    instance = await orch.registry.heartbeat(name, instance_id, request, actor=caller.actor)
    return _instance(instance)


@router.get(
    "/services/{service_id}/events",
    response_model=list[InstanceStateEvent],
    dependencies=[allowed(Action.READ)],
)
async def service_events(
    service_id: str, orch: Engine, limit: int = Query(default=50, ge=1, le=1000)
) -> list[InstanceStateEvent]:
    """The service's instances' state changes, newest first."""
    return await orch.registry.service_events(service_id, limit=limit)


@router.post(
    "/services/{service_id}/deactivate",
    response_model=Service,
    dependencies=[allowed(Action.WRITE)],
)
async def deactivate_service(
    service_id: str, request: OperatorsReason, orch: Engine, caller: Caller
) -> Service:
    """Stop routing to the service (its record and history stay), with the reason audited."""
    return await orch.registry.deactivate_service(
        service_id, actor=caller.actor, reason=request.reason
    )


# The registry's own records, as the console shows them: the seed's summaries above
# leave out what an operator reads there (instance counts by state, health settings,
# heartbeats and check results).
@router.get("/registry/services", response_model=list[Service], dependencies=[allowed(Action.READ)])
async def registry_services(
    orch: Engine, include_inactive: bool = Query(default=False)
) -> list[Service]:
    return await orch.registry.list_services(include_inactive=include_inactive)


@router.get(
    "/registry/services/{service_id}/instances",
    response_model=list[Instance],
    dependencies=[allowed(Action.READ)],
)
async def registry_instances(
    service_id: str, orch: Engine, include_gone: bool = Query(default=False)
) -> list[Instance]:
    return await orch.registry.list_instances(service_id, include_gone=include_gone)
