"""Anthropic's Messages API at /anthropic: messages (JSON and SSE), count_tokens, models.

The `anthropic` SDK and Claude Code work against it with only the base URL and the token changed,
whatever provider the endpoint routes to: the body passes through to Anthropic destinations with the
client's `anthropic-*` headers (betas, version), and is translated through the canonical model for
every other provider. Query strings (Claude Code's `?beta=true`) do not affect routing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from aigw.canonical import ChatRequest, ChatResponse, Usage
from aigw.errors import ErrorKind, GatewayError
from aigw.http.asgi import SSE_HEADERS, Request, Send, send_body
from aigw.offload import run_heavy
from aigw.providers.base import Provider
from aigw.surfaces.chat_flow import DecodingStitcher, EventRelay, checked_answer, serve_chat, serve_whole, usage_of_json
from aigw.surfaces.common import Handler, Surface, json_error
from aigw.wire import anthropic
from aigw.wire.schemas import anthropic as schemas

PREFIX = "/anthropic/v1"
MODEL_CREATED_AT = "2025-01-01T00:00:00Z"  # endpoints have no release date; the field is required


class AnthropicChatCodec:
    wire = anthropic.WIRE
    stream_headers = SSE_HEADERS
    param_names = anthropic.PARAM_NAMES

    def decode_request(self, body: Any) -> ChatRequest:
        return anthropic.decode_request(body)

    def encode_response(self, response: ChatResponse, body: dict[str, Any]) -> bytes:
        return orjson.dumps(anthropic.encode_response(response))

    def stream_encoder(self, request: ChatRequest, body: dict[str, Any]) -> anthropic.StreamEncoder:
        return anthropic.StreamEncoder()

    def stream_relay(self, body: dict[str, Any], max_event_bytes: int) -> EventRelay:
        return EventRelay(
            b'"usage"', anthropic.usage_in, anthropic.decode_usage, anthropic.encode_error_event, max_event_bytes=max_event_bytes
        )

    def usage_of_body(self, data: bytes) -> Usage | None:
        return usage_of_json(data, anthropic.usage_in, anthropic.decode_usage)

    def stitcher(self, body: dict[str, Any], limit: int) -> DecodingStitcher:
        return DecodingStitcher(anthropic.StreamDecoder(), lambda response: self.encode_response(response, body), limit)


def vendor_headers(request: Request) -> dict[str, str]:
    """The client's Anthropic headers worth forwarding to an Anthropic destination (`anthropic-beta`,
    `anthropic-version`, ...); credentials never are."""
    return {k: v for k, v in request.headers.items() if k.startswith("anthropic-")}


class AnthropicSurface(Surface):
    codec = AnthropicChatCodec()
    path_prefixes = ("/anthropic/",)

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        yield "POST", PREFIX + "/messages", self.messages
        yield "POST", PREFIX + "/messages/count_tokens", self.count_tokens
        yield "GET", PREFIX + "/models", self.models
        yield "GET", PREFIX + "/models/*", self.model

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return json_error(anthropic.error_status(error), anthropic.encode_error(error), error)

    async def messages(self, request: Request, send: Send) -> None:
        self.open_call(request, "anthropic")
        await self.authenticate(request)
        body = await self.json_body(request, schemas.MessagesRequest)
        await run_heavy(anthropic.validate_request, body)
        endpoint, call = await self.begin(request, body["model"], "chat", body=body, wire=anthropic.WIRE)
        stream = body.get("stream") is True
        await serve_chat(call, request, send, endpoint, body, self.codec, stream, vendor_headers(request))

    async def count_tokens(self, request: Request, send: Send) -> None:
        """Counting is free upstream but not at the gateway: it is admitted by the endpoint's limits
        and recorded like any call (with no tokens used), so it cannot be an unmetered channel."""
        self.open_call(request, "anthropic_count_tokens")
        await self.authenticate(request)
        body = await self.json_body(request, schemas.CountTokensRequest)
        # A count_tokens body is a Messages body without max_tokens: validate it as one.
        as_messages = {"max_tokens": 1, **body} if isinstance(body, dict) else body
        await run_heavy(anthropic.validate_request, as_messages)
        # Its text goes upstream too (to a count_tokens call): the endpoint's call policies apply.
        endpoint, call = await self.begin(request, body["model"], "chat", body=body, wire=anthropic.WIRE)
        canonical = await run_heavy(anthropic.decode_request, {"max_tokens": 1, **body})  # as masked

        async def attempt(provider: Provider) -> tuple[bytes, None]:
            if self.codec.wire in provider.chat_wires:
                upstream = await provider.forward_count_tokens(self.codec.wire, body, vendor_headers(request))
                return checked_answer(provider, await upstream.read()), None
            return orjson.dumps({"input_tokens": await provider.count_tokens(canonical)}), None

        await serve_whole(call, send, endpoint, attempt)

    async def models(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        data = [_model_info(name) for name in self.queryable(principal, self.gateway.router.names_for("chat"))]
        page = {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None}
        page["last_id"] = data[-1]["id"] if data else None
        await send_body(send, 200, orjson.dumps(page))

    async def model(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        name = request.path.removeprefix(PREFIX + "/models/")
        if name not in self.gateway.router.names_for("chat"):
            raise GatewayError(ErrorKind.NOT_FOUND, f"model: {name}")
        self.authorize(principal, name)
        await send_body(send, 200, orjson.dumps(_model_info(name)))


def _model_info(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": MODEL_CREATED_AT}
