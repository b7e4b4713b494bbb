"""Authentication: credential extraction, the in-memory token cache, the miss path and outages."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import OperationalError

from aigw.errors import ErrorKind, GatewayError
from aigw.policies.auth import Authenticator, Principal, extract_token
from aigw.store import AccessSnapshot, Store, TokenRecord, ensure_admin_token
from tests.store_fixtures import database_url, store  # noqa: F401  (until tests/conftest.py imports them)

TOKEN = "aigw_abcdefghijkl_" + "s" * 43


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- extract_token (no database) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"authorization": f"Bearer {TOKEN}"}, None, TOKEN),
        ({"authorization": f"bearer   {TOKEN} "}, None, TOKEN),
        ({"authorization": _basic("token", TOKEN)}, None, TOKEN),
        ({"authorization": _basic("alice", TOKEN)}, None, None),
        ({"authorization": "Basic !!!not-base64"}, None, None),
        ({"authorization": "Digest abc"}, None, None),
        ({"authorization": "Bearer "}, None, None),
        ({"x-api-key": TOKEN}, None, TOKEN),
        ({"x-goog-api-key": TOKEN}, None, TOKEN),
        ({"x-api-key": TOKEN, "x-goog-api-key": "other"}, None, TOKEN),
        ({}, {"key": TOKEN}, TOKEN),
        ({"x-goog-api-key": TOKEN}, {"key": "other"}, TOKEN),
        # SDKs send placeholder keys next to the real bearer: Authorization wins when present.
        ({"authorization": f"Bearer {TOKEN}", "x-api-key": "unused"}, None, TOKEN),
        ({"authorization": "Bearer unused", "x-api-key": TOKEN}, {"key": TOKEN}, "unused"),
        ({}, None, None),
        ({"x-api-key": ""}, {}, None),
    ],
)
def test_extract_token(
    headers: dict[str, str], query: dict[str, str] | None, expected: str | None
) -> None:
    assert extract_token(headers, query) == expected


# -- Authenticator ------------------------------------------------------------------------------------


class RecordingStore:
    """Counts database calls and can simulate an outage."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lookups = 0
        self.loads = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise OperationalError("SELECT ...", {}, ConnectionRefusedError("database is down"))

    def token_record(self, token_id: str) -> TokenRecord | None:
        self.lookups += 1
        self._check()
        return self.store.token_record(token_id)

    def active_token_records(self) -> list[TokenRecord]:
        self.loads += 1
        self._check()
        return self.store.active_token_records()

    def access_snapshot(self) -> AccessSnapshot:
        self._check()
        return self.store.access_snapshot()


@pytest.fixture
def recording(store: Store) -> RecordingStore:
    return RecordingStore(store)


@pytest.fixture
async def auth(recording: RecordingStore) -> AsyncIterator[Authenticator]:
    authenticator = Authenticator(recording, refresh_seconds=3600)
    await authenticator.start()
    yield authenticator
    await authenticator.stop()


def _in(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _rejected(
    auth: Authenticator, headers: dict[str, str], query: dict[str, str] | None = None
) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await auth.authenticate(headers, query)
    assert caught.value.kind is ErrorKind.AUTHENTICATION and caught.value.status == 401
    return caught.value


async def _wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_every_credential_style(store: Store, recording: RecordingStore) -> None:
    info, token = store.create_token("alice", "laptop")
    auth = Authenticator(recording, refresh_seconds=3600)
    await auth.start()
    try:
        expected = Principal(
            id=info.principal_id, name="alice", kind="user", is_admin=False, token_id=info.id
        )
        for headers, query in [
            (_bearer(token), None),
            ({"authorization": _basic("token", token)}, None),
            ({"x-api-key": token}, None),
            ({"x-goog-api-key": token}, None),
            ({}, {"key": token}),
            ({"authorization": f"Bearer {token}", "x-api-key": "unused"}, None),
        ]:
            assert await auth.authenticate(headers, query) == expected
        # Cached tokens never touch the database.
        assert recording.lookups == 0 and recording.loads == 1
    finally:
        await auth.stop()


async def test_authorization_header_wins(store: Store, auth: Authenticator) -> None:
    _, token = store.create_token("alice", "laptop")
    error = await _rejected(auth, {"authorization": "Bearer unused", "x-api-key": token})
    assert error.message == "Invalid token"


async def test_missing_and_bad_tokens(store: Store, auth: Authenticator, recording: RecordingStore) -> None:
    _, token = store.create_token("alice", "laptop")
    assert (await _rejected(auth, {})).message == "Missing bearer token"
    assert (await _rejected(auth, {"x-api-key": "unused"})).message == "Invalid token"
    wrong_secret = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await _rejected(auth, _bearer(wrong_secret))).message == "Invalid token"
    assert (await _rejected(auth, _bearer(token[:20]))).message == "Invalid token"
    lookups = recording.lookups  # the real token was created after start: one miss so far
    # A well-formed token whose id does not exist: one lookup, then the negative cache answers.
    unknown = "aigw_zzzzzzzzzzzz_" + "x" * 43
    for _ in range(3):
        assert (await _rejected(auth, _bearer(unknown))).message == "Invalid token"
    assert recording.lookups == lookups + 1
    # Ids outside the alphabet never reach the database.
    await _rejected(auth, _bearer("aigw_ZZZZZZZZZZZZ_" + "x" * 43))
    assert recording.lookups == lookups + 1


async def test_admin_token(store: Store, auth: Authenticator) -> None:
    token = ensure_admin_token(store)
    assert token is not None
    principal = await auth.authenticate(_bearer(token))
    assert principal.is_admin and principal.name == "admin"


async def test_token_created_after_start_works_at_once(
    store: Store, auth: Authenticator, recording: RecordingStore
) -> None:
    info, token = await asyncio.to_thread(store.create_token, "bob", "new")
    results = await asyncio.gather(*(auth.authenticate(_bearer(token)) for _ in range(20)))
    assert {p.token_id for p in results} == {info.id}
    assert recording.lookups == 1  # single flight
    await auth.authenticate(_bearer(token))
    assert recording.lookups == 1  # cached after the miss


async def test_revocation_is_seen_after_a_refresh(store: Store, recording: RecordingStore) -> None:
    info, token = store.create_token("alice", "laptop")
    auth = Authenticator(recording, refresh_seconds=0.05)
    await auth.start()
    try:
        await auth.authenticate(_bearer(token))
        assert await asyncio.to_thread(store.revoke_token, info.id)

        async def rejected() -> bool:
            try:
                await auth.authenticate(_bearer(token))
            except GatewayError as exc:
                return exc.status == 401
            return False

        await _wait_for(rejected)
        assert (await _rejected(auth, _bearer(token))).message == "Token has been revoked"
    finally:
        await auth.stop()


async def test_expiry_is_checked_per_request(store: Store, recording: RecordingStore) -> None:
    now = [time.time()]
    _, token = store.create_token("alice", "short", expires_at=_in(seconds=60))
    auth = Authenticator(recording, refresh_seconds=3600, clock=lambda: now[0])
    await auth.start()
    try:
        await auth.authenticate(_bearer(token))
        now[0] += 61
        assert (await _rejected(auth, _bearer(token))).message == "Token has expired"
    finally:
        await auth.stop()


async def test_expired_token_on_the_miss_path(store: Store, auth: Authenticator) -> None:
    _, token = store.create_token("alice", "old", expires_at=_in(seconds=-1))
    assert (await _rejected(auth, _bearer(token))).message == "Token has expired"
    # Only the holder of the real secret learns why.
    assert (await _rejected(auth, _bearer(token[:-2] + "zz"))).message == "Invalid token"


async def test_database_outage_keeps_serving_cached_tokens(
    store: Store, recording: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    _, token = store.create_token("alice", "laptop")
    auth = Authenticator(recording, refresh_seconds=0.02)
    await auth.start()
    try:
        recording.down = True
        loads = recording.loads
        with caplog.at_level(logging.INFO, logger="aigw.policies.auth"):

            async def refreshes_failed() -> bool:
                return recording.loads >= loads + 3

            await _wait_for(refreshes_failed)
            assert (await auth.authenticate(_bearer(token))).name == "alice"
            # A token the cache does not know cannot be checked: 503, not a misleading 401.
            with pytest.raises(GatewayError) as caught:
                await auth.authenticate(_bearer("aigw_abcdefghijkl_" + "x" * 43))
            assert caught.value.status == 503 and caught.value.retryable

            recording.down = False

            async def recovered() -> bool:
                return any("recovered" in r.message for r in caplog.records)

            await _wait_for(recovered)
        warnings = [r for r in caplog.records if "refresh failed" in r.message]
        assert len(warnings) == 1  # logged once per outage, not on every retry
        assert (await auth.authenticate(_bearer(token))).name == "alice"
    finally:
        await auth.stop()


async def test_start_fails_when_the_store_is_down(recording: RecordingStore) -> None:
    recording.down = True
    auth = Authenticator(recording)
    with pytest.raises(OperationalError):
        await auth.start()
    await auth.stop()
