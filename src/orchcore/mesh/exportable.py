"""Whether a mesh policy can be exported to Istio: the one test that creation, update,
enabling and the export all apply, so a policy orch accepts is never one the export
has to leave out.

Two halves: the request model's own rules (``CreateMeshPolicyRequest``, where a rule is a
property of a value), then the policy's Istio rendering checked against the CRD schemas,
one ``policy_config`` section at a time so a problem names the section it comes from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from orchcore.errors import ValidationFailed, validation_failed_from
from orchcore.mesh.istio import ServiceWorkloads, build_istio_documents
from orchcore.mesh.istio_validation import validate_documents
from orchcore.mesh.models import CreateMeshPolicyRequest, MeshPolicy, PolicyConfig

# The service a policy for "any target" is rendered for; any DNS label would do.
STAND_IN_SERVICE = "any-service"
_DRAFT_ID = UUID(int=0)
_DRAFT_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def check_request(request: CreateMeshPolicyRequest) -> None:
    """Refuse (ValidationFailed) a valid request whose Istio rendering is not."""
    check_rendering(_draft(request))


def export_problem(policy: MeshPolicy) -> ValidationFailed | None:
    """Why a stored ``policy`` cannot be exported (the field and the reason), or None.
    A row written before today's rules passes the store's reading but may fail here."""
    try:
        check_request(CreateMeshPolicyRequest.model_validate(request_fields(policy)))
    except ValidationError as exc:
        return validation_failed_from(exc)
    except ValidationFailed as exc:
        return exc
    return None


def check_exportable(policy: MeshPolicy) -> None:
    """Refuse (ValidationFailed) ``policy`` when the export would leave it out."""
    problem = export_problem(policy)
    if problem is not None:
        raise problem


def request_fields(policy: MeshPolicy) -> dict[str, Any]:
    """``policy`` as the CreateMeshPolicyRequest that would create it."""
    return {
        "policy_name": policy.policy_name,
        "policy_type": policy.policy_type,
        "source_services": list(policy.source_services),
        "target_services": list(policy.target_services),
        "policy_config": policy.policy_config.model_dump(
            mode="json", exclude_none=True, by_alias=True
        ),
        "priority": policy.priority,
        "is_enabled": policy.is_enabled,
    }


def check_rendering(policy: MeshPolicy) -> None:
    """Render each section of ``policy`` alone, enabled, for the services it names (or a
    stand-in), and refuse it when the documents fail Istio's schemas."""
    services = [ServiceWorkloads(name) for name in _rendered_for(policy)]
    for section in sorted(policy.policy_config.sections()):
        alone = policy.model_copy(
            update={
                "is_enabled": True,
                "policy_config": PolicyConfig(**{section: getattr(policy.policy_config, section)}),
            }
        )
        try:
            problems = validate_documents(build_istio_documents(services, [alone]))
        except Exception as exc:  # a rendering bug must cost this policy, not the caller
            problems = [f"cannot be rendered ({type(exc).__name__}: {exc})"]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ValidationFailed(
                f"policy_config.{section}", f"its Istio form is invalid: {problems[0]}{more}"
            )


def _rendered_for(policy: MeshPolicy) -> list[str]:
    named = {name for name in policy.target_services if name != "*"}
    if not policy.target_services or "*" in policy.target_services:
        authorization = policy.policy_config.authorization
        rules = authorization.rules if authorization is not None else []
        named |= {name for rule in rules for name in rule.to if name != "*"}
        named.add(STAND_IN_SERVICE)
    return sorted(named)


def _draft(request: CreateMeshPolicyRequest) -> MeshPolicy:
    """The policy as the export will read it once stored (its id and times do not matter)."""
    return MeshPolicy(
        id=_DRAFT_ID,
        policy_name=request.policy_name,
        policy_type=request.policy_type,
        source_services=request.source_services,
        target_services=request.target_services,
        policy_config=request.policy_config,
        is_enabled=request.is_enabled,
        priority=request.priority,
        created_by=None,
        created_at=_DRAFT_TIME,
        updated_at=_DRAFT_TIME,
        last_applied_at=None,
        last_applied_by=None,
    )
