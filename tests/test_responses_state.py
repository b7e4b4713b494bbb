"""State on OpenAI's Responses API (/openai/v1 and /codex/v1) for destinations the gateway translates:
`store` (true by default), `previous_response_id` and `item_reference` served from the gateway's own
store, and the stored responses read, listed and deleted with the official `openai` SDK. Pass-through
destinations keep the vendor's state: their requests reach the vendor as sent.

A real gateway process in front of the fake upstreams (tests/conftest.py); the fakes answer
"echo: <last user text>" (tests/fakes/scenario.py)."""

from __future__ import annotations

import json
import time

import openai
import pytest
import requests
import yaml
from sqlalchemy import text

from tests.store_fixtures import postgres_database  # noqa: F401  (a fixture)
from tests.test_responses_surface import PREFIXES, assert_openai_error, message, post, raw_stream

TRANSLATED = ["anthropic", "gemini", "compat"]


@pytest.fixture(scope="module", params=PREFIXES, ids=["openai", "codex"])
def client(request, gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + request.param, api_key=gateway.admin_token, max_retries=0, timeout=20)


@pytest.fixture
def fake(fake_upstream):
    fake_upstream.clear()
    return fake_upstream


@pytest.fixture(scope="module")
def other_token(gateway) -> str:
    """A second principal, allowed on the translated endpoints and on openai."""
    token = gateway.cli("tokens", "create", "--name", "state-other", "--create-principal").stdout.strip()
    for endpoint in [*TRANSLATED, "openai"]:
        assert gateway.cli("grants", "add", endpoint, "--user", "state-other").returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the gateway refreshes tokens and grants every 0.5 s
        if post(gateway, {"model": "anthropic", "input": "hi", "store": False}, token=token).status_code == 200:
            return token
        time.sleep(0.2)
    raise AssertionError("the second principal's token never worked")


def stored_count(gateway) -> int:
    from aigw.store import resolve_database_url
    from aigw.store.engine import create_store_engine

    engine = create_store_engine(resolve_database_url(gateway.env.get("AIGW_DATABASE_URL"), gateway.data_dir))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM responses")).scalar_one()
    finally:
        engine.dispose()


def sent_upstream(fake) -> str:
    return json.dumps(fake.requests[-1]["json"])


@pytest.mark.parametrize("provider", TRANSLATED)
def test_store_by_default_then_continue_retrieve_list_and_delete(client, fake, provider):
    first = client.responses.create(model=provider, input="my name is Ada", instructions="Be brief.")
    assert first.store is True and first.id.startswith("resp_")
    assert first.output_text == "[system: Be brief.] echo: my name is Ada"

    got = client.responses.retrieve(first.id)
    assert got.model_dump() == first.model_dump()
    (item,) = client.responses.input_items.list(first.id).data
    assert item.type == "message" and item.role == "user" and item.content[0].text == "my name is Ada"

    fake.clear()
    second = client.responses.create(model=provider, input="what is my name", previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.id != first.id
    assert second.output_text == "echo: what is my name"
    sent = sent_upstream(fake)
    assert "my name is Ada" in sent and "echo: my name is Ada" in sent  # the history reached the model
    assert sent.count("Be brief.") == 1  # in the first answer only: instructions are not carried over
    assert "previous_response_id" not in sent and "resp_" not in sent

    third = client.responses.create(model=provider, input="and now?", previous_response_id=second.id, store=False)
    assert third.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(third.id)

    deleted = client.responses.delete(first.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    # Deleting a link ends the history there: the second response still continues, without the first.
    fake.clear()
    client.responses.create(model=provider, input="still there?", previous_response_id=second.id, store=False)
    sent = sent_upstream(fake)
    assert "what is my name" in sent and "my name is Ada" not in sent


@pytest.mark.parametrize("provider", TRANSLATED)
def test_a_streamed_response_is_stored_as_its_last_event_says(gateway, client, fake, provider):
    with client.responses.stream(model=provider, input="stream me") as stream:
        final = stream.get_final_response()
    assert final.id.startswith("resp_") and final.output_text == "echo: stream me"
    fake.clear()
    follow = client.responses.create(model=provider, input="after the stream", previous_response_id=final.id)
    assert follow.output_text == "echo: after the stream"
    assert "echo: stream me" in sent_upstream(fake)
    # Byte for byte: what GET returns is the Response the terminal event carried.
    events = raw_stream(gateway, {"model": provider, "input": "stream me"}, path=str(client.base_url.path) + "responses")
    assert events[0][1]["response"]["id"] == events[-1][1]["response"]["id"]
    name, completed = events[-1]
    assert name == "response.completed"
    headers = {"Authorization": f"Bearer {gateway.admin_token}"}
    assert requests.get(f"{client.base_url}responses/{completed['response']['id']}", headers=headers).json() == completed["response"]


@pytest.mark.parametrize("provider", TRANSLATED)
def test_item_reference_resolves_to_the_stored_item(client, fake, provider):
    first = client.responses.create(model=provider, input="remember the word kumquat")
    (answer,) = [item for item in first.output if item.type == "message"]
    fake.clear()
    second = client.responses.create(
        model=provider,
        input=[
            {"type": "item_reference", "id": answer.id},
            message("user", "which fruit?"),
        ],
    )
    assert second.output_text == "echo: which fruit?"
    sent = sent_upstream(fake)
    assert "echo: remember the word kumquat" in sent and "item_reference" not in sent
    # The referencing response keeps the item itself, so it may be referred to from there too.
    items = client.responses.input_items.list(second.id, order="asc").data
    assert [i.id for i in items][0] == answer.id and items[0].content[0].text == "echo: remember the word kumquat"


def test_a_tool_round_through_previous_response_id(client, fake):
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}
    first = client.responses.create(model="anthropic", input="find it", tools=[tool])
    (call,) = [item for item in first.output if item.type == "function_call"]
    second = client.responses.create(
        model="anthropic", previous_response_id=first.id, tools=[tool],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "42"}],
    )  # fmt: skip
    assert second.output_text == "tool said: 42"
    orphan = {"type": "function_call_output", "call_id": "call_nobody", "output": "1"}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="anthropic", previous_response_id=second.id, tools=[tool], input=[orphan])
    assert caught.value.body["param"] == "input[0]" and "call_nobody" in caught.value.message


def test_another_principals_responses_do_not_exist_for_you(gateway, client, fake, other_token):
    mine = client.responses.create(model="anthropic", input="private words")
    (answer,) = [item for item in mine.output if item.type == "message"]
    theirs = openai.OpenAI(base_url=str(client.base_url), api_key=other_token, max_retries=0, timeout=20)
    with pytest.raises(openai.NotFoundError) as caught:
        theirs.responses.retrieve(mine.id)
    assert caught.value.body["param"] == "response_id"
    with pytest.raises(openai.NotFoundError):
        theirs.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError) as caught:
        theirs.responses.create(model="anthropic", input="x", previous_response_id=mine.id)
    assert caught.value.body["param"] == "previous_response_id"
    fake.clear()
    reference = {"model": "anthropic", "input": [{"type": "item_reference", "id": answer.id}]}
    error = assert_openai_error(post(gateway, reference, token=other_token), 404, "input")
    unknown = assert_openai_error(post(gateway, {**reference, "input": [{"type": "item_reference", "id": "msg_nobody"}]}, token=other_token), 404, "input")
    assert error["message"].replace(answer.id, "X") == unknown["message"].replace("msg_nobody", "X")  # nothing tells them apart
    assert fake.requests == []
    assert client.responses.retrieve(mine.id).id == mine.id  # still the owner's


def test_store_false_writes_nothing(gateway, client, fake):
    before = stored_count(gateway)
    plain = client.responses.create(model="gemini", input="not kept", store=False)
    with client.responses.stream(model="compat", input="not kept either", store=False) as stream:
        streamed = stream.get_final_response()
    assert stored_count(gateway) == before
    for response in (plain, streamed):
        assert response.store is False
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(response.id)
    client.responses.create(model="gemini", input="kept")
    assert stored_count(gateway) == before + 1


def test_codex_shaped_requests_are_unaffected(gateway, fake):
    """Codex CLI: store false, the whole history each turn, ids on its items; nothing is stored and
    nothing is looked up."""
    before = stored_count(gateway)
    body = {
        "model": "anthropic", "store": False, "stream": True, "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first"}]},
            {"type": "message", "role": "assistant", "id": "msg_codex_1", "content": [{"type": "output_text", "text": "echo: first"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ],
    }  # fmt: skip
    response = post(gateway, body, path="/codex/v1/responses")
    assert response.status_code == 200 and "echo: second" in response.text
    assert stored_count(gateway) == before


def test_pass_through_forwards_references_and_state_intact(gateway, fake):
    body = {
        "model": "openai", "previous_response_id": "resp_vendor_1",
        "input": [{"type": "item_reference", "id": "msg_vendor_1"}, message("user", "hi")],
    }  # fmt: skip
    assert post(gateway, body).status_code == 200
    assert fake.requests[-1]["json"] == {**body, "model": "gpt-4o-mini"}  # the vendor resolves its own ids


def test_an_id_the_gateway_did_not_mint_is_a_clear_404(gateway, client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve("resp_vendor_kept")
    assert "kept by that vendor" in caught.value.message
    response = requests.get(f"{gateway.url}/openai/v1/responses/resp_x/other", headers={"Authorization": f"Bearer {gateway.admin_token}"})
    assert_openai_error(response, 404)
    response = requests.get(f"{gateway.url}/openai/v1/responses/resp_x", headers={"Authorization": "Bearer nope"})
    assert_openai_error(response, 401)


def test_too_many_references_are_refused(gateway, fake):
    from aigw.surfaces.stored_responses import MAX_REFERENCES

    refs = [{"type": "item_reference", "id": f"msg_{n}"} for n in range(MAX_REFERENCES + 1)]
    error = assert_openai_error(post(gateway, {"model": "anthropic", "input": refs}), 400, "input")
    assert str(MAX_REFERENCES) in error["message"]
    assert fake.requests == []


def test_a_request_that_neither_stores_nor_refers_never_touches_the_store(fake_upstream, tmp_path):
    """The store's responses table taken away under a running gateway: Codex-shaped requests (store
    false, nothing referred to), and any request to an endpoint with a native destination, are
    answered as if nothing happened; a stored answer is still answered (its saving fails, logged);
    reading stored state is the store's 503."""
    from aigw.store import resolve_database_url
    from aigw.store.engine import create_store_engine
    from tests.conftest import SECRETS, gateway_config
    from tests.gateway_process import cleanup, start_gateway

    config = yaml.safe_load(gateway_config(fake_upstream.url))
    openai_destination = next(e for e in config["endpoints"] if e["name"] == "openai")["destinations"][0]
    anthropic_destination = next(e for e in config["endpoints"] if e["name"] == "anthropic")["destinations"][0]
    config["endpoints"].append({"name": "mixed", "destinations": [openai_destination], "fallbacks": [anthropic_destination]})
    process = start_gateway(yaml.safe_dump(config), env=SECRETS)
    try:
        engine = create_store_engine(resolve_database_url(None, process.data_dir))
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE responses RENAME TO responses_away"))
        engine.dispose()
        for path in ("/openai/v1/responses", "/codex/v1/responses"):
            for stream in (False, True):
                body = {"model": "anthropic", "input": "quick", "store": False, "stream": stream}
                assert post(process, body, path=path).status_code == 200
        # An endpoint mixing a native and a translated destination keeps no state in the gateway.
        assert post(process, {"model": "mixed", "input": "vendor kept"}).status_code == 200
        mixed = post(process, {"model": "mixed", "input": "x", "previous_response_id": "resp_1"})
        assert_openai_error(mixed, 400, "previous_response_id")
        assert "could not store" not in process.log()
        assert post(process, {"model": "anthropic", "input": "kept?"}).status_code == 200
        deadline = time.monotonic() + 5
        while "could not store response" not in process.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "could not store response" in process.log()
        continued = post(process, {"model": "anthropic", "input": "x", "previous_response_id": "resp_1", "store": False})
        assert_openai_error(continued, 503)
    finally:
        cleanup(process)


def test_state_on_postgresql(fake_upstream, postgres_database):  # noqa: F811
    """The same store code on PostgreSQL: a stored answer continued by id and referred to by item."""
    from tests.conftest import SECRETS, gateway_config
    from tests.gateway_process import cleanup, start_gateway

    process = start_gateway(gateway_config(fake_upstream.url), env={**SECRETS, "AIGW_DATABASE_URL": postgres_database})
    try:
        client = openai.OpenAI(base_url=process.url + "/openai/v1", api_key=process.admin_token, max_retries=0, timeout=20)
        first = client.responses.create(model="gemini", input="the word is kumquat")
        (answer,) = [item for item in first.output if item.type == "message"]
        fake_upstream.clear()
        second = client.responses.create(
            model="gemini", previous_response_id=first.id,
            input=[{"type": "item_reference", "id": answer.id}, message("user", "again")],
        )  # fmt: skip
        assert second.output_text == "echo: again"
        assert sent_upstream(fake_upstream).count("echo: the word is kumquat") == 2  # the history's and the reference's
        assert client.responses.retrieve(second.id).previous_response_id == first.id
        client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(first.id)
    finally:
        cleanup(process)


def test_a_slow_store_holds_an_answer_two_seconds_at_most(gateway, client, fake):
    """The SQLite file's write lock held by someone else: the answer goes out after the bounded wait,
    and the response is stored once the lock is released."""
    import sqlite3

    from sqlalchemy.engine import make_url

    from aigw.store import resolve_database_url
    from aigw.surfaces.stored_responses import SAVE_WAIT_SECONDS

    path = make_url(resolve_database_url(gateway.env.get("AIGW_DATABASE_URL"), gateway.data_dir)).database
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        locker.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        response = client.responses.create(model="anthropic", input="slow store")
        waited = time.monotonic() - started
        assert SAVE_WAIT_SECONDS <= waited < SAVE_WAIT_SECONDS + 3, waited
        assert f"response {response.id} is still being stored" in gateway.log()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            assert client.responses.retrieve(response.id).output_text == "echo: slow store"
            break
        except openai.NotFoundError:
            assert time.monotonic() < deadline, "never stored"
            time.sleep(0.1)
