"""What the providers behind the test gateway answer (the fakes' rules in tests/fakes/scenario.py, the
demo provider's own), and a tiny image to send them: shared by the end-to-end suites."""

from __future__ import annotations

import base64

# A 1x1 transparent PNG, base64.
PNG_BYTES = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082"
)
PNG = base64.b64encode(PNG_BYTES).decode()


def echo(provider: str, text: str) -> str:
    """What the provider behind the endpoint answers to `text`."""
    return f"Echo: {text}" if provider == "demo" else f"echo: {text}"


def tool_said(provider: str, text: str) -> str:
    """Its answer after a tool result `text`."""
    return f"The tool said: {text}" if provider == "demo" else f"tool said: {text}"


def upstream_tool_names(provider: str, body: dict) -> list[str]:
    """The names of the tools a request in `provider`'s wire format offers the model."""
    if provider == "compat":
        return [tool["function"]["name"] for tool in body["tools"]]
    if provider == "anthropic":
        return [tool["name"] for tool in body["tools"]]
    return [d["name"] for tool in body["tools"] for d in tool["functionDeclarations"]]
