"""OpenAI embeddings wire format <-> canonical model."""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

from aigw.canonical import EmbeddingsRequest, EmbeddingsResponse, Usage
from aigw.errors import invalid

WIRE = "openai_embeddings"
KNOWN_FIELDS = ("model", "input", "dimensions", "encoding_format", "user")


def validate_request(body: Any) -> None:
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str):
        raise invalid("Missing required parameter: 'model'.", "model")
    data = body.get("input")
    if data is None:
        raise invalid("Missing required parameter: 'input'.", "input")
    if isinstance(data, str):
        return
    if not isinstance(data, list) or not data:
        raise invalid("Invalid type for 'input': expected a string or a non-empty array.", "input")
    if not all(isinstance(x, str) for x in data) and not all(isinstance(x, int) for x in data) and not all(
        isinstance(x, list) and all(isinstance(t, int) for t in x) for x in data
    ):
        raise invalid("Invalid type for 'input': expected strings or arrays of token ids.", "input")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise invalid("Invalid value for 'dimensions': expected a positive integer.", "dimensions")
    if body.get("encoding_format", "float") not in ("float", "base64", None):
        raise invalid("Invalid value for 'encoding_format': expected float or base64.", "encoding_format")


def decode_request(body: Any) -> EmbeddingsRequest:
    validate_request(body)
    data = body["input"]
    inputs = [data] if isinstance(data, str) else data
    if not all(isinstance(x, str) for x in inputs):
        raise invalid("Token-id input is only supported for OpenAI-compatible destinations.", "input")
    return EmbeddingsRequest(
        model=body["model"],
        inputs=inputs,
        dimensions=body.get("dimensions"),
        encoding_format=body.get("encoding_format") or "float",
        user=body.get("user"),
        extra={k: v for k, v in body.items() if k not in KNOWN_FIELDS},
        extra_wire=WIRE,
    )


def encode_request(request: EmbeddingsRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = dict(request.extra) if request.extra_wire == WIRE else {}
    body["model"] = model
    body["input"] = request.inputs
    body["encoding_format"] = "float"  # decoded here; re-encoded for the client as it asked
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if request.user is not None:
        body["user"] = request.user
    return body


def decode_response(data: dict[str, Any]) -> EmbeddingsResponse:
    items = sorted(data.get("data") or [], key=lambda item: item.get("index", 0))
    usage = data.get("usage") or {}
    return EmbeddingsResponse(
        model=data.get("model") or "",
        vectors=[_vector(item.get("embedding")) for item in items],
        usage=Usage(input_tokens=usage.get("prompt_tokens") or 0),
    )


def _vector(embedding: Any) -> list[float]:
    if isinstance(embedding, str):  # an upstream that answered in base64 anyway
        values = array("f")
        values.frombytes(base64.b64decode(embedding))
        if sys.byteorder == "big":
            values.byteswap()
        return values.tolist()
    return embedding or []


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """float: the list; base64: little-endian float32 bytes, as OpenAI sends them."""
    if encoding_format != "base64":
        return vector
    values = array("f", vector)
    if sys.byteorder == "big":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


def encode_response(response: EmbeddingsResponse, encoding_format: str) -> dict[str, Any]:
    tokens = response.usage.input_tokens if response.usage else 0
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
            for i, v in enumerate(response.vectors)
        ],
        "model": response.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
