"""The endpoint's content policies on the hosted tool calls of the agent loop: a call's arguments in
the `call` phase (before the tool runs), its result in the `result` phase (before the model sees it).

What each verdict does to a tool call:

    allow   the call runs as the model made it; its result goes to the model
    mask    the call runs with the masked arguments (they are also what the response shows);
            a masked result is what the model sees
    deny    the tool does not run (or its result is withheld): the model is told the call was
            refused by the policy, in the call's error, and the response goes on
    ask     an MCP call is held for a person's approval (an `mcp_approval_request`, as for a
            server whose calls always need approval); once approved, the call's arguments are
            checked again, where an ask no longer holds it. A Python function cannot be held
            (approval is an MCP exchange), and an ask on a result has nobody to ask: both are
            refused, failing closed.

Every run is recorded with the request's others (`Call.policy_runs`). An endpoint without
policies for a phase pays one lookup.
"""

from __future__ import annotations

from typing import NamedTuple

from aigw.agent.toolbox import HostedTool, ToolOutcome
from aigw.call import Call
from aigw.policies.guardrails.engine import Outcome
from aigw.policies.guardrails.verdicts import Phase, PolicyContext
from aigw.routing import Endpoint

SURFACE = "agent_tool"  # what the policies' context names as the text's source


class ScreenedArguments(NamedTuple):
    arguments: str  # what the tool runs with (masked where a policy masked it)
    refusal: str | None = None  # why the call must not run
    ask: bool = False  # a policy wants a person to approve the call first


class ToolPolicies:
    def __init__(self, endpoint: Endpoint, call: Call) -> None:
        self._endpoint = endpoint
        self._call = call

    async def arguments(self, tool: HostedTool, arguments: str, approved: bool = False) -> ScreenedArguments:
        outcome = await self._run(Phase.CALL, arguments)
        if outcome is None or outcome.action == "allow":
            return ScreenedArguments(arguments)
        if outcome.action == "deny":
            return ScreenedArguments(arguments, _refused(outcome.message))
        if outcome.action == "mask":
            return ScreenedArguments(outcome.texts[0])
        # An ask (with any masks of the policies before it applied)
        if approved:  # a person already approved this call
            return ScreenedArguments(outcome.texts[0])
        if tool.server is None:
            held = "a content policy asks for a person's approval, and a hosted function cannot be held for it"
            return ScreenedArguments(arguments, _refused(held))
        return ScreenedArguments(outcome.texts[0], ask=True)

    async def result(self, outcome: ToolOutcome) -> ToolOutcome:
        if outcome.error is not None:
            return outcome
        checked = await self._run(Phase.RESULT, outcome.output)
        if checked is None or checked.action == "allow":
            return outcome
        if checked.action == "mask":
            return ToolOutcome(checked.texts[0])
        return ToolOutcome("", _refused(checked.message, "result"))  # deny, or an ask nobody can answer

    async def _run(self, phase: Phase, text: str) -> Outcome | None:
        engine = self._endpoint.policies
        if not engine.applies(phase):
            return None
        principal = self._call.principal.name if self._call.principal is not None else None
        outcome = await engine.run([text], PolicyContext(phase, self._endpoint.name, principal, SURFACE))
        self._call.policy_runs.extend(outcome.runs)
        return outcome


def _refused(message: str | None, what: str = "call") -> str:
    reason = message or "refused by a content policy"
    if what == "result":
        return f"The tool ran, but its result was withheld: {reason}"
    return f"Not run: {reason}"
