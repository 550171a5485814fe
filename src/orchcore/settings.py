"""Settings read once from the environment (and overridden by CLI flags)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from orchcore.callpath.tls import TlsSettings


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
    trace_retention_hours: float = Field(default=72.0, gt=0, description="spans kept this long")

    def tls(self) -> TlsSettings | None:
        if not (self.tls_ca_file or self.tls_cert_file):
            return None
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
        for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            if env.get(f"ORCH_{name.upper()}"):
                values[name] = env[f"ORCH_{name.upper()}"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
