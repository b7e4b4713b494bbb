"""The store on SQLite and PostgreSQL: migrations, tokens, bootstrap, and the token CLI."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, select, text

from aigw.admin.tokens_cli import make_tokens_group, parse_duration
from aigw.store import (
    AlreadyExists,
    Store,
    default_data_dir,
    ensure_admin_token,
    normalize_database_url,
    resolve_database_url,
)
from aigw.store.migrate import current_revision
from aigw.store.schema import metadata
from aigw.store.token_format import split_token
from tests.store_fixtures import database_url, store  # noqa: F401  (until tests/conftest.py imports them)

TOKEN_PATTERN = re.compile(r"^aigw_[a-z2-7]{12}_[A-Za-z0-9_-]{43,}$")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- URLs ---------------------------------------------------------------------------------------------


def test_postgres_urls_are_rewritten_to_psycopg() -> None:
    assert normalize_database_url("postgres://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert normalize_database_url("postgresql://u@h/db?sslmode=require") == (
        "postgresql+psycopg://u@h/db?sslmode=require"
    )
    assert normalize_database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("sqlite:////x/y.db") == "sqlite:////x/y.db"


def test_default_url_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    url = resolve_database_url(None, data_dir)
    assert data_dir.is_dir()
    assert url == f"sqlite:///{data_dir.resolve() / 'aigw.db'}"
    assert resolve_database_url("postgres://h/db", data_dir) == "postgresql+psycopg://h/db"
    assert default_data_dir({"AIGW_DATA_DIR": str(tmp_path)}) == tmp_path
    assert default_data_dir({}) == Path.home() / ".aigw"


# -- migrations ---------------------------------------------------------------------------------------


def _head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    from aigw.store.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrations_are_idempotent(database_url: str) -> None:
    for _ in range(2):
        with Store.open(database_url) as opened:
            assert current_revision(opened.engine) == _head_revision()
            tables = set(inspect(opened.engine).get_table_names())
            assert {"principals", "tokens", "groups", "group_members", "grants", "alembic_version"} <= tables


def test_schema_matches_migrations(store: Store) -> None:
    """The table definitions used by queries must describe what the migrations built."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    with Store.open(resolve_database_url(None, tmp_path)) as opened:
        with opened.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_concurrent_first_start_migrates_once_and_bootstraps_once(database_url: str) -> None:
    """Several processes starting at once on a fresh database: all open, one admin token."""
    workers = 4
    barrier = threading.Barrier(workers)
    results: list[str | None] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            with Store.open(database_url) as opened:
                results.append(ensure_admin_token(opened))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len([r for r in results if r is not None]) == 1
    with Store.open(database_url) as opened:
        assert opened.count_tokens() == 1


# -- principals and tokens ------------------------------------------------------------------------------


def test_principals(store: Store) -> None:
    alice = store.create_principal("alice")
    assert (alice.name, alice.kind, alice.is_admin) == ("alice", "user", False)
    bot = store.create_principal("ci-bot", kind="service_principal", is_admin=True)
    assert store.get_principal("ci-bot") == bot
    assert store.get_principal("nobody") is None
    with pytest.raises(AlreadyExists):
        store.create_principal("alice")
    with pytest.raises(ValueError):
        store.create_principal("x", kind="robot")  # type: ignore[arg-type]


def test_create_list_revoke(store: Store) -> None:
    info, plaintext = store.create_token("alice", "laptop")
    assert TOKEN_PATTERN.match(plaintext)
    assert plaintext.startswith(f"aigw_{info.id}_")
    assert (info.name, info.principal_name, info.revoked_at) == ("laptop", "alice", None)
    principal = store.get_principal("alice")
    assert principal is not None and principal.kind == "user" and not principal.is_admin

    second, _ = store.create_token("alice", "ci")
    listed = store.list_tokens()
    assert [t.id for t in listed] == [info.id, second.id]
    assert listed[0] == info
    assert store.count_tokens() == 2

    assert store.revoke_token(info.id) is True
    assert store.revoke_token(info.id) is False  # already revoked
    assert store.revoke_token("ci") is True  # by name
    assert store.revoke_token("nope") is False
    assert all(t.revoked_at is not None for t in store.list_tokens())
    assert store.active_token_records() == []
    assert store.count_tokens() == 2 and store.count_tokens(active_only=True) == 0


def test_active_token_names_are_unique_until_revoked(store: Store) -> None:
    store.create_token("alice", "laptop")
    with pytest.raises(AlreadyExists):
        store.create_token("bob", "laptop")
    assert store.revoke_token("laptop")
    replacement, _ = store.create_token("alice", "laptop")
    assert store.token_record(replacement.id) is not None


def test_only_the_hash_is_stored(store: Store, database_url: str) -> None:
    info, plaintext = store.create_token("alice", "laptop")
    token_id, secret = split_token(plaintext)  # type: ignore[misc]
    record = store.token_record(token_id)
    assert record is not None
    assert record.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert "secret_hash" not in info.__struct_fields__

    dump = []
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            dump.extend(str(row) for row in conn.execute(select(table)))
    everything = "\n".join(dump)
    assert secret not in everything and plaintext not in everything
    if database_url.startswith("sqlite"):
        files = Path(database_url.removeprefix("sqlite:///")).parent.glob("aigw.db*")
        assert all(secret.encode() not in path.read_bytes() for path in files)


def test_expiry(store: Store) -> None:
    live, _ = store.create_token("alice", "live", expires_at=_now() + timedelta(hours=1))
    dead, _ = store.create_token("alice", "dead", expires_at=_now() - timedelta(seconds=1))
    forever, _ = store.create_token("alice", "forever")
    assert {r.id for r in store.active_token_records()} == {live.id, forever.id}
    assert store.count_tokens(active_only=True) == 2
    record = store.token_record(dead.id)
    assert record is not None and record.expires_at is not None
    assert record.expires_at.tzinfo is not None and record.expires_at < _now()
    assert not {t.id: t for t in store.list_tokens()}[dead.id].is_active(_now())
    with pytest.raises(ValueError):
        store.create_token("alice", "naive", expires_at=datetime.now())


def test_ensure_admin_token_once(store: Store) -> None:
    plaintext = ensure_admin_token(store)
    assert plaintext is not None and TOKEN_PATTERN.match(plaintext)
    admin = store.get_principal("admin")
    assert admin is not None and admin.is_admin
    assert ensure_admin_token(store) is None
    # Revoking every token must not make the next start mint a new admin token.
    assert store.revoke_token("admin")
    assert ensure_admin_token(store) is None


def test_ensure_admin_token_skips_a_store_with_tokens(store: Store) -> None:
    store.create_token("alice", "laptop")
    assert ensure_admin_token(store) is None
    assert store.get_principal("admin") is None


# -- CLI ------------------------------------------------------------------------------------------------


def _cli(database_url: str):  # type: ignore[no-untyped-def]
    return make_tokens_group(lambda: Store.open(database_url))


def test_cli_create_prints_only_the_token(store: Store, database_url: str) -> None:
    result = CliRunner().invoke(_cli(database_url), ["create", "--name", "ci", "--create-principal", "--expires-in", "12h"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and TOKEN_PATTERN.match(lines[0])
    assert "Created token" in result.stderr
    (info,) = store.list_tokens()
    assert info.name == "ci" and info.principal_name == "ci"
    assert info.expires_at is not None
    assert abs((info.expires_at - _now()) - timedelta(hours=12)) < timedelta(minutes=1)


def test_cli_list_and_revoke(store: Store, database_url: str) -> None:
    runner, cli = CliRunner(), _cli(database_url)
    created = runner.invoke(cli, ["create", "--name", "laptop", "--principal", "alice", "--create-principal"])
    plaintext = created.stdout.strip()
    token_id, secret = split_token(plaintext)  # type: ignore[misc]

    listed = runner.invoke(cli, ["list"])
    assert listed.exit_code == 0
    assert token_id in listed.stdout and "alice" in listed.stdout and "laptop" in listed.stdout
    assert secret not in listed.output

    duplicate = runner.invoke(cli, ["create", "--name", "laptop", "--principal", "alice"])
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr

    assert runner.invoke(cli, ["revoke", "laptop"]).exit_code == 0
    missing = runner.invoke(cli, ["revoke", "laptop"])
    assert missing.exit_code == 1 and "no active token" in missing.stderr
    assert store.active_token_records() == []


def test_cli_rejects_bad_durations(database_url: str) -> None:
    result = CliRunner().invoke(_cli(database_url), ["create", "--name", "x", "--expires-in", "soon"])
    assert result.exit_code == 2 and "invalid duration" in result.stderr
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("3600s") == timedelta(hours=1)
    with pytest.raises(ValueError):
        parse_duration("0h")


def test_cli_reports_an_unreachable_database() -> None:
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    cli = make_tokens_group(lambda: Store.open(unreachable))
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 1 and "cannot open the database" in result.stderr


def test_sqlite_file_is_shared_between_processes(tmp_path: Path) -> None:
    """A CLI store and a server store on one file see each other's writes at once (WAL)."""
    url = resolve_database_url(None, tmp_path)
    with Store.open(url) as server, Store.open(url) as cli:
        with server.engine.connect() as conn:
            # An open read transaction: under WAL the writer below proceeds instead of waiting.
            conn.execute(text("SELECT count(*) FROM tokens"))
            started = time.monotonic()
            info, _ = cli.create_token("alice", "laptop")
            assert time.monotonic() - started < 2
        assert server.token_record(info.id) is not None
