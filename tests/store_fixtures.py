"""Fixtures shared by test_store.py and test_auth.py: a store URL per backend.

SQLite gets a file in tmp_path. PostgreSQL gets one fresh database per test session (created on first
use, dropped at exit, shared by every module through `config.stash`) and a fresh schema per test, so
no run and no test sees another's rows. PostgreSQL unreachable: skip, except under CI=true: fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from aigw.store import Store, normalize_database_url, resolve_database_url

POSTGRES_ADMIN_URL = os.environ.get(
    "AIGW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# (database URL, error): computed once per session.
_SESSION_DATABASE = pytest.StashKey[tuple[str | None, str | None]]()


def _session_database(config: pytest.Config) -> str:
    if _SESSION_DATABASE not in config.stash:
        config.stash[_SESSION_DATABASE] = _create_database(config)
    url, error = config.stash[_SESSION_DATABASE]
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required when CI=true but unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable: {error}")
    return url


def _create_database(config: pytest.Config) -> tuple[str | None, str | None]:
    name = f"aigw_t_{secrets.token_hex(5)}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        return None, str(exc).strip()
    config.add_cleanup(lambda: _drop_database(name))
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False), None


def _drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    if request.param == "sqlite":
        return resolve_database_url(None, tmp_path / "data")  # type: ignore[operator]
    return _fresh_schema_url(request.config)


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL URL with a schema of its own, for gateway processes to share."""
    return _fresh_schema_url(request.config)


def _fresh_schema_url(config: pytest.Config) -> str:
    database = _session_database(config)
    schema = f"t_{secrets.token_hex(5)}"
    with psycopg.connect(database, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = make_url(database).update_query_dict({"options": f"-csearch_path={schema}"})
    return normalize_database_url(url.render_as_string(hide_password=False))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store.open(database_url)
    try:
        yield opened
    finally:
        opened.close()


def head_revision() -> str | None:
    """The newest migration: what a store opened now is migrated to."""
    from alembic.script import ScriptDirectory

    from aigw.store.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
