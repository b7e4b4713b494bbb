"""Python guardrail policies the tests load by import path (`tests.guardrail_functions:...`)."""

from __future__ import annotations

import asyncio
import threading

from aigw.policies.guardrails.verdicts import ALLOW, PolicyContext, Verdict

THREADS: list[str] = []  # the threads sync functions ran on


def deny_all(texts: list[str], context: PolicyContext) -> Verdict:
    THREADS.append(threading.current_thread().name)
    return Verdict.deny(["custom"], f"Refused by a Python policy in the {context.phase.value} phase.")


def shout(texts: list[str], context: PolicyContext) -> dict:
    """A mask as a dict, shaped like the webhook's answer."""
    return {"action": "mask", "categories": ["loud"], "texts": [t.upper() for t in texts]}


async def deny_secret(texts: list[str], context: PolicyContext) -> dict:
    await asyncio.sleep(0)
    if any("secret" in t for t in texts):
        return {"action": "deny", "categories": ["secret"], "message": "No secrets."}
    return {"action": "allow"}


async def slow(texts: list[str], context: PolicyContext) -> dict:
    await asyncio.sleep(5)
    return {"action": "allow"}


def broken(texts: list[str], context: PolicyContext) -> str:
    return "allow"  # not a verdict


NOT_CALLABLE = 42


def tool_gate(texts: list[str], context: PolicyContext) -> Verdict:
    """Acts on hosted tool calls only (tests/test_agent_tool_policies.py): arguments naming HOLD
    are held for approval, FORBIDDEN refused, MASKME masked; a result naming 21 C is masked."""
    if context.surface != "agent_tool":
        return ALLOW
    text = texts[0]
    if context.phase.value == "call":
        if "FORBIDDEN" in text:
            return Verdict.deny(["forbidden"], "Policy tool-gate refused the call.")
        if "HOLD" in text:
            return Verdict.ask(["review"], "Policy tool-gate wants a person to look.")
        if "MASKME" in text:
            return Verdict.mask([text.replace("MASKME", "XXXXXX")], ["masked"])
    elif "21 C" in text:
        return Verdict.mask([text.replace("21 C", "[TEMPERATURE]")], ["weather"])
    return ALLOW
