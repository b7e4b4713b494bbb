"""Run the Alembic migrations in code: no alembic.ini on the user's side.

Upgrades run inside one transaction that first takes a lock, so several processes starting at once on
a fresh database apply each migration exactly once: PostgreSQL uses an advisory lock, SQLite the write
lock of BEGIN IMMEDIATE. Both backends have transactional DDL, so a failed migration leaves nothing
half-applied.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine

from aigw.store.engine import WRITE_OPTION

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
# Arbitrary but fixed: every aigw instance must use the same key ("aigw" in ASCII).
_PG_MIGRATION_LOCK_KEY = 0x61696777


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """A Config pointing at the packaged migrations. With a connection, env.py migrates over it;
    with a URL it opens its own (for developers: `command.revision(alembic_config(url=...), ...)`)."""
    config = Config()
    # Config values go through configparser interpolation: a literal % must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(engine: Engine) -> None:
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            _upgrade_sqlite(connection)
        else:
            _upgrade_locked(connection)


def _upgrade_locked(connection: Connection) -> None:
    connection.execution_options(**{WRITE_OPTION: True})
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK_KEY})")
        command.upgrade(alembic_config(connection), "head")
        if connection.dialect.name == "sqlite":
            _check_foreign_keys(connection)


def _upgrade_sqlite(connection: Connection) -> None:
    # Batch migrations rebuild tables (copy, drop, rename). With foreign keys enforced, dropping the
    # old table would fire ON DELETE CASCADE into its children, so enforcement is off for the run
    # (SQLite's documented ALTER procedure). The pragma is a no-op inside a transaction, hence the raw
    # DBAPI connection before BEGIN.
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        _upgrade_locked(connection)
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def _check_foreign_keys(connection: Connection) -> None:
    """With enforcement off during the run, verify references before committing."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migration left {len(broken)} broken foreign key reference(s): {broken[:5]}")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
