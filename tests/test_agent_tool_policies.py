"""Content policies on the agent loop's hosted tool calls (aigw.agent.tool_policies), on a running
gateway: a tool call's arguments go through the endpoint's `call` policies and its result through
its `result` policies. The policy is tests.guardrail_functions:tool_gate, which acts on tool calls
only, so what the client sent is left alone: HOLD in the arguments asks for approval (the
mcp_approval_request flow), FORBIDDEN denies, MASKME masks; a result with "21 C" is masked."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest
import yaml

from tests.conftest import PROVIDER_DESTINATIONS, SECRETS
from tests.fakes.mcp_server import start_http_server
from tests.gateway_process import GatewayProcess, cleanup, start_gateway
from tests.test_agent_api import MCP_TOKEN, ROOT, items_of

WEATHER = [{"type": "connection", "name": "weather"}]
ENDPOINTS = ["openai", "anthropic"]  # the Responses API passed through, and translated


@pytest.fixture(scope="module")
def gateway(fake_upstream) -> Iterator[GatewayProcess]:
    mcp, mcp_url = start_http_server(token=MCP_TOKEN)
    endpoints = [
        {"name": name, "destinations": [{k: v.replace("{fake}", fake_upstream.url) for k, v in PROVIDER_DESTINATIONS[name].items()}],
         "policies": ["tool-gate"]}
        for name in ENDPOINTS
    ]  # fmt: skip
    config = {
        "policies": [{"name": "tool-gate", "kind": "python", "function": "tests.guardrail_functions:tool_gate", "on": ["call", "result"]}],
        "endpoints": endpoints,
        "agent": {
            "max_turns": 3,
            "connections": [{"name": "weather", "url": mcp_url, "headers": {"Authorization": f"Bearer {MCP_TOKEN}"}, "require_approval": "never"}],
            "functions": [{"name": "add_numbers", "function": "tests.agent_functions:add"}],
        },
    }
    process = start_gateway(yaml.safe_dump(config, sort_keys=False), env={**SECRETS, "PYTHONPATH": str(ROOT)})
    try:
        yield process
    finally:
        cleanup(process)
        mcp.terminate()
        mcp.wait(10)


@pytest.fixture(scope="module")
def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/mlflow/v1", api_key=gateway.admin_token, max_retries=0)


def tool_runs(gateway: GatewayProcess) -> list[dict]:
    """The tool-call policy runs of every recorded request."""
    runs = []
    for record in gateway.usage_records():
        policies = record.get("policies") or []
        if isinstance(policies, str):
            policies = json.loads(policies)
        runs += policies
    return runs


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_masked_arguments_and_result(client, fake_upstream, endpoint):
    fake_upstream.clear()
    response = client.responses.create(model=endpoint, input='[[tool lookup_city {"city": "Paris-MASKME"}]]', tools=WEATHER)
    (call,) = items_of(response, "mcp_call")
    assert json.loads(call.arguments) == {"city": "Paris-XXXXXX"}  # what ran, and all the response shows
    assert call.output == "Paris-XXXXXX: [TEMPERATURE], sunny"  # the tool's own answer said 21 C
    assert response.output_text == "tool said: Paris-XXXXXX: [TEMPERATURE], sunny"
    second = json.dumps(fake_upstream.requests[-1]["json"])
    assert "[TEMPERATURE]" in second and "21 C" not in second  # the model never saw the masked result


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_denied_call_is_not_run_and_the_model_is_told(client, endpoint):
    response = client.responses.create(model=endpoint, input='[[tool lookup_city {"city": "FORBIDDEN"}]]', tools=WEATHER)
    (call,) = items_of(response, "mcp_call")
    assert call.status == "failed" and call.output is None and "tool-gate refused the call" in call.error
    assert response.status == "completed" and "tool-gate refused the call" in response.output_text


def test_denied_function_call_is_not_run(client):
    response = client.responses.create(
        model="anthropic", input='[[tool add_numbers {"a": 1, "b": 2, "note": "FORBIDDEN"}]]',
        tools=[{"type": "hosted_function", "name": "add_numbers"}],
    )  # fmt: skip
    (output,) = items_of(response, "function_call_output")
    assert output.output.startswith("Error: Not run:") and "tool-gate" in output.output


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_ask_holds_the_call_for_approval(client, endpoint):
    first = client.responses.create(model=endpoint, input='[[tool lookup_city {"city": "HOLD"}]]', tools=WEATHER)
    (request,) = items_of(first, "mcp_approval_request")
    assert request.name == "lookup_city" and not items_of(first, "mcp_call")  # the server never asks: the policy did
    approved = client.responses.create(
        model=endpoint, tools=WEATHER, previous_response_id=first.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
    )  # fmt: skip
    (call,) = items_of(approved, "mcp_call")
    assert call.approval_request_id == request.id and call.output == "HOLD: [TEMPERATURE], sunny"
    declined = client.responses.create(
        model=endpoint, tools=WEATHER, previous_response_id=first.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": False}],
    )  # fmt: skip
    (call,) = items_of(declined, "mcp_call")
    assert call.output is None and "declined" in call.error


def test_runs_are_recorded(client, gateway):
    client.responses.create(model="anthropic", input='[[tool lookup_city {"city": "Lyon"}]]', tools=WEATHER)
    wanted = {("tool-gate", "call", "allow"), ("tool-gate", "result", "mask")}
    deadline = time.monotonic() + 10  # records are written in the background
    while not wanted <= {(r["policy"], r["phase"], r["verdict"]) for r in tool_runs(gateway)}:
        assert time.monotonic() < deadline, tool_runs(gateway)
        time.sleep(0.2)
