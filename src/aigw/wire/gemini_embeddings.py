"""Gemini embeddings <-> canonical: embedContent and batchEmbedContents, both ways."""

from __future__ import annotations

from typing import Any

from aigw.canonical import EmbeddingsRequest, EmbeddingsResponse
from aigw.errors import invalid
from aigw.wire.gemini import WIRE, get_field, model_path, rest_of


def encode_embeddings_request(request: EmbeddingsRequest, model: str) -> dict[str, Any]:
    """EmbeddingsRequest -> a batchEmbedContents body (one request per input)."""
    extra = request.extra if request.extra_wire == WIRE else {}
    name = model_path(model)
    requests = []
    for text in request.inputs:
        item: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}, **extra}
        if request.dimensions is not None:
            item["outputDimensionality"] = request.dimensions
        requests.append(item)
    return {"requests": requests}


def decode_embeddings_response(data: dict[str, Any]) -> list[list[float]]:
    """batchEmbedContents (`embeddings`) or embedContent (`embedding`) response -> vectors."""
    if isinstance(data.get("embeddings"), list):
        return [e["values"] for e in data["embeddings"]]
    if isinstance(data.get("embedding"), dict):
        return [data["embedding"]["values"]]
    raise ValueError("the response holds no embeddings")


def _embed_item(item: Any, where: str) -> tuple[str, int | None, dict[str, Any]]:
    if not isinstance(item, dict):
        raise invalid(f"Invalid type for '{where or 'body'}': expected an object.", where or None)
    prefix = f"{where}." if where else ""
    content = item.get("content")
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        raise invalid(f"Missing required parameter: '{prefix}content.parts'.", f"{prefix}content.parts")
    texts = []
    for j, part in enumerate(content["parts"]):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            at = f"{prefix}content.parts[{j}]"
            raise invalid(f"Only text parts can be embedded through this endpoint ('{at}').", at)
        texts.append(part["text"])
    dimensions = get_field(item, "outputDimensionality")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)):
        at = f"{prefix}outputDimensionality"
        raise invalid(f"Invalid type for '{at}': expected an integer.", at)
    return "\n".join(texts), dimensions, rest_of(item, ("content", "outputDimensionality", "model"))


def decode_embed_content_request(body: Any, model: str) -> EmbeddingsRequest:
    """A client's embedContent body -> EmbeddingsRequest (taskType, title, ... kept as extra)."""
    text, dimensions, extra = _embed_item(body, "")
    return EmbeddingsRequest(model=model, inputs=[text], dimensions=dimensions, extra=extra, extra_wire=WIRE)


def decode_batch_embed_contents_request(body: Any, model: str) -> EmbeddingsRequest:
    """A client's batchEmbedContents body -> EmbeddingsRequest. The requests must share their options."""
    requests = get_field(body, "requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise invalid("Missing required parameter: 'requests' (a non-empty array).", "requests")
    items = [_embed_item(r, f"requests[{i}]") for i, r in enumerate(requests)]
    for i, (_, dimensions, extra) in enumerate(items):
        if dimensions != items[0][1] or extra != items[0][2]:
            raise invalid(f"'requests[{i}]' must use the same options as 'requests[0]'.", f"requests[{i}]")
    return EmbeddingsRequest(
        model=model, inputs=[text for text, _, _ in items], dimensions=items[0][1], extra=items[0][2], extra_wire=WIRE
    )


def encode_embed_content_response(response: EmbeddingsResponse) -> dict[str, Any]:
    return {"embedding": {"values": response.vectors[0] if response.vectors else []}}


def encode_batch_embed_contents_response(response: EmbeddingsResponse) -> dict[str, Any]:
    return {"embeddings": [{"values": vector} for vector in response.vectors]}


