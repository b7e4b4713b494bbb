"""Gemini streams <-> canonical: `StreamDecoder` reads a streamGenerateContent answer (SSE or the JSON
array form) into canonical events, `StreamEncoder` writes canonical events as one. Requests, whole
answers and errors are in aigw.wire.gemini."""

from __future__ import annotations

import time
from typing import Any

import orjson

from aigw.canonical import (
    Finish, FinishReason, ReasoningDelta, StreamEvent, StreamStart, TextDelta, ToolCallDelta, Usage, UsageEvent,
)  # fmt: skip
from aigw.errors import ErrorKind, GatewayError
from aigw.http.sse import SSEEvent
from aigw.wire.gemini import (
    FINISH_REASONS_OUT, WIRE, decode_finish, decode_usage, encode_error, encode_usage, function_call_part,
    make_call_id, new_id, response_parts, signer_of, thought_part, thought_signature_for_client,
)  # fmt: skip


def stream_error(error: Any) -> GatewayError:
    """An `error` object inside a stream (or a 200 body) -> GatewayError."""
    message = error.get("message") if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    text = f"The upstream reported an error: {message}"
    if code == 429:
        return GatewayError(ErrorKind.RATE_LIMIT, text, retryable=True)
    if code == 503:
        return GatewayError(ErrorKind.OVERLOADED, text, status=502, retryable=True)
    return GatewayError(ErrorKind.UPSTREAM_ERROR, text, retryable=isinstance(code, int) and code >= 500)


class StreamDecoder:
    """Gemini `alt=sse` chunks (each a whole GenerateContentResponse) -> canonical stream events.
    Function calls arrive whole, so each becomes one ToolCallDelta. Every chunk may carry usage;
    the last values seen go out once, at the end."""

    def __init__(self, model: str = "") -> None:
        self._model = model  # when chunks carry no modelVersion
        self._id = ""
        self._started = False
        self._calls: dict[int, int] = {}  # choice index -> calls seen
        self._open: set[int] = set()  # choices started and not finished
        self._finished: set[int] = set()
        self._usage: dict[str, Any] = {}

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if not event.data.strip():
            return []
        chunk = orjson.loads(event.data)
        if "error" in chunk:
            raise stream_error(chunk["error"])
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            self._id = chunk.get("responseId") or new_id()
            model = chunk.get("modelVersion") or self._model
            events.append(StreamStart(id=self._id, model=model, created=int(time.time())))
        for candidate in chunk.get("candidates") or ():
            index = candidate.get("index", 0)
            if index in self._finished:
                continue  # one Finish per choice: nothing may follow it
            self._open.add(index)
            for kind, value in response_parts((candidate.get("content") or {}).get("parts")):
                if kind != "part":  # images and files have no canonical stream delta
                    events.append(self._event(kind, value, index))
            reason = candidate.get("finishReason")
            if reason:
                events.append(Finish(reason=decode_finish(reason, index in self._calls) or "stop", index=index))
                self._open.discard(index)
                self._finished.add(index)
        if not chunk.get("candidates") and (chunk.get("promptFeedback") or {}).get("blockReason"):
            if 0 not in self._finished:
                self._finished.add(0)
                events.append(Finish(reason="content_filter"))
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage.update(chunk["usageMetadata"])
        return events

    def _event(self, kind: str, value: Any, index: int) -> StreamEvent:
        if kind == "call":
            name, arguments, call_id, signature = value
            tool_index = self._calls.get(index, 0)
            self._calls[index] = tool_index + 1
            call_id = call_id or make_call_id(self._id, sum(self._calls.values()) - 1)
            return ToolCallDelta(
                tool_index=tool_index, id=call_id, name=name, arguments=arguments, signature=signature,
                signer=signer_of(signature), index=index,
            )  # fmt: skip
        if kind == "thought":
            return ReasoningDelta(text=value[0], signature=value[1], signer=signer_of(value[1]), index=index)
        if kind == "signature":
            return ReasoningDelta(signature=value, signer=WIRE, index=index)
        return TextDelta(text=value, index=index)

    def finish(self) -> list[StreamEvent]:
        events: list[StreamEvent] = [
            Finish(reason="tool_calls" if i in self._calls else "stop", index=i) for i in sorted(self._open)
        ]
        self._open.clear()
        usage = decode_usage(self._usage) if self._usage else None
        if usage is not None:
            events.append(UsageEvent(usage=usage))
        return events


class StreamEncoder:
    """Canonical stream events -> Gemini stream frames: `data: <json>\\r\\n\\r\\n` as Google frames
    SSE, or with `json_array=True` the plain streamGenerateContent form (`[`, `,`-separated, `]`).

    Tool calls are buffered until complete (Gemini sends each whole); finish reasons and usage are
    held back so the last frame carries them, as Gemini's does."""

    def __init__(self, model: str | None = None, *, json_array: bool = False) -> None:
        self._model_override = model
        self._model = model or ""
        self._id = ""
        self._json_array = json_array
        self._frames = 0
        self._calls: dict[int, dict[int, dict[str, Any]]] = {}  # choice -> tool index -> call so far
        self._finished: dict[int, FinishReason] = {}
        self._usage: Usage | None = None

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self._id, self._model = event.id, self._model_override or event.model
            return b""
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return b""
        if isinstance(event, Finish):
            self._finished[event.index] = event.reason
            return b""
        if isinstance(event, ToolCallDelta):
            calls = self._calls.setdefault(event.index, {})
            out = self._flush(event.index, keep=event.tool_index)
            call = calls.setdefault(event.tool_index, {"id": None, "name": "", "arguments": [], "signature": None})
            call["id"] = event.id or call["id"]
            call["name"] = event.name or call["name"]
            call["signature"] = thought_signature_for_client(event.signer, event.signature) or call["signature"]
            call["arguments"].append(event.arguments)
            return out
        if isinstance(event, TextDelta):
            part: dict[str, Any] = {"text": event.text}
        elif isinstance(event, ReasoningDelta):
            signature = thought_signature_for_client(event.signer, event.signature)
            if not event.text and not signature:
                return b""
            part = thought_part(event.text, signature)
        else:
            return b""
        return self._flush(event.index) + self._frame([self._candidate(event.index, [part])])

    def _flush(self, index: int, keep: int | None = None) -> bytes:
        """Frames for the buffered calls of choice `index`, except the one still growing (`keep`)."""
        parts = self._call_parts(index, keep)
        return self._frame([self._candidate(index, parts)]) if parts else b""

    def _call_parts(self, index: int, keep: int | None = None) -> list[dict[str, Any]]:
        calls = self._calls.get(index) or {}
        done = [tool_index for tool_index in sorted(calls) if tool_index != keep]
        parts = []
        for tool_index in done:
            call = calls.pop(tool_index)
            parts.append(function_call_part(call["id"], call["name"], "".join(call["arguments"]), call["signature"]))
        return parts

    def _candidate(self, index: int, parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = index
        return candidate

    def _frame(self, candidates: list[dict[str, Any]], usage: Usage | None = None) -> bytes:
        body: dict[str, Any] = {"candidates": candidates}
        if usage is not None:
            body["usageMetadata"] = encode_usage(usage)
        body["modelVersion"] = self._model
        body["responseId"] = self._id
        data = orjson.dumps(body)
        self._frames += 1
        if not self._json_array:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self._frames == 1 else b"\n,\r\n") + data

    def finish(self) -> bytes:
        candidates = []
        for index in sorted(set(self._finished) | {i for i, calls in self._calls.items() if calls}):
            parts = self._call_parts(index) or [{"text": ""}]
            reason = FINISH_REASONS_OUT[self._finished.get(index, "stop")]
            candidates.append(self._candidate(index, parts, reason))
        out = self._frame(candidates or [self._candidate(0, [{"text": ""}], "STOP")], self._usage or Usage())
        return out + b"\n]" if self._json_array else out

    def error(self, error: GatewayError) -> bytes:
        """Google ends a failing stream with one more element that holds only the error."""
        data = orjson.dumps(encode_error(error))
        if not self._json_array:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self._frames == 0 else b"\n,\r\n") + data + b"\n]"


