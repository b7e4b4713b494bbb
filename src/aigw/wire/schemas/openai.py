"""Schemas of OpenAI's chat-completions and embeddings requests: the fields the gateway reads, typed
and bounded; every other field passes through unchecked (it is the vendor's business)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from aigw.wire.schemas.bounds import MAX_EMBEDDING_INPUTS, OPENAI_CHAT, OPENAI_EMBEDDINGS, bounded
from aigw.wire.schemas.check import Schema

_NonEmpty = msgspec.Meta(min_length=1)


class ImageURL(Schema):
    url: str | None = None
    detail: str | None = None


class FileRef(Schema):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class InputAudio(Schema):
    data: str | None = None
    format: str | None = None


class ContentPart(Schema):
    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: str | ImageURL | None = None
    input_audio: InputAudio | None = None
    file: FileRef | None = None


class FunctionCall(Schema):
    name: str | None = None
    arguments: Any = None  # a string; an object is re-encoded (some clients send one)


class ToolCall(Schema):
    id: str | None = None
    type: str | None = None
    function: FunctionCall | None = None


class ChatMessage(Schema):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None


class FunctionDefinition(Schema):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(Schema):
    type: str | None = None
    function: FunctionDefinition | None = None


class NamedFunction(Schema):
    name: str


class ToolChoice(Schema):
    type: str | None = None
    function: NamedFunction | None = None


class JsonSchemaFormat(Schema):
    name: str | None = None
    description: str | None = None
    schema: dict[str, Any] | bool | None = None
    strict: bool | None = None


class ResponseFormat(Schema):
    type: str
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(Schema):
    include_usage: bool | None = None


class ChatCompletionRequest(Schema):
    model: str
    messages: Annotated[list[ChatMessage], _NonEmpty]
    tools: list[ChatTool] | None = None
    tool_choice: str | ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    logit_bias: dict[str, Annotated[float, msgspec.Meta(ge=-100, le=100)]] | None = None
    metadata: dict[str, str] | None = None
    n: bounded(OPENAI_CHAT, "n") | None = None
    temperature: bounded(OPENAI_CHAT, "temperature") | None = None
    top_p: bounded(OPENAI_CHAT, "top_p") | None = None
    frequency_penalty: bounded(OPENAI_CHAT, "frequency_penalty") | None = None
    presence_penalty: bounded(OPENAI_CHAT, "presence_penalty") | None = None
    top_logprobs: bounded(OPENAI_CHAT, "top_logprobs") | None = None
    max_tokens: bounded(OPENAI_CHAT, "max_tokens") | None = None
    max_completion_tokens: bounded(OPENAI_CHAT, "max_completion_tokens") | None = None
    seed: bounded(OPENAI_CHAT, "seed") | None = None


class EmbeddingsRequest(Schema):
    model: str
    # Strings, token ids, or arrays of token ids: the elements are checked by the wire module.
    input: str | Annotated[list[Any], msgspec.Meta(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    dimensions: bounded(OPENAI_EMBEDDINGS, "dimensions") | None = None
    encoding_format: str | None = None
    user: str | None = None
