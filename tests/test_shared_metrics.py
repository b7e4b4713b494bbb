"""/metrics of several worker processes (aigw.recording.shared_metrics), without processes: two
workers' views over one directory, a dead worker folded, gauges of live workers only."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from aigw.recording.metrics import UsageMetrics
from aigw.recording.shared_metrics import ENDED, SharedMetrics, fold_ended
from aigw.recording.writer import WriterStats
from tests.test_recording import usage


def stats(written: int, buffered: int = 0, store_up: bool = True) -> WriterStats:
    return WriterStats(written=written, buffered=buffered, spilled=0, replayed=0, failures=0, rejected=0, store_up=store_up)


class Worker:
    def __init__(self, directory: Path, index: int, pid: int) -> None:
        self.metrics = UsageMetrics(is_endpoint=lambda name: name == "chat")
        self.stats = stats(0)
        self.shared = SharedMetrics(directory, index, self.metrics, lambda: self.stats, pid=pid)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }  # fmt: skip


def value(text: str, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples(text).items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def test_every_worker_answers_for_all_and_counters_survive_a_dead_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = Worker(tmp_path, 0, pid=101), Worker(tmp_path, 1, pid=102)
        for i in range(3):
            a.metrics.observe(usage(i))
        b.metrics.observe(usage(9, status=502))
        b.metrics.observe(usage(10, endpoint="no-such-endpoint", status=404))
        a.stats, b.stats = stats(3, buffered=1), stats(2, buffered=2, store_up=False)
        await b.shared.publish()

        seen_by_a = await a.shared.render()
        assert seen_by_a == await b.shared.render()  # whichever worker answers
        assert value(seen_by_a, "aigw_requests_total", endpoint="chat") == 4
        assert value(seen_by_a, "aigw_requests_total", endpoint="__unknown__") == 1  # vetted where observed
        assert value(seen_by_a, "aigw_request_duration_seconds_count", endpoint="chat") == 4
        assert value(seen_by_a, "aigw_input_tokens_total") == 50
        assert value(seen_by_a, "aigw_worker_requests_total", worker="0") == 3
        assert value(seen_by_a, "aigw_worker_requests_total", worker="1") == 2
        assert value(seen_by_a, "aigw_records_written_total") == 5
        assert value(seen_by_a, "aigw_records_buffered") == 3
        assert value(seen_by_a, "aigw_record_store_up") == 0

        # b dies: its counts stay (folded into ended.json), its gauges go; its successor starts at 0.
        fold_ended(tmp_path, 102)
        assert not (tmp_path / "worker-102.json").exists() and (tmp_path / ENDED).exists()
        successor = Worker(tmp_path, 1, pid=103)
        successor.metrics.observe(usage(11))
        successor.stats = stats(1)
        after = await successor.shared.render()
        assert value(after, "aigw_requests_total") == 6
        assert value(after, "aigw_worker_requests_total", worker="1") == 3
        assert value(after, "aigw_records_written_total") == 6
        assert value(after, "aigw_records_buffered") == 1
        assert value(after, "aigw_record_store_up") == 1

        fold_ended(tmp_path, 103)
        fold_ended(tmp_path, 104)  # died before it published: nothing to fold
        assert value(await a.shared.render(), "aigw_requests_total") == 6

    asyncio.run(scenario())


def test_a_worker_publishes_only_what_changed(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker = Worker(tmp_path, 0, pid=201)
        await worker.shared.publish()
        published = tmp_path / "worker-201.json"
        published.write_bytes(b"{}")  # if it were rewritten regardless, this would be gone
        await worker.shared.publish()
        assert published.read_bytes() == b"{}"
        worker.metrics.observe(usage(1))
        await worker.shared.publish()
        assert b'"requests":1' in published.read_bytes()

    asyncio.run(scenario())


def ran(policy: str, verdict: str, phase: str = "call") -> dict:
    return {"policy": policy, "phase": phase, "verdict": verdict, "categories": [], "ms": 0.1}


def test_policy_verdicts_add_up_across_workers_and_a_dead_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        a, b = Worker(tmp_path, 0, pid=301), Worker(tmp_path, 1, pid=302)
        a.metrics.observe(usage(1, policies=[ran("no-pii", "mask"), ran("words", "allow")]))
        b.metrics.observe(usage(2, status=400, policies=[ran("no-pii", "allow"), ran("words", "deny")]))
        b.metrics.observe(usage(3, policies=[ran("no-pii", "mask"), ran("words", "allow")]))
        b.metrics.observe(usage(4))  # no policies: no verdicts
        await b.shared.publish()
        seen = await a.shared.render()
        assert seen == await b.shared.render()
        verdicts = "aigw_policy_verdicts_total"
        assert value(seen, verdicts, endpoint="chat", policy="no-pii", phase="call", verdict="mask") == 2
        assert value(seen, verdicts, endpoint="chat", policy="words", verdict="allow") == 2
        assert value(seen, verdicts, policy="words", verdict="deny") == 1
        assert value(seen, verdicts) == 6

        fold_ended(tmp_path, 302)  # b's verdicts stay once it is gone
        assert value(await a.shared.render(), verdicts) == 6

    asyncio.run(scenario())


def test_a_snapshot_of_series_alone_still_adds(tmp_path: Path) -> None:
    """What a worker of the previous version published: the series list, no verdicts."""
    source = UsageMetrics(is_endpoint=lambda name: True)
    source.observe(usage(1))
    merged = UsageMetrics(is_endpoint=lambda name: True)
    merged.add(source.snapshot()["series"])
    assert merged.requests() == 1
