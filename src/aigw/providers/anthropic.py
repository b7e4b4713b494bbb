"""Anthropic's Messages API: POST {base}/v1/messages, key in `x-api-key`, API version in a header."""

from __future__ import annotations

from typing import Any

import orjson

from aigw.canonical import ChatRequest, ChatResponse
from aigw.config import DestinationConfig
from aigw.http.upstream import UpstreamClient, UpstreamRequest
from aigw.providers.base import HttpProvider, StreamDecoder, with_client_headers
from aigw.wire import anthropic

API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicProvider(HttpProvider):
    kind = "anthropic"
    chat_wires = frozenset({anthropic.WIRE})
    tasks = frozenset({"chat"})

    def __init__(self, destination: DestinationConfig, client: UpstreamClient) -> None:
        super().__init__(destination, client)
        base = (destination.base_url or DEFAULT_BASE_URL).rstrip("/")
        base = base.removesuffix("/v1")  # accept the base URL with or without the version segment
        self._url = f"{base}/v1/messages"
        self._count_url = f"{base}/v1/messages/count_tokens"
        self._headers = {
            "x-api-key": destination.api_key or "",
            "anthropic-version": destination.api_version or API_VERSION,
            "content-type": "application/json",
            **destination.headers,
        }

    @classmethod
    def check_config(cls, destination: DestinationConfig, tasks: frozenset[str]) -> tuple[str, str] | None:
        if not destination.api_key:
            return "api_key", f"provider '{cls.kind}' needs an api_key (e.g. api_key: ${{ANTHROPIC_API_KEY}})"
        return super().check_config(destination, tasks)

    def chat_request(self, request: ChatRequest, stream: bool) -> UpstreamRequest:
        body = anthropic.encode_request(request, self.destination.model, stream)
        return UpstreamRequest("POST", self._url, self._headers, orjson.dumps(body))

    def parse_chat(self, body: bytes) -> ChatResponse:
        return anthropic.decode_response(orjson.loads(body))

    def stream_decoder(self) -> StreamDecoder:
        return anthropic.StreamDecoder()

    def count_tokens_request(self, request: ChatRequest) -> UpstreamRequest:
        body = anthropic.encode_request(request, self.destination.model, stream=False)
        counted = {k: v for k, v in body.items() if k in anthropic.COUNT_TOKENS_FIELDS}
        return UpstreamRequest("POST", self._count_url, self._headers, orjson.dumps(counted))

    def parse_count_tokens(self, body: bytes) -> int:
        return int(orjson.loads(body)["input_tokens"])

    def forward_count_tokens_request(
        self, wire: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> UpstreamRequest:
        body = {**body, "model": self.destination.model}
        return UpstreamRequest("POST", self._count_url, with_client_headers(self._headers, headers), orjson.dumps(body))

    def forward_request(
        self, wire: str, body: dict[str, Any], stream: bool, headers: dict[str, str] | None = None
    ) -> UpstreamRequest:
        """Pass-through: the client's body with the destination's model; `headers` are the client's
        Anthropic headers worth keeping (`anthropic-beta`, ...), never its credentials."""
        body = {**body, "model": self.destination.model}
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        return UpstreamRequest("POST", self._url, with_client_headers(self._headers, headers), orjson.dumps(body))

    def error_message(self, body: bytes) -> str | None:
        """Anthropic's error body is {"type": "error", "error": {"type": ..., "message": ...}}:
        keep the type, it says more than the status (overloaded_error, billing_error, ...)."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            return super().error_message(body)
        kind = error.get("type")
        return f"{kind}: {error['message']}" if isinstance(kind, str) else error["message"]
