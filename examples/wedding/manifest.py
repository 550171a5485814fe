"""What orch is told about the example wedding platform: one registration per service.

Pure data and small functions, importable without orchcore (the demo, the
tests and the platform script all read it; the platform takes its versions from
here so the versions it announces match what is registered).

Dependency graph (what each service calls on its own, as the service map shows it)::

    catering ─────┬──> venue ──> payment ──> notification
    photographer ─┘
    (venue, catering and photographer also call notification directly)

- booking is the booking site's backend: it starts the full-service booking saga,
  so every call the saga makes comes from it (it depends on all five).
- notification is the leaf: every other service sends its confirmations through it.
- payment sends receipts (-> notification).
- venue takes the deposit (-> payment) and confirms the date (-> notification).
- catering and photographer need the venue's date, address and guest count
  (-> venue) and confirm their booking (-> notification).

The graph is acyclic, so a saga books venue first and compensates it last. The
example services only declare these dependencies; they do not call each other
(orch's sagas do the calling).
"""

from __future__ import annotations

from typing import Any

#: Every service of the platform with the version its instances report.
SERVICE_VERSIONS: dict[str, str] = {
    "booking": "2.3.0",
    "venue": "1.4.0",
    "catering": "2.1.0",
    "photographer": "1.2.3",
    "payment": "3.0.1",
    "notification": "1.0.5",
}

#: Instances per service for a lively demo (two of each busy service to balance over).
DEFAULT_INSTANCES = "booking=1,venue=2,catering=1,photographer=2,payment=1,notification=1"

#: The service that starts the platform's sagas (their calls come from it).
INITIATOR = "booking"

#: Who each service calls (see the module docstring for why).
DEPENDENCIES: dict[str, list[str]] = {
    "booking": ["venue", "catering", "photographer", "payment", "notification"],
    "venue": ["payment", "notification"],
    "catering": ["venue", "notification"],
    "photographer": ["venue", "notification"],
    "payment": ["notification"],
    "notification": [],
}

_DESCRIPTIONS = {
    "booking": "The booking site's backend: starts full-service bookings",
    "venue": "Venue reservations: holds a venue for a wedding date",
    "catering": "Catering orders: menus priced per guest",
    "photographer": "Photographer bookings by date and package",
    "payment": "Charges and refunds for wedding deposits and balances",
    "notification": "Email, SMS and push notifications to couples and vendors",
}

_OWNERS = {
    "booking": "platform",
    "venue": "venues",
    "catering": "vendors",
    "photographer": "vendors",
    "payment": "payments",
    "notification": "platform",
}

# (cpu_limit, memory_limit, min_replicas, max_replicas): payment and notification
# stay small and steady; the booking services scale with peak-season traffic.
_SIZING: dict[str, tuple[str, str, int, int]] = {
    "booking": ("250m", "256Mi", 1, 4),
    "venue": ("500m", "256Mi", 2, 6),
    "catering": ("250m", "256Mi", 1, 4),
    "photographer": ("250m", "128Mi", 2, 4),
    "payment": ("500m", "512Mi", 1, 3),
    "notification": ("250m", "128Mi", 1, 3),
}

# Photographers take long bookings of very different lengths: least connections
# spreads them better than turn-taking.
_BALANCING = {"photographer": "least_connections"}

#: Checked every 2 s with a 1 s timeout, so a demo reacts within a few seconds.
DEMO_HEALTH_CHECK: dict[str, Any] = {"interval_seconds": 2, "timeout_seconds": 1}


def registration(service: str) -> dict[str, Any]:
    """The RegisterServiceRequest (the seed's shape) of one service, as a fresh dict."""
    cpu, memory, min_replicas, max_replicas = _SIZING[service]
    return {
        "service_name": service,
        "service_version": SERVICE_VERSIONS[service],
        "service_type": "api",
        "service_description": _DESCRIPTIONS[service],
        "deployment_environment": "development",
        "base_url": "http://127.0.0.1",
        "health_check_endpoint": "/health",
        # The example services expose no Prometheus endpoint; say so rather than
        # inherit the default "/metrics".
        "metrics_endpoint": None,
        "owner_team": _OWNERS[service],
        "dependencies": list(DEPENDENCIES[service]),
        "resource_requirements": {"cpu_limit": cpu, "memory_limit": memory},
        "scaling_config": {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_cpu_percent": 70,
        },
        "health_check": dict(DEMO_HEALTH_CHECK),
        "load_balancing": _BALANCING.get(service, "round_robin"),
    }


def registrations() -> list[dict[str, Any]]:
    """All six registrations, dependencies before their dependents."""
    order = ["notification", "payment", "venue", "catering", "photographer", "booking"]
    return [registration(service) for service in order]


#: The queue the booking saga publishes its outcome to (booking.confirmed when the couple
#: is told, booking.failed when the booking was rolled back); orch's daemons push each
#: event to the notification service's /events.
BOOKING_EVENTS = "booking_events"


def queue_registrations() -> list[dict[str, Any]]:
    """The CreateMessageQueueRequests (the seed's shape) of the platform's queues."""
    return [
        {
            "queue_name": BOOKING_EVENTS,
            "queue_type": "queue",
            "producer_services": [INITIATOR],
            "consumer_services": ["notification"],
            "push_endpoint": "/events",
            "visibility_timeout_seconds": 10,
            "dlq_enabled": True,
            "dlq_max_retries": 3,
            "retention_hours": 24,
            "monitoring_config": {"alert_on_backlog": 100, "alert_on_processing_time": 2000},
        }
    ]


def instance_registration(announcement: dict[str, Any]) -> dict[str, Any]:
    """The RegisterInstanceRequest for one JSON line the platform printed."""
    return {
        "instance_id": announcement["instance_id"],
        "node_name": "wedding-platform",
        "ip_address": announcement["host"],
        "port": announcement["port"],
        "version": announcement["version"],
        "metadata": {"example": "wedding"},
    }
