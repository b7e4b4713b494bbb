"""Persistent state: principals and API tokens (later: groups, grants, usage, payloads).

SQLite by default, PostgreSQL when several instances share state. The schema is owned by the Alembic
migrations in `migrations/`, applied when the store is opened.
"""

from aigw.store.bootstrap import ensure_admin_token
from aigw.store.errors import AlreadyExists, StoreError
from aigw.store.records import PrincipalInfo, PrincipalKind, TokenInfo, TokenRecord
from aigw.store.store import Store
from aigw.store.url import default_data_dir, normalize_database_url, resolve_database_url

__all__ = [
    "AlreadyExists",
    "PrincipalInfo",
    "PrincipalKind",
    "Store",
    "StoreError",
    "TokenInfo",
    "TokenRecord",
    "default_data_dir",
    "ensure_admin_token",
    "normalize_database_url",
    "resolve_database_url",
]
