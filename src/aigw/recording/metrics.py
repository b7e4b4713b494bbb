"""Prometheus metrics from usage records: requests, errors, latency and gateway overhead, tokens,
and the verdicts of content policies.

A registry of our own rather than prometheus_client: measured on this project's 2-core machines, the
six updates a request makes cost 6-15 µs through cached prometheus_client children (each takes a lock;
a histogram walks its buckets linearly) and 1.1-3 µs here (`RecordWriter.submit` adds 0.1-0.4 µs);
the ranges are medians between a quiet and a busy machine.
Everything a request touches hangs off one object per (endpoint, destination), found with one dict
lookup, so the hot path does no label handling at all: labels are only formatted when `/metrics` is
scraped.

Not thread-safe by design: `observe` runs on the event loop (via `RecordWriter.submit`), and so does the
route that calls `render`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from aigw.recording.records import UsageRecord

if TYPE_CHECKING:
    from aigw.recording.writer import WriterStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds. Requests to models take from milliseconds (embeddings, errors) to minutes (long streams).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# The gateway's own share of a request: should stay well under a few milliseconds.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")  # index: status // 100, 0 when out of range
OVERFLOW_LABEL = "__other__"
UNKNOWN_ENDPOINT_LABEL = "__unknown__"  # a `model` that names no endpoint (the request got a 404)
DEFAULT_MAX_SERIES = 2000


class Histogram:
    """Counts per bucket (not cumulative; summed when rendered) and the sum of observed values."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le is inclusive: value == bound counts
        self.total += value


class _Series:
    """Everything recorded for one (endpoint, destination)."""

    __slots__ = ("requests", "errors", "latency", "overhead", "input_tokens", "output_tokens")

    def __init__(self) -> None:
        self.requests = [0] * len(STATUS_CLASSES)
        self.errors = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.overhead = Histogram(OVERHEAD_BUCKETS)
        self.input_tokens = 0
        self.output_tokens = 0


class UsageMetrics:
    def __init__(self, is_endpoint: Callable[[str], bool], max_series: int = DEFAULT_MAX_SERIES) -> None:
        """A record's endpoint is what the client named (an unknown `model` still yields a 404
        record): only names `is_endpoint` knows become labels, every other one is counted under
        `__unknown__`, so junk names can neither grow the series nor push real endpoints out.
        `max_series` still bounds memory and scrape size (past it: `__other__`)."""
        self._series: dict[tuple[str, str | None], _Series] = {}
        # (endpoint, policy, phase, verdict) -> count. Policy names come from the configuration and
        # the endpoint is one that ran them, so these are bounded like the series (max_series too).
        self._verdicts: dict[tuple[str, str, str, str], int] = {}
        self._is_endpoint = is_endpoint
        self._max_series = max_series

    def observe(self, record: UsageRecord) -> None:
        key = (record.endpoint, record.destination)
        series = self._series.get(key)
        if series is None:
            series = self._add(key)
        status = record.status
        series.requests[status // 100 if 100 <= status < 600 else 0] += 1
        if status >= 400:
            series.errors += 1
        # Histogram.observe inlined: a quarter of this method's cost was the two calls.
        latency = record.latency_ms / 1000.0
        histogram = series.latency
        histogram.counts[bisect_left(LATENCY_BUCKETS, latency)] += 1
        histogram.total += latency
        upstream = record.upstream_latency_ms
        if upstream is not None:
            overhead = max(latency - upstream / 1000.0, 0.0)
            histogram = series.overhead
            histogram.counts[bisect_left(OVERHEAD_BUCKETS, overhead)] += 1
            histogram.total += overhead
        if record.input_tokens:
            series.input_tokens += record.input_tokens
        if record.output_tokens:
            series.output_tokens += record.output_tokens
        if record.policies:
            self._count_verdicts(record.endpoint, record.policies)

    def _count_verdicts(self, endpoint: str, runs: list[dict]) -> None:
        verdicts = self._verdicts
        for run in runs:
            key = (endpoint, run["policy"], run["phase"], run["verdict"])
            count = verdicts.get(key)
            if count is None:
                key = self._verdict_key(key)
                count = verdicts.get(key, 0)
            verdicts[key] = count + 1

    def _verdict_key(self, key: tuple[str, str, str, str]) -> tuple[str, str, str, str]:
        """A new verdict series, or the overflow one past `max_series`."""
        if len(self._verdicts) >= self._max_series:
            return (OVERFLOW_LABEL, OVERFLOW_LABEL, key[2], key[3])
        return key

    def _add(self, key: tuple[str, str | None], vetted: bool = False) -> _Series:
        """A new series, on first sight of a pair (so the predicate is off the hot path)."""
        if not vetted and not self._is_endpoint(key[0]):
            key = (UNKNOWN_ENDPOINT_LABEL, None)
            existing = self._series.get(key)
            if existing is not None:
                return existing
        if len(self._series) >= self._max_series:
            key = (OVERFLOW_LABEL, OVERFLOW_LABEL)
            existing = self._series.get(key)
            if existing is not None:
                return existing
        series = self._series[key] = _Series()
        return series

    # -- several processes (aigw.recording.shared_metrics) -------------------------------------------

    def snapshot(self) -> dict[str, list[list]]:
        """Every series and verdict count as plain data (JSON-ready), for another process to add to
        its own view."""
        series = [
            [e, d, s.requests, s.errors, s.latency.counts, s.latency.total, s.overhead.counts, s.overhead.total,
             s.input_tokens, s.output_tokens]
            for (e, d), s in self._series.items()
        ]  # fmt: skip
        return {"series": series, "policy_verdicts": [[*key, count] for key, count in self._verdicts.items()]}

    def add(self, snapshot: dict[str, list[list]] | list[list]) -> None:
        """Add another process's `snapshot()` to these counts (its labels were already vetted there).
        A bare list is the series alone (what a worker of an earlier version published)."""
        if isinstance(snapshot, list):
            series_rows, verdict_rows = snapshot, []
        else:
            series_rows, verdict_rows = snapshot.get("series") or [], snapshot.get("policy_verdicts") or []
        for e, p, phase, verdict, count in verdict_rows:
            key = (str(e), str(p), str(phase), str(verdict))
            if key not in self._verdicts:
                key = self._verdict_key(key)
            self._verdicts[key] = self._verdicts.get(key, 0) + int(count)
        for e, d, requests, errors, latency, latency_total, overhead, overhead_total, input_tokens, output_tokens in series_rows:
            key = (str(e), None if d is None else str(d))
            series = self._series.get(key)
            if series is None:
                series = self._add(key, vetted=True)
            series.requests = [a + int(b) for a, b in zip(series.requests, requests)]
            series.errors += int(errors)
            for histogram, counts, total in ((series.latency, latency, latency_total), (series.overhead, overhead, overhead_total)):
                histogram.counts = [a + int(b) for a, b in zip(histogram.counts, counts)]
                histogram.total += float(total)
            series.input_tokens += int(input_tokens)
            series.output_tokens += int(output_tokens)

    def requests(self) -> int:
        return sum(sum(s.requests) for s in self._series.values())

    # -- exposition ---------------------------------------------------------------------------------

    def render(self, writer: WriterStats | None = None, workers: dict[int, int] | None = None) -> str:
        """The Prometheus text exposition (format 0.0.4) of every metric, the record writer's counters
        when given, and with several worker processes each one's request count."""
        return "".join(self._lines(writer, workers))

    def _lines(self, writer: WriterStats | None, workers: dict[int, int] | None = None) -> Iterator[str]:
        items = sorted(self._series.items(), key=lambda item: (item[0][0], item[0][1] or ""))
        labelled = [(f'endpoint="{_escape(e)}",destination="{_escape(d or "")}"', s) for (e, d), s in items]

        yield from _header("aigw_requests_total", "counter", "Requests answered, by HTTP status class.")
        for labels, s in labelled:
            for index, count in enumerate(s.requests):
                if count:
                    yield f'aigw_requests_total{{{labels},status_class="{STATUS_CLASSES[index]}"}} {count}\n'
        yield from _header("aigw_request_errors_total", "counter", "Requests answered with a status of 400 or more.")
        for labels, s in labelled:
            yield f"aigw_request_errors_total{{{labels}}} {s.errors}\n"
        yield from _histogram(
            "aigw_request_duration_seconds", "Time from request to last byte sent, as the client saw it.",
            [(labels, s.latency) for labels, s in labelled],
        )
        yield from _histogram(
            "aigw_gateway_overhead_seconds", "Request duration minus the time spent waiting on upstreams.",
            [(labels, s.overhead) for labels, s in labelled],
        )
        yield from _header("aigw_input_tokens_total", "counter", "Input (prompt) tokens reported by upstreams.")
        for labels, s in labelled:
            yield f"aigw_input_tokens_total{{{labels}}} {s.input_tokens}\n"
        yield from _header("aigw_output_tokens_total", "counter", "Output (completion) tokens reported by upstreams.")
        for labels, s in labelled:
            yield f"aigw_output_tokens_total{{{labels}}} {s.output_tokens}\n"
        yield from _header("aigw_policy_verdicts_total", "counter", "Verdicts of content policies (guardrails), by phase.")
        for (e, p, phase, verdict), count in sorted(self._verdicts.items()):
            labels = f'endpoint="{_escape(e)}",policy="{_escape(p)}",phase="{_escape(phase)}",verdict="{_escape(verdict)}"'
            yield f"aigw_policy_verdicts_total{{{labels}}} {count}\n"
        if writer is not None:
            yield from _writer_lines(writer)
        if workers:
            yield from _header("aigw_worker_requests_total", "counter", "Requests answered by each worker process.")
            for index, count in sorted(workers.items()):
                yield f'aigw_worker_requests_total{{worker="{index}"}} {count}\n'


def _writer_lines(stats: WriterStats) -> Iterator[str]:
    for name, kind, help_text, value in (
        ("aigw_records_written_total", "counter", "Records stored by the record writer.", stats.written),
        ("aigw_records_buffered", "gauge", "Records held in memory, waiting for the store.", stats.buffered),
        ("aigw_records_spilled_total", "counter", "Records written to spill files while the store lagged.", stats.spilled),
        ("aigw_records_journaled_total", "counter", "Records written to disk before their answer (durable mode).", stats.journaled),
        ("aigw_records_replayed_total", "counter", "Spilled records read back and stored.", stats.replayed),
        ("aigw_records_rejected_total", "counter", "Records the store refused (kept in rejected files).", stats.rejected),
        ("aigw_record_store_failures_total", "counter", "Failed or timed-out store writes.", stats.failures),
        ("aigw_record_store_up", "gauge", "1 when the last store write succeeded.", int(stats.store_up)),
    ):
        yield from _header(name, kind, help_text)
        yield f"{name} {value}\n"


def _header(name: str, kind: str, help_text: str) -> Iterator[str]:
    yield f"# HELP {name} {help_text}\n"
    yield f"# TYPE {name} {kind}\n"


def _histogram(name: str, help_text: str, series: list[tuple[str, Histogram]]) -> Iterator[str]:
    yield from _header(name, "histogram", help_text)
    for labels, histogram in series:
        cumulative = 0
        for bound, count in zip(histogram.bounds, histogram.counts):
            cumulative += count
            yield f'{name}_bucket{{{labels},le="{bound!r}"}} {cumulative}\n'
        cumulative += histogram.counts[-1]
        yield f'{name}_bucket{{{labels},le="+Inf"}} {cumulative}\n'
        yield f"{name}_sum{{{labels}}} {histogram.total!r}\n"
        yield f"{name}_count{{{labels}}} {cumulative}\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
