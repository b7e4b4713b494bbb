"""The canonical model: one set of types every wire format translates to and from.

A surface turns its client's request into a `ChatRequest`; a provider turns a `ChatRequest` into its
upstream's request, and the upstream's answer back into a `ChatResponse` or a stream of `StreamEvent`s.
So N client formats and M providers need N + M translators, never N x M.

The vocabulary follows OpenAI chat where one is needed (roles, finish reasons), because it is the
most widely known; the *shape* is our own: content is always a list of typed parts, reasoning is kept
with its signature and the name of the vendor that signed it, and usage names input and output
explicitly.

Signatures and their signer. Vendors sign reasoning (Anthropic `thinking` signatures and
`redacted_thinking` data, Gemini `thoughtSignature`s, OpenAI's encrypted reasoning) and verify it
on the next turn; another vendor's signature is refused ("Invalid `signature` in `thinking` block").
So a signature travels with `signer`, the wire format that minted it (`anthropic`, `gemini`,
`openai_responses`; None: unknown), and crosses wires by these rules:

- a decoder of an upstream's answer sets `signer` to its own wire;
- an encoder of a client's answer in wire W renders a signature as it is when W signed it, sealed
  (`seal_signature`: `aigw1.<signer>.<signature>`, opaque to the client) when another wire did,
  and not at all when the signer is unknown;
- a decoder of a client's request in wire W opens a sealed signature; any other is W's own;
- an encoder of an upstream's request in wire V sends only signatures V signed.

Pass-through bodies are never decoded, so none of this touches them.

Structs are msgspec's: cheap to build on the hot path, and `msgspec.to_builtins` gives golden tests
a plain view.
"""

from __future__ import annotations

from typing import Any, Literal, Union

import msgspec


class Struct(msgspec.Struct, omit_defaults=True):
    """Base for canonical types: defaults left out of dumps. Build them with keywords."""


# --- content ---------------------------------------------------------------------------------------


class TextPart(Struct, tag="text"):
    text: str


class ImagePart(Struct, tag="image"):
    """An image, by URL: an http(s) URL, or a `data:<media type>;base64,<data>` URL for inline bytes."""

    url: str
    detail: str | None = None

    @property
    def is_inline(self) -> bool:
        return self.url.startswith("data:")

    def inline_data(self) -> tuple[str, str]:
        """(media type, base64 data) of a data URL."""
        header, _, data = self.url.partition(",")
        media_type = header[5:].split(";", 1)[0] or "application/octet-stream"
        return media_type, data


class FilePart(Struct, tag="file"):
    """A document (PDF, ...) given inline (`data`, base64) or by URL or provider file id."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    filename: str | None = None


Part = Union[TextPart, ImagePart, FilePart]


class Reasoning(Struct):
    """A model's reasoning ("thinking"). `signature` lets providers that sign it verify it on
    the next turn; `redacted` carries encrypted reasoning that only the same vendor can read;
    `signer` is the wire format that minted both (see the module docstring)."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    signer: str | None = None


class ToolCall(Struct):
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it
    signature: str | None = None  # vendor token that must travel with the call (Gemini thoughtSignature)
    signer: str | None = None  # the wire format that minted `signature`


Role = Literal["system", "user", "assistant", "tool"]


class Message(Struct):
    role: Role
    content: list[Part] = []
    tool_calls: list[ToolCall] = []
    tool_call_id: str | None = None  # role "tool": the call this message answers
    name: str | None = None  # role "tool": the function's name, where known; else a participant name
    reasoning: list[Reasoning] = []  # role "assistant"
    is_error: bool = False  # role "tool": the tool failed

    def text(self) -> str:
        """The text parts run together: for a model's answer, whose parts are one continuous text."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def paragraphs(self) -> str:
        """The text parts as paragraphs: for blocks a client wrote separately (a system prompt, a
        tool result, a user turn) that a target API can only take as one string."""
        return "\n\n".join(p.text for p in self.content if isinstance(p, TextPart) and p.text)


# --- signatures across wires ----------------------------------------------------------------------

SEAL_PREFIX = "aigw1."  # never starts a vendor's signature: those are base64 (or, for OpenAI, base64url)


def seal_signature(signer: str, value: str) -> str:
    """Another wire's signature (or encrypted reasoning) as a client may hold it: opaque to the
    client, which sends it back as it got it, and unmistakable to the gateway."""
    return f"{SEAL_PREFIX}{signer}.{value}"


def open_signature(value: str) -> tuple[str, str] | None:
    """(signer, signature) of a sealed value; None for anything else (a vendor's own signature)."""
    if not value.startswith(SEAL_PREFIX):
        return None
    signer, dot, signature = value[len(SEAL_PREFIX) :].partition(".")
    return (signer, signature) if dot and signer else None


def signature_for_client(wire: str, signer: str | None, value: str | None) -> str | None:
    """A signature as an encoder for clients of `wire` renders it: as it is when `wire` minted it,
    sealed when another wire did, left out when nobody knows who did (no upstream would take it)."""
    if value is None or signer is None:
        return None
    return value if signer == wire else seal_signature(signer, value)


def signature_from_client(wire: str, value: str | None) -> tuple[str | None, str | None]:
    """(signer, signature) of a signature a client of `wire` sent back: a sealed one opened, any
    other minted by `wire` (it reached the client unsealed, so `wire` signed it)."""
    if not value:
        return None, None
    return open_signature(value) or (wire, value)


# --- request ---------------------------------------------------------------------------------------


class Tool(Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # JSON schema
    strict: bool | None = None


class ToolChoice(Struct):
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None  # mode "tool": the function the model must call


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ChatRequest(Struct):
    model: str  # the gateway endpoint the client named
    messages: list[Message]
    tools: list[Tool] = []
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = []
    n: int | None = None
    seed: int | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage
    # Fields of the client's wire format that have no canonical meaning: forwarded unchanged to
    # providers that speak the same wire format, dropped for others.
    extra: dict[str, Any] = {}
    extra_wire: str | None = None  # the wire format `extra` belongs to


# --- response --------------------------------------------------------------------------------------


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class Usage(Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def estimate_tokens(text: str) -> int:
    """The gateway's token estimate where a provider reports none: about four characters a token."""
    return estimate_tokens_of_size(len(text))


def estimate_tokens_of_size(characters: int) -> int:
    return (characters + 1) // 4


# An image or document costs tokens the gateway cannot count without decoding it; this is about what
# a mid-sized image costs at the large vendors.
ATTACHMENT_TOKEN_ESTIMATE = 1000


def estimate_request_tokens(request: ChatRequest) -> int:
    """The input tokens of a request by the gateway's estimate: every text the model reads (messages,
    tool calls and results, reasoning, tool definitions) at four characters a token."""
    chars = 0
    attachments = 0
    for message in request.messages:
        for part in message.content:
            if isinstance(part, TextPart):
                chars += len(part.text)
            else:
                attachments += 1
        chars += sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
        chars += sum(len(reasoning.text) for reasoning in message.reasoning)
    chars += sum(len(msgspec.json.encode(tool)) for tool in request.tools)
    return max(1, (chars + 1) // 4) + attachments * ATTACHMENT_TOKEN_ESTIMATE  # a request is never free


class Choice(Struct):
    message: Message
    index: int = 0
    finish_reason: FinishReason | None = None


class ChatResponse(Struct):
    id: str
    model: str  # the upstream model that answered
    created: int
    choices: list[Choice]
    usage: Usage | None = None


# --- stream events ---------------------------------------------------------------------------------
# A stream is: one StreamStart, then deltas (any order across choices), one Finish per choice,
# and at most one UsageEvent (usually last). Decoders emit them; encoders render them.


class StreamStart(Struct, tag="start"):
    id: str
    model: str
    created: int


class TextDelta(Struct, tag="text"):
    text: str
    index: int = 0


class ReasoningDelta(Struct, tag="reasoning"):
    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    signer: str | None = None  # the wire format that minted `signature` / `redacted`
    index: int = 0


class ToolCallDelta(Struct, tag="tool_call"):
    """Part of tool call `tool_index` of choice `index`: the first delta of a call carries its id and
    name, later ones append to its arguments."""

    tool_index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    signature: str | None = None
    signer: str | None = None  # the wire format that minted `signature`
    index: int = 0


class Finish(Struct, tag="finish"):
    reason: FinishReason
    index: int = 0


class UsageEvent(Struct, tag="usage"):
    usage: Usage


StreamEvent = Union[StreamStart, TextDelta, ReasoningDelta, ToolCallDelta, Finish, UsageEvent]


# --- embeddings ------------------------------------------------------------------------------------


class EmbeddingsRequest(Struct):
    model: str
    inputs: list[str]
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None
    extra: dict[str, Any] = {}
    extra_wire: str | None = None


class EmbeddingsResponse(Struct):
    model: str
    vectors: list[list[float]]
    usage: Usage | None = None
