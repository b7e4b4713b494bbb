"""Deleting records past their retention: usage records, payload logs and stored responses.

Deletes go in batches of `BATCH_ROWS`, each its own short transaction, so a purge of millions of rows
never holds a long write lock (SQLite has one writer) or a huge PostgreSQL transaction, and the
record writer keeps going between batches. Running it from several instances at once is harmless:
each batch deletes what is still there. A stored response's item index rows (`response_items`) go
with it by the foreign key's cascade, in the same statement (SQLite connections enforce foreign keys:
see engine.py).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import Table, delete, func, select
from sqlalchemy.engine import Engine

from aigw.store.engine import write_transaction
from aigw.store.schema import payload_records, responses, usage_records

BATCH_ROWS = 5_000
_UNFINISHED = ("queued", "in_progress")  # a running background response is never purged


class PurgeCutoffs(msgspec.Struct, kw_only=True, frozen=True):
    """Rows older than each cutoff go; None keeps that kind of row."""

    usage: datetime | None = None
    payloads: datetime | None = None
    responses: datetime | None = None


class PurgeCounts(msgspec.Struct, kw_only=True, frozen=True):
    usage: int = 0
    payloads: int = 0
    responses: int = 0

    @property
    def total(self) -> int:
        return self.usage + self.payloads + self.responses


def purge(engine: Engine, cutoffs: PurgeCutoffs, *, dry_run: bool = False) -> PurgeCounts:
    """Delete (or with `dry_run`, count) the rows older than the cutoffs."""
    run = _count if dry_run else _delete
    return PurgeCounts(
        usage=run(engine, usage_records, "request_id", usage_records.c.event_time, cutoffs.usage),
        payloads=run(engine, payload_records, "request_id", payload_records.c.event_time, cutoffs.payloads),
        responses=run(engine, responses, "id", responses.c.created_at, cutoffs.responses),
    )


def _condition(table: Table, time_column, cutoff: datetime):  # type: ignore[no-untyped-def]
    condition = time_column < cutoff
    if table is responses:
        condition = condition & responses.c.status.not_in(_UNFINISHED)
    return condition


def _count(engine: Engine, table: Table, key: str, time_column, cutoff: datetime | None) -> int:  # type: ignore[no-untyped-def]
    if cutoff is None:
        return 0
    with engine.connect() as conn:
        statement = select(func.count()).select_from(table).where(_condition(table, time_column, cutoff))
        return int(conn.execute(statement).scalar_one())


def _delete(engine: Engine, table: Table, key: str, time_column, cutoff: datetime | None) -> int:  # type: ignore[no-untyped-def]
    if cutoff is None:
        return 0
    column = table.c[key]
    batch = select(column).where(_condition(table, time_column, cutoff)).limit(BATCH_ROWS)
    deleted = 0
    while True:
        with write_transaction(engine) as conn:
            count = conn.execute(delete(table).where(column.in_(batch.scalar_subquery()))).rowcount
        deleted += count
        if count < BATCH_ROWS:
            return deleted
