"""The gateway's logs: one stream on stderr, as text or JSON lines, and the access log.

Loggers live under `aigw` (`aigw.access` for requests, `aigw.routing` for upstream failures and
fallbacks, `aigw.recording` for spills, `aigw.mcp` for tool servers, ...). `configure` is called
once by `aigw serve`; library users keep their own logging set-up.

The access log has one line per request: request id, method, path (never the query: Gemini clients
put their key there), endpoint, principal, status, latency, destination and attempts. Never a
body, a header or a token. It costs ~5 µs a request (formatting and one write); `--no-access-log`
turns it off.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

ACCESS = logging.getLogger("aigw.access")
LEVELS = ("debug", "info", "warning", "error")


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ms), level, logger, message, the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`2026-12-04T15:20:31.123Z INFO aigw.access: message key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _text(value: Any) -> str:
    text = "-" if value is None else str(value)
    return orjson.dumps(text).decode() if (" " in text or '"' in text or "=" in text or not text) else text


def configure(level: str = "info", fmt: str = "text", access_log: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("aigw")
    root.handlers = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    ACCESS.disabled = not access_log


def log_access(method: str, path: str, status: int, started: float, call: Any) -> None:
    """The access line of one request (`call`: its aigw.call.Call, or None for /health, admin ...)."""
    fields: dict[str, Any] = {"method": method, "path": path[:256], "status": status}
    if call is not None:
        principal = call.principal
        fields = {
            "request_id": call.request_id, **fields, "endpoint": call.endpoint or None,
            "principal": principal.name if principal is not None else None,
            "destination": call.destination or (call.attempts[-1].destination if call.attempts else None),
            "attempts": len(call.attempts),
        }  # fmt: skip
    fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    ACCESS.info("request", extra={"fields": fields})


def start_summary(settings: Any, address: str, store: str) -> None:
    """The lines an operator reads first: where it listens, its store, Redis, its endpoints."""
    from aigw.policies.limit_store.resp import parse_redis_url

    log = logging.getLogger("aigw")
    endpoints = [e.name for e in settings.endpoints] + (["demo"] if settings.demo_endpoint else [])
    redis = str(parse_redis_url(settings.redis_url)) if settings.redis_url else "not used (limits in process)"
    log.info(
        "aigw listening on %s", address,
        extra={"fields": {"store": store, "redis": redis, "endpoints": ",".join(endpoints) or "-", "durable_records": settings.recording.durable}},
    )  # fmt: skip
