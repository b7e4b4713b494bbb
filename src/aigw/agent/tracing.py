"""OpenTelemetry spans of agent runs: one per run, per model turn and per tool call.

The tracer provider lives on the `Tracing` object, not in OpenTelemetry's global state, so the
gateway (and each test) owns its exporters and shuts them down itself. The current span travels in
a contextvar (OpenTelemetry's context), so nesting follows `await` within a task and is inherited by
tasks created inside a span's block. When tracing is off, spans are OpenTelemetry's no-op ones and
cost next to nothing, so callers never check whether tracing is on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from aigw.config import TracingConfig

_PROPAGATOR = TraceContextTextMapPropagator()  # stateless: W3C traceparent / tracestate
_PRIMITIVES = (str, bool, int, float)


class Tracing:
    def __init__(self, config: TracingConfig) -> None:
        self.enabled = config.enabled
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer = trace.NoOpTracer()
        if not config.enabled:
            return
        exporters: list[SpanExporter] = []
        if config.otlp_endpoint:  # first: its missing package must not leave the file open
            exporters.append(_otlp_exporter(config.otlp_endpoint))
        if config.file:
            exporters.append(JsonLinesSpanExporter(config.file))
        self._provider = TracerProvider(resource=Resource.create({SERVICE_NAME: config.service_name}))
        for exporter in exporters:
            self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("aigw.agent")

    @contextmanager
    def span(
        self, name: str, *, parent: Context | None = None, attributes: dict[str, Any] | None = None
    ) -> Iterator[Span]:
        """A span current for the block: a child of the current span, or of `parent` when given.
        An exception leaving the block is recorded on it and sets its status to ERROR."""
        with self._tracer.start_as_current_span(
            name,
            context=parent,
            attributes=_attributes(attributes) if attributes and self.enabled else None,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            yield span

    @staticmethod
    def extract(headers: Mapping[str, str]) -> Context:
        """The caller's trace from W3C `traceparent` / `tracestate` request headers (lower-case keys);
        an empty context (a new trace) when they are missing or malformed."""
        return _PROPAGATOR.extract(headers)

    def shutdown(self) -> None:
        """Export what is buffered and close the exporters; later spans are dropped."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
            self._tracer = trace.NoOpTracer()
            self.enabled = False


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as one JSON object per line: a file anyone can read with `jq`."""

    def __init__(self, path: str) -> None:
        try:
            self._file = open(path, "ab")  # noqa: SIM115  (closed in shutdown)
        except OSError as exc:
            raise ValueError(f"tracing.file: cannot open {path!r}: {exc}") from None
        self._lock = threading.Lock()  # export and shutdown may come from different threads

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = b"".join(orjson.dumps(span_record(span), default=str) + b"\n" for span in spans)
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            try:
                self._file.write(data)
                self._file.flush()
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every batch is flushed as it is written


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The JSON-lines shape of a span: ids as lower-case hex, times as unix nanoseconds."""
    context = span.get_span_context()
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x") if context else None,
        "span_id": format(context.span_id, "016x") if context else None,
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "kind": span.kind.name,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "attributes": dict(span.attributes or {}),
        "status": {"code": span.status.status_code.name, "message": span.status.description},
        "events": [
            {"name": event.name, "time_unix_nano": event.timestamp, "attributes": dict(event.attributes or {})}
            for event in span.events
        ],
        "service": span.resource.attributes.get(SERVICE_NAME),
    }


def _otlp_exporter(endpoint: str) -> SpanExporter:
    try:  # optional: most installs never send spans to a collector
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ValueError("tracing.otlp_endpoint needs the opentelemetry-exporter-otlp-proto-http package") from None
    return OTLPSpanExporter(endpoint=endpoint)


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes primitives and lists of them; None is dropped, anything else becomes JSON."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, _PRIMITIVES):
            out[key] = value
        elif _primitive_list(value):
            out[key] = list(value)
        else:
            out[key] = orjson.dumps(value, default=str).decode()
    return out


def _primitive_list(value: Any) -> bool:
    """A non-empty list of primitives all of one type: what OpenTelemetry accepts as a sequence."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    return isinstance(value[0], _PRIMITIVES) and all(type(item) is type(value[0]) for item in value)
