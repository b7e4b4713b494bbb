"""Stored Responses (OpenAI Responses API objects) for the agent API.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04

A frozen snapshot: it spells the table out instead of importing aigw.store.schema, so later schema
changes cannot silently alter what this migration did. A new table, so the foreign key needs no batch
rebuild on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("previous_response_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("input_items", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_responses"),
        sa.ForeignKeyConstraint(
            ["principal_id"], ["principals.id"], name="fk_responses_principal_id_principals", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_responses_principal_id_created_at", "responses", ["principal_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_responses_principal_id_created_at", table_name="responses")
    op.drop_table("responses")
