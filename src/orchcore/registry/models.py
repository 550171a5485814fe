"""Request and read models of the registry: the seed's shapes plus orch's health settings."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    WithJsonSchema,
    computed_field,
    field_validator,
    model_validator,
)

ServiceType = Literal["api", "worker", "scheduler", "gateway"]
Environment = Literal["development", "staging", "production"]
LoadBalancing = Literal["round_robin", "least_connections", "weighted"]
InstanceStatus = Literal[
    "starting", "healthy", "unhealthy", "critical", "terminating", "deregistered"
]
CheckResult = Literal["passing", "warning", "failing"]

#: statuses of an instance that is still part of its service
LIVE_STATUSES: tuple[InstanceStatus, ...] = ("starting", "healthy", "unhealthy", "critical")
#: statuses an instance never leaves by itself
GONE_STATUSES: tuple[InstanceStatus, ...] = ("terminating", "deregistered")

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def check_service_name(value: str) -> str:
    if not _SERVICE_NAME.match(value):
        raise ValueError(
            "must be 1-63 characters of lower-case letters, digits and '-', starting with a letter"
        )
    return value


def _check_version(value: str) -> str:
    if not _VERSION.match(value):
        raise ValueError("must be a version such as 1.4.2")
    return value


def _check_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be a path starting with '/'")
    return value


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value.rstrip("/")


def _check_unique(names: list[str]) -> list[str]:
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ValueError(f"{name!r} is listed twice")
    return names


# The patterns put in the JSON Schema what the validators check (their refusals say it
# in words).
ServiceName = Annotated[
    str,
    AfterValidator(check_service_name),
    Field(json_schema_extra={"pattern": _SERVICE_NAME.pattern}),
]
Version = Annotated[
    str, AfterValidator(_check_version), Field(json_schema_extra={"pattern": _VERSION.pattern})
]
UrlPath = Annotated[str, AfterValidator(_check_path), Field(json_schema_extra={"pattern": "^/"})]
HttpUrl = Annotated[
    str,
    AfterValidator(_check_url),
    Field(
        json_schema_extra={
            "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@:\[\]]+(:[0-9]*)?([/?#].*)?$"
        }
    ),
]
ServiceNames = Annotated[
    list[ServiceName], AfterValidator(_check_unique), Field(json_schema_extra={"uniqueItems": True})
]
Quantity = Annotated[str, Field(json_schema_extra={"pattern": _QUANTITY.pattern})]


class ResourceRequirements(_Strict):
    cpu_limit: Quantity = Field(description="Kubernetes quantity, e.g. 500m or 2")
    memory_limit: Quantity = Field(description="Kubernetes quantity, e.g. 512Mi")
    storage_limit: Quantity | None = None

    @field_validator("cpu_limit", "memory_limit", "storage_limit")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None and not _QUANTITY.match(value):
            raise ValueError("must be a quantity such as 500m, 2, 512Mi or 1Gi")
        return value


class ScalingConfig(_Strict):
    min_replicas: int = Field(ge=0, le=1000)
    max_replicas: int = Field(ge=1, le=1000)
    target_cpu_percent: int = Field(ge=1, le=100)

    @model_validator(mode="after")
    def _bounds(self) -> ScalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be at least min_replicas")
        return self


class HealthCheckConfig(_Strict):
    """How a service's instances are checked (Consul's vocabulary where it has one)."""

    kind: Literal["http", "ttl"] = "http"
    interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    ttl_seconds: float = Field(default=30.0, gt=0, le=86400)
    success_before_passing: int = Field(default=1, ge=1, le=100)
    failures_before_critical: int = Field(default=3, ge=1, le=100)
    critical_after_seconds: float = Field(
        default=60.0, ge=0, description="unhealthy this long turns critical"
    )
    deregister_critical_after_seconds: float = Field(
        default=600.0, gt=0, description="unhealthy this long is deregistered"
    )

    @model_validator(mode="after")
    def _coherent(self) -> HealthCheckConfig:
        if self.timeout_seconds > self.interval_seconds:
            raise ValueError("timeout_seconds must not exceed interval_seconds")
        if self.critical_after_seconds > self.deregister_critical_after_seconds:
            raise ValueError(
                "critical_after_seconds must not exceed deregister_critical_after_seconds"
            )
        return self


class RegisterServiceRequest(_Strict):
    """The seed's RegisterServiceRequest, with orch's health and balancing settings."""

    service_name: ServiceName
    service_version: Version = "1.0.0"
    service_type: ServiceType
    service_description: str | None = None
    deployment_environment: Environment
    base_url: HttpUrl | None = None
    health_check_endpoint: UrlPath = "/health"
    metrics_endpoint: UrlPath | None = "/metrics"
    documentation_url: HttpUrl | None = None
    owner_team: str | None = None
    dependencies: ServiceNames = Field(default_factory=list)
    configuration_schema: dict[str, Any] = Field(default_factory=dict)
    resource_requirements: ResourceRequirements | None = None
    scaling_config: ScalingConfig | None = None
    health_check: HealthCheckConfig = Field(default_factory=HealthCheckConfig)
    load_balancing: LoadBalancing = "round_robin"

    @model_validator(mode="after")
    def _not_self_dependent(self) -> RegisterServiceRequest:
        if self.service_name in self.dependencies:
            raise ValueError("dependencies: a service cannot depend on itself")
        return self


def _not_null(schema: dict[str, Any]) -> None:
    """A field's JSON Schema without its null: it may be left out, not set to null."""
    choices = [choice for choice in schema.pop("anyOf", []) if choice != {"type": "null"}]
    if len(choices) == 1:
        schema.update(choices[0])
    elif choices:
        schema["anyOf"] = choices


def _kept() -> Any:
    """A field left out, not given as null: the service always has one."""
    return Field(default=None, json_schema_extra=_not_null)


class UpdateServiceRequest(_Strict):
    """Partial<RegisterServiceRequest>: only the fields given change. A field every
    service has (its version, type, environment, health check and balancing) may be
    left out but not set to null."""

    service_version: Version | None = _kept()
    service_type: ServiceType | None = _kept()
    service_description: str | None = None
    deployment_environment: Environment | None = _kept()
    base_url: HttpUrl | None = None
    health_check_endpoint: UrlPath | None = None
    metrics_endpoint: UrlPath | None = None
    documentation_url: HttpUrl | None = None
    owner_team: str | None = None
    dependencies: ServiceNames | None = None
    configuration_schema: dict[str, Any] | None = None
    resource_requirements: ResourceRequirements | None = None
    scaling_config: ScalingConfig | None = None
    health_check: HealthCheckConfig | None = _kept()
    load_balancing: LoadBalancing | None = _kept()

    @model_validator(mode="after")
    def _kept_fields_not_null(self) -> UpdateServiceRequest:
        for name in _KEPT_FIELDS:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name}: may not be null (leave it out to keep it)")
        return self


_KEPT_FIELDS = (
    "service_version",
    "service_type",
    "deployment_environment",
    "health_check",
    "load_balancing",
)


def _address_text(value: Any) -> Any:
    # pydantic also reads an address from a number (0 is 0.0.0.0); the API's is text.
    if not isinstance(value, str):
        raise ValueError("must be an IPv4 or IPv6 address written as text")
    return value


class RegisterInstanceRequest(_Strict):
    """The seed's RegisterInstanceRequest."""

    instance_id: str = Field(min_length=1, max_length=253)
    node_name: str = Field(default="", max_length=253)
    ip_address: Annotated[
        IPvAnyAddress,
        BeforeValidator(_address_text),
        WithJsonSchema,
        WithJsonSchema(
            {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}
        ),
    ]
    port: int = Field(ge=1, le=65535)
    version: str = Field(min_length=1, max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _weight(cls, value: dict[str, Any]) -> dict[str, Any]:
        weight = value.get("weight")
        if weight is not None and (
            isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 1000
        ):
            raise ValueError("metadata.weight must be a whole number from 0 to 1000")
        return value


class HeartbeatRequest(_Strict):
    resource_usage: dict[str, float] | None = None


# -- read models ---------------------------------------------------------------


class Dependency(BaseModel):
    service_name: str
    registered: bool
    dependency_type: str
    is_critical: bool


class Service(BaseModel):
    id: UUID
    service_name: str
    service_version: str
    service_type: str
    service_description: str | None
    deployment_environment: str
    base_url: str | None
    health_check_endpoint: str | None
    metrics_endpoint: str | None
    documentation_url: str | None
    owner_team: str | None
    dependencies: list[str]
    configuration_schema: dict[str, Any]
    resource_requirements: dict[str, Any]
    scaling_config: dict[str, Any]
    health_check: HealthCheckConfig
    load_balancing: LoadBalancing
    is_active: bool
    created_at: datetime
    updated_at: datetime
    instance_counts: dict[str, int] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def healthy_instances(self) -> int:
        return self.instance_counts.get("healthy", 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def live_instances(self) -> int:
        return sum(self.instance_counts.get(s, 0) for s in LIVE_STATUSES)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def health_status(self) -> Literal["healthy", "degraded", "unhealthy"]:
        """All live instances healthy, some, or none (the seed's health_status)."""
        healthy, live = self.healthy_instances, self.live_instances
        if live and healthy == live:
            return "healthy"
        if healthy:
            return "degraded"
        return "unhealthy"


class Instance(BaseModel):
    id: UUID
    service_id: UUID
    service_name: str
    instance_id: str
    node_name: str | None
    ip_address: str
    port: int
    status: InstanceStatus
    version: str
    metadata: dict[str, Any]
    resource_usage: dict[str, Any]
    last_health_check: datetime | None
    health_check_failures: int
    health_check_successes: int
    last_check_result: CheckResult | None
    last_check_output: str | None
    status_changed_at: datetime
    unhealthy_since: datetime | None
    started_at: datetime
    last_seen_at: datetime
    deregistered_at: datetime | None


class InstanceStateEvent(BaseModel):
    id: int
    instance_uuid: UUID
    instance_id: str
    from_status: str | None
    to_status: str
    reason: str
    actor: str
    occurred_at: datetime
