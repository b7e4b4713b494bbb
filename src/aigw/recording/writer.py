"""The background record writer: the request path hands records over, a task stores them in batches.

    request path ──submit()──► buffer (deque) ──every ~1 s or 500 records──► store (worker thread)
                                   │ over buffer_limit (the store is slow or down)
                                   └──► spill files (fsync'd) ──replayed, oldest first──► store

`submit` only appends to a deque (and updates the metrics): no I/O, no lock, no await, no exception.
The store is written from a thread of the writer's own, one batch at a time, one transaction per batch
with one executemany per table. When the store fails or does not answer within `write_timeout`, the
batch goes back to the buffer and the writer retries with a growing interval; requests keep being
served. A batch that timed out may still have committed: the store ignores request ids it already
holds, so writing it again is harmless. When the buffer passes `buffer_limit` its oldest records go to
spill files, which are replayed before newer records once the store answers. `close()` stores what is
left if the store answers within `close_timeout`, and spills it otherwise.

Failures are logged once per outage (and the recovery once); the counters are in `stats()`.

What a crash loses. Records wait in memory for up to `flush_interval` (or `batch_size` records), so a
process killed with SIGKILL (or a machine losing power) loses the records of the requests it answered
in about the last second; a graceful stop (SIGTERM) loses nothing. In durable mode nothing answered is
lost: `write_ahead` appends a request's records to the spill files and fsyncs them before the answer's
last byte leaves, and the writer stores every record by replaying those files (the same path that
carries records through an outage, so a restart finds what a crash left and stores it). Concurrent
requests share one fsync (group commit), so the cost is one disk flush of latency, not of throughput:

    request path ──write_ahead()──► journal group ──append + fsync──► spill files ──replayed──► store

The store threads are daemon threads: a call to a database host that drops packets can hang far
longer than any timeout of ours, and must not keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from aigw.recording.records import PayloadRecord, Record, UsageRecord
from aigw.recording.spill import DEFAULT_MAX_FILE_BYTES, SpillFiles

log = logging.getLogger("aigw.recording")

T = TypeVar("T")


class RecordSink(Protocol):
    """Where batches go: `aigw.store.recording.RecordingStore` in the gateway, fakes in tests."""

    def write(self, usage: Sequence[UsageRecord], payloads: Sequence[PayloadRecord]) -> None: ...

    def is_transient(self, exc: BaseException) -> bool:
        """True: the store is unreachable or slow (retry later); False: it refused these records."""
        ...


class WriterStats(msgspec.Struct, frozen=True):
    written: int  # records stored (replayed ones included)
    buffered: int  # records in memory now
    spilled: int  # records written to spill files
    replayed: int  # records read back from spill files and stored
    failures: int  # store attempts that failed or timed out
    rejected: int  # records the store refused, kept in spill/rejected-*.jsonl
    store_up: bool
    journaled: int = 0  # durable mode: records written to disk before their answer


class _Worker:
    """One daemon thread running calls in submission order."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((future, fn, args))
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args))

    def stop(self) -> None:
        self._calls.put(None)

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            future, fn, args = call
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued: never runs
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)


class RecordWriter:
    """`spill_dir` is `<data_dir>/spill` in the gateway. Call `start()` on the event loop that will call
    `submit()`, and `close()` at shutdown, after the server stopped taking requests."""

    def __init__(
        self,
        sink: RecordSink,
        spill_dir: Path,
        *,
        observe: Callable[[UsageRecord], None] | None = None,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        buffer_limit: int = 10_000,
        write_timeout: float = 10.0,
        close_timeout: float = 5.0,
        max_retry_interval: float = 10.0,
        spill_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        durable: bool = False,
    ) -> None:
        """`observe` (e.g. `UsageMetrics.observe`) sees every usage record as it is submitted;
        `durable`: every record goes to disk before it is stored (see the module docstring)."""
        if batch_size < 1 or buffer_limit < batch_size:
            raise ValueError("need 1 <= batch_size <= buffer_limit")
        self._sink = sink
        self._observe = observe
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._buffer_limit = buffer_limit
        self._write_timeout = write_timeout
        self._close_timeout = close_timeout
        self._max_retry_interval = max_retry_interval
        self._spill = SpillFiles(spill_dir, spill_file_bytes)
        self._durable = durable
        self._journal: list[Record] = []  # durable mode: records waiting for the next append + fsync
        self._journal_written: asyncio.Future[None] | None = None  # resolved when they are on disk
        self._journal_task: asyncio.Task[None] | None = None
        self._journal_failing = False

        self._buffer: deque[Record] = deque()
        self._wake_at = batch_size  # submit wakes the task at this many buffered records
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._inflight: list[Record] = []  # taken from the buffer, not yet known to be stored
        self._db: _Worker | None = None
        self._files: _Worker | None = None
        self._db_call: concurrent.futures.Future[Any] | None = None
        self._spill_pending = True  # files from an earlier run may be waiting
        self._closing = False
        self._closed = False

        self._down_since: float | None = None
        self._retry_interval = flush_interval
        self._retry_at = 0.0
        self._spill_failing = False
        self._submit_failing = False

        self._written = self._spilled = self._replayed = self._failures = self._rejected = self._journaled = 0

    # -- the request path ---------------------------------------------------------------------------

    def submit(self, record: Record) -> None:
        """Queue a record for storage. O(1), synchronous, never blocks, never raises."""
        try:
            if self._closed:
                self._spill_after_close(record)
                return
            if self._durable and self._files is not None:
                self._journal.append(record)
                if self._journal_task is None:
                    self._journal_task = asyncio.get_running_loop().create_task(self._write_journal())
            else:
                buffer = self._buffer
                buffer.append(record)
                if len(buffer) >= self._wake_at and self._wake is not None:
                    self._wake.set()
            # Last: a metrics bug must not cost the record.
            if self._observe is not None and type(record) is UsageRecord:
                self._observe(record)
        except Exception:  # recording must never fail a request
            if not self._submit_failing:
                self._submit_failing = True
                log.exception("record writer: submit failed (logged once)")

    async def write_ahead(self, records: Sequence[Record]) -> None:
        """Submit `records`; in durable mode, return once they are on disk (the caller answers its
        client after this). Never raises: a disk that refuses them leaves them in memory."""
        for record in records:
            self.submit(record)
        written = self._journal_written
        if self._durable and self._journal and written is not None:
            await asyncio.shield(written)  # a client that leaves does not cancel the group's write

    async def _write_journal(self) -> None:
        """Append what waits in the journal and fsync it, group after group, until none waits: the
        records that arrive during one fsync share the next."""
        assert self._files is not None
        loop = asyncio.get_running_loop()
        try:
            while self._journal:
                records, self._journal = self._journal, []
                written = self._journal_written
                self._journal_written = loop.create_future()
                try:
                    await self._files.run(self._spill.append, records)
                except Exception:
                    self._journal_refused(records)
                else:
                    self._journaled += len(records)
                    self._spill_pending = True
                    self._journal_failing = False
                if written is not None and not written.done():
                    written.set_result(None)
        finally:
            self._journal_task = None

    def _journal_refused(self, records: list[Record]) -> None:
        # Availability over durability: the records wait in memory for the store, as without the
        # journal, rather than fail the requests they account for.
        self._buffer.extend(records)
        if not self._journal_failing:
            self._journal_failing = True
            log.exception("record writer: cannot write the journal in %s; records are kept in memory", self._spill.directory)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._db = _Worker("aigw-record-store")
        self._files = _Worker("aigw-record-spill")
        self._journal_written = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name="aigw-record-writer")

    async def close(self) -> None:
        """Store everything still held, if the store answers within `close_timeout`; spill the rest.

        Call it after the server stopped taking requests; a record submitted later is spilled at once."""
        if self._closed:
            return
        if self._task is None:  # never started: keep what was submitted
            self._closed = True
            if self._buffer:
                self._spill.append(list(self._buffer))
                self._spilled += len(self._buffer)
                self._buffer.clear()
                self._spill.close()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._close_timeout
        self._closing = True
        assert self._wake is not None and self._files is not None and self._db is not None
        self._wake.set()
        await self._task
        if self._journal_task is not None:  # what requests wrote ahead goes to disk first
            await asyncio.wait({self._journal_task}, timeout=max(deadline - loop.time(), 0))
        drain = self._drain_task
        if drain is not None:
            await asyncio.wait({drain}, timeout=max(deadline - loop.time(), 0))
            if not drain.done():
                drain.cancel()
                await asyncio.wait({drain})
        try:
            await asyncio.wait_for(self._final_flush(), timeout=max(deadline - loop.time(), 0.01))
        except (TimeoutError, asyncio.CancelledError):
            pass
        # Whatever is still in memory (a cancelled write put its batch back) goes to disk: its outcome
        # may be unknown, but replaying a record the store already has is a no-op.
        leftover = self._inflight + list(self._buffer)
        self._inflight, self._buffer = [], deque()
        self._closed = True
        if leftover:
            try:
                await self._files.run(self._spill.append, leftover)
                self._spilled += len(leftover)
                log.warning("record writer: %d record(s) spilled to %s at shutdown", len(leftover), self._spill.directory)
            except Exception:
                log.exception("record writer: could not spill %d record(s) at shutdown: they are lost", len(leftover))
        await self._files.run(self._spill.close)
        self._files.stop()
        self._db.stop()

    def stats(self) -> WriterStats:
        return WriterStats(
            written=self._written,
            buffered=len(self._buffer) + len(self._inflight) + len(self._journal),
            spilled=self._spilled,
            replayed=self._replayed,
            failures=self._failures,
            rejected=self._rejected,
            store_up=self._down_since is None,
            journaled=self._journaled,
        )

    # -- the task -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                return
            try:
                await self._tick()
            except Exception:  # the writer must outlive any bug in one round
                log.exception("record writer: unexpected error")

    async def _tick(self) -> None:
        if len(self._buffer) > self._buffer_limit:
            await self._spill_oldest(len(self._buffer) - self._buffer_limit // 2)
        if self._drain_task is None and self._store_due() and (self._buffer or self._spill_pending):
            self._wake_at = self._buffer_limit + 1  # while a drain runs, wake only to spill
            self._drain_task = asyncio.create_task(self._drain(), name="aigw-record-drain")
            self._drain_task.add_done_callback(self._drained)

    def _store_due(self) -> bool:
        if self._db_call is not None and not self._db_call.done():
            return False  # a timed-out call is still hanging in the store thread: do not pile up
        return asyncio.get_running_loop().time() >= self._retry_at

    def _drained(self, task: asyncio.Task[None]) -> None:
        self._drain_task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("record writer: drain failed", exc_info=task.exception())
        self._wake_at = self._batch_size if self._down_since is None else self._buffer_limit + 1
        if len(self._buffer) >= self._wake_at and self._wake is not None:
            self._wake.set()

    async def _drain(self) -> None:
        """Spill files first (they hold the oldest records), then the records buffered when the drain
        began: full batches of `batch_size`, the last one partial. Stops at the first failure."""
        if self._spill_pending and not await self._replay_spill():
            return
        remaining = len(self._buffer)
        while remaining > 0 and self._buffer and not self._closing:
            taken = min(remaining, self._batch_size, len(self._buffer))
            if not await self._store_from_buffer(taken):
                return
            remaining -= taken

    async def _final_flush(self) -> None:
        """At close: the buffer first (memory is what a stop loses), then any spill files."""
        if self._db_call is not None and not self._db_call.done():
            return  # the store thread hangs on an earlier call: do not wait for it
        self._retry_at = 0.0
        while self._buffer:
            if not await self._store_from_buffer(min(self._batch_size, len(self._buffer))):
                return
        if self._spill_pending:
            await self._replay_spill()

    async def _store_from_buffer(self, count: int) -> bool:
        batch = [self._buffer.popleft() for _ in range(count)]
        self._inflight = batch
        stored = False
        try:
            stored = await self._store(batch)
        finally:  # failed, or cancelled by close(): back to the front of the buffer
            self._inflight = []
            if not stored:
                self._buffer.extendleft(reversed(batch))
        return stored

    async def _replay_spill(self) -> bool:
        """Store every spilled record, oldest file first. False when the store failed on the way."""
        assert self._files is not None
        while True:
            records, bad = await self._files.run(self._spill.read_batch, self._batch_size)
            if bad:
                await self._files.run(self._spill.reject, bad)
                await self._files.run(self._spill.commit)
                self._rejected += len(bad)
                log.error("record writer: %d unreadable spill line(s) moved to rejected-*.jsonl", len(bad))
                continue
            if not records:
                self._spill_pending = False
                return True
            if not await self._store(records):
                return False
            await self._files.run(self._spill.commit)
            self._replayed += len(records)
        return True

    async def _store(self, batch: list[Record]) -> bool:
        """Write one batch through the store thread. True once it is stored (or refused for good)."""
        assert self._db is not None and self._files is not None
        usage = [r for r in batch if type(r) is UsageRecord]
        payloads = [r for r in batch if type(r) is not UsageRecord]
        call = self._db.submit(self._write_isolating, usage, payloads)
        self._db_call = call
        try:
            rejected = await asyncio.wait_for(asyncio.wrap_future(call), self._write_timeout)
        except Exception as exc:  # transient failure or timeout: the store is down or slow
            self._store_failed(exc)
            return False
        if rejected:
            await self._files.run(self._spill.reject, rejected)
            self._rejected += len(rejected)
            log.error(
                "record writer: the store refused %d record(s), kept in %s/rejected-*.jsonl: %s",
                len(rejected), self._spill.directory, rejected[0][1],
            )
        self._written += len(batch) - len(rejected)
        self._store_recovered()
        return True

    def _write_isolating(
        self, usage: list[UsageRecord], payloads: list[PayloadRecord]
    ) -> list[tuple[Record, str, None]]:
        """In the store thread: write the batch; if the store refuses it (a bad value, not an outage),
        write its records one by one and return the ones it refuses, so they cannot block the rest."""
        try:
            self._sink.write(usage, payloads)
            return []
        except Exception as exc:
            if self._sink.is_transient(exc):
                raise
        rejected: list[tuple[Record, str, None]] = []
        for record in [*usage, *payloads]:
            try:
                if type(record) is UsageRecord:
                    self._sink.write([record], [])
                else:
                    self._sink.write([], [record])  # type: ignore[list-item]
            except Exception as exc:
                if self._sink.is_transient(exc):
                    raise  # the batch is retried whole; what went in meanwhile is ignored then
                rejected.append((record, f"{type(exc).__name__}: {exc}", None))
        return rejected

    def _store_failed(self, exc: BaseException) -> None:
        now = asyncio.get_running_loop().time()
        self._failures += 1
        if self._down_since is None:
            self._down_since = now
            self._retry_interval = self._flush_interval
            reason = "no answer within %.1fs" % self._write_timeout if isinstance(exc, TimeoutError) else repr(exc)
            log.warning(
                "record writer: the store is unavailable (%s); records are kept in memory and spilled to %s "
                "until it answers",
                reason, self._spill.directory,
            )
        else:
            self._retry_interval = min(self._retry_interval * 2, self._max_retry_interval)
        self._retry_at = now + self._retry_interval

    def _store_recovered(self) -> None:
        if self._down_since is not None:
            outage = asyncio.get_running_loop().time() - self._down_since
            log.warning("record writer: the store answers again after %.1fs; writing the records held meanwhile", outage)
            self._down_since = None
            self._retry_at = 0.0

    # -- spilling -----------------------------------------------------------------------------------

    async def _spill_oldest(self, count: int) -> None:
        assert self._files is not None
        records = [self._buffer.popleft() for _ in range(min(count, len(self._buffer)))]
        try:
            await self._files.run(self._spill.append, records)
        except Exception:
            self._buffer.extendleft(reversed(records))
            if not self._spill_failing:
                self._spill_failing = True
                log.exception("record writer: cannot write spill files in %s; records stay in memory", self._spill.directory)
            return
        self._spill_failing = False
        if not self._spill_pending:
            log.warning("record writer: %d record(s) over the in-memory queue spilled to %s", len(records), self._spill.directory)
        self._spilled += len(records)
        self._spill_pending = True

    def _spill_after_close(self, record: Record) -> None:
        # Rare (a request that outlived the shutdown), so a synchronous write is acceptable here; the
        # file is closed at once, so that a writer started meanwhile can replay it.
        spill = SpillFiles(self._spill.directory, self._spill.max_file_bytes)
        try:
            spill.append([record])
            self._spilled += 1
        finally:
            spill.close()

