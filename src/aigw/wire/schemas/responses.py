"""Schema of OpenAI's Responses request (`POST /responses`), at /openai/v1 and /mlflow/v1.

Input items are one flat struct rather than a union tagged by `type`: a new item type must pass
through to OpenAI unchecked, and fields that mean the same in every item (`role`, `call_id`,
`content`) are typed once. A field whose type differs between item types is left open."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from aigw.wire.schemas.bounds import MAX_TOOLS, OPENAI_RESPONSES, bounded
from aigw.wire.schemas.check import Schema


class ContentPart(Schema):
    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: str | None = None
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None
    detail: str | None = None


class SummaryPart(Schema):
    type: str | None = None
    text: str | None = None


class InputItem(Schema):
    type: str | None = None
    id: str | None = None
    role: str | None = None
    status: str | None = None
    content: str | list[ContentPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: Any = None  # a string; an object is re-encoded
    output: str | list[ContentPart] | dict[str, Any] | None = None  # computer_call_output: an object
    approval_request_id: str | None = None
    approve: bool | None = None
    encrypted_content: str | None = None
    summary: list[SummaryPart] | None = None
    server_label: str | None = None
    namespace: str | None = None  # of a function or custom tool call to a namespace's member


class NamespaceMember(Schema):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Schema):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    server_label: str | None = None
    server_url: str | None = None
    tools: Annotated[list[NamespaceMember], msgspec.Meta(max_length=MAX_TOOLS)] | None = None  # a namespace's


class ToolChoice(Schema):
    type: str
    name: str | None = None
    namespace: str | None = None
    mode: str | None = None
    tools: Annotated[list[dict[str, Any]], msgspec.Meta(max_length=MAX_TOOLS)] | None = None


class TextFormat(Schema):
    type: str
    name: str | None = None
    schema: dict[str, Any] | bool | None = None
    strict: bool | None = None


class Text(Schema):
    format: TextFormat | None = None
    verbosity: str | None = None


class Reasoning(Schema):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(Schema):
    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    tools: Annotated[list[Tool], msgspec.Meta(max_length=MAX_TOOLS)] | None = None
    tool_choice: str | ToolChoice | None = None
    stream: bool | None = None
    store: bool | None = None
    background: bool | None = None
    parallel_tool_calls: bool | None = None
    text: Text | None = None
    reasoning: Reasoning | None = None
    metadata: dict[str, str] | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    truncation: str | None = None
    include: list[str] | None = None
    max_output_tokens: bounded(OPENAI_RESPONSES, "max_output_tokens") | None = None
    max_tool_calls: bounded(OPENAI_RESPONSES, "max_tool_calls") | None = None
    temperature: bounded(OPENAI_RESPONSES, "temperature") | None = None
    top_p: bounded(OPENAI_RESPONSES, "top_p") | None = None
    top_logprobs: bounded(OPENAI_RESPONSES, "top_logprobs") | None = None
