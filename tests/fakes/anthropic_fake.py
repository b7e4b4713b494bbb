"""Fake Anthropic Messages API: /v1/messages (JSON and SSE) and /v1/messages/count_tokens."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from . import wire
from .scenario import Answer, Turn, answer, parse_scenario, split_in_pieces, stream_pieces

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request (fake error-400)."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: error-404"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit (fake error-429)."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable (fake error-503)."),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}

MODELS = ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"]

_SERVER_TOOL_PREFIXES = ("web_search", "web_fetch", "code_execution", "mcp_toolset")


def _headers(request_id: str) -> dict[str, str]:
    return {
        "request-id": request_id,
        "anthropic-organization-id": "00000000-0000-4000-8000-00000000fa4e",
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3999",
    }


def error_body(status: int, message: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    etype, default = _ERRORS.get(status, ("api_error" if status >= 500 else "invalid_request_error", f"Fake error {status}."))
    body: dict[str, Any] = {"type": "error", "error": {"type": etype, "message": message or default}}
    if request_id:
        body["request_id"] = request_id
    return body


def error_response(status: int, message: str | None = None) -> web.Response:
    rid = wire.anthropic_request_id()
    headers = _headers(rid)
    if status == 429:
        headers["retry-after"] = "7"
    if status == 529:
        headers["x-should-retry"] = "true"
    return wire.json_response(error_body(status, message, rid), status=status, headers=headers)


# ------------------------------------------------------------------- parsing


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)] if isinstance(content, list) else []


def _joined_text(content: Any) -> str:
    return " ".join(str(b.get("text", "")) for b in _blocks(content) if b.get("type") == "text")


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if content is None:
        return ""
    if isinstance(content, (str, list)):
        return _joined_text(content)
    return json.dumps(content, ensure_ascii=False)


def parse_turn(body: dict[str, Any]) -> Turn:
    turn = Turn()
    system = body.get("system")
    if system:
        turn.system = system if isinstance(system, str) else _joined_text(system)
        turn.texts.append(turn.system)
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    for msg in messages:
        for block in _blocks(msg.get("content")):
            kind = block.get("type")
            if kind == "text":
                turn.texts.append(str(block.get("text", "")))
            elif kind == "tool_result":
                turn.texts.append(_tool_result_text(block))
            elif kind == "tool_use":
                turn.texts.append(json.dumps(block.get("input", {}), ensure_ascii=False))
    for msg in reversed(messages):
        if msg.get("role") == "user":
            blocks = _blocks(msg.get("content"))
            turn.user_text = " ".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
            turn.images = sum(1 for b in blocks if b.get("type") == "image")
            break
    if messages:
        last = messages[-1]
        results = [b for b in _blocks(last.get("content")) if b.get("type") == "tool_result"]
        if last.get("role") == "user" and results:
            turn.last_kind = "tool"
            turn.tool_results = [_tool_result_text(b) for b in results]
        elif last.get("role") == "assistant":
            turn.last_kind = "assistant"
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name") and not str(tool.get("type", "")).startswith(_SERVER_TOOL_PREFIXES):
            turn.tools.append(str(tool["name"]))
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "none":
            turn.tool_choice = "none"
        elif kind == "any":
            turn.tool_choice = "required"
        elif kind == "tool" and choice.get("name"):
            turn.tool_choice = f"name:{choice['name']}"
    fmt = body.get("output_format") or (body.get("output_config") or {}).get("format")
    turn.json_mode = isinstance(fmt, dict) and fmt.get("type") == "json_schema"
    turn.max_tokens = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else None
    return turn


def _missing(body: Any, fields: tuple[str, ...]) -> web.Response | None:
    if not isinstance(body, dict):
        return error_response(400, "There was an issue with the request body: invalid JSON.")
    for name in fields:
        if name not in body:
            return error_response(400, f"{name}: Field required")
    return None


# ----------------------------------------------------------------- rendering


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _stop_reason(ans: Answer) -> str:
    if ans.calls:
        return "tool_use"
    return "max_tokens" if ans.truncated else "end_turn"


def _content(ans: Answer) -> list[dict[str, Any]]:
    if ans.calls:
        return [{"type": "tool_use", "id": wire.anthropic_tool_id(), "name": c.name, "input": c.args} for c in ans.calls]
    return [{"type": "text", "text": ans.text or ""}]


def message(model: str, ans: Answer) -> dict[str, Any]:
    return {
        "id": wire.anthropic_msg_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(ans),
        "stop_reason": _stop_reason(ans),
        "stop_sequence": None,
        "usage": _usage(ans.input_tokens, ans.output_tokens),
    }


def _event(name: str, data: dict[str, Any]) -> str:
    text = '{"type": "ping"}' if name == "ping" else wire.dumps(data)
    return f"event: {name}\ndata: {text}\n\n"


def stream_events(model: str, ans: Answer) -> list[tuple[str, dict[str, Any]]]:
    """Every (event, data) pair of a streamed message, in the order Anthropic sends them."""
    start = dict(message(model, ans), content=[], stop_reason=None, usage=_usage(ans.input_tokens, 1))
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(_content(ans)):
        if block["type"] == "text":
            head = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in stream_pieces(block["text"], model)]
        else:
            head = dict(block, input={})
            args = wire.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in [""] + split_in_pieces(args, 3)]
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": head}))
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": _stop_reason(ans), "stop_sequence": None},
                                     "usage": {"output_tokens": ans.output_tokens}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


async def _stream(request: web.Request, scenario, model: str, ans: Answer) -> web.StreamResponse:
    resp = await wire.open_stream(request, _headers(wire.anthropic_request_id()))
    pacer = wire.Pacer(request, resp, scenario)
    events = stream_events(model, ans)
    if scenario.kind == "stream-error":
        events = events[:4]  # message_start, content_block_start, ping, first delta
    for name, data in events:
        await pacer.write(_event(name, data))
    if scenario.kind == "stream-error":
        await pacer.write(_event("error", error_body(529, "Overloaded")))
    return await pacer.finish()


# ------------------------------------------------------------------ handlers


async def messages(request: web.Request) -> web.StreamResponse:
    body = await wire.read_json(request)
    if (bad := _missing(body, ("model", "messages", "max_tokens"))) is not None:
        return bad
    model = str(body["model"])
    stream = bool(body.get("stream"))
    scenario = parse_scenario(model)
    early = await wire.prelude(request, scenario, stream, error_response)
    if early is not None:
        return early
    ans = answer(parse_turn(body))
    if stream:
        return await _stream(request, scenario, model, ans)
    return wire.json_response(message(model, ans), headers=_headers(wire.anthropic_request_id()))


async def count_tokens(request: web.Request) -> web.StreamResponse:
    body = await wire.read_json(request)
    if (bad := _missing(body, ("model", "messages"))) is not None:
        return bad
    early = await wire.prelude(request, parse_scenario(body["model"]), False, error_response)
    if early is not None:
        return early
    turn = parse_turn(body)
    return wire.json_response({"input_tokens": turn.input_tokens}, headers=_headers(wire.anthropic_request_id()))


async def list_models(request: web.Request) -> web.StreamResponse:
    data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in MODELS]
    out = {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
    return wire.json_response(out, headers=_headers(wire.anthropic_request_id()))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
