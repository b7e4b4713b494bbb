"""Typed, immutable rows handed out by the store, so callers never hold ORM or Row objects."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

PrincipalKind = Literal["user", "service_principal"]
PRINCIPAL_KINDS: frozenset[str] = frozenset({"user", "service_principal"})

# What a grant gives: CAN_MANAGE implies CAN_QUERY. In ascending order.
Permission = Literal["CAN_QUERY", "CAN_MANAGE"]
PERMISSIONS: tuple[str, ...] = ("CAN_QUERY", "CAN_MANAGE")
# Who a grant is for: a principal (by its kind) or a group.
SubjectKind = Literal["user", "service_principal", "group"]
SUBJECT_KINDS: frozenset[str] = frozenset({"user", "service_principal", "group"})
# What a grant is on: an endpoint (query it), or a hosted tool of the agent API (use it): an MCP
# connection or a Python function the configuration declares.
ResourceKind = Literal["endpoint", "connection", "function"]
RESOURCE_KINDS: tuple[str, ...] = ("endpoint", "connection", "function")
# The built-in group every principal belongs to implicitly (it has no membership rows).
USERS_GROUP = "users"


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


class GroupInfo(msgspec.Struct, frozen=True):
    id: int
    name: str
    created_at: datetime
    member_count: int  # explicit members; the built-in `users` group counts every principal


class GrantInfo(msgspec.Struct, frozen=True):
    """One subject's permission on one resource (they live in the configuration: by name). For a
    hosted tool, CAN_QUERY is the permission to use it (CAN_MANAGE implies it)."""

    endpoint: str  # the resource's name, whatever its kind
    subject_kind: SubjectKind
    subject_id: int  # the principal's id, or the group's
    subject_name: str
    permission: Permission
    created_at: datetime
    resource_kind: ResourceKind = "endpoint"


class AccessSnapshot(msgspec.Struct, frozen=True):
    """What the in-memory authorization state is built from, read in one go."""

    groups_by_principal: dict[int, list[str]]  # explicit memberships only (never `users`)
    grants: list[GrantInfo]
