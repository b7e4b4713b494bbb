"""Stored Responses on SQLite and PostgreSQL: round trips, conditional and atomic status changes,
history chains, the cascade from principals, and the 0003 -> 0004 migration of an existing database."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, select

from aigw.store import AlreadyExists, NotFound, Store
from aigw.store.engine import create_store_engine
from aigw.store.migrate import alembic_config, current_revision
from aigw.store.responses import ResponseStore, StoredResponse
from aigw.store.schema import principals, response_items, responses
from tests.store_fixtures import database_url, head_revision, store  # noqa: F401  (fixtures)


@pytest.fixture
def response_store(store: Store) -> ResponseStore:
    return ResponseStore(store.engine)


@pytest.fixture
def alice(store: Store) -> int:
    return store.create_principal("alice").id


def response(
    id: str, principal_id: int, *, previous: str | None = None, status: str = "completed"
) -> StoredResponse:
    return StoredResponse(
        id=id,
        principal_id=principal_id,
        endpoint="agent",
        status=status,
        previous_response_id=previous,
        input_items=[{"type": "message", "role": "user", "content": f"hello from {id}"}],
        response={"id": id, "object": "response", "status": status, "output": []},
    )


def test_create_get_round_trip(response_store: ResponseStore, alice: int) -> None:
    items: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "héllo \x00 ☃ \U0001f600"}]},
        {"type": "function_call_output", "call_id": "c1", "output": '{"n": 1}'},
    ]
    body = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi", "annotations": []}]}],
        "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
        "temperature": 0.7,
        "metadata": {},
        "previous_response_id": None,
        "x_vendor": {"nested": [1, 2.5, True, None]},
    }
    stored = StoredResponse(
        id="resp_1",
        principal_id=alice,
        endpoint="agent",
        status="completed",
        previous_response_id=None,
        input_items=items,
        response=body,
    )
    before = datetime.now(timezone.utc)
    response_store.create(stored)
    assert stored.created_at is not None and before <= stored.created_at <= datetime.now(timezone.utc)

    got = response_store.get("resp_1")
    assert got == stored
    assert got.input_items == items and got.response == body
    assert got.created_at is not None and got.created_at.tzinfo == timezone.utc
    assert response_store.get("resp_missing") is None


def test_created_at_given_is_kept_in_utc(response_store: ResponseStore, alice: int) -> None:
    given = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    stored = response("resp_1", alice)
    stored.created_at = given
    response_store.create(stored)
    got = response_store.get("resp_1")
    assert got is not None and got.created_at == given and got.created_at.tzinfo == timezone.utc


def test_duplicate_id_and_unknown_principal(response_store: ResponseStore, alice: int) -> None:
    response_store.create(response("resp_1", alice))
    with pytest.raises(AlreadyExists):
        response_store.create(response("resp_1", alice, status="queued"))
    assert response_store.get("resp_1").status == "completed"  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        response_store.create(response("resp_2", alice + 1000))
    with pytest.raises(ValueError):
        response_store.create(response("resp_3", alice, status="done"))


def test_update_unless_status(response_store: ResponseStore, alice: int) -> None:
    response_store.create(response("resp_1", alice, status="in_progress"))
    done = {"id": "resp_1", "status": "completed", "output": [{"type": "message"}]}
    assert response_store.update("resp_1", "completed", done, unless_status=("cancelled",))
    got = response_store.get("resp_1")
    assert got is not None and got.status == "completed" and got.response == done

    assert response_store.set_status("resp_1", "cancelled", only_from=("completed",)) is not None
    late = {"id": "resp_1", "status": "failed"}
    assert not response_store.update("resp_1", "failed", late, unless_status=("cancelled", "completed"))
    got = response_store.get("resp_1")
    assert got is not None and got.status == "cancelled" and got.response["status"] == "cancelled"

    assert response_store.update("resp_1", "failed", late)  # unconditional
    assert response_store.get("resp_1").status == "failed"  # type: ignore[union-attr]
    assert not response_store.update("resp_missing", "failed", late)


def test_update_moves_updated_at(response_store: ResponseStore, store: Store, alice: int) -> None:
    response_store.create(response("resp_1", alice, status="in_progress"))
    with store.engine.connect() as conn:
        first = conn.execute(select(responses.c.updated_at)).scalar_one()
    response_store.update("resp_1", "completed", {"status": "completed"})
    with store.engine.connect() as conn:
        created, updated = conn.execute(select(responses.c.created_at, responses.c.updated_at)).one()
    assert first == created and updated > created


def test_set_status_only_from(response_store: ResponseStore, alice: int) -> None:
    response_store.create(response("resp_1", alice, status="queued"))
    assert response_store.set_status("resp_1", "cancelled", only_from=("completed", "failed")) is None
    assert response_store.get("resp_1").response["status"] == "queued"  # type: ignore[union-attr]

    changed = response_store.set_status("resp_1", "cancelled", only_from=("queued", "in_progress"))
    assert changed is not None and changed.status == "cancelled" and changed.response["status"] == "cancelled"
    assert response_store.get("resp_1") == changed
    assert response_store.set_status("resp_1", "cancelled", only_from=("queued", "in_progress")) is None
    assert response_store.set_status("resp_missing", "cancelled", only_from=("queued",)) is None


def test_set_status_is_atomic_under_concurrency(
    database_url: str, response_store: ResponseStore, alice: int
) -> None:
    """Racing transitions out of the same status, each on its own engine (as separate instances would
    be): exactly one wins."""
    response_store.create(response("resp_1", alice, status="in_progress"))
    workers = 6
    barrier = threading.Barrier(workers)
    results: list[StoredResponse | None] = []
    errors: list[BaseException] = []

    def race(i: int) -> None:
        engine = create_store_engine(database_url)
        try:
            target = "cancelled" if i % 2 else "completed"
            barrier.wait()
            results.append(ResponseStore(engine).set_status("resp_1", target, only_from=("in_progress",)))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (winner,) = [r for r in results if r is not None]
    final = response_store.get("resp_1")
    assert final == winner and final.response["status"] == final.status


def test_delete(response_store: ResponseStore, alice: int) -> None:
    response_store.create(response("resp_1", alice))
    assert response_store.delete("resp_1")
    assert response_store.get("resp_1") is None
    assert not response_store.delete("resp_1")


def test_history_chain(response_store: ResponseStore, alice: int) -> None:
    response_store.create(response("resp_a", alice))
    response_store.create(response("resp_b", alice, previous="resp_a"))
    response_store.create(response("resp_c", alice, previous="resp_b"))
    response_store.create(response("resp_x", alice, previous="resp_b"))  # a branch

    assert [r.id for r in response_store.history("resp_c")] == ["resp_a", "resp_b", "resp_c"]
    assert [r.id for r in response_store.history("resp_x")] == ["resp_a", "resp_b", "resp_x"]
    assert [r.id for r in response_store.history("resp_a")] == ["resp_a"]
    chain = response_store.history("resp_c")
    assert chain[0].input_items == [{"type": "message", "role": "user", "content": "hello from resp_a"}]
    assert response_store.history("resp_missing") == []

    assert [r.id for r in response_store.history("resp_c", limit=2)] == ["resp_b", "resp_c"]
    assert response_store.history("resp_c", limit=0) == []

    response_store.delete("resp_b")  # a missing link ends the chain
    assert [r.id for r in response_store.history("resp_c")] == ["resp_c"]


def test_history_stops_on_a_cycle(response_store: ResponseStore, alice: int) -> None:
    response_store.create(response("resp_a", alice, previous="resp_c"))
    response_store.create(response("resp_b", alice, previous="resp_a"))
    response_store.create(response("resp_c", alice, previous="resp_b"))
    response_store.create(response("resp_self", alice, previous="resp_self"))

    assert [r.id for r in response_store.history("resp_c")] == ["resp_a", "resp_b", "resp_c"]
    assert [r.id for r in response_store.history("resp_self")] == ["resp_self"]
    assert [r.id for r in response_store.history("resp_c", limit=2)] == ["resp_b", "resp_c"]


def test_history_of_a_long_chain_is_capped(response_store: ResponseStore, alice: int) -> None:
    previous = None
    for i in range(30):
        response_store.create(response(f"resp_{i:03d}", alice, previous=previous))
        previous = f"resp_{i:03d}"
    assert [r.id for r in response_store.history("resp_029")] == [f"resp_{i:03d}" for i in range(30)]
    assert [r.id for r in response_store.history("resp_029", limit=5)] == [f"resp_{i:03d}" for i in range(25, 30)]


def test_deleting_a_principal_deletes_its_responses(
    store: Store, response_store: ResponseStore, alice: int
) -> None:
    bob = store.create_principal("bob").id
    response_store.create(response("resp_alice", alice))
    response_store.create(response("resp_bob", bob))
    store.access.delete_principal("alice", "user")
    assert response_store.get("resp_alice") is None
    assert response_store.get("resp_bob") is not None


def test_migration_from_0003_keeps_existing_data(database_url: str) -> None:
    """An existing 0003 database with rows: opening the store migrates it to the latest; downgrade works."""
    engine = create_store_engine(database_url)
    try:
        with engine.connect() as conn, conn.begin():
            command.upgrade(alembic_config(conn), "0003")
            now = datetime.now(timezone.utc)
            conn.execute(principals.insert().values(name="alice", kind="user", is_admin=False, created_at=now))
        assert current_revision(engine) == "0003"
        assert "responses" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()

    with Store.open(database_url) as opened:
        assert current_revision(opened.engine) == head_revision()
        alice = opened.get_principal("alice")
        assert alice is not None
        store = ResponseStore(opened.engine)
        store.create(response("resp_1", alice.id))
        assert store.get("resp_1") is not None
        index_names = {ix["name"] for ix in inspect(opened.engine).get_indexes("responses")}
        assert "ix_responses_principal_id_created_at" in index_names

        with opened.engine.connect() as conn, conn.begin():
            command.downgrade(alembic_config(conn), "0003")
        assert current_revision(opened.engine) == "0003"
        assert "responses" not in inspect(opened.engine).get_table_names()

    with Store.open(database_url) as reopened:
        assert current_revision(reopened.engine) == head_revision()
        assert reopened.get_principal("alice") is not None


# -- items by id (item_reference) ----------------------------------------------------------------------


def with_items(id: str, principal_id: int, input_ids: list[str], output_ids: list[str], **kwargs: Any) -> StoredResponse:
    stored = response(id, principal_id, **kwargs)
    stored.input_items = [{"id": i, "type": "message", "role": "user", "content": f"in {i}"} for i in input_ids]
    stored.response["output"] = [{"id": i, "type": "message", "role": "assistant", "content": f"out {i}"} for i in output_ids]
    return stored


def index_rows(store: Store) -> set[tuple[str, str]]:
    with store.engine.connect() as conn:
        return {tuple(row) for row in conn.execute(select(response_items.c.item_id, response_items.c.response_id))}


def test_find_items_by_id_among_the_principals_own(store: Store, response_store: ResponseStore, alice: int) -> None:
    bob = store.create_principal("bob").id
    response_store.create(with_items("resp_a", alice, ["msg_in"], ["msg_out", "rs_1"]))
    response_store.create(with_items("resp_b", bob, ["msg_bob"], []))
    found = response_store.find_items(alice, ["msg_in", "rs_1", "msg_bob", "msg_none", "x" * 300])
    assert found == {
        "msg_in": {"id": "msg_in", "type": "message", "role": "user", "content": "in msg_in"},
        "rs_1": {"id": "rs_1", "type": "message", "role": "assistant", "content": "out rs_1"},
    }  # bob's item is not alice's to see
    assert response_store.find_items(bob, ["msg_bob"]) == {"msg_bob": response_store.get("resp_b").input_items[0]}
    assert response_store.find_items(alice, []) == {}


def test_an_id_in_several_responses_is_taken_from_the_newest(response_store: ResponseStore, alice: int) -> None:
    old = with_items("resp_old", alice, [], ["msg_1"])
    old.created_at = datetime.now(timezone.utc) - timedelta(minutes=5)
    response_store.create(old)
    new = with_items("resp_new", alice, ["msg_1"], [])
    new.input_items[0]["content"] = "the newer copy"
    response_store.create(new)
    assert response_store.find_items(alice, ["msg_1"])["msg_1"]["content"] == "the newer copy"


def test_the_index_follows_updates_deletes_and_purges(store: Store, response_store: ResponseStore, alice: int) -> None:
    from aigw.store.retention import PurgeCutoffs, purge

    response_store.create(with_items("resp_1", alice, ["msg_in", "msg_in"], [], status="in_progress"))
    assert index_rows(store) == {("msg_in", "resp_1")}  # a repeated id is one row
    finished = {"id": "resp_1", "status": "completed", "output": [{"id": "fc_1", "type": "function_call"}]}
    assert response_store.update("resp_1", "completed", finished)
    assert index_rows(store) == {("msg_in", "resp_1"), ("fc_1", "resp_1")}
    assert not response_store.update("resp_1", "failed", {"output": []}, unless_status=("completed",))
    assert index_rows(store) == {("msg_in", "resp_1"), ("fc_1", "resp_1")}  # nothing changed, nothing re-indexed

    response_store.create(with_items("resp_2", alice, ["msg_2"], []))
    assert response_store.delete("resp_2")
    assert index_rows(store) == {("msg_in", "resp_1"), ("fc_1", "resp_1")}

    purge(store.engine, PurgeCutoffs(responses=datetime.now(timezone.utc) + timedelta(seconds=1)))
    assert response_store.get("resp_1") is None and index_rows(store) == set()
    assert response_store.find_items(alice, ["msg_in", "fc_1"]) == {}

    response_store.create(with_items("resp_3", alice, ["msg_3"], []))
    store.access.delete_principal("alice", "user")
    assert index_rows(store) == set()


def test_migration_0006_indexes_the_responses_already_stored(database_url: str) -> None:
    engine = create_store_engine(database_url)
    try:
        with engine.connect() as conn, conn.begin():
            command.upgrade(alembic_config(conn), "0005")
            now = datetime.now(timezone.utc)
            alice = conn.execute(
                principals.insert().values(name="alice", kind="user", is_admin=False, created_at=now).returning(principals.c.id)
            ).scalar_one()
            for n in range(3):
                conn.execute(responses.insert().values(
                    id=f"resp_{n}", principal_id=alice, endpoint="e", status="completed", previous_response_id=None,
                    created_at=now, updated_at=now, input_items=f'[{{"id": "msg_{n}", "type": "message"}}, {{"type": "message"}}]',
                    response=f'{{"output": [{{"id": "rs_{n}", "type": "reasoning"}}]}}',
                ))  # fmt: skip
        assert "response_items" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()

    with Store.open(database_url) as opened:
        assert current_revision(opened.engine) == head_revision()
        assert index_rows(opened) == {(f"{kind}_{n}", f"resp_{n}") for n in range(3) for kind in ("msg", "rs")}
        alice_id = opened.get_principal("alice").id
        assert set(ResponseStore(opened.engine).find_items(alice_id, ["msg_1", "rs_2"])) == {"msg_1", "rs_2"}
        with opened.engine.connect() as conn, conn.begin():
            command.downgrade(alembic_config(conn), "0005")
        assert "response_items" not in inspect(opened.engine).get_table_names()
