"""Bearer tokens: shown once at creation, stored as SHA-256, revocable, and
optionally expiring (``expires_in``): an expired token is refused as such.

Tokens are 32 random bytes, so a fast hash is enough: there is nothing to
brute-force, and verification stays one indexed lookup per request.

A verified token is trusted for a few seconds without a lookup: on a busy daemon the
lookup was one database transaction per request. A revocation drops it from every
process's cache at once (it is NOTIFYed); should the notification be lost, the token
still stops working when its cache entry expires. A token's expiry is checked on every
use, cached or not, against the engine's clock.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from orchcore.audit import record_action
from orchcore.auth.roles import ROLES, Principal, Role
from orchcore.clock import Clock
from orchcore.db import Database, Queries
from orchcore.db.listen import NotificationListener
from orchcore.errors import ConflictError, NotFoundError, OrchError, ValidationFailed
from orchcore.registry.models import check_service_name

TOKEN_PREFIX = "orch_"
_LAST_USED_GRANULARITY = timedelta(minutes=1)
#: How long a verified token is trusted without looking it up again.
VERIFIED_TTL_SECONDS = 5.0
#: The longest lifetime a token may be given (``--expires-in``): ten years.
MAX_LIFETIME = timedelta(days=3650)
_LIFETIME = re.compile(r"([1-9][0-9]{0,9})([smhd])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

Q = Queries("orchcore.auth")


class ApiToken(BaseModel):
    id: UUID
    token_name: str
    token_prefix: str
    role: Role
    service_name: str | None
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class Unauthenticated(OrchError):
    """No token, or one that is unknown, revoked or expired. The message says which of
    those three, never more (not whose token it was, nor when it expired)."""

    http_status = 401

    def __init__(self, message: str, *, challenge: str = 'Bearer error="invalid_token"') -> None:
        super().__init__(message)
        #: The ``WWW-Authenticate`` value an HTTP face answers with (RFC 6750).
        self.challenge = challenge


def parse_lifetime(text: str) -> timedelta:
    """A token's lifetime written as a count and one unit: ``30s``, ``30m``, ``12h``,
    ``90d``. Anything else (``1.5h``, ``0d``, ``90 d``, ``1w``) is refused, not guessed."""
    match = _LIFETIME.fullmatch(text)
    if match is None:
        raise ValidationFailed(
            "expires-in", f"expected a whole number and s, m, h or d (30s, 12h, 90d), got {text!r}"
        )
    lifetime = timedelta(**{_UNIT[match[2]]: int(match[1])})
    if lifetime > MAX_LIFETIME:
        raise ValidationFailed("expires-in", f"at most {MAX_LIFETIME.days}d, got {text!r}")
    return lifetime


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    def __init__(
        self, db: Database, clock: Clock, listener: NotificationListener | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        # digest -> (monotonic deadline, principal, the token's expiry); monotonic, not
        # the engine's clock: the deadline is a cache's lifetime, not a fact about the
        # platform. The token's own expiry is one, and is checked on the engine's clock.
        self._verified: dict[bytes, tuple[float, Principal, datetime | None]] = {}
        if listener is not None:
            listener.subscribe(self._on_notification)
            listener.on_reconnect(self.forget_verified)

    def _on_notification(self, message: dict[str, Any]) -> None:
        if message.get("topic") == "token":
            self.forget_verified()

    def forget_verified(self) -> None:
        """Look every token up again (a revocation, or notifications that may be lost)."""
        self._verified.clear()

    async def create(
        self,
        *,
        name: str,
        role: str,
        service_name: str | None = None,
        actor: str,
        expires_in: timedelta | None = None,
    ) -> tuple[str, ApiToken]:
        """Make a token (valid for ``expires_in`` when given, else until revoked); the
        secret is returned once and never stored."""
        if role not in ROLES:
            raise ValidationFailed("role", f"must be one of {', '.join(ROLES)}")
        if role == "service" and not service_name:
            raise ValidationFailed("service", "a service token must name its service")
        if role != "service" and service_name:
            raise ValidationFailed("service", "only tokens of role 'service' name a service")
        if service_name:
            try:
                check_service_name(service_name)
            except ValueError as exc:
                raise ValidationFailed("service", str(exc)) from None
        if not name.strip():
            raise ValidationFailed("name", "must not be empty")
        if expires_in is not None and not timedelta(0) < expires_in <= MAX_LIFETIME:
            raise ValidationFailed("expires-in", f"must be positive and at most {MAX_LIFETIME}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now()
        expires_at = None if expires_in is None else now + expires_in
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                Q.insert_token,
                name,
                secret[:12],
                _digest(secret),
                role,
                service_name,
                actor,
                now,
                expires_at,
            )
            assert row is not None
            await record_action(
                conn,
                actor=actor,
                action="token.create",
                target_kind="token",
                target_id=str(row["id"]),
                at=now,
                details={
                    "role": role,
                    "name": name,
                    "expires_at": None if expires_at is None else expires_at.isoformat(),
                },
            )
        return secret, ApiToken.model_validate(dict(row))

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal behind a bearer token, or None if unknown, revoked or expired."""
        try:
            return await self.verify(secret)
        except Unauthenticated:
            return None

    async def verify(self, secret: str) -> Principal:
        """The principal behind a bearer token; :class:`Unauthenticated` saying whether
        it is unknown or revoked, or expired."""
        if not secret.startswith(TOKEN_PREFIX):
            raise Unauthenticated("unknown or revoked token")
        digest = _digest(secret)
        now = self._clock.now()
        cached = self._verified.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            _refuse_expired(cached[2], now)
            return cached[1]
        row = await self._db.fetchrow(Q.token_by_hash, digest)
        if row is None or row["revoked_at"] is not None:
            raise Unauthenticated("unknown or revoked token")
        _refuse_expired(row["expires_at"], now)
        last = row["last_used_at"]
        if last is None or now - last > _LAST_USED_GRANULARITY:
            await self._db.execute(Q.touch_token, row["id"], now)
        principal = Principal(
            row["id"], row["token_name"], row["role"], row["service_name"], row["expires_at"]
        )
        deadline = time.monotonic() + VERIFIED_TTL_SECONDS
        self._verified[digest] = (deadline, principal, row["expires_at"])
        return principal

    async def list_tokens(self, *, include_revoked: bool = False) -> list[ApiToken]:
        rows = await self._db.fetch(Q.list_tokens, include_revoked)
        return [ApiToken.model_validate(dict(row)) for row in rows]

    async def revoke(self, key: str, *, actor: str) -> ApiToken:
        """Revoke the one active token whose id, id prefix (8+) or printed prefix is ``key``."""
        now = self._clock.now()
        key = key.removesuffix("…")
        async with self._db.transaction() as conn:
            matches = await conn.fetch(Q.active_tokens_matching, key)
            if not matches:
                raise NotFoundError("active token", key)
            if len(matches) > 1:
                names = ", ".join(f"{m['token_name']} ({m['id']})" for m in matches)
                raise ConflictError(f"{key!r} matches {len(matches)} tokens: {names}")
            row = await conn.fetchrow(Q.revoke_token, matches[0]["id"], now, actor)
            assert row is not None
            await conn.execute(Q.notify_token_revoked, row["id"])
            await record_action(
                conn,
                actor=actor,
                action="token.revoke",
                target_kind="token",
                target_id=str(row["id"]),
                at=now,
            )
        self.forget_verified()  # here at once; elsewhere when the notification arrives
        return ApiToken.model_validate(dict(row))


def _refuse_expired(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and now >= expires_at:
        raise Unauthenticated("token expired")
