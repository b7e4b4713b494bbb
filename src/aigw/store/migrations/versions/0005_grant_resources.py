"""Grants on hosted tools: a grant names a resource of a kind (endpoint, MCP connection, Python function).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Existing grants are endpoint grants (the column's default). The `endpoint` column keeps its name and
now holds the resource's name; the unique indexes (one grant per resource and subject) gain the
kind, so an endpoint and a connection of the same name are granted apart. The kinds are checked by
the store's code, not by a CHECK constraint (adding one to SQLite would rebuild the table).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("grants", sa.Column("resource_kind", sa.String(16), nullable=False, server_default="endpoint"))
    op.drop_index("uq_grants_endpoint_principal", table_name="grants")
    op.drop_index("uq_grants_endpoint_group", table_name="grants")
    _unique("uq_grants_resource_principal", ["resource_kind", "endpoint", "principal_id"], "principal_id")
    _unique("uq_grants_resource_group", ["resource_kind", "endpoint", "group_id"], "group_id")


def downgrade() -> None:
    op.execute("DELETE FROM grants WHERE resource_kind <> 'endpoint'")
    op.drop_index("uq_grants_resource_principal", table_name="grants")
    op.drop_index("uq_grants_resource_group", table_name="grants")
    _unique("uq_grants_endpoint_principal", ["endpoint", "principal_id"], "principal_id")
    _unique("uq_grants_endpoint_group", ["endpoint", "group_id"], "group_id")
    op.drop_column("grants", "resource_kind")


def _unique(name: str, columns: list[str], subject: str) -> None:
    where = sa.text(f"{subject} IS NOT NULL")
    op.create_index(name, "grants", columns, unique=True, sqlite_where=where, postgresql_where=where)
