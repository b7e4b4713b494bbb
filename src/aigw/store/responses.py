"""Stored Responses (OpenAI Responses API objects): retrieval, `previous_response_id` chains, the
status of background runs, and their items by id (`item_reference` input items).

Item ids are indexed in `response_items` in the transaction that writes the response (its input
items and output items; again when an update changes the output); the index rows go with their
response by the database's cascade.

Synchronous like the rest of the store (async callers use `asyncio.to_thread`); every method checks out
its own connection, so one ResponseStore may be shared by threads. Several instances may share one
PostgreSQL store, so status changes that can race (a run finishing on one instance, a cancel arriving
at another) are settled by the database in one statement or one locked transaction, never by a read in
one transaction and a write in another.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timezone
from collections.abc import Collection
from typing import Any

import msgspec
import orjson
from sqlalchemy import Connection, Engine, Integer, Row, Select, delete, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError

from aigw.store.engine import write_transaction
from aigw.store.errors import AlreadyExists, NotFound
from aigw.store.schema import response_items, responses

STATUSES = frozenset({"queued", "in_progress", "completed", "incomplete", "failed", "cancelled"})
MAX_HISTORY = 1000
# Longer item ids are not indexed (a PostgreSQL btree entry has a size limit): no item the gateway
# mints comes near it, and a reference to such an id is simply not found.
MAX_ITEM_ID = 256


class StoredResponse(msgspec.Struct, kw_only=True):
    id: str
    principal_id: int  # the creator
    endpoint: str
    status: str  # one of STATUSES; mirrors response["status"]
    previous_response_id: str | None
    input_items: list[dict[str, Any]]  # the items this request added (not its history)
    response: dict[str, Any]  # the Response object
    created_at: datetime | None = None  # aware UTC; filled by the store on create when None


class ResponseStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, stored: StoredResponse) -> None:
        """Insert `stored`, filling its `created_at` when None. AlreadyExists if the id is taken;
        NotFound if the principal was deleted (after its token was cached)."""
        _check_status(stored.status)
        if stored.created_at is None:
            stored.created_at = datetime.now(timezone.utc)
        values = {
            "id": stored.id,
            "principal_id": stored.principal_id,
            "endpoint": stored.endpoint,
            "status": stored.status,
            "previous_response_id": stored.previous_response_id,
            "created_at": stored.created_at,
            "updated_at": stored.created_at,
            "input_items": _dumps(stored.input_items),
            "response": _dumps(stored.response),
        }
        try:
            with self._write() as conn:
                conn.execute(insert(responses).values(values))
                _index_items(conn, stored.id, stored.input_items, stored.response)
        except IntegrityError as exc:
            # The primary key or the principal's foreign key: tell which by looking.
            if self.get(stored.id) is not None:
                raise AlreadyExists(f"response {stored.id!r} already exists") from exc
            raise NotFound(f"principal {stored.principal_id} does not exist") from exc

    def get(self, id: str) -> StoredResponse | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(responses).where(responses.c.id == id)).first()
        return None if row is None else _stored(row)

    def update(
        self, id: str, status: str, response: dict[str, Any], *, unless_status: tuple[str, ...] = ()
    ) -> bool:
        """Replace the status and the Response object; False if no row changed. With `unless_status`,
        the condition is part of the UPDATE, so a run finishing cannot overwrite a "cancelled" that
        another instance set a moment before."""
        _check_status(status)
        statement = (
            update(responses)
            .where(responses.c.id == id)
            .values(status=status, response=_dumps(response), updated_at=datetime.now(timezone.utc))
        )
        if unless_status:
            statement = statement.where(responses.c.status.not_in(unless_status))
        with self._write() as conn:
            if conn.execute(statement).rowcount == 0:
                return False
            # The output may have changed: index it again (the input items with it, from the row).
            input_items = conn.execute(select(responses.c.input_items).where(responses.c.id == id)).scalar_one()
            conn.execute(delete(response_items).where(response_items.c.response_id == id))
            _index_items(conn, id, orjson.loads(input_items), response)
            return True

    def set_status(self, id: str, status: str, *, only_from: tuple[str, ...]) -> StoredResponse | None:
        """Move to `status` (in the column and in the Response object) only if the current status is
        one of `only_from`; the updated response, or None if nothing changed. The row is locked from
        the read to the write (FOR UPDATE on PostgreSQL, the write lock on SQLite), so of two racing
        transitions out of the same status exactly one succeeds."""
        _check_status(status)
        with self._write() as conn:
            row = conn.execute(select(responses).where(responses.c.id == id).with_for_update()).first()
            if row is None or row.status not in only_from:
                return None
            stored = _stored(row)
            stored.status = status
            stored.response["status"] = status
            conn.execute(
                update(responses)
                .where(responses.c.id == id)
                .values(status=status, response=_dumps(stored.response), updated_at=datetime.now(timezone.utc))
            )
        return stored

    def delete(self, id: str) -> bool:
        with self._write() as conn:
            return conn.execute(delete(responses).where(responses.c.id == id)).rowcount > 0

    def find_items(self, principal_id: int, ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The items with these ids among `principal_id`'s stored responses (input and output
        items), by id; an id held by several responses is taken from the newest. Ids not found, or
        only in another principal's responses, are left out: the caller cannot tell the two apart."""
        wanted = {i for i in ids if 0 < len(i) <= MAX_ITEM_ID}
        if not wanted:
            return {}
        ri, r = response_items.c, responses.c
        with self._engine.connect() as conn:
            pairs = conn.execute(
                select(ri.item_id, ri.response_id)
                .select_from(response_items.join(responses, r.id == ri.response_id))
                .where(ri.item_id.in_(wanted), r.principal_id == principal_id)
                .order_by(r.created_at.desc())
            ).all()
            holder: dict[str, str] = {}
            for item_id, response_id in pairs:
                holder.setdefault(item_id, response_id)
            if not holder:
                return {}
            rows = conn.execute(select(r.id, r.input_items, r.response).where(r.id.in_(set(holder.values())))).all()
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            for item in _items(orjson.loads(row.input_items), orjson.loads(row.response)):
                if holder.get(item["id"]) == row.id:
                    found.setdefault(item["id"], item)
        return found

    def history(self, id: str, limit: int = MAX_HISTORY) -> list[StoredResponse]:
        """The chain ending at `id`, oldest first, following `previous_response_id`. It ends at a
        missing link (a deleted response), after `limit` responses, or where a cycle first repeats."""
        if limit < 1:
            return []
        with self._engine.connect() as conn:
            # One recursive query walks the links (ids only, so a cycle costs `limit` small rows),
            # a second reads the responses whole.
            chain_ids = list(dict.fromkeys(conn.execute(_chain_query(id, limit)).scalars()))
            rows = conn.execute(select(responses).where(responses.c.id.in_(chain_ids))).all()
        by_id = {row.id: row for row in rows}
        chain: list[StoredResponse] = []
        for chain_id in chain_ids:  # newest first; a response deleted between the two reads ends it
            if chain_id not in by_id:
                break
            chain.append(_stored(by_id[chain_id]))
        chain.reverse()
        return chain

    def _write(self) -> AbstractContextManager[Connection]:
        return write_transaction(self._engine)


def _chain_query(id: str, limit: int) -> Select[tuple[str]]:
    """Ids from `id` back along `previous_response_id`, newest first, at most `limit` deep. In a cycle
    ids repeat; the caller keeps each one's first occurrence, which cuts the cycle where it closes."""
    r = responses.c
    depth = literal_column("1", Integer).label("depth")
    chain = select(r.id, r.previous_response_id, depth).where(r.id == id).cte("chain", recursive=True)
    link = responses.alias("link")
    chain = chain.union_all(
        select(link.c.id, link.c.previous_response_id, chain.c.depth + 1).where(
            link.c.id == chain.c.previous_response_id, chain.c.depth < limit
        )
    )
    return select(chain.c.id).order_by(chain.c.depth)


def _items(input_items: list[Any], response: dict[str, Any]) -> list[dict[str, Any]]:
    """A response's items that carry an id the index can hold."""
    output = response.get("output") if isinstance(response, dict) else None
    every = list(input_items) + (list(output) if isinstance(output, list) else [])
    return [i for i in every if isinstance(i, dict) and isinstance(i.get("id"), str) and 0 < len(i["id"]) <= MAX_ITEM_ID]


def _index_items(conn: Connection, response_id: str, input_items: list[Any], response: dict[str, Any]) -> None:
    ids = {item["id"] for item in _items(input_items, response)}
    if ids:
        conn.execute(insert(response_items), [{"item_id": i, "response_id": response_id} for i in sorted(ids)])


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"response status must be one of {sorted(STATUSES)}, got {status!r}")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _stored(row: Row[Any]) -> StoredResponse:
    return StoredResponse(
        id=row.id,
        principal_id=row.principal_id,
        endpoint=row.endpoint,
        status=row.status,
        previous_response_id=row.previous_response_id,
        input_items=orjson.loads(row.input_items),
        response=orjson.loads(row.response),
        created_at=row.created_at,
    )
