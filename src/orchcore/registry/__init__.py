"""Service registry, health checking and discovery."""

from typing import TYPE_CHECKING

from orchcore.lazy import lazy_members

if TYPE_CHECKING:
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

# Imported when first read (see orchcore.lazy): importing one module of the package
# must not import all of them.
__getattr__, __dir__ = lazy_members(
    __name__,
    {
        "orchcore.registry.discovery": ("ServiceDiscovery",),
        "orchcore.registry.health": ("InstanceHealthChecker",),
        "orchcore.registry.models": (
            "HealthCheckConfig",
            "Instance",
            "InstanceStateEvent",
            "RegisterInstanceRequest",
            "RegisterServiceRequest",
            "Service",
            "UpdateServiceRequest",
        ),
        "orchcore.registry.store": ("ServiceRegistry",),
    },
)
