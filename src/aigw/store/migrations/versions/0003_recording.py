"""Usage and payload records, written in batches by the background record writer.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03

A frozen snapshot: it spells the tables out instead of importing aigw.store.schema, so later schema
changes cannot silently alter what this migration did. `request_id` is each table's primary key: the
writer inserts with ON CONFLICT DO NOTHING, so replaying a batch never duplicates a record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_INDEXED = ("event_time", ("endpoint", "event_time"), ("principal_name", "event_time"))


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=True),
        sa.Column("principal_name", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("surface", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("upstream_latency_ms", sa.Double(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("streamed", sa.Boolean(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_usage_records"),
    )
    op.create_table(
        "payload_records",
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("principal_name", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("request_body", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("request_marker", sa.Text(), nullable=True),
        sa.Column("response_marker", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_payload_records"),
    )
    for table in ("usage_records", "payload_records"):
        for columns in _INDEXED:
            columns = (columns,) if isinstance(columns, str) else columns
            op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns))


def downgrade() -> None:
    for table in ("payload_records", "usage_records"):
        for columns in _INDEXED:
            columns = (columns,) if isinstance(columns, str) else columns
            op.drop_index(f"ix_{table}_{'_'.join(columns)}", table_name=table)
        op.drop_table(table)
