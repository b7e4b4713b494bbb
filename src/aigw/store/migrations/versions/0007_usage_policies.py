"""The content policies that ran on each request, on its usage record.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

One nullable column (JSON text, like `attempts`): adding it rebuilds nothing on either backend, and
records written before it simply have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("policies", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column("policies")
