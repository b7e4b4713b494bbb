"""Google Gemini through the Generative Language API (AI Studio keys).

Transport only: URLs, the `x-goog-api-key` header (never `?key=` in the URL: URLs get logged), and
which wire functions to call. The mapping itself lives in `aigw.wire.gemini`.
"""

from __future__ import annotations

from typing import Any

import orjson

from aigw.canonical import ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, Usage, estimate_tokens
from aigw.config import DestinationConfig
from aigw.errors import GatewayError
from aigw.http.upstream import UpstreamClient, UpstreamRequest
from aigw.providers.base import HttpProvider, StreamDecoder, with_client_headers
from aigw.wire import gemini, gemini_embeddings, gemini_stream

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSIONS = ("/v1beta", "/v1", "/v1alpha")


def api_base(base_url: str | None) -> str:
    """The configured base URL with an API version: `/v1beta` unless it already names one."""
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return base if base.endswith(API_VERSIONS) else base + "/v1beta"


class GeminiProvider(HttpProvider):
    kind = "gemini"
    chat_wires = frozenset({gemini.WIRE})
    tasks = frozenset({"chat", "embeddings"})

    def __init__(self, destination: DestinationConfig, client: UpstreamClient) -> None:
        super().__init__(destination, client)
        self._model_url = f"{api_base(destination.base_url)}/{gemini.model_path(destination.model)}"
        self._headers = {"content-type": "application/json", "x-goog-api-key": destination.api_key or ""}
        self._headers.update(destination.headers)

    @classmethod
    def check_config(cls, destination: DestinationConfig, tasks: frozenset[str]) -> tuple[str, str] | None:
        problem = super().check_config(destination, tasks)
        if problem is None and not destination.api_key:
            return "api_key", "required for provider 'gemini' (a Gemini API key from Google AI Studio)"
        return problem

    def _request(
        self, method: str, body: dict[str, Any], stream: bool = False, headers: dict[str, str] | None = None
    ) -> UpstreamRequest:
        url = f"{self._model_url}:{method}" + ("?alt=sse" if stream else "")
        return UpstreamRequest("POST", url, with_client_headers(self._headers, headers), orjson.dumps(body))

    # --- chat --------------------------------------------------------------------------------------

    def chat_request(self, request: ChatRequest, stream: bool) -> UpstreamRequest:
        body = gemini.encode_request(request, self.destination.model, stream)
        return self._request("streamGenerateContent" if stream else "generateContent", body, stream)

    def parse_chat(self, body: bytes) -> ChatResponse:
        data = orjson.loads(body)
        if "error" in data:  # a 200 that carries an error
            raise gemini_stream.stream_error(data["error"])
        response = gemini.decode_response(data)
        response.model = response.model or self.destination.model
        return response

    def stream_decoder(self) -> StreamDecoder:
        return gemini_stream.StreamDecoder(model=self.destination.model)

    def forward_request(
        self, wire: str, body: dict[str, Any], stream: bool, headers: dict[str, str] | None = None
    ) -> UpstreamRequest:
        """Pass-through: the client's Gemini body as is; the model is in the URL, not the body."""
        return self._request("streamGenerateContent" if stream else "generateContent", body, stream, headers)

    def count_tokens_request(self, request: ChatRequest) -> UpstreamRequest:
        body = gemini.encode_request(request, self.destination.model, stream=False)
        return self._request("countTokens", gemini.count_tokens_body(body, self.destination.model))

    def parse_count_tokens(self, body: bytes) -> int:
        return int(orjson.loads(body).get("totalTokens", 0))

    def forward_count_tokens_request(
        self, wire: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> UpstreamRequest:
        return self._request("countTokens", gemini.with_count_model(body, self.destination.model), headers=headers)

    # --- embeddings --------------------------------------------------------------------------------

    def embeddings_request(self, request: EmbeddingsRequest) -> UpstreamRequest:
        return self._request("batchEmbedContents", gemini_embeddings.encode_embeddings_request(request, self.destination.model))

    def parse_embeddings(self, body: bytes, request: EmbeddingsRequest) -> EmbeddingsResponse:
        vectors = gemini_embeddings.decode_embeddings_response(orjson.loads(body))
        if len(vectors) != len(request.inputs):
            raise ValueError(f"{len(vectors)} embeddings for {len(request.inputs)} inputs")
        # Gemini reports no usage for embeddings: estimate it.
        tokens = sum(estimate_tokens(text) for text in request.inputs)
        return EmbeddingsResponse(model=self.destination.model, vectors=vectors, usage=Usage(input_tokens=tokens))

    # --- errors ------------------------------------------------------------------------------------

    def _upstream_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        # AI Studio answers a bad key with 400 INVALID_ARGUMENT: the gateway's problem, not the caller's.
        if status == 400 and (b"API_KEY_INVALID" in body or b"API key not valid" in body):
            status = 401
        return super()._upstream_error(status, body, headers)
