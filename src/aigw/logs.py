"""The gateway's logs: one stream on stderr, as text or JSON lines, and the access log.

Loggers live under `aigw` (`aigw.access` for requests, `aigw.routing` for upstream failures and
fallbacks, `aigw.recording` for spills, `aigw.mcp` for tool servers, ...). `configure` is called
once by `aigw serve`; library users keep their own logging set-up.

The access log has one line per request: request id, method, path (never the query: Gemini clients
put their key there), endpoint, principal, status, latency, destination and attempts. Never a
body, a header or a token. Its cost, measured on a throttled 2-core machine where a whole request
cost ~600 µs of CPU: ~40 µs a line (formatting, and a buffered write: lines reach stderr in blocks, at
least every 0.5 s). `--no-access-log` turns it off.
"""

from __future__ import annotations

import logging
import sys
import threading
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


class _SecondStamp:
    """The `YYYY-MM-DDTHH:MM:SS` of the current second, formatted once per second, not per line."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second, self.text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.second, self.text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.text}.{int(created % 1 * 1000):03d}Z"


_utc = _SecondStamp()


def _text(value: Any) -> str:
    text = "-" if value is None else str(value)
    return orjson.dumps(text).decode() if (" " in text or '"' in text or "=" in text or not text) else text


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr through a 64 KiB buffer: info lines (the access log's, one a request) are written in
    blocks, at least every FLUSH_SECONDS, instead of one system call each; a warning or worse is
    written at once, with whatever was waiting before it."""

    FLUSH_SECONDS = 0.5

    def __init__(self) -> None:
        stream = open(sys.stderr.fileno(), "w", buffering=64 * 1024, encoding="utf-8", errors="backslashreplace", closefd=False)
        super().__init__(stream)
        self._stop = threading.Event()
        threading.Thread(target=self._flush_regularly, name="aigw-log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(line)
                if record.levelno >= logging.WARNING:
                    self.stream.flush()
        except Exception:  # noqa: BLE001 - logging must never fail the caller
            self.handleError(record)

    def _flush_regularly(self) -> None:
        while not self._stop.wait(self.FLUSH_SECONDS):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


def configure(level: str = "info", fmt: str = "text", access_log: bool = True) -> None:
    for old in logging.getLogger("aigw").handlers:
        old.close()
    handler = BufferedStderrHandler()
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("aigw")
    root.handlers = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    ACCESS.disabled = not access_log


class _AccessRecord:
    """What the formatters read of a LogRecord, for the access line: a LogRecord (caller, thread and
    process lookups) and Logger.info's dispatch cost more than the rest of the line together."""

    __slots__ = ("created", "fields")
    name, levelname, levelno, exc_info, exc_text, stack_info = "aigw.access", "INFO", logging.INFO, None, None, None

    def __init__(self, fields: dict[str, Any]) -> None:
        self.created = time.time()
        self.fields = fields

    def getMessage(self) -> str:  # noqa: N802 - logging's name
        return "request"


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
    handlers = logging.getLogger("aigw").handlers
    if len(handlers) == 1 and isinstance(handlers[0], BufferedStderrHandler) and not ACCESS.handlers:
        handlers[0].emit(_AccessRecord(fields))  # type: ignore[arg-type]  (the formatters read only these)
    else:
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
