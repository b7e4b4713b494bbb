"""Upstream errors through /mlflow/v1/responses over translated (non-OpenAI) destinations keep their
status class, streamed as unstreamed: a 429 stays a 429 with its Retry-After, a 400 a 400, a 413 a
413, a 504 a 504. Before the stream has started the client gets that HTTP status; once it has (an
MCP server's tool listing goes first), the `error` event and the failed response carry the code.

The fake upstreams answer a model named `error-NNN` with that status (429 with `retry-after: 7`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import PROVIDER_DESTINATIONS, SECRETS
from tests.fakes.mcp_server import STDIO_COMMAND
from tests.gateway_process import GatewayProcess, cleanup, start_gateway

# case -> (the fake's model, the destination's timeout, the status the client gets). An upstream 5xx
# is the gateway's 502 (bad gateway), whole or streamed; the gateway's own timeout is a 504.
CASES = {
    "400": ("error-400", 30, 400),
    "413": ("error-413", 30, 413),
    "429": ("error-429", 30, 429),
    "500": ("error-500", 30, 502),
    "timeout": ("hang", 1, 504),
}
PROVIDERS = ["anthropic", "gemini", "compat"]
# The failed Response's `error.code`: one of the few the SDK's type accepts.
FAILED_CODES = {"400": "invalid_prompt", "429": "rate_limit_exceeded"}


@pytest.fixture(scope="module")
def agw(fake_upstream) -> Iterator[GatewayProcess]:
    endpoints = []
    for provider in PROVIDERS:
        destination = {k: v.replace("{fake}", fake_upstream.url) for k, v in PROVIDER_DESTINATIONS[provider].items()}
        for case, (model, timeout, _) in CASES.items():
            endpoints.append({"name": f"{provider}-{case}", "destinations": [{**destination, "model": model, "timeout": timeout}]})
    connection = {"name": "local", "command": STDIO_COMMAND[0], "args": STDIO_COMMAND[1:], "require_approval": "never"}
    config = {"endpoints": endpoints, "agent": {"connections": [connection]}}
    process = start_gateway(yaml.safe_dump(config), env=SECRETS)
    try:
        yield process
    finally:
        cleanup(process)


def post(agw: GatewayProcess, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {agw.admin_token}"}
    return requests.post(agw.url + "/mlflow/v1/responses", json=body, headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", CASES)
def test_an_upstream_status_is_kept_before_the_stream_starts(agw: GatewayProcess, provider: str, case: str) -> None:
    status = CASES[case][2]
    whole = post(agw, {"model": f"{provider}-{case}", "input": "hello"})
    streamed = post(agw, {"model": f"{provider}-{case}", "input": "hello", "stream": True})
    for answer in (whole, streamed):
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert set(answer.json()["error"]) >= {"message", "type", "param", "code"}
    assert streamed.json()["error"]["code"] == whole.json()["error"]["code"]
    if status == 429:
        assert whole.headers.get("retry-after") == streamed.headers.get("retry-after") == "7"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", CASES)
def test_an_upstream_status_is_told_once_the_stream_started(agw: GatewayProcess, provider: str, case: str) -> None:
    """The MCP server's tool listing opens the stream before the model's turn fails."""
    tools = [{"type": "connection", "name": "local"}]
    whole = post(agw, {"model": f"{provider}-{case}", "input": "hello", "tools": tools}).json()["error"]
    answer = post(agw, {"model": f"{provider}-{case}", "input": "hello", "stream": True, "tools": tools}, stream=True)
    assert answer.status_code == 200, answer.text
    events = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith(b"data: {")]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created" and kinds[-2:] == ["error", "response.failed"], kinds
    assert events[-2]["code"] == (whole["code"] or whole["type"]) and events[-2]["message"] == whole["message"]
    assert events[-1]["response"]["error"]["code"] == FAILED_CODES.get(case, "server_error")
