"""The Store: a pooled, thread-safe SQLAlchemy engine behind small synchronous methods.

Methods are synchronous on purpose: the async server calls them via `asyncio.to_thread`, never on
the per-request path (authentication reads an in-memory cache). Every method checks out its own
connection, so one Store may be shared by any number of threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from aigw.store.access import AccessStore
from aigw.store.engine import create_store_engine, write_transaction
from aigw.store.errors import AlreadyExists, StoreError
from aigw.store.migrate import upgrade_to_head
from aigw.store.records import (
    PRINCIPAL_KINDS,
    AccessSnapshot,
    PrincipalInfo,
    PrincipalKind,
    TokenInfo,
    TokenRecord,
)
from aigw.store.schema import principals, tokens
from aigw.store.token_format import hash_secret, new_token

_TOKEN_COLUMNS = (
    tokens.c.id,
    tokens.c.name,
    tokens.c.principal_id,
    principals.c.name.label("principal_name"),
    tokens.c.created_at,
    tokens.c.expires_at,
    tokens.c.revoked_at,
)
_RECORD_COLUMNS = (
    *_TOKEN_COLUMNS,
    tokens.c.secret_hash,
    principals.c.kind.label("principal_kind"),
    principals.c.is_admin,
)
_TOKENS_WITH_PRINCIPAL = tokens.join(principals, tokens.c.principal_id == principals.c.id)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Store:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Connect and bring the schema to the latest migration."""
        engine = create_store_engine(url)
        try:
            if migrate:
                upgrade_to_head(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        return self._engine

    def describe(self) -> str:
        """Where the store is, for the start-up log: the SQLite file, or PostgreSQL's host and
        database (never the password)."""
        url = self._engine.url
        if self.backend == "sqlite":
            return f"SQLite {url.database or ':memory:'}"
        return f"PostgreSQL {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"

    @property
    def backend(self) -> str:
        """"sqlite" or "postgresql"."""
        return self._engine.dialect.name

    # -- principals ---------------------------------------------------------------------------------

    def create_principal(
        self, name: str, kind: PrincipalKind = "user", is_admin: bool = False
    ) -> PrincipalInfo:
        _check_name(name, "principal")
        if kind not in PRINCIPAL_KINDS:
            raise ValueError(f"principal kind must be one of {sorted(PRINCIPAL_KINDS)}, got {kind!r}")
        try:
            with self._write() as conn:
                return _insert_principal(conn, name, kind, is_admin)
        except IntegrityError as exc:
            raise AlreadyExists(f"principal {name!r} already exists") from exc

    def get_principal(self, name: str) -> PrincipalInfo | None:
        with self._read() as conn:
            row = conn.execute(select(principals).where(principals.c.name == name)).first()
        return None if row is None else _principal(row)

    # -- groups, memberships, grants (aigw.store.access) ----------------------------------------------

    @property
    def access(self) -> AccessStore:
        """Principal listing and deletion, groups, memberships and endpoint grants."""
        return AccessStore(self._read, self._write)

    def access_snapshot(self) -> AccessSnapshot:
        """Every membership and grant: what the in-memory authorization state is built from."""
        return self.access.snapshot()

    # -- tokens -------------------------------------------------------------------------------------

    def create_token(
        self,
        principal_name: str,
        token_name: str,
        expires_at: datetime | None = None,
        *,
        kind: PrincipalKind | None = None,
    ) -> tuple[TokenInfo, str]:
        """Create a token (and its principal, as a `kind` or else a user, if missing). Returns the
        token's info and its plaintext: the only time the plaintext exists outside the caller's hands.
        With `kind`, an existing principal must be of that kind."""
        _check_name(principal_name, "principal")
        _check_name(token_name, "token")
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware (UTC)")
        # Two attempts: a concurrent creator of the same new principal makes the first fail on the
        # principal's unique name; the retry finds the principal and goes through.
        for attempt in (1, 2):
            try:
                with self._write() as conn:
                    _ensure_name_free(conn, token_name)
                    principal = _get_or_create_principal(
                        conn, principal_name, is_admin=False, kind=kind or "user"
                    )
                    if kind is not None and principal.kind != kind:
                        raise StoreError(
                            f"principal {principal_name!r} is a {principal.kind.replace('_', ' ')}, "
                            f"not a {kind.replace('_', ' ')}"
                        )
                    return _insert_token(conn, principal, token_name, expires_at)
            except IntegrityError as exc:
                if attempt == 2:
                    raise AlreadyExists(f"an active token named {token_name!r} already exists") from exc
        raise AssertionError("unreachable")

    def create_first_token(
        self, principal_name: str, token_name: str, *, is_admin: bool
    ) -> tuple[TokenInfo, str] | None:
        """Create a token only if the store has never held one; None otherwise, including when another
        process wins the race (the unique indexes make the loser's transaction fail)."""
        try:
            with self._write() as conn:
                if conn.execute(select(func.count()).select_from(tokens)).scalar_one():
                    return None
                principal = _get_or_create_principal(conn, principal_name, is_admin=is_admin)
                if is_admin and not principal.is_admin:
                    conn.execute(
                        update(principals).where(principals.c.id == principal.id).values(is_admin=True)
                    )
                return _insert_token(conn, principal, token_name, None)
        except IntegrityError:
            return None

    def list_tokens(self) -> list[TokenInfo]:
        query = (
            select(*_TOKEN_COLUMNS)
            .select_from(_TOKENS_WITH_PRINCIPAL)
            .order_by(tokens.c.created_at, tokens.c.id)
        )
        with self._read() as conn:
            return [_token_info(row) for row in conn.execute(query)]

    def revoke_token(self, id_or_name: str) -> bool:
        """Revoke the active token with this id, else the one with this name. False if none."""
        now = utcnow()
        with self._write() as conn:
            for column in (tokens.c.id, tokens.c.name):
                result = conn.execute(
                    update(tokens)
                    .where(column == id_or_name, tokens.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                if result.rowcount:
                    return True
        return False

    def token_record(self, token_id: str) -> TokenRecord | None:
        """The token with its hash and principal, whatever its state (the caller checks)."""
        query = select(*_RECORD_COLUMNS).select_from(_TOKENS_WITH_PRINCIPAL).where(tokens.c.id == token_id)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _token_record(row)

    def active_token_records(self, now: datetime | None = None) -> list[TokenRecord]:
        """Every token that is neither revoked nor expired: what the authentication cache holds."""
        now = now or utcnow()
        query = (
            select(*_RECORD_COLUMNS)
            .select_from(_TOKENS_WITH_PRINCIPAL)
            .where(
                tokens.c.revoked_at.is_(None),
                or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now),
            )
        )
        with self._read() as conn:
            return [_token_record(row) for row in conn.execute(query)]

    def count_tokens(self, *, active_only: bool = False) -> int:
        query = select(func.count()).select_from(tokens)
        if active_only:
            now = utcnow()
            query = query.where(
                and_(
                    tokens.c.revoked_at.is_(None),
                    or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now),
                )
            )
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    # -- transactions -------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _write(self) -> AbstractContextManager[Connection]:
        return write_transaction(self._engine)


def _check_name(name: str, what: str) -> None:
    if not name or not name.strip() or len(name) > 200:
        raise ValueError(f"{what} name must be 1-200 characters and not blank")


def _ensure_name_free(conn: Connection, token_name: str) -> None:
    taken = conn.execute(
        select(tokens.c.id).where(tokens.c.name == token_name, tokens.c.revoked_at.is_(None))
    ).first()
    if taken is not None:
        raise AlreadyExists(
            f"an active token named {token_name!r} already exists (id {taken.id}); "
            "revoke it or choose another name"
        )


def _insert_principal(conn: Connection, name: str, kind: str, is_admin: bool) -> PrincipalInfo:
    values: dict[str, Any] = {"name": name, "kind": kind, "is_admin": is_admin, "created_at": utcnow()}
    new_id = conn.execute(insert(principals).values(**values).returning(principals.c.id)).scalar_one()
    return PrincipalInfo(id=new_id, **values)


def _get_or_create_principal(
    conn: Connection, name: str, *, is_admin: bool, kind: PrincipalKind = "user"
) -> PrincipalInfo:
    row = conn.execute(select(principals).where(principals.c.name == name)).first()
    if row is not None:
        return _principal(row)
    return _insert_principal(conn, name, kind, is_admin)


def _insert_token(
    conn: Connection, principal: PrincipalInfo, token_name: str, expires_at: datetime | None
) -> tuple[TokenInfo, str]:
    token_id, secret, plaintext = new_token()
    created_at = utcnow()
    conn.execute(
        insert(tokens).values(
            id=token_id,
            principal_id=principal.id,
            name=token_name,
            secret_hash=hash_secret(secret),
            created_at=created_at,
            expires_at=expires_at,
        )
    )
    info = TokenInfo(
        id=token_id,
        name=token_name,
        principal_id=principal.id,
        principal_name=principal.name,
        created_at=created_at,
        expires_at=expires_at.astimezone(timezone.utc) if expires_at else None,
        revoked_at=None,
    )
    return info, plaintext


def _principal(row: Row[Any]) -> PrincipalInfo:
    return PrincipalInfo(
        id=row.id, name=row.name, kind=row.kind, is_admin=bool(row.is_admin), created_at=row.created_at
    )


def _token_info(row: Row[Any]) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        principal_id=row.principal_id,
        principal_name=row.principal_name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _token_record(row: Row[Any]) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        name=row.name,
        secret_hash=row.secret_hash,
        principal_id=row.principal_id,
        principal_name=row.principal_name,
        principal_kind=row.principal_kind,
        is_admin=bool(row.is_admin),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
