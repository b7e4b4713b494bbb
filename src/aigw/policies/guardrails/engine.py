"""Runs an endpoint's policies, in their declared order, on one phase of one call.

A deny stops the run; masks compose (each policy sees the text as the previous ones left it); an ask
is kept while later policies run (a later deny still wins). A policy that raises, times out or
breaks the interface (a mask of the wrong number of segments) fails closed, a deny in category
`policy_error`, unless it says `on_error: allow`. Every run is recorded for the usage record.
An endpoint without policies for a phase costs one dictionary lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Sequence

from .verdicts import ALLOW, POLICY_ERROR, Phase, Policy, PolicyContext, PolicyRun, Verdict, refusal_message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The combined verdict of a phase: `texts` are the segments to send on (masked, if any mask)."""

    action: str  # allow | deny | mask | ask
    texts: tuple[str, ...] | list[str]
    runs: tuple[PolicyRun, ...] = ()
    policy: str | None = None  # the policy that denied or asked
    categories: tuple[str, ...] = ()
    message: str = ""

    @property
    def denied(self) -> bool:
        return self.action == "deny"


class PolicyEngine:
    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = tuple(policies)
        self._by_phase = {phase: tuple(p for p in self.policies if phase in p.phases) for phase in Phase}

    def applies(self, phase: Phase) -> bool:
        """Is there anything to run? Callers skip decoding the text when not."""
        return bool(self._by_phase[phase])

    def for_phase(self, phase: Phase) -> tuple[Policy, ...]:
        return self._by_phase[phase]

    async def run(self, texts: list[str], context: PolicyContext) -> Outcome:
        policies = self._by_phase[context.phase]
        if not policies:
            return Outcome("allow", texts)
        current: list[str] = list(texts)
        runs: list[PolicyRun] = []
        masked = False
        asked: tuple[str, Verdict] | None = None
        for policy in policies:
            started = time.perf_counter()
            verdict = await _check(policy, current, context)
            runs.append(PolicyRun(policy.name, context.phase, verdict.action, verdict.categories, (time.perf_counter() - started) * 1000))
            if verdict.action == "deny":
                message = verdict.message or refusal_message(policy.name, context.phase, verdict.categories)
                return Outcome("deny", current, tuple(runs), policy.name, verdict.categories, message)
            if verdict.action == "mask" and verdict.texts is not None:
                current, masked = list(verdict.texts), True
            elif verdict.action == "ask" and asked is None:
                asked = (policy.name, verdict)
        if asked is not None:
            name, verdict = asked
            return Outcome("ask", current, tuple(runs), name, verdict.categories, verdict.message)
        return Outcome("mask" if masked else "allow", current, tuple(runs))


async def _check(policy: Policy, texts: list[str], context: PolicyContext) -> Verdict:
    """One policy's verdict, with its failures turned into a deny (or an allow, if it says so)."""
    try:
        if policy.timeout is None:
            verdict = await policy.check(texts, context)
        else:
            async with asyncio.timeout(policy.timeout):
                verdict = await policy.check(texts, context)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"returned {type(verdict).__name__}, not a Verdict")
        if verdict.action == "mask" and (verdict.texts is None or len(verdict.texts) != len(texts)):
            raise ValueError(f"a mask of {len(verdict.texts or ())} segments for {len(texts)}")
        return verdict
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001: any failure of a policy is its verdict, never a 500
        what = "timed out" if isinstance(exc, TimeoutError) else f"failed: {type(exc).__name__}"
        log.warning("policy %s %s (%s phase, endpoint %s)", policy.name, what, context.phase.value, context.endpoint)
        if policy.on_error == "allow":
            return Verdict("allow", (POLICY_ERROR,))
        return Verdict.deny((POLICY_ERROR,), refusal_message(policy.name, context.phase, (POLICY_ERROR,)))


NO_POLICIES = PolicyEngine(())
__all__ = ["ALLOW", "NO_POLICIES", "Outcome", "PolicyEngine"]
