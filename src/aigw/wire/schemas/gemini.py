"""Schemas of Gemini's generateContent, countTokens, embedContent and batchEmbedContents requests.

Google's JSON parser takes every field in camelCase or snake_case (`generationConfig`,
`generation_config`), and so does the gateway (`aigw.wire.gemini._get`): each struct here is made
from one list of camelCase fields, with the snake_case spelling of each added beside it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional

import msgspec

from aigw.wire.schemas.bounds import GEMINI, MAX_EMBEDDING_INPUTS, bounded
from aigw.wire.schemas.check import Schema


def _struct(name: str, fields: dict[str, Any]) -> type[Schema]:
    """A schema with every field optional, under both of Google's spellings."""
    spelled: list[tuple[str, Any, Any]] = []
    for camel, kind in fields.items():
        spelled.append((camel, Optional[kind], None))
        snake = re.sub(r"([A-Z])", r"_\1", camel).lower()
        if snake != camel:
            spelled.append((snake, Optional[kind], None))
    return msgspec.defstruct(name, spelled, bases=(Schema,))


class OpenApiSchema(Schema):
    """Gemini's OpenAPI-style Schema (tool parameters, responseSchema): the keys the gateway walks
    when it turns one into JSON Schema for other providers."""

    properties: dict[str, OpenApiSchema] | None = None
    items: OpenApiSchema | bool | None = None
    additionalProperties: OpenApiSchema | bool | None = None
    anyOf: list[OpenApiSchema | bool] | None = None
    oneOf: list[OpenApiSchema | bool] | None = None
    allOf: list[OpenApiSchema | bool] | None = None
    prefixItems: list[OpenApiSchema | bool] | None = None
    defs: dict[str, OpenApiSchema] | None = msgspec.field(default=None, name="$defs")
    google_defs: dict[str, OpenApiSchema] | None = msgspec.field(default=None, name="defs")


Blob = _struct("Blob", {"mimeType": str, "data": str, "displayName": str})
FileData = _struct("FileData", {"mimeType": str, "fileUri": str, "displayName": str})
FunctionCall = _struct("FunctionCall", {"id": str, "name": str, "args": dict[str, Any]})
_ResponsePart = _struct("FunctionResponsePart", {"inlineData": Blob, "fileData": FileData})
FunctionResponse = _struct(
    "FunctionResponse", {"id": str, "name": str, "response": dict[str, Any], "parts": list[_ResponsePart]}
)
Part = _struct(
    "Part",
    {
        "text": str, "thought": bool, "thoughtSignature": str, "inlineData": Blob, "fileData": FileData,
        "functionCall": FunctionCall, "functionResponse": FunctionResponse,
    },
)  # fmt: skip
Content = _struct("Content", {"role": str, "parts": list[Part]})
FunctionDeclaration = _struct(
    "FunctionDeclaration", {"name": str, "description": str, "parameters": OpenApiSchema, "parametersJsonSchema": Any}
)
Tool = _struct("Tool", {"functionDeclarations": list[FunctionDeclaration]})
FunctionCallingConfig = _struct("FunctionCallingConfig", {"mode": str, "allowedFunctionNames": list[str]})
ToolConfig = _struct("ToolConfig", {"functionCallingConfig": FunctionCallingConfig})
ThinkingConfig = _struct(
    "ThinkingConfig", {"thinkingBudget": bounded(GEMINI, "thinkingBudget"), "thinkingLevel": str, "includeThoughts": bool}
)
_BOUNDED_GENERATION = ("temperature", "topP", "topK", "maxOutputTokens", "candidateCount", "seed",
                       "presencePenalty", "frequencyPenalty", "logprobs")  # fmt: skip
GenerationConfig = _struct(
    "GenerationConfig",
    {
        **{name: bounded(GEMINI, name) for name in _BOUNDED_GENERATION},
        "stopSequences": list[str], "responseMimeType": str, "responseSchema": OpenApiSchema,
        "responseJsonSchema": dict[str, Any] | bool, "thinkingConfig": ThinkingConfig, "responseLogprobs": bool,
        "responseModalities": list[str],
    },
)  # fmt: skip
_GENERATE_FIELDS: dict[str, Any] = {
    "contents": list[Content], "systemInstruction": Content, "tools": list[Tool], "toolConfig": ToolConfig,
    "generationConfig": GenerationConfig, "safetySettings": list[dict[str, Any]], "cachedContent": str,
}  # fmt: skip
GenerateContentRequest = _struct("GenerateContentRequest", _GENERATE_FIELDS)
CountTokensRequest = _struct(
    "CountTokensRequest",
    {"contents": list[Content], "generateContentRequest": _struct("Counted", {**_GENERATE_FIELDS, "model": str})},
)
EmbedContentRequest = _struct(
    "EmbedContentRequest",
    {"model": str, "content": Content, "taskType": str, "title": str, "outputDimensionality": bounded(GEMINI, "outputDimensionality")},
)
BatchEmbedContentsRequest = _struct(
    "BatchEmbedContentsRequest",
    {"requests": Annotated[list[EmbedContentRequest], msgspec.Meta(max_length=MAX_EMBEDDING_INPUTS)]},
)
