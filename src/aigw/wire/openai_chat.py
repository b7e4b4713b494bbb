"""OpenAI chat-completions wire format <-> canonical model.

Used from both sides: the unified surface decodes client requests and encodes responses and streams;
the OpenAI-family providers encode requests and decode responses and streams. One module per wire
format, so each mapping is written once.
"""

from __future__ import annotations

import mimetypes
import time
from typing import Any

import orjson

from aigw.canonical import (
    ChatRequest,
    ChatResponse,
    Choice,
    FilePart,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningDelta,
    ResponseFormat,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    UsageEvent,
)
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.sse import SSEEvent, sse_frame

WIRE = "openai_chat"

# Top-level fields with a canonical meaning, and the JSON types each accepts (checked on every path,
# pass-through included, so a wrong type is a clear 400 naming the field whatever the destination).
_NUMBER = (int, float)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "messages": (list,),
    "tools": (list,),
    "tool_choice": (str, dict),
    "parallel_tool_calls": (bool,),
    "response_format": (dict,),
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "max_tokens": (int,),
    "max_completion_tokens": (int,),
    "stop": (str, list),
    "n": (int,),
    "seed": (int,),
    "user": (str,),
    "stream": (bool,),
    "stream_options": (dict,),
    "reasoning_effort": (str,),
}
# Canonical request field -> the field a client of this wire sets it with, for errors a provider
# raises about a canonical field: none to rename, canonical names are this wire's (and its messages
# and tools decode one for one, so their indexes hold too).
PARAM_NAMES: dict[str, str] = {}
_TYPE_NAMES = {str: "a string", list: "an array", dict: "an object", bool: "a boolean", int: "an integer"}
ROLES = ("system", "developer", "user", "assistant", "tool")
# Content parts that are text under another name: part type -> the field holding the text. An
# assistant message replayed from a refused answer carries a `refusal` part (valid OpenAI input).
TEXT_PARTS = {"text": "text", "refusal": "refusal"}
# Upstream finish_reason -> canonical. Anything else (Together's `eos`, TGI's `eos_token`, z.ai's
# `abort`, ...) is a plain end: `stop`, or `tool_calls` when the choice made calls. Canonical
# FinishReason is a closed set other encoders index tables with, so nothing unmapped may pass.
FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",  # the legacy functions API
    "content_filter": "content_filter",
}


def _type_name(types: tuple[type, ...]) -> str:
    if types == _NUMBER:
        return "a number"
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def validate_request(body: Any) -> None:
    """The checks every chat request gets, translated or passed through: required fields, field
    types, message roles. Cheap: a handful of isinstance calls."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    for field, types in FIELD_TYPES.items():
        value = body.get(field)
        if value is None:
            continue
        # bool is an int in Python; only "a boolean" fields may hold one.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise invalid(f"Invalid type for '{field}': expected {_type_name(types)}.", field)
    # Required fields given as null are missing: the type loop above skips nulls (optional fields
    # may be null), and a null model would otherwise surface later as a 404 for endpoint 'None'.
    if body.get("model") is None:
        raise invalid("Missing required parameter: 'model'.", "model")
    messages = body.get("messages")
    if not messages:
        raise invalid("Missing required parameter: 'messages' (a non-empty array).", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]")
        if message.get("role") not in ROLES:
            raise invalid(
                f"Invalid value for 'messages[{i}].role': expected one of {', '.join(ROLES)}.", f"messages[{i}].role"
            )


# --- requests --------------------------------------------------------------------------------------


def decode_request(body: Any) -> ChatRequest:
    """A client's chat-completions body -> ChatRequest (validated; 400 naming the field otherwise)."""
    validate_request(body)
    messages = [_decode_message(m, f"messages[{i}]") for i, m in enumerate(body["messages"])]
    stop = body.get("stop")
    stream_options = body.get("stream_options") or {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    return ChatRequest(
        model=body["model"],
        messages=messages,
        tools=[_decode_tool(t, f"tools[{i}]") for i, t in enumerate(body.get("tools") or [])],
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        response_format=_decode_response_format(body.get("response_format")),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        max_tokens=max_tokens,
        stop=[stop] if isinstance(stop, str) else list(stop or []),
        n=body.get("n"),
        seed=body.get("seed"),
        user=body.get("user"),
        reasoning_effort=body.get("reasoning_effort"),
        stream=bool(body.get("stream")),
        include_usage=bool(stream_options.get("include_usage")),
        extra={k: v for k, v in body.items() if k not in FIELD_TYPES},
        extra_wire=WIRE,
    )


def _decode_message(message: dict[str, Any], where: str) -> Message:
    role = message["role"]
    content = message.get("content")
    parts = _decode_content(content, f"{where}.content")
    if role in ("system", "developer"):
        return Message(role="system", content=parts)
    if role == "user":
        if content is None:
            raise invalid(f"Missing required parameter: '{where}.content'.", f"{where}.content")
        return Message(role="user", content=parts, name=message.get("name"))
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise invalid(f"Missing required parameter: '{where}.tool_call_id'.", f"{where}.tool_call_id")
        return Message(role="tool", content=parts, tool_call_id=call_id, name=message.get("name"))
    # assistant
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise invalid(f"Invalid type for '{where}.tool_calls': expected an array.", f"{where}.tool_calls")
    reasoning_text = message.get("reasoning_content") or message.get("reasoning")
    return Message(
        role="assistant",
        content=parts + _refusal_parts(message),
        tool_calls=[_decode_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(tool_calls)],
        reasoning=[Reasoning(text=reasoning_text)] if isinstance(reasoning_text, str) and reasoning_text else [],
    )


def _decode_content(content: Any, where: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(text=content)]
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{where}': expected a string or an array of parts.", where)
    return [_decode_part(p, f"{where}[{i}]") for i, p in enumerate(content)]


def _decode_part(part: Any, where: str) -> Part:
    if not isinstance(part, dict):
        raise invalid(f"Invalid type for '{where}': expected an object.", where)
    kind = part.get("type")
    field = TEXT_PARTS.get(kind) if isinstance(kind, str) else None
    if field is not None:
        text = part.get(field)
        if not isinstance(text, str):
            raise invalid(f"Missing required parameter: '{where}.{field}'.", f"{where}.{field}")
        return TextPart(text=text)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise invalid(f"Missing required parameter: '{where}.image_url.url'.", f"{where}.image_url.url")
        detail = image.get("detail") if isinstance(image, dict) else None
        return ImagePart(url=url, detail=detail)
    if kind == "file":
        file = part.get("file")
        if not isinstance(file, dict):
            raise invalid(f"Missing required parameter: '{where}.file'.", f"{where}.file")
        data, media_type = file.get("file_data"), None
        if isinstance(data, str) and data.startswith("data:"):
            header, _, data = data.partition(",")
            media_type = header[5:].split(";", 1)[0]
        return FilePart(media_type=media_type, data=data, file_id=file.get("file_id"), filename=file.get("filename"))
    raise invalid(f"Unsupported content part type '{kind}' at '{where}' for this endpoint's provider.", f"{where}.type")


def _refusal_parts(message: dict[str, Any]) -> list[Part]:
    """An assistant message's `refusal` (a refused answer, with null content): canonical has no
    refusal, so it travels as the message's text."""
    refusal = message.get("refusal")
    return [TextPart(text=refusal)] if isinstance(refusal, str) and refusal else []


def _decode_tool_call(call: Any, where: str) -> ToolCall:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid(f"Missing required parameter: '{where}.function.name'.", f"{where}.function.name")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return ToolCall(id=str(call.get("id") or ""), name=function["name"], arguments=arguments)


def _decode_tool(tool: Any, where: str) -> Tool:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise invalid(f"Unsupported tool type '{kind}' at '{where}' for this endpoint's provider.", f"{where}.type")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid(f"Missing required parameter: '{where}.function.name'.", f"{where}.function.name")
    return Tool(
        name=function["name"],
        description=function.get("description"),
        parameters=function.get("parameters"),
        strict=function.get("strict"),
    )


def _decode_tool_choice(choice: Any) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise invalid("Invalid value for 'tool_choice': expected auto, none, required or an object.", "tool_choice")
        return ToolChoice(mode=choice)  # type: ignore[arg-type]
    function = choice.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid("Missing required parameter: 'tool_choice.function.name'.", "tool_choice.function.name")
    return ToolChoice(mode="tool", name=function["name"])


def _decode_response_format(value: Any) -> ResponseFormat | None:
    if value is None:
        return None
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise invalid("Invalid value for 'response_format.type'.", "response_format.type")
    schema = value.get("json_schema") or {}
    if not isinstance(schema, dict):
        if kind == "json_schema":
            raise invalid("Invalid type for 'response_format.json_schema': expected an object.", "response_format.json_schema")
        schema = {}  # meaningless for the other types: ignored, as it is when it is an object
    return ResponseFormat(type=kind, name=schema.get("name"), schema=schema.get("schema"), strict=schema.get("strict"))


def encode_request(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """ChatRequest -> an upstream chat-completions body for `model`."""
    body: dict[str, Any] = dict(request.extra) if request.extra_wire == WIRE else {}
    body["model"] = model
    body["messages"] = [_encode_message(m, f"messages[{i}]") for i, m in enumerate(request.messages)]
    if request.tools:
        body["tools"] = [_encode_tool(t) for t in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}} if choice.mode == "tool" else choice.mode
        )
    if request.response_format is not None:
        body["response_format"] = _encode_response_format(request.response_format)
    scalars = {
        "parallel_tool_calls": request.parallel_tool_calls,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_completion_tokens": request.max_tokens,
        "n": request.n,
        "seed": request.seed,
        "user": request.user,
        "reasoning_effort": request.reasoning_effort,
    }
    body.update((k, v) for k, v in scalars.items() if v is not None)
    if request.stop:
        body["stop"] = request.stop
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # the gateway always wants usage
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def _encode_message(message: Message, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    if message.role == "assistant":
        text = message.text()
        out["content"] = text or None
        if message.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in message.tool_calls
            ]
        return out
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
        out["content"] = message.paragraphs()
        return out
    if message.role == "system" or all(isinstance(p, TextPart) for p in message.content):
        out["content"] = message.paragraphs()
    else:
        out["content"] = [_encode_part(p, f"{where}.content[{j}]") for j, p in enumerate(message.content)]
    if message.name:
        out["name"] = message.name
    return out


def _encode_part(part: Part, where: str) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        image: dict[str, Any] = {"url": part.url}
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if part.data is None and not part.file_id:
        # Chat completions takes files inline or by id only; an empty `file` would be a confusing
        # upstream 400, so say here which part cannot go.
        raise invalid(
            f"The file at '{where}' is given by URL, which chat completions cannot take: send its data or a file id.",
            where,
        )
    media_type = part.media_type or "application/pdf"
    file: dict[str, Any] = {}
    if part.data is not None:
        file["file_data"] = f"data:{media_type};base64,{part.data}"
    if part.file_id:
        file["file_id"] = part.file_id
    if part.filename or part.data is not None:
        # OpenAI rejects file_data without a filename; Gemini inlineData and untitled Anthropic
        # documents have none, so name it after its type (document.pdf).
        file["filename"] = part.filename or "document" + (mimetypes.guess_extension(media_type) or "")
    return {"type": "file", "file": file}


def _encode_tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _encode_response_format(value: ResponseFormat) -> dict[str, Any]:
    if value.type != "json_schema":
        return {"type": value.type}
    schema: dict[str, Any] = {"name": value.name or "response"}
    if value.schema is not None:
        schema["schema"] = value.schema
    if value.strict is not None:
        schema["strict"] = value.strict
    return {"type": "json_schema", "json_schema": schema}


# --- responses -------------------------------------------------------------------------------------



def usage_in(data: Any) -> Any:
    """The raw usage object in a response body or a stream chunk (pass-through accounting)."""
    return data.get("usage") if isinstance(data, dict) else None


def decode_usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cached_input_tokens=prompt_details.get("cached_tokens"),
        reasoning_tokens=completion_details.get("reasoning_tokens"),
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_input_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_input_tokens}
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def decode_finish(reason: Any, has_calls: bool, refused: bool) -> FinishReason | None:
    """An upstream finish_reason -> canonical (None while the choice goes on); see FINISH_REASONS.
    A refusal that ended normally is reported as what it is: `content_filter`."""
    if not reason:
        return None
    mapped = FINISH_REASONS.get(str(reason)) or ("tool_calls" if has_calls else "stop")
    return "content_filter" if refused and mapped == "stop" else mapped


def decode_response(data: dict[str, Any]) -> ChatResponse:
    choices = []
    for i, choice in enumerate(data.get("choices") or []):
        message = choice.get("message") or {}
        calls = message.get("tool_calls") or []
        reasoning_text = message.get("reasoning_content") or message.get("reasoning")
        content = message.get("content")
        refusal = _refusal_parts(message)
        choices.append(
            Choice(
                index=choice.get("index", i),
                message=Message(
                    role="assistant",
                    content=([TextPart(text=content)] if isinstance(content, str) and content else []) + refusal,
                    tool_calls=[
                        ToolCall(
                            id=c.get("id") or "",
                            name=(c.get("function") or {}).get("name") or "",
                            arguments=(c.get("function") or {}).get("arguments") or "",
                        )
                        for c in calls
                    ],
                    reasoning=[Reasoning(text=reasoning_text)] if isinstance(reasoning_text, str) and reasoning_text else [],
                ),
                finish_reason=decode_finish(choice.get("finish_reason"), bool(calls), bool(refusal)),
            )
        )
    return ChatResponse(
        id=data.get("id") or new_id(),
        model=data.get("model") or "",
        created=data.get("created") or int(time.time()),
        choices=choices,
        usage=decode_usage(data.get("usage")),
    )


def encode_response(response: ChatResponse) -> dict[str, Any]:
    choices = []
    for choice in response.choices:
        message = choice.message
        out: dict[str, Any] = {"role": "assistant", "content": message.text() or None, "refusal": None}
        if message.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in message.tool_calls
            ]
        reasoning = "".join(r.text for r in message.reasoning)
        if reasoning:
            out["reasoning_content"] = reasoning
        choices.append({"index": choice.index, "message": out, "logprobs": None, "finish_reason": choice.finish_reason})
    body: dict[str, Any] = {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created,
        "model": response.model,
        "choices": choices,
    }
    if response.usage is not None:
        body["usage"] = encode_usage(response.usage)
    return body


def new_id() -> str:
    import secrets

    return "chatcmpl-" + secrets.token_hex(12)


# --- streams ---------------------------------------------------------------------------------------


class StreamDecoder:
    """Upstream chat-completion chunks -> canonical stream events.

    Per choice it remembers the ids of its tool calls (to number calls sent without `index`, and to
    map finish reasons), whether it refused, and whether it finished (one Finish per choice, and one
    at the end for a choice the upstream cut off)."""

    def __init__(self) -> None:
        self._started = False
        self._calls: dict[int, dict[int, str | None]] = {}  # choice index -> its calls: tool index -> id
        self._refused: set[int] = set()
        self._open: set[int] = set()  # choices seen and not finished
        self._finished: set[int] = set()

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        data = event.data
        if data == b"[DONE]" or not data:
            return []
        chunk = orjson.loads(data)
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise GatewayError(ErrorKind.UPSTREAM_ERROR, f"The upstream stream failed: {message}")
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(
                StreamStart(id=chunk.get("id") or new_id(), model=chunk.get("model") or "", created=chunk.get("created") or int(time.time()))
            )
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            if index not in self._finished:
                self._open.add(index)
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                events.append(ReasoningDelta(text=reasoning, index=index))
            if delta.get("content"):
                events.append(TextDelta(text=delta["content"], index=index))
            if delta.get("refusal"):  # canonical has no refusal: it is the answer's text
                self._refused.add(index)
                events.append(TextDelta(text=delta["refusal"], index=index))
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                events.append(
                    ToolCallDelta(
                        tool_index=self._tool_index(index, call),
                        id=call.get("id"),
                        name=function.get("name"),
                        arguments=function.get("arguments") or "",
                        index=index,
                    )
                )
            reason = decode_finish(choice.get("finish_reason"), bool(self._calls.get(index)), index in self._refused)
            if reason is not None and index not in self._finished:
                self._open.discard(index)
                self._finished.add(index)
                events.append(Finish(reason=reason, index=index))
        usage = decode_usage(chunk.get("usage"))
        if usage is not None:
            events.append(UsageEvent(usage=usage))
        return events

    def _tool_index(self, index: int, call: dict[str, Any]) -> int:
        """The tool index of a call delta. Some servers (Gemini's OpenAI endpoint, SGLang,
        mistral.rs) leave `index` out: there a delta with an id not seen before opens the next call,
        and one without continues the choice's last call."""
        calls = self._calls.setdefault(index, {})
        call_id = call.get("id")
        tool_index = call.get("index")
        if not isinstance(tool_index, int):
            last = max(calls, default=-1)
            new = last < 0 or (call_id is not None and call_id not in calls.values())
            tool_index = last + 1 if new else last
        if call_id is not None or tool_index not in calls:
            calls[tool_index] = call_id
        return tool_index

    def finish(self) -> list[StreamEvent]:
        # A stream cut off before its finish_reason still ends each choice it opened, as the
        # Anthropic and Gemini decoders do: encoders and clients count on one Finish per choice.
        events: list[StreamEvent] = [
            Finish(reason="tool_calls" if self._calls.get(i) else "stop", index=i) for i in sorted(self._open)
        ]
        self._finished.update(self._open)
        self._open.clear()
        return events


class StreamEncoder:
    """Canonical stream events -> chat-completion chunk SSE frames, ending with `data: [DONE]`.

    Usage is held back and sent as the last chunk (with `choices: []`), as OpenAI does, and only when
    the client asked for it with `stream_options.include_usage`."""

    def __init__(self, include_usage: bool, model: str | None = None) -> None:
        self._include_usage = include_usage
        self._model_override = model
        self._prefix = b""
        self._opened: set[int] = set()
        self._usage: Usage | None = None

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self._start(event.id, event.model, event.created)
            return b""
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return b""
        index = event.index
        delta: dict[str, Any]
        finish_reason = None
        if isinstance(event, TextDelta):
            delta = {"content": event.text}
        elif isinstance(event, ReasoningDelta):
            if not event.text:
                return b""
            delta = {"reasoning_content": event.text}
        elif isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.tool_index}
            if event.id is not None:
                call["id"] = event.id
                call["type"] = "function"
            function: dict[str, Any] = {"arguments": event.arguments}
            if event.name is not None:
                function["name"] = event.name
            call["function"] = function
            delta = {"tool_calls": [call]}
        elif isinstance(event, Finish):
            delta, finish_reason = {}, event.reason
        else:
            return b""
        out = b""
        if index not in self._opened:
            self._opened.add(index)
            if finish_reason is None:
                delta = {"role": "assistant", **delta}
            else:
                out += self._chunk(index, {"role": "assistant", "content": ""}, None)
        return out + self._chunk(index, delta, finish_reason)

    def _start(self, id: str, model: str, created: int) -> None:
        model = self._model_override or model
        head = orjson.dumps({"id": id, "object": "chat.completion.chunk", "created": created, "model": model})
        self._prefix = head[:-1] + b',"choices":['  # every chunk repeats these fields

    def _head(self) -> bytes:
        # A stream that failed before its StreamStart still gets whole chunks: made-up id and time.
        if not self._prefix:
            self._start(new_id(), "", int(time.time()))
        return self._prefix

    def _chunk(self, index: int, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        choice = orjson.dumps({"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason})
        return sse_frame(self._head() + choice + b"]}")

    def finish(self) -> bytes:
        out = b""
        if self._include_usage:
            usage = orjson.dumps(encode_usage(self._usage or Usage()))
            out += sse_frame(self._head() + b'],"usage":' + usage + b"}")
        return out + b"data: [DONE]\n\n"

    def error(self, error: GatewayError) -> bytes:
        return encode_error_event(error)


# --- errors ----------------------------------------------------------------------------------------

_ERROR_TYPES = {
    ErrorKind.INVALID_REQUEST: ("invalid_request_error", None),
    ErrorKind.POLICY: ("invalid_request_error", "content_policy_violation"),
    ErrorKind.AUTHENTICATION: ("invalid_request_error", "invalid_api_key"),
    ErrorKind.PERMISSION: ("permission_error", "permission_denied"),
    ErrorKind.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    ErrorKind.REQUEST_TOO_LARGE: ("invalid_request_error", "request_too_large"),
    ErrorKind.RATE_LIMIT: ("rate_limit_error", "rate_limit_exceeded"),
    ErrorKind.UPSTREAM_ERROR: ("server_error", "upstream_error"),
    ErrorKind.UPSTREAM_UNAVAILABLE: ("server_error", "upstream_unavailable"),
    ErrorKind.UPSTREAM_TIMEOUT: ("server_error", "upstream_timeout"),
    ErrorKind.OVERLOADED: ("server_error", "upstream_overloaded"),
    ErrorKind.INTERNAL: ("server_error", None),
}


def error_status(error: GatewayError) -> int:
    # OpenAI's API has no 529: an overloaded upstream is a bad gateway to OpenAI clients.
    return 502 if error.status == 529 else error.status


def encode_error(error: GatewayError) -> dict[str, Any]:
    kind, code = _ERROR_TYPES[error.kind]
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": error.code or code}}


def encode_error_event(error: GatewayError) -> bytes:
    """An error after a stream has started: OpenAI sends the error object as one more data event."""
    return sse_frame(orjson.dumps(encode_error(error)))
