"""Fake OpenAI (and Azure OpenAI) Chat Completions, Responses, Embeddings and Models.

Responses (`POST /v1/responses`, and Azure's `POST /openai/responses?api-version=...`) follows the
scenario rules of scenario.py through a Turn built from the body (instructions = system prompt, a
trailing function_call_output = tool results, function and custom tools = tools, text.format = JSON
mode, max_output_tokens = the limit). One addition: a `reasoning` object with a `summary` or an
`effort` other than "none" makes the answer start with a reasoning item, summarised as "thinking
about: <user text>" when a summary was asked for, with `encrypted_content` when `include` has
"reasoning.encrypted_content"; its words count as reasoning tokens, part of the output tokens. A
custom tool is called with the user text as its input (or, for a tool directive, with the
directive's "input" argument).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from . import wire
from .scenario import Answer, Turn, answer, count_input_tokens, embedding_base64, embedding_vector, parse_scenario, split_in_pieces, split_words, stream_pieces

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    # status: (type, code, message)
    400: ("invalid_request_error", None, "Invalid request (fake error-400)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake***. You can find your API key at https://platform.openai.com/account/api-keys."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model `error-404` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (fake error-429). Please try again in 7s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
    529: ("server_error", None, "The server is overloaded (fake error-529)."),
}

MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1", "o3-mini", "text-embedding-3-small", "text-embedding-3-large"]

_FINGERPRINT = "fp_f4ke0000aa"


def _headers(**extra: str) -> dict[str, str]:
    h = {
        "x-request-id": wire.rand_id("req_", 32, "0123456789abcdef"),
        "openai-version": "2020-10-01",
        "openai-processing-ms": "12",
        "openai-organization": "fake-org",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-tokens": "29999990",
    }
    h.update(extra)
    return h


def error_body(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    etype, code, default = _ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Fake error {status}."))
    return {"error": {"message": message or default, "type": etype, "param": param, "code": code}}


def error_response(status: int, message: str | None = None, param: str | None = None) -> web.Response:
    headers = _headers()
    if status == 429:
        headers["Retry-After"] = "7"
        headers["x-ratelimit-remaining-requests"] = "0"
    return wire.json_response(error_body(status, message, param), status=status, headers=headers, indent=2)


# ------------------------------------------------------------------- parsing


def _text_of(content: Any) -> tuple[str, int]:
    """(text parts joined by ' ', number of image parts) of a message content."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    texts, images = [], 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                kind = part.get("type")
                if kind in ("text", "input_text", "output_text", "refusal"):
                    texts.append(str(part.get("text") or part.get("refusal") or ""))
                elif kind in ("image_url", "input_image", "image"):
                    images += 1
    return " ".join(texts), images


def parse_turn(body: dict[str, Any]) -> Turn:
    turn = Turn()
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    for msg in messages:
        role = msg.get("role")
        text, _ = _text_of(msg.get("content"))
        turn.texts.append(text)
        for call in msg.get("tool_calls") or []:
            turn.texts.append(str((call.get("function") or {}).get("arguments") or ""))
        if role in ("system", "developer") and turn.system is None:
            turn.system = text
    for msg in reversed(messages):
        if msg.get("role") == "user":
            turn.user_text, turn.images = _text_of(msg.get("content"))
            break
    if messages:
        last = messages[-1].get("role")
        if last in ("tool", "function"):
            turn.last_kind = "tool"
            trailing = []
            for msg in reversed(messages):
                if msg.get("role") not in ("tool", "function"):
                    break
                trailing.append(_text_of(msg.get("content"))[0])
            turn.tool_results = list(reversed(trailing))
        elif last == "assistant":
            turn.last_kind = "assistant"
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type", "function") == "function"]
    turn.tools = [str((t.get("function") or {}).get("name")) for t in tools]
    turn.tools += [str(f.get("name")) for f in body.get("functions") or [] if isinstance(f, dict)]
    choice = body.get("tool_choice", body.get("function_call"))
    if choice in ("none", "auto", "required"):
        turn.tool_choice = choice
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name:
            turn.tool_choice = f"name:{name}"
    rf = body.get("response_format")
    turn.json_mode = isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    turn.max_tokens = limit if isinstance(limit, int) else None
    return turn


# ----------------------------------------------------------------- rendering


def _usage(ans: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": ans.input_tokens,
        "completion_tokens": ans.output_tokens,
        "total_tokens": ans.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish_reason(ans: Answer) -> str:
    if ans.calls:
        return "tool_calls"
    return "length" if ans.truncated else "stop"


def _message(ans: Answer) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": ans.text, "refusal": None, "annotations": []}
    if ans.calls:
        msg["tool_calls"] = [
            {"id": wire.openai_call_id(), "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in ans.calls
        ]
    return msg


def completion(model: str, ans: Answer, n: int, azure: bool) -> dict[str, Any]:
    choices = []
    for i in range(n):
        choice: dict[str, Any] = {"index": i, "message": _message(ans), "logprobs": None, "finish_reason": _finish_reason(ans)}
        if azure:
            choice["content_filter_results"] = {}
        choices.append(choice)
    out: dict[str, Any] = {
        "id": wire.openai_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(ans),
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    if azure:
        out["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": {}}]
    return out


def stream_deltas(ans: Answer, model: str = "") -> list[dict[str, Any]]:
    """The per-choice deltas of a streamed answer, in order (without the finish chunk)."""
    if not ans.calls:
        pieces = stream_pieces(ans.text or "", model)
        return [{"role": "assistant", "content": "", "refusal": None}] + [{"content": p} for p in pieces]
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(ans.calls):
        head = {"index": index, "id": wire.openai_call_id(), "type": "function", "function": {"name": call.name, "arguments": ""}}
        if index == 0:
            deltas.append({"role": "assistant", "content": None, "tool_calls": [head], "refusal": None})
        else:
            deltas.append({"tool_calls": [head]})
        for piece in split_in_pieces(call.arguments, 3):
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return deltas


class _Chunks:
    def __init__(self, model: str, include_usage: bool) -> None:
        self.base = {"id": wire.openai_id(), "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                     "service_tier": "default", "system_fingerprint": _FINGERPRINT}
        self.include_usage = include_usage

    def sse(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> str:
        chunk = dict(self.base, choices=choices)
        if self.include_usage:
            chunk["usage"] = usage
        return f"data: {wire.dumps(chunk)}\n\n"


async def _stream(request: web.Request, scenario, model: str, ans: Answer, n: int, include_usage: bool) -> web.StreamResponse:
    resp = await wire.open_stream(request, _headers())
    pacer = wire.Pacer(request, resp, scenario)
    chunks = _Chunks(model, include_usage)
    deltas = stream_deltas(ans, model)
    if scenario.kind == "stream-error":
        deltas = deltas[:2]
    for delta in deltas:
        await pacer.write(chunks.sse([{"index": i, "delta": delta, "logprobs": None, "finish_reason": None} for i in range(n)]))
    if scenario.kind == "stream-error":
        err = error_body(500, "The server had an error while processing your request (fake stream-error).")
        await pacer.write(f"data: {wire.dumps(err)}\n\n")
        return await pacer.finish()
    finish = _finish_reason(ans)
    await pacer.write(chunks.sse([{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish} for i in range(n)]))
    if include_usage:
        await pacer.write(chunks.sse([], _usage(ans)))
    await pacer.write("data: [DONE]\n\n")
    return await pacer.finish()


# ------------------------------------------------------------------ Responses


def parse_responses_turn(body: dict[str, Any]) -> tuple[Turn, frozenset[str]]:
    """A Responses body -> (Turn, names of its custom tools)."""
    turn = Turn()
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        turn.system = instructions
        turn.texts.append(instructions)
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else [i for i in raw or [] if isinstance(i, dict)]
    kinds: list[tuple[str, str]] = []  # (user | system | assistant | tool, tool result text)
    for item in items:
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            text, images = _text_of(item.get("content"))
            turn.texts.append(text)
            if role in ("system", "developer") and turn.system is None:
                turn.system = text
            if role == "user":
                turn.user_text, turn.images = text, images
            kinds.append(("assistant" if role == "assistant" else "user", ""))
        elif kind in ("function_call", "custom_tool_call"):
            turn.texts.append(str(item.get("arguments") or item.get("input") or ""))
            kinds.append(("assistant", ""))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            text = output if isinstance(output, str) else _text_of(output)[0]
            turn.texts.append(text)
            kinds.append(("tool", text))
    if kinds and kinds[-1][0] in ("tool", "assistant"):
        turn.last_kind = kinds[-1][0]
        trailing = []
        for kind, text in reversed(kinds):
            if kind != "tool":
                break
            trailing.append(text)
        turn.tool_results = list(reversed(trailing))
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") in ("function", "custom")]
    turn.tools = [str(t.get("name")) for t in tools]
    custom = frozenset(str(t.get("name")) for t in tools if t.get("type") == "custom")
    choice = body.get("tool_choice")
    if choice in ("none", "auto", "required"):
        turn.tool_choice = choice
    elif isinstance(choice, dict) and choice.get("name"):
        turn.tool_choice = f"name:{choice['name']}"
    text_format = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    turn.json_mode = isinstance(text_format, dict) and text_format.get("type") in ("json_object", "json_schema")
    limit = body.get("max_output_tokens")
    turn.max_tokens = limit if isinstance(limit, int) else None
    return turn, custom


def _hex_id(prefix: str) -> str:
    return wire.rand_id(prefix, 48, "0123456789abcdef")


class _ResponsesAnswer:
    """An Answer rendered as Responses output items (ids fixed once, so JSON and SSE agree)."""

    def __init__(self, body: dict[str, Any], turn: Turn, custom: frozenset[str]) -> None:
        self.body = body
        self.ans = answer(turn)
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        self.reasons = bool(reasoning.get("summary")) or reasoning.get("effort") not in (None, "none")
        self.summary = f"thinking about: {turn.user_text}" if reasoning.get("summary") else None
        self.reasoning_tokens = len(f"thinking about: {turn.user_text}".split()) if self.reasons else 0
        include = body.get("include") if isinstance(body.get("include"), list) else []
        self.encrypted = "reasoning.encrypted_content" in include
        self.ids = {"resp": _hex_id("resp_"), "rs": _hex_id("rs_"), "msg": _hex_id("msg_")}
        self.calls = [(c, wire.openai_call_id(), c.name in custom) for c in self.ans.calls]

    @property
    def status(self) -> str:
        return "incomplete" if self.ans.truncated else "completed"

    def reasoning_item(self, done: bool) -> dict[str, Any]:
        summary = [{"type": "summary_text", "text": self.summary}] if done and self.summary else []
        item: dict[str, Any] = {"id": self.ids["rs"], "type": "reasoning", "summary": summary}
        if done and self.encrypted:
            item["encrypted_content"] = "gAAAAfake" + embedding_base64(embedding_vector(self.summary or "", 4))
        return item

    def message_item(self, done: bool) -> dict[str, Any]:
        content = [{"type": "output_text", "annotations": [], "logprobs": [], "text": self.ans.text}] if done else []
        status = self.status if done else "in_progress"
        return {"id": self.ids["msg"], "type": "message", "status": status, "content": content, "role": "assistant"}

    @staticmethod
    def call_item(call: Any, call_id: str, custom: bool, done: bool) -> dict[str, Any]:
        status = "completed" if done else "in_progress"
        suffix = call_id.removeprefix("call_")
        if custom:
            text = str(call.args.get("input", call.args.get("query", ""))) if done else ""
            return {"id": "ctc_" + suffix, "type": "custom_tool_call", "status": status, "call_id": call_id,
                    "name": call.name, "input": text}
        arguments = call.arguments if done else ""
        return {"id": "fc_" + suffix, "type": "function_call", "status": status, "arguments": arguments,
                "call_id": call_id, "name": call.name}

    def output(self) -> list[dict[str, Any]]:
        items = [self.reasoning_item(True)] if self.reasons else []
        if self.ans.text is not None:
            items.append(self.message_item(True))
        return items + [self.call_item(c, cid, custom, True) for c, cid, custom in self.calls]

    def usage(self) -> dict[str, Any]:
        output = self.ans.output_tokens + self.reasoning_tokens
        return {
            "input_tokens": self.ans.input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.ans.input_tokens + output,
        }

    def response(self, model: str, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        body, done = self.body, status in ("completed", "incomplete")
        created = int(time.time())
        return {
            "id": self.ids["resp"], "object": "response", "created_at": created, "status": status,
            "background": False, "completed_at": created if done else None, "error": error,
            "frequency_penalty": 0.0,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"), "model": model,
            "output": self.output() if done else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True), "presence_penalty": 0.0,
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"), "prompt_cache_retention": None,
            "reasoning": {"effort": None, "summary": None, **(body.get("reasoning") or {})},
            "safety_identifier": body.get("safety_identifier"), "service_tier": "default",
            "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium", **(body.get("text") or {})},
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "top_logprobs": 0, "top_p": body.get("top_p", 1.0), "truncation": "disabled",
            "usage": self.usage() if done else None, "user": body.get("user"), "metadata": body.get("metadata") or {},
        }

    def events(self, model: str) -> list[tuple[str, dict[str, Any]]]:
        """The SSE events of the answer after response.created and .in_progress, in OpenAI's order."""
        out: list[tuple[str, dict[str, Any]]] = []
        index = 0
        if self.reasons:
            out += self._reasoning_events(index)
            index += 1
        if self.ans.text is not None:
            out += self._message_events(index)
            index += 1
        for call, call_id, custom in self.calls:
            out += self._call_events(index, call, call_id, custom)
            index += 1
        out.append((f"response.{self.status}", {"response": self.response(model, self.status)}))
        return out

    def _reasoning_events(self, index: int) -> list[tuple[str, dict[str, Any]]]:
        out = [("response.output_item.added", {"output_index": index, "item": self.reasoning_item(False)})]
        if self.summary:
            where = {"item_id": self.ids["rs"], "output_index": index, "summary_index": 0}
            out.append(("response.reasoning_summary_part.added", {**where, "part": {"type": "summary_text", "text": ""}}))
            out += [("response.reasoning_summary_text.delta", {**where, "delta": p}) for p in split_words(self.summary)]
            out.append(("response.reasoning_summary_text.done", {**where, "text": self.summary}))
            out.append(("response.reasoning_summary_part.done", {**where, "part": {"type": "summary_text", "text": self.summary}}))
        out.append(("response.output_item.done", {"output_index": index, "item": self.reasoning_item(True)}))
        return out

    def _message_events(self, index: int) -> list[tuple[str, dict[str, Any]]]:
        text = self.ans.text or ""
        where = {"item_id": self.ids["msg"], "output_index": index, "content_index": 0}
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        out = [("response.output_item.added", {"output_index": index, "item": self.message_item(False)}),
               ("response.content_part.added", {**where, "part": part})]
        pieces = stream_pieces(text, self.body.get("model"))
        out += [("response.output_text.delta", {**where, "delta": p, "logprobs": []}) for p in pieces]
        out.append(("response.output_text.done", {**where, "text": text, "logprobs": []}))
        out.append(("response.content_part.done", {**where, "part": {**part, "text": text}}))
        out.append(("response.output_item.done", {"output_index": index, "item": self.message_item(True)}))
        return out

    def _call_events(self, index: int, call: Any, call_id: str, custom: bool) -> list[tuple[str, dict[str, Any]]]:
        done = self.call_item(call, call_id, custom, True)
        where = {"item_id": done["id"], "output_index": index}
        out = [("response.output_item.added", {"output_index": index, "item": self.call_item(call, call_id, custom, False)})]
        kind, key = ("custom_tool_call_input", "input") if custom else ("function_call_arguments", "arguments")
        out += [(f"response.{kind}.delta", {**where, "delta": p}) for p in split_in_pieces(done[key], 3)]
        out.append((f"response.{kind}.done", {**where, key: done[key]}))
        out.append(("response.output_item.done", {"output_index": index, "item": done}))
        return out


def _responses_sse(kind: str, sequence: int, fields: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {wire.dumps({'type': kind, 'sequence_number': sequence, **fields})}\n\n"


async def _responses_stream(request: web.Request, scenario, model: str, rendered: _ResponsesAnswer) -> web.StreamResponse:
    resp = await wire.open_stream(request, _headers())
    pacer = wire.Pacer(request, resp, scenario)
    start = rendered.response(model, "in_progress")
    events = [("response.created", {"response": start}), ("response.in_progress", {"response": start})]
    events += rendered.events(model)
    if scenario.kind == "stream-error":
        message = "The server had an error while processing your request (fake stream-error)."
        failed = rendered.response(model, "failed", {"code": "server_error", "message": message})
        events = events[:3] + [("error", {"code": "server_error", "message": message, "param": None}),
                               ("response.failed", {"response": failed})]
    for sequence, (kind, fields) in enumerate(events):
        await pacer.write(_responses_sse(kind, sequence, fields))
    return await pacer.finish()


async def responses(request: web.Request) -> web.StreamResponse:
    body = await wire.read_json(request)
    if not isinstance(body, dict):
        return error_response(400, "We could not parse the JSON body of your request.")
    model = body.get("model")
    if not model:
        return error_response(400, "Missing required parameter: 'model'.", "model")
    if not isinstance(body.get("input"), (str, list)):
        return error_response(400, "Missing required parameter: 'input'.", "input")
    stream = bool(body.get("stream"))
    scenario = parse_scenario(model)
    early = await wire.prelude(request, scenario, stream, error_response)
    if early is not None:
        return early
    if body.get("store") is False:
        # OpenAI looks up an item by its id unless the item carries all of itself; with store false
        # nothing was kept: a reasoning item with an id and no encrypted_content is a 404.
        for item in body["input"] if isinstance(body["input"], list) else []:
            if isinstance(item, dict) and item.get("type") == "reasoning" and item.get("id") and not item.get("encrypted_content"):
                message = f"Item with id '{item['id']}' not found. Items are not persisted when `store` is set to false. Try again with `store` set to true, or remove this item from your input."
                return error_response(404, message, "input")
    rendered = _ResponsesAnswer(body, *parse_responses_turn(body))
    if stream:
        return await _responses_stream(request, scenario, model, rendered)
    return wire.json_response(rendered.response(model, rendered.status), headers=_headers(), indent=2)


# ------------------------------------------------------------------ handlers


async def _chat(request: web.Request, model: str | None, azure: bool) -> web.StreamResponse:
    body = await wire.read_json(request)
    if not isinstance(body, dict):
        return error_response(400, "We could not parse the JSON body of your request.")
    model = model or body.get("model")
    if not model:
        return error_response(400, "you must provide a model parameter")
    if not isinstance(body.get("messages"), list):
        return error_response(400, "Missing required parameter: 'messages'.", "messages")
    stream = bool(body.get("stream"))
    scenario = parse_scenario(model)
    early = await wire.prelude(request, scenario, stream, error_response)
    if early is not None:
        return early
    ans = answer(parse_turn(body))
    n = body.get("n") if isinstance(body.get("n"), int) and body.get("n") > 0 else 1
    if stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await _stream(request, scenario, model, ans, n, include_usage)
    return wire.json_response(completion(model, ans, n, azure), headers=_headers(), indent=2)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _chat(request, None, azure=False)


async def azure_chat_completions(request: web.Request) -> web.StreamResponse:
    return await _chat(request, request.match_info["deployment"], azure=True)


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """(text, token count) for each input of an embeddings request."""
    if isinstance(value, str):
        return [(value, count_input_tokens([value]))]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [(" ".join(map(str, value)), len(value))]
    out = []
    for item in value if isinstance(value, list) else []:
        out.extend(_embedding_inputs(item))
    return out


async def _embeddings(request: web.Request, model: str | None) -> web.StreamResponse:
    body = await wire.read_json(request)
    if not isinstance(body, dict):
        return error_response(400, "We could not parse the JSON body of your request.")
    model = model or body.get("model")
    if not model:
        return error_response(400, "you must provide a model parameter")
    inputs = _embedding_inputs(body.get("input"))
    if not inputs:
        return error_response(400, "'input' is a required property", "input")
    early = await wire.prelude(request, parse_scenario(model), False, error_response)
    if early is not None:
        return early
    dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) else None
    b64 = body.get("encoding_format") == "base64"
    data = []
    for index, (text, _) in enumerate(inputs):
        vec = embedding_vector(text, dims)
        data.append({"object": "embedding", "index": index, "embedding": embedding_base64(vec) if b64 else vec})
    tokens = sum(t for _, t in inputs)
    out = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return wire.json_response(out, headers=_headers(), indent=2)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _embeddings(request, None)


async def azure_embeddings(request: web.Request) -> web.StreamResponse:
    return await _embeddings(request, request.match_info["deployment"])


def _model_obj(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "system"}


async def list_models(request: web.Request) -> web.StreamResponse:
    return wire.json_response({"object": "list", "data": [_model_obj(m) for m in MODELS]}, headers=_headers(), indent=2)


async def get_model(request: web.Request) -> web.StreamResponse:
    name = request.match_info["model"]
    early = await wire.prelude(request, parse_scenario(name), False, error_response)
    return early or wire.json_response(_model_obj(name), headers=_headers(), indent=2)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/responses", responses)
    # Azure's Responses API on a classic resource URL: not under a deployment (the body's model names
    # it); the api-version query is recorded with the request, as on the deployment routes.
    app.router.add_post("/openai/responses", responses)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", azure_chat_completions)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", azure_embeddings)
    # GET /v1/models{,/id} is shared with Anthropic and Gemini; see server.py
