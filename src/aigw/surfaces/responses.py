"""OpenAI's Responses API at /openai/v1/responses, and at /codex/v1/responses for Codex CLI.

Passed through to destinations that serve the Responses API (OpenAI, Azure OpenAI), so every field
and event of it keeps working, `store` and `previous_response_id` included (kept by the vendor);
translated through the canonical model to chat for every other provider, statelessly. The gateway
keeps state itself, for any provider, at /mlflow/v1/responses (surfaces/agent.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from aigw.canonical import ChatRequest, ChatResponse, Usage
from aigw.errors import GatewayError, invalid
from aigw.http.asgi import SSE_HEADERS, Request, Send
from aigw.http.sse import SSEParser, sse_frame
from aigw.offload import run_heavy
from aigw.surfaces.chat_flow import EventRelay, serve_chat, usage_of_json
from aigw.surfaces.common import Handler, Surface, json_error
from aigw.wire import openai_chat, openai_responses, openai_responses_stream
from aigw.wire.schemas.responses import ResponsesRequest

PREFIXES = ("/openai/v1", "/codex/v1")
TERMINAL_EVENTS = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')


class ResponsesCodec:
    wire = openai_responses.WIRE
    stream_headers = SSE_HEADERS
    param_names = openai_responses.PARAM_NAMES

    def decode_request(self, body: Any) -> ChatRequest:
        if body.get("background"):
            raise invalid("background responses need a stored response, which this destination does not keep (/mlflow/v1/responses keeps them for any destination).", "background")
        return openai_responses.decode_request(body)

    def encode_response(self, response: ChatResponse, body: dict[str, Any]) -> bytes:
        return orjson.dumps(openai_responses.encode_response(response, body))

    def stream_encoder(self, request: ChatRequest, body: dict[str, Any]) -> openai_responses_stream.StreamEncoder:
        return openai_responses_stream.StreamEncoder(body)

    def stream_relay(self, body: dict[str, Any], max_event_bytes: int) -> ResponsesRelay:
        return ResponsesRelay(max_event_bytes)

    def usage_of_body(self, data: bytes) -> Usage | None:
        return usage_of_json(data, openai_responses.usage_in, openai_responses.decode_usage)

    def stitcher(self, body: dict[str, Any], limit: int) -> FinalResponseStitcher:
        return FinalResponseStitcher(limit)


class FinalResponseStitcher:
    """A passed-through Responses stream's whole response: the one its terminal event
    (response.completed, .incomplete or .failed) carries. Every event's content is in that
    response, so one event over `limit` bytes means the response is too: it stops collecting."""

    def __init__(self, limit: int) -> None:
        self._parser = SSEParser(limit)
        self._response = b""
        self._over = False

    def feed(self, chunk: bytes) -> None:
        if self._over:
            return
        try:
            events = self._parser.feed(chunk)
        except GatewayError:
            self._over, self._response = True, b""
            return
        for event in events:
            if any(kind in event.data[:64] for kind in TERMINAL_EVENTS):
                try:
                    self._response = orjson.dumps(orjson.loads(event.data).get("response"))
                except (orjson.JSONDecodeError, AttributeError):
                    pass

    def result(self) -> bytes | None:
        return None if self._over else self._response


class ResponsesRelay(EventRelay):
    """A passed-through Responses stream. Besides usage it keeps what an in-band failure must
    continue: the last sequence number and the response begun by `response.created`, so a stream
    that breaks off ends as OpenAI's would, with `error` and `response.failed` in sequence."""

    __slots__ = ("_sequence", "_response")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        super().__init__(
            b'"usage"', openai_responses.usage_in, openai_responses.decode_usage, self._failure, max_event_bytes=max_event_bytes
        )
        self._sequence = -1
        self._response: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> bytes:
        ready = super().feed(chunk)
        at = ready.rfind(b'"sequence_number":')
        if at >= 0:
            digits = ready[at + 18 : at + 40].lstrip().split(b",", 1)[0].split(b"}", 1)[0]
            if digits.isdigit():
                self._sequence = int(digits)
        if self._response is None and b'"response.created"' in ready:
            self._response = _created_response(ready)
        return ready

    def _failure(self, error: GatewayError) -> bytes:
        out = self._event("error", openai_responses.error_event_fields(error))
        if self._response is not None:
            response = {**self._response, "status": "failed", "error": openai_responses.failure(error)}
            out += self._event("response.failed", {"response": response})
        return out

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        self._sequence += 1
        return sse_frame(orjson.dumps({"type": kind, "sequence_number": self._sequence, **fields}), kind)


def _created_response(ready: bytes) -> dict[str, Any] | None:
    for line in ready.splitlines():
        if line.startswith(b"data:") and b'"response.created"' in line:
            try:
                response = orjson.loads(line[5:]).get("response")
            except (orjson.JSONDecodeError, AttributeError):
                return None
            return response if isinstance(response, dict) else None
    return None


class ResponsesSurface(Surface):
    codec = ResponsesCodec()

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        for prefix in PREFIXES:
            yield "POST", prefix + "/responses", self.create

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return json_error(openai_chat.error_status(error), openai_chat.encode_error(error), error)

    async def create(self, request: Request, send: Send) -> None:
        self.open_call(request, "openai_responses")
        await self.authenticate(request)
        body = await self.json_body(request, ResponsesRequest)
        await run_heavy(openai_responses.validate_request, body)
        endpoint, call = await self.begin(request, body["model"], "chat")
        await serve_chat(call, request, send, endpoint, body, self.codec, body.get("stream") is True)
