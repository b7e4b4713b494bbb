"""What a content policy decides, and the record of each run.

A policy looks at the text segments of one request (`call` phase) or one response (`result` phase)
and answers with a `Verdict`, a plain value: allow, deny, mask (the segments rewritten) or ask (hold an
agent's tool call for a person's approval). A verdict's message is shown to the caller and stored, so
it names the policy and categories only, never the text that triggered it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol, Sequence

Action = Literal["allow", "deny", "mask", "ask"]
OnError = Literal["deny", "allow"]

POLICY_ERROR = "policy_error"  # the category of a policy that raised or timed out


class Phase(str, Enum):
    CALL = "call"  # the request, before anything leaves the gateway
    RESULT = "result"  # the response, whole or streamed


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    categories: tuple[str, ...] = ()
    message: str = ""  # never contains the offending text
    texts: tuple[str, ...] | None = None  # mask: the rewritten segments, as many as were checked

    @staticmethod
    def deny(categories: Sequence[str], message: str) -> Verdict:
        return Verdict("deny", tuple(categories), message)

    @staticmethod
    def mask(texts: Sequence[str], categories: Sequence[str]) -> Verdict:
        return Verdict("mask", tuple(categories), "", tuple(texts))

    @staticmethod
    def ask(categories: Sequence[str], message: str) -> Verdict:
        return Verdict("ask", tuple(categories), message)


ALLOW = Verdict("allow")


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Where the checked text comes from; webhook and judge kinds pass it on."""

    phase: Phase
    endpoint: str
    principal: str | None = None
    surface: str | None = None  # e.g. "openai", "anthropic", "mlflow"


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """One policy's run, as listed on the usage record."""

    policy: str
    phase: Phase
    action: Action
    categories: tuple[str, ...]
    elapsed_ms: float

    def as_record(self) -> dict[str, object]:
        return {
            "policy": self.policy, "phase": self.phase.value, "verdict": self.action,
            "categories": list(self.categories), "ms": round(self.elapsed_ms, 3),
        }  # fmt: skip


class Policy(Protocol):
    """A named check. `check` gets the segments of one request or response (e.g. each message's
    text) and returns a verdict; a mask verdict carries exactly as many segments, rewritten.
    Async so kinds that call out (judge, webhook) share the interface."""

    name: str
    phases: frozenset[Phase]
    on_error: OnError
    timeout: float | None  # seconds; None: no limit (deterministic in-process kinds)

    async def check(self, texts: list[str], context: PolicyContext) -> Verdict: ...


def refusal_message(policy: str, phase: Phase, categories: Sequence[str]) -> str:
    """The caller-facing sentence of a deny: the policy and its categories, never the text."""
    what = "request" if phase is Phase.CALL else "response"
    found = f" ({', '.join(categories)})" if categories else ""
    return f"The {what} was refused by policy '{policy}'{found}."
