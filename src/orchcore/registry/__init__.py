"""Service registry, health checking and discovery."""

from orchcore.registry.discovery import ServiceDiscovery
from orchcore.registry.health import InstanceHealthChecker
from orchcore.registry.models import (
    HealthCheckConfig,
    Instance,
    InstanceStateEvent,
    RegisterInstanceRequest,
    RegisterServiceRequest,
    Service,
    UpdateServiceRequest,
)
from orchcore.registry.store import ServiceRegistry

__all__ = [
    "HealthCheckConfig",
    "Instance",
    "InstanceHealthChecker",
    "InstanceStateEvent",
    "RegisterInstanceRequest",
    "RegisterServiceRequest",
    "Service",
    "ServiceDiscovery",
    "ServiceRegistry",
    "UpdateServiceRequest",
]
