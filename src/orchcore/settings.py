"""Settings read once from the environment (and overridden by CLI flags)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from orchcore.errors import ValidationFailed

if TYPE_CHECKING:
    from orchcore.callpath.tls import TlsSettings

#: History the daemons remove after so many days (0: kept forever), by setting:
#: call events are the bulk and the least looked at; the audit log is kept for a year.
HISTORY_RETENTION_DAYS = {
    "service_event_retention_days": 30.0,
    "workflow_event_retention_days": 90.0,
    "breaker_transition_retention_days": 90.0,
    "audit_retention_days": 365.0,
}


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/orch``; as root with no XDG_DATA_HOME, ``/var/lib/orch``.

    As root the embedded server runs as an unprivileged user, which cannot enter
    ``/root``; a system location avoids loosening the permissions of root's home.
    """
    if os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "orch"
    if os.geteuid() == 0:
        return Path("/var/lib/orch")
    return Path.home() / ".local" / "share" / "orch"


def _pairs(text: str) -> dict[str, str]:
    pairs = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = value.strip()
    return pairs


class Settings(BaseModel):
    """What a face needs to reach the database and describe where it is."""

    database_url: str | None = Field(
        default=None, description="PostgreSQL DSN; unset means the embedded server"
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    environment: str = "development"
    listen: str = "127.0.0.1:7400"
    pool_min_size: int = 1
    pool_max_size: int = 10
    log_format: str = "json"
    tls_ca_file: str | None = Field(default=None, description="CA that signs services' certs")
    tls_cert_file: str | None = Field(default=None, description="client certificate (mTLS)")
    tls_key_file: str | None = Field(default=None, description="client certificate's key")
    tracing: bool = Field(default=True, description="record spans (ORCH_TRACING=off: none)")
    trace_retention_hours: float | None = Field(
        default=None, gt=0, description="spans kept this long (default 72 h; 1 h when exporting)"
    )
    otlp_export_endpoint: str | None = Field(
        default=None, description="forward every span to this OTLP/HTTP endpoint"
    )
    otlp_export_headers: dict[str, str] = Field(default_factory=dict)
    service_event_retention_days: float = Field(
        default=HISTORY_RETENTION_DAYS["service_event_retention_days"],
        ge=0,
        description="call events kept this long (0: forever)",
    )
    workflow_event_retention_days: float = Field(
        default=HISTORY_RETENTION_DAYS["workflow_event_retention_days"],
        ge=0,
        description="timelines of workflows finished this long ago kept (0: forever)",
    )
    breaker_transition_retention_days: float = Field(
        default=HISTORY_RETENTION_DAYS["breaker_transition_retention_days"],
        ge=0,
        description="breaker state changes kept this long (0: forever)",
    )
    audit_retention_days: float = Field(
        default=HISTORY_RETENTION_DAYS["audit_retention_days"],
        ge=0,
        description="the audit log kept this long (0: forever)",
    )
    api_max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=0, description="larger API request bodies get 413"
    )
    events_heartbeat_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="an idle event stream sends a heartbeat this often (a dead link shows)",
    )

    @property
    def span_retention_hours(self) -> float:
        if self.trace_retention_hours is not None:
            return self.trace_retention_hours
        return 1.0 if self.otlp_export_endpoint else 72.0

    def tls(self) -> TlsSettings | None:
        if not (self.tls_ca_file or self.tls_cert_file):
            return None
        # Imported here: the TLS module brings httpx, which most CLI verbs never use.
        from orchcore.callpath.tls import TlsSettings

        return TlsSettings(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {}
        if env.get("ORCH_DATABASE_URL"):
            values["database_url"] = env["ORCH_DATABASE_URL"]
        if env.get("ORCH_DATA_DIR"):
            values["data_dir"] = Path(env["ORCH_DATA_DIR"])
        if env.get("ORCH_ENVIRONMENT"):
            values["environment"] = env["ORCH_ENVIRONMENT"]
        if env.get("ORCH_LISTEN"):
            values["listen"] = env["ORCH_LISTEN"]
        if env.get("ORCH_LOG_FORMAT"):
            values["log_format"] = env["ORCH_LOG_FORMAT"]
        if env.get("ORCH_TRACING"):
            switch = env["ORCH_TRACING"].strip().lower()
            values["tracing"] = switch not in ("0", "off", "false", "no")
        if env.get("ORCH_TRACE_RETENTION_HOURS"):
            values["trace_retention_hours"] = env["ORCH_TRACE_RETENTION_HOURS"]
        if env.get("ORCH_OTLP_EXPORT_ENDPOINT"):
            values["otlp_export_endpoint"] = env["ORCH_OTLP_EXPORT_ENDPOINT"]
        if env.get("ORCH_OTLP_EXPORT_HEADERS"):  # "k=v,k2=v2", as OTEL_EXPORTER_OTLP_HEADERS
            values["otlp_export_headers"] = _pairs(env["ORCH_OTLP_EXPORT_HEADERS"])
        if env.get("ORCH_API_MAX_BODY_BYTES"):
            values["api_max_body_bytes"] = env["ORCH_API_MAX_BODY_BYTES"]
        for name in (
            "tls_ca_file",
            "tls_cert_file",
            "tls_key_file",
            "events_heartbeat_seconds",
            *HISTORY_RETENTION_DAYS,
        ):
            if env.get(f"ORCH_{name.upper()}"):
                values[name] = env[f"ORCH_{name.upper()}"]
        given = {k: v for k, v in overrides.items() if v is not None}
        from_env = set(values) - set(given)
        values.update(given)
        try:
            return cls.model_validate(values)
        except PydanticValidationError as exc:
            raise _refusal(exc, from_env=from_env) from None


def _refusal(exc: PydanticValidationError, *, from_env: set[str]) -> ValidationFailed:
    """One line naming what the operator set (the environment variable) and why not."""
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "settings"
    name = f"ORCH_{field.upper()}" if field in from_env else field
    return ValidationFailed(name, f"{error['msg'].lower()}, got {error.get('input')!r}")
