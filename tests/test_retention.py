"""Retention: old usage records, payload logs and stored responses are purged, in batches, by the
gateway's job and by `aigw purge`; recent rows and running background responses stay."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from aigw.cli import main
from aigw.config import ConfigError, RetentionConfig, load_settings
from aigw.recording.records import PayloadRecord, UsageRecord
from aigw.recording.retention import RetentionJob
from aigw.store import Store, resolve_database_url
from aigw.store import retention as retention_module
from aigw.store.recording import RecordingStore
from aigw.store.responses import ResponseStore, StoredResponse
from aigw.store.retention import PurgeCutoffs, purge
from tests.store_fixtures import database_url, store  # noqa: F401  (fixtures)

NOW = datetime.now(timezone.utc)


def _fill(store: Store, ages_days: list[float]) -> None:
    """One usage record, payload log and stored response per age."""
    principal = store.create_principal("alice")
    usage, payloads = [], []
    for i, age in enumerate(ages_days):
        when = NOW - timedelta(days=age)
        usage.append(UsageRecord(
            event_time=when, request_id=f"r{i}", principal_id=principal.id, principal_name="alice", user_agent=None,
            surface="openai", endpoint="demo", destination="demo", model="demo", status=200, latency_ms=1.0,
        ))  # fmt: skip
        payloads.append(PayloadRecord(event_time=when, request_id=f"r{i}", endpoint="demo", principal_name="alice", status=200, latency_ms=1.0))
        status = "in_progress" if i == 0 else "completed"
        ResponseStore(store.engine).create(StoredResponse(
            id=f"resp_{i}", principal_id=principal.id, endpoint="demo", status=status, previous_response_id=None,
            input_items=[], response={"id": f"resp_{i}", "status": status}, created_at=when,
        ))  # fmt: skip
    RecordingStore(store.engine).write(usage, payloads)


def _remaining(store: Store) -> tuple[int, int, int]:
    usage, payloads = RecordingStore(store.engine).count()
    with store.engine.connect() as conn:
        responses = conn.exec_driver_sql("SELECT count(*) FROM responses").scalar_one()
    return usage, payloads, responses


def test_purge_deletes_only_rows_past_each_cutoff(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(retention_module, "BATCH_ROWS", 3)  # several batches, and a partial last one
    _fill(store, [40, 40, 40, 40, 40, 40, 40, 20, 10, 1])
    cutoffs = PurgeCutoffs(usage=NOW - timedelta(days=30), payloads=NOW - timedelta(days=15), responses=NOW - timedelta(days=5))
    counted = purge(store.engine, cutoffs, dry_run=True)
    assert (counted.usage, counted.payloads, counted.responses) == (7, 8, 8)  # resp_0 is still running
    assert _remaining(store) == (10, 10, 10)
    deleted = purge(store.engine, cutoffs)
    assert deleted == counted
    assert _remaining(store) == (3, 2, 2)
    assert purge(store.engine, cutoffs).total == 0
    assert purge(store.engine, PurgeCutoffs()).total == 0  # no cutoff: nothing goes


async def test_the_job_purges_by_the_configuration(store: Store, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    _fill(store, [100, 50, 2])
    job = RetentionJob(RetentionConfig(usage_days=60, payload_days=30), store.engine)
    assert job.enabled and not RetentionJob(RetentionConfig(), store.engine).enabled
    with caplog.at_level(logging.INFO, logger="aigw.retention"):
        await job.run_once()
    assert _remaining(store) == (2, 1, 3)
    assert "1 usage records, 2 payload logs, 0 stored responses deleted" in caplog.text


async def test_a_failing_purge_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    job = RetentionJob(RetentionConfig(usage_days=1), engine=_FailingEngine())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="aigw.retention"):
        await job.run_once()
    assert "retention purge failed" in caplog.text


class _FailingEngine:
    def connect(self):  # type: ignore[no-untyped-def]
        raise OSError("database unreachable")


def test_retention_settings_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "aigw.yaml"
    config.write_text("retention: {usage_days: 90, payload_days: 7.5}\n")
    assert load_settings(config, environ={}).retention.payload_days == 7.5
    config.write_text("retention: {usage_days: 0}\n")
    with pytest.raises(ConfigError, match="retention.usage_days: must be positive"):
        load_settings(config, environ={})


def test_aigw_purge_command(tmp_path: Path) -> None:
    env = {k: None for k in os.environ if k.startswith("AIGW_")} | {"AIGW_DATA_DIR": str(tmp_path)}
    store = Store.open(resolve_database_url(None, tmp_path))
    try:
        _fill(store, [100, 50, 2])
    finally:
        store.close()
    runner = CliRunner()
    refused = runner.invoke(main, ["purge"], env=env)  # type: ignore[arg-type]
    assert refused.exit_code == 2 and "at least one of" in refused.stderr
    dry = runner.invoke(main, ["purge", "--usage-older-than", "30d", "--dry-run"], env=env)  # type: ignore[arg-type]
    assert dry.exit_code == 0 and dry.stdout.strip() == "Would delete 2 usage records, 0 payload logs, 0 stored responses."
    done = runner.invoke(main, ["purge", "--usage-older-than", "30d", "--payloads-older-than", "1w", "--responses-older-than", "40d"], env=env)  # type: ignore[arg-type]
    assert done.stdout.strip() == "Deleted 2 usage records, 2 payload logs, 1 stored responses."
    again = runner.invoke(main, ["purge", "--usage-older-than", "30d"], env=env)  # type: ignore[arg-type]
    assert again.stdout.strip().startswith("Deleted 0 usage records")
