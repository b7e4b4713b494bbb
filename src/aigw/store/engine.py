"""Engine construction: pooled, thread-safe, and tuned per backend.

SQLite: WAL so readers never block the writer (the CLI and a running server share one file), a busy
timeout so writers queue instead of failing, and transactions that SQLAlchemy begins itself. The
sqlite3 module's legacy mode does not BEGIN before SELECT or DDL, which breaks transactional
migrations; write transactions use BEGIN IMMEDIATE so a read-then-write transaction takes the write
lock up front instead of failing with SQLITE_BUSY when another writer got there first.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

BUSY_TIMEOUT_SECONDS = 10.0
# Execution option set on a Connection before it begins: "take the write lock now" (SQLite only).
WRITE_OPTION = "aigw_write"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that commits on success; on SQLite it holds the write lock from its start."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn


def create_store_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    # pre_ping: after a database restart the pool holds dead connections; test them on checkout
    # instead of failing the first request that draws one.
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: str, database: str | None) -> Engine:
    in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
    )

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see on_begin
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            if not in_memory:
                _enable_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, far faster
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL once (the mode is stored in the file; later connections only read it).

    The switch needs an exclusive lock, and SQLite reports "database is locked" at once instead of
    waiting in the busy handler when another connection is opening the same fresh file: retry."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            retryable = "locked" in str(exc) or "busy" in str(exc)
            if not retryable or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
