"""Errors on the unified API: bad input, bad tokens, and upstream failures, each in OpenAI's error
shape with the right status — through the official SDK and as raw HTTP."""

from __future__ import annotations

import base64
import time

import openai
import pytest
import requests

from tests.conftest import MAX_REQUEST_BYTES, SECRETS

UPSTREAMS = ["openai", "compat", "azure", "anthropic", "gemini"]
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/mlflow/v1", api_key=gateway.admin_token, max_retries=0, timeout=20)


def post(gateway, body, token: str | None = "admin", path="/mlflow/v1/chat/completions", **kwargs):
    headers = kwargs.pop("headers", {})
    if token == "admin":
        headers["Authorization"] = f"Bearer {gateway.admin_token}"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(gateway.url + path, headers=headers, data=body if isinstance(body, bytes) else None,
                         json=None if isinstance(body, bytes) else body, timeout=20, **kwargs)


def assert_openai_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param
    return error


def assert_no_secret(text: str) -> None:
    for secret in SECRETS.values():
        assert secret not in text


# --- authentication --------------------------------------------------------------------------------


def test_missing_token_is_401(gateway):
    assert_openai_error(post(gateway, {"model": "demo", "messages": MESSAGES}, token=None), 401)


def test_bad_token_is_401(gateway):
    assert_openai_error(post(gateway, {"model": "demo", "messages": MESSAGES}, token="aigw_nope_nope"), 401)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.url + "/mlflow/v1", api_key="wrong", max_retries=0).models.list()


def test_basic_auth(gateway):
    credentials = base64.b64encode(f"token:{gateway.admin_token}".encode()).decode()
    response = post(gateway, {"model": "demo", "messages": MESSAGES}, token=None,
                    headers={"Authorization": f"Basic {credentials}"})
    assert response.status_code == 200, response.text
    wrong_user = base64.b64encode(f"admin:{gateway.admin_token}".encode()).decode()
    response = post(gateway, {"model": "demo", "messages": MESSAGES}, token=None,
                    headers={"Authorization": f"Basic {wrong_user}"})
    assert_openai_error(response, 401)


@pytest.mark.parametrize("header", ["x-api-key", "x-goog-api-key"])
def test_vendor_key_headers(gateway, header):
    response = post(gateway, {"model": "demo", "messages": MESSAGES}, token=None, headers={header: gateway.admin_token})
    assert response.status_code == 200, response.text


def test_bearer_wins_over_dummy_vendor_key(gateway):
    response = post(gateway, {"model": "demo", "messages": MESSAGES}, headers={"x-api-key": "unused"})
    assert response.status_code == 200, response.text


def test_created_token_works_at_once_and_revocation_is_seen(gateway):
    created = gateway.cli("tokens", "create", "--name", "e2e-revoke", "--create-principal")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert "\n" not in token
    client = openai.OpenAI(base_url=gateway.url + "/mlflow/v1", api_key=token, max_retries=0)
    assert client.chat.completions.create(model="demo", messages=MESSAGES).choices
    assert gateway.cli("tokens", "revoke", "e2e-revoke").returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.chat.completions.create(model="demo", messages=MESSAGES)
        except openai.AuthenticationError:
            return
        time.sleep(0.2)
    pytest.fail("a revoked token was still accepted after 10 s")


# --- bad requests ----------------------------------------------------------------------------------


def test_unknown_endpoint_is_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-endpoint", messages=MESSAGES)
    assert "no-such-endpoint" in caught.value.message


def test_malformed_json_is_400(gateway):
    assert_openai_error(post(gateway, b'{"model": "demo", "messages": [', headers={"content-type": "application/json"}), 400)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "demo"}, "messages"),
        ({"model": "demo", "messages": "hi"}, "messages"),
        ({"model": "demo", "messages": MESSAGES, "temperature": "hot"}, "temperature"),
        ({"model": "demo", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "demo", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "demo", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"model": "demo", "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        ({"model": "openai", "messages": MESSAGES, "max_tokens": "ten"}, "max_tokens"),
    ],
)
def test_invalid_fields_are_400_naming_the_parameter(gateway, body, param):
    assert_openai_error(post(gateway, body), 400, param)


def test_body_over_limit_is_413(gateway):
    big = {"model": "demo", "messages": [{"role": "user", "content": "x" * (MAX_REQUEST_BYTES + 10)}]}
    assert_openai_error(post(gateway, big), 413)


def test_embeddings_on_a_chat_only_endpoint_is_400(client):
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="anthropic", input="x")


def test_unknown_path_is_404(gateway):
    response = requests.get(gateway.url + "/mlflow/v1/nothing-here", timeout=5)
    assert_openai_error(response, 404)


# --- upstream failures -----------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_429_stays_429_with_retry_after(client, upstream):
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=f"{upstream}--error-429", messages=MESSAGES)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert "error-429" in caught.value.message  # names the destination


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("scenario", ["error-500", "error-529"])
def test_upstream_5xx_is_502(client, upstream, scenario):
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=f"{upstream}--{scenario}", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert scenario in caught.value.message


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_rejecting_the_gateway_key_is_502_without_the_key(gateway, upstream):
    response = post(gateway, {"model": f"{upstream}--error-401", "messages": MESSAGES})
    assert_openai_error(response, 502)
    assert_no_secret(response.text)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_400_stays_400(client, upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=f"{upstream}--error-400", messages=MESSAGES)
    assert "error-400" in caught.value.message


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_timeout_is_504(gateway, upstream, stream):
    started = time.monotonic()
    response = post(gateway, {"model": f"{upstream}--hang", "messages": MESSAGES, "stream": stream})
    assert_openai_error(response, 504)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_dropping_the_connection_is_502(gateway, upstream):
    assert_openai_error(post(gateway, {"model": f"{upstream}--drop", "messages": MESSAGES}), 502)


def test_unreachable_upstream_is_502(gateway):
    error = assert_openai_error(post(gateway, {"model": "unreachable", "messages": MESSAGES}), 502)
    assert "unreachable" in error["message"]


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("scenario", ["drop", "stream-error"])
def test_stream_failing_midway_raises_in_the_client(client, upstream, scenario):
    with pytest.raises((openai.APIError, openai.APIConnectionError)):
        for _ in client.chat.completions.create(model=f"{upstream}--{scenario}", messages=MESSAGES, stream=True):
            pass


@pytest.mark.parametrize("upstream", ["openai", "anthropic", "gemini"])
def test_client_disconnect_cancels_the_upstream_stream(gateway, fake_upstream, upstream):
    fake_upstream.clear()
    response = post(
        gateway, {"model": f"{upstream}--slow-400", "messages": [{"role": "user", "content": "one two three four five six seven"}], "stream": True},
        stream=True,
    )
    assert response.status_code == 200
    next(response.iter_content(chunk_size=None))  # the first piece has arrived
    response.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if fake_upstream.requests and fake_upstream.requests[-1]["cancelled"]:
            return
        time.sleep(0.05)
    pytest.fail("the upstream request was not cancelled when the client went away")
