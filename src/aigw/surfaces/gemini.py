"""Google's Gemini API at /gemini (both /gemini/v1beta and /gemini/v1: recent `google-genai` SDKs call
v1, Gemini CLI calls v1beta): generateContent, streamGenerateContent (`?alt=sse`, or the JSON-array
form without it), countTokens, embedContent, batchEmbedContents, and the model list.

The gateway endpoint is the model in the path (`models/{endpoint}:generateContent`). Bodies pass
through to Gemini destinations and are translated through the canonical model for the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from aigw.canonical import ChatRequest, ChatResponse, Usage
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.asgi import JSON_HEADERS, SSE_HEADERS, Request, Send, send_body
from aigw.http.sse import SSEParser
from aigw.offload import run_heavy
from aigw.policies.auth import Principal
from aigw.providers.base import Provider
from aigw.surfaces.chat_flow import DecodingStitcher, EventRelay, StreamRelay, checked_answer, serve_chat, serve_whole, usage_of_json
from aigw.surfaces.common import Handler, Surface, json_error
from aigw.wire import gemini, gemini_embeddings, gemini_stream
from aigw.wire.schemas import gemini as schemas

VERSIONS = ("/gemini/v1beta", "/gemini/v1")
CHAT_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]
EMBEDDING_METHODS = ["embedContent", "batchEmbedContents"]


class GeminiChatCodec:
    """Gemini's wire for one request: the model comes from the URL, and the stream's framing from
    `alt` (SSE, or one JSON array written piece by piece)."""

    wire = gemini.WIRE
    param_names = gemini.PARAM_NAMES

    def __init__(self, model: str, stream: bool, json_array: bool) -> None:
        self.model = model
        self.stream = stream
        self.json_array = json_array
        self.stream_headers = JSON_HEADERS if json_array else SSE_HEADERS

    def decode_request(self, body: Any) -> ChatRequest:
        return gemini.decode_request(body, self.model, self.stream)

    def encode_response(self, response: ChatResponse, body: dict[str, Any]) -> bytes:
        return orjson.dumps(gemini.encode_response(response))

    def stream_encoder(self, request: ChatRequest, body: dict[str, Any]) -> gemini_stream.StreamEncoder:
        return gemini_stream.StreamEncoder(json_array=self.json_array)

    def stream_relay(self, body: dict[str, Any], max_event_bytes: int) -> StreamRelay:
        # The provider always asks its upstream for alt=sse.
        if self.json_array:
            return JsonArrayRelay(max_event_bytes)
        return EventRelay(b'"usageMetadata"', gemini.usage_in, gemini.decode_usage, _sse_error, max_event_bytes=max_event_bytes)

    def usage_of_body(self, data: bytes) -> Usage | None:
        return usage_of_json(data, gemini.usage_in, gemini.decode_usage)

    def stitcher(self, body: dict[str, Any], limit: int) -> DecodingStitcher:
        decoder = gemini_stream.StreamDecoder(model=self.model)
        return DecodingStitcher(decoder, lambda response: self.encode_response(response, body), limit)


def _sse_error(error: GatewayError) -> bytes:
    """Google ends a failing stream with one more event that holds only the error."""
    return b"data: " + orjson.dumps(gemini.encode_error(error)) + b"\r\n\r\n"


class JsonArrayRelay:
    """Upstream `alt=sse` events -> the JSON-array form of streamGenerateContent, element by element
    as they arrive: `[` first, `,` between, `]` at the end. Usage is read from the last element
    that carries it. Events are cut by the linear, capped SSEParser (`max_event_bytes`)."""

    __slots__ = ("_parser", "_opened", "_closed", "_usage")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._parser = SSEParser(max_event_bytes)
        self._opened = False
        self._closed = False
        self._usage: Any = None

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._element(event.data) for event in self._parser.feed(chunk) if event.data)

    def flush(self) -> bytes:
        out = b"".join(self._element(event.data) for event in self._parser.flush() if event.data)
        if self._closed:
            return out
        self._closed = True
        return out + (b"\n]" if self._opened else b"[]")

    def error(self, error: GatewayError) -> bytes:
        return self._element(orjson.dumps(gemini.encode_error(error))) + self.flush()

    def usage(self) -> Usage | None:
        return gemini.decode_usage(self._usage)

    def _element(self, data: bytes) -> bytes:
        if b'"usageMetadata"' in data:
            try:
                self._usage = gemini.usage_in(orjson.loads(data)) or self._usage
            except orjson.JSONDecodeError:
                pass
        separator = b"\n,\r\n" if self._opened else b"["
        self._opened = True
        return separator + data


class GeminiSurface(Surface):
    path_prefixes = ("/gemini/",)
    query_token = True  # Gemini REST clients send `?key=`

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        for version in VERSIONS:
            yield "POST", version + "/models/*", self.model_method
            yield "GET", version + "/models", self.models
            yield "GET", version + "/models/*", self.model

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return json_error(gemini.error_status(error), gemini.encode_error(error), error)

    async def model_method(self, request: Request, send: Send) -> None:
        """POST .../models/{endpoint}:{method}"""
        name, _, method = _model_name(request.path).rpartition(":")
        handler = self._methods.get(method)
        if not name or handler is None:
            raise GatewayError(ErrorKind.NOT_FOUND, f"Unknown method: {request.method} {request.path}")
        # Token counts are free upstream but still calls here: admitted by limits and recorded.
        self.open_call(request, "gemini_count_tokens" if method == "countTokens" else "gemini")
        principal = await self.authenticate(request)
        self.authorize(principal, name)
        body = await self.json_body(request, self._schemas[method])
        await handler(self, request, send, principal, name, method, body)

    async def _generate(self, request: Request, send: Send, principal: Principal, name: str, method: str, body: Any) -> None:
        await run_heavy(gemini.validate_request, body)
        endpoint, call = await self.begin(request, name, "chat", body=body, wire=gemini.WIRE)
        stream = method == "streamGenerateContent"
        codec = GeminiChatCodec(name, stream, json_array=stream and request.query.get("alt") != "sse")
        await serve_chat(call, request, send, endpoint, body, codec, stream)

    async def _count_tokens(self, request: Request, send: Send, principal: Principal, name: str, method: str, body: Any) -> None:
        generate_request = gemini.generate_request_of_count(body)
        await run_heavy(gemini.validate_request, generate_request)
        # Its text goes upstream too (to a countTokens call): the endpoint's call policies apply.
        endpoint, call = await self.begin(request, name, "chat", body=body, wire="gemini_count_tokens")
        generate_request = gemini.generate_request_of_count(body)  # again: as masked
        canonical = await run_heavy(gemini.decode_request, generate_request, name)

        async def attempt(provider: Provider) -> tuple[bytes, None]:
            if gemini.WIRE in provider.chat_wires:
                upstream = await provider.forward_count_tokens(gemini.WIRE, body)
                return checked_answer(provider, await upstream.read()), None
            return orjson.dumps({"totalTokens": await provider.count_tokens(canonical)}), None

        await serve_whole(call, send, endpoint, attempt)

    async def _embed(self, request: Request, send: Send, principal: Principal, name: str, method: str, body: Any) -> None:
        endpoint, call = await self.begin(request, name, "embeddings", body=body, wire="gemini_embeddings")
        if method == "embedContent":
            canonical = gemini_embeddings.decode_embed_content_request(body, name)
            encode = gemini_embeddings.encode_embed_content_response
        else:
            canonical = gemini_embeddings.decode_batch_embed_contents_request(body, name)
            encode = gemini_embeddings.encode_batch_embed_contents_response

        async def attempt(provider: Provider) -> tuple[bytes, Usage | None]:
            response = await provider.embed(canonical)
            return orjson.dumps(encode(response)), response.usage

        await serve_whole(call, send, endpoint, attempt)

    _methods = {
        "generateContent": _generate,
        "streamGenerateContent": _generate,
        "countTokens": _count_tokens,
        "embedContent": _embed,
        "batchEmbedContents": _embed,
    }

    _schemas = {
        "generateContent": schemas.GenerateContentRequest,
        "streamGenerateContent": schemas.GenerateContentRequest,
        "countTokens": schemas.CountTokensRequest,
        "embedContent": schemas.EmbedContentRequest,
        "batchEmbedContents": schemas.BatchEmbedContentsRequest,
    }

    async def models(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        router = self.gateway.router
        models = [_model_info(name, router.endpoints[name].tasks) for name in self.queryable(principal, router.names_for())]
        await send_body(send, 200, orjson.dumps({"models": models}))

    async def model(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        name = _model_name(request.path)
        endpoint = self.gateway.router.endpoints.get(name)
        if endpoint is None:
            raise GatewayError(ErrorKind.NOT_FOUND, f"models/{name} is not found.")
        self.authorize(principal, name)
        await send_body(send, 200, orjson.dumps(_model_info(name, endpoint.tasks)))


def _model_name(path: str) -> str:
    """`/gemini/v1beta/models/chat:generateContent` -> `chat:generateContent`."""
    rest = path.partition("/models/")[2]
    if not rest:
        raise invalid("The path names no model.")
    return rest


def _model_info(name: str, tasks: frozenset[str]) -> dict[str, Any]:
    methods = (CHAT_METHODS if "chat" in tasks else []) + (EMBEDDING_METHODS if "embeddings" in tasks else [])
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name,
        "description": f"aigw endpoint '{name}'",
        "supportedGenerationMethods": methods,
    }
