"""Typed, immutable rows handed out by the store, so callers never hold ORM or Row objects."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

PrincipalKind = Literal["user", "service_principal"]
PRINCIPAL_KINDS: frozenset[str] = frozenset({"user", "service_principal"})


class PrincipalInfo(msgspec.Struct, frozen=True):
    id: int
    name: str
    kind: PrincipalKind
    is_admin: bool
    created_at: datetime


class TokenInfo(msgspec.Struct, frozen=True):
    """What an admin may see about a token: never the secret, never its hash."""

    id: str
    name: str
    principal_id: int
    principal_name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class TokenRecord(msgspec.Struct, frozen=True):
    """A token as authentication needs it: the secret's hash and who it belongs to."""

    id: str
    name: str
    secret_hash: str  # sha256(secret), hex
    principal_id: int
    principal_name: str
    principal_kind: PrincipalKind
    is_admin: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
