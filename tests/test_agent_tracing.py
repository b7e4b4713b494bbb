"""Tracing of agent runs: spans nest, honour the caller's traceparent, record errors, land in the file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry import trace

from aigw.agent.tracing import Tracing
from aigw.config import TracingConfig

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def spans(path: Path) -> dict[str, dict[str, Any]]:
    return {record["name"]: record for record in map(orjson.loads, path.read_bytes().splitlines())}


@pytest.fixture
def spans_file(tmp_path: Path) -> Path:
    return tmp_path / "spans.jsonl"


@pytest.fixture
def tracing(spans_file: Path):
    tracing = Tracing(TracingConfig(enabled=True, file=str(spans_file), service_name="aigw-test"))
    yield tracing
    tracing.shutdown()


def test_nested_spans(tracing: Tracing, spans_file: Path) -> None:
    with tracing.span("run"):
        with tracing.span("turn"):
            with tracing.span("tool"):
                pass
        with tracing.span("turn 2"):
            pass
    tracing.shutdown()
    found = spans(spans_file)
    run, turn, tool, turn2 = found["run"], found["turn"], found["tool"], found["turn 2"]
    assert run["parent_span_id"] is None
    assert turn["parent_span_id"] == run["span_id"] == turn2["parent_span_id"]
    assert tool["parent_span_id"] == turn["span_id"]
    assert len({s["trace_id"] for s in found.values()}) == 1
    assert len(run["trace_id"]) == 32 and len(run["span_id"]) == 16
    assert run["start_time_unix_nano"] <= turn["start_time_unix_nano"]
    assert turn["end_time_unix_nano"] <= run["end_time_unix_nano"]
    assert run["status"]["code"] == "UNSET" and run["service"] == "aigw-test"


def test_traceparent_is_honoured(tracing: Tracing, spans_file: Path) -> None:
    parent = Tracing.extract({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "vendor=x"})
    with tracing.span("run", parent=parent):
        with tracing.span("turn"):
            pass
    tracing.shutdown()
    found = spans(spans_file)
    assert found["run"]["trace_id"] == TRACE_ID == found["turn"]["trace_id"]
    assert found["run"]["parent_span_id"] == PARENT_ID
    assert found["turn"]["parent_span_id"] == found["run"]["span_id"]


def test_malformed_traceparent_starts_a_new_trace(tracing: Tracing, spans_file: Path) -> None:
    with tracing.span("run", parent=Tracing.extract({"traceparent": "garbage"})):
        pass
    tracing.shutdown()
    run = spans(spans_file)["run"]
    assert run["parent_span_id"] is None and run["trace_id"] != TRACE_ID


def test_exception_sets_error_status(tracing: Tracing, spans_file: Path) -> None:
    with pytest.raises(ValueError, match="boom"), tracing.span("tool"):
        raise ValueError("boom")
    tracing.shutdown()
    tool = spans(spans_file)["tool"]
    assert tool["status"] == {"code": "ERROR", "message": "ValueError: boom"}
    [event] = tool["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "boom"


def test_attributes_kept(tracing: Tracing, spans_file: Path) -> None:
    primitives = {"tool.name": "add", "tokens": 12, "ok": True, "ratio": 0.5, "tags": ["a", "b"]}
    with tracing.span("tool", attributes={**primitives, "args": {"a": 1}, "none": None}) as span:
        span.set_attribute("later", "yes")
    tracing.shutdown()
    # Primitives kept, other values as JSON text, None dropped.
    assert spans(spans_file)["tool"]["attributes"] == {**primitives, "args": '{"a":1}', "later": "yes"}


async def test_context_follows_await_and_child_tasks(tracing: Tracing, spans_file: Path) -> None:
    def in_thread() -> None:
        with tracing.span("thread"):
            pass

    async def tool(name: str) -> None:
        await asyncio.sleep(0.01)
        with tracing.span(name):
            await asyncio.sleep(0)

    with tracing.span("run"):
        await asyncio.sleep(0)
        with tracing.span("turn"):
            await asyncio.gather(tool("a"), tool("b"))  # each in its own child task
            await asyncio.to_thread(in_thread)  # to_thread copies the context too
        other = asyncio.create_task(tool("sibling"))
    await other
    tracing.shutdown()
    found = spans(spans_file)
    assert found["a"]["parent_span_id"] == found["turn"]["span_id"] == found["b"]["parent_span_id"]
    assert found["thread"]["parent_span_id"] == found["turn"]["span_id"]
    assert found["sibling"]["parent_span_id"] == found["run"]["span_id"]
    assert found["turn"]["parent_span_id"] == found["run"]["span_id"]


def test_shutdown_flushes(spans_file: Path) -> None:
    tracing = Tracing(TracingConfig(enabled=True, file=str(spans_file)))
    for i in range(3):
        with tracing.span(f"span {i}"):
            pass
    tracing.shutdown()  # well before the batch processor's 5 s schedule
    assert set(spans(spans_file)) == {"span 0", "span 1", "span 2"}
    tracing.shutdown()  # twice is harmless
    with tracing.span("after"):  # and spans after it go nowhere
        pass
    assert "after" not in spans(spans_file)


def test_disabled_is_a_no_op(spans_file: Path) -> None:
    tracing = Tracing(TracingConfig(enabled=False, file=str(spans_file), otlp_endpoint="http://127.0.0.1:1/v1/traces"))
    with tracing.span("run", attributes={"x": {"y": 1}}) as span:
        assert not span.is_recording()
        span.set_attribute("k", "v")
        with tracing.span("child"):
            pass
    with pytest.raises(RuntimeError), tracing.span("failing"):
        raise RuntimeError("still raised")
    tracing.shutdown()
    assert not spans_file.exists()


def test_disabled_still_passes_the_callers_trace_along() -> None:
    tracing = Tracing(TracingConfig())
    parent = Tracing.extract({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    with tracing.span("run", parent=parent) as span:
        assert format(span.get_span_context().trace_id, "032x") == TRACE_ID
        assert trace.get_current_span() is span


def test_otlp_without_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ValueError, match="opentelemetry-exporter-otlp-proto-http"):
        Tracing(TracingConfig(enabled=True, otlp_endpoint="http://127.0.0.1:4318/v1/traces"))


def test_unwritable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tracing.file"):
        Tracing(TracingConfig(enabled=True, file=str(tmp_path / "missing" / "spans.jsonl")))
