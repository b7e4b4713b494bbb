"""Request validation at every surface: unbounded numbers, type confusion and deep nesting get a
400 naming the field, in the surface's own error shape, before any work is done; never a 500, and
never a stalled gateway. Each case here was a 500, a stall or a runaway allocation once."""

from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors

CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "demo", "input": "hi"}
MESSAGES = {"model": "demo", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
GENERATE = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


class Http:
    """A keep-alive session on the gateway, as the admin."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.url + path, timeout=20, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.url + path, timeout=20, **kwargs)


@pytest.fixture(scope="module")
def http(gateway):
    client = Http(gateway.url, gateway.admin_token)
    yield client
    client.session.close()


@pytest.fixture
def oai(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/openai/v1", api_key=gateway.admin_token, max_retries=0, timeout=20)


def deep(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


def with_deep(body: dict, levels: int) -> bytes:
    """`body` with a vendor field nested `levels` deep, as bytes (past ~900 levels no Python JSON
    encoder writes it)."""
    return json.dumps({**body, "vendor_extension": "@"}).replace('"@"', "[" * levels + '"x"' + "]" * levels).encode()


def openai_error(response: requests.Response, param: str | None) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    if param is not None:
        assert f"'{param}'" in error["message"]
    return error


def anthropic_error(response: requests.Response, field: str | None) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    if field is not None:
        assert f"'{field}'" in body["error"]["message"]
    return body["error"]


def gemini_error(response: requests.Response, field: str | None) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT", error
    if field is not None:
        assert f"'{field}'" in error["message"]
    return error


# --- item 1: unbounded work from one request -----------------------------------------------------


@pytest.mark.parametrize("dimensions", [20_000_000, 1_000_000_000, 0, -1])
def test_embedding_dimensions_are_bounded(http, dimensions):
    started = time.monotonic()
    response = http.post("/mlflow/v1/embeddings", json={"model": "demo", "input": "hi", "dimensions": dimensions})
    openai_error(response, "dimensions")
    assert time.monotonic() - started < 2


def test_dimensions_as_a_string_is_400_not_500(http, oai):
    openai_error(http.post("/mlflow/v1/embeddings", json={"model": "demo", "input": "hi", "dimensions": "8"}), "dimensions")
    with pytest.raises(openai.BadRequestError) as caught:
        oai.embeddings.create(model="demo", input="hi", dimensions=10**9)
    assert caught.value.param == "dimensions"


def test_demo_model_embeds_in_its_own_size_only(http):
    openai_error(http.post("/mlflow/v1/embeddings", json={"model": "demo", "input": "hi", "dimensions": 17}), "dimensions")
    response = http.post("/mlflow/v1/embeddings", json={"model": "demo", "input": "hi", "dimensions": 16})
    assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 16


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 1_000_000), ("n", 129), ("n", 0), ("temperature", 2.5), ("top_p", 1.5), ("presence_penalty", -3),
     ("frequency_penalty", 2.01), ("top_logprobs", 21), ("max_tokens", 0), ("max_completion_tokens", 2**40),
     ("seed", 2**63)],
)  # fmt: skip
@pytest.mark.parametrize("prefix", ["/mlflow/v1", "/openai/v1"])
def test_chat_numbers_are_bounded(http, prefix, field, value):
    started = time.monotonic()
    openai_error(http.post(prefix + "/chat/completions", json={**CHAT, field: value}), field)
    assert time.monotonic() - started < 2


def test_bounds_hold_on_the_pass_through_path_too(http):
    """An OpenAI destination behind /openai/v1 gets the body as it is: it is checked all the same."""
    openai_error(http.post("/openai/v1/chat/completions", json={**CHAT, "model": "openai", "n": 1000}), "n")
    openai_error(http.post("/openai/v1/chat/completions", json={**CHAT, "model": "openai", "n": "2"}), "n")
    openai_error(http.post("/openai/v1/embeddings", json={"model": "openai", "input": "x", "dimensions": "8"}), "dimensions")


def test_n_at_the_cap_is_served_quickly(oai):
    started = time.monotonic()
    answer = oai.chat.completions.create(model="demo", messages=CHAT["messages"], n=128)
    assert len(answer.choices) == 128
    assert time.monotonic() - started < 5


def test_demo_stream_and_echo_are_bounded(oai):
    words = " ".join(f"w{i}" for i in range(20_000))
    answer = oai.chat.completions.create(model="demo", messages=[{"role": "user", "content": words}])
    assert len(answer.choices[0].message.content) <= 1_000 + len("Echo: ")
    chunks = list(oai.chat.completions.create(model="demo", messages=[{"role": "user", "content": words}], n=8, stream=True))
    assert len(chunks) <= 256 + 8 * 2 + 2
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert set(texts) == set(range(8)) and all(t == answer.choices[0].message.content for t in texts.values())


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_output_tokens", 0), ("temperature", 3), ("top_p", -0.1), ("top_logprobs", 50), ("max_tool_calls", 0)],
)
@pytest.mark.parametrize("path", ["/openai/v1/responses", "/mlflow/v1/responses"])
def test_responses_numbers_are_bounded(http, path, field, value):
    openai_error(http.post(path, json={**RESPONSES, field: value}), field)


@pytest.mark.parametrize(("field", "value"), [("temperature", 1.5), ("top_k", -1), ("max_tokens", 0), ("max_tokens", 2**40)])
def test_anthropic_numbers_are_bounded(http, field, value):
    anthropic_error(http.post("/anthropic/v1/messages", json={**MESSAGES, field: value}), field)


def test_anthropic_numbers_through_the_sdk(gateway):
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.admin_token, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(**{**MESSAGES, "max_tokens": 0})
    assert caught.value.body["type"] == "error" and "'max_tokens'" in caught.value.body["error"]["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("candidateCount", 9), ("candidateCount", 1_000_000), ("temperature", 2.5), ("topP", 2), ("maxOutputTokens", 0),
     ("presencePenalty", 5), ("logprobs", 21), ("seed", 2**40)],
)  # fmt: skip
def test_gemini_numbers_are_bounded(http, field, value):
    response = http.post("/gemini/v1beta/models/demo:generateContent", json={**GENERATE, "generationConfig": {field: value}})
    gemini_error(response, f"generationConfig.{field}")


def test_gemini_numbers_through_the_sdk(gateway):
    client = genai.Client(api_key=gateway.admin_token, http_options={"base_url": gateway.url + "/gemini", "api_version": "v1beta"})
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.embed_content(model="demo", contents="hi", config={"output_dimensionality": 10**9})
    assert caught.value.code == 400 and "outputDimensionality" in caught.value.message
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="demo", contents="hi", config={"candidate_count": 100})
    assert caught.value.code == 400 and "candidateCount" in caught.value.message


def test_gemini_embedding_dimensions(http):
    for method, body in [
        ("embedContent", {"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 20_000_000}),
        ("batchEmbedContents", {"requests": [{"content": {"parts": [{"text": "x"}]}, "outputDimensionality": "8"}]}),
    ]:
        gemini_error(http.post(f"/gemini/v1beta/models/demo:{method}", json=body), None)


# --- item 4: 500s from client input ---------------------------------------------------------------

SURFACES = [
    ("/mlflow/v1/chat/completions", CHAT, openai_error),
    ("/openai/v1/chat/completions", CHAT, openai_error),
    ("/mlflow/v1/embeddings", {"model": "demo", "input": "x"}, openai_error),
    ("/openai/v1/embeddings", {"model": "openai", "input": "x"}, openai_error),
    ("/openai/v1/responses", RESPONSES, openai_error),
    ("/mlflow/v1/responses", RESPONSES, openai_error),
    ("/anthropic/v1/messages", MESSAGES, anthropic_error),
    ("/anthropic/v1/messages/count_tokens", {"model": "demo", "messages": MESSAGES["messages"]}, anthropic_error),
    ("/gemini/v1beta/models/demo:generateContent", GENERATE, gemini_error),
    ("/gemini/v1beta/models/demo:streamGenerateContent", GENERATE, gemini_error),
    ("/gemini/v1beta/models/demo:countTokens", GENERATE, gemini_error),
    ("/gemini/v1beta/models/demo:embedContent", {"content": {"parts": [{"text": "x"}]}}, gemini_error),
    ("/gemini/v1beta/models/demo:batchEmbedContents", {"requests": [{"content": {"parts": [{"text": "x"}]}}]}, gemini_error),
]


@pytest.mark.parametrize("levels", [200, 300, 1000])
@pytest.mark.parametrize(("path", "body", "check"), SURFACES, ids=[s[0] for s in SURFACES])
def test_deep_nesting_is_400_on_every_surface(http, path, body, check, levels):
    check(http.post(path, data=with_deep(body, levels), headers={"content-type": "application/json"}), None)


def test_deep_nesting_on_the_pass_through_paths(http):
    for model in ("openai", "demo"):
        openai_error(http.post("/openai/v1/chat/completions", json={**CHAT, "model": model, "x": deep(255)}), None)
    anthropic_error(http.post("/anthropic/v1/messages", json={**MESSAGES, "model": "anthropic", "x": deep(255)}), None)
    gemini_error(http.post("/gemini/v1beta/models/gemini:generateContent", json={**GENERATE, "x": deep(255)}), None)


def test_nesting_within_the_limit_still_works(http):
    response = http.post("/mlflow/v1/chat/completions", json={**CHAT, "vendor_extension": deep(100)})
    assert response.status_code == 200, response.text


def test_gemini_type_confusion(http):
    declaration = {"name": "f", "parameters": {"type": "OBJECT", "properties": [{"a": 1}]}}
    for model in ("demo", "gemini"):
        path = f"/gemini/v1beta/models/{model}:generateContent"
        body = {**GENERATE, "tools": [{"functionDeclarations": [declaration]}]}
        gemini_error(http.post(path, json=body), "tools[0].functionDeclarations[0].parameters.properties")
        inline = {"inlineData": {"mimeType": ["image/png"], "data": "AAAA"}}
        body = {"contents": [{"role": "user", "parts": [inline]}]}
        gemini_error(http.post(path, json=body), "contents[0].parts[0].inlineData.mimeType")
    schema = {"type": "OBJECT", "properties": {"a": {"type": "ARRAY", "items": {"properties": 5}}}}
    body = {**GENERATE, "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema}}
    gemini_error(http.post("/gemini/v1beta/models/demo:generateContent", json=body), None)
    config = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": {"f": 1}}}
    body = {**GENERATE, "toolConfig": config}
    gemini_error(http.post("/gemini/v1beta/models/demo:generateContent", json=body), "toolConfig.functionCallingConfig.allowedFunctionNames")


def test_gemini_schema_counts_in_other_digits(http):
    """Gemini schemas write int64 counts as strings: a digit int() cannot read is no count."""
    declaration = {"name": "f", "parameters": {"type": "STRING", "maxLength": "²"}}
    body = {**GENERATE, "tools": [{"functionDeclarations": [declaration]}]}
    response = http.post("/gemini/v1beta/models/demo:generateContent", json=body)
    assert response.status_code == 200, response.text


RESPONSES_CONFUSIONS = [
    ({"role": {"x": 1}, "content": "hi"}, "input[0].role"),
    ({"role": "user", "content": [{"type": {"x": 1}, "text": "hi"}]}, "input[0].content[0].type"),
    ({"type": {"x": 1}, "role": "user", "content": "hi"}, "input[0].type"),
    ({"type": "function_call_output", "call_id": ["c"], "output": "x"}, "input[0].call_id"),
    ({"type": "mcp_approval_response", "approval_request_id": {"id": 1}, "approve": True}, "input[0].approval_request_id"),
]


@pytest.mark.parametrize(("item", "param"), RESPONSES_CONFUSIONS, ids=[c[1] for c in RESPONSES_CONFUSIONS])
@pytest.mark.parametrize("path", ["/openai/v1/responses", "/mlflow/v1/responses"])
@pytest.mark.parametrize("model", ["demo", "openai"])
def test_responses_type_confusion(http, path, model, item, param):
    openai_error(http.post(path, json={"model": model, "input": [item]}), param)


def test_responses_type_confusion_through_the_sdk(oai):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="demo", input=[{"role": {"nested": True}, "content": "hi"}])  # type: ignore[list-item]
    assert caught.value.param == "input[0].role"
    assert "Invalid type for 'input[0].role'" in caught.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [({**CHAT, "messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
     ({**CHAT, "tools": [{"type": "function", "function": {"name": ["f"]}}]}, "tools[0].function.name"),
     ({**CHAT, "tool_choice": {"type": "function", "function": {"name": 1}}}, "tool_choice.function.name"),
     ({**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 7}}]}]},
      "messages[0].content[0].image_url.url"),
     ({**CHAT, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage")],
)  # fmt: skip
def test_chat_type_confusion(http, body, param):
    openai_error(http.post("/mlflow/v1/chat/completions", json=body), param)


@pytest.mark.parametrize(
    ("body", "field"),
    [({**MESSAGES, "tool_choice": {"type": ["auto"]}}, "tool_choice.type"),
     ({**MESSAGES, "messages": [{"role": "user", "content": [{"type": "text", "text": {"t": 1}}]}]},
      "messages[0].content[0].text"),
     ({**MESSAGES, "thinking": {"type": "enabled", "budget_tokens": "1024"}}, "thinking.budget_tokens")],
)  # fmt: skip
def test_anthropic_type_confusion(http, body, field):
    anthropic_error(http.post("/anthropic/v1/messages", json=body), field)
    counted = {k: v for k, v in body.items() if k != "max_tokens"}
    anthropic_error(http.post("/anthropic/v1/messages/count_tokens", json=counted), field)


def test_a_body_that_is_not_an_object(http):
    openai_error(http.post("/mlflow/v1/chat/completions", json=[1, 2]), None)
    anthropic_error(http.post("/anthropic/v1/messages", json="hi"), None)
    gemini_error(http.post("/gemini/v1beta/models/demo:countTokens", json=5), None)


# --- admin API and CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["limit=%C2%B2", "limit=" + "9" * 5000, "since=999999999w", "until=99999999999999999999d",
     "since=0001-01-01T00:00:00%2B01:00", "until=9999-12-31T23:59:59-01:00"],
)  # fmt: skip
def test_admin_query_overflow_is_400(http, query):
    for path in ("/admin/v1/payloads", "/admin/v1/usage") if "limit" not in query else ("/admin/v1/payloads",):
        response = http.get(f"{path}?{query}")
        openai_error(response, query.split("=")[0])


def test_token_expiry_overflow_is_a_usage_error(gateway):
    result = gateway.cli("tokens", "create", "--name", "overflow", "--expires-in", "999999999w")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and "at most 5200w" in result.stderr


# --- the checks themselves ----------------------------------------------------------------------


def test_depth_limit_is_exact_and_ignores_brackets_in_strings():
    from aigw.errors import GatewayError
    from aigw.wire.schemas import check_depth

    for levels, ok in ((127, True), (128, False)):
        body = {"a": deep(levels)}  # the object is one level more
        raw = json.dumps(body).encode()
        if ok:
            check_depth(body, raw)
        else:
            with pytest.raises(GatewayError):
                check_depth(body, raw)
    text = {"a": "[" * 500 + "{" * 500}
    check_depth(text, json.dumps(text).encode())


def test_schema_errors_speak_openai(http):
    error = openai_error(http.post("/mlflow/v1/chat/completions", json={**CHAT, "n": 1000}), "n")
    assert error["message"] == "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 1000 instead."
    assert error["code"] == "integer_above_max_value"
    error = openai_error(http.post("/mlflow/v1/chat/completions", json={"messages": CHAT["messages"]}), "model")
    assert error["message"] == "Missing required parameter: 'model'." and error["code"] == "missing_required_parameter"
    error = openai_error(http.post("/mlflow/v1/chat/completions", json={**CHAT, "stop": 5}), "stop")
    assert error["message"] == "Invalid type for 'stop': expected a string or an array, but got an integer instead."


VENDOR_FEATURES = [
    ("openai.ChatCompletionRequest", {**CHAT, "tools": [{"type": "custom", "custom": {"name": "g"}}],
                                      "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
                                      "prediction": {"type": "content", "content": "x"}, "verbosity": "low"}),
    ("responses.ResponsesRequest", {"model": "m", "input": [
        {"type": "computer_call_output", "call_id": "c", "output": {"type": "computer_screenshot", "image_url": "data:,"}},
        {"type": "mcp_approval_response", "approval_request_id": "a", "approve": True},
        {"type": "reasoning", "summary": [], "encrypted_content": "x", "content": [{"type": "reasoning_text", "text": "t"}]},
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}],
        "tools": [{"type": "mcp", "server_label": "s", "require_approval": {"never": {"tool_names": ["x"]}}},
                  {"type": "web_search"}], "conversation": {"id": "conv_1"}}),
    ("anthropic.MessagesRequest", {**MESSAGES, "messages": [{"role": "user", "content": [
        {"type": "search_result", "source": "https://example.com", "title": "t", "content": [{"type": "text", "text": "x"}]},
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "x"}]}}]}],
        "thinking": {"type": "adaptive"}, "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}),
    ("gemini.GenerateContentRequest", {"contents": [{"role": "user", "parts": [{"text": "hi"}, {"executable_code": {"code": "1"}}]}],
                                       "system_instruction": {"parts": [{"text": "x"}]},
                                       "generation_config": {"max_output_tokens": 5, "response_modalities": ["TEXT"]},
                                       "tools": [{"google_search": {}}, {"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}]}),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "body"), VENDOR_FEATURES, ids=[v[0] for v in VENDOR_FEATURES])
def test_vendor_features_pass_the_schemas(schema, body):
    """Fields and item types the gateway does not read are the vendor's: never refused here."""
    from aigw.wire import schemas

    module, name = schema.split(".")
    __import__(f"aigw.wire.schemas.{module}")
    schemas.conform(body, getattr(getattr(schemas, module), name))
