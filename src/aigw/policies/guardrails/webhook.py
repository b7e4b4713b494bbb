"""The `webhook` kind: the operator's HTTP service decides, and the answer shape it shares with the
`python` kind.

The gateway POSTs `{"text", "texts", "phase", "endpoint", "principal", "surface", "policy"}` through
its pooled upstream client, with the configured headers (`${VAR}` taken from the environment when
the configuration is read) and the policy's timeout. The service answers 2xx with
`{"action": "allow"|"deny"|"mask", "categories": [...], "message": "...", "texts": [...]}` (`texts`,
for a mask, as many as were sent). Any other status, a body over 1 MiB, or another shape is an error:
the engine fails closed unless `on_error: allow`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from aigw.http.upstream import UpstreamLimits, UpstreamRequest

from .services import PolicyServices
from .verdicts import ALLOW, OnError, Phase, PolicyContext, Verdict, refusal_message

MAX_ANSWER_BYTES = 1 << 20
MAX_MESSAGE_CHARS = 500
_CATEGORY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class AnswerError(ValueError):
    """A decision that is not one: its message names what is wrong, never the text."""


def verdict_from_answer(answer: Any, policy: str, phase: Phase, count: int) -> Verdict:
    """A webhook's (or Python function's) answer as a verdict; AnswerError if it is not one."""
    if isinstance(answer, Verdict):
        return answer
    if not isinstance(answer, dict):
        raise AnswerError(f"the answer is a {type(answer).__name__}, not an object")
    action = answer.get("action")
    categories = answer.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, str) and _CATEGORY.fullmatch(c) for c in categories) or len(categories) > 20:
        raise AnswerError("categories must be a list of up to 20 short names")
    message = answer.get("message", "")
    if not isinstance(message, str):
        raise AnswerError("message must be a string")
    if action == "allow":
        return ALLOW
    if action == "deny":
        # The service's message is shown to the caller: bounded, and the standard one if absent.
        return Verdict.deny(categories, message[:MAX_MESSAGE_CHARS] or refusal_message(policy, phase, categories))
    if action == "mask":
        texts = answer.get("texts")
        if not isinstance(texts, list) or len(texts) != count or not all(isinstance(t, str) for t in texts):
            raise AnswerError(f"a mask needs texts: a list of {count} strings")
        return Verdict.mask(texts, categories)
    raise AnswerError("action must be allow, deny or mask")


class WebhookPolicy:
    stream: str = "buffer"  # on a stream: hold it until checked (buffer), or check at the end (after)

    def __init__(
        self, name: str, phases: frozenset[Phase], services: PolicyServices, url: str, headers: dict[str, str],
        on_error: OnError, timeout: float | None,
    ) -> None:  # fmt: skip
        self.name, self.phases, self.services, self.url = name, phases, services, url
        own = {k: v for k, v in headers.items() if k.lower() != "content-type"}  # the body is ours: JSON
        self.headers = {**own, "Content-Type": "application/json"}
        self.on_error, self.timeout = on_error, timeout
        wait = timeout or 5.0
        self._limits = UpstreamLimits(timeout=wait, total_timeout=wait, max_body_bytes=MAX_ANSWER_BYTES)

    async def check(self, texts: list[str], context: PolicyContext) -> Verdict:
        body = orjson.dumps({
            "text": "\n\n".join(texts), "texts": texts, "phase": context.phase.value, "endpoint": context.endpoint,
            "principal": context.principal, "surface": context.surface, "policy": self.name,
        })  # fmt: skip
        request = UpstreamRequest("POST", self.url, dict(self.headers), body)
        response = await self.services.http.send(request, limits=self._limits, destination=f"policy {self.name}")
        try:
            data = await response.read()
        finally:
            response.close()
        if not 200 <= response.status < 300:
            raise AnswerError(f"the webhook answered HTTP {response.status}")
        try:
            answer = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise AnswerError("the webhook's answer is not JSON") from None
        return verdict_from_answer(answer, self.name, context.phase, len(texts))
