"""OpenAI Responses wire format <-> canonical model.

The client-facing side: `decode_request` turns a `POST /v1/responses` body into a `ChatRequest`,
`encode_response` renders canonical answers as Response objects (and aigw.wire.openai_responses_stream's
`StreamEncoder` as Responses SSE).

Requests. `instructions` becomes a leading system message, an `input` string one user message. Input
items map as follows; consecutive assistant-side items (reasoning, assistant messages, function and
custom tool calls) form ONE canonical assistant message, so providers see parallel calls in one turn:

    message (user / system / developer -> system / assistant)   -> a message; parts input_text,
                                                                    output_text, refusal -> text,
                                                                    input_image -> image (or file by
                                                                    file_id), input_file -> file
    function_call                                               -> a tool call of the assistant turn
    custom_tool_call                                            -> the same, arguments {"input": ...}
    function_call_output / custom_tool_call_output              -> a "tool" message (tool_call_id)
    reasoning                                                   -> a Reasoning of the assistant turn
    item_reference                                              -> 400: the surfaces resolve them
                                                                   from the gateway's store first
    hosted tools' items (web_search_call, ...)                  -> dropped (the server's business)

Tools are translated in aigw.wire.openai_responses_tools: a custom tool (free-form text input, as
Codex CLI's apply_patch) becomes a function tool taking one string, `{"input": ...}`; each function
of a namespace (Codex CLI's multi_agent_v1) a function tool under a flat name, `multi_agent_v1__
close_agent`; hosted tools (web_search, file_search, mcp, ...) are dropped from the canonical
request (they stay in the raw body for pass-through). `encode_response` and `StreamEncoder` turn
calls back into what the Responses API emits, `custom_tool_call` items and items with a
`namespace`, by the request body's tools (`ToolNames`); a namespaced call in the input goes back to
its flat name. Responses-only fields (store, include, prompt_cache_key, text, reasoning, ...) go to
`extra`, for a destination that speaks this wire format.

The decoder keeps no state: `previous_response_id` and `conversation` are refused, since they name
stored items. The surfaces that keep state (surfaces/stored_responses.py) resolve those items from the
gateway's store before decoding, and leave only what they cannot resolve to these 400s.

Reasoning tokens. Canonical reasoning carries a `signature` (Anthropic, Gemini) or `redacted`
vendor-encrypted data, and a Gemini tool call may carry a signature too, each with its `signer` (the
wire that minted it: see `aigw.canonical`); a Responses client can only hand back a reasoning item's
`encrypted_content`. So `encrypted_content` is:

    - absent when there is nothing to carry, or when nobody knows who signed it (no upstream takes it);
    - the `redacted` value itself when that is all there is and OpenAI minted it (an OpenAI blob
      stays an OpenAI blob);
    - otherwise `aigw:v1:` + base64url(JSON {"w": signer, "s": signature, "r": redacted,
      "c": {call id: signature}}) with absent keys left out: the gateway's seal, signer inside.

Each canonical Reasoning is one reasoning item (its text one summary part); tool-call signatures
ride in one more reasoning item per signer (in practice one: Gemini's), with no summary, after the
calls. `encrypted_content` is sent whether or not the client asked for it in `include`: the gateway
keeps nothing, so the client's copy is the only one. Decoding reverses it: a value with the prefix is
unpacked (400 when it does not unpack), any other value is `redacted` that OpenAI minted. Tool-call
signatures are collected from every reasoning item before the calls are read, so the item that
carries them may stand anywhere in the input. Summary texts become the reasoning text (joined by
blank lines when there are several), so text, signature and signer come back exactly as issued.

Tokens without "w" were issued before signers were recorded: their call signatures are Gemini's (no
other vendor signs calls), their `s` and `r` taken for Anthropic's, the one vendor that refuses a
turn without them; that is what the gateway did with them then, so no conversation breaks on it.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import secrets
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from aigw.canonical import (
    ChatRequest, ChatResponse, FilePart, FinishReason, ImagePart, Message, Part, Reasoning, ResponseFormat, TextPart,
    ToolCall, Usage,
)  # fmt: skip
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.wire.openai_chat import encode_error, error_status
from aigw.wire.openai_responses_tools import (
    CUSTOM_TOOL_PARAMETERS, NAMED_TOOL_TYPES, TOOL_NAME, ToolNames, decode_tool_choice, decode_tools,
    validate_namespace, validate_tool_name,
)  # fmt: skip

__all__ = [
    "CUSTOM_TOOL_PARAMETERS", "PARAM_NAMES", "TOOL_NAME", "WIRE", "decode_request", "decode_usage", "encode_error", "encode_response",
    "encode_usage", "error_event_fields", "error_status", "failure", "failure_code", "usage_from_event", "validate_request",
]  # fmt: skip

WIRE = "openai_responses"

# Top-level fields and the JSON types each accepts, checked on every path (pass-through included).
_NUMBER = (int, float)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "input": (str, list), "instructions": (str,), "tools": (list,), "tool_choice": (str, dict),
    "stream": (bool,), "store": (bool,), "background": (bool,), "parallel_tool_calls": (bool,),
    "max_output_tokens": (int,), "max_tool_calls": (int,), "temperature": _NUMBER, "top_p": _NUMBER,
    "text": (dict,), "reasoning": (dict,), "metadata": (dict,), "previous_response_id": (str,),
    "user": (str,), "safety_identifier": (str,), "include": (list,),
}  # fmt: skip
# Fields read into canonical attributes; every other field goes to `extra`. `text` and `reasoning`
# stay in `extra` too: only part of each (format, effort) has a canonical meaning.
CANONICAL_FIELDS = frozenset(
    {"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
     "temperature", "top_p", "user", "stream"}
)  # fmt: skip
# Fields naming state a stateless destination cannot have.
STATEFUL_FIELDS = {
    "previous_response_id": "previous_response_id needs a stored response, which this destination does not keep.",
    "conversation": "conversation needs stored conversation items, which this destination does not keep.",
}
_TYPE_NAMES = {str: "a string", list: "an array", dict: "an object", bool: "a boolean", int: "an integer"}
ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
FORMAT_TYPES = ("text", "json_object", "json_schema")
# Items of hosted tools and server-side state: kept by OpenAI, meaningless to other providers.
DROPPED_ITEMS = frozenset(
    {"file_search_call", "web_search_call", "computer_call", "computer_call_output", "image_generation_call",
     "code_interpreter_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
     "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
     "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output", "compaction",
     "additional_tools", "program", "program_output"}
)  # fmt: skip
TOKEN_PREFIX = "aigw:v1:"
# Signers of tokens issued before they carried one (see the module docstring).
LEGACY_SIGNER, LEGACY_CALL_SIGNER = "anthropic", "gemini"
# Canonical request field -> the Responses field a client sets it with, where the two differ: an
# error a provider raises about a canonical field is reported to a Responses client under this name.
# (`tools` too: hosted tools are dropped, so canonical tools do not count as the client's do.)
PARAM_NAMES = {
    "messages": "input", "tools": "tools", "response_format": "text.format", "max_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
}  # fmt: skip

# Canonical finish reasons that end a Response "incomplete", with the reason OpenAI gives.
INCOMPLETE_REASONS: dict[str, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}
# `response.failed` error codes (a closed set in OpenAI's schema) by error kind; others: server_error.
FAILED_CODES = {
    ErrorKind.RATE_LIMIT: "rate_limit_exceeded", ErrorKind.INVALID_REQUEST: "invalid_prompt", ErrorKind.POLICY: "invalid_prompt",
}  # fmt: skip


def failure_code(error: GatewayError) -> str:
    """The `error.code` of a failed Response: one of the few codes the SDK's type accepts."""
    return FAILED_CODES.get(error.kind, "server_error")


def failure(error: GatewayError) -> dict[str, Any]:
    """The `error` object of a failed Response."""
    return {"code": failure_code(error), "message": error.message}


def error_event_fields(error: GatewayError) -> dict[str, Any]:
    """The fields of the `error` stream event that precedes `response.failed`."""
    detail = encode_error(error)["error"]
    return {"code": detail["code"] or detail["type"], "message": error.message, "param": error.param}
TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def _type_name(types: tuple[type, ...]) -> str:
    if types == _NUMBER:
        return "a number"
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _check_type(value: Any, types: tuple[type, ...], where: str) -> None:
    # bool is an int in Python; only "a boolean" fields may hold one.
    if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
        raise invalid(f"Invalid type for '{where}': expected {_type_name(types)}.", where)


def validate_request(body: Any) -> None:
    """The checks every Responses request gets, translated or passed through: required fields, field
    types, tool names, input item shapes. Cheap: a few isinstance calls per field and item."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    for field, types in FIELD_TYPES.items():
        _check_type(body.get(field), types, field)
    for field in ("model", "input"):
        if body.get(field) is None:
            raise invalid(f"Missing required parameter: '{field}'.", field)
    for i, tool in enumerate(body.get("tools") or ()):
        _validate_tool(tool, f"tools[{i}]")
    if isinstance(body["input"], list):
        for i, item in enumerate(body["input"]):
            _validate_item(item, f"input[{i}]")


def _validate_tool(tool: Any, where: str) -> None:
    if not isinstance(tool, dict):
        raise invalid(f"Invalid type for '{where}': expected an object.", where)
    kind = tool.get("type")
    if not isinstance(kind, str):
        raise invalid(f"Missing required parameter: '{where}.type'.", f"{where}.type")
    if kind in NAMED_TOOL_TYPES:
        validate_tool_name(tool.get("name"), where)
    elif kind == "namespace":
        validate_namespace(tool, where)


def _validate_item(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise invalid(f"Invalid type for '{where}': expected an object.", where)
    kind = item.get("type")
    if kind is None and "role" not in item:
        raise invalid(f"Missing required parameter: '{where}.type'.", f"{where}.type")
    if kind is not None and not isinstance(kind, str):
        raise invalid(f"Invalid type for '{where}.type': expected a string.", f"{where}.type")
    if kind in (None, "message"):
        if item.get("role") not in ROLES:
            raise invalid(
                f"Invalid value for '{where}.role': expected one of {', '.join(ROLES)}.", f"{where}.role"
            )
        if not isinstance(item.get("content"), (str, list)):
            where = f"{where}.content"
            raise invalid(f"Invalid type for '{where}': expected a string or an array of content parts.", where)


# --- requests: Responses -> canonical ------------------------------------------------------------


def decode_request(body: Any) -> ChatRequest:
    """A client's Responses body -> ChatRequest (validated; 400 naming the field otherwise)."""
    validate_request(body)
    for field, message in STATEFUL_FIELDS.items():
        if body.get(field) is not None:
            raise invalid(message, field)
    names = ToolNames(body.get("tools"))
    tools = decode_tools(body.get("tools") or [], names)
    tool_choice, tools = decode_tool_choice(body.get("tool_choice"), tools, names)
    messages: list[Message] = []
    if body.get("instructions"):
        messages.append(Message(role="system", content=[TextPart(text=body["instructions"])]))
    messages += _InputDecoder(names).decode(body["input"])
    reasoning = body.get("reasoning") or {}
    effort = reasoning.get("effort")
    _check_type(effort, (str,), "reasoning.effort")
    user = body.get("user") if body.get("user") is not None else body.get("safety_identifier")
    return ChatRequest(
        model=body["model"],
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=body.get("parallel_tool_calls"),
        response_format=_decode_text_format((body.get("text") or {}).get("format")),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        max_tokens=body.get("max_output_tokens"),
        user=user,
        reasoning_effort=effort,
        stream=bool(body.get("stream")),
        include_usage=True,  # response.completed always carries usage
        extra={k: v for k, v in body.items() if k not in CANONICAL_FIELDS},
        extra_wire=WIRE,
    )


def _required_str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise invalid(f"Missing required parameter: '{where}.{key}'.", f"{where}.{key}")
    return value


def _optional_str(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) else None


class _InputDecoder:
    """Input items -> canonical messages, one pass. Assistant-side items accumulate in `_turn` until
    an item of another kind ends the turn; tool outputs must answer a call seen earlier. A call to a
    namespace's function goes by its flat canonical name (`names`)."""

    def __init__(self, names: ToolNames) -> None:
        self._names = names
        self._messages: list[Message] = []
        self._turn: Message | None = None
        self._call_names: dict[str, str] = {}  # call id -> tool name, of the calls seen so far
        self._call_signatures: dict[str, tuple[str, str]] = {}  # call id -> (signer, signature)
        self._handlers: dict[str, Callable[[dict[str, Any], str], None]] = {
            "message": self._message,
            "function_call": self._function_call,
            "custom_tool_call": self._custom_tool_call,
            "function_call_output": self._tool_output,
            "custom_tool_call_output": self._tool_output,
            "reasoning": self._reasoning,
            "item_reference": _item_reference,
        }

    def decode(self, value: str | list[Any]) -> list[Message]:
        if isinstance(value, str):
            return [Message(role="user", content=[TextPart(text=value)])]
        self._collect_call_signatures(value)
        for i, item in enumerate(value):
            kind = item.get("type") or "message"
            handler = self._handlers.get(kind)
            if handler is not None:
                handler(item, f"input[{i}]")
            elif kind not in DROPPED_ITEMS:
                where = f"input[{i}].type"
                raise invalid(f"Unsupported input item type '{kind}' at '{where}' for this destination.", where)
        self._end_turn()
        return self._messages

    def _collect_call_signatures(self, items: list[Any]) -> None:
        for i, item in enumerate(items):
            if item.get("type") == "reasoning" and isinstance(item.get("encrypted_content"), str):
                token = decode_reasoning_token(item["encrypted_content"], f"input[{i}].encrypted_content")
                self._call_signatures.update(token.calls)

    def _assistant(self) -> Message:
        if self._turn is None:
            self._turn = Message(role="assistant")
        return self._turn

    def _end_turn(self) -> None:
        # A turn of reasoning alone (no text, no calls) gives providers nothing to attach it to.
        turn, self._turn = self._turn, None
        if turn is not None and (turn.content or turn.tool_calls):
            self._messages.append(turn)

    def _message(self, item: dict[str, Any], where: str) -> None:
        role = ROLES[item["role"]]
        parts = _decode_content(item["content"], f"{where}.content")
        if role == "assistant":
            self._assistant().content.extend(parts)
            return
        self._end_turn()
        self._messages.append(Message(role=role, content=parts))  # type: ignore[arg-type]

    def _add_call(self, call_id: str, name: str, arguments: str) -> None:
        self._call_names[call_id] = name
        signer, signature = self._call_signatures.get(call_id, (None, None))
        call = ToolCall(id=call_id, name=name, arguments=arguments, signature=signature, signer=signer)
        self._assistant().tool_calls.append(call)

    def _call_name(self, item: dict[str, Any], where: str) -> str:
        name, namespace = _required_str(item, "name", where), item.get("namespace")
        if namespace is None:
            return name
        _check_type(namespace, (str,), f"{where}.namespace")
        return self._names.flat(namespace, name)

    def _function_call(self, item: dict[str, Any], where: str) -> None:
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        self._add_call(_required_str(item, "call_id", where), self._call_name(item, where), arguments)

    def _custom_tool_call(self, item: dict[str, Any], where: str) -> None:
        text = _required_str(item, "input", where)
        call_id, name = _required_str(item, "call_id", where), self._call_name(item, where)
        self._add_call(call_id, name, custom_arguments(text))

    def _tool_output(self, item: dict[str, Any], where: str) -> None:
        call_id = _required_str(item, "call_id", where)
        name = self._call_names.get(call_id)
        if name is None:
            raise invalid(f"No tool call found for function call output with call_id {call_id}.", f"{where}.call_id")
        output = item.get("output")
        if output is None:
            raise invalid(f"Missing required parameter: '{where}.output'.", f"{where}.output")
        self._end_turn()
        content = _decode_content(output, f"{where}.output")
        self._messages.append(Message(role="tool", content=content, tool_call_id=call_id, name=name))

    def _reasoning(self, item: dict[str, Any], where: str) -> None:
        token, token_where = item.get("encrypted_content"), f"{where}.encrypted_content"
        _check_type(token, (str,), token_where)
        signed = decode_reasoning_token(token, token_where) if token else ReasoningToken(None)
        signature, redacted = signed.signature, signed.redacted
        text = _reasoning_text(item, where)
        if text or signature is not None or redacted is not None:
            signer = signed.signer if signature is not None or redacted is not None else None
            reasoning = Reasoning(text=text, signature=signature, redacted=redacted, signer=signer)
            self._assistant().reasoning.append(reasoning)


def _item_reference(item: dict[str, Any], where: str) -> None:
    raise invalid(
        f"Input item type 'item_reference' at '{where}' is not supported for this destination: it refers to a "
        "stored item, and this destination keeps none.",
        f"{where}.type",
    )


def _reasoning_text(item: dict[str, Any], where: str) -> str:
    """The summary texts of a reasoning item, else its raw reasoning texts, joined by blank lines."""
    for key in ("summary", "content"):
        parts = item.get(key)
        if parts is None:
            continue
        if not isinstance(parts, list):
            raise invalid(f"Invalid type for '{where}.{key}': expected an array.", f"{where}.{key}")
        texts = []
        for i, part in enumerate(parts):
            if not isinstance(part, dict):
                raise invalid(f"Invalid type for '{where}.{key}[{i}]': expected an object.", f"{where}.{key}[{i}]")
            texts.append(_required_str(part, "text", f"{where}.{key}[{i}]"))
        if texts:
            return "\n\n".join(texts)
    return ""


def _decode_content(content: Any, where: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(text=content)]
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{where}': expected a string or an array of content parts.", where)
    return [_decode_part(part, f"{where}[{i}]") for i, part in enumerate(content)]


def _decode_part(part: Any, where: str) -> Part:
    if not isinstance(part, dict):
        raise invalid(f"Invalid type for '{where}': expected an object.", where)
    decoder = PART_DECODERS.get(part.get("type"))  # type: ignore[arg-type]
    if decoder is None:
        kind = part.get("type")
        raise invalid(f"Unsupported content part type '{kind}' at '{where}' for this destination.", f"{where}.type")
    return decoder(part, where)


def _image_part(part: dict[str, Any], where: str) -> Part:
    url, file_id = _optional_str(part, "image_url"), _optional_str(part, "file_id")
    if url is not None:
        return ImagePart(url=url, detail=_optional_str(part, "detail"))
    if file_id is not None:
        return FilePart(file_id=file_id)
    raise invalid(f"Missing required parameter: '{where}.image_url' (or '{where}.file_id').", f"{where}.image_url")


def _file_part(part: dict[str, Any], where: str) -> Part:
    filename = _optional_str(part, "filename")
    data, media_type = _optional_str(part, "file_data"), None
    if data is not None and data.startswith("data:"):
        header, _, data = data.partition(",")
        media_type = header[5:].split(";", 1)[0] or None
    elif data is not None and filename:
        media_type = mimetypes.guess_type(filename)[0]
    url, file_id = _optional_str(part, "file_url"), _optional_str(part, "file_id")
    if data is None and url is None and file_id is None:
        message = f"Missing required parameter: '{where}.file_data' (or file_url or file_id)."
        raise invalid(message, f"{where}.file_data")
    return FilePart(media_type=media_type, data=data, url=url, file_id=file_id, filename=filename)


PART_DECODERS: dict[str, Callable[[dict[str, Any], str], Part]] = {
    "input_text": lambda part, where: TextPart(text=_required_str(part, "text", where)),
    "output_text": lambda part, where: TextPart(text=_required_str(part, "text", where)),
    "refusal": lambda part, where: TextPart(text=_required_str(part, "refusal", where)),
    "input_image": _image_part,
    "input_file": _file_part,
}


def custom_arguments(text: str) -> str:
    """A custom tool's free-form input as canonical function-call arguments."""
    return orjson.dumps({"input": text}).decode()


def custom_input(arguments: str) -> str:
    """Canonical arguments of a call to a custom tool -> its free-form input. A model that did not
    wrap its input in {"input": ...} gets its arguments passed on as they are."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments


def _decode_text_format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("Invalid type for 'text.format': expected an object.", "text.format")
    kind = value.get("type")
    if kind not in FORMAT_TYPES:
        message = "Invalid value for 'text.format.type': expected text, json_object or json_schema."
        raise invalid(message, "text.format.type")
    if kind != "json_schema":
        return ResponseFormat(type=kind)
    schema = value.get("schema")
    _check_type(schema, (dict,), "text.format.schema")
    strict = value.get("strict") if isinstance(value.get("strict"), bool) else None
    return ResponseFormat(type=kind, name=_optional_str(value, "name"), schema=schema, strict=strict)


# --- reasoning tokens --------------------------------------------------------------------------


class ReasoningToken(NamedTuple):
    """What a reasoning item's `encrypted_content` carries."""

    signer: str | None  # of `signature` and `redacted`
    signature: str | None = None
    redacted: str | None = None
    calls: dict[str, tuple[str, str]] = {}  # call id -> (signer, signature); never mutated


def encode_reasoning_token(
    signer: str | None,
    signature: str | None = None,
    redacted: str | None = None,
    call_signatures: dict[str, str] | None = None,
) -> str | None:
    """What the gateway puts in a reasoning item's `encrypted_content` (see the module docstring);
    `signer` signed everything given."""
    if signer is None or (signature is None and redacted is None and not call_signatures):
        return None
    alone = signature is None and not call_signatures
    if signer == WIRE and alone and redacted is not None and not redacted.startswith(TOKEN_PREFIX):
        return redacted  # OpenAI's encrypted reasoning, as OpenAI issued it
    fields: dict[str, Any] = {"w": signer, "s": signature, "r": redacted, "c": call_signatures or None}
    packed = orjson.dumps({k: v for k, v in fields.items() if v is not None})
    return TOKEN_PREFIX + base64.urlsafe_b64encode(packed).rstrip(b"=").decode()


def decode_reasoning_token(token: str, where: str) -> ReasoningToken:
    """`encrypted_content` -> what it carries: OpenAI's own encrypted reasoning, or the gateway's seal."""
    if not token.startswith(TOKEN_PREFIX):
        return ReasoningToken(WIRE, redacted=token)
    packed = token[len(TOKEN_PREFIX) :]
    try:
        fields = orjson.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
    except (binascii.Error, ValueError):
        fields = None
    if not isinstance(fields, dict):
        raise invalid(f"Invalid '{where}': not reasoning content this gateway issued.", where)
    signature, redacted, calls = fields.get("s"), fields.get("r"), fields.get("c", {})
    signer, call_signer = (fields["w"], fields["w"]) if "w" in fields else (LEGACY_SIGNER, LEGACY_CALL_SIGNER)
    values = [v for v in (signer, signature, redacted) if v is not None]
    if not isinstance(calls, dict) or not all(isinstance(v, str) for v in [*values, *calls.values()]):
        raise invalid(f"Invalid '{where}': not reasoning content this gateway issued.", where)
    return ReasoningToken(signer, signature, redacted, {call_id: (call_signer, s) for call_id, s in calls.items()})


# --- responses: canonical -> Responses -----------------------------------------------------------


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def now() -> int:
    return int(time.time())


def response_id(id: str) -> str:
    """A Responses-looking id for a canonical id from any provider."""
    return id if id.startswith("resp_") else f"resp_{id}" if id else new_id("resp_")


def _dict(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def echoed_tools(tools: Any) -> list[Any]:
    """The request's tools as a Response lists them: a function tool always has `description`,
    `parameters` and `strict` (null where the client gave none), as the Open Responses schema says;
    so does each function in a namespace."""
    if not isinstance(tools, list):
        return []
    return [_echoed_tool(tool) for tool in tools]


def _echoed_tool(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return tool
    if tool.get("type") == "namespace" and isinstance(tool.get("tools"), list):
        return {**tool, "tools": [_echoed_tool(member) for member in tool["tools"]]}
    if tool.get("type") != "function":
        return tool
    return {
        **tool, "description": tool.get("description"), "parameters": tool.get("parameters"),
        "strict": tool["strict"] if isinstance(tool.get("strict"), bool) else None,
    }  # fmt: skip


def build_response(
    body: dict[str, Any],
    *,
    id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    incomplete_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Response object, field for field as OpenAI returns one, request parameters echoed from `body`
    (OpenAI's defaults where the client sent none)."""
    done = status not in ("in_progress", "queued")  # usage and completion time come at the end
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": body.get("background", False),
        "completed_at": now() if status in ("completed", "incomplete") else None,
        "error": error,
        "frequency_penalty": body.get("frequency_penalty", 0.0),
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model or body.get("model") or "",
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "presence_penalty": body.get("presence_penalty", 0.0),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": body.get("prompt_cache_retention"),
        "reasoning": {"effort": None, "summary": None, **_dict(body, "reasoning")},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": body.get("service_tier") or "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium", **_dict(body, "text")},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": echoed_tools(body.get("tools")),
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": encode_usage(usage or Usage()) if done else None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def response_status(reason: FinishReason | None) -> tuple[str, str | None]:
    incomplete = INCOMPLETE_REASONS.get(reason or "stop")
    return ("incomplete" if incomplete else "completed"), incomplete


def encode_response(response: ChatResponse, body: dict[str, Any]) -> dict[str, Any]:
    """ChatResponse -> a Response object (choice 0: a Response has one), echoing `body`."""
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice is not None else Message(role="assistant")
    status, incomplete = response_status(choice.finish_reason if choice is not None else None)
    output = [reasoning_item(new_id("rs_"), r.text, r.signer, r.signature, r.redacted) for r in message.reasoning]
    text = message.text()
    if text:
        output.append(message_item(new_id("msg_"), text, "incomplete" if incomplete else "completed"))
    names = ToolNames(body.get("tools"))
    signatures: dict[str, tuple[str, str]] = {}
    for call in message.tool_calls:
        call_id = call.id or new_id("call_")
        namespace, name = names.origin(call.name)
        output.append(call_item(call_id, name, call.arguments, names.is_custom(call.name), "completed", namespace))
        if call.signature is not None and call.signer is not None:
            signatures[call_id] = (call.signer, call.signature)
    output += [reasoning_item(new_id("rs_"), "", signer, None, None, calls) for signer, calls in by_signer(signatures)]
    return build_response(
        body,
        id=response_id(response.id),
        model=response.model,
        created_at=response.created,
        status=status,
        output=output,
        usage=response.usage,
        incomplete_reason=incomplete,
    )


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def message_item(id: str, text: str | None, status: str) -> dict[str, Any]:
    """A message output item; `text` None for the empty item that opens a stream."""
    content = [] if text is None else [output_text_part(text)]
    return {"id": id, "type": "message", "status": status, "content": content, "role": "assistant"}


def by_signer(signatures: dict[str, tuple[str, str]]) -> list[tuple[str, dict[str, str]]]:
    """Call signatures (call id -> (signer, signature)) grouped by signer: one carrier item each."""
    groups: dict[str, dict[str, str]] = {}
    for call_id, (signer, signature) in signatures.items():
        groups.setdefault(signer, {})[call_id] = signature
    return list(groups.items())


def reasoning_item(
    id: str,
    text: str,
    signer: str | None,
    signature: str | None,
    redacted: str | None,
    call_signatures: dict[str, str] | None = None,
) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text else []
    item: dict[str, Any] = {"id": id, "type": "reasoning", "summary": summary}
    token = encode_reasoning_token(signer, signature, redacted, call_signatures)
    if token is not None:
        item["encrypted_content"] = token
    return item


def call_item(
    call_id: str, name: str, arguments: str, custom: bool, status: str, namespace: str | None = None
) -> dict[str, Any]:
    """A function_call item, or a custom_tool_call item for a call to a custom tool; a call to a
    namespace's tool names its namespace, as the Responses API does."""
    if custom:
        item = {
            "id": "ctc_" + call_id.removeprefix("call_"), "type": "custom_tool_call", "status": status,
            "call_id": call_id, "name": name, "input": custom_input(arguments),
        }  # fmt: skip
    else:
        item = {
            "id": "fc_" + call_id.removeprefix("call_"), "type": "function_call", "status": status,
            "arguments": arguments, "call_id": call_id, "name": name,
        }  # fmt: skip
    if namespace is not None:
        item["namespace"] = namespace
    return item


# --- usage ---------------------------------------------------------------------------------------


def encode_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens or 0,
            "cache_write_tokens": usage.cache_creation_input_tokens or 0,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": usage.total_tokens,
    }



def usage_in(data: Any) -> Any:
    """The raw usage object in a Response body or a terminal stream event (in its response)."""
    if not isinstance(data, dict):
        return None
    response = data.get("response")
    return data.get("usage") or (response.get("usage") if isinstance(response, dict) else None)


def decode_usage(usage: Any) -> Usage | None:
    """A Responses `usage` object -> canonical (input tokens include cached ones in both)."""
    if not isinstance(usage, dict):
        return None
    input_details = usage.get("input_tokens_details")
    output_details = usage.get("output_tokens_details")
    input_details = input_details if isinstance(input_details, dict) else {}
    output_details = output_details if isinstance(output_details, dict) else {}
    return Usage(
        input_tokens=_token_count(usage.get("input_tokens")) or 0,
        output_tokens=_token_count(usage.get("output_tokens")) or 0,
        cached_input_tokens=_token_count(input_details.get("cached_tokens")),
        cache_creation_input_tokens=_token_count(input_details.get("cache_write_tokens")),
        reasoning_tokens=_token_count(output_details.get("reasoning_tokens")),
    )


def _token_count(value: Any) -> int | None:
    """A count an upstream reported, or None when it is not one (a string, a float, a boolean, a
    negative number, more than a record's 32-bit column holds): usage feeds limits and records,
    where such a value would crash them or corrupt them."""
    return value if type(value) is int and 0 <= value < 2**31 else None


def usage_from_event(data: bytes) -> Usage | None:
    """Canonical usage from the JSON of a terminal stream event (response.completed, .incomplete,
    .failed) or of a whole Response object; None from anything else."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    if payload.get("type") in TERMINAL_EVENTS:
        payload = payload.get("response")
    elif payload.get("object") != "response":
        return None
    return decode_usage(payload.get("usage")) if isinstance(payload, dict) else None
