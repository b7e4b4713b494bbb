"""Groups, memberships and grants in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from aigw.store import USERS_GROUP, AlreadyExists, NotFound, Store, StoreError
from aigw.store.schema import grants, group_members
from tests.store_fixtures import database_url, store  # noqa: F401  (fixtures)


def _grants(store: Store, endpoint: str | None = None) -> set[tuple[str, str, str, str]]:
    return {(g.endpoint, g.subject_kind, g.subject_name, g.permission) for g in store.access.list_grants(endpoint)}


def test_the_builtin_users_group_holds_everyone(store: Store) -> None:
    access = store.access
    assert [g.name for g in access.list_groups()] == [USERS_GROUP]
    store.create_principal("alice")
    store.create_principal("bot", kind="service_principal")
    assert [p.name for p in access.members(USERS_GROUP)] == ["alice", "bot"]
    assert access.list_groups()[0].member_count == 2
    for refused in (
        lambda: access.delete_group(USERS_GROUP),
        lambda: access.add_member(USERS_GROUP, "alice"),
        lambda: access.remove_member(USERS_GROUP, "alice"),
    ):
        with pytest.raises(StoreError, match="built-in"):
            refused()
    with pytest.raises(AlreadyExists):
        access.create_group(USERS_GROUP)


def test_groups_and_members(store: Store) -> None:
    access = store.access
    alice = store.create_principal("alice")
    bot = store.create_principal("bot", kind="service_principal")
    eng = access.create_group("eng")
    assert (eng.name, eng.member_count) == ("eng", 0)
    with pytest.raises(AlreadyExists):
        access.create_group("eng")
    with pytest.raises(ValueError):
        access.create_group(" ")
    assert access.add_member("eng", "alice") is True
    assert access.add_member("eng", "alice") is False  # idempotent
    assert access.add_member("eng", "bot") is True
    assert [p.name for p in access.members("eng")] == ["alice", "bot"]
    assert {g.name: g.member_count for g in access.list_groups()} == {"eng": 2, USERS_GROUP: 2}
    assert access.snapshot().groups_by_principal == {alice.id: ["eng"], bot.id: ["eng"]}
    assert access.remove_member("eng", "bot") is True
    assert access.remove_member("eng", "bot") is False
    with pytest.raises(NotFound, match="no group"):
        access.add_member("nope", "alice")
    with pytest.raises(NotFound, match="no principal"):
        access.add_member("eng", "nobody")
    with pytest.raises(NotFound):
        access.members("nope")
    access.delete_group("eng")
    assert access.snapshot().groups_by_principal == {}
    with pytest.raises(NotFound):
        access.delete_group("eng")


def test_grants_replace_per_subject_and_check_the_subject_kind(store: Store) -> None:
    access = store.access
    store.create_principal("alice")
    store.create_principal("bot", kind="service_principal")
    access.create_group("eng")
    first = access.grant("chat", "user", "alice")
    assert (first.permission, first.subject_kind) == ("CAN_QUERY", "user")
    raised = access.grant("chat", "user", "alice", "CAN_MANAGE")
    assert raised.created_at == first.created_at  # the same grant, changed
    access.grant("chat", "service_principal", "bot")
    access.grant("chat", "group", "eng", "CAN_MANAGE")
    access.grant("embed", "group", USERS_GROUP)
    assert _grants(store) == {
        ("chat", "user", "alice", "CAN_MANAGE"),
        ("chat", "service_principal", "bot", "CAN_QUERY"),
        ("chat", "group", "eng", "CAN_MANAGE"),
        ("embed", "group", USERS_GROUP, "CAN_QUERY"),
    }
    assert _grants(store, "embed") == {("embed", "group", USERS_GROUP, "CAN_QUERY")}
    assert _grants(store, "other") == set()
    with pytest.raises(NotFound, match="is a service principal, not a user"):
        access.grant("chat", "user", "bot")
    with pytest.raises(NotFound, match="is a user, not a service principal"):
        access.grant("chat", "service_principal", "alice")
    with pytest.raises(NotFound):
        access.grant("chat", "group", "nope")
    with pytest.raises(ValueError):
        access.grant("chat", "user", "alice", "CAN_EVERYTHING")  # type: ignore[arg-type]
    # Removing: only when the permission matches, if one is given.
    assert access.revoke("chat", "user", "alice", "CAN_QUERY") is False
    assert access.revoke("chat", "user", "alice", "CAN_MANAGE") is True
    assert access.revoke("chat", "user", "alice") is False
    assert access.revoke("chat", "group", "eng") is True
    assert _grants(store, "chat") == {("chat", "service_principal", "bot", "CAN_QUERY")}


def test_the_database_enforces_one_grant_per_subject_and_one_subject_per_grant(store: Store) -> None:
    alice = store.create_principal("alice")
    group = store.access.create_group("eng")
    store.access.grant("chat", "user", "alice")
    store.access.grant("chat", "group", "eng")
    bad_rows = [
        {"endpoint": "chat", "principal_id": alice.id, "permission": "CAN_MANAGE"},  # a second grant
        {"endpoint": "chat", "group_id": group.id, "permission": "CAN_MANAGE"},
        {"endpoint": "x", "principal_id": alice.id, "group_id": group.id, "permission": "CAN_QUERY"},
        {"endpoint": "x", "permission": "CAN_QUERY"},
        {"endpoint": "x", "principal_id": alice.id, "permission": "OWNER"},
    ]
    for row in bad_rows:
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(insert(grants).values(**row, created_at=alice.created_at))


def test_deleting_a_principal_takes_its_tokens_memberships_and_grants(store: Store) -> None:
    access = store.access
    info, _ = store.create_token("alice", "laptop")
    store.create_token("alice", "phone")
    store.revoke_token("phone")
    store.create_token("bob", "bob")
    access.create_group("eng")
    access.add_member("eng", "alice")
    access.grant("chat", "user", "alice")
    assert access.delete_principal("alice", "user") == 1  # one token was still active
    assert store.token_record(info.id) is None
    assert [r.principal_name for r in store.active_token_records()] == ["bob"]
    assert access.members("eng") == [] and _grants(store) == set()
    with store.engine.connect() as conn:
        assert conn.execute(select(group_members)).all() == []
    with pytest.raises(NotFound):
        access.delete_principal("alice", "user")
    with pytest.raises(NotFound, match="not a service principal"):
        access.delete_principal("bob", "service_principal")


def test_the_last_admin_cannot_be_deleted(store: Store) -> None:
    store.create_principal("root", is_admin=True)
    with pytest.raises(StoreError, match="last admin"):
        store.access.delete_principal("root", "user")
    store.create_principal("ops", kind="service_principal", is_admin=True)
    assert store.access.delete_principal("root", "user") == 0
    assert [p.name for p in store.access.list_principals()] == ["ops"]


def test_list_principals_by_kind(store: Store) -> None:
    store.create_principal("bob")
    store.create_principal("alice", is_admin=True)
    store.create_principal("bot", kind="service_principal")
    assert [p.name for p in store.access.list_principals("user")] == ["alice", "bob"]
    assert [p.name for p in store.access.list_principals("service_principal")] == ["bot"]
    assert len(store.access.list_principals()) == 3


def test_tokens_for_service_principals(store: Store) -> None:
    info, _ = store.create_token("bot", "ci", kind="service_principal")
    assert store.get_principal("bot").kind == "service_principal"  # type: ignore[union-attr]
    store.create_token("bot", "ci-2")  # no kind given: any existing principal
    store.create_token("alice", "laptop")
    with pytest.raises(StoreError, match="is a user, not a service principal"):
        store.create_token("alice", "other", kind="service_principal")
    assert store.token_record(info.id).principal_kind == "service_principal"  # type: ignore[union-attr]


def test_snapshot(store: Store) -> None:
    alice = store.create_principal("alice")
    store.access.create_group("eng")
    store.access.create_group("ops")
    store.access.add_member("eng", "alice")
    store.access.add_member("ops", "alice")
    store.access.grant("chat", "group", "eng", "CAN_MANAGE")
    snapshot = store.access_snapshot()
    assert sorted(snapshot.groups_by_principal[alice.id]) == ["eng", "ops"]
    (grant,) = snapshot.grants
    assert (grant.endpoint, grant.subject_kind, grant.subject_name, grant.permission) == (
        "chat",
        "group",
        "eng",
        "CAN_MANAGE",
    )


def test_concurrent_first_grants_to_one_subject(store: Store) -> None:
    store.create_principal("alice")
    workers = 4
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def grant(permission: str) -> None:
        try:
            barrier.wait()
            store.access.grant("chat", "user", "alice", permission)  # type: ignore[arg-type]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=grant, args=(p,)) for p in ["CAN_QUERY", "CAN_MANAGE"] * (workers // 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.access.list_grants("chat")) == 1
