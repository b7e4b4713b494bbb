"""OpenAI's Responses API at /openai/v1/responses, and at /codex/v1/responses for Codex CLI.

Passed through to destinations that serve the Responses API (OpenAI, Azure OpenAI), so every field
and event of it keeps working, `store` and `previous_response_id` included; translated through the
canonical model to chat for every other provider, where the gateway keeps no state (yet).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from aigw.canonical import ChatRequest, ChatResponse
from aigw.errors import GatewayError, invalid
from aigw.http.asgi import SSE_HEADERS, Request, Send
from aigw.http.sse import sse_frame
from aigw.surfaces.common import Handler, RawRelay, Surface, json_error, request_tags, serve_chat
from aigw.wire import openai_chat, openai_responses

PREFIXES = ("/openai/v1", "/codex/v1")


class ResponsesCodec:
    wire = openai_responses.WIRE
    stream_headers = SSE_HEADERS
    param_names = openai_responses.PARAM_NAMES

    def decode_request(self, body: Any) -> ChatRequest:
        if body.get("background"):
            raise invalid("background responses need a stored response, which this destination does not keep.", "background")
        return openai_responses.decode_request(body)

    def encode_response(self, response: ChatResponse, body: dict[str, Any]) -> bytes:
        return orjson.dumps(openai_responses.encode_response(response, body))

    def stream_encoder(self, request: ChatRequest, body: dict[str, Any]) -> openai_responses.StreamEncoder:
        return openai_responses.StreamEncoder(body)

    def stream_relay(self, body: dict[str, Any]) -> RawRelay:
        return RawRelay()  # response.completed always carries usage

    def relay_error(self, error: GatewayError) -> bytes:
        """The upstream stream broke off: an `error` event, as OpenAI reports a failure in-band."""
        detail = openai_chat.encode_error(error)["error"]
        event = {"type": "error", "code": detail["code"] or detail["type"], "message": error.message, "param": error.param}
        return sse_frame(orjson.dumps({**event, "sequence_number": 0}), "error")


class ResponsesSurface(Surface):
    codec = ResponsesCodec()

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        for prefix in PREFIXES:
            yield "POST", prefix + "/responses", self.create

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return json_error(openai_chat.error_status(error), openai_chat.encode_error(error), error)

    async def create(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        request_tags(request)
        body = await self.json_body(request)
        openai_responses.validate_request(body)
        provider = self.gateway.router.endpoint(body["model"], "chat").destination()
        self.authorize(principal, body["model"])
        await serve_chat(request, send, provider, body, self.codec, body.get("stream") is True)
