"""Fake Google Gemini (Generative Language API) under /v1beta/models/... and /v1/models/...

Google accepts proto field names in both lowerCamelCase and snake_case; so does the fake.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from . import wire
from .scenario import Answer, Turn, answer, embedding_vector, parse_scenario, stream_pieces

_STATUS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument. (fake error-400)"),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."),
    403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."),
    404: ("NOT_FOUND", "models/error-404 is not found for API version v1beta, or is not supported for generateContent."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details. (fake error-429)"),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
    501: ("UNIMPLEMENTED", "Method not implemented."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
    529: ("UNAVAILABLE", "The model is overloaded. Please try again later. (fake error-529)"),
}

MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "gemini-embedding-001", "text-embedding-004"]

_JSON = "application/json; charset=UTF-8"


def _headers() -> dict[str, str]:
    return {"Vary": "Origin, X-Origin, Referer", "Server": "scaffolding on HTTPServer2", "X-Content-Type-Options": "nosniff"}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    name, default = _STATUS.get(status, ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT", f"Fake error {status}."))
    err: dict[str, Any] = {"code": status, "message": message or default, "status": name}
    if status == 429:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
    return {"error": err}


def error_response(status: int, message: str | None = None) -> web.Response:
    headers = _headers()
    if status == 429:
        headers["Retry-After"] = "7"
    return wire.json_response(error_body(status, message), status=status, headers=headers, indent=2, content_type=_JSON)


def g(obj: Any, camel: str, default: Any = None) -> Any:
    """Field ``camel`` of a JSON object, also accepting its snake_case spelling."""
    if not isinstance(obj, dict):
        return default
    if camel in obj:
        return obj[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return obj.get(snake, default)


# ------------------------------------------------------------------- parsing


def _parts(content: Any) -> list[dict[str, Any]]:
    return [p for p in g(content, "parts") or [] if isinstance(p, dict)]


def _response_text(part: dict[str, Any]) -> str:
    resp = g(g(part, "functionResponse"), "response")
    if isinstance(resp, dict):
        for key in ("result", "output", "content", "text"):
            if key in resp:
                value = resp[key]
                return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if isinstance(resp, str):
        return resp
    return json.dumps(resp, ensure_ascii=False)


def _is_image(part: dict[str, Any]) -> bool:
    blob = g(part, "inlineData") or g(part, "fileData")
    return isinstance(blob, dict) and str(g(blob, "mimeType", "")).startswith("image/")


def parse_turn(body: dict[str, Any]) -> Turn:
    turn = Turn()
    system = g(body, "systemInstruction")
    if system:
        turn.system = system if isinstance(system, str) else " ".join(str(p.get("text", "")) for p in _parts(system) if "text" in p)
        turn.texts.append(turn.system)
    contents = [c for c in g(body, "contents") or [] if isinstance(c, dict)]
    for content in contents:
        for part in _parts(content):
            if "text" in part:
                turn.texts.append(str(part["text"]))
            elif g(part, "functionCall"):
                turn.texts.append(json.dumps(g(g(part, "functionCall"), "args") or {}, ensure_ascii=False))
            elif g(part, "functionResponse"):
                turn.texts.append(_response_text(part))
    trailing: list[str] = []  # user texts after the last model turn, for tool directives
    for content in reversed(contents):
        if content.get("role", "user") != "user":
            break
        trailing[:0] = [str(p["text"]) for p in _parts(content) if "text" in p and not p.get("thought")]
    turn.directive_text = " ".join(trailing)
    for content in reversed(contents):
        parts = _parts(content)
        if content.get("role", "user") == "user" and not any(g(p, "functionResponse") for p in parts):
            turn.user_text = " ".join(str(p["text"]) for p in parts if "text" in p and not p.get("thought"))
            turn.images = sum(1 for p in parts if _is_image(p))
            break
    if contents:
        last = contents[-1]
        responses = [p for p in _parts(last) if g(p, "functionResponse")]
        if responses:
            turn.last_kind = "tool"
            turn.tool_results = [_response_text(p) for p in responses]
        elif last.get("role") == "model":
            turn.last_kind = "assistant"
    for tool in g(body, "tools") or []:
        for decl in g(tool, "functionDeclarations") or []:
            if isinstance(decl, dict) and decl.get("name"):
                turn.tools.append(str(decl["name"]))
    fcc = g(g(body, "toolConfig"), "functionCallingConfig") or {}
    mode = str(g(fcc, "mode", "AUTO")).upper()
    allowed = g(fcc, "allowedFunctionNames") or []
    if mode == "NONE":
        turn.tool_choice = "none"
    elif mode == "ANY":
        turn.tool_choice = f"name:{allowed[0]}" if len(allowed) == 1 else "required"
    config = g(body, "generationConfig") or {}
    turn.json_mode = (
        g(config, "responseMimeType") == "application/json"
        or g(config, "responseSchema") is not None
        or g(config, "responseJsonSchema") is not None
    )
    limit = g(config, "maxOutputTokens")
    turn.max_tokens = limit if isinstance(limit, int) else None
    return turn


# ----------------------------------------------------------------- rendering


def _usage(ans: Answer, final: bool = True) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": ans.input_tokens}
    if final:
        usage["candidatesTokenCount"] = ans.output_tokens
    usage["totalTokenCount"] = ans.total_tokens if final else ans.input_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": ans.input_tokens}]
    return usage


def _call_parts(ans: Answer) -> list[dict[str, Any]]:
    return [{"functionCall": {"id": wire.rand_id("", 8, "abcdefghijklmnopqrstuvwxyz0123456789"), "name": c.name, "args": c.args}}
            for c in ans.calls]


def response_obj(model: str, parts: list[dict[str, Any]], usage: dict[str, Any], response_id: str,
                 finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": response_id}


def _finish(ans: Answer) -> str:
    return "MAX_TOKENS" if ans.truncated and not ans.calls else "STOP"


def generate(model: str, ans: Answer, candidates: int = 1) -> dict[str, Any]:
    parts = _call_parts(ans) if ans.calls else [{"text": ans.text or ""}]
    out = response_obj(model, parts, _usage(ans), wire.rand_id("", 22), _finish(ans))
    first = out["candidates"][0]
    out["candidates"] = [{**first, "index": i} for i in range(candidates)]  # generationConfig.candidateCount
    return out


def stream_objects(model: str, ans: Answer) -> list[dict[str, Any]]:
    rid = wire.rand_id("", 22)
    if ans.calls:
        return [response_obj(model, _call_parts(ans), _usage(ans), rid, _finish(ans))]
    pieces = stream_pieces(ans.text or "", model)
    out = [response_obj(model, [{"text": p}], _usage(ans, final=False), rid) for p in pieces[:-1]]
    out.append(response_obj(model, [{"text": pieces[-1]}], _usage(ans), rid, _finish(ans)))
    return out


async def _stream(request: web.Request, scenario, model: str, ans: Answer, sse: bool) -> web.StreamResponse:
    objects = stream_objects(model, ans)
    if scenario.kind == "stream-error":
        objects = objects[:2] + [error_body(503)]
    if sse:
        resp = await wire.open_stream(request, _headers(), content_type="text/event-stream")
        pacer = wire.Pacer(request, resp, scenario)
        for obj in objects:
            await pacer.write(f"data: {wire.dumps(obj, separators=(',', ': '))}\r\n\r\n")
        return await pacer.finish()
    resp = await wire.open_stream(request, _headers(), content_type=_JSON)
    pacer = wire.Pacer(request, resp, scenario)
    for i, obj in enumerate(objects):
        await pacer.write(("[" if i == 0 else "\n,\r\n") + wire.dumps(obj, indent=2))
    await pacer.write("\n]")
    return await pacer.finish()


# ------------------------------------------------------------------ handlers


def _content_text(content: Any) -> str:
    return " ".join(str(p["text"]) for p in _parts(content) if "text" in p)


def _dims(req: dict[str, Any]) -> int | None:
    dims = g(req, "outputDimensionality", g(g(req, "embedContentConfig"), "outputDimensionality"))
    return dims if isinstance(dims, int) else None


async def model_method(request: web.Request) -> web.StreamResponse:
    model, _, method = request.match_info["spec"].rpartition(":")
    if not model:
        return error_response(404, f"Method not found: POST {request.path}")
    body = await wire.read_json(request)
    if not isinstance(body, dict):
        return error_response(400, "Invalid JSON payload received.")
    stream = method == "streamGenerateContent"
    scenario = parse_scenario(model)
    if method not in ("generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents"):
        return error_response(404, f"Method {method} not found.")
    if method in ("generateContent", "streamGenerateContent") and not g(body, "contents"):
        return error_response(400, "* GenerateContentRequest.contents: contents is not specified\n")
    early = await wire.prelude(request, scenario, stream, error_response)
    if early is not None:
        return early
    headers = _headers()
    if method == "countTokens":
        inner = g(body, "generateContentRequest") or body
        tokens = parse_turn(inner).input_tokens
        out = {"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}
        return wire.json_response(out, headers=headers, indent=2, content_type=_JSON)
    if method == "embedContent":
        vec = embedding_vector(_content_text(g(body, "content")), _dims(body))
        return wire.json_response({"embedding": {"values": vec}}, headers=headers, indent=2, content_type=_JSON)
    if method == "batchEmbedContents":
        reqs = [r for r in g(body, "requests") or [] if isinstance(r, dict)]
        embs = [{"values": embedding_vector(_content_text(g(r, "content")), _dims(r))} for r in reqs]
        return wire.json_response({"embeddings": embs}, headers=headers, indent=2, content_type=_JSON)
    ans = answer(parse_turn(body))
    if stream:
        return await _stream(request, scenario, model, ans, sse=request.query.get("alt") == "sse")
    count = g(g(body, "generationConfig"), "candidateCount")
    body_out = generate(model, ans, count if isinstance(count, int) and count > 0 else 1)
    return wire.json_response(body_out, headers=headers, indent=2, content_type=_JSON)


def _model_obj(name: str) -> dict[str, Any]:
    methods = ["embedContent", "batchEmbedContents"] if "embed" in name else ["generateContent", "countTokens"]
    return {"name": f"models/{name}", "version": "001", "displayName": name, "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536, "supportedGenerationMethods": methods}


async def list_models(request: web.Request) -> web.StreamResponse:
    return wire.json_response({"models": [_model_obj(m) for m in MODELS]}, headers=_headers(), indent=2, content_type=_JSON)


async def get_model(request: web.Request) -> web.StreamResponse:
    name = request.match_info["spec"]
    early = await wire.prelude(request, parse_scenario(name), False, error_response)
    return early or wire.json_response(_model_obj(name), headers=_headers(), indent=2, content_type=_JSON)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1beta/models/{spec}", model_method)
    app.router.add_post("/v1/models/{spec}", model_method)
    app.router.add_get("/v1beta/models", list_models)
    app.router.add_get("/v1beta/models/{spec}", get_model)
    # GET /v1/models{,/id} is shared with OpenAI and Anthropic; see server.py
