"""Schemas of Anthropic's Messages and count_tokens requests. Content blocks are one flat struct
(not a union tagged by `type`), so new block types pass through to Anthropic; `content` nests
blocks (tool results, search results) and is left open where a block type may hold an object."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from aigw.wire.schemas.bounds import ANTHROPIC, bounded
from aigw.wire.schemas.check import Schema


class Source(Schema):
    type: str | None = None
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None


class Block(Schema):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[Block] | dict[str, Any] | None = None
    is_error: bool | None = None
    source: Source | str | None = None  # a search_result block's source is its URL
    title: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class Message(Schema):
    role: str
    content: str | list[Block]


class Tool(Schema):
    name: str | None = None
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    strict: bool | None = None


class ToolChoice(Schema):
    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(Schema):
    type: str
    budget_tokens: bounded(ANTHROPIC, "budget_tokens") | None = None


class Metadata(Schema):
    user_id: str | None = None


class CountTokensRequest(Schema, kw_only=True):
    model: str
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    system: str | list[Block] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None


class MessagesRequest(CountTokensRequest, kw_only=True):
    max_tokens: bounded(ANTHROPIC, "max_tokens")
    temperature: bounded(ANTHROPIC, "temperature") | None = None
    top_p: bounded(ANTHROPIC, "top_p") | None = None
    top_k: bounded(ANTHROPIC, "top_k") | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    metadata: Metadata | None = None
