"""Groups, group members and endpoint grants; the built-in group `users`.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

A frozen snapshot: it spells the tables out instead of importing aigw.store.schema, so later schema
changes cannot silently alter what this migration did.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    groups = op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_groups"),
        sa.UniqueConstraint("name", name="uq_groups_name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "principal_id", name="pk_group_members"),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name="fk_group_members_group_id_groups", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name="fk_group_members_principal_id_principals",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_group_members_principal_id", "group_members", ["principal_id"])
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("permission", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
        sa.ForeignKeyConstraint(
            ["principal_id"], ["principals.id"], name="fk_grants_principal_id_principals", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name="fk_grants_group_id_groups", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "permission IN ('CAN_QUERY', 'CAN_MANAGE')", name="ck_grants_permission"
        ),
        sa.CheckConstraint(
            "(principal_id IS NULL) <> (group_id IS NULL)", name="ck_grants_one_subject"
        ),
    )
    op.create_index(
        "uq_grants_endpoint_principal",
        "grants",
        ["endpoint", "principal_id"],
        unique=True,
        sqlite_where=sa.text("principal_id IS NOT NULL"),
        postgresql_where=sa.text("principal_id IS NOT NULL"),
    )
    op.create_index(
        "uq_grants_endpoint_group",
        "grants",
        ["endpoint", "group_id"],
        unique=True,
        sqlite_where=sa.text("group_id IS NOT NULL"),
        postgresql_where=sa.text("group_id IS NOT NULL"),
    )
    # The built-in group: a row so grants can name it; its membership (everyone) is implicit.
    # SQLite stores naive UTC text (as the store's UTCDateTime does), PostgreSQL timestamptz.
    now = datetime.now(timezone.utc)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    op.bulk_insert(groups, [{"name": "users", "created_at": now}])


def downgrade() -> None:
    op.drop_index("uq_grants_endpoint_group", table_name="grants")
    op.drop_index("uq_grants_endpoint_principal", table_name="grants")
    op.drop_table("grants")
    op.drop_index("ix_group_members_principal_id", table_name="group_members")
    op.drop_table("group_members")
    op.drop_table("groups")
