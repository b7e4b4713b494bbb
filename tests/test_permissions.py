"""Permissions from memory: the grant table, the rules, and the refresh that loads it with the tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import pytest

from aigw.config import EndpointConfig, Settings
from aigw.errors import ErrorKind, GatewayError
from aigw.policies.auth import Authenticator, Principal
from aigw.policies.permissions import Permissions, grant_table, public_endpoints
from aigw.routing import DEMO_ENDPOINT
from aigw.store import USERS_GROUP, GrantInfo, Store
from tests.store_fixtures import database_url, store  # noqa: F401  (fixtures)

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _principal(id: int = 7, *, groups: set[str] = frozenset(), is_admin: bool = False) -> Principal:  # type: ignore[assignment]
    return Principal(
        id=id, name=f"p{id}", kind="user", is_admin=is_admin, token_id="t", groups=frozenset(groups) | {USERS_GROUP}
    )


def _grant(endpoint: str, subject: int | str, permission: str = "CAN_QUERY") -> GrantInfo:
    if isinstance(subject, int):
        return GrantInfo(endpoint, "user", subject, f"p{subject}", permission, NOW)  # type: ignore[arg-type]
    return GrantInfo(endpoint, "group", 100, subject, permission, NOW)  # type: ignore[arg-type]


# -- the rules, no database ---------------------------------------------------------------------------


def test_no_grant_means_admins_only() -> None:
    permissions = Permissions()
    assert not permissions.can_query(_principal(), "chat")
    assert not permissions.can_manage(_principal(), "chat")
    admin = _principal(1, is_admin=True)
    assert permissions.can_query(admin, "chat") and permissions.can_manage(admin, "chat")


def test_grants_to_principals_and_groups() -> None:
    permissions = Permissions(
        [_grant("chat", 7), _grant("chat", "eng"), _grant("embed", USERS_GROUP), _grant("big", "ops", "CAN_MANAGE")]
    )
    alice, bob, carol = _principal(7), _principal(8, groups={"eng"}), _principal(9, groups={"ops"})
    assert permissions.can_query(alice, "chat") and permissions.can_query(bob, "chat")
    assert not permissions.can_query(carol, "chat")
    # `users` holds everyone.
    assert all(permissions.can_query(p, "embed") for p in (alice, bob, carol))
    # CAN_MANAGE implies CAN_QUERY; CAN_QUERY does not give CAN_MANAGE.
    assert permissions.can_query(carol, "big") and permissions.can_manage(carol, "big")
    assert not permissions.can_manage(alice, "chat") and not permissions.can_manage(bob, "chat")
    assert permissions.queryable(alice, ["big", "chat", "embed", "nope"]) == ["chat", "embed"]
    assert permissions.queryable(_principal(1, is_admin=True), ["b", "a"]) == ["b", "a"]


def test_a_principal_grant_does_not_leak_to_a_group_with_the_same_id() -> None:
    # Principal ids and group ids are different spaces: a group grant is matched by name only.
    permissions = Permissions([GrantInfo("chat", "group", 7, "eng", "CAN_QUERY", NOW)])
    assert not permissions.can_query(_principal(7), "chat")


def test_swap_replaces_every_grant_at_once() -> None:
    permissions = Permissions([_grant("chat", 7)])
    permissions.swap(grant_table([_grant("embed", 7, "CAN_MANAGE")]))
    alice = _principal(7)
    assert not permissions.can_query(alice, "chat")
    assert permissions.can_manage(alice, "embed")


def test_require_query_is_a_403_naming_principal_and_endpoint() -> None:
    with pytest.raises(GatewayError) as caught:
        Permissions().require_query(_principal(), "chat")
    assert caught.value.kind is ErrorKind.PERMISSION and caught.value.status == 403
    assert "p7" in caught.value.message and "'chat'" in caught.value.message


def test_the_builtin_demo_endpoint_is_public_unless_replaced() -> None:
    assert public_endpoints(Settings(), DEMO_ENDPOINT.name) == {"demo"}
    assert public_endpoints(Settings(demo_endpoint=False), DEMO_ENDPOINT.name) == set()
    own_demo = EndpointConfig(name="demo", destinations=[])
    assert public_endpoints(Settings(endpoints=[own_demo]), DEMO_ENDPOINT.name) == set()
    permissions = Permissions(public=public_endpoints(Settings(), DEMO_ENDPOINT.name))
    assert permissions.can_query(_principal(), "demo")
    assert not permissions.can_manage(_principal(), "demo")


def test_checks_are_cheap() -> None:
    """The per-request cost stays a dict lookup and a set test or two, whatever the number of grants."""
    grants = [_grant(f"e{i}", i) for i in range(5_000)] + [_grant(f"e{i}", f"g{i}") for i in range(5_000)]
    permissions = Permissions(grants)
    principal = _principal(42, groups={f"g{i}" for i in range(20)})
    started = time.perf_counter()
    for _ in range(100_000):
        permissions.can_query(principal, "e4999")
    assert time.perf_counter() - started < 1.0  # ~0.05 s on a laptop; a generous bound for CI


# -- the cache, over a real store --------------------------------------------------------------------


@pytest.fixture
async def gateway_state(store: Store) -> AsyncIterator[tuple[Authenticator, Permissions]]:
    permissions = Permissions()
    auth = Authenticator(store, refresh_seconds=0.05, permissions=permissions)
    await auth.start()
    yield auth, permissions
    await auth.stop()


async def _wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_principals_carry_their_groups(store: Store) -> None:
    _, token = store.create_token("alice", "laptop")
    store.access.create_group("eng")
    store.access.create_group("ops")
    store.access.add_member("eng", "alice")
    store.access.add_member("ops", "alice")
    _, other = store.create_token("bob", "bob-laptop")
    auth = Authenticator(store, refresh_seconds=3600)
    await auth.start()
    try:
        alice = await auth.authenticate({"authorization": f"Bearer {token}"})
        assert alice.groups == {"eng", "ops", USERS_GROUP}
        bob = await auth.authenticate({"authorization": f"Bearer {other}"})
        assert bob.groups == {USERS_GROUP}
    finally:
        await auth.stop()


async def test_a_token_met_on_the_miss_path_gets_the_known_groups(
    store: Store, gateway_state: tuple[Authenticator, Permissions]
) -> None:
    auth, _ = gateway_state
    store.create_principal("alice")
    store.access.create_group("eng")
    store.access.add_member("eng", "alice")
    await auth.refresh()
    _, token = await asyncio.to_thread(store.create_token, "alice", "new")  # not in the cache yet
    principal = await auth.authenticate({"authorization": f"Bearer {token}"})
    assert principal.groups == {"eng", USERS_GROUP}


async def test_grant_and_membership_changes_are_seen_within_the_refresh(
    store: Store, gateway_state: tuple[Authenticator, Permissions]
) -> None:
    auth, permissions = gateway_state
    _, token = store.create_token("alice", "laptop")
    headers = {"authorization": f"Bearer {token}"}
    store.access.create_group("eng")
    await auth.refresh()

    async def can_query() -> bool:
        return permissions.can_query(await auth.authenticate(headers), "chat")

    async def cannot_query() -> bool:
        return not await can_query()

    async def can_manage() -> bool:
        return permissions.can_manage(await auth.authenticate(headers), "chat")

    assert not await can_query()
    await asyncio.to_thread(store.access.grant, "chat", "group", "eng")
    await asyncio.to_thread(store.access.add_member, "eng", "alice")
    await _wait_for(can_query)  # the new membership rides on the principal, the grant in the table
    await asyncio.to_thread(store.access.remove_member, "eng", "alice")
    await _wait_for(cannot_query)
    await asyncio.to_thread(store.access.grant, "chat", "group", USERS_GROUP, "CAN_MANAGE")
    await _wait_for(can_manage)
    await asyncio.to_thread(store.access.revoke, "chat", "group", USERS_GROUP)
    await _wait_for(cannot_query)
