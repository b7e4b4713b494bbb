"""Recording: records, the batch writer (batching, bounded buffer, spill and replay, idempotent retries,
shutdown), metrics, the usage and payload queries on SQLite and PostgreSQL, the Parquet export, the
usage CLI and admin API, and a real PostgreSQL outage (through a TCP proxy the test cuts and restores)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from aigw.admin.usage_api import parse_time, parse_usage_query, payloads_response, usage_response
from aigw.admin.usage_cli import make_usage_group
from aigw.errors import GatewayError
from aigw.recording import Attempt, PayloadRecord, RecordWriter, UsageMetrics, UsageRecord, capture_body
from aigw.recording.export import export_parquet
from aigw.recording.records import clean_text
from aigw.recording.spill import SpillFiles
from aigw.store import Store
from aigw.store.engine import create_store_engine
from aigw.store.migrate import current_revision
from aigw.store.recording import PayloadQuery, RecordingStore, UsageQuery
from aigw.store.schema import usage_records
from tests.store_fixtures import database_url, postgres_database, store  # noqa: F401  (fixtures)

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)


def usage(i: int, **changes: object) -> UsageRecord:
    record = UsageRecord(
        event_time=T0 + timedelta(minutes=i),
        request_id=f"req-{i:06d}",
        principal_id=1,
        principal_name="alice",
        user_agent="test/1.0",
        surface="openai_chat",
        endpoint="chat",
        destination="openai/gpt-4o",
        model="gpt-4o",
        status=200,
        latency_ms=100.0 + i,
        upstream_latency_ms=95.0 + i,
        input_tokens=10,
        output_tokens=5,
        total_tokens=15,
    )
    return msgspec.structs.replace(record, **changes) if changes else record


def payload(i: int, **changes: object) -> PayloadRecord:
    record = PayloadRecord(
        event_time=T0 + timedelta(minutes=i),
        request_id=f"req-{i:06d}",
        endpoint="chat",
        principal_name="alice",
        status=200,
        latency_ms=100.0 + i,
        request_body='{"messages": []}',
        response_body='{"choices": []}',
    )
    return msgspec.structs.replace(record, **changes) if changes else record


async def until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class StoreDown(Exception):
    """What the fake sink raises while "unreachable"."""


class FakeSink:
    """An in-memory store that can go down, refuse records, or be slow."""

    def __init__(self) -> None:
        self.rows: dict[str, UsageRecord | PayloadRecord] = {}
        self.order: list[str] = []
        self.batches: list[int] = []
        self.down = False
        self.delay = 0.0
        self.refuse: set[str] = set()

    def write(self, usage: Sequence[UsageRecord], payloads: Sequence[PayloadRecord]) -> None:
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise StoreDown("connection refused")
        records = [*usage, *payloads]
        if any(r.request_id in self.refuse for r in records):
            raise ValueError("value refused")
        self.batches.append(len(records))
        for r in records:
            key = f"{type(r).__name__}:{r.request_id}"
            if key not in self.rows:
                self.rows[key] = r
                self.order.append(r.request_id)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, StoreDown)

    def usage_count(self) -> int:
        return sum(1 for k in self.rows if k.startswith("UsageRecord:"))


def spill_files(directory: Path, prefix: str = "records-") -> list[Path]:
    return sorted(directory.glob(f"{prefix}*.jsonl")) if directory.is_dir() else []


def fast_writer(sink: object, spill_dir: Path, **options: object) -> RecordWriter:
    settings: dict[str, object] = {
        "batch_size": 50,
        "flush_interval": 0.05,
        "buffer_limit": 200,
        "write_timeout": 2.0,
        "close_timeout": 3.0,
        "max_retry_interval": 0.2,
    }
    settings.update(options)
    return RecordWriter(sink, spill_dir, **settings)  # type: ignore[arg-type]


# -- records ------------------------------------------------------------------------------------------


def test_capture_body_and_clean_text() -> None:
    assert capture_body(b'{"a": 1}', 100) == ('{"a": 1}', False)
    assert capture_body(b"x" * 101, 100) == (None, True)
    assert capture_body(None, 100) == (None, False)
    assert capture_body(b"\xff", 100) == ("\ufffd", False)
    assert clean_text("plain") == "plain"
    assert clean_text("nul\x00here") == "nul\ufffdhere"
    assert clean_text("lone \ud800 surrogate") == "lone ? surrogate"
    assert usage(1, upstream_latency_ms=None).gateway_overhead_ms is None
    assert usage(1).gateway_overhead_ms == 5.0


# -- the writer ---------------------------------------------------------------------------------------


async def test_writes_full_batches_at_once_and_the_rest_on_the_interval(tmp_path: Path) -> None:
    sink = FakeSink()
    writer = fast_writer(sink, tmp_path / "spill", batch_size=100, flush_interval=2.0, buffer_limit=1000)
    await writer.start()
    for i in range(250):
        writer.submit(usage(i))
    await until(lambda: sink.usage_count() >= 200, timeout=1.5, what="the full batches, before the interval")
    assert sink.batches[:2] == [100, 100]
    await until(lambda: sink.usage_count() == 250, what="the partial batch on the interval")
    assert sink.batches == [100, 100, 50]
    await writer.close()
    assert writer.stats().written == 250 and writer.stats().buffered == 0


async def test_durable_mode_writes_records_to_disk_before_returning(tmp_path: Path) -> None:
    """write_ahead returns once the records are fsync'd in a spill file (a kill -9 after it loses
    nothing); concurrent requests share fsyncs; the writer stores the records by replaying the
    files, and removes them once stored."""
    sink = FakeSink()
    spill_dir = tmp_path / "spill"
    writer = fast_writer(sink, spill_dir, durable=True)
    appends: list[int] = []
    real_append = writer._spill.append

    def counting_append(records: Sequence[object]) -> None:
        appends.append(len(records))
        real_append(records)  # type: ignore[arg-type]

    writer._spill.append = counting_append  # type: ignore[method-assign]
    await writer.start()
    await writer.write_ahead([usage(0), payload(0)])
    on_disk = b"".join(p.read_bytes() for p in spill_dir.glob("records-*.jsonl"))
    assert b'"req-000000"' in on_disk and on_disk.count(b"\n") == 2  # before anything reached the store

    await asyncio.gather(*(writer.write_ahead([usage(i)]) for i in range(1, 201)))
    assert sum(appends) == 202 and len(appends) < 20, appends  # group commit: one fsync serves many
    await until(lambda: sink.usage_count() == 201, what="the replayed records")
    await until(lambda: not list(spill_dir.glob("records-*.jsonl")), what="stored files removed")
    await writer.close()
    assert writer.stats().journaled == 202 and writer.stats().written == 202


async def test_durable_mode_keeps_records_in_memory_when_the_disk_refuses(tmp_path: Path) -> None:
    sink = FakeSink()
    writer = fast_writer(sink, tmp_path / "spill", durable=True)
    await writer.start()

    def full_disk(records: Sequence[object]) -> None:
        raise OSError(28, "No space left on device")

    writer._spill.append = full_disk  # type: ignore[method-assign]
    await writer.write_ahead([usage(1)])  # answered anyway: the record waits in memory instead
    await until(lambda: sink.usage_count() == 1, what="the record, through the memory path")
    await writer.close()


async def test_submit_never_blocks_nor_raises(tmp_path: Path) -> None:
    def broken_observe(_record: UsageRecord) -> None:
        raise RuntimeError("metrics bug")

    sink = FakeSink()
    sink.delay = 0.5  # a slow store
    writer = fast_writer(sink, tmp_path / "spill", observe=broken_observe)
    await writer.start()
    started = time.perf_counter()
    for i in range(2000):
        writer.submit(usage(i))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"2000 submits took {elapsed:.3f}s"
    sink.delay = 0.0
    await writer.close()
    on_disk = sum(len(p.read_bytes().splitlines()) for p in spill_files(tmp_path / "spill"))
    assert sink.usage_count() + on_disk == 2000


async def test_bounded_buffer_spills_and_replays_oldest_first_exactly_once(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.down = True
    spill_dir = tmp_path / "spill"
    writer = fast_writer(sink, spill_dir, buffer_limit=100)
    await writer.start()
    for i in range(1000):
        writer.submit(usage(i))
        if i % 100 == 99:
            await asyncio.sleep(0.06)  # let the writer tick
    await until(lambda: writer.stats().buffered <= 100, what="the buffer to drain into spill files")
    stats = writer.stats()
    assert stats.spilled >= 900 and stats.failures >= 1 and not stats.store_up
    spilled_ids = [
        msgspec.json.decode(line)["record"]["request_id"]
        for path in spill_files(spill_dir)
        for line in path.read_bytes().splitlines()
    ]
    assert len(spilled_ids) == stats.spilled

    sink.down = False
    await until(lambda: sink.usage_count() == 1000, what="every record once the store is back")
    assert writer.stats().store_up and writer.stats().replayed == len(spilled_ids)
    assert sorted(sink.order) == [f"req-{i:06d}" for i in range(1000)]  # each exactly once
    replayed = [rid for rid in sink.order if rid in set(spilled_ids)]
    assert replayed == spilled_ids  # spill files replayed in the order they were written
    await until(lambda: spill_files(spill_dir) == [], what="replayed spill files to be deleted")
    await writer.close()


async def test_outage_is_logged_once_and_recovery_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aigw.recording")
    sink = FakeSink()
    sink.down = True
    writer = fast_writer(sink, tmp_path / "spill", max_retry_interval=0.05)
    await writer.start()
    for i in range(20):
        writer.submit(usage(i))
    await until(lambda: writer.stats().failures >= 5, what="several failed attempts")
    sink.down = False
    await until(lambda: sink.usage_count() == 20, what="the records after recovery")
    await writer.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("answers again" in m for m in messages) == 1


async def test_close_flushes_to_the_store(tmp_path: Path) -> None:
    sink = FakeSink()
    writer = fast_writer(sink, tmp_path / "spill", flush_interval=60.0, batch_size=500, buffer_limit=1000)
    await writer.start()
    for i in range(30):
        writer.submit(usage(i))
        writer.submit(payload(i))
    await writer.close()
    assert len(sink.rows) == 60 and spill_files(tmp_path / "spill") == []


async def test_close_spills_when_the_store_is_down_and_a_restart_replays(tmp_path: Path) -> None:
    spill_dir = tmp_path / "spill"
    sink = FakeSink()
    sink.down = True
    writer = fast_writer(sink, spill_dir, close_timeout=0.5)
    await writer.start()
    for i in range(120):
        writer.submit(usage(i))
    started = time.monotonic()
    await writer.close()
    assert time.monotonic() - started < 2.0
    assert sink.rows == {}
    assert sum(len(p.read_bytes().splitlines()) for p in spill_files(spill_dir)) == 120
    writer.submit(usage(999))  # a request that outlived the shutdown: spilled at once

    sink.down = False
    restarted = fast_writer(sink, spill_dir)
    await restarted.start()
    await until(lambda: sink.usage_count() == 121, what="the spilled records after a restart")
    await restarted.close()
    assert spill_files(spill_dir) == []


async def test_close_does_not_wait_for_a_hanging_store(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.delay = 5.0  # the database host drops packets
    writer = fast_writer(sink, tmp_path / "spill", write_timeout=0.2, close_timeout=0.5)
    await writer.start()
    for i in range(10):
        writer.submit(usage(i))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await writer.close()
    assert time.monotonic() - started < 1.5
    assert sum(len(p.read_bytes().splitlines()) for p in spill_files(tmp_path / "spill")) == 10


async def test_close_cancels_a_slow_write_and_keeps_its_batch(tmp_path: Path) -> None:
    sink = FakeSink()
    writer = fast_writer(sink, tmp_path / "spill", write_timeout=30.0, close_timeout=0.3)
    await writer.start()
    sink.delay = 1.0  # the write in progress at close outlives close_timeout
    for i in range(60):
        writer.submit(usage(i))
    await asyncio.sleep(0.2)
    await writer.close()
    spilled = {
        msgspec.json.decode(line)["record"]["request_id"]
        for path in spill_files(tmp_path / "spill")
        for line in path.read_bytes().splitlines()
    }
    assert len(spilled) == 60  # the batch being written too: its outcome was unknown
    await asyncio.sleep(1.0)  # the abandoned write commits after all; replaying it is a no-op
    sink.delay = 0.0
    restarted = fast_writer(sink, tmp_path / "spill")
    await restarted.start()
    await until(lambda: sink.usage_count() == 60 and spill_files(tmp_path / "spill") == [], what="the replay")
    await restarted.close()


async def test_close_without_start_keeps_the_records(tmp_path: Path) -> None:
    writer = fast_writer(FakeSink(), tmp_path / "spill")
    writer.submit(usage(1))
    await writer.close()
    assert sum(len(p.read_bytes().splitlines()) for p in spill_files(tmp_path / "spill")) == 1


async def test_refused_records_are_set_aside_without_blocking_the_rest(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.refuse = {"req-000007"}
    writer = fast_writer(sink, tmp_path / "spill")
    await writer.start()
    for i in range(20):
        writer.submit(usage(i))
    await until(lambda: sink.usage_count() == 19, what="the other records")
    await writer.close()
    assert writer.stats().rejected == 1 and writer.stats().written == 19
    (rejected,) = spill_files(tmp_path / "spill", "rejected-")
    entry = msgspec.json.decode(rejected.read_bytes().splitlines()[0])
    assert entry["record"]["request_id"] == "req-000007" and "value refused" in entry["error"]


async def test_a_cut_spill_line_is_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    spill_dir = tmp_path / "spill"
    files = SpillFiles(spill_dir)
    files.append([usage(i) for i in range(5)])
    files.close()
    (path,) = spill_files(spill_dir)
    with open(path, "ab") as handle:  # a crash in the middle of a line, then a later good record
        handle.write(b'{"kind":"usage","record":{"event_ti')
    sink = FakeSink()
    writer = fast_writer(sink, spill_dir)
    await writer.start()
    await until(lambda: sink.usage_count() == 5, what="the good records")
    await writer.close()
    assert writer.stats().rejected == 1
    assert spill_files(spill_dir) == [] and len(spill_files(spill_dir, "rejected-")) == 1


def test_spill_files_held_by_another_writer_are_skipped(tmp_path: Path) -> None:
    first, second = SpillFiles(tmp_path), SpillFiles(tmp_path)
    first.append([usage(1)])  # first keeps appending to (and locking) this file
    assert second.read_batch(10) == ([], [])
    first.rotate()
    records, bad = second.read_batch(10)
    assert [r.request_id for r in records] == ["req-000001"] and bad == []
    second.commit()
    assert second.read_batch(10) == ([], [])
    assert spill_files(tmp_path) == []


def test_spill_lines_survive_unencodable_strings(tmp_path: Path) -> None:
    files = SpillFiles(tmp_path)
    files.append([usage(1, user_agent="bad \ud800", tags={"k\ud800": "v"})])
    files.close()
    (record,), _ = SpillFiles(tmp_path).read_batch(10)
    assert record.user_agent == "bad ?" and record.tags == {"k?": "v"}


# -- the store: writes and queries on SQLite and PostgreSQL ------------------------------------------


def test_migration_creates_the_recording_tables(store: Store) -> None:
    assert int(current_revision(store.engine) or 0) >= 3
    assert RecordingStore(store.engine).count() == (0, 0)


def test_inserts_are_idempotent_and_take_any_text(store: Store) -> None:
    recording = RecordingStore(store.engine)
    batch = [usage(i) for i in range(10)]
    odd = usage(
        10,
        user_agent="nul \x00 and lone \ud800",
        error="x" * 5000,
        tags={"team": "search", "nul": "a\x00b", "bad\ud800": "x"},
        attempts=[Attempt("openai/gpt-4o", 500, 12.5, "upstream 500"), Attempt("anthropic/claude", 200, 80.0)],
    )
    recording.write([*batch, odd], [payload(1, request_body="body \x00", response_marker="MAX_RESPONSE_SIZE_EXCEEDED", response_body=None)])
    recording.write(batch, [payload(1)])  # a replay: ignored
    assert recording.count() == (11, 1)
    rows = [row for b in recording.iter_usage() for row in b]
    stored = next(r for r in rows if r["request_id"] == "req-000010")
    assert stored["user_agent"] == "nul \ufffd and lone ?"
    assert stored["tags"] == {"team": "search", "nul": "a\ufffdb", "bad?": "x"}
    assert stored["attempts"][0] == {"destination": "openai/gpt-4o", "status": 500, "latency_ms": 12.5, "error": "upstream 500"}
    assert stored["policies"] == []  # none ran
    assert stored["event_time"] == T0 + timedelta(minutes=10)
    (stored_payload,) = recording.list_payloads(PayloadQuery())
    assert stored_payload.request_body == "body \ufffd" and stored_payload.response_marker == "MAX_RESPONSE_SIZE_EXCEEDED"


def _report_fixture(recording: RecordingStore) -> None:
    """Two days, two endpoints, two principals, two models; latencies 1..N ms per group."""
    records = []
    for i in range(40):
        records.append(
            usage(
                i,
                event_time=T0 + timedelta(hours=i),  # T0 is 10:00, so hours 0-13 are day 1
                endpoint="chat" if i % 4 else "embed",
                principal_name="alice" if i % 2 else "bob",
                model="gpt-4o" if i < 30 else "claude",
                status=200 if i % 10 else 502,
                latency_ms=float(i + 1),
                upstream_latency_ms=float(i + 1) - 0.5 if i % 10 else None,
                input_tokens=i,
                output_tokens=2 * i,
                total_tokens=None,
            )
        )
    recording.write(records, [])


def test_usage_report_totals_filters_and_percentiles(store: Store) -> None:
    recording = RecordingStore(store.engine)
    _report_fixture(recording)
    (total,) = recording.query_usage(UsageQuery())
    assert total.group is None and total.requests == 40 and total.errors == 4
    assert (total.input_tokens, total.output_tokens, total.total_tokens) == (780, 1560, 2340)
    assert total.avg_latency_ms == pytest.approx(20.5)
    # Nearest rank over latencies 1..40: p50 = 20th, p95 = 38th, p99 = 40th.
    assert (total.p50_latency_ms, total.p95_latency_ms, total.p99_latency_ms) == (20.0, 38.0, 40.0)
    assert total.avg_overhead_ms == pytest.approx(0.5)

    (chat,) = recording.query_usage(UsageQuery(endpoint="chat"))
    assert chat.requests == 30
    (bob_chat,) = recording.query_usage(UsageQuery(endpoint="chat", principal="bob"))
    assert bob_chat.requests == 10
    (window,) = recording.query_usage(UsageQuery(since=T0 + timedelta(hours=10), until=T0 + timedelta(hours=20)))
    assert window.requests == 10 and window.p50_latency_ms == 15.0
    assert recording.query_usage(UsageQuery(endpoint="nope")) == []


def test_usage_report_group_by(store: Store) -> None:
    recording = RecordingStore(store.engine)
    _report_fixture(recording)
    by_endpoint = {r.group: r for r in recording.query_usage(UsageQuery(group_by="endpoint"))}
    assert {k: v.requests for k, v in by_endpoint.items()} == {"chat": 30, "embed": 10}
    assert by_endpoint["embed"].errors == 2  # i = 0 and 20
    assert by_endpoint["embed"].p50_latency_ms == 17.0  # latencies 1, 5, ..., 37: the 5th
    by_principal = recording.query_usage(UsageQuery(group_by="principal"))
    assert [(r.group, r.requests) for r in by_principal] == [("alice", 20), ("bob", 20)]
    by_model = recording.query_usage(UsageQuery(group_by="model"))
    assert [(r.group, r.requests) for r in by_model] == [("gpt-4o", 30), ("claude", 10)]
    by_day = recording.query_usage(UsageQuery(group_by="day"))
    assert [(r.group, r.requests) for r in by_day] == [("2026-11-01", 14), ("2026-11-02", 24), ("2026-11-03", 2)]
    assert sum(r.total_tokens for r in by_day) == 2340


def test_payload_listing(store: Store) -> None:
    recording = RecordingStore(store.engine)
    recording.write(
        [],
        [payload(i, endpoint="chat" if i % 2 else "embed", principal_name="alice" if i < 5 else "bob") for i in range(10)],
    )
    newest = recording.list_payloads(PayloadQuery(limit=3))
    assert [p.request_id for p in newest] == ["req-000009", "req-000008", "req-000007"]
    assert [p.request_id for p in recording.list_payloads(PayloadQuery(endpoint="embed", principal="alice"))] == [
        "req-000004", "req-000002", "req-000000",
    ]
    assert len(recording.list_payloads(PayloadQuery(since=T0 + timedelta(minutes=8)))) == 2
    (one,) = recording.list_payloads(PayloadQuery(request_id="req-000003"))
    assert one.request_body == '{"messages": []}' and one.event_time == T0 + timedelta(minutes=3)


def test_policy_runs_are_stored_and_exported(store: Store, tmp_path: Path) -> None:
    """The `policies` column (migration 0007) on both back ends, read back and in the export."""
    runs = [
        {"policy": "no-pii", "phase": "call", "verdict": "mask", "categories": ["EMAIL", "PHONE"], "ms": 0.25},
        {"policy": "words", "phase": "call", "verdict": "deny", "categories": ["keywords"], "ms": 0.01},
    ]
    recording = RecordingStore(store.engine)
    recording.write([usage(1, policies=runs), usage(2)], [])
    rows = {r["request_id"]: r for b in recording.iter_usage() for r in b}
    assert rows["req-000001"]["policies"] == runs and rows["req-000002"]["policies"] == []
    exported = pq.read_table(export_parquet(recording, tmp_path / "out").usage_path).to_pylist()
    assert [r["policies"] for r in exported] == [runs, []]


def test_parquet_export_reads_back(store: Store, tmp_path: Path) -> None:
    recording = RecordingStore(store.engine)
    records = [usage(i, tags={"team": f"t{i % 3}"}, attempts=[Attempt("d", 200, 1.5)]) for i in range(25)]
    records.append(usage(25, principal_id=None, principal_name=None, input_tokens=None, status=401, error="bad token"))
    recording.write(records, [payload(i, request_body="é" * i) for i in range(7)])
    result = export_parquet(recording, tmp_path / "out", usage_batch_rows=10, payload_batch_rows=3)
    assert (result.usage_rows, result.payload_rows) == (26, 7)

    parquet = pq.ParquetFile(result.usage_path)
    assert parquet.metadata.num_row_groups == 3  # one per streamed batch
    table = parquet.read()
    rows = table.to_pylist()
    assert [r["request_id"] for r in rows] == [f"req-{i:06d}" for i in range(26)]
    assert rows[4]["tags"] == [("team", "t1")] and rows[4]["attempts"] == [
        {"destination": "d", "status": 200, "latency_ms": 1.5, "error": None}
    ]
    assert rows[0]["event_time"] == T0 and rows[25]["principal_name"] is None and rows[25]["status"] == 401
    assert str(table.schema.field("event_time").type) == "timestamp[us, tz=UTC]"
    payloads = pq.read_table(result.payloads_path).to_pylist()
    assert [p["request_body"] for p in payloads] == ["é" * i for i in range(7)]

    since = export_parquet(recording, tmp_path / "recent", since=T0 + timedelta(minutes=20))
    assert since.usage_rows == 6 and pq.read_table(since.usage_path).num_rows == 6
    empty = export_parquet(recording, tmp_path / "none", since=T0 + timedelta(days=30))
    assert (empty.usage_rows, pq.read_table(empty.usage_path).num_rows) == (0, 0)


async def test_a_timed_out_insert_that_committed_is_not_stored_twice(store: Store, tmp_path: Path) -> None:
    real = RecordingStore(store.engine)

    class CommitsThenHangs:
        calls = 0

        def write(self, usage: Sequence[UsageRecord], payloads: Sequence[PayloadRecord]) -> None:
            real.write(usage, payloads)
            CommitsThenHangs.calls += 1
            if CommitsThenHangs.calls == 1:
                time.sleep(0.6)  # committed, but the answer comes after the writer gave up

        is_transient = staticmethod(RecordingStore.is_transient)

    writer = fast_writer(CommitsThenHangs(), tmp_path / "spill", write_timeout=0.2, batch_size=100)
    await writer.start()
    for i in range(40):
        writer.submit(usage(i))
        writer.submit(payload(i))
    await until(lambda: writer.stats().written == 80, what="the retried batch")
    await writer.close()
    assert CommitsThenHangs.calls >= 2 and writer.stats().failures >= 1
    assert real.count() == (40, 40)
    with store.engine.connect() as conn:
        distinct = conn.execute(select(func.count(func.distinct(usage_records.c.request_id)))).scalar_one()
    assert distinct == 40


# -- metrics ------------------------------------------------------------------------------------------


def test_metrics_exposition_parses_and_counts() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics = UsageMetrics(is_endpoint=every_name)
    metrics.observe(usage(1, latency_ms=250.0, upstream_latency_ms=249.0))
    metrics.observe(usage(2, latency_ms=5.0, upstream_latency_ms=4.9))
    metrics.observe(usage(3, status=502, error="upstream", destination='we"ird\\dest'))
    metrics.observe(usage(4, status=401, destination=None, upstream_latency_ms=None, input_tokens=None, output_tokens=None))
    text = metrics.render(writer=None)
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(family: str, sample: str, **labels: str) -> float:
        for s in families[family].samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise KeyError((family, sample, labels))

    main = {"endpoint": "chat", "destination": "openai/gpt-4o"}
    assert value("aigw_requests", "aigw_requests_total", status_class="2xx", **main) == 2
    assert value("aigw_requests", "aigw_requests_total", status_class="5xx", destination='we"ird\\dest') == 1
    assert value("aigw_requests", "aigw_requests_total", status_class="4xx", destination="") == 1
    assert value("aigw_request_errors", "aigw_request_errors_total", **main) == 0
    assert value("aigw_request_duration_seconds", "aigw_request_duration_seconds_count", **main) == 2
    assert value("aigw_request_duration_seconds", "aigw_request_duration_seconds_bucket", le="0.005", **main) == 1
    assert value("aigw_request_duration_seconds", "aigw_request_duration_seconds_bucket", le="0.25", **main) == 2
    assert value("aigw_request_duration_seconds", "aigw_request_duration_seconds_sum", **main) == pytest.approx(0.255)
    assert value("aigw_gateway_overhead_seconds", "aigw_gateway_overhead_seconds_bucket", le="0.0001", **main) == 1
    assert value("aigw_gateway_overhead_seconds", "aigw_gateway_overhead_seconds_count", destination="") == 0
    assert value("aigw_input_tokens", "aigw_input_tokens_total", **main) == 20
    assert value("aigw_output_tokens", "aigw_output_tokens_total", **main) == 10


async def test_the_writer_feeds_metrics_and_reports_its_counters(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics = UsageMetrics(is_endpoint=every_name)
    sink = FakeSink()
    writer = fast_writer(sink, tmp_path / "spill", observe=metrics.observe)
    await writer.start()
    for i in range(7):
        writer.submit(usage(i))
    writer.submit(payload(1))  # payloads are not observed
    await until(lambda: len(sink.rows) == 8, what="the records")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render(writer.stats()))}
    assert families["aigw_records_written"].samples[0].value == 8
    assert families["aigw_record_store_up"].samples[0].value == 1
    (requests,) = families["aigw_requests"].samples
    assert requests.value == 7
    await writer.close()


def test_metrics_cap_the_number_of_series() -> None:
    metrics = UsageMetrics(is_endpoint=every_name, max_series=3)
    for i in range(10):
        metrics.observe(usage(i, endpoint=f"client-chosen-{i}"))
    text = metrics.render()
    assert text.count("aigw_request_errors_total{") == 4  # three pairs, then one for the rest
    assert 'aigw_requests_total{endpoint="__other__",destination="__other__",status_class="2xx"} 7' in text


def test_metrics_label_only_endpoints_that_exist() -> None:
    """Junk `model` names (each a 404 record) are counted under one `__unknown__` label: they can
    neither grow the series nor push a real endpoint out under `__other__`."""
    metrics = UsageMetrics(is_endpoint=lambda name: name == "chat", max_series=3)
    for i in range(5000):
        metrics.observe(usage(i, endpoint=f"junk-{i}", status=404, destination=None))
    metrics.observe(usage(1))
    text = metrics.render()
    assert "junk-" not in text and "__other__" not in text
    assert 'aigw_requests_total{endpoint="__unknown__",destination="",status_class="4xx"} 5000' in text
    assert 'aigw_requests_total{endpoint="chat",destination="openai/gpt-4o",status_class="2xx"} 1' in text


def every_name(name: str) -> bool:
    return True


def test_per_record_cost_of_submit_and_observe(tmp_path: Path) -> None:
    """Not a benchmark gate (shared CI machines are noisy), just a guard against a regression by an
    order of magnitude; the figure is printed for the record (`pytest -s`)."""
    metrics = UsageMetrics(is_endpoint=every_name)
    writer = RecordWriter(FakeSink(), tmp_path / "spill", observe=metrics.observe, buffer_limit=10**6, batch_size=10**6)
    records = [usage(i % 100) for i in range(50_000)]
    started = time.perf_counter()
    for record in records:
        writer.submit(record)
    per_record = (time.perf_counter() - started) / len(records)
    print(f"submit + metrics.observe: {per_record * 1e6:.2f} µs per record")
    assert per_record < 50e-6


# -- CLI and admin API ----------------------------------------------------------------------------------


def test_usage_cli_table_json_and_export(store: Store, database_url: str, tmp_path: Path) -> None:
    _report_fixture(RecordingStore(store.engine))
    cli = make_usage_group(lambda: Store.open(database_url))
    runner = CliRunner()

    result = runner.invoke(cli, ["--group-by", "endpoint", "--since", "2026-11-01", "--until", "2026-11-03"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["ENDPOINT", "REQUESTS", "ERRORS"]
    assert lines[1].split()[:3] == ["chat", "28", "2"] and lines[2].split()[:3] == ["embed", "10", "2"]

    result = runner.invoke(cli, ["--endpoint", "chat", "--principal", "bob", "--json"])
    assert result.exit_code == 0, result.output
    report = msgspec.json.decode(result.stdout)
    assert report["group_by"] is None and report["rows"][0]["requests"] == 10

    result = runner.invoke(cli, ["--since", "1h"])  # the fixture's records are in the past
    assert result.exit_code == 0 and "No usage recorded" in result.stderr
    result = runner.invoke(cli, ["--since", "yesterday"])
    assert result.exit_code == 2 and "invalid time" in result.output

    result = runner.invoke(cli, ["export", "--out", str(tmp_path / "export"), "--since", "2026-11-02"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(tmp_path / "export" / "usage.parquet"), str(tmp_path / "export" / "payloads.parquet")]
    assert pq.read_table(tmp_path / "export" / "usage.parquet").num_rows == 26


async def test_admin_usage_and_payload_api(store: Store) -> None:
    recording = RecordingStore(store.engine)
    _report_fixture(recording)
    recording.write([], [payload(i) for i in range(5)])

    body = msgspec.json.decode(await usage_response(store, {"group_by": "principal", "endpoint": "chat"}))
    assert body["group_by"] == "principal"
    assert [(r["group"], r["requests"]) for r in body["rows"]] == [("alice", 20), ("bob", 10)]
    body = msgspec.json.decode(await usage_response(recording, {"since": "2026-11-03T00:00:00Z"}))
    assert body["rows"][0]["requests"] == 2 and body["since"] == "2026-11-03T00:00:00Z"

    body = msgspec.json.decode(await payloads_response(store, {"limit": "2"}))
    assert [p["request_id"] for p in body["payloads"]] == ["req-000004", "req-000003"]

    for params, param in (
        ({"group_by": "week"}, "group_by"),
        ({"since": "last tuesday"}, "since"),
        ({"groupby": "day"}, "groupby"),
    ):
        with pytest.raises(GatewayError) as caught:
            await usage_response(store, params)
        assert caught.value.status == 400 and caught.value.param == param
    with pytest.raises(GatewayError) as caught:
        await payloads_response(store, {"limit": "0"})
    assert caught.value.param == "limit"


def test_time_parameters() -> None:
    now = datetime(2026, 11, 5, 12, 0, tzinfo=timezone.utc)
    assert parse_time("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert parse_time("24h", now) == datetime(2026, 11, 4, 12, 0, tzinfo=timezone.utc)
    assert parse_time("7d", now) == datetime(2026, 10, 29, 12, 0, tzinfo=timezone.utc)
    assert parse_time("2026-11-01T08:00:00+02:00", now) == datetime(2026, 11, 1, 6, 0, tzinfo=timezone.utc)
    assert parse_usage_query({"until": "2026-11-02T00:00"}, now).until == datetime(2026, 11, 2, tzinfo=timezone.utc)


# -- a real PostgreSQL outage -----------------------------------------------------------------------------


class TcpProxy:
    """127.0.0.1:<port> → target, in a thread of its own. `cut()` closes the port and drops every
    connection (what a database restart or a network cut looks like to the client); `restore()`
    listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()

    def restore(self) -> None:
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(5)

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update({client_writer, upstream_writer})

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.transport.abort()

        try:
            await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        except asyncio.CancelledError:  # cut(): the connections are gone already
            pass
        self._writers.difference_update({client_writer, upstream_writer})


async def test_postgres_outage_loses_and_duplicates_nothing(postgres_database: str, tmp_path: Path) -> None:
    with Store.open(postgres_database) as direct:  # migrated directly, counted directly
        direct_recording = RecordingStore(direct.engine)
        url = make_url(postgres_database)
        proxy = TcpProxy(url.port or 5432)
        proxy.restore()
        engine = create_store_engine(url.set(port=proxy.port).render_as_string(hide_password=False))
        spill_dir = tmp_path / "spill"
        writer = fast_writer(RecordingStore(engine), spill_dir, buffer_limit=300, write_timeout=3.0, max_retry_interval=0.3)
        try:
            await writer.start()
            for i in range(100):
                writer.submit(usage(i))
                writer.submit(payload(i))
            await until(lambda: writer.stats().written == 200, what="records while the database is up")

            proxy.cut()
            slowest = 0.0
            for i in range(100, 1100):
                started = time.perf_counter()
                writer.submit(usage(i))
                slowest = max(slowest, time.perf_counter() - started)
                if i % 50 == 0:
                    await asyncio.sleep(0.03)  # requests keep arriving over time
            await until(lambda: writer.stats().failures >= 1 and writer.stats().spilled > 0, what="the outage to be seen")
            # Never waits for the database (that would be seconds); the bound leaves room for GC and
            # thread switches on a loaded machine.
            assert slowest < 0.05, f"a submit took {slowest * 1000:.1f} ms during the outage"
            assert not writer.stats().store_up
            assert direct_recording.count() == (100, 100)
            await asyncio.sleep(1.0)  # a few failed retries
            assert spill_files(spill_dir)

            proxy.restore()
            await until(lambda: direct_recording.count() == (1100, 100), timeout=30, what="every record after the outage")
            await until(lambda: spill_files(spill_dir) == [], what="the spill files to be replayed and deleted")
            # The rows are visible a moment before the writer hears that its transaction committed.
            await until(lambda: writer.stats().written == 1200, what="the writer to count every record")
            assert writer.stats().store_up and writer.stats().buffered == 0
        finally:
            await writer.close()
            engine.dispose()
            proxy.close()
        with direct.engine.connect() as conn:
            ids = conn.execute(select(usage_records.c.request_id)).scalars().all()
        assert sorted(ids) == [f"req-{i:06d}" for i in range(1100)]
