"""What the gateway records about a request: a usage record always, a payload record where enabled.

Records are plain msgspec Structs built on the request path (cheap to create, cheap to encode for the
spill files) and handed to `RecordWriter.submit`. They carry no database types: the store turns them
into rows in its own thread.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

import msgspec

REQUEST_MARKER: Final = "MAX_REQUEST_SIZE_EXCEEDED"
RESPONSE_MARKER: Final = "MAX_RESPONSE_SIZE_EXCEEDED"
RequestMarker = Literal["MAX_REQUEST_SIZE_EXCEEDED"]
ResponseMarker = Literal["MAX_RESPONSE_SIZE_EXCEEDED"]

# The client-facing API a request came in on (`UsageRecord.surface`).
SURFACES: Final = frozenset(
    {"openai_chat", "openai_responses", "openai_embeddings", "anthropic", "gemini"}
)


class Attempt(msgspec.Struct, frozen=True):
    """One call to a destination; a request has several when the router fell back or retried."""

    destination: str
    status: int | None  # the upstream's HTTP status; None when no response came (connect error, timeout)
    latency_ms: float
    error: str | None = None


class UsageRecord(msgspec.Struct, kw_only=True):
    """One per request the gateway answered (errors included).

    `latency_ms` is the whole request as the client saw it (until the last byte went out);
    `upstream_latency_ms` the time spent waiting on upstreams, so `gateway_overhead_ms` is ours.
    `request_id` must be unique per request: it is the primary key that makes replays idempotent."""

    event_time: datetime  # when the request arrived, aware UTC
    request_id: str
    principal_id: int | None
    principal_name: str | None
    user_agent: str | None
    surface: str
    endpoint: str
    destination: str | None  # the label of the destination that answered (or failed last)
    model: str | None  # the upstream model
    status: int  # the HTTP status the client got
    error: str | None = None
    latency_ms: float
    upstream_latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    streamed: bool = False
    tags: dict[str, str] = {}
    attempts: list[Attempt] = []
    # The content policies that ran: {policy, phase, verdict, categories, ms} (PolicyRun.as_record).
    policies: list[dict[str, Any]] | None = None

    @property
    def gateway_overhead_ms(self) -> float | None:
        if self.upstream_latency_ms is None:
            return None
        return max(self.latency_ms - self.upstream_latency_ms, 0.0)


class PayloadRecord(msgspec.Struct, kw_only=True):
    """The bodies of one request and its response, for endpoints that record payloads.

    A body over the configured cap is left out (None) and its marker says so, so a reader can tell
    "too big" from "there was no body"."""

    event_time: datetime
    request_id: str
    endpoint: str
    principal_name: str | None
    status: int
    latency_ms: float
    request_body: str | None = None
    response_body: str | None = None
    request_marker: RequestMarker | None = None
    response_marker: ResponseMarker | None = None


Record = UsageRecord | PayloadRecord


def capture_body(
    body: bytes | bytearray | memoryview | None, limit: int
) -> tuple[str | None, bool]:
    """A body as payload text, and whether it was over `limit` (then the text is None).

    Bytes that are not UTF-8 become U+FFFD rather than failing the record."""
    if body is None:
        return None, False
    if len(body) > limit:
        return None, True
    return bytes(body).decode("utf-8", "replace"), False


def clean_text(value: str) -> str:
    """`value` made storable everywhere: PostgreSQL refuses NUL in text, and lone surrogates (which
    JSON can smuggle in as \\ud800) are not encodable as UTF-8. Free for the usual ASCII strings."""
    if value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def cleaned(record: Record) -> Record:
    """A copy of `record` whose every string went through `clean_text`."""
    changes: dict[str, object] = {}
    for name in record.__struct_fields__:
        value = getattr(record, name)
        if isinstance(value, str):
            changes[name] = clean_text(value)
        elif isinstance(value, dict):
            changes[name] = {clean_text(k): clean_text(v) for k, v in value.items()}
        elif name == "attempts":
            changes[name] = [
                msgspec.structs.replace(
                    a,
                    destination=clean_text(a.destination),
                    error=None if a.error is None else clean_text(a.error),
                )
                for a in value
            ]
    return msgspec.structs.replace(record, **changes)
