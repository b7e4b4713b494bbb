"""Persistent state: principals, API tokens, groups and endpoint grants (later: usage, payloads).

SQLite by default, PostgreSQL when several instances share state. The schema is owned by the Alembic
migrations in `migrations/`, applied when the store is opened.
"""

from aigw.store.bootstrap import ensure_admin_token
from aigw.store.access import AccessStore
from aigw.store.errors import AlreadyExists, NotFound, StoreError
from aigw.store.records import (
    RESOURCE_KINDS,
    USERS_GROUP,
    AccessSnapshot,
    GrantInfo,
    GroupInfo,
    Permission,
    PrincipalInfo,
    PrincipalKind,
    ResourceKind,
    SubjectKind,
    TokenInfo,
    TokenRecord,
)
from aigw.store.store import Store
from aigw.store.url import default_data_dir, normalize_database_url, resolve_database_url

__all__ = [
    "RESOURCE_KINDS",
    "USERS_GROUP",
    "AccessSnapshot",
    "AccessStore",
    "AlreadyExists",
    "GrantInfo",
    "GroupInfo",
    "NotFound",
    "Permission",
    "PrincipalInfo",
    "PrincipalKind",
    "ResourceKind",
    "Store",
    "StoreError",
    "SubjectKind",
    "TokenInfo",
    "TokenRecord",
    "default_data_dir",
    "ensure_admin_token",
    "normalize_database_url",
    "resolve_database_url",
]
