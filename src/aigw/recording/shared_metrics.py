"""One /metrics for `serve --workers N`: every worker process answers a scrape with the counts of all.

A scrape reaches one worker (the kernel picks the socket), so each worker's own counts would be a
random share of the truth. Instead each worker publishes its counts to a file of its own in a
directory the supervisor made (`worker-<pid>.json`, rewritten atomically at most once a second, and
only when something changed), and the worker that answers a scrape adds every other worker's file to
its own live counts. The price: another worker's last second may be missing from a scrape, and one
JSON file per worker is read per scrape (a few KB for a few endpoints).

Counters stay monotonic when a worker dies: the supervisor folds the dead worker's last file into
`ended.json` (`fold_ended`) and the restarted worker starts a file of its own. A worker's last
second before it died is lost. Gauges (records buffered, store up) count live workers only. Readers
take a shared lock on the directory and the folding supervisor an exclusive one, so a scrape sees a
dead worker's counts exactly once.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import orjson

from aigw.recording.metrics import UsageMetrics
from aigw.recording.writer import WriterStats

log = logging.getLogger("aigw.metrics")

PUBLISH_SECONDS = 1.0
ENDED = "ended.json"
LOCK = ".lock"
# Counters of the record writer, summed over workers dead and alive; the rest are gauges.
WRITER_COUNTERS = ("written", "spilled", "replayed", "failures", "rejected", "journaled")


class SharedMetrics:
    """A worker's side: `publish()` its counts, `render()` everyone's."""

    def __init__(
        self, directory: Path, worker: int, metrics: UsageMetrics, stats: Callable[[], WriterStats], pid: int | None = None
    ) -> None:
        self.directory = directory
        self.worker = worker
        self._metrics = metrics
        self._stats = stats
        self._file = directory / f"worker-{pid or os.getpid()}.json"
        self._published: tuple[int, Any] | None = None
        self._writing = asyncio.Lock()

    async def run(self) -> None:
        """Publish every second until cancelled, and once more then (a graceful stop loses nothing)."""
        try:
            while True:
                await asyncio.sleep(PUBLISH_SECONDS)
                await self.publish()
        finally:
            await asyncio.shield(self.publish())

    async def publish(self) -> None:
        """Write this worker's counts, if they changed since the last time (one write at a time, so
        an older snapshot never replaces a newer one)."""
        async with self._writing:
            own = self._own()
            state = (own["requests"], own["writer"])
            if state == self._published:
                return
            try:
                await asyncio.to_thread(self._write, orjson.dumps(own))
            except OSError as exc:
                log.warning("could not publish this worker's metrics: %s", exc)
                return
            self._published = state

    async def render(self) -> str:
        """Everyone's counts, read from the published files only, this worker's published first: so
        every scrape, whichever worker answers it, sees each worker's counts as of a publication,
        and counters never go down from one scrape to the next."""
        await self.publish()
        return await asyncio.to_thread(self._render_files)

    def _own(self) -> dict[str, Any]:
        return {"worker": self.worker, "series": self._metrics.snapshot(), "writer": msgspec.to_builtins(self._stats()),
                "requests": self._metrics.requests()}  # fmt: skip

    def _write(self, data: bytes) -> None:
        partial = self._file.with_suffix(".tmp")
        partial.write_bytes(data)
        os.replace(partial, self._file)  # a reader sees the old file or the new one, never half of one

    def _render_files(self) -> str:
        with _locked(self.directory, fcntl.LOCK_SH):
            published = [data for _, data in _files(self.directory)]
        return render_all(published)


def render_all(files: list[dict[str, Any]]) -> str:
    """The exposition of every worker's counts: `files` are the published dicts, the ended one
    (no "worker") included."""
    merged = UsageMetrics(is_endpoint=lambda name: True)
    counters = dict.fromkeys(WRITER_COUNTERS, 0)
    buffered, store_up = 0, True
    workers: dict[int, int] = {}
    for data in files:
        merged.add(data.get("series") or [])
        writer = data.get("writer") or {}
        for name in WRITER_COUNTERS:
            counters[name] += int(writer.get(name, 0))
        if "worker" in data:  # a live worker: its gauges count
            buffered += int(writer.get("buffered", 0))
            store_up = store_up and bool(writer.get("store_up", True))
        for index, count in _worker_counts(data):
            workers[index] = workers.get(index, 0) + count
    stats = WriterStats(buffered=buffered, store_up=store_up, **counters)
    return merged.render(stats, workers)


def fold_ended(directory: Path, pid: int) -> None:
    """The supervisor's side, when worker `pid` has died: its last counts join `ended.json`."""
    path = directory / f"worker-{pid}.json"
    with _locked(directory, fcntl.LOCK_EX):
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return  # it died before its first publish
        except (OSError, orjson.JSONDecodeError):
            log.warning("could not read the metrics of ended worker %d", pid)
            path.unlink(missing_ok=True)
            return
        ended = _read(directory / ENDED) or {"series": [], "writer": {}, "workers": {}}
        combined = UsageMetrics(is_endpoint=lambda name: True)
        combined.add(ended["series"])
        combined.add(data.get("series") or [])
        writer = {name: int(ended["writer"].get(name, 0)) + int((data.get("writer") or {}).get(name, 0)) for name in WRITER_COUNTERS}
        workers = dict(_worker_counts(ended))
        for index, count in _worker_counts(data):
            workers[index] = workers.get(index, 0) + count
        partial = directory / (ENDED + ".tmp")
        partial.write_bytes(orjson.dumps({"series": combined.snapshot(), "writer": writer, "workers": {str(k): v for k, v in workers.items()}}))
        os.replace(partial, directory / ENDED)
        path.unlink()


def _worker_counts(data: dict[str, Any]) -> Iterator[tuple[int, int]]:
    if "worker" in data:
        yield int(data["worker"]), int(data.get("requests", 0))
    for index, count in (data.get("workers") or {}).items():
        yield int(index), int(count)


def _files(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in directory.glob("*.json"):
        data = _read(path)
        if data is not None:
            yield path, data


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None  # a worker's file that was folded meanwhile
    except (OSError, orjson.JSONDecodeError):
        log.warning("unreadable metrics file %s", path)
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def _locked(directory: Path, mode: int) -> Iterator[None]:
    with open(directory / LOCK, "a") as lock:
        fcntl.flock(lock, mode)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
