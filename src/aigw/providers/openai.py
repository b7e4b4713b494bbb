"""OpenAI, Azure OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp, Together, Groq,
Mistral, DeepSeek, ...): one wire format, three ways to address and authenticate."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from aigw.canonical import ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse
from aigw.config import DestinationConfig
from aigw.http.upstream import UpstreamRequest
from aigw.providers.base import HttpProvider, StreamDecoder, with_client_headers
from aigw.wire import openai_chat, openai_embeddings, openai_responses

# The API operation behind each chat wire format a provider of this module takes as it is.
OPERATIONS = {openai_chat.WIRE: "chat/completions", openai_responses.WIRE: "responses"}


class OpenAIProvider(HttpProvider):
    kind = "openai"
    chat_wires = frozenset(OPERATIONS)
    embeddings_wire = openai_embeddings.WIRE
    tasks = frozenset({"chat", "embeddings"})
    default_base_url: str | None = "https://api.openai.com/v1"
    requires_key = True

    def __init__(self, destination: DestinationConfig, client: Any) -> None:
        super().__init__(destination, client)
        base = (destination.base_url or self.default_base_url or "").rstrip("/")
        self._urls = {wire: self.url_for(base, operation) for wire, operation in OPERATIONS.items()}
        self._chat_url = self._urls[openai_chat.WIRE]
        self._embeddings_url = self.url_for(base, "embeddings")
        self._headers = {"content-type": "application/json", **self.auth_headers(), **destination.headers}

    @property
    def upstream_model(self) -> str:
        """The `model` the upstream expects in a body."""
        return self.destination.model

    @classmethod
    def check_config(cls, destination: DestinationConfig, tasks: frozenset[str]) -> tuple[str, str] | None:
        if cls.requires_key and not destination.api_key:
            return "api_key", f"provider '{cls.kind}' needs an api_key (e.g. api_key: ${{OPENAI_API_KEY}})"
        if cls.default_base_url is None and not destination.base_url:
            return "base_url", f"provider '{cls.kind}' needs a base_url (e.g. http://127.0.0.1:8000/v1)"
        return super().check_config(destination, tasks)

    def url_for(self, base: str, operation: str) -> str:
        return f"{base}/{operation}"

    def auth_headers(self) -> dict[str, str]:
        key = self.destination.api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    def chat_request(self, request: ChatRequest, stream: bool) -> UpstreamRequest:
        body = openai_chat.encode_request(request, self.upstream_model, stream)
        return UpstreamRequest("POST", self._chat_url, self._headers, orjson.dumps(body))

    def parse_chat(self, body: bytes) -> ChatResponse:
        return openai_chat.decode_response(orjson.loads(body))

    def stream_decoder(self) -> StreamDecoder:
        return openai_chat.StreamDecoder()

    def forward_request(
        self, wire: str, body: dict[str, Any], stream: bool, headers: dict[str, str] | None = None
    ) -> UpstreamRequest:
        body = {**body, "model": self.upstream_model}  # the client's dict stays as it sent it
        if stream and wire == openai_chat.WIRE:
            # The gateway needs usage to count tokens; clients that did not ask for it get the
            # usage chunk stripped from the relayed stream.
            options = body.get("stream_options")
            body["stream_options"] = {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        return UpstreamRequest("POST", self._urls[wire], with_client_headers(self._headers, headers), orjson.dumps(body))

    def forward_embeddings_request(self, body: dict[str, Any]) -> UpstreamRequest:
        body = {**body, "model": self.upstream_model}
        return UpstreamRequest("POST", self._embeddings_url, self._headers, orjson.dumps(body))

    def embeddings_request(self, request: EmbeddingsRequest) -> UpstreamRequest:
        body = openai_embeddings.encode_request(request, self.upstream_model)
        return UpstreamRequest("POST", self._embeddings_url, self._headers, orjson.dumps(body))

    def parse_embeddings(self, body: bytes, request: EmbeddingsRequest) -> EmbeddingsResponse:
        return openai_embeddings.decode_response(orjson.loads(body))


class OpenAICompatibleProvider(OpenAIProvider):
    """Any server speaking OpenAI's wire format; the key is optional (local servers often have none).
    Few of them serve the Responses API, so Responses requests are translated to chat completions."""

    kind = "openai_compatible"
    chat_wires = frozenset({openai_chat.WIRE})
    default_base_url = None
    requires_key = False


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: `base_url` is the resource (https://NAME.openai.azure.com); the deployment
    (default: the model name) is in the path, the API version in the query, the key in `api-key`."""

    kind = "azure_openai"
    default_base_url = None
    default_api_version = "2024-10-21"
    responses_api_version = "2025-04-01-preview"  # the Responses API is not in the GA versions

    @property
    def upstream_model(self) -> str:
        return self.destination.deployment or self.destination.model

    def url_for(self, base: str, operation: str) -> str:
        if base.endswith("/openai/v1"):  # the v1 API: no deployment in the path, no version
            return f"{base}/{operation}"
        if operation == "responses":  # not under a deployment: the body's model names it
            return f"{base}/openai/responses?api-version={self.destination.api_version or self.responses_api_version}"
        deployment = quote(self.upstream_model, safe="")
        version = self.destination.api_version or self.default_api_version
        return f"{base}/openai/deployments/{deployment}/{operation}?api-version={version}"

    def auth_headers(self) -> dict[str, str]:
        return {"api-key": self.destination.api_key or ""}
