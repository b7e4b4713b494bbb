"""Anthropic Messages wire format <-> canonical model.

Used from both sides: the Anthropic provider encodes requests and decodes responses and streams; the
Anthropic client-facing surface decodes client requests and encodes responses and streams. One module
per wire format, so each mapping is written once.

What Anthropic requires that the canonical model does not: `max_tokens` always; the system prompt at
the top level; strict user/assistant alternation; tool results in the user turn right after the
assistant's tool calls; no empty text blocks; thinking blocks only with their signature, and only
with a signature Anthropic minted: another vendor's reaches an Anthropic client sealed (see
`aigw.canonical`) and never goes upstream.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from aigw.canonical import (
    ChatRequest, ChatResponse, Choice, FilePart, Finish, FinishReason, ImagePart, Message, Part, Reasoning,
    ReasoningDelta, ResponseFormat, StreamEvent, StreamStart, TextDelta, TextPart, Tool, ToolCall, ToolCallDelta,
    ToolChoice, Usage, UsageEvent, signature_for_client, signature_from_client,
)  # fmt: skip
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.sse import SSEEvent, sse_frame

WIRE = "anthropic"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; canonical requests may leave it out

# Top-level fields with a canonical meaning, and the JSON types each accepts (checked on every path,
# pass-through included, so a wrong type is a clear 400 naming the field whatever the destination).
_NUMBER = (int, float)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "max_tokens": (int,), "messages": (list,), "system": (str, list), "tools": (list,),
    "tool_choice": (dict,), "temperature": _NUMBER, "top_p": _NUMBER, "stop_sequences": (list,),
    "stream": (bool,), "metadata": (dict,),
}  # fmt: skip
# Canonical request attributes Anthropic takes as they are, by Anthropic field name. Canonical `seed`
# and `include_usage` have no Anthropic counterpart and are dropped; `reasoning_effort` maps to
# `thinking` (see `_thinking`).
SCALAR_FIELDS = {"temperature": "temperature", "top_p": "top_p", "stop": "stop_sequences"}
# Canonical request field -> the Messages field a client sets it with, where the two differ: an error
# a provider raises about a canonical field is reported to an Anthropic client under this name.
# (`messages` too: canonical messages do not count as Anthropic's do, so only the field is named.)
PARAM_NAMES = {
    "messages": "messages", "stop": "stop_sequences", "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
    "user": "metadata.user_id", "reasoning_effort": "thinking",
}  # fmt: skip
# tool_choice.type -> canonical mode, and back.
TOOL_CHOICE_MODES = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
TOOL_CHOICE_TYPES = {mode: kind for kind, mode in TOOL_CHOICE_MODES.items()}
# What /v1/messages/count_tokens takes of a Messages request (it refuses max_tokens, stream, ...).
COUNT_TOKENS_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"})
# Fields without a canonical meaning (kept in `extra`) whose type is still worth checking.
EXTRA_FIELD_TYPES: dict[str, tuple[type, ...]] = {"top_k": (int,), "thinking": (dict,)}
_TYPE_NAMES = {str: "a string", list: "an array", dict: "an object", bool: "a boolean", int: "an integer"}
# "system" inside `messages`: Claude Code sends mid-conversation system messages (for models it does
# not know by name) besides the top-level system prompt.
ROLES = ("user", "assistant", "system")

# reasoning_effort -> thinking.budget_tokens (Anthropic's minimum budget is 1024). Decoding a budget
# takes the smallest of the efforts every reasoning provider knows (low, medium, high) that covers it.
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576, "xhigh": 32768}
DECODED_EFFORTS = ("low", "medium", "high")
MIN_THINKING_BUDGET = 1024
# Models that think: Claude 3.7 and every Claude 4 and later (their names carry the version).
_THINKING_MODEL = re.compile(r"claude-(3-7|[a-z]+-[4-9]|[4-9])")

# stop_reason -> canonical finish reason, and back (canonical reasons have one Anthropic spelling).
STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}  # fmt: skip
FINISH_REASONS: dict[str, str] = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal",
    "error": "end_turn",  # Anthropic has no "error" stop reason
}  # fmt: skip


def _type_name(types: tuple[type, ...]) -> str:
    if types == _NUMBER:
        return "a number"
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _check_type(body: dict[str, Any], field: str, types: tuple[type, ...]) -> None:
    value = body.get(field)
    # bool is an int in Python; only "a boolean" fields may hold one.
    if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
        raise invalid(f"Invalid type for '{field}': expected {_type_name(types)}.", field)


def validate_request(body: Any) -> None:
    """The checks every Messages request gets, translated or passed through: required fields, field
    types, message roles and content types. Cheap: a handful of isinstance calls."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    for field, types in (*FIELD_TYPES.items(), *EXTRA_FIELD_TYPES.items()):
        _check_type(body, field, types)
    for field in ("model", "max_tokens"):
        if body.get(field) is None:
            raise invalid(f"Missing required parameter: '{field}'.", field)
    messages = body.get("messages")
    if not messages:
        raise invalid("Missing required parameter: 'messages' (a non-empty array).", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]")
        if message.get("role") not in ROLES:
            raise invalid(f"Invalid value for 'messages[{i}].role': expected user, assistant or system.", f"messages[{i}].role")
        if not isinstance(message.get("content"), (str, list)):
            where = f"messages[{i}].content"
            raise invalid(f"Invalid type for '{where}': expected a string or an array of content blocks.", where)


# --- requests: Anthropic -> canonical ------------------------------------------------------------


def decode_request(body: Any) -> ChatRequest:
    """A client's Messages body -> ChatRequest (validated; 400 naming the field otherwise)."""
    validate_request(body)
    messages: list[Message] = []
    system = _decode_system(body.get("system"))
    if system is not None:
        messages.append(system)
    for i, message in enumerate(body["messages"]):
        messages.extend(_decode_message(message, f"messages[{i}]"))
    tool_choice, parallel = _decode_tool_choice(body.get("tool_choice"))
    stop = body.get("stop_sequences") or []
    if not all(isinstance(s, str) for s in stop):
        raise invalid("Invalid type for 'stop_sequences': expected an array of strings.", "stop_sequences")
    metadata = body.get("metadata") or {}
    return ChatRequest(
        model=body["model"],
        messages=messages,
        tools=[_decode_tool(t, f"tools[{i}]") for i, t in enumerate(body.get("tools") or [])],
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        max_tokens=body["max_tokens"],
        stop=list(stop),
        user=metadata.get("user_id") if isinstance(metadata.get("user_id"), str) else None,
        reasoning_effort=_decode_thinking(body.get("thinking")),
        stream=bool(body.get("stream")),
        include_usage=True,  # Anthropic streams always carry usage
        extra={k: v for k, v in body.items() if k not in FIELD_TYPES},
        extra_wire=WIRE,
    )


def _decode_thinking(thinking: Any) -> str | None:
    """`thinking` -> a reasoning effort, for providers that take one (an Anthropic destination gets
    the original `thinking` back from `extra`)."""
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return "medium"
    return next((effort for effort in DECODED_EFFORTS if budget <= THINKING_BUDGETS[effort]), "high")


def _blocks(content: Any, where: str) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{where}': expected a string or an array of content blocks.", where)
    return content


def _block_type(block: Any, where: str) -> str:
    if not isinstance(block, dict):
        raise invalid(f"Invalid type for '{where}': expected an object.", where)
    kind = block.get("type")
    if not isinstance(kind, str):
        raise invalid(f"Missing required parameter: '{where}.type'.", f"{where}.type")
    return kind


def _required_str(block: dict[str, Any], key: str, where: str) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise invalid(f"Missing required parameter: '{where}.{key}'.", f"{where}.{key}")
    return value


def _decode_system(system: Any, at: str = "system") -> Message | None:
    if system is None or system == "":
        return None
    parts: list[Part] = []
    for i, block in enumerate(_blocks(system, at)):
        where = f"{at}[{i}]"
        if _block_type(block, where) != "text":
            raise invalid(f"Invalid value for '{where}.type': system blocks must be text.", f"{where}.type")
        parts.append(TextPart(text=_required_str(block, "text", where)))
    return Message(role="system", content=parts)


def _decode_message(message: dict[str, Any], where: str) -> list[Message]:
    """One Anthropic message -> canonical messages: a user turn's tool results become "tool" messages
    (in their place), its other blocks a user message; an assistant turn stays one message."""
    if message["role"] == "system":
        system = _decode_system(message["content"], f"{where}.content")
        return [system] if system is not None else []
    blocks = _blocks(message["content"], f"{where}.content")
    if message["role"] == "user":
        out: list[Message] = []
        parts: list[Part] = []
        for i, block in enumerate(blocks):
            block_where = f"{where}.content[{i}]"
            if _block_type(block, block_where) == "tool_result":
                if parts:
                    out.append(Message(role="user", content=parts))
                    parts = []
                out.append(_decode_tool_result(block, block_where))
            else:
                parts.append(_decode_part(block, block_where))
        if parts or not out:
            out.append(Message(role="user", content=parts))
        return out
    content: list[Part] = []
    calls: list[ToolCall] = []
    reasoning: list[Reasoning] = []
    for i, block in enumerate(blocks):
        block_where = f"{where}.content[{i}]"
        kind = _block_type(block, block_where)
        if kind == "text":
            content.append(TextPart(text=_required_str(block, "text", block_where)))
        elif kind == "tool_use":
            call_id, name = _required_str(block, "id", block_where), _required_str(block, "name", block_where)
            arguments = orjson.dumps(block.get("input") if block.get("input") is not None else {}).decode()
            calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
        elif kind == "thinking":
            text = _required_str(block, "thinking", block_where)
            signature = block.get("signature")
            signer, signature = signature_from_client(WIRE, signature if isinstance(signature, str) else None)
            reasoning.append(Reasoning(text=text, signature=signature, signer=signer))
        elif kind == "redacted_thinking":
            signer, data = signature_from_client(WIRE, _required_str(block, "data", block_where))
            if data is not None:
                reasoning.append(Reasoning(redacted=data, signer=signer))
        else:
            raise _unsupported_block(kind, block_where)
    return [Message(role="assistant", content=content, tool_calls=calls, reasoning=reasoning)]


def _unsupported_block(kind: str, where: str) -> GatewayError:
    return invalid(f"Unsupported content block type '{kind}' at '{where}' for this endpoint's provider.", f"{where}.type")


def _decode_tool_result(block: dict[str, Any], where: str) -> Message:
    content = block.get("content")
    parts: list[Part] = []
    if content is not None:
        parts = [_decode_part(b, f"{where}.content[{i}]") for i, b in enumerate(_blocks(content, f"{where}.content"))]
    call_id = _required_str(block, "tool_use_id", where)
    return Message(role="tool", content=parts, tool_call_id=call_id, is_error=bool(block.get("is_error")))


def _decode_part(block: Any, where: str) -> Part:
    kind = _block_type(block, where)
    if kind == "text":
        return TextPart(text=_required_str(block, "text", where))
    source = block.get("source")
    if kind not in ("image", "document"):
        raise _unsupported_block(kind, where)
    if not isinstance(source, dict):
        raise invalid(f"Missing required parameter: '{where}.source'.", f"{where}.source")
    source_type = source.get("type")
    swhere = f"{where}.source"
    if kind == "image":
        if source_type == "base64":
            media_type = _required_str(source, "media_type", swhere)
            return ImagePart(url=f"data:{media_type};base64,{_required_str(source, 'data', swhere)}")
        if source_type == "url":
            return ImagePart(url=_required_str(source, "url", swhere))
        raise invalid(f"Unsupported image source type '{source_type}' at '{swhere}'.", f"{swhere}.type")
    title = block.get("title") if isinstance(block.get("title"), str) else None
    if source_type == "base64":
        media_type = _required_str(source, "media_type", swhere)
        return FilePart(media_type=media_type, data=_required_str(source, "data", swhere), filename=title)
    if source_type == "text":
        # Canonical file data is base64; plain-text documents are encoded so they round-trip.
        text = _required_str(source, "data", swhere)
        return FilePart(media_type="text/plain", data=base64.b64encode(text.encode()).decode(), filename=title)
    if source_type == "url":
        return FilePart(url=_required_str(source, "url", swhere), filename=title)
    if source_type == "file":
        return FilePart(file_id=_required_str(source, "file_id", swhere), filename=title)
    raise invalid(f"Unsupported document source type '{source_type}' at '{swhere}'.", f"{swhere}.type")


def _decode_tool(tool: Any, where: str) -> Tool:
    if not isinstance(tool, dict):
        raise invalid(f"Invalid type for '{where}': expected an object.", where)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise invalid(f"Unsupported tool type '{kind}' at '{where}' for this endpoint's provider.", f"{where}.type")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise invalid(f"Missing required parameter: '{where}.input_schema'.", f"{where}.input_schema")
    description, strict = tool.get("description"), tool.get("strict")
    description = description if isinstance(description, str) else None
    strict = strict if isinstance(strict, bool) else None
    return Tool(name=_required_str(tool, "name", where), description=description, parameters=schema, strict=strict)


def _decode_tool_choice(choice: Any) -> tuple[ToolChoice | None, bool | None]:
    if choice is None:
        return None, None
    mode = TOOL_CHOICE_MODES.get(choice.get("type"))
    if mode is None:
        raise invalid("Invalid value for 'tool_choice.type': expected auto, any, tool or none.", "tool_choice.type")
    name = _required_str(choice, "name", "tool_choice") if mode == "tool" else None
    parallel = False if choice.get("disable_parallel_tool_use") is True and mode != "none" else None
    return ToolChoice(mode=mode, name=name), parallel  # type: ignore[arg-type]


# --- requests: canonical -> Anthropic ------------------------------------------------------------


def encode_request(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """ChatRequest -> an upstream Messages body for `model`."""
    if request.n is not None and request.n > 1:
        raise invalid("This endpoint's provider returns one choice per request: 'n' must be 1.", "n")
    body: dict[str, Any] = dict(request.extra) if request.extra_wire == WIRE else {}
    body["model"] = model
    body["max_tokens"] = request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS
    system = _system_prompt(request)
    if system:
        body["system"] = system
    body["messages"] = encode_messages(request.messages)
    if request.tools:
        body["tools"] = [_encode_tool(t) for t in request.tools]
        choice = _encode_tool_choice(request.tool_choice, request.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    output_format = _native_output_format(request.response_format)
    if output_format is not None:
        config = body.get("output_config")
        body["output_config"] = {**(config if isinstance(config, dict) else {}), "format": output_format}
    for attribute, field in SCALAR_FIELDS.items():
        value = getattr(request, attribute)
        if value is not None and value != []:
            body[field] = value
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if "thinking" not in body:
        body.update(_thinking(request, model, body["max_tokens"]))
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


def _thinking(request: ChatRequest, model: str, max_tokens: int) -> dict[str, Any]:
    """reasoning_effort -> `thinking` with a token budget, only where Anthropic accepts it: a model
    that thinks, no sampling settings (thinking requires the defaults), no forced tool, and room in
    max_tokens (the budget counts against it: raised when the client left it unset). Elsewhere the
    effort is dropped rather than turned into an error."""
    effort = request.reasoning_effort
    if effort not in THINKING_BUDGETS or not _THINKING_MODEL.search(model):
        return {}
    if request.temperature not in (None, 1) or request.top_p is not None:
        return {}
    if request.tool_choice is not None and request.tool_choice.mode in ("required", "tool"):
        return {}
    budget = THINKING_BUDGETS[effort]
    out: dict[str, Any] = {}
    if request.max_tokens is None:
        out["max_tokens"] = max_tokens + budget
    elif budget >= max_tokens:
        budget = max_tokens - 1
        if budget < MIN_THINKING_BUDGET:
            return {}
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return out


def _native_output_format(value: ResponseFormat | None) -> dict[str, Any] | None:
    """Anthropic's structured outputs (`output_config.format`) accept only schemas written for
    constrained decoding (every object closed with additionalProperties: false, ...): the ones an
    OpenAI client marks `strict`. Other JSON requests go into the system prompt instead."""
    if value is not None and value.type == "json_schema" and value.strict and value.schema is not None:
        return {"type": "json_schema", "schema": value.schema}
    return None


def _system_prompt(request: ChatRequest) -> str:
    """Every canonical system message (wherever it stood) joined, plus a JSON instruction when the
    client asked for JSON that `output_config` cannot guarantee."""
    texts = [m.paragraphs() for m in request.messages if m.role == "system"]
    value = request.response_format
    if value is not None and _native_output_format(value) is None:
        if value.type == "json_schema" and value.schema is not None:
            schema = orjson.dumps(value.schema).decode()
            texts.append(f"Respond only with a JSON object matching this JSON schema, with no other text: {schema}")
        elif value.type in ("json_object", "json_schema"):
            texts.append("Respond only with a valid JSON object, with no other text.")
    return "\n\n".join(t for t in texts if t)


def encode_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Canonical messages (system ones left out) -> alternating Anthropic turns: consecutive messages
    of one role merge, tool results join the user turn (first in it, as Anthropic requires)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _encode_blocks(message)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    if not out:
        raise invalid("At least one user or assistant message with content is required.", "messages")
    for turn in out:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")  # stable: results first
    last = out[-1]["content"]
    if out[-1]["role"] == "assistant" and last[-1]["type"] == "text":
        # A prefill: Anthropic rejects one that ends in whitespace.
        last[-1] = {"type": "text", "text": last[-1]["text"].rstrip()}
        if not last[-1]["text"]:
            last.pop()
            if not last:
                out.pop()
    return out


def _encode_blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [_encode_tool_result(message)]
    if message.role != "assistant":
        return [_encode_part(p) for p in message.content if not (isinstance(p, TextPart) and not p.text)]
    return assistant_blocks(message, upstream=True)


def _thinking_blocks(reasoning: Reasoning, upstream: bool) -> list[dict[str, Any]]:
    """One reasoning -> its thinking block. Upstream, only reasoning Anthropic signed (anything else
    is refused: unsigned reasoning, another vendor's signature or encrypted reasoning). For a
    client, every reasoning, another vendor's signature sealed, so that it comes back as theirs."""
    if upstream:
        if reasoning.signer != WIRE:
            return []
        signature, redacted = reasoning.signature, reasoning.redacted
    else:
        signature = signature_for_client(WIRE, reasoning.signer, reasoning.signature)
        redacted = signature_for_client(WIRE, reasoning.signer, reasoning.redacted)
    if redacted:
        return [{"type": "redacted_thinking", "data": redacted}]
    if signature or (not upstream and reasoning.text):
        return [{"type": "thinking", "thinking": reasoning.text, "signature": signature or ""}]
    return []


def assistant_blocks(message: Message, upstream: bool) -> list[dict[str, Any]]:
    """An assistant message's content blocks, in Anthropic's order: thinking, text, tool calls;
    `upstream` for a request to Anthropic, else for a response to a client."""
    blocks = [block for reasoning in message.reasoning for block in _thinking_blocks(reasoning, upstream)]
    blocks.extend({"type": "text", "text": p.text} for p in message.content if isinstance(p, TextPart) and p.text)
    blocks.extend(
        {"type": "tool_use", "id": c.id or new_tool_id(), "name": c.name, "input": parse_arguments(c.arguments)}
        for c in message.tool_calls
    )
    return blocks


def parse_arguments(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as the object Anthropic requires; a model's invalid JSON becomes {}."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _encode_tool_result(message: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
    content = [_encode_part(p) for p in message.content if not (isinstance(p, TextPart) and not p.text)]
    if len(content) == 1 and content[0]["type"] == "text":
        block["content"] = content[0]["text"]
    elif content:
        block["content"] = content
    if message.is_error:
        block["is_error"] = True
    return block


def _encode_part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        if part.is_inline:
            media_type, data = part.inline_data()
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    block: dict[str, Any] = {"type": "document", "source": _document_source(part)}
    if part.filename:
        block["title"] = part.filename
    return block


def _document_source(part: FilePart) -> dict[str, Any]:
    if part.data is not None:
        if part.media_type == "text/plain":
            try:
                text = base64.b64decode(part.data, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise invalid("A text/plain file part must carry base64-encoded UTF-8 text.", "messages") from None
            return {"type": "text", "media_type": "text/plain", "data": text}
        return {"type": "base64", "media_type": part.media_type or "application/pdf", "data": part.data}
    if part.url:
        return {"type": "url", "url": part.url}
    if part.file_id:
        return {"type": "file", "file_id": part.file_id}
    raise invalid("A file part needs data, a URL or a file id.", "messages")


def _encode_tool(tool: Tool) -> dict[str, Any]:
    # `strict` is left out: Anthropic accepts it only for schemas fit for constrained decoding,
    # and without it the call still works.
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    return out


def _encode_tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None and parallel is not False:
        return None
    choice = choice or ToolChoice(mode="auto")
    out: dict[str, Any] = {"type": TOOL_CHOICE_TYPES[choice.mode]}
    if choice.mode == "tool":
        out["name"] = choice.name or ""
    if parallel is False and choice.mode != "none":
        out["disable_parallel_tool_use"] = True
    return out


# --- responses -----------------------------------------------------------------------------------



def usage_in(data: Any) -> Any:
    """The raw usage object in a response body or a stream event: message_start carries it in its
    message (input tokens), message_delta at the top (the final output tokens)."""
    if not isinstance(data, dict):
        return None
    message = data.get("message")
    return data.get("usage") or (message.get("usage") if isinstance(message, dict) else None)


def decode_usage(usage: Any) -> Usage | None:
    """Anthropic usage -> canonical. Anthropic's input_tokens leaves out cache reads and writes;
    canonical input_tokens is the whole input."""
    if not isinstance(usage, dict):
        return None
    cached = usage.get("cache_read_input_tokens")
    created = usage.get("cache_creation_input_tokens")
    details = usage.get("output_tokens_details")
    return Usage(
        input_tokens=(usage.get("input_tokens") or 0) + (cached or 0) + (created or 0),
        output_tokens=usage.get("output_tokens") or 0,
        cached_input_tokens=cached,
        cache_creation_input_tokens=created,
        reasoning_tokens=details.get("thinking_tokens") if isinstance(details, dict) else None,
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    cached = usage.cached_input_tokens or 0
    created = usage.cache_creation_input_tokens or 0
    out: dict[str, Any] = {
        "input_tokens": max(usage.input_tokens - cached - created, 0),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.output_tokens,
    }
    if usage.reasoning_tokens is not None:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def decode_stop_reason(stop_reason: Any) -> FinishReason | None:
    return None if stop_reason is None else STOP_REASONS.get(stop_reason, "stop")


def encode_stop_reason(reason: FinishReason | None, has_tool_calls: bool) -> str:
    # Some providers finish a tool-calling turn with "stop"; Anthropic clients run tools on tool_use.
    if has_tool_calls and reason in (None, "stop"):
        return "tool_use"
    return FINISH_REASONS.get(reason or "stop", "end_turn")


def decode_response(data: dict[str, Any]) -> ChatResponse:
    content: list[Part] = []
    calls: list[ToolCall] = []
    reasoning: list[Reasoning] = []
    for block in data.get("content") or ():
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            content.append(TextPart(text=block["text"]))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(ToolCall(id=block.get("id") or "", name=block.get("name") or "", arguments=arguments))
        elif kind == "thinking":
            text, signature = block.get("thinking") or "", block.get("signature") or None
            reasoning.append(Reasoning(text=text, signature=signature, signer=_signer(signature)))
        elif kind == "redacted_thinking":
            reasoning.append(Reasoning(redacted=block.get("data") or "", signer=WIRE))
        # server-tool blocks (web search, code execution, ...) have no canonical meaning
    message = Message(role="assistant", content=content, tool_calls=calls, reasoning=reasoning)
    return ChatResponse(
        id=data.get("id") or new_id(),
        model=data.get("model") or "",
        created=int(time.time()),
        choices=[Choice(index=0, message=message, finish_reason=decode_stop_reason(data.get("stop_reason")))],
        usage=decode_usage(data.get("usage")),
    )


def encode_response(response: ChatResponse, model: str | None = None) -> dict[str, Any]:
    """ChatResponse -> a Messages response body (the first choice: Anthropic has one)."""
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice is not None else Message(role="assistant")
    # Reasoning from other vendors is shown too, their signatures sealed (unsigned: an empty one):
    # clients display it, and what a client sends back goes only to the vendor that signed it.
    content = assistant_blocks(message, upstream=False)
    return {
        "id": message_id(response.id),
        "type": "message",
        "role": "assistant",
        "model": model or response.model,
        "content": content,
        "stop_reason": encode_stop_reason(choice.finish_reason if choice else None, bool(message.tool_calls)),
        "stop_sequence": None,
        "usage": encode_usage(response.usage or Usage()),
    }


def _signer(signature: str | None) -> str | None:
    return WIRE if signature is not None else None


def new_id() -> str:
    return "msg_" + secrets.token_hex(12)


def new_tool_id() -> str:
    return "toolu_" + secrets.token_hex(12)


def message_id(id: str) -> str:
    """An Anthropic-looking message id for a canonical id from any provider."""
    return id if id.startswith("msg_") else f"msg_{id}" if id else new_id()


# --- streams: Anthropic -> canonical -------------------------------------------------------------


class StreamDecoder:
    """Anthropic Messages SSE events -> canonical stream events.

    Anthropic numbers content blocks across kinds; canonical tool calls are numbered among tool calls
    only, so the decoder remembers each block's kind and tool number. Usage is cumulative: the one
    UsageEvent goes out at message_stop (or at the end of the stream) with input and output."""

    def __init__(self) -> None:
        self._started = False
        self._blocks: dict[int, tuple[str, int]] = {}  # block index -> (type, tool number)
        self._tools = 0
        self._usage: dict[str, Any] = {}
        self._finished = False
        self._usage_sent = False
        self._handlers: dict[str | None, Callable[[dict[str, Any]], list[StreamEvent]]] = {
            "content_block_delta": self._delta,
            "content_block_start": self._block_start,
            "message_start": self._message_start,
            "message_delta": self._message_delta,
            "message_stop": lambda _: self._usage_event(),
            "error": _raise_stream_error,
        }

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if not event.data:
            return []
        data = orjson.loads(event.data)
        handler = self._handlers.get(data.get("type") or event.event)
        # ping, content_block_stop and event types added later need nothing
        return handler(data) if handler is not None else []

    def finish(self) -> list[StreamEvent]:
        if not self._started:
            return []
        events: list[StreamEvent] = []
        if not self._finished:
            self._finished = True
            events.append(Finish(reason="tool_calls" if self._tools else "stop"))
        return events + self._usage_event()

    def _message_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        message = data.get("message") or {}
        self._started = True
        self._merge_usage(message.get("usage"))
        return [StreamStart(id=message.get("id") or new_id(), model=message.get("model") or "", created=int(time.time()))]

    def _block_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        block = data.get("content_block") or {}
        kind = block.get("type") or ""
        tool = -1
        events: list[StreamEvent] = []
        if kind == "tool_use":
            tool, self._tools = self._tools, self._tools + 1
            arguments = orjson.dumps(block["input"]).decode() if block.get("input") else ""
            events.append(ToolCallDelta(tool_index=tool, id=block.get("id"), name=block.get("name"), arguments=arguments))
        elif kind == "text" and block.get("text"):
            events.append(TextDelta(text=block["text"]))
        elif kind == "thinking" and block.get("thinking"):
            events.append(ReasoningDelta(text=block["thinking"]))
        elif kind == "redacted_thinking":
            events.append(ReasoningDelta(redacted=block.get("data") or "", signer=WIRE))
        self._blocks[data.get("index", 0)] = (kind, tool)
        return events

    def _delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(text=delta.get("text") or "")]
        if kind == "input_json_delta":
            block_kind, tool = self._blocks.get(data.get("index", 0), ("", -1))
            partial = delta.get("partial_json") or ""
            if block_kind != "tool_use" or not partial:
                return []
            return [ToolCallDelta(tool_index=tool, arguments=partial)]
        if kind == "thinking_delta":
            return [ReasoningDelta(text=delta.get("thinking") or "")]
        if kind == "signature_delta":
            return [ReasoningDelta(signature=delta.get("signature") or "", signer=WIRE)]
        return []  # citations_delta and later additions

    def _message_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        self._merge_usage(data.get("usage"))
        reason = decode_stop_reason((data.get("delta") or {}).get("stop_reason"))
        if reason is None or self._finished:
            return []
        self._finished = True
        return [Finish(reason=reason)]

    def _merge_usage(self, usage: Any) -> None:
        # Counts are cumulative; a later event that leaves one out keeps the earlier value.
        if isinstance(usage, dict):
            self._usage.update((k, v) for k, v in usage.items() if v is not None)

    def _usage_event(self) -> list[StreamEvent]:
        if self._usage_sent or not self._usage:
            return []
        self._usage_sent = True
        usage = decode_usage(self._usage)
        return [UsageEvent(usage=usage)] if usage is not None else []


def _raise_stream_error(data: dict[str, Any]) -> list[StreamEvent]:
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    kind = error.get("type") or "api_error"
    message = f"The upstream stream failed: {kind}: {error.get('message') or 'no message'}"
    if kind == "overloaded_error":
        raise GatewayError(ErrorKind.OVERLOADED, message, status=502, retryable=True)
    raise GatewayError(ErrorKind.UPSTREAM_ERROR, message)


# --- streams: canonical -> Anthropic -------------------------------------------------------------


def _frame(payload: dict[str, Any]) -> bytes:
    return sse_frame(orjson.dumps(payload), payload["type"])


class StreamEncoder:
    """Canonical stream events -> Anthropic Messages SSE, in the order Anthropic's SDKs expect:
    message_start, ping, per content block start / deltas / stop, message_delta, message_stop.

    Canonical deltas may interleave kinds; a block closes when the kind or the tool call changes.
    message_delta waits for `finish()` so that it carries the usage, which arrives last. Only choice 0
    is rendered (an Anthropic message has one)."""

    def __init__(self, model: str | None = None) -> None:
        self._model = model
        self._started = False
        self._index = -1  # index of the last block opened
        self._open: str | None = None  # type of the open block
        self._open_tool = -1
        self._signed = False  # the open thinking block got its signature: the next text opens a new one
        self._tool_ids: dict[int, tuple[str, str]] = {}
        self._reason: FinishReason | None = None
        self._usage: Usage | None = None

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            return self._start(event.id, event.model)
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return b""
        if event.index != 0:
            return b""
        out = b"" if self._started else self._start(new_id(), "")
        if isinstance(event, TextDelta):
            if not event.text:
                return out
            if self._open != "text":
                out += self._open_block("text", {"type": "text", "text": ""})
            return out + self._delta({"type": "text_delta", "text": event.text})
        if isinstance(event, ReasoningDelta):
            return out + self._reasoning(event)
        if isinstance(event, ToolCallDelta):
            return out + self._tool_call(event)
        if isinstance(event, Finish):
            self._reason = event.reason
            return out + self._close()
        return out

    def finish(self) -> bytes:
        out = b"" if self._started else self._start(new_id(), "")
        out += self._close()
        usage = encode_usage(self._usage) if self._usage is not None else {"output_tokens": 0}
        stop_reason = encode_stop_reason(self._reason, bool(self._tool_ids))
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        out += _frame({"type": "message_delta", "delta": delta, "usage": usage})
        return out + _frame({"type": "message_stop"})

    def error(self, error: GatewayError) -> bytes:
        return encode_error_event(error)

    def _start(self, id: str, model: str) -> bytes:
        self._started = True
        message = {
            "id": message_id(id),
            "type": "message",
            "role": "assistant",
            "model": self._model or model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Input tokens are not known yet: message_delta carries the real counts.
            "usage": {**encode_usage(Usage()), "output_tokens": 1},
        }
        return _frame({"type": "message_start", "message": message}) + _frame({"type": "ping"})

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        out = b""
        if event.redacted is not None:
            data = signature_for_client(WIRE, event.signer, event.redacted)
            if data is None:
                return out
            out += self._open_block("redacted_thinking", {"type": "redacted_thinking", "data": data})
            return out + self._close()
        signature = signature_for_client(WIRE, event.signer, event.signature)  # sealed if another vendor's
        if not event.text and signature is None:
            return out
        if self._open != "thinking" or self._signed:
            out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if event.text:
            out += self._delta({"type": "thinking_delta", "thinking": event.text})
        if signature is not None:
            self._signed = True
            out += self._delta({"type": "signature_delta", "signature": signature})
        return out

    def _tool_call(self, event: ToolCallDelta) -> bytes:
        out = b""
        if self._open != "tool_use" or self._open_tool != event.tool_index:
            known = self._tool_ids.get(event.tool_index)
            call_id = event.id or (known[0] if known else new_tool_id())
            name = event.name or (known[1] if known else "")
            self._tool_ids[event.tool_index] = (call_id, name)
            out += self._open_block("tool_use", {"type": "tool_use", "id": call_id, "name": name, "input": {}})
            self._open_tool = event.tool_index
        if event.arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": event.arguments})
        return out

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._open, self._signed, self._open_tool = kind, False, -1
        return out + _frame({"type": "content_block_start", "index": self._index, "content_block": block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _frame({"type": "content_block_delta", "index": self._index, "delta": delta})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _frame({"type": "content_block_stop", "index": self._index})


# --- errors --------------------------------------------------------------------------------------

ERROR_TYPES: dict[ErrorKind, str] = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error", ErrorKind.POLICY: "invalid_request_error",
    ErrorKind.AUTHENTICATION: "authentication_error",
    ErrorKind.PERMISSION: "permission_error", ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.REQUEST_TOO_LARGE: "request_too_large", ErrorKind.RATE_LIMIT: "rate_limit_error",
    ErrorKind.UPSTREAM_ERROR: "api_error", ErrorKind.UPSTREAM_UNAVAILABLE: "api_error",
    ErrorKind.UPSTREAM_TIMEOUT: "timeout_error", ErrorKind.OVERLOADED: "overloaded_error",
    ErrorKind.INTERNAL: "api_error",
}  # fmt: skip


def error_status(error: GatewayError) -> int:
    # Anthropic's clients know 529 as "overloaded, retry later": keep it whatever status was chosen.
    return 529 if error.kind is ErrorKind.OVERLOADED else error.status


def encode_error(error: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES[error.kind], "message": error.message}}


def encode_error_event(error: GatewayError) -> bytes:
    """An error after the stream has started: Anthropic sends it as an `error` event."""
    return _frame(encode_error(error))
