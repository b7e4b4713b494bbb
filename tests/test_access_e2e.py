"""Permissions end to end: a real gateway, tokens and grants made with the `aigw` CLI, requests on every
surface. Its own gateway (demo-provider endpoints, a short refresh), so grants made here touch no
other test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import yaml

from tests.gateway_process import GatewayProcess, cleanup, start_gateway

REFRESH_SECONDS = 0.3
WAIT_SECONDS = 10.0  # far above the refresh period: a slow CI machine must not flake
MESSAGES = [{"role": "user", "content": "hi"}]
DEMO = {"provider": "demo", "model": "aigw-demo-1"}
ENDPOINTS = ("chat", "embed", "managed", "open", "secret")


def _config() -> str:
    endpoints = [{"name": name, "task": ["chat", "embeddings"], "destinations": [DEMO]} for name in ENDPOINTS]
    return yaml.safe_dump({"server": {"token_refresh_seconds": REFRESH_SECONDS}, "endpoints": endpoints})


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    process = start_gateway(_config())
    try:
        yield process
    finally:
        cleanup(process)


def _cli(gateway: GatewayProcess, *args: str) -> str:
    result = gateway.cli(*args)
    assert result.returncode == 0, f"aigw {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def _token(gateway: GatewayProcess, principal: str, *extra: str) -> str:
    return _cli(gateway, "tokens", "create", "--name", f"{principal}-token", "--principal", principal, "--create-principal", *extra)


# -- one request per route that names an endpoint -------------------------------------------------------


def _openai_chat(url: str, token: str, endpoint: str) -> requests.Response:
    body = {"model": endpoint, "messages": MESSAGES}
    return requests.post(f"{url}/openai/v1/chat/completions", json=body, headers={"authorization": f"Bearer {token}"})


def _openai_embeddings(url: str, token: str, endpoint: str) -> requests.Response:
    body = {"model": endpoint, "input": "hi"}
    return requests.post(f"{url}/mlflow/v1/embeddings", json=body, headers={"authorization": f"Bearer {token}"})


def _responses(url: str, token: str, endpoint: str) -> requests.Response:
    body = {"model": endpoint, "input": "hi"}
    return requests.post(f"{url}/codex/v1/responses", json=body, headers={"authorization": f"Bearer {token}"})


def _anthropic_messages(url: str, token: str, endpoint: str) -> requests.Response:
    body = {"model": endpoint, "max_tokens": 50, "messages": MESSAGES}
    return requests.post(f"{url}/anthropic/v1/messages", json=body, headers={"x-api-key": token})


def _anthropic_count_tokens(url: str, token: str, endpoint: str) -> requests.Response:
    body = {"model": endpoint, "messages": MESSAGES}
    return requests.post(f"{url}/anthropic/v1/messages/count_tokens", json=body, headers={"x-api-key": token})


def _anthropic_model(url: str, token: str, endpoint: str) -> requests.Response:
    return requests.get(f"{url}/anthropic/v1/models/{endpoint}", headers={"x-api-key": token})


def _gemini(method: str, body: dict[str, Any]) -> Callable[[str, str, str], requests.Response]:
    def call(url: str, token: str, endpoint: str) -> requests.Response:
        return requests.post(
            f"{url}/gemini/v1beta/models/{endpoint}:{method}", json=body, headers={"x-goog-api-key": token}
        )

    return call


def _gemini_model(url: str, token: str, endpoint: str) -> requests.Response:
    return requests.get(f"{url}/gemini/v1beta/models/{endpoint}", headers={"x-goog-api-key": token})


CONTENTS = [{"role": "user", "parts": [{"text": "hi"}]}]
OPENAI_SHAPED = [_openai_chat, _openai_embeddings, _responses]
ANTHROPIC_SHAPED = [_anthropic_messages, _anthropic_count_tokens, _anthropic_model]
GEMINI_SHAPED = [
    _gemini("generateContent", {"contents": CONTENTS}),
    _gemini("streamGenerateContent", {"contents": CONTENTS}),
    _gemini("countTokens", {"contents": CONTENTS}),
    _gemini("embedContent", {"content": {"parts": [{"text": "hi"}]}}),
    _gemini_model,
]
EVERY_ROUTE = OPENAI_SHAPED + ANTHROPIC_SHAPED + GEMINI_SHAPED


def _assert_denied(response: requests.Response, call: Callable[..., Any], endpoint: str) -> None:
    assert response.status_code == 403, (call, response.text)
    body = response.json()
    if call in OPENAI_SHAPED:
        assert body["error"]["type"] == "permission_error" and body["error"]["code"] == "permission_denied"
        message = body["error"]["message"]
    elif call in ANTHROPIC_SHAPED:
        assert body["type"] == "error" and body["error"]["type"] == "permission_error"
        message = body["error"]["message"]
    else:
        assert body["error"]["code"] == 403 and body["error"]["status"] == "PERMISSION_DENIED"
        message = body["error"]["message"]
    assert f"'{endpoint}'" in message and "CAN_QUERY" in message


def _allowed(gateway: GatewayProcess, token: str, endpoint: str) -> bool:
    return _openai_chat(gateway.url, token, endpoint).status_code == 200


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_SECONDS} s: {what}")
        time.sleep(0.05)


def _models(gateway: GatewayProcess, token: str) -> dict[str, list[str]]:
    """The endpoint names each surface's model list shows."""
    url = gateway.url
    openai = requests.get(f"{url}/openai/v1/models", headers={"authorization": f"Bearer {token}"}).json()
    anthropic = requests.get(f"{url}/anthropic/v1/models", headers={"x-api-key": token}).json()
    gemini = requests.get(f"{url}/gemini/v1beta/models", headers={"x-goog-api-key": token}).json()
    return {
        "openai": [m["id"] for m in openai["data"]],
        "anthropic": [m["id"] for m in anthropic["data"]],
        "gemini": [m["name"].removeprefix("models/") for m in gemini["models"]],
    }


def _same_everywhere(names: list[str]) -> dict[str, list[str]]:
    return {"openai": names, "anthropic": names, "gemini": names}


# -- the tests ------------------------------------------------------------------------------------------


def test_without_a_grant_every_route_is_403_in_its_surface_shape(gateway: GatewayProcess) -> None:
    token = _token(gateway, "nobody")
    for call in EVERY_ROUTE:
        _assert_denied(call(gateway.url, token, "secret"), call, "secret")
    # The built-in demo endpoint (no upstream) is open to every token; unknown endpoints stay 404.
    assert _models(gateway, token) == _same_everywhere(["demo"])
    assert _openai_chat(gateway.url, token, "demo").status_code == 200
    assert _openai_chat(gateway.url, token, "no-such-endpoint").status_code == 404
    assert _gemini_model(gateway.url, token, "no-such-endpoint").status_code == 404


def test_admin_queries_and_lists_everything(gateway: GatewayProcess) -> None:
    for call in EVERY_ROUTE:
        response = call(gateway.url, gateway.admin_token, "secret")
        assert response.status_code == 200, (call, response.text)
    assert _models(gateway, gateway.admin_token) == _same_everywhere(sorted([*ENDPOINTS, "demo"]))


def test_a_direct_grant_opens_every_surface_and_its_removal_closes_it(gateway: GatewayProcess) -> None:
    token = _token(gateway, "alice")
    assert not _allowed(gateway, token, "chat")
    _cli(gateway, "grants", "add", "chat", "--user", "alice")
    _eventually(lambda: _allowed(gateway, token, "chat"), "a new grant is honoured")
    for call in EVERY_ROUTE:
        response = call(gateway.url, token, "chat")
        assert response.status_code == 200, (call, response.text)
    assert _models(gateway, token) == _same_everywhere(["chat", "demo"])

    _cli(gateway, "grants", "remove", "chat", "--user", "alice")
    _eventually(lambda: not _allowed(gateway, token, "chat"), "a removed grant is enforced again")
    for call in EVERY_ROUTE:
        _assert_denied(call(gateway.url, token, "chat"), call, "chat")
    assert _models(gateway, token) == _same_everywhere(["demo"])


def test_a_grant_to_a_group_reaches_its_members(gateway: GatewayProcess) -> None:
    member, outsider = _token(gateway, "bob"), _token(gateway, "carol")
    _cli(gateway, "groups", "create", "eng")
    _cli(gateway, "grants", "add", "embed", "--group", "eng")
    _cli(gateway, "groups", "add-member", "eng", "bob")
    _eventually(lambda: _allowed(gateway, member, "embed"), "a grant through a group is honoured")
    assert _openai_embeddings(gateway.url, member, "embed").status_code == 200
    assert not _allowed(gateway, outsider, "embed")
    assert "embed" in _models(gateway, member)["openai"] and "embed" not in _models(gateway, outsider)["openai"]

    _cli(gateway, "groups", "remove-member", "eng", "bob")
    _eventually(lambda: not _allowed(gateway, member, "embed"), "leaving the group closes the endpoint")


def test_the_users_group_opens_an_endpoint_to_every_principal(gateway: GatewayProcess) -> None:
    user, service = _token(gateway, "dave"), _token(gateway, "etl", "--service-principal")
    _cli(gateway, "grants", "add", "open", "--group", "users")
    _eventually(lambda: _allowed(gateway, user, "open") and _allowed(gateway, service, "open"), "`users` holds all")
    assert _anthropic_messages(gateway.url, service, "open").status_code == 200
    assert _gemini("generateContent", {"contents": CONTENTS})(gateway.url, user, "open").status_code == 200
    assert "secret" not in _models(gateway, user)["gemini"]


def test_can_manage_implies_can_query(gateway: GatewayProcess) -> None:
    token = _token(gateway, "ops-bot", "--service-principal")
    _cli(gateway, "grants", "add", "managed", "--service-principal", "ops-bot", "--permission", "CAN_MANAGE")
    _eventually(lambda: _allowed(gateway, token, "managed"), "CAN_MANAGE lets the holder query")
    for names in _models(gateway, token).values():
        assert "managed" in names and "secret" not in names


def test_deleting_a_principal_revokes_its_tokens(gateway: GatewayProcess) -> None:
    token = _token(gateway, "frank")
    assert _allowed(gateway, token, "demo")
    _cli(gateway, "users", "delete", "frank")
    _eventually(lambda: _openai_chat(gateway.url, token, "demo").status_code == 401, "a deleted principal's token fails")
