"""Mesh policy shapes (the seed's CreateMeshPolicyRequest), validated per policy type.

``policy_config`` holds only the sections its ``policy_type`` allows:

- traffic: load_balancing, traffic_splitting, rate_limiting
- security: mutual_tls, authorization
- resilience: circuit_breaker, retry_policy, outlier_detection, timeout, connection_pool
- observability: tracing, metrics

Every policy created or updated can be exported to Istio (``orch mesh export``). The rules
that ensure it and are properties of a value (a version label, an endpoint glob, an HTTP
method) live here and refuse a request naming the field and the reason; what depends on
the rendering is checked by ``orchcore.mesh.exportable``. Nothing is normalised: the call
path reads the same values, and a silently rewritten one would mean something else there.
Rows stored before these rules existed are read under ``STORED_ROW``, which skips them:
such a policy still loads, so the call path keeps enforcing it, and the export leaves it
out with a warning.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

PolicyType = Literal["traffic", "security", "observability", "resilience"]
RetryCondition = Literal["connect-failure", "5xx", "429", "timeout"]

SECTIONS_BY_TYPE: dict[str, frozenset[str]] = {
    "traffic": frozenset({"load_balancing", "traffic_splitting", "rate_limiting"}),
    "security": frozenset({"mutual_tls", "authorization"}),
    "resilience": frozenset(
        {"circuit_breaker", "retry_policy", "outlier_detection", "timeout", "connection_pool"}
    ),
    "observability": frozenset({"tracing", "metrics"}),
}

_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
_SERVICE_REF = re.compile(r"^(\*|[a-z][a-z0-9-]{0,62})$")
#: A service name or '*' (any), as the validators check it; the pattern says it in the
#: JSON Schema.
ServiceRef = Annotated[str, Field(json_schema_extra={"pattern": _SERVICE_REF.pattern})]

#: Validation context for rows read back from the database: see the module docstring.
STORED_ROW: dict[str, Any] = {"stored_row": True}


def _reading_stored_row(info: ValidationInfo) -> bool:
    context = info.context
    return isinstance(context, dict) and bool(context.get("stored_row"))


# -- values the Istio export writes as they are -------------------------------------------

LABEL_VALUE_MAX = 63
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)
_LABEL_CHARACTER = re.compile(r"[-A-Za-z0-9_.]")


def is_label_value(value: str) -> bool:
    """A non-empty Kubernetes label value: what a pod's ``version`` label can hold."""
    return len(value) <= LABEL_VALUE_MAX and bool(_LABEL_VALUE.fullmatch(value))


def version_label_problem(value: str) -> str | None:
    """Why ``value`` cannot name a version in a traffic split, or None when it can. The
    export selects a version's pods by their ``version`` label, so a destination must be
    one, and nothing is rewritten: the call path compares it with instance versions."""
    if is_label_value(value):
        return None
    about = (
        "a destination is a version label of the target service such as 1.4.0 (a Kubernetes "
        f"label value: at most {LABEL_VALUE_MAX} letters, digits, '-', '_' or '.', starting "
        "and ending with a letter or digit)"
    )
    if len(value) > LABEL_VALUE_MAX:
        return f"{about}; this one has {len(value)} characters"
    wrong = sorted({c for c in value if not _LABEL_CHARACTER.fullmatch(c)})
    if not wrong:
        return f"{about}; {value!r} does not start and end with a letter or digit"
    service, colon, version = value.rpartition(":")
    hint = (
        f"; the target service is named in target_services, so write {version!r}"
        if colon and service and is_label_value(version)
        else ""
    )
    shown = ", ".join(repr(c) for c in wrong)
    return f"{about}; {value!r} holds {shown}{hint}"


def _check_version_label(value: str, info: ValidationInfo) -> str:
    problem = None if _reading_stored_row(info) else version_label_problem(value)
    if problem:
        raise ValueError(problem)
    return value


VersionLabel = Annotated[
    str,
    AfterValidator(_check_version_label),
    Field(
        min_length=1,
        description="a version of the target service: the `version` label of its pods",
        json_schema_extra={"maxLength": LABEL_VALUE_MAX, "pattern": LABEL_VALUE_PATTERN},
    ),
]

# Istio reads '{' and '}' in a path as a template ({*}, {**}) and refuses any other use.
ENDPOINT_GLOB_PATTERN = r"^[^{}]+$"


def _check_endpoint_glob(value: str, info: ValidationInfo) -> str:
    if _reading_stored_row(info):
        return value
    if not value:
        raise ValueError("an endpoint glob cannot be empty (write '*' for every endpoint)")
    if "{" in value or "}" in value:
        raise ValueError(
            f"{value!r}: endpoints are globs (*, ?, [...]) and Istio refuses '{{' and '}}' "
            "outside its path templates; write e.g. '/bookings/*'"
        )
    return value


EndpointGlob = Annotated[
    str,
    AfterValidator(_check_endpoint_glob),
    Field(
        description="a glob of request paths: *, ? and [...] as in fnmatch",
        json_schema_extra={"minLength": 1, "pattern": ENDPOINT_GLOB_PATTERN},
    ),
]

# RFC 9110's token: what an HTTP method is made of (Istio refuses an empty one).
HTTP_METHOD_PATTERN = r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"
_HTTP_METHOD = re.compile(HTTP_METHOD_PATTERN)


def _check_http_method(value: str, info: ValidationInfo) -> str:
    if not _reading_stored_row(info) and not _HTTP_METHOD.fullmatch(value):
        raise ValueError(f"{value!r} is not an HTTP method such as GET or POST")
    return value


HttpMethod = Annotated[
    str,
    AfterValidator(_check_http_method),
    Field(json_schema_extra={"minLength": 1, "pattern": HTTP_METHOD_PATTERN}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoadBalancingConfig(_Strict):
    algorithm: Literal["round_robin", "least_connections", "weighted"]
    weights: dict[str, int] | None = Field(
        default=None,
        description="instance id or version → weight (weighted algorithm)",
        json_schema_extra={
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 1000}
        },
    )

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and any(w < 0 or w > 1000 for w in value.values()):
            raise ValueError("weights must be whole numbers from 0 to 1000")
        return value


class TrafficRoute(_Strict):
    destination: VersionLabel
    weight: int = Field(ge=0, le=100)
    conditions: dict[str, Any] | None = None


class TrafficSplittingConfig(_Strict):
    routes: list[TrafficRoute] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights_sum(self) -> TrafficSplittingConfig:
        total = sum(route.weight for route in self.routes)
        if total != 100:
            raise ValueError(f"route weights must add up to 100, not {total}")
        destinations = [route.destination for route in self.routes]
        if len(set(destinations)) != len(destinations):
            raise ValueError("each destination may appear in one route only")
        return self


class RateLimitingConfig(_Strict):
    requests_per_second: float = Field(gt=0, le=1_000_000)
    burst_size: int = Field(ge=1, le=1_000_000)


class MutualTlsConfig(_Strict):
    mode: Literal["strict", "permissive", "disabled"]


class RuleConditions(_Strict):
    """Optional narrowing of a rule: HTTP methods and endpoint globs."""

    method: list[HttpMethod] | None = None
    endpoint: list[EndpointGlob] | None = None

    @field_validator("method")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        return [m.upper() for m in value] if value else value


class AuthorizationRule(_Strict):
    from_: list[ServiceRef] = Field(alias="from", min_length=1)
    to: list[ServiceRef] = Field(min_length=1)
    when: RuleConditions = Field(default_factory=RuleConditions)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("from_", "to")
    @classmethod
    def _services(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _SERVICE_REF.match(name):
                raise ValueError(f"{name!r} is not a service name or '*'")
        return value


class AuthorizationConfig(_Strict):
    action: Literal["allow", "deny"] = "allow"
    rules: list[AuthorizationRule] = Field(min_length=1)


class CircuitBreakerConfig(_Strict):
    failure_threshold: int = Field(ge=1, le=10_000)
    timeout_duration: int = Field(ge=0, le=86_400, description="seconds open")
    success_threshold: int | None = Field(default=None, ge=1, le=10_000)
    half_open_max_calls: int | None = Field(default=None, ge=1, le=1_000)


def _default_conditions() -> list[RetryCondition]:
    return ["connect-failure", "5xx", "429"]


class RetryPolicyConfig(_Strict):
    max_attempts: int = Field(ge=1, le=10)
    timeout_per_attempt: float = Field(gt=0, le=300, description="seconds")
    retry_conditions: list[RetryCondition] = Field(default_factory=_default_conditions)
    initial_delay: float = Field(default=0.1, ge=0, le=60, description="seconds")
    multiplier: float = Field(default=2.0, ge=1, le=10)
    max_delay: float = Field(default=5.0, ge=0, le=300)


class OutlierDetectionConfig(_Strict):
    consecutive_5xx: int = Field(default=5, ge=1, le=1000)
    base_ejection_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_ejection_percent: int = Field(default=50, ge=0, le=100)


class ConnectionPoolConfig(_Strict):
    max_connections: int = Field(default=100, ge=1, le=100_000)
    max_pending_requests: int = Field(default=100, ge=1, le=100_000)


class TracingConfig(_Strict):
    sampling_rate: float = Field(ge=0, le=1)
    custom_tags: dict[str, str] = Field(default_factory=dict)


class MetricsConfig(_Strict):
    enabled: bool
    custom_metrics: list[str] = Field(default_factory=list)


class PolicyConfig(_Strict):
    load_balancing: LoadBalancingConfig | None = None
    traffic_splitting: TrafficSplittingConfig | None = None
    rate_limiting: RateLimitingConfig | None = None
    mutual_tls: MutualTlsConfig | None = None
    authorization: AuthorizationConfig | None = None
    circuit_breaker: CircuitBreakerConfig | None = None
    retry_policy: RetryPolicyConfig | None = None
    outlier_detection: OutlierDetectionConfig | None = None
    timeout: float | None = Field(default=None, gt=0, le=3600, description="seconds per call")
    connection_pool: ConnectionPoolConfig | None = None
    tracing: TracingConfig | None = None
    metrics: MetricsConfig | None = None

    def sections(self) -> set[str]:
        return {name for name in type(self).model_fields if getattr(self, name) is not None}


def _check_services(value: list[str]) -> list[str]:
    for name in value:
        if not _SERVICE_REF.match(name):
            raise ValueError(f"{name!r} is not a service name or '*'")
    return value


ServiceRefs = Annotated[list[ServiceRef], AfterValidator(_check_services)]


class CreateMeshPolicyRequest(_Strict):
    policy_name: str = Field(json_schema_extra={"pattern": _NAME.pattern})
    policy_type: PolicyType
    source_services: ServiceRefs = Field(default_factory=list, description="empty: any source")
    target_services: ServiceRefs = Field(default_factory=list, description="empty: any target")
    policy_config: PolicyConfig
    priority: int = Field(default=0, ge=-1000, le=1000)
    is_enabled: bool = True

    @field_validator("policy_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits, '-' and '.' (max 63)")
        return value

    @model_validator(mode="after")
    def _sections_fit_type(self) -> CreateMeshPolicyRequest:
        check_sections(self.policy_type, self.policy_config)
        return self


class UpdateMeshPolicyRequest(_Strict):
    """Partial<CreateMeshPolicyRequest>."""

    policy_type: PolicyType | None = None
    source_services: ServiceRefs | None = None
    target_services: ServiceRefs | None = None
    policy_config: PolicyConfig | None = None
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    is_enabled: bool | None = None


def check_sections(policy_type: str, config: PolicyConfig) -> None:
    sections = config.sections()
    if not sections:
        raise ValueError("policy_config: give at least one section")
    allowed = SECTIONS_BY_TYPE[policy_type]
    misplaced = sorted(sections - allowed)
    if misplaced:
        raise ValueError(
            f"policy_config.{misplaced[0]}: not a {policy_type} setting "
            f"({policy_type} policies hold {', '.join(sorted(allowed))})"
        )


class MeshPolicy(BaseModel):
    """A stored policy; the store reads rows under ``STORED_ROW``."""

    id: UUID
    policy_name: str
    policy_type: PolicyType
    source_services: list[str]
    target_services: list[str]
    policy_config: PolicyConfig
    is_enabled: bool
    priority: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    last_applied_at: datetime | None
    last_applied_by: str | None

    def matches(self, source: str, target: str) -> bool:
        return _matches(self.source_services, source) and _matches(self.target_services, target)


def _matches(names: list[str], name: str) -> bool:
    return not names or "*" in names or name in names
