"""Who may do what. The HTTP API asks :meth:`Principal.require`; so would any other face.

Roles (from the seed's RLS policies, enforced here instead of in the database):
- ``system_admin``: everything
- ``platform_engineer``: read and write
- ``monitoring_system``: read only
- ``service``: register, heartbeat and deregister instances of its own service only;
  start workflows and make guarded calls, always as its own service; send to and
  consume the queues its service is listed on (the bus checks the listing)

Identity comes from the token, never from a field the caller fills in: a service
token acts as its service whatever the request names (:meth:`Principal.acting_as`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID

from orchcore.errors import PermissionDeniedError

Role = Literal["system_admin", "platform_engineer", "monitoring_system", "service"]
ROLES: tuple[Role, ...] = ("system_admin", "platform_engineer", "monitoring_system", "service")


class Action(StrEnum):
    READ = "read"
    WRITE = "write"
    INSTANCE_SELF = "instance_self"  # register/heartbeat/deregister one's own instances
    START_WORKFLOW = "start_workflow"  # as the initiating service acting_as gives
    CALL = "call"  # a guarded call through orch, from the source acting_as gives
    ADMIN = "admin"  # tokens and other access control
    SEND = "send"  # publish to a queue: a service token only as a listed producer
    CONSUME = "consume"  # receive/ack/nack/extend: a service token only as a listed consumer
    INGEST_TRACES = "ingest_traces"  # OTLP span export (POST /v1/traces)


_ALLOWED: dict[Role, frozenset[Action]] = {
    "system_admin": frozenset(Action),
    "platform_engineer": frozenset(
        {
            Action.READ,
            Action.WRITE,
            Action.INSTANCE_SELF,
            Action.START_WORKFLOW,
            Action.CALL,
            Action.SEND,
            Action.CONSUME,
            Action.INGEST_TRACES,
        }
    ),
    "monitoring_system": frozenset({Action.READ}),
    "service": frozenset(
        {
            Action.INSTANCE_SELF,
            Action.START_WORKFLOW,
            Action.CALL,
            Action.SEND,
            Action.CONSUME,
            Action.INGEST_TRACES,
        }
    ),
}


@dataclass(frozen=True)
class Principal:
    token_id: UUID | None
    name: str
    role: Role
    service_name: str | None = None
    #: when the token stops working; None: until revoked
    expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        """How audit rows name this caller."""
        return f"token:{self.name}"

    def may(self, action: Action, *, service_name: str | None = None) -> bool:
        if action not in _ALLOWED[self.role]:
            return False
        if self.role == "service" and action == Action.INSTANCE_SELF:
            return service_name is not None and service_name == self.service_name
        return True

    def require(self, action: Action, *, service_name: str | None = None) -> None:
        if self.may(action, service_name=service_name):
            return
        if self.role == "service" and action == Action.INSTANCE_SELF:
            raise PermissionDeniedError(
                f"token {self.name!r} may only manage instances of service "
                f"{self.service_name!r}, not {service_name!r}"
            )
        raise PermissionDeniedError(f"role {self.role} may not {action.value}")

    def acting_as(self, requested: str | None, *, default: str) -> str:
        """The service this caller speaks for: a service token's own, whatever it asks
        (naming another is refused); an operator's choice, else ``default``."""
        if self.role != "service":
            return default if requested is None else requested
        if self.service_name is None:  # tokens.create refuses this; a row could still
            raise PermissionDeniedError(f"service token {self.name!r} names no service")
        if requested is not None and requested != self.service_name:
            raise PermissionDeniedError(
                f"token {self.name!r} acts as service {self.service_name!r} "
                f"and may not act as {requested[:120]!r}"
            )
        return self.service_name

    def bus_identity(self) -> str | None:
        """Who the bus checks against a queue's producers or consumers: a service token's
        service; ``None`` for an operator, whom the listing does not bind."""
        if self.role != "service":
            return None
        return self.acting_as(None, default="")

    def audits_acting_as(self, requested: str | None) -> bool:
        """Whether acting as ``requested`` is audited: an operator token that names a
        service speaks for a service it is not."""
        return requested is not None and self.role != "service"
