"""The numeric bounds of every request field, as data: one table per wire format, each entry the
vendor's own limit where it documents one, else a gateway-wide cap that keeps one request's work
bounded (a `dimensions` of 1e9 must be refused before anything allocates a vector that long).

The schemas (`aigw.wire.schemas.*`) turn an entry into a constrained msgspec type with `bounded`,
so a bound is written once, here, and checked before any work is done on the request.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import msgspec

INT32_MAX = 2**31 - 1  # Google's protobuf integers; a sane ceiling for token counts everywhere
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DIMENSIONS = 65_536  # no embedding model comes near; the demo model has 16 (providers/demo.py)
MAX_EMBEDDING_INPUTS = 2_048  # OpenAI's cap on one embeddings request's inputs
MAX_DEPTH = 128  # JSON nesting: orjson cannot write back past 254, no real request nests past ~20
# Tools of one request, a namespace's members counted one by one: a cap on the work of translating
# them. Well above what vendors take (OpenAI chat and Gemini refuse more than 128 functions), so a
# request passed through to OpenAI is not refused here for a count OpenAI accepts.
MAX_TOOLS = 1_024


class Bound(NamedTuple):
    """Inclusive limits of a number (None: unbounded on that side), and whether it must be whole."""

    low: float | None
    high: float | None
    integer: bool = True


def _real(low: float, high: float) -> Bound:
    return Bound(low, high, integer=False)


_TOKENS = Bound(1, INT32_MAX)
_PENALTY = _real(-2, 2)

OPENAI_CHAT: dict[str, Bound] = {
    "n": Bound(1, 128),
    "temperature": _real(0, 2),
    "top_p": _real(0, 1),
    "frequency_penalty": _PENALTY,
    "presence_penalty": _PENALTY,
    "top_logprobs": Bound(0, 20),
    "max_tokens": _TOKENS,
    "max_completion_tokens": _TOKENS,
    "seed": Bound(INT64_MIN, INT64_MAX),
}
OPENAI_EMBEDDINGS: dict[str, Bound] = {"dimensions": Bound(1, MAX_DIMENSIONS)}
OPENAI_RESPONSES: dict[str, Bound] = {
    "temperature": _real(0, 2),
    "top_p": _real(0, 1),
    "top_logprobs": Bound(0, 20),
    "max_output_tokens": _TOKENS,
    "max_tool_calls": Bound(1, INT32_MAX),
}
ANTHROPIC: dict[str, Bound] = {
    "max_tokens": _TOKENS,
    "temperature": _real(0, 1),
    "top_p": _real(0, 1),
    "top_k": Bound(0, INT32_MAX),
    "budget_tokens": Bound(0, INT32_MAX),
}
GEMINI: dict[str, Bound] = {
    "temperature": _real(0, 2),
    "topP": _real(0, 1),
    "topK": Bound(0, INT32_MAX, integer=False),  # a number in Google's schema, whole in practice
    "maxOutputTokens": _TOKENS,
    "candidateCount": Bound(1, 8),
    "seed": Bound(-(2**31), INT32_MAX),
    "presencePenalty": _PENALTY,
    "frequencyPenalty": _PENALTY,
    "logprobs": Bound(0, 20),
    "thinkingBudget": Bound(-1, INT32_MAX),  # -1: dynamic thinking
    "outputDimensionality": Bound(1, MAX_DIMENSIONS),
}


def bounded(table: dict[str, Bound], name: str) -> Any:
    """The msgspec type of field `name` in `table`: an int or a number within its bounds."""
    bound = table[name]
    meta = msgspec.Meta(ge=bound.low, le=bound.high)
    return Annotated[int, meta] if bound.integer else Annotated[float, meta]
