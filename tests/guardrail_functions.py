"""Python guardrail policies the tests load by import path (`tests.guardrail_functions:...`)."""

from __future__ import annotations

import asyncio
import threading

from aigw.policies.guardrails.verdicts import PolicyContext, Verdict

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
