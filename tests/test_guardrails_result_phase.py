"""Content policies in the `result` phase, end to end: the official SDKs of every surface -> a real
gateway whose endpoints carry result-only policies (a `pii` mask and a `keywords` deny) -> the fake
upstreams, which echo the user's text (`echo: <text>`), for a destination that passes the answer
through and one that is translated, whole and streamed.

The client never sees the address, masked or not split over chunks (a `chunk-3` model streams three
characters per delta); a deny of a whole answer is the surface's 400, one mid-stream ends the
stream the surface's own way; the usage record lists the runs; the payload log keeps the masked
answer only."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest
import yaml
from google.genai import errors, types

from tests.conftest import SECRETS
from tests.gateway_process import GatewayProcess, cleanup, start_gateway
from tests.test_guardrails_call_phase import (
    anthropic_client, destination, gemini_client, openai_client, payload_of, record_of, refusal, runs,
)  # fmt: skip

ADDRESS = "jane.doe@example.com"
MASKED = "[EMAIL]"
ASKED = f"Please write to {ADDRESS} today"
ECHOED = f"echo: Please write to {MASKED} today"
FORBIDDEN = "Here is a long enough opening before the word forbidden appears, then more"
POLICIES = [
    {"name": "no-pii", "kind": "pii", "action": "mask", "on": ["result"]},
    {"name": "words", "kind": "keywords", "deny": ["forbidden"], "on": ["result"]},
]
MASKED_RUNS = [("no-pii", "result", "mask", ["EMAIL"]), ("words", "result", "allow", [])]
DENIED_RUNS = [("no-pii", "result", "allow", []), ("words", "result", "deny", ["keywords"])]
REFUSAL = "The response was refused by policy 'words' (keywords)."


def config(fake: str) -> str:
    logged = {"payload_logging": {"enabled": True}}
    endpoints = []
    for provider in ("openai", "anthropic", "gemini"):
        endpoints.append({"name": f"r-{provider}", "destinations": [destination(provider, fake)], "policies": ["no-pii", "words"], **logged})
        chunked = {**destination(provider, fake), "model": "chunk-3"}
        endpoints.append({"name": f"c-{provider}", "destinations": [chunked], "policies": ["no-pii", "words"], **logged})
    endpoints.append({"name": "plain-openai", "destinations": [destination("openai", fake)], **logged})
    return yaml.safe_dump({"policies": POLICIES, "endpoints": endpoints}, sort_keys=False).replace("'on':", "on:")


@pytest.fixture(scope="module")
def gateway(fake_upstream) -> Iterator[GatewayProcess]:
    process = start_gateway(config(fake_upstream.url), env=SECRETS)
    try:
        yield process
    finally:
        cleanup(process)


# --- one call per surface, whole and streamed: (the text the client got, how the stream ended) -----------


def chat(gateway: GatewayProcess, endpoint: str, text: str, case: str, stream: bool) -> tuple[str, Any]:
    client = openai_client(gateway, case)
    messages = [{"role": "user", "content": text}]
    if not stream:
        reply = client.chat.completions.create(model=endpoint, messages=messages)
        return reply.choices[0].message.content, reply.choices[0].finish_reason
    chunks = list(client.chat.completions.create(model=endpoint, messages=messages, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def agent(gateway: GatewayProcess, endpoint: str, text: str, case: str, stream: bool) -> tuple[str, Any]:
    return responses(gateway, endpoint, text, case, stream, "/mlflow/v1")


def responses(gateway: GatewayProcess, endpoint: str, text: str, case: str, stream: bool, prefix: str = "/openai/v1") -> tuple[str, Any]:
    client = openai_client(gateway, case, prefix)
    if not stream:
        reply = client.responses.create(model=endpoint, input=text, store=False)
        return reply.output_text, reply.status
    events = list(client.responses.create(model=endpoint, input=text, store=False, stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    last = events[-1]
    assert last.type in ("response.completed", "response.incomplete"), [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = [e.text for e in events if e.type == "response.output_text.done"]
    assert done in ([], [deltas]), (done, deltas)  # the done events agree with the deltas
    assert last.response.output_text == deltas
    reason = last.response.incomplete_details.reason if last.response.incomplete_details else None
    return deltas, (last.response.status, reason)


def messages(gateway: GatewayProcess, endpoint: str, text: str, case: str, stream: bool) -> tuple[str, Any]:
    client = anthropic_client(gateway, case)
    asked = [{"role": "user", "content": text}]
    if not stream:
        reply = client.messages.create(model=endpoint, max_tokens=64, messages=asked)
        return "".join(b.text for b in reply.content if b.type == "text"), reply.stop_reason
    got: list[str] = []
    try:
        for event in client.messages.create(model=endpoint, max_tokens=64, messages=asked, stream=True):
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                got.append(event.delta.text)
    except anthropic.APIStatusError as error:  # the stream's `event: error`
        return "".join(got), error.body
    return "".join(got), "end"


def generate(gateway: GatewayProcess, endpoint: str, text: str, case: str, stream: bool) -> tuple[str, Any]:
    client = gemini_client(gateway, case)
    if not stream:
        reply = client.models.generate_content(model=endpoint, contents=text)
        return reply.text, reply.candidates[0].finish_reason
    chunks = list(client.models.generate_content_stream(model=endpoint, contents=text))
    got = "".join(p.text or "" for c in chunks for p in (c.candidates[0].content.parts if c.candidates[0].content else None) or ())
    return got, [c.candidates[0].finish_reason for c in chunks if c.candidates[0].finish_reason]


Call = Callable[[GatewayProcess, str, str, str, bool], tuple[str, Any]]
# (surface, call, provider behind): a pass-through and a translated destination each.
CASES: list[tuple[str, Call, str]] = [
    ("openai_chat", chat, "openai"),
    ("openai_chat", chat, "anthropic"),
    ("openai_responses", responses, "openai"),
    ("openai_responses", responses, "anthropic"),
    ("mlflow_responses", agent, "openai"),
    ("mlflow_responses", agent, "anthropic"),
    ("anthropic", messages, "anthropic"),
    ("anthropic", messages, "gemini"),
    ("gemini", generate, "gemini"),
    ("gemini", generate, "openai"),
]
IDS = [f"{surface}-{provider}" for surface, _, provider in CASES]


def answer_text(payload: dict[str, Any]) -> str:
    return payload["response_body"] or ""


# --- mask --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("surface", "send", "provider"), CASES, ids=IDS)
def test_the_answer_is_masked(gateway, fake_upstream, surface, send, provider, stream):
    case = f"mask-{surface}-{provider}-{stream}"
    fake_upstream.clear()
    text, _ = send(gateway, f"r-{provider}", ASKED, case, stream)
    assert ADDRESS in json.dumps([r["json"] for r in fake_upstream.requests])  # no call-phase policy
    assert text.endswith(ECHOED), text
    record = record_of(gateway, case)
    assert record["status"] == 200
    assert runs(record) == MASKED_RUNS
    payload = payload_of(gateway, record["request_id"])
    assert ADDRESS not in answer_text(payload) and MASKED in answer_text(payload)


@pytest.mark.parametrize(("surface", "send", "provider"), CASES, ids=IDS)
def test_a_streamed_address_split_over_chunks_never_reaches_the_client(gateway, fake_upstream, surface, send, provider):
    case = f"chunks-{surface}-{provider}"
    text, _ = send(gateway, f"c-{provider}", ASKED, case, True)
    assert ADDRESS not in text
    assert text.endswith(ECHOED), text
    record = record_of(gateway, case)
    assert runs(record) == MASKED_RUNS
    assert ADDRESS not in answer_text(payload_of(gateway, record["request_id"]))


def test_an_endpoint_without_result_policies_is_untouched(gateway):
    text, _ = chat(gateway, "plain-openai", ASKED, "plain", False)
    assert text.endswith(f"echo: {ASKED}")
    record = record_of(gateway, "plain")
    assert record["policies"] == []


# --- deny --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("surface", "send", "provider"), CASES, ids=IDS)
def test_a_denied_whole_answer_is_the_surfaces_400(gateway, surface, send, provider):
    case = f"deny-{surface}-{provider}"
    with pytest.raises((openai.BadRequestError, anthropic.BadRequestError, errors.ClientError)) as caught:
        send(gateway, f"r-{provider}", FORBIDDEN, case, False)
    assert refusal(surface, caught.value) == REFUSAL
    record = record_of(gateway, case)
    assert (record["status"], record["error"]) == (400, REFUSAL)
    assert runs(record) == DENIED_RUNS


def stream_ending(surface: str, ending: Any) -> None:
    """The surface's own way of ending a denied stream, as its SDK reports it."""
    if surface == "openai_chat":
        assert ending == ["content_filter"]
    elif surface in ("openai_responses", "mlflow_responses"):
        assert ending == ("incomplete", "content_filter")
    elif surface == "anthropic":
        assert ending == {"type": "error", "error": {"type": "invalid_request_error", "message": REFUSAL}}
    else:
        assert ending == [types.FinishReason.SAFETY]


@pytest.mark.parametrize("chunked", [False, True], ids=["words", "chunk-3"])
@pytest.mark.parametrize(("surface", "send", "provider"), CASES, ids=IDS)
def test_a_deny_mid_stream_ends_it_the_surfaces_way(gateway, surface, send, provider, chunked):
    case = f"deny-stream-{surface}-{provider}-{chunked}"
    text, ending = send(gateway, f"{'c' if chunked else 'r'}-{provider}", FORBIDDEN, case, True)
    assert "forbidden" not in text and "then more" not in text
    assert text.startswith("echo: Here is a long"), text  # what came before the deny was sent
    stream_ending(surface, ending)
    record = record_of(gateway, case)
    assert record["status"] == 200
    assert runs(record) == DENIED_RUNS
    logged = answer_text(payload_of(gateway, record["request_id"]) or {"response_body": ""})
    assert "forbidden" not in logged


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_gemini_json_array_streams_are_masked_and_denied_too(gateway, provider):
    """streamGenerateContent without `alt=sse` answers one JSON array, written piece by piece."""
    import requests

    def stream(text: str) -> list[dict[str, Any]]:
        url = f"{gateway.url}/gemini/v1beta/models/c-{provider}:streamGenerateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        response = requests.post(url, json=body, headers={"x-goog-api-key": gateway.admin_token}, timeout=20)
        assert response.status_code == 200, response.text
        return response.json()

    def text_of(chunks: list[dict[str, Any]]) -> str:
        return "".join(p.get("text", "") for c in chunks for p in (c["candidates"][0].get("content") or {}).get("parts") or ())

    masked = stream(ASKED)
    assert text_of(masked).endswith(ECHOED) and ADDRESS not in json.dumps(masked)
    denied = stream(FORBIDDEN)
    assert denied[-1]["candidates"][0]["finishReason"] == "SAFETY"
    assert "forbidden" not in json.dumps(denied) and text_of(denied).startswith("echo: Here is a long")
