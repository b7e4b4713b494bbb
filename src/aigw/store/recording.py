"""Usage and payload records in the store: batch inserts for the record writer, the usage report
(filters, group-by, sums and latency percentiles), the payload listing, and streaming reads for export.

Synchronous like the rest of the store: the writer calls `write` from its own thread, the CLI directly,
the admin API through `asyncio.to_thread`. Every query runs unchanged on SQLite and PostgreSQL.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import msgspec
from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    String,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from aigw.recording.records import Attempt, PayloadRecord, UsageRecord, clean_text
from aigw.store.engine import write_transaction
from aigw.store.schema import payload_records, usage_records

GroupBy = Literal["endpoint", "principal", "model", "day"]
GROUP_BY: tuple[GroupBy, ...] = ("endpoint", "principal", "model", "day")
MAX_PAYLOAD_LIMIT = 1000

_json_encode = msgspec.json.Encoder().encode
_decode_tags = msgspec.json.Decoder(dict[str, str]).decode
_decode_attempts = msgspec.json.Decoder(list[Attempt]).decode
_decode_policies = msgspec.json.Decoder(list[dict[str, Any]]).decode


class UsageQuery(msgspec.Struct, kw_only=True, frozen=True):
    endpoint: str | None = None
    principal: str | None = None  # principal name
    since: datetime | None = None  # inclusive, aware
    until: datetime | None = None  # exclusive, aware
    group_by: GroupBy | None = None  # None: one row of totals


class UsageSummary(msgspec.Struct, kw_only=True, frozen=True):
    """One row of the usage report. `group` is the endpoint, principal, model or day (YYYY-MM-DD, UTC)
    the row sums up; None for the totals row, or for records without that field (anonymous 401s)."""

    group: str | None
    requests: int
    errors: int  # status >= 400
    input_tokens: int
    output_tokens: int
    total_tokens: int
    avg_latency_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None
    avg_overhead_ms: float | None  # latency_ms - upstream_latency_ms, where an upstream answered


class PayloadQuery(msgspec.Struct, kw_only=True, frozen=True):
    endpoint: str | None = None
    principal: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None
    limit: int = 50


class RecordingStore:
    """The recording tables of a store's database. Share the Store's engine: `RecordingStore(store.engine)`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        # Idempotent inserts: a replayed batch (spill files, a timed-out INSERT that did commit) is a
        # no-op. Written as driver SQL with plain tuples: at thousands of records a second,
        # SQLAlchemy's per-row parameter processing cost more CPU than the rest of a request.
        self._insert_usage = _insert_sql(usage_records.name, USAGE_COLUMNS, self._sqlite)
        self._insert_payloads = _insert_sql(payload_records.name, PAYLOAD_COLUMNS, self._sqlite)

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- writing ------------------------------------------------------------------------------------

    def write(self, usage: Sequence[UsageRecord], payloads: Sequence[PayloadRecord]) -> None:
        """Insert a batch in one transaction: one executemany per table. Records already stored
        (same request_id) are skipped."""
        usage_rows = [self._values(usage_row(r), _USAGE_VALUES) for r in usage]
        payload_rows = [self._values(payload_row(r), _PAYLOAD_VALUES) for r in payloads]
        with write_transaction(self._engine) as conn:
            if usage_rows:
                conn.exec_driver_sql(self._insert_usage, usage_rows)
            if payload_rows:
                conn.exec_driver_sql(self._insert_payloads, payload_rows)

    def _values(self, row: dict[str, Any], columns: Callable[[dict[str, Any]], tuple[Any, ...]]) -> tuple[Any, ...]:
        values = columns(row)
        if not self._sqlite:
            return values
        # What UTCDateTime stores on SQLite: naive UTC text, comparable as a string.
        when = row["event_time"]
        if when.tzinfo is not timezone.utc:
            when = when.astimezone(timezone.utc)
        return (values[0], when.replace(tzinfo=None).isoformat(" ", "microseconds"), *values[2:])

    @staticmethod
    def is_transient(exc: BaseException) -> bool:
        """True when the database could not be reached or did not answer (retry the same batch later);
        False when it refused these rows (retrying cannot help)."""
        if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)):
            return True
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        return isinstance(exc, OSError)

    # -- usage report -------------------------------------------------------------------------------

    def query_usage(self, query: UsageQuery) -> list[UsageSummary]:
        """Requests, errors, token sums and latency (average, nearest-rank p50/p95/p99, average gateway
        overhead) per group, or in total. Percentiles come from window functions, so both backends
        give the same numbers."""
        group = self._group_expression(query.group_by)
        latency = usage_records.c.latency_ms
        partition = [group] if query.group_by else None
        ranked = (
            select(
                group.label("grp"),
                usage_records.c.status,
                usage_records.c.input_tokens,
                usage_records.c.output_tokens,
                usage_records.c.total_tokens,
                latency,
                usage_records.c.upstream_latency_ms,
                func.row_number().over(partition_by=partition, order_by=latency).label("rn"),
                func.count().over(partition_by=partition).label("n"),
            )
            .where(*_usage_filters(query.endpoint, query.principal, query.since, query.until))
            .cte("ranked")
        )
        r = ranked.c
        zero = literal(0)
        report = select(
            r.grp,
            func.count().label("requests"),
            func.sum(case((r.status >= 400, 1), else_=0)).label("errors"),
            func.sum(func.coalesce(r.input_tokens, zero)).label("input_tokens"),
            func.sum(func.coalesce(r.output_tokens, zero)).label("output_tokens"),
            func.sum(
                func.coalesce(
                    r.total_tokens, func.coalesce(r.input_tokens, zero) + func.coalesce(r.output_tokens, zero)
                )
            ).label("total_tokens"),
            func.avg(r.latency_ms).label("avg_latency_ms"),
            _percentile(r, 50).label("p50"),
            _percentile(r, 95).label("p95"),
            _percentile(r, 99).label("p99"),
            func.avg(r.latency_ms - r.upstream_latency_ms).label("avg_overhead_ms"),
        ).group_by(r.grp)
        if query.group_by == "day":
            report = report.order_by(r.grp)
        else:
            report = report.order_by(func.count().desc(), r.grp)
        with self._engine.connect() as conn:
            rows = conn.execute(report).all()
        return [_summary(row) for row in rows if row.requests]

    def _group_expression(self, group_by: GroupBy | None) -> ColumnElement[Any]:
        c = usage_records.c
        if group_by is None:
            return cast(literal(None), String)
        if group_by == "endpoint":
            return c.endpoint
        if group_by == "principal":
            return c.principal_name
        if group_by == "model":
            return c.model
        if group_by == "day":
            if self._engine.dialect.name == "sqlite":
                # Stored as naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff".
                return func.substr(c.event_time, 1, 10, type_=String)
            return func.to_char(func.timezone("UTC", c.event_time), "YYYY-MM-DD", type_=String)
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}, got {group_by!r}")

    # -- payloads -----------------------------------------------------------------------------------

    def list_payloads(self, query: PayloadQuery) -> list[PayloadRecord]:
        """Newest first, at most `limit` (capped at MAX_PAYLOAD_LIMIT)."""
        limit = max(1, min(query.limit, MAX_PAYLOAD_LIMIT))
        p = payload_records.c
        conditions = _payload_filters(query.endpoint, query.principal, query.since, query.until)
        if query.request_id is not None:
            conditions.append(p.request_id == query.request_id)
        statement = (
            select(payload_records).where(*conditions).order_by(p.event_time.desc(), p.request_id.desc()).limit(limit)
        )
        with self._engine.connect() as conn:
            return [_payload_record(row) for row in conn.execute(statement)]

    def count(self) -> tuple[int, int]:
        """(usage records, payload records): for tests and the CLI."""
        with self._engine.connect() as conn:
            usage = conn.execute(select(func.count()).select_from(usage_records)).scalar_one()
            payloads = conn.execute(select(func.count()).select_from(payload_records)).scalar_one()
        return int(usage), int(payloads)

    # -- export -------------------------------------------------------------------------------------

    def iter_usage(
        self, since: datetime | None = None, until: datetime | None = None, *, batch_size: int = 10_000
    ) -> Iterator[list[dict[str, Any]]]:
        """Usage rows in `event_time` order, `batch_size` at a time, read through a server-side cursor
        so the table never sits in memory whole. `tags` and `attempts` come back decoded."""
        statement = (
            select(usage_records)
            .where(*_usage_filters(None, None, since, until))
            .order_by(usage_records.c.event_time, usage_records.c.request_id)
        )
        for rows in self._stream(statement, batch_size):
            batch = []
            for row in rows:
                values = row._asdict()
                values["tags"] = _decode_tags(values["tags"]) if values["tags"] else {}
                values["attempts"] = (
                    msgspec.to_builtins(_decode_attempts(values["attempts"])) if values["attempts"] else []
                )
                values["policies"] = _decode_policies(values["policies"]) if values["policies"] else []
                batch.append(values)
            yield batch

    def iter_payloads(
        self, since: datetime | None = None, until: datetime | None = None, *, batch_size: int = 200
    ) -> Iterator[list[dict[str, Any]]]:
        statement = (
            select(payload_records)
            .where(*_payload_filters(None, None, since, until))
            .order_by(payload_records.c.event_time, payload_records.c.request_id)
        )
        for rows in self._stream(statement, batch_size):
            yield [row._asdict() for row in rows]

    def _stream(self, statement: Select[Any], batch_size: int) -> Iterator[Sequence[Any]]:
        with self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(statement)
            for partition in result.partitions():
                yield partition


# -- rows ---------------------------------------------------------------------------------------------

# Column order of the driver-level inserts; request_id then event_time first in both.
USAGE_COLUMNS = tuple(c.name for c in usage_records.columns)
PAYLOAD_COLUMNS = tuple(c.name for c in payload_records.columns)
assert USAGE_COLUMNS[:2] == PAYLOAD_COLUMNS[:2] == ("request_id", "event_time")
_USAGE_VALUES = operator.itemgetter(*USAGE_COLUMNS)  # row dict -> the values in column order
_PAYLOAD_VALUES = operator.itemgetter(*PAYLOAD_COLUMNS)


def _insert_sql(table: str, columns: tuple[str, ...], sqlite: bool) -> str:
    marks = ", ".join(["?" if sqlite else "%s"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT (request_id) DO NOTHING"


def _text(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def usage_row(r: UsageRecord) -> dict[str, Any]:
    total = r.total_tokens
    if total is None and r.input_tokens is not None and r.output_tokens is not None:
        total = r.input_tokens + r.output_tokens
    return {
        "request_id": clean_text(r.request_id),
        "event_time": r.event_time,
        "principal_id": r.principal_id,
        "principal_name": _text(r.principal_name),
        "user_agent": _text(r.user_agent),
        "surface": clean_text(r.surface),
        "endpoint": clean_text(r.endpoint),
        "destination": _text(r.destination),
        "model": _text(r.model),
        "status": r.status,
        "error": _text(r.error),
        "latency_ms": r.latency_ms,
        "upstream_latency_ms": r.upstream_latency_ms,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "total_tokens": total,
        "streamed": r.streamed,
        "tags": _json_text(r.tags) if r.tags else None,
        "attempts": _json_text(r.attempts) if r.attempts else None,
        "policies": _json_text(r.policies) if r.policies else None,
    }


def _json_text(value: Any) -> str:
    """JSON escapes NUL itself; lone surrogates cannot be encoded, so those values are cleaned first."""
    try:
        return _json_encode(value).decode()
    except UnicodeEncodeError:
        return _json_encode(msgspec.convert(_clean_json(msgspec.to_builtins(value)), type(value))).decode()


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def payload_row(r: PayloadRecord) -> dict[str, Any]:
    return {
        "request_id": clean_text(r.request_id),
        "event_time": r.event_time,
        "endpoint": clean_text(r.endpoint),
        "principal_name": _text(r.principal_name),
        "status": r.status,
        "latency_ms": r.latency_ms,
        "request_body": _text(r.request_body),
        "response_body": _text(r.response_body),
        "request_marker": r.request_marker,
        "response_marker": r.response_marker,
    }


def _payload_record(row: Any) -> PayloadRecord:
    return PayloadRecord(
        event_time=row.event_time,
        request_id=row.request_id,
        endpoint=row.endpoint,
        principal_name=row.principal_name,
        status=row.status,
        latency_ms=row.latency_ms,
        request_body=row.request_body,
        response_body=row.response_body,
        request_marker=row.request_marker,
        response_marker=row.response_marker,
    )


def _summary(row: Any) -> UsageSummary:
    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    return UsageSummary(
        group=row.grp,
        requests=int(row.requests),
        errors=int(row.errors or 0),
        input_tokens=int(row.input_tokens or 0),
        output_tokens=int(row.output_tokens or 0),
        total_tokens=int(row.total_tokens or 0),
        avg_latency_ms=number(row.avg_latency_ms),
        p50_latency_ms=number(row.p50),
        p95_latency_ms=number(row.p95),
        p99_latency_ms=number(row.p99),
        avg_overhead_ms=number(row.avg_overhead_ms),
    )


# -- filters ------------------------------------------------------------------------------------------


def _usage_filters(
    endpoint: str | None, principal: str | None, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    return _filters(usage_records.c, endpoint, principal, since, until)


def _payload_filters(
    endpoint: str | None, principal: str | None, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    return _filters(payload_records.c, endpoint, principal, since, until)


def _filters(
    columns: Any, endpoint: str | None, principal: str | None, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if endpoint is not None:
        conditions.append(columns.endpoint == endpoint)
    if principal is not None:
        conditions.append(columns.principal_name == principal)
    if since is not None:
        conditions.append(columns.event_time >= since)
    if until is not None:
        conditions.append(columns.event_time < until)
    return conditions


def _percentile(ranked: Any, percent: int) -> ColumnElement[Any]:
    """Nearest-rank percentile over the `rn`/`n` window columns: the smallest latency whose rank is at
    least percent% of the group's size (integer arithmetic, so no float rounding at the boundary)."""
    return func.min(case((ranked.rn * 100 >= ranked.n * percent, ranked.latency_ms), else_=None))
