"""Gemini (Generative Language API, AI Studio) wire format <-> canonical model.

Used from both sides: the Gemini provider encodes requests and decodes responses and `alt=sse` streams;
a Gemini client-facing surface decodes requests and encodes responses, streams and errors. Same shape as
`openai_chat`, so every wire module reads alike.

Gemini specifics worth knowing:
- Requests name fields in camelCase, but Google's JSON parser also takes snake_case (its own curl
  examples use `system_instruction`, `inline_data`), so decoding accepts both (`_get`).
- Function calls may come without ids (AI Studio usually omits them); ids are synthesized here and
  function responses matched to calls by id, else by name, else by order.
- Gemini 3 rejects a replayed `functionCall` without its `thoughtSignature`. Calls that never had one
  (they came from another vendor, or through a client that dropped it) get Google's documented
  sentinel, so cross-provider conversations keep working.
- Only signatures Gemini minted go upstream (signed thoughts as thought parts, calls' on their
  calls). Another vendor's reach a Gemini client sealed (see `aigw.canonical`) inside the base64 that
  `thoughtSignature` must be (it is `bytes` to Google's SDKs), and come back from it.
- Tool parameters go out as `parametersJsonSchema`, which takes full JSON Schema (`additionalProperties`,
  `anyOf`, `$ref`), instead of `parameters`, an OpenAPI subset that 400s on most real-world schemas.
"""

from __future__ import annotations

import base64
import binascii
import functools
import mimetypes
import re
import secrets
import time
from typing import Any

import orjson

from aigw.canonical import (
    SEAL_PREFIX,
    ChatRequest,
    ChatResponse,
    Choice,
    FilePart,
    FinishReason,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
    open_signature,
    signature_for_client,
)
from aigw.errors import ErrorKind, GatewayError, invalid

WIRE = "gemini"
SKIP_SIGNATURE = "skip_thought_signature_validator"  # Google's sentinel for calls without a signature
# How every sealed thoughtSignature starts: the base64 of the seal's prefix ("aigw1.", six bytes, so
# its eight characters are the same in any sealed value and in both base64 alphabets).
SEALED_PREFIX = base64.b64encode(SEAL_PREFIX.encode()).decode()

_NUMBER = (int, float)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "contents": (list,),
    "systemInstruction": (dict,),
    "tools": (list,),
    "toolConfig": (dict,),
    "generationConfig": (dict,),
    "safetySettings": (list,),
    "cachedContent": (str,),
}
GENERATION_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": _NUMBER,
    "topP": _NUMBER,
    "topK": _NUMBER,
    "maxOutputTokens": (int,),
    "stopSequences": (list,),
    "candidateCount": (int,),
    "seed": (int,),
    "responseMimeType": (str,),
    "responseSchema": (dict,),
    "responseJsonSchema": (dict, bool),
    "thinkingConfig": (dict,),
}
_CANONICAL_GENERATION = (
    "temperature", "topP", "maxOutputTokens", "stopSequences", "candidateCount", "seed",
    "responseMimeType", "responseSchema", "responseJsonSchema",
)  # fmt: skip
_TYPE_NAMES = {str: "a string", list: "an array", dict: "an object", bool: "a boolean", int: "an integer"}
ROLES = ("user", "model", "function")
# Canonical request field -> the field a Gemini client sets it with: an error a provider raises about
# a canonical field is reported to a Gemini client under this name. (Canonical message and tool
# indexes do not count contents and tools as the client does: only the field is named.)
PARAM_NAMES = {
    "messages": "contents",
    "tools": "tools",
    "tool_choice": "toolConfig.functionCallingConfig",
    "response_format": "generationConfig.responseMimeType",
    "response_format.schema": "generationConfig.responseJsonSchema",
    "temperature": "generationConfig.temperature",
    "top_p": "generationConfig.topP",
    "max_tokens": "generationConfig.maxOutputTokens",
    "stop": "generationConfig.stopSequences",
    "n": "generationConfig.candidateCount",
    "seed": "generationConfig.seed",
    "reasoning_effort": "generationConfig.thinkingConfig",
}

FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
         "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR"),
        "content_filter",
    ),
}  # fmt: skip  # anything else (OTHER, MALFORMED_FUNCTION_CALL, ...) -> "stop"
FINISH_REASONS_OUT = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY", "error": "OTHER"}
FUNCTION_CALLING_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none"}
FUNCTION_CALLING_MODES_OUT = {"auto": "AUTO", "required": "ANY", "none": "NONE", "tool": "ANY"}
# reasoning_effort -> thinkingConfig: a level for Gemini 3+, a token budget for older models.
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}


@functools.lru_cache(maxsize=256)  # a pure function of the few field names this module uses
def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


def get_field(obj: dict[str, Any], name: str) -> Any:
    """A request field by its camelCase name, or the snake_case spelling Google also accepts."""
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


def rest_of(obj: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """The fields of `obj` not in `known` (either spelling): kept as `extra` for same-wire providers."""
    names = set(known) | {_snake(k) for k in known}
    return {k: v for k, v in obj.items() if k not in names}


def _type_name(types: tuple[type, ...]) -> str:
    if types == _NUMBER:
        return "a number"
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _check_types(obj: dict[str, Any], fields: dict[str, tuple[type, ...]], prefix: str) -> None:
    for field, types in fields.items():
        value = get_field(obj, field)
        if value is None:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise invalid(f"Invalid type for '{prefix}{field}': expected {_type_name(types)}.", prefix + field)


def validate_request(body: Any) -> None:
    """The checks every generateContent request gets, translated or passed through."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    _check_types(body, FIELD_TYPES, "")
    contents = get_field(body, "contents")
    if not contents:
        raise invalid("Missing required parameter: 'contents' (a non-empty array).", "contents")
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict):
            raise invalid(f"Invalid type for '{where}': expected an object.", where)
        role = content.get("role")
        if role is not None and role not in ROLES:
            raise invalid(f"Invalid value for '{where}.role': expected user or model.", f"{where}.role")
        if not isinstance(content.get("parts"), list):
            raise invalid(f"Missing required parameter: '{where}.parts' (an array).", f"{where}.parts")
    generation = get_field(body, "generationConfig")
    if generation:
        _check_types(generation, GENERATION_FIELD_TYPES, "generationConfig.")


def model_path(model: str) -> str:
    """`gemini-2.5-flash` -> `models/gemini-2.5-flash`; `tunedModels/x` and `models/x` unchanged."""
    return model if "/" in model else f"models/{model}"


def _version(model: str) -> float | None:
    """2.5 for `gemini-2.5-flash`; None for names that carry no version (aliases, tuned models)."""
    match = re.search(r"gemini-(\d+(?:\.\d+)?)", model)
    return float(match.group(1)) if match else None


# --- requests: Gemini -> canonical -----------------------------------------------------------------


def decode_request(body: Any, model: str, stream: bool = False) -> ChatRequest:
    """A client's generateContent body -> ChatRequest. `model` comes from the URL."""
    validate_request(body)
    messages: list[Message] = []
    system = get_field(body, "systemInstruction")
    if system is not None:
        parts = system.get("parts")
        if not isinstance(parts, list):
            raise invalid("Missing required parameter: 'systemInstruction.parts'.", "systemInstruction.parts")
        messages.append(Message(role="system", content=_decode_input_parts(parts, "systemInstruction.parts")))
    messages.extend(_decode_contents(get_field(body, "contents")))
    extra = rest_of(body, ("contents", "systemInstruction", "tools", "toolConfig", "generationConfig"))
    tools, other_tools = _decode_tools(get_field(body, "tools") or [])
    if other_tools:
        extra["tools"] = other_tools
    tool_choice, tool_config_rest = _decode_tool_config(get_field(body, "toolConfig"))
    if tool_config_rest:
        extra["toolConfig"] = tool_config_rest
    generation = get_field(body, "generationConfig") or {}
    generation_rest = rest_of(generation, _CANONICAL_GENERATION)
    response_format = _decode_response_format(generation, generation_rest)
    if generation_rest:
        extra["generationConfig"] = generation_rest
    stop = get_field(generation, "stopSequences")
    return ChatRequest(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format,
        temperature=get_field(generation, "temperature"),
        top_p=get_field(generation, "topP"),
        max_tokens=get_field(generation, "maxOutputTokens"),
        stop=list(stop or []),
        n=get_field(generation, "candidateCount"),
        seed=get_field(generation, "seed"),
        reasoning_effort=_decode_thinking(get_field(generation, "thinkingConfig")),
        stream=stream,
        include_usage=True,  # Gemini always reports usage
        extra=extra,
        extra_wire=WIRE,
    )


def _decode_contents(contents: list[dict[str, Any]]) -> list[Message]:
    messages: list[Message] = []
    pending: list[tuple[str, str]] = []  # (id, name) of calls not answered yet, oldest first
    for i, content in enumerate(contents):
        if content.get("role") == "model":
            message = _decode_model_turn(content["parts"], i, pending)
            if message.content or message.tool_calls or message.reasoning:
                messages.append(message)
        else:
            messages.extend(_decode_user_turn(content["parts"], i, pending))
    return messages


def _decode_model_turn(parts: list[Any], i: int, pending: list[tuple[str, str]]) -> Message:
    content: list[Part] = []
    calls: list[ToolCall] = []
    reasoning: list[Reasoning] = []
    in_thought = False  # the part before was a thought
    for j, part in enumerate(parts):
        at = f"contents[{i}].parts[{j}]"
        if not isinstance(part, dict):
            raise invalid(f"Invalid type for '{at}': expected an object.", at)
        signer, signature = thought_signature_from_client(get_field(part, "thoughtSignature"))
        call = get_field(part, "functionCall")
        if call is not None:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise invalid(f"Missing required parameter: '{at}.functionCall.name'.", f"{at}.functionCall.name")
            call_id, name = call.get("id") or f"call_{i}_{j}", call["name"]
            pending.append((call_id, name))
            arguments = orjson.dumps(call.get("args") or {}).decode()
            calls.append(ToolCall(id=call_id, name=name, arguments=arguments, signature=signature, signer=signer))
            in_thought = False
            continue
        if part.get("thought"):
            # A streamed thought comes as pieces, its signature in the last (alone, from the stream
            # encoders): the pieces are one reasoning, the text the signature signs.
            text = part.get("text") or ""
            if in_thought and reasoning[-1].signature is None:
                reasoning[-1].text += text
                reasoning[-1].signature, reasoning[-1].signer = signature, signer
            else:
                reasoning.append(Reasoning(text=text, signature=signature, signer=signer))
            in_thought = True
            continue
        in_thought = False
        if signature is not None:  # a signature on a text part: it signs the reasoning behind it
            reasoning.append(Reasoning(signature=signature, signer=signer))
        decoded = _decode_part(part, at)
        if decoded is not None and not _empty(decoded):
            content.append(decoded)
    return Message(role="assistant", content=content, tool_calls=calls, reasoning=reasoning)


_STANDARD_ALPHABET = str.maketrans("-_", "+/")  # clients may send base64url (as pydantic can write bytes)


def thought_signature_from_client(value: Any) -> tuple[str | None, str | None]:
    """(signer, signature) of a thoughtSignature a client sent: a sealed one opened, Google's
    sentinel none at all (a placeholder, not a signature), any other Gemini's own."""
    if not isinstance(value, str) or not value or value == SKIP_SIGNATURE:
        return None, None
    if value.startswith(SEALED_PREFIX):
        try:
            text = base64.b64decode(value.translate(_STANDARD_ALPHABET) + "=" * (-len(value) % 4), validate=True)
            opened = open_signature(text.decode())
        except (binascii.Error, UnicodeDecodeError):
            opened = None
        if opened is not None:
            return opened
    return WIRE, value


def thought_signature_for_client(signer: str | None, value: str | None) -> str | None:
    """A signature as a Gemini client gets it: Gemini's as it is, another vendor's sealed and then
    base64-encoded (a thoughtSignature is bytes), one of unknown origin not at all."""
    rendered = signature_for_client(WIRE, signer, value)
    if rendered is None or signer == WIRE:
        return rendered
    return base64.b64encode(rendered.encode()).decode()


def _decode_user_turn(parts: list[Any], i: int, pending: list[tuple[str, str]]) -> list[Message]:
    """Function responses become tool messages (first: they must follow the calls); the rest one user message."""
    tools: list[Message] = []
    content: list[Part] = []
    for j, part in enumerate(parts):
        at = f"contents[{i}].parts[{j}]"
        response = get_field(part, "functionResponse") if isinstance(part, dict) else None
        if response is None:
            decoded = _decode_part(part, at)
            if decoded is not None:
                content.append(decoded)
            continue
        if not isinstance(response, dict) or not isinstance(response.get("name"), str):
            raise invalid(f"Missing required parameter: '{at}.functionResponse.name'.", f"{at}.functionResponse.name")
        name = response["name"]
        call_id = response.get("id") or _match_call(pending, name) or f"call_{i}_{j}"
        pending[:] = [p for p in pending if p[0] != call_id]
        result = response.get("response")
        result = result if result is not None else {}
        parts_out: list[Part] = [TextPart(text=orjson.dumps(result).decode())]
        if isinstance(response.get("parts"), list):
            parts_out.extend(_decode_input_parts(response["parts"], f"{at}.functionResponse.parts"))
        is_error = isinstance(result, dict) and set(result) == {"error"}
        tools.append(Message(role="tool", content=parts_out, tool_call_id=call_id, name=name, is_error=is_error))
    if content:
        tools.append(Message(role="user", content=content))
    return tools


def _match_call(pending: list[tuple[str, str]], name: str) -> str | None:
    for call_id, call_name in pending:
        if call_name == name:
            return call_id
    return pending[0][0] if pending else None


def _decode_input_parts(parts: list[Any], where: str) -> list[Part]:
    decoded = (_decode_part(part, f"{where}[{j}]") for j, part in enumerate(parts))
    return [p for p in decoded if p is not None]


def _decode_part(part: Any, at: str) -> Part | None:
    """One request part -> canonical; None for a part that carries nothing (a bare signature)."""
    if not isinstance(part, dict):
        raise invalid(f"Invalid type for '{at}': expected an object.", at)
    if isinstance(part.get("text"), str):
        return TextPart(text=part["text"])
    inline = get_field(part, "inlineData")
    if isinstance(inline, dict):
        media_type, data = get_field(inline, "mimeType") or "application/octet-stream", inline.get("data") or ""
        if media_type.startswith("image/"):
            return ImagePart(url=f"data:{media_type};base64,{data}")
        return FilePart(media_type=media_type, data=data, filename=get_field(inline, "displayName"))
    file = get_field(part, "fileData")
    if isinstance(file, dict) and isinstance(get_field(file, "fileUri"), str):
        media_type, uri = get_field(file, "mimeType"), get_field(file, "fileUri")
        if media_type and media_type.startswith("image/"):
            return ImagePart(url=uri)
        return FilePart(media_type=media_type, url=uri, filename=get_field(file, "displayName"))
    if set(part) <= {"thoughtSignature", "thought_signature", "thought"}:
        return None
    kinds = ", ".join(sorted(part))
    raise invalid(f"Unsupported part ({kinds}) at '{at}' for this endpoint's provider.", at)


def _decode_tools(tools: list[Any]) -> tuple[list[Tool], list[dict[str, Any]]]:
    """Function declarations -> canonical tools; Gemini's built-in tools (googleSearch, ...) kept apart."""
    out: list[Tool] = []
    others: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid(f"Invalid type for 'tools[{i}]': expected an object.", f"tools[{i}]")
        declarations = get_field(tool, "functionDeclarations")
        rest = rest_of(tool, ("functionDeclarations",))
        if rest:
            others.append(rest)
        if declarations is None:
            continue
        for j, declaration in enumerate(declarations):
            at = f"tools[{i}].functionDeclarations[{j}]"
            if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
                raise invalid(f"Missing required parameter: '{at}.name'.", f"{at}.name")
            parameters = get_field(declaration, "parametersJsonSchema")
            if parameters is None and isinstance(declaration.get("parameters"), dict):
                parameters = _schema_from_gemini(declaration["parameters"])
            out.append(Tool(name=declaration["name"], description=declaration.get("description"), parameters=parameters))
    return out, others


_INT64_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")


def _schema_from_gemini(schema: Any) -> Any:
    """Gemini's OpenAPI-style Schema (`type: "OBJECT"`, `nullable`, int64s as strings) -> JSON Schema."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key in ("properties", "$defs", "defs"):
            out["$defs" if key == "defs" else key] = {k: _schema_from_gemini(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _schema_from_gemini(value)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            out[key] = [_schema_from_gemini(v) for v in value]
        elif key in _INT64_KEYS and isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
            out[key] = int(value)
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _decode_tool_config(config: Any) -> tuple[ToolChoice | None, dict[str, Any]]:
    if not config:
        return None, {}
    rest = rest_of(config, ("functionCallingConfig",))
    calling = get_field(config, "functionCallingConfig")
    if not isinstance(calling, dict):
        return None, config
    mode = calling.get("mode")
    names = get_field(calling, "allowedFunctionNames") or []
    calling_rest = rest_of(calling, ("mode", "allowedFunctionNames"))
    choice: ToolChoice | None = None
    if mode == "ANY" and len(names) == 1:
        choice = ToolChoice(mode="tool", name=names[0])
    elif mode in FUNCTION_CALLING_MODES:
        choice = ToolChoice(mode=FUNCTION_CALLING_MODES[mode])  # type: ignore[arg-type]
        if names:
            calling_rest["allowedFunctionNames"] = names  # a restriction canonical cannot say
    elif mode is not None:
        calling_rest["mode"] = mode  # VALIDATED, ...: Gemini-only
    if calling_rest:
        rest["functionCallingConfig"] = calling_rest
    return choice, rest


def _decode_response_format(generation: dict[str, Any], rest: dict[str, Any]) -> ResponseFormat | None:
    mime = get_field(generation, "responseMimeType")
    json_schema = get_field(generation, "responseJsonSchema")
    schema = get_field(generation, "responseSchema")
    if mime == "application/json":
        if json_schema is not None:
            return ResponseFormat(type="json_schema", schema=json_schema if isinstance(json_schema, dict) else {})
        if schema is not None:
            return ResponseFormat(type="json_schema", schema=_schema_from_gemini(schema))
        return ResponseFormat(type="json_object")
    if mime is not None and mime != "text/plain":  # text/x.enum, ...: Gemini-only, kept for Gemini
        rest["responseMimeType"] = mime
        if schema is not None:
            rest["responseSchema"] = schema
    return None


def _decode_thinking(config: Any) -> str | None:
    if not isinstance(config, dict):
        return None
    level = get_field(config, "thinkingLevel")
    if isinstance(level, str):
        return level.lower()
    return "none" if get_field(config, "thinkingBudget") == 0 else None


# --- requests: canonical -> Gemini -----------------------------------------------------------------


def encode_request(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """ChatRequest -> a generateContent body for `model` (streaming is chosen by URL, not body)."""
    extra = request.extra if request.extra_wire == WIRE else {}
    contents, system = _encode_messages(request.messages, model)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = list(extra.get("tools") or [])
    if request.tools:
        tools.insert(0, {"functionDeclarations": [_encode_tool(t) for t in request.tools]})
    if tools:
        body["tools"] = tools
    tool_config = _encode_tool_choice(request.tool_choice)
    if tool_config or extra.get("toolConfig"):
        body["toolConfig"] = _merge(extra.get("toolConfig") or {}, tool_config)
    generation = _merge(extra.get("generationConfig") or {}, _encode_generation(request, model, extra))
    if generation:
        body["generationConfig"] = generation
    body.update((k, v) for k, v in extra.items() if k not in body)
    return body


def count_tokens_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A generateContent body -> the countTokens body that counts all of it (tools and system
    instruction included, which the bare `contents` form would leave out)."""
    return {"generateContentRequest": {"model": model_path(model), **body}}


def with_count_model(body: Any, model: str) -> Any:
    """A client's countTokens body for `model`: its `generateContentRequest` (if any) names the
    destination's model, not the endpoint the client addressed."""
    if isinstance(body, dict):
        key = next((k for k in ("generateContentRequest", "generate_content_request") if isinstance(body.get(k), dict)), None)
        if key is not None:
            return {**body, key: {**body[key], "model": model_path(model)}}
    return body


def generate_request_of_count(body: Any) -> Any:
    """A client's countTokens body -> the generateContent body it counts: either its
    `generateContentRequest` or the bare `contents` form."""
    if isinstance(body, dict):
        inner = get_field(body, "generateContentRequest")
        if isinstance(inner, dict):
            return {k: v for k, v in inner.items() if k != "model"}
    return body


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overlay` on top, nested objects merged; neither input is changed."""
    out = dict(base)
    for key, value in overlay.items():
        old = out.get(key)
        out[key] = _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return out


def _encode_messages(messages: list[Message], model: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    contents: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call id -> function name, for tool messages that do not say
    version = _version(model)
    needs_signature = version is None or version >= 3
    for i, message in enumerate(messages):
        if message.role == "system":
            system.extend({"text": p.text} for p in message.content if isinstance(p, TextPart) and p.text)
            continue
        if message.role == "tool":
            role, parts = "user", _encode_tool_result(message, names, i)
        elif message.role == "assistant":
            role, parts = "model", _encode_assistant_parts(message, needs_signature)
            names.update((c.id, c.name) for c in message.tool_calls)
        else:
            role, parts = "user", [_encode_part(p) for p in message.content if not _empty(p)]
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents, system


def _encode_assistant_parts(message: Message, needs_signature: bool) -> list[dict[str, Any]]:
    """An assistant turn as model parts, as Gemini answers: signed thoughts, content, calls. Only
    Gemini's own signatures go; another vendor's reasoning is left out (Gemini reads nothing from
    unsigned thought text)."""
    parts = [thought_part(r.text, r.signature) for r in message.reasoning if r.signer == WIRE and r.signature]
    parts += [_encode_part(p) for p in message.content if not _empty(p)]
    signatures = [c.signature if c.signer == WIRE else None for c in message.tool_calls]
    calls = [function_call_part(c.id, c.name, c.arguments, s) for c, s in zip(message.tool_calls, signatures)]
    if calls and needs_signature and not any(signatures):
        calls[0]["thoughtSignature"] = SKIP_SIGNATURE
    return parts + calls


def _empty(part: Part) -> bool:
    return isinstance(part, TextPart) and not part.text


def _encode_tool_result(message: Message, names: dict[str, str], i: int) -> list[dict[str, Any]]:
    name = message.name or names.get(message.tool_call_id or "")
    if not name:
        raise invalid(
            f"'messages[{i}]' answers tool call '{message.tool_call_id}', which no earlier assistant message made.",
            f"messages[{i}].tool_call_id",
        )
    text = message.paragraphs()
    try:
        result = orjson.loads(text) if text.lstrip().startswith("{") else None
    except orjson.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        result = {"error" if message.is_error else "result": text}
    function: dict[str, Any] = {"name": name, "response": result}
    if message.tool_call_id:
        function["id"] = message.tool_call_id
    return [{"functionResponse": function}] + [_encode_part(p) for p in message.content if not isinstance(p, TextPart)]


def _parse_args(arguments: str) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _encode_part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if isinstance(part, ImagePart):
        if part.is_inline:
            media_type, data = part.inline_data()
            return {"inlineData": {"mimeType": media_type, "data": data}}
        return {"fileData": {"mimeType": _guess_type(part.url, "image/jpeg"), "fileUri": part.url}}
    if part.data is not None:
        return {"inlineData": {"mimeType": part.media_type or "application/pdf", "data": part.data}}
    uri = part.url or part.file_id or ""
    return {"fileData": {"mimeType": part.media_type or _guess_type(uri, "application/pdf"), "fileUri": uri}}


def _guess_type(url: str, default: str) -> str:
    return mimetypes.guess_type(url.split("?", 1)[0])[0] or default


def _encode_tool(tool: Tool) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        declaration["description"] = tool.description
    if tool.parameters is not None:
        declaration["parametersJsonSchema"] = _json_schema(tool.parameters)
    return declaration


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Gemini's JSON-schema fields take full JSON Schema, except a root `$schema` (400: unknown name)."""
    return {k: v for k, v in schema.items() if k != "$schema"} if "$schema" in schema else schema


def _encode_tool_choice(choice: ToolChoice | None) -> dict[str, Any]:
    if choice is None:
        return {}
    calling: dict[str, Any] = {"mode": FUNCTION_CALLING_MODES_OUT[choice.mode]}
    if choice.mode == "tool" and choice.name:
        calling["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": calling}


def _encode_generation(request: ChatRequest, model: str, extra: dict[str, Any]) -> dict[str, Any]:
    scalars = {
        "temperature": request.temperature,
        "topP": request.top_p,
        "maxOutputTokens": request.max_tokens,
        "stopSequences": request.stop or None,
        "candidateCount": request.n,
        "seed": request.seed,
    }
    out = {k: v for k, v in scalars.items() if v is not None}
    response_format = request.response_format
    if response_format is not None and response_format.type != "text":
        out["responseMimeType"] = "application/json"
        if response_format.type == "json_schema" and response_format.schema is not None:
            out["responseJsonSchema"] = _json_schema(response_format.schema)
    effort, version = request.reasoning_effort, _version(model)
    if effort and get_field(extra.get("generationConfig") or {}, "thinkingConfig") is None:
        thinking = _thinking(effort, model, version)
        if thinking:
            out["thinkingConfig"] = thinking
    return out


def _thinking(effort: str, model: str, version: float | None) -> dict[str, Any]:
    """reasoning_effort -> thinkingConfig: a level for Gemini 3+, a token budget for 2.5 (and for
    unversioned aliases: Gemini 3 still takes budgets); models before 2.5 do not think, so nothing."""
    if version is not None and version < 2.5:
        return {}
    if version is not None and version >= 3:
        thinking: dict[str, Any] = {"thinkingLevel": "MINIMAL" if effort == "none" else effort.upper()}
    else:
        budget = THINKING_BUDGETS.get(effort, -1)
        thinking = {"thinkingBudget": 128 if budget == 0 and "pro" in model else budget}  # Pro cannot stop thinking
    if effort != "none":
        thinking["includeThoughts"] = True
    return thinking


# --- responses -------------------------------------------------------------------------------------



def usage_in(data: Any) -> Any:
    """The raw usage object in a response body or a stream chunk (every chunk may carry one)."""
    return data.get("usageMetadata") if isinstance(data, dict) else None


def decode_usage(meta: Any) -> Usage | None:
    """Gemini counts thoughts apart from candidates; canonical output includes them."""
    if not isinstance(meta, dict):
        return None
    thoughts = meta.get("thoughtsTokenCount")
    return Usage(
        input_tokens=(meta.get("promptTokenCount") or 0) + (meta.get("toolUsePromptTokenCount") or 0),
        output_tokens=(meta.get("candidatesTokenCount") or 0) + (thoughts or 0),
        cached_input_tokens=meta.get("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    reasoning = usage.reasoning_tokens or 0
    out: dict[str, Any] = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens - reasoning,
        "totalTokenCount": usage.total_tokens,
    }
    if usage.cached_input_tokens is not None:
        out["cachedContentTokenCount"] = usage.cached_input_tokens
    if reasoning:
        out["thoughtsTokenCount"] = reasoning
    return out


def decode_finish(reason: Any, has_calls: bool) -> FinishReason | None:
    if not reason:
        return None
    mapped = FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def new_id() -> str:
    return secrets.token_urlsafe(16)


def signer_of(signature: str | None) -> str | None:
    return WIRE if signature is not None else None


def make_call_id(response_id: str, serial: int) -> str:
    """An id for a call Gemini sent without one: unique across a conversation, since the response's is."""
    return f"call_{re.sub(r'[^A-Za-z0-9_-]', '', response_id)}_{serial}"


def response_parts(parts: Any) -> list[tuple[str, Any]]:
    """A candidate's parts as (kind, value): "call" (name, args JSON, id, signature), "thought"
    (text, signature), "signature" (alone), "text", "part" (an image or file)."""
    out: list[tuple[str, Any]] = []
    for part in parts or ():
        signature = part.get("thoughtSignature")
        call = part.get("functionCall")
        if call is not None:
            arguments = orjson.dumps(call.get("args") or {}).decode()
            out.append(("call", (call.get("name") or "", arguments, call.get("id"), signature)))
            continue
        text = part.get("text")
        if part.get("thought"):
            out.append(("thought", (text or "", signature)))
            continue
        if signature is not None:
            out.append(("signature", signature))
        if text:
            out.append(("text", text))
        elif "inlineData" in part or "fileData" in part:
            out.append(("part", _decode_part(part, "candidates")))
    return out


def decode_response(data: dict[str, Any]) -> ChatResponse:
    response_id = data.get("responseId") or new_id()
    serial = 0
    choices = []
    for position, candidate in enumerate(data.get("candidates") or []):
        content: list[Part] = []
        calls: list[ToolCall] = []
        reasoning: list[Reasoning] = []
        for kind, value in response_parts((candidate.get("content") or {}).get("parts")):
            if kind == "call":
                name, arguments, call_id, signature = value
                if not call_id:
                    call_id, serial = make_call_id(response_id, serial), serial + 1
                signer = signer_of(signature)
                calls.append(ToolCall(id=call_id, name=name, arguments=arguments, signature=signature, signer=signer))
            elif kind == "thought":
                reasoning.append(Reasoning(text=value[0], signature=value[1], signer=signer_of(value[1])))
            elif kind == "signature":
                if reasoning and reasoning[-1].signature is None:
                    reasoning[-1].signature, reasoning[-1].signer = value, WIRE
                else:
                    reasoning.append(Reasoning(signature=value, signer=WIRE))
            else:
                content.append(TextPart(text=value) if kind == "text" else value)
        message = Message(role="assistant", content=content, tool_calls=calls, reasoning=reasoning)
        finish = decode_finish(candidate.get("finishReason"), bool(calls))
        choices.append(Choice(index=candidate.get("index", position), message=message, finish_reason=finish))
    if not choices and (data.get("promptFeedback") or {}).get("blockReason"):
        choices.append(Choice(index=0, message=Message(role="assistant"), finish_reason="content_filter"))
    return ChatResponse(
        id=response_id,
        model=data.get("modelVersion") or "",
        created=int(time.time()),
        choices=choices,
        usage=decode_usage(data.get("usageMetadata")),
    )


def function_call_part(call_id: str | None, name: str, arguments: str, signature: str | None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "args": _parse_args(arguments)}
    if call_id:
        function["id"] = call_id
    return {"functionCall": function} | ({"thoughtSignature": signature} if signature else {})


def thought_part(text: str, signature: str | None) -> dict[str, Any]:
    return {"text": text, "thought": True} | ({"thoughtSignature": signature} if signature else {})


def encode_response(response: ChatResponse, model: str | None = None) -> dict[str, Any]:
    candidates = []
    for choice in response.choices:
        message = choice.message
        signed = [(r.text, thought_signature_for_client(r.signer, r.signature)) for r in message.reasoning]
        parts = [thought_part(text, signature) for text, signature in signed if text or signature]
        parts += [_encode_part(p) for p in message.content if not _empty(p)]
        parts += [
            function_call_part(c.id, c.name, c.arguments, thought_signature_for_client(c.signer, c.signature))
            for c in message.tool_calls
        ]
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}} if parts else {}
        if choice.finish_reason:
            candidate["finishReason"] = FINISH_REASONS_OUT[choice.finish_reason]
        candidate["index"] = choice.index
        candidates.append(candidate)
    body: dict[str, Any] = {"candidates": candidates}
    if response.usage is not None:
        body["usageMetadata"] = encode_usage(response.usage)
    body["modelVersion"] = model or response.model
    body["responseId"] = response.id
    return body


# --- errors ----------------------------------------------------------------------------------------

_ERROR_STATUSES = {
    ErrorKind.INVALID_REQUEST: "INVALID_ARGUMENT",
    ErrorKind.POLICY: "INVALID_ARGUMENT",
    ErrorKind.AUTHENTICATION: "UNAUTHENTICATED",
    ErrorKind.PERMISSION: "PERMISSION_DENIED",
    ErrorKind.NOT_FOUND: "NOT_FOUND",
    ErrorKind.REQUEST_TOO_LARGE: "INVALID_ARGUMENT",
    ErrorKind.RATE_LIMIT: "RESOURCE_EXHAUSTED",
    ErrorKind.UPSTREAM_ERROR: "INTERNAL",
    ErrorKind.UPSTREAM_UNAVAILABLE: "UNAVAILABLE",
    ErrorKind.UPSTREAM_TIMEOUT: "DEADLINE_EXCEEDED",
    ErrorKind.OVERLOADED: "UNAVAILABLE",
    ErrorKind.INTERNAL: "INTERNAL",
}


def error_status(error: GatewayError) -> int:
    # Google answers "overloaded" with 503 UNAVAILABLE, which its SDKs retry; 529 is Anthropic's.
    return 503 if error.kind is ErrorKind.OVERLOADED else error.status


def encode_error(error: GatewayError) -> dict[str, Any]:
    return {"error": {"code": error_status(error), "message": error.message, "status": _ERROR_STATUSES[error.kind]}}
