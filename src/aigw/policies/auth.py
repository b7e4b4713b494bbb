"""Authentication: API token → principal, from memory.

Every active token is held in a dict keyed by its public id and reloaded every few seconds, so the
per-request cost is a header read, a dict lookup, one SHA-256 and a constant-time compare: no database
round trip. A token the cache does not know yet (created by the CLI a moment ago) costs one database
lookup, shared by concurrent requests for the same id; unknown ids are remembered briefly so garbage
tokens cannot turn into a stream of queries.

The same refresh reads group memberships (each Principal carries its group names) and endpoint grants
(swapped whole into the gateway's `Permissions`), so authorization costs no round trip either.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

import msgspec

from aigw.errors import ErrorKind, GatewayError
from aigw.policies.permissions import GrantTable, Permissions, grant_table
from aigw.store.records import USERS_GROUP, AccessSnapshot, TokenRecord
from aigw.store.token_format import is_token_id, secret_digest, split_token

logger = logging.getLogger(__name__)

MISSING_TOKEN = "Missing bearer token"
INVALID_TOKEN = "Invalid token"
ONLY_USERS: frozenset[str] = frozenset({USERS_GROUP})


class Principal(msgspec.Struct, frozen=True, gc=False):
    """Who is calling. Built once per token and shared by all its requests, so it must stay immutable."""

    id: int
    name: str
    kind: str
    is_admin: bool
    token_id: str
    groups: frozenset[str] = ONLY_USERS  # its groups' names, always with the built-in `users`


class TokenSource(Protocol):
    """What the authenticator needs from the store (a Store satisfies it)."""

    def token_record(self, token_id: str) -> TokenRecord | None: ...

    def active_token_records(self) -> list[TokenRecord]: ...

    def access_snapshot(self) -> AccessSnapshot: ...


def extract_token(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    """The caller's token from lower-cased `headers`, or None.

    Authorization wins whenever present: SDKs send placeholder keys next to a real bearer
    (`x-api-key: unused`). Without it: `x-api-key` (Anthropic), `x-goog-api-key` (Gemini), then the
    `key` query parameter (Gemini REST)."""
    authorization = headers.get("authorization")
    if authorization is not None:
        return _from_authorization(authorization)
    token = headers.get("x-api-key") or headers.get("x-goog-api-key")
    if not token and query is not None:
        token = query.get("key")
    if not token:
        return None
    return token.strip() or None


def _from_authorization(value: str) -> str | None:
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    scheme = scheme.lower()
    if scheme == "bearer":
        return credentials or None
    if scheme == "basic":
        # For clients that only speak Basic auth (git-style): user "token", password = the token.
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except ValueError:  # bad base64, non-ASCII input or non-UTF-8 bytes
            return None
        user, _, password = decoded.partition(":")
        if user != "token":
            return None
        return password or None
    return None


class _CachedToken(msgspec.Struct, frozen=True, gc=False):
    digest: bytes  # sha256(secret), raw bytes so the hot path never formats hex
    expires_at: float | None  # epoch seconds
    principal: Principal


class _Rejection(msgspec.Struct, frozen=True, gc=False):
    """A negative-cache entry. For revoked or expired tokens the digest lets us tell the holder of
    the real secret why (nobody else learns anything)."""

    until: float  # time.monotonic()
    digest: bytes | None
    message: str


def _entry(record: TokenRecord, groups: Mapping[int, frozenset[str]]) -> _CachedToken:
    return _CachedToken(
        digest=bytes.fromhex(record.secret_hash),
        expires_at=record.expires_at.timestamp() if record.expires_at else None,
        principal=Principal(
            id=record.principal_id,
            name=record.principal_name,
            kind=record.principal_kind,
            is_admin=record.is_admin,
            token_id=record.id,
            groups=groups.get(record.principal_id, ONLY_USERS),
        ),
    )


def _group_sets(snapshot: AccessSnapshot) -> dict[int, frozenset[str]]:
    """Principal id -> its group names with `users`: one frozenset per principal, shared by its tokens."""
    return {pid: frozenset(names) | ONLY_USERS for pid, names in snapshot.groups_by_principal.items()}


class _Loaded(NamedTuple):
    """One refresh's worth of state, built in a worker thread and swapped in by the loop."""

    tokens: dict[str, _CachedToken]
    groups: dict[int, frozenset[str]]
    grants: GrantTable | None


class Authenticator:
    """Resolves request credentials to a Principal. `start()` before use, `stop()` at shutdown.

    All state is touched only from the event loop thread; the database work runs in worker threads
    and hands back finished objects, so no locks are needed. With `permissions`, each refresh also
    swaps a fresh grant table into it."""

    def __init__(
        self,
        store: TokenSource,
        refresh_seconds: float = 2.0,
        *,
        permissions: Permissions | None = None,
        negative_ttl_seconds: float = 5.0,
        negative_cache_size: int = 10_000,
        max_concurrent_lookups: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._permissions = permissions
        self._refresh_seconds = refresh_seconds
        self._negative_ttl = negative_ttl_seconds
        self._negative_size = negative_cache_size
        self._clock = clock
        self._cache: dict[str, _CachedToken] = {}
        self._groups: dict[int, frozenset[str]] = {}  # principal id -> group names (for the miss path)
        self._negative: dict[str, _Rejection] = {}  # insertion order = expiry order (one TTL)
        self._inflight: dict[str, asyncio.Future[_CachedToken | _Rejection]] = {}
        # Caps the database load random token ids can cause: each distinct id misses every cache.
        self._lookup_slots = asyncio.Semaphore(max_concurrent_lookups)
        self._refresher: asyncio.Task[None] | None = None
        self._refresh_failing = False

    async def start(self) -> None:
        """Load every active token (raises if the store is unreachable), then refresh in background."""
        await self.refresh()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_forever(), name="aigw-token-refresh")

    async def stop(self) -> None:
        task, self._refresher = self._refresher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh(self) -> None:
        """Reload the caches now (e.g. from the admin API right after creating or revoking a token)."""
        loaded = await asyncio.to_thread(self._load)
        # No await between these: a request sees the old state or the new one, never a mix.
        self._cache, self._groups = loaded.tokens, loaded.groups
        if self._permissions is not None and loaded.grants is not None:
            self._permissions.swap(loaded.grants)

    def _load(self) -> _Loaded:
        # Runs in a worker thread: builds new objects that the loop then swaps in whole.
        records = self._store.active_token_records()
        snapshot = self._store.access_snapshot()
        groups = _group_sets(snapshot)
        tokens = {record.id: _entry(record, groups) for record in records}
        grants = grant_table(snapshot.grants) if self._permissions is not None else None
        return _Loaded(tokens=tokens, groups=groups, grants=grants)

    @property
    def cached_token_count(self) -> int:
        return len(self._cache)

    async def authenticate(
        self, headers: Mapping[str, str], query: Mapping[str, str] | None = None
    ) -> Principal:
        token = extract_token(headers, query)
        if token is None:
            raise GatewayError(ErrorKind.AUTHENTICATION, MISSING_TOKEN)
        parts = split_token(token)
        if parts is None:
            raise GatewayError(ErrorKind.AUTHENTICATION, INVALID_TOKEN)
        token_id, secret = parts
        digest = secret_digest(secret)
        entry = self._cache.get(token_id)
        if entry is None:
            entry = await self._lookup(token_id, digest)
        if not hmac.compare_digest(digest, entry.digest):
            raise GatewayError(ErrorKind.AUTHENTICATION, INVALID_TOKEN)
        if entry.expires_at is not None and self._clock() >= entry.expires_at:
            raise GatewayError(ErrorKind.AUTHENTICATION, "Token has expired")
        return entry.principal

    # -- miss path ----------------------------------------------------------------------------------

    async def _lookup(self, token_id: str, digest: bytes) -> _CachedToken:
        """The entry for a token the cache does not hold, or a GatewayError."""
        outcome = self._recent_rejection(token_id)
        if outcome is None:
            if not is_token_id(token_id):
                raise GatewayError(ErrorKind.AUTHENTICATION, INVALID_TOKEN)
            future = self._inflight.get(token_id)
            if future is None:
                future = asyncio.ensure_future(self._fetch(token_id))
                self._inflight[token_id] = future
                future.add_done_callback(lambda done: self._fetch_done(token_id, done))
            # shield: one caller giving up (client disconnect) must not cancel the others' lookup.
            outcome = await asyncio.shield(future)
            if isinstance(outcome, _CachedToken):
                return outcome
        rejection = outcome
        known = rejection.digest is not None and hmac.compare_digest(digest, rejection.digest)
        raise GatewayError(ErrorKind.AUTHENTICATION, rejection.message if known else INVALID_TOKEN)

    def _recent_rejection(self, token_id: str) -> _Rejection | None:
        rejection = self._negative.get(token_id)
        if rejection is not None and rejection.until <= time.monotonic():
            del self._negative[token_id]
            return None
        return rejection

    async def _fetch(self, token_id: str) -> _CachedToken | _Rejection:
        async with self._lookup_slots:
            try:
                record = await asyncio.to_thread(self._store.token_record, token_id)
            except Exception as exc:
                logger.warning("token lookup failed: %s", exc)
                raise GatewayError(
                    ErrorKind.INTERNAL,
                    "Authentication is temporarily unavailable",
                    status=503,
                    retryable=True,
                ) from exc
        reason = _rejection_reason(record, self._clock())
        if record is not None and reason is None:
            entry = _entry(record, self._groups)  # memberships as of the last refresh
            self._cache[token_id] = entry
            return entry
        rejection = _Rejection(
            until=time.monotonic() + self._negative_ttl,
            digest=bytes.fromhex(record.secret_hash) if record is not None else None,
            message=reason or INVALID_TOKEN,
        )
        self._remember_rejection(token_id, rejection)
        return rejection

    def _fetch_done(self, token_id: str, future: asyncio.Future[_CachedToken | _Rejection]) -> None:
        self._inflight.pop(token_id, None)
        if not future.cancelled():
            future.exception()  # mark retrieved: if every waiter left, asyncio would warn otherwise

    def _remember_rejection(self, token_id: str, rejection: _Rejection) -> None:
        negative = self._negative
        negative.pop(token_id, None)
        # One TTL for all entries, so the oldest-inserted entry expires first: evict from the front.
        while len(negative) >= self._negative_size:
            del negative[next(iter(negative))]
        negative[token_id] = rejection

    # -- refresh --------------------------------------------------------------------------------------

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # keep serving the last good cache; the database may come back
                if not self._refresh_failing:
                    logger.warning("token cache refresh failed, serving the cached tokens: %s", exc)
                self._refresh_failing = True
            else:
                if self._refresh_failing:
                    logger.info("token cache refresh recovered")
                self._refresh_failing = False


def _rejection_reason(record: TokenRecord | None, now: float) -> str | None:
    if record is None:
        return INVALID_TOKEN
    if record.revoked_at is not None:
        return "Token has been revoked"
    if record.expires_at is not None and record.expires_at.timestamp() <= now:
        return "Token has expired"
    return None
