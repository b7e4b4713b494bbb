"""Property-based fuzzing of every surface: valid request shapes with fields replaced, removed,
wrapped or nested deep, and random JSON. Whatever the body, the gateway answers within a timeout,
never with a 500 (nor any 5xx from the demo endpoint, which has no upstream to blame), and every
error comes in the surface's own shape.

The budget is bounded for CI (derandomized, `AIGW_FUZZ_EXAMPLES` examples per surface, 150 by
default); `AIGW_FUZZ_EXAMPLES=5000 AIGW_FUZZ_RANDOM=1` explores further with fresh randomness.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("AIGW_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("AIGW_FUZZ_RANDOM", "") in ("", "0"),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
TIMEOUT = 10  # seconds per request: more is a hang

TOOL_SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
CHAT = {
    "model": "demo",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": TOOL_SCHEMA}}],
    "tool_choice": "auto", "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": TOOL_SCHEMA}},
    "temperature": 0.5, "top_p": 1, "max_tokens": 50, "n": 2, "stop": ["x"], "seed": 1, "stream": False,
    "stream_options": {"include_usage": True}, "logprobs": False,
}  # fmt: skip
EMBEDDINGS = {"model": "demo", "input": ["a", "b"], "dimensions": 8, "encoding_format": "float"}
RESPONSES = {
    "model": "demo", "instructions": "be brief", "store": False, "max_output_tokens": 50, "temperature": 0.5,
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
    ],
    "tools": [{"type": "function", "name": "f", "parameters": TOOL_SCHEMA}, {"type": "custom", "name": "g"}],
    "tool_choice": {"type": "function", "name": "f"}, "text": {"format": {"type": "text"}}, "reasoning": {"effort": "low"},
}  # fmt: skip
MESSAGES = {
    "model": "demo", "max_tokens": 50, "system": [{"type": "text", "text": "be brief"}], "temperature": 0.5, "top_k": 5,
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "ok"}]}]},
    ],
    "tools": [{"name": "f", "description": "d", "input_schema": TOOL_SCHEMA}], "tool_choice": {"type": "auto"},
    "stop_sequences": ["x"], "metadata": {"user_id": "u"}, "stream": False,
}  # fmt: skip
COUNT = {k: v for k, v in MESSAGES.items() if k in ("model", "messages", "system", "tools", "tool_choice")}
GENERATE = {
    "systemInstruction": {"parts": [{"text": "be brief"}]},
    "contents": [
        {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"q": "x"}}, "thoughtSignature": "c2ln"}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": "ok"}}}]},
    ],
    "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}}}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    "generationConfig": {"temperature": 0.5, "topK": 5, "maxOutputTokens": 50, "candidateCount": 1, "stopSequences": ["x"],
                         "thinkingConfig": {"thinkingBudget": 0}, "responseMimeType": "text/plain"},
}  # fmt: skip
EMBED = {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 8, "taskType": "RETRIEVAL_QUERY"}
GEMINI = "/gemini/v1beta/models/{model}:"


def openai_shape(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str)


def anthropic_shape(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return body.get("type") == "error" and isinstance(error, dict) and isinstance(error.get("type"), str) and isinstance(error.get("message"), str)


def gemini_shape(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and isinstance(error.get("code"), int) and isinstance(error.get("status"), str) and isinstance(error.get("message"), str)


# (path, template, error shape); Gemini's paths name the model.
SURFACES: list[tuple[str, dict[str, Any], Callable[[Any], bool]]] = [
    ("/mlflow/v1/chat/completions", CHAT, openai_shape),
    ("/openai/v1/chat/completions", CHAT, openai_shape),
    ("/mlflow/v1/embeddings", EMBEDDINGS, openai_shape),
    ("/openai/v1/embeddings", EMBEDDINGS, openai_shape),
    ("/mlflow/v1/responses", RESPONSES, openai_shape),
    ("/openai/v1/responses", RESPONSES, openai_shape),
    ("/anthropic/v1/messages", MESSAGES, anthropic_shape),
    ("/anthropic/v1/messages/count_tokens", COUNT, anthropic_shape),
    (GEMINI + "generateContent", GENERATE, gemini_shape),
    (GEMINI + "streamGenerateContent", GENERATE, gemini_shape),
    (GEMINI + "countTokens", GENERATE, gemini_shape),
    (GEMINI + "embedContent", EMBED, gemini_shape),
    (GEMINI + "batchEmbedContents", {"requests": [EMBED, EMBED]}, gemini_shape),
]
# Endpoints a body may go to: the demo (translated, no upstream) and one destination per vendor
# (passed through to a fake that speaks its wire; a fake that chokes on a body is a 502).
PASS_THROUGH = {"/openai/": "openai", "/anthropic/": "anthropic", "/gemini/": "gemini"}


def _field_names(value: Any, names: set[str]) -> set[str]:
    if isinstance(value, dict):
        names.update(value)
        for child in value.values():
            _field_names(child, names)
    elif isinstance(value, list):
        for child in value:
            _field_names(child, names)
    return names


FIELD_NAMES = sorted(_field_names([s[1] for s in SURFACES], {"role", "type", "call_id", "approval_request_id", "mimeType"}))
SPECIAL = [0, -1, 1, 8, 17, 128, 129, 65_536, 10**9, 2**31, 2**63, 2**64, 10**30, 1e308, -1e308, 0.5, "", "8", "²", "user", "text", True, False, None, [], {}]  # fmt: skip
# Kept cheap to draw (Hypothesis' own cost dominates a request to the gateway): few leaves, and
# values from a list of the ones that break things more often than from the whole space.
scalars = st.sampled_from(SPECIAL) | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=6)
keys = st.sampled_from(FIELD_NAMES)
containers = st.lists(scalars, max_size=3) | st.dictionaries(keys, scalars, max_size=3)
json_values = scalars | containers | st.lists(containers, max_size=2) | st.dictionaries(keys, containers, max_size=2)


def nested(levels: int) -> Any:
    value: Any = {"type": "text"}
    for i in range(levels):
        value = [value] if i % 2 else {"properties": value}
    return value


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


OPERATIONS = ("replace", "replace", "replace", "delete", "wrap", "deep", "add")


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> Any:
    """`template` with one to three of its fields replaced, removed, wrapped in an array, nested
    deep, or joined by a new field. Fields are picked among the template's own (a field a former
    mutation removed is skipped), so picking costs nothing however deep a mutation nested."""
    paths = _paths(template)
    body = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 3))):
        *parents, key = paths[draw(st.integers(0, len(paths) - 1))]
        parent = body
        try:
            for step in parents:
                parent = parent[step]
            parent[key]
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(parent, (dict, list)):  # a string a former mutation put there
            continue
        operation = draw(st.sampled_from(OPERATIONS))
        if operation == "delete":
            del parent[key]
        elif operation == "wrap":
            parent[key] = [parent[key]]
        elif operation == "deep":
            parent[key] = nested(draw(st.integers(60, 400)))
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(keys)] = draw(json_values)
        else:
            parent[key] = draw(json_values)
    return body


@pytest.fixture(scope="module")
def session(gateway):
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {gateway.admin_token}"
        yield s


def _send(session: requests.Session, url: str, body: Any, stream: bool) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = session.post(url, data=data, headers={"content-type": "application/json"}, timeout=TIMEOUT, stream=stream)
    response.content  # the whole answer (a stream to its end) within the timeout, read by read
    return response


def _check(response: requests.Response, shape: Callable[[Any], bool], upstream: bool, body: Any) -> None:
    status = response.status_code
    assert status != 500, (body, response.text[:500])
    assert status < 500 or (upstream and status in (502, 504)), (status, body, response.text[:500])
    if status >= 400:
        assert shape(response.json()), (status, body, response.text[:500])


@pytest.mark.parametrize(("path", "template", "shape"), SURFACES, ids=[s[0].rsplit(":", 1)[-1] for s in SURFACES])
def test_no_request_body_breaks_a_surface(gateway, session, path, template, shape):
    pass_through = next((model for prefix, model in PASS_THROUGH.items() if path.startswith(prefix)), None)
    models = ["demo"] + ([pass_through] if pass_through else [])
    bodies = st.one_of(mutated(template), mutated(template), mutated(template), json_values, st.binary(max_size=40))

    @FUZZ
    @given(body=bodies, model=st.sampled_from(models))
    def run(body: Any, model: str) -> None:
        url = gateway.url + path.format(model=model)
        if isinstance(body, dict) and "model" in template and body.get("model") == "demo":
            body = {**body, "model": model}
        streamed = "stream" in path or (isinstance(body, dict) and body.get("stream") is True)
        _check(_send(session, url, body, streamed), shape, model != "demo", body)

    run()


ADMIN_PARAMS = ["endpoint", "principal", "since", "until", "group_by", "request_id", "limit"]
param_values = st.text(max_size=20) | st.sampled_from(["24h", "999999999w", "0", "²", "9" * 5000, "2026-01-01", "0001-01-01T00:00:00+01:00", "day"])


@pytest.mark.parametrize("path", ["/admin/v1/usage", "/admin/v1/payloads"])
def test_no_query_breaks_the_admin_api(gateway, session, path):
    @settings(FUZZ, max_examples=max(20, EXAMPLES // 5))
    @given(params=st.dictionaries(st.sampled_from(ADMIN_PARAMS) | st.text(max_size=5), param_values, max_size=3))
    def run(params: dict[str, str]) -> None:
        response = session.get(gateway.url + path, params=params, timeout=TIMEOUT)
        _check(response, openai_shape, False, params)

    run()
