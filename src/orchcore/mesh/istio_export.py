"""``orch mesh export --format istio``: the documents of every exportable policy, and what
was left out and why.

One stored policy never breaks the export of the others. A policy that does not read
under today's shapes, or that fails today's rules or whose Istio form fails the CRD
schemas (rows written before those rules or by hand), is left out and named with the
reason; so is a service whose own documents would not validate (a registry name Istio
cannot use). Everything else is exported as if the left-out parts did not exist, which
for an authorization policy means its rules are missing: the warning says so.
``orch mesh export --strict`` refuses to write such a partial export.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from pydantic import BaseModel

from orchcore.errors import NotFoundError, ValidationFailed
from orchcore.mesh.exportable import export_problem
from orchcore.mesh.istio import (
    _DNS_LABEL,
    Document,
    ServiceWorkloads,
    Workload,
    build_istio_documents,
    dump_yaml,
)
from orchcore.mesh.istio_validation import validate_documents
from orchcore.mesh.models import MeshPolicy
from orchcore.mesh.store import MeshPolicies, UnreadablePolicy
from orchcore.registry.store import ServiceRegistry


class LeftOut(BaseModel):
    """A policy or service missing from an export, and why."""

    kind: Literal["policy", "service"]
    name: str
    reason: str

    def message(self) -> str:
        return f"{self.kind} {self.name} left out of this export: {self.reason}"


class IstioExport(BaseModel):
    """Valid Istio documents, and what could not be part of them."""

    documents: list[Document]
    left_out: list[LeftOut]

    def yaml(self) -> str:
        """Multi-document YAML, each left-out part named by a comment line at the top."""
        header = "".join(f"# orch: {' '.join(item.message().split())}\n" for item in self.left_out)
        return header + dump_yaml(self.documents)


class OrchState(Protocol):
    """The part of the Orch facade the export reads (kept as a protocol: mesh sits below it)."""

    @property
    def mesh(self) -> MeshPolicies: ...

    @property
    def registry(self) -> ServiceRegistry: ...


async def export_istio(
    orch: OrchState, *, service: str | None = None, namespace: str = "default"
) -> IstioExport:
    """The Istio export for every active service, or only ``service``, from the mesh
    policies and the live instances as they are now."""
    if not _DNS_LABEL.fullmatch(namespace):
        raise ValidationFailed("namespace", "must be a DNS-1123 label such as 'weddings'")
    services = await orch.registry.list_services()
    if service is not None:
        services = [s for s in services if s.service_name == service]
        if not services:
            raise NotFoundError("service", service)
    inputs = []
    for entry in services:
        instances = await orch.registry.list_instances(entry.service_name)
        workloads = tuple(
            Workload(i.instance_id, i.version, int(i.metadata.get("weight", 1))) for i in instances
        )
        inputs.append(ServiceWorkloads(entry.service_name, entry.load_balancing, workloads))
    stored = await orch.mesh.stored_policies()
    return assemble_export(inputs, stored.policies, stored.unreadable, namespace=namespace)


def assemble_export(
    services: Iterable[ServiceWorkloads],
    policies: Iterable[MeshPolicy],
    unreadable: Sequence[UnreadablePolicy] = (),
    *,
    namespace: str = "default",
) -> IstioExport:
    """Every exportable enabled policy rendered for ``services``, each service's documents
    validated on their own so one that fails costs only that service."""
    left_out = [LeftOut(kind="policy", name=r.policy_name, reason=r.reason) for r in unreadable]
    exported: list[MeshPolicy] = []
    for policy in policies:
        # A disabled policy is never rendered, so it cannot spoil the export.
        problem = export_problem(policy) if policy.is_enabled else None
        if problem is None:
            exported.append(policy)
        else:
            reason = _consequence(policy, problem)
            left_out.append(LeftOut(kind="policy", name=policy.policy_name, reason=reason))
    documents: list[Document] = []
    for service in sorted(services, key=lambda s: s.name):
        try:
            rendered = build_istio_documents([service], exported, namespace=namespace)
            problems = validate_documents(rendered)
        except Exception as exc:  # a rendering bug must cost this service only
            problems = [f"cannot be rendered ({type(exc).__name__}: {exc})"]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            left_out.append(LeftOut(kind="service", name=service.name, reason=problems[0] + more))
        else:
            documents += rendered
    return IstioExport(documents=documents, left_out=left_out)


def _consequence(policy: MeshPolicy, problem: ValidationFailed) -> str:
    authorization = policy.policy_config.authorization
    if authorization is None:
        return str(problem)
    if authorization.action == "deny":
        return f"{problem}; its deny rules are missing, so Istio lets through what orch denies"
    return f"{problem}; its allow rules are missing, so Istio does not admit callers as orch does"
