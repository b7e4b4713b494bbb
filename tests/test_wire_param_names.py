"""Each client wire's names for canonical request fields (`PARAM_NAMES`), and `in_client_terms`,
which renames a provider's 400 about a canonical field to the field the client set."""

from __future__ import annotations

import re

import pytest

from aigw.canonical import ChatRequest
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.surfaces.chat_flow import in_client_terms
from aigw.wire import anthropic, gemini, openai_chat, openai_responses

TABLES = {
    "anthropic": anthropic.PARAM_NAMES,
    "gemini": gemini.PARAM_NAMES,
    "openai_chat": openai_chat.PARAM_NAMES,
    "openai_responses": openai_responses.PARAM_NAMES,
}


@pytest.mark.parametrize("wire", TABLES)
def test_every_name_is_of_a_canonical_field(wire: str) -> None:
    for canonical in TABLES[wire]:
        assert re.split(r"[.\[]", canonical)[0] in ChatRequest.__struct_fields__, canonical


@pytest.mark.parametrize(
    ("wire", "error", "param", "message"),
    [
        (
            "gemini",
            invalid("This endpoint's provider returns one choice per request: 'n' must be 1.", "n"),
            "generationConfig.candidateCount",
            "This endpoint's provider returns one choice per request: 'generationConfig.candidateCount' must be 1.",
        ),
        (  # canonical indexes need not be the client's: only the field is named
            "gemini",
            invalid("'messages[2]' answers tool call 'c1', which no earlier assistant message made.", "messages[2].tool_call_id"),
            "contents",
            "'contents' answers tool call 'c1', which no earlier assistant message made.",
        ),
        ("gemini", invalid("Bad 'response_format.schema'.", "response_format.schema"), "generationConfig.responseJsonSchema",
         "Bad 'generationConfig.responseJsonSchema'."),
        ("anthropic", invalid("Bad 'stop'.", "stop"), "stop_sequences", "Bad 'stop_sequences'."),
        ("openai_responses", invalid("Bad 'max_tokens'.", "max_tokens"), "max_output_tokens", "Bad 'max_output_tokens'."),
        ("openai_responses", invalid("The file at 'messages[1].content[0]' is by URL.", "messages[1].content[0]"), "input",
         "The file at 'input' is by URL."),
        # Canonical names are OpenAI chat's, its messages decode one for one: nothing to rename.
        ("openai_chat", invalid("The file at 'messages[1].content[0]' is by URL.", "messages[1].content[0]"),
         "messages[1].content[0]", "The file at 'messages[1].content[0]' is by URL."),
        ("anthropic", invalid("Bad 'temperature'.", "temperature"), "temperature", "Bad 'temperature'."),
    ],
)  # fmt: skip
def test_a_400_about_a_canonical_field_names_the_clients(wire: str, error: GatewayError, param: str, message: str) -> None:
    renamed = in_client_terms(error, TABLES[wire])
    assert (renamed.kind, renamed.status, renamed.param, renamed.message) == (ErrorKind.INVALID_REQUEST, 400, param, message)


def test_errors_naming_no_canonical_field_are_left_as_they_are() -> None:
    upstream = GatewayError(ErrorKind.INVALID_REQUEST, "Destination 'x' returned HTTP 400: 'n' is wrong")
    assert in_client_terms(upstream, gemini.PARAM_NAMES) is upstream
    limited = GatewayError(ErrorKind.RATE_LIMIT, "slow down", param="n", headers={"retry-after": "7"})
    assert in_client_terms(limited, gemini.PARAM_NAMES) is limited
