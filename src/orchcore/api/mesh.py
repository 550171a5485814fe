"""Mesh policy routes (the seed's shapes) and the Istio export."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from orchcore.api.auth import Caller, Engine, allowed
from orchcore.api.contract import ContractRoute, OperatorsReason
from orchcore.auth import Action
from orchcore.mesh.istio_export import IstioExport, export_istio
from orchcore.mesh.models import CreateMeshPolicyRequest, MeshPolicy, UpdateMeshPolicyRequest
from orchcore.mesh.store import ApplyPolicyResponse, GetMeshPoliciesResponse
from orchcore.textrules import DNS_LABEL_PATTERN

router = APIRouter(prefix="/api/orchestration/mesh", tags=["mesh"], route_class=ContractRoute)


@router.get(
    "/policies", response_model=GetMeshPoliciesResponse, dependencies=[allowed(Action.READ)]
)
async def list_policies(orch: Engine) -> GetMeshPoliciesResponse:
    return await orch.mesh.overview()


@router.post(
    "/policies",
    response_model=MeshPolicy,
    status_code=status.HTTP_201_CREATED,
    dependencies=[allowed(Action.WRITE)],
)
async def create_policy(
    request: CreateMeshPolicyRequest, orch: Engine, caller: Caller
) -> MeshPolicy:
    return await orch.mesh.create(request, actor=caller.actor)


@router.get("/policies/{policy_id}", response_model=MeshPolicy, dependencies=[allowed(Action.READ)])
async def get_policy(policy_id: str, orch: Engine) -> MeshPolicy:
    return await orch.mesh.get(policy_id)


@router.put(
    "/policies/{policy_id}", response_model=MeshPolicy, dependencies=[allowed(Action.WRITE)]
)
async def update_policy(
    policy_id: str, request: UpdateMeshPolicyRequest, orch: Engine, caller: Caller
) -> MeshPolicy:
    return await orch.mesh.update(policy_id, request, actor=caller.actor)


@router.delete(
    "/policies/{policy_id}", response_model=MeshPolicy, dependencies=[allowed(Action.WRITE)]
)
async def delete_policy(
    policy_id: str,
    orch: Engine,
    caller: Caller,
    reason: str | None = Query(default=None, max_length=500),
) -> MeshPolicy:
    return await orch.mesh.delete(policy_id, actor=caller.actor, reason=reason)


@router.post(
    "/policies/{policy_id}/apply",
    response_model=ApplyPolicyResponse,
    dependencies=[allowed(Action.WRITE)],
)
async def apply_policy(policy_id: str, orch: Engine, caller: Caller) -> ApplyPolicyResponse:
    return await orch.mesh.apply(policy_id, actor=caller.actor)


@router.get(
    "/export",
    # Declared as JSON so the IstioExport schema is documented under application/json.
    # The default answer is application/yaml: a stream of YAML documents (one a
    # resource, for kubectl apply -f), which no one schema describes (a parser reads
    # one document, or none from an export with nothing in it), so it has none.
    response_class=JSONResponse,
    dependencies=[allowed(Action.READ)],
    responses={
        404: {"description": "no service of that name"},
        200: {
            "model": IstioExport,
            "content": {"application/yaml": {}},
            "description": "application/yaml (the default): the Istio resources as YAML "
            "documents, each part left out named by a comment at the top; with "
            "output=json: the documents and what was left out",
            "headers": {
                "X-Orch-Left-Out": {
                    "description": "how many policies or services were left out",
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
        },
    },
)
async def export(
    orch: Engine,
    service: str | None = None,
    namespace: Annotated[
        str, Query(description="a DNS-1123 label", json_schema_extra={"pattern": DNS_LABEL_PATTERN})
    ] = "default",
    format: str = Query(default="istio", pattern="^istio$"),
    output: Literal["yaml", "json"] = "yaml",
) -> Response:
    """The Istio export. A stored policy or service that cannot be exported validly is
    left out, the rest exported: ``X-Orch-Left-Out`` counts what was left out."""
    result = await export_istio(orch, service=service, namespace=namespace)
    headers = {"X-Orch-Left-Out": str(len(result.left_out))}
    if output == "json":
        return JSONResponse(result.model_dump(mode="json"), headers=headers)
    return PlainTextResponse(result.yaml(), media_type="application/yaml", headers=headers)


def _enabling(enabled: bool) -> Any:
    async def enable_or_disable(
        policy_id: str, request: OperatorsReason, orch: Engine, caller: Caller
    ) -> MeshPolicy:
        return await orch.mesh.set_enabled(
            policy_id, enabled, actor=caller.actor, reason=request.reason
        )

    enable_or_disable.__doc__ = (
        "Enable the policy, with the reason audited."
        if enabled
        else "Disable the policy (it stays, and applies again when enabled), reason audited."
    )
    return enable_or_disable


# One route a verb, as the breakers' operator states are.
for _verb, _enabled in (("enable", True), ("disable", False)):
    router.add_api_route(
        f"/policies/{{policy_id}}/{_verb}",
        _enabling(_enabled),
        methods=["POST"],
        name=f"{_verb}_policy",
        response_model=MeshPolicy,
        dependencies=[allowed(Action.WRITE)],
    )
