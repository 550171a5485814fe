"""Workflow definitions (the seed's WorkflowDefinition) and the requests around them.

Field names are snake_case as in the seed's tables and API; the seed's camelCase
TypeScript names (serviceName, inputMapping, retryPolicy.maxRetries, ...) are
accepted as aliases. Times in a retry policy are milliseconds, as in the seed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from orchcore.bus.models import QUEUE_NAME
from orchcore.callpath.headers import check_header_value
from orchcore.callpath.refusals import InvalidCallError
from orchcore.saga.paths import PATH, PathError, check_path, check_template
from orchcore.storable import plain_text, storable_document
from orchcore.textrules import HEADER_VALUE_PATTERN

Text = Annotated[str, AfterValidator(plain_text)]


def _header_safe(value: str) -> str:
    """Sent as X-Correlation-ID with every call: a header value's characters only."""
    try:
        return check_header_value("correlation_id", value)
    except InvalidCallError as exc:
        raise ValueError(exc.reason) from None


CorrelationId = Annotated[
    str, AfterValidator(_header_safe), Field(json_schema_extra={"pattern": HEADER_VALUE_PATTERN})
]
Document = Annotated[dict[str, Any], AfterValidator(storable_document)]

#: What a step's method may be, in any case (the validator upper-cases it).
SERVICE_CALL_METHOD_PATTERN = (
    "^([Gg][Ee][Tt]|[Pp][Oo][Ss][Tt]|[Pp][Uu][Tt]|[Pp][Aa][Tt][Cc][Hh]|[Dd][Ee][Ll][Ee][Tt][Ee])$"
)
StepType = Literal["service_call", "decision", "parallel", "delay", "publish"]
CompensationStrategy = Literal["all", "partial", "none"]


def _path(value: str) -> str:
    try:
        return check_path(value)
    except PathError as exc:
        raise ValueError(str(exc)) from None


def _endpoint(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    try:
        return check_template(value)
    except PathError as exc:
        raise ValueError(str(exc)) from None


def _mapping(value: dict[str, str]) -> dict[str, str]:
    for key, path in value.items():
        try:
            check_path(key)
        except PathError as exc:
            raise ValueError(f"{key}: {exc}") from None
        try:
            check_path(path)
        except PathError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return value


Mapping_ = Annotated[
    dict[str, str],
    AfterValidator(_mapping),
    # Both sides are dotted paths: what _mapping checks, said in the JSON Schema.
    Field(
        json_schema_extra={
            "propertyNames": {"pattern": PATH.pattern},
            "additionalProperties": {"type": "string", "pattern": PATH.pattern},
        }
    ),
]
Endpoint = Annotated[str, AfterValidator(_endpoint), Field(json_schema_extra={"pattern": "^/"})]


class _Model(BaseModel):
    """snake_case fields, camelCase accepted, unknown fields refused."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=False,
    )


class _WithOutbox(_Model):
    """A model with outbox fields (:class:`PublishMessage` lists): stored and shown
    without them when unset, so a definition registered before the outbox existed
    still compares equal to itself when registered again."""

    @model_serializer(mode="wrap")
    def _without_unset_outbox(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("publish", "publish_on_completed", "publish_on_compensated"):
            if key in data and not data[key]:
                del data[key]
        return data


class PublishMessage(_Model):
    """A message a step publishes through the outbox: committed in the statement that
    records the step's result, so it is sent if and only if the step is recorded.

    The payload is built from the workflow's context like a request body
    (``{payload field: context path}``); the message's correlation id is the
    workflow's, its producer the workflow's initiating service."""

    queue_name: str = Field(pattern=QUEUE_NAME)
    message_type: str = Field(min_length=1, max_length=200)
    payload_mapping: Mapping_ = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    delay_seconds: int = Field(default=0, ge=0, le=7 * 24 * 3600)
    ttl_seconds: int | None = Field(default=None, ge=1, le=365 * 24 * 3600)


Outbox = Annotated[list[PublishMessage], Field(max_length=20)]


class StepRetryPolicy(_Model):
    max_retries: int = Field(default=3, ge=0, le=100)
    backoff_multiplier: float = Field(default=2.0, ge=1, le=10)
    initial_delay: int = Field(default=500, ge=0, le=3_600_000, description="milliseconds")
    max_delay: int = Field(default=60_000, ge=0, le=86_400_000, description="milliseconds")

    def delay_seconds(self, retry_number: int) -> float:
        """Delay before retry ``retry_number`` (1 for the first)."""
        delay = self.initial_delay * self.backoff_multiplier ** (retry_number - 1)
        return min(delay, self.max_delay) / 1000.0


class CompensationAction(_Model):
    service_name: str = Field(min_length=1)
    endpoint: Endpoint
    method: str = "POST"
    input_mapping: Mapping_ = Field(default_factory=dict)
    retry_policy: StepRetryPolicy = Field(
        default_factory=lambda: StepRetryPolicy(max_retries=5, initial_delay=1000)
    )
    timeout_seconds: float = Field(default=30, gt=0, le=3600)


#: The operators a decision's condition may use.
CONDITION_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists")


class DecisionConditions(_Model):
    """``if`` holds when every path matches; then go to ``then``, else to ``else``.

    A match is a value (equality) or an operator object: eq, ne, gt, gte, lt, lte,
    in, exists. Targets name later steps, or ``end`` to finish the workflow; a
    missing target means: continue with the next step.
    """

    if_: dict[str, Any] = Field(
        alias="if",
        validation_alias=AliasChoices("if", "if_"),
        json_schema_extra={
            "minProperties": 1,
            "propertyNames": {"pattern": PATH.pattern},
            # a value (equality), or an object of operators
            "additionalProperties": {
                "anyOf": [
                    {"not": {"type": "object"}},
                    {"type": "object", "propertyNames": {"enum": list(CONDITION_OPERATORS)}},
                ]
            },
        },
    )
    then: str | None = None
    else_: str | None = Field(
        default=None, alias="else", validation_alias=AliasChoices("else", "else_")
    )

    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        """Stored and shown as written: if / then / else."""
        return {"if": self.if_, "then": self.then, "else": self.else_}

    @field_validator("if_")
    @classmethod
    def _conditions(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("give at least one condition")
        for path, test in value.items():
            _path(path)
            if isinstance(test, dict):
                unknown = set(test) - set(CONDITION_OPERATORS)
                if unknown:
                    raise ValueError(f"{path}: unknown operator {sorted(unknown)[0]!r}")
        return value


class BranchStep(_WithOutbox):
    """A step inside a parallel branch: a service call."""

    name: str = Field(min_length=1, max_length=100)
    type: Literal["service_call"] = "service_call"
    service_name: str = Field(min_length=1)
    endpoint: Endpoint
    method: str = "POST"
    input_mapping: Mapping_ = Field(default_factory=dict)
    output_mapping: Mapping_ = Field(default_factory=dict)
    compensation_action: CompensationAction | None = None
    retry_policy: StepRetryPolicy = Field(default_factory=StepRetryPolicy)
    timeout_seconds: float = Field(default=30, gt=0, le=3600)
    #: published when the call succeeds, with its result
    publish: Outbox | None = None


class Branch(_Model):
    name: str = Field(min_length=1, max_length=100)
    steps: list[BranchStep] = Field(min_length=1)


class WorkflowStep(_WithOutbox):
    name: str = Field(min_length=1, max_length=100)
    type: StepType
    order: int = Field(ge=0, le=10_000)
    service_name: str | None = None
    endpoint: Endpoint | None = None
    method: str = Field(default="POST", json_schema_extra={"pattern": SERVICE_CALL_METHOD_PATTERN})
    input_mapping: Mapping_ = Field(default_factory=dict)
    output_mapping: Mapping_ = Field(default_factory=dict)
    compensation_action: CompensationAction | None = None
    retry_policy: StepRetryPolicy = Field(default_factory=StepRetryPolicy)
    timeout_seconds: float = Field(default=30, gt=0, le=3600)
    conditions: DecisionConditions | None = None
    branches: list[Branch] | None = None
    delay_seconds: float | None = Field(default=None, ge=0, le=30 * 86_400)
    #: a publish step's messages; a service_call step's, published when it succeeds
    publish: Outbox | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        method = value.upper()
        if method not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
            raise ValueError("must be GET, POST, PUT, PATCH or DELETE")
        return method

    @model_validator(mode="after")
    def _fits_type(self) -> WorkflowStep:
        kind = self.type
        if kind == "service_call":
            if not self.service_name or not self.endpoint:
                raise ValueError("a service_call step needs service_name and endpoint")
        elif self.compensation_action is not None:
            raise ValueError(f"compensation_action: a {kind} step has nothing to compensate")
        if kind == "decision" and self.conditions is None:
            raise ValueError("conditions: a decision step needs conditions")
        if kind == "parallel" and not self.branches:
            raise ValueError("branches: a parallel step needs at least one branch")
        if kind != "parallel" and self.branches:
            raise ValueError("branches: only parallel steps have branches")
        if kind == "delay" and self.delay_seconds is None:
            raise ValueError("delay_seconds: a delay step needs delay_seconds")
        if kind == "publish" and not self.publish:
            raise ValueError("publish: a publish step needs at least one message")
        if self.publish and kind not in ("service_call", "publish"):
            raise ValueError(f"publish: a {kind} step publishes nothing")
        if kind in ("decision", "parallel", "delay", "publish") and (
            self.service_name or self.endpoint
        ):
            raise ValueError(f"service_name: a {kind} step calls no service itself")
        return self


class WorkflowDefinition(_WithOutbox):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.-]*$")
    version: str = Field(default="1.0.0", min_length=1, max_length=64)
    description: str | None = None
    steps: list[WorkflowStep] = Field(min_length=1)
    timeout_minutes: float = Field(default=60, gt=0, le=60 * 24 * 30)
    compensation_strategy: CompensationStrategy = "all"
    compensate_steps: list[str] | None = Field(
        default=None, description="with strategy partial: the steps to compensate"
    )
    #: published with the commit that completes the workflow ...
    publish_on_completed: Outbox = Field(default_factory=list)
    #: ... and with the one that ends its compensation
    publish_on_compensated: Outbox = Field(default_factory=list)

    @model_validator(mode="after")
    def _coherent(self) -> WorkflowDefinition:
        names = [s.name for s in self.steps]
        branch_names = [b.name for s in self.steps for br in s.branches or [] for b in br.steps]
        duplicated = _first_duplicate(names + branch_names)
        if duplicated:
            raise ValueError(f"steps: the step name {duplicated!r} is used twice")
        orders = [s.order for s in self.steps]
        duplicated_order = _first_duplicate(orders)
        if duplicated_order is not None:
            raise ValueError(f"steps: the order {duplicated_order} is used twice")
        ordered = sorted(self.steps, key=lambda s: s.order)
        position = {s.name: i for i, s in enumerate(ordered)}
        for step in ordered:
            if step.branches:
                branch_ids = [b.name for b in step.branches]
                if _first_duplicate(branch_ids):
                    raise ValueError(f"steps.{step.name}.branches: branch names repeat")
            if step.conditions is not None:
                for target in (step.conditions.then, step.conditions.else_):
                    if target is None or target == "end":
                        continue
                    if target not in position:
                        raise ValueError(f"steps.{step.name}.conditions: no step {target!r}")
                    if position[target] <= position[step.name]:
                        raise ValueError(
                            f"steps.{step.name}.conditions: {target!r} is not a later step "
                            "(decisions jump forward only)"
                        )
        if self.compensation_strategy == "partial":
            if not self.compensate_steps:
                raise ValueError("compensate_steps: strategy partial names the steps to undo")
            unknown = set(self.compensate_steps) - set(names + branch_names)
            if unknown:
                raise ValueError(f"compensate_steps: no step {sorted(unknown)[0]!r}")
        self.steps = ordered
        return self

    def queues(self) -> set[str]:
        """The queues the workflow publishes to."""
        found = {m.queue_name for m in self.publish_on_completed + self.publish_on_compensated}
        for step in self.steps:
            found.update(m.queue_name for m in step.publish or [])
            for branch in step.branches or []:
                for inner in branch.steps:
                    found.update(m.queue_name for m in inner.publish or [])
        return found

    def services(self) -> set[str]:
        found: set[str] = set()
        for step in self.steps:
            if step.service_name:
                found.add(step.service_name)
            if step.compensation_action:
                found.add(step.compensation_action.service_name)
            for branch in step.branches or []:
                for inner in branch.steps:
                    found.add(inner.service_name)
                    if inner.compensation_action:
                        found.add(inner.compensation_action.service_name)
        return found


def _first_duplicate(values: list[Any]) -> Any:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


class RegisteredDefinition(BaseModel):
    id: UUID
    workflow_name: str
    workflow_version: str
    definition: WorkflowDefinition
    created_by: str
    created_at: datetime
    warnings: list[str] = Field(default_factory=list)


class StartWorkflowRequest(_Model):
    """The seed's StartWorkflowRequest."""

    workflow_name: Text = Field(min_length=1)
    workflow_version: Text | None = None
    correlation_id: CorrelationId | None = Field(default=None, min_length=1, max_length=200)
    wedding_id: UUID | None = None
    initiating_service: Text = Field(default="orch", min_length=1)
    context_data: Document = Field(default_factory=dict)
    timeout_minutes: float | None = Field(default=None, gt=0, le=60 * 24 * 30)


class StartWorkflowResponse(BaseModel):
    workflow_id: UUID
    correlation_id: str
    status: str
    estimated_duration_minutes: float
    created: bool = True


class RetryWorkflowRequest(_Model):
    """The seed's RetryWorkflowRequest."""

    retry_strategy: Literal["current_step", "failed_steps", "from_step"] = "current_step"
    from_step: int | None = Field(default=None, ge=0, le=10_000)  # a step's order
    max_retries: int | None = Field(default=None, ge=0, le=100)
    reason: Text | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _from_step(self) -> RetryWorkflowRequest:
        if self.retry_strategy == "from_step" and self.from_step is None:
            raise ValueError("from_step: retry_strategy from_step needs from_step")
        return self


class CompensateWorkflowRequest(_Model):
    """The seed's CompensateWorkflowRequest."""

    reason: Text = Field(min_length=1, max_length=500)
    compensation_strategy: Literal["all", "partial", "custom"] = "all"
    custom_steps: list[Text] | None = None

    @model_validator(mode="after")
    def _custom(self) -> CompensateWorkflowRequest:
        if self.compensation_strategy == "custom" and not self.custom_steps:
            raise ValueError("custom_steps: strategy custom names the steps to compensate")
        return self
