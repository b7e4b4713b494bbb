"""An index of stored Responses' items by item id, for `item_reference` input items.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

A new table (no batch rebuild on SQLite). Responses stored before it are indexed here, a batch at a
time, so their items can be referred to as well. Like 0004 it spells everything out instead of
importing aigw code, so later changes cannot alter what it did; `MAX_ITEM_ID` matches
aigw.store.responses (longer ids are not indexed: a btree entry has a size limit on PostgreSQL).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MAX_ITEM_ID = 256
BATCH = 500


def upgrade() -> None:
    op.create_table(
        "response_items",
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("response_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", "response_id", name="pk_response_items"),
        sa.ForeignKeyConstraint(
            ["response_id"], ["responses.id"], name="fk_response_items_response_id_responses", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_response_items_response_id", "response_items", ["response_id"])
    _index_existing()


def downgrade() -> None:
    op.drop_index("ix_response_items_response_id", table_name="response_items")
    op.drop_table("response_items")


def _index_existing() -> None:
    conn = op.get_bind()
    responses = sa.table("responses", sa.column("id", sa.Text()), sa.column("input_items", sa.Text()), sa.column("response", sa.Text()))
    items = sa.table("response_items", sa.column("item_id", sa.Text()), sa.column("response_id", sa.Text()))
    last = ""
    while True:
        rows = conn.execute(
            sa.select(responses.c.id, responses.c.input_items, responses.c.response)
            .where(responses.c.id > last).order_by(responses.c.id).limit(BATCH)
        ).all()  # fmt: skip
        if not rows:
            return
        values = [{"item_id": item_id, "response_id": row.id} for row in rows for item_id in _item_ids(row)]
        if values:
            conn.execute(sa.insert(items), values)
        last = rows[-1].id


def _item_ids(row: sa.Row) -> set[str]:
    try:
        found = list(json.loads(row.input_items)) + list(json.loads(row.response).get("output") or [])
    except (ValueError, TypeError, AttributeError):
        return set()
    return {i["id"] for i in found if isinstance(i, dict) and isinstance(i.get("id"), str) and 0 < len(i["id"]) <= MAX_ITEM_ID}
