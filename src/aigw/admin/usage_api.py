"""Admin HTTP API over the recorded usage and payloads (the routes and the admin check are the app's):

    GET /admin/v1/usage?endpoint=&principal=&since=&until=&group_by=endpoint|principal|model|day
    GET /admin/v1/payloads?endpoint=&principal=&since=&until=&request_id=&limit=

`since` / `until` take a date (`2026-11-01`, UTC midnight), an ISO 8601 time (`2026-11-01T12:00:00Z`;
no offset means UTC) or a duration back from now (`24h`, `7d`). `until` is exclusive. A bad parameter
raises a 400 GatewayError naming it. The handlers run the query in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timezone

import msgspec

from aigw.admin.tokens_cli import parse_duration
from aigw.errors import invalid
from aigw.recording.records import PayloadRecord
from aigw.store import Store
from aigw.store.recording import (
    GROUP_BY,
    MAX_PAYLOAD_LIMIT,
    GroupBy,
    PayloadQuery,
    RecordingStore,
    UsageQuery,
    UsageSummary,
)

_USAGE_PARAMS = frozenset({"endpoint", "principal", "since", "until", "group_by"})
_PAYLOAD_PARAMS = frozenset({"endpoint", "principal", "since", "until", "request_id", "limit"})
_encode = msgspec.json.Encoder().encode


class UsageReport(msgspec.Struct, kw_only=True):
    group_by: GroupBy | None
    since: datetime | None
    until: datetime | None
    rows: list[UsageSummary]


class PayloadList(msgspec.Struct, kw_only=True):
    payloads: list[PayloadRecord]


async def usage_response(store: Store | RecordingStore, params: Mapping[str, str]) -> bytes:
    """The JSON body for `GET /admin/v1/usage`."""
    query = parse_usage_query(params)
    rows = await asyncio.to_thread(_recording(store).query_usage, query)
    return _encode(UsageReport(group_by=query.group_by, since=query.since, until=query.until, rows=rows))


async def payloads_response(store: Store | RecordingStore, params: Mapping[str, str]) -> bytes:
    """The JSON body for `GET /admin/v1/payloads`: newest first."""
    query = parse_payload_query(params)
    payloads = await asyncio.to_thread(_recording(store).list_payloads, query)
    return _encode(PayloadList(payloads=payloads))


def parse_usage_query(params: Mapping[str, str], now: datetime | None = None) -> UsageQuery:
    _check_known(params, _USAGE_PARAMS)
    now = now or datetime.now(timezone.utc)
    group_by = params.get("group_by") or None
    if group_by is not None and group_by not in GROUP_BY:
        raise invalid(f"group_by must be one of {', '.join(GROUP_BY)}.", "group_by")
    return UsageQuery(
        endpoint=params.get("endpoint") or None,
        principal=params.get("principal") or None,
        since=_time_param(params, "since", now),
        until=_time_param(params, "until", now),
        group_by=group_by,  # type: ignore[arg-type]
    )


def parse_payload_query(params: Mapping[str, str], now: datetime | None = None) -> PayloadQuery:
    _check_known(params, _PAYLOAD_PARAMS)
    now = now or datetime.now(timezone.utc)
    limit_text = params.get("limit") or "50"
    # ASCII digits only, and few of them: int() takes other scripts' digits, and refuses 4,301.
    if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 9) or not 1 <= int(limit_text) <= MAX_PAYLOAD_LIMIT:
        raise invalid(f"Invalid 'limit': expected a whole number from 1 to {MAX_PAYLOAD_LIMIT}.", "limit")
    return PayloadQuery(
        endpoint=params.get("endpoint") or None,
        principal=params.get("principal") or None,
        since=_time_param(params, "since", now),
        until=_time_param(params, "until", now),
        request_id=params.get("request_id") or None,
        limit=int(limit_text),
    )


def parse_time(text: str, now: datetime) -> datetime:
    """`2026-11-01` (UTC midnight), an ISO 8601 time (UTC unless it says otherwise), or a duration
    back from `now` (`24h`, `7d`, `30m`)."""
    text = text.strip()
    try:
        if text and text[-1].lower() in "smhdw" and text[:-1].strip().isdigit():
            return now - parse_duration(text)
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)
    except OverflowError:  # a valid time that cannot be moved to UTC (0001-01-01T00:00+01:00)
        raise ValueError(f"invalid time {text!r}: out of range") from None
    except ValueError as exc:
        if str(exc).startswith("invalid duration"):
            raise
        raise ValueError(
            f"invalid time {text!r}: use a date (2026-11-01), an ISO time (2026-11-01T12:00:00Z) "
            "or a duration back from now (24h, 7d)"
        ) from None


def _time_param(params: Mapping[str, str], name: str, now: datetime) -> datetime | None:
    text = params.get(name)
    if not text:
        return None
    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise invalid(f"Invalid '{name}': {exc}.", name) from None


def _check_known(params: Mapping[str, str], known: frozenset[str]) -> None:
    for name in params:
        if name not in known:
            raise invalid(f"Unknown query parameter {name!r}; expected one of {', '.join(sorted(known))}.", name)


def _recording(store: Store | RecordingStore) -> RecordingStore:
    return store if isinstance(store, RecordingStore) else RecordingStore(store.engine)

