"""Spill files: records kept on local disk while the store cannot take them.

JSON lines under `<data_dir>/spill/`, one file appended to at a time, fsync'd on every append and
rotated by size. File names start with their creation time, so sorting them gives the oldest first,
which is the order they are replayed in. A file is deleted only once every record in it is stored;
a replay cut short starts again from where it stopped, and anything replayed twice is ignored by the
store (request ids are unique), so nothing is lost and nothing is stored twice.

Several gateways may share a data directory: each writes files of its own, holds an advisory lock
(flock) on the one it appends to and on the one it replays, and skips files another process holds.
Records the store refuses (not an outage: a value it cannot take) go to `rejected-*.jsonl`, which is
never replayed, so one bad record cannot block the rest.

Not thread-safe: the writer calls every method from one worker thread.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec

from aigw.recording.records import PayloadRecord, Record, UsageRecord, cleaned

RECORDS_PREFIX = "records-"
REJECTED_PREFIX = "rejected-"
SUFFIX = ".jsonl"
DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024


class _UsageLine(msgspec.Struct, tag="usage", tag_field="kind"):
    record: UsageRecord


class _PayloadLine(msgspec.Struct, tag="payload", tag_field="kind"):
    record: PayloadRecord


class _RejectedLine(msgspec.Struct):
    error: str
    record: UsageRecord | PayloadRecord | None = None
    line: str | None = None  # a spill line that could not be decoded


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_UsageLine | _PayloadLine)


def encode_line(record: Record) -> bytes:
    wrap = _UsageLine if type(record) is UsageRecord else _PayloadLine
    try:
        return _encoder.encode(wrap(record)) + b"\n"  # type: ignore[arg-type]
    except (UnicodeEncodeError, msgspec.EncodeError):  # lone surrogates: store a cleaned copy
        return _encoder.encode(wrap(cleaned(record))) + b"\n"  # type: ignore[arg-type]


class _Replay:
    """The file being replayed: locked, with the offset of the first record not yet stored."""

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path = path
        self.handle = handle
        self.offset = 0
        self.next_offset = 0


class SpillFiles:
    def __init__(self, directory: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        self.directory = Path(directory)
        self.max_file_bytes = max_file_bytes
        self._current: BinaryIO | None = None
        self._current_path: Path | None = None
        self._replay: _Replay | None = None
        self._sequence = itertools.count()

    # -- writing ------------------------------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> None:
        """Append and fsync: when this returns, the records survive a crash."""
        if not records:
            return
        handle = self._writable()
        handle.write(b"".join(encode_line(r) for r in records))
        handle.flush()
        os.fsync(handle.fileno())
        if handle.tell() >= self.max_file_bytes:
            self.rotate()

    def rotate(self) -> None:
        """Close the file being appended to (it becomes replayable); the next append starts a new one."""
        if self._current is not None:
            self._current.close()  # closing releases the lock
            self._current = self._current_path = None

    def _writable(self) -> BinaryIO:
        if self._current is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{RECORDS_PREFIX}{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):06d}{SUFFIX}"
            path = self.directory / name
            handle = open(path, "ab")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            _fsync_directory(self.directory)
            self._current, self._current_path = handle, path
        return self._current

    def reject(self, rejected: Sequence[tuple[Record | None, str, bytes | None]]) -> None:
        """Keep refused records (or undecodable lines) with the reason, out of the replay."""
        if not rejected:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = []
        for record, error, raw in rejected:
            line = None if raw is None else raw.decode("utf-8", "replace")
            entry = _RejectedLine(error=error, record=None if record is None else cleaned(record), line=line)
            lines.append(_encoder.encode(entry) + b"\n")
        path = self.directory / f"{REJECTED_PREFIX}{time.strftime('%Y%m%d')}-{os.getpid()}{SUFFIX}"
        with open(path, "ab") as handle:
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())

    # -- replaying ----------------------------------------------------------------------------------

    def pending(self) -> list[Path]:
        """Spill files waiting to be replayed, oldest first (our own open file excluded)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p
            for p in self.directory.iterdir()
            if p.name.startswith(RECORDS_PREFIX) and p.name.endswith(SUFFIX) and p != self._current_path
        )

    def read_batch(
        self, max_records: int, *, include_current: bool = True
    ) -> tuple[list[Record], list[tuple[None, str, bytes]]]:
        """The next records to replay (oldest file first) and any undecodable lines met on the way.
        Both empty: nothing left. Call `commit` once the records are stored."""
        while True:
            replay = self._replay or self._open_next(include_current)
            if replay is None:
                return [], []
            records, bad = self._read(replay, max_records)
            if records or bad:
                return records, bad
            self._finish(replay)  # the whole file is stored

    def commit(self) -> None:
        """The records of the last `read_batch` are stored: move past them."""
        if self._replay is not None:
            self._replay.offset = self._replay.next_offset

    def close(self) -> None:
        self.rotate()
        if self._replay is not None:
            self._replay.handle.close()
            self._replay = None

    def _open_next(self, include_current: bool) -> _Replay | None:
        if include_current and self._current is not None:
            self.rotate()  # our open file holds the newest spilled records; replay it last
        for path in self.pending():
            try:
                handle = open(path, "rb")
            except FileNotFoundError:  # another process replayed it meanwhile
                continue
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process appends to or replays it
                handle.close()
                continue
            if not path.exists():  # replayed and deleted between our listing and our lock
                handle.close()
                continue
            self._replay = _Replay(path, handle)
            return self._replay
        return None

    def _read(self, replay: _Replay, max_records: int) -> tuple[list[Record], list[tuple[None, str, bytes]]]:
        """Up to `max_records` records, or else the run of undecodable lines at the offset (a batch
        holds one or the other, so the caller commits rejected lines at once, exactly once)."""
        handle = replay.handle
        handle.seek(replay.offset)
        records: list[Record] = []
        bad: list[tuple[None, str, bytes]] = []
        while len(records) < max_records:
            start = handle.tell()
            line = handle.readline()
            if not line:
                break
            problem = None
            if not line.endswith(b"\n"):  # the writer died mid-line: the last record is cut short
                problem = "truncated spill line"
            else:
                try:
                    record = _decoder.decode(line).record
                except msgspec.DecodeError as exc:
                    problem = f"undecodable spill line: {exc}"
            if problem is None and not bad:
                records.append(record)
            elif problem is not None and not records:
                bad.append((None, problem, line))
            else:  # the kind changes here: stop before this line
                handle.seek(start)
                break
        replay.next_offset = handle.tell()
        return records, bad

    def _finish(self, replay: _Replay) -> None:
        try:
            replay.path.unlink()
        except FileNotFoundError:
            pass
        replay.handle.close()
        self._replay = None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
