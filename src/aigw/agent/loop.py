"""The agent loop: call the model, run the hosted tools it calls, give it their results, until it
answers, calls a tool the client runs, needs the client's approval, or reaches a limit.

The output of one response is built by an `Output`: `Output` collects items; `StreamedOutput` also
writes them as one Responses event stream however many model turns it spans (one
`response.created`, the turns' items renumbered into one sequence, one terminal event, `[DONE]`).
The model's calls to hosted tools are held back from the stream and replaced by what the gateway
did with them (a function call and its output, an `mcp_call`, an `mcp_approval_request`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from aigw.agent import conversation, turns
from aigw.agent.tool_policies import ScreenedArguments, ToolPolicies
from aigw.agent.toolbox import HostedTool, ToolOutcome, Toolbox
from aigw.agent.tracing import Tracing
from aigw.call import Call
from aigw.canonical import Usage
from aigw.errors import ErrorKind, GatewayError
from aigw.http.asgi import SSE_HEADERS, EventStream
from aigw.http.sse import sse_frame
from aigw.offload import run_heavy
from aigw.policies.guardrails.verdicts import Phase
from aigw.routing import Endpoint
from aigw.surfaces import result_policies
from aigw.wire import openai_responses
from aigw.wire.openai_responses import build_response, decode_usage, new_id

log = logging.getLogger("aigw.agent")
Item = dict[str, Any]
# What the loop adds to `include`: reasoning in full, as a destination that keeps nothing needs it back.
REASONING_CONTENT = "reasoning.encrypted_content"
# Request fields the loop decides per turn, or that mean nothing to a model.
LOOP_FIELDS = frozenset(
    {"input", "tools", "tool_choice", "stream", "store", "background", "previous_response_id", "max_tool_calls", "conversation"}
)  # fmt: skip


class RunCancelled(Exception):
    """The response was cancelled (`POST .../cancel`) while it ran."""


class TurnResult:
    """One model turn: the hosted calls it made (held back), and how it ended."""

    def __init__(self) -> None:
        self.held: list[Item] = []
        self.usage: Usage | None = None
        self.status = "completed"
        self.incomplete_reason: str | None = None
        self.model = ""


class Output:
    """The items of one response, in output order."""

    def __init__(self) -> None:
        self.items: dict[int, Item] = {}
        self._next = 0

    def list(self) -> list[Item]:
        return [self.items[i] for i in sorted(self.items)]

    def _allocate(self) -> int:
        index, self._next = self._next, self._next + 1
        return index

    async def start(self, response: dict[str, Any]) -> None:
        pass

    async def open(self, item: Item) -> int:
        """Place an item the gateway makes (a tool's call, listing or result); its final form
        follows with `close`. The streamed output shows it in progress meanwhile."""
        index = self._allocate()
        self.items[index] = item
        return index

    async def close(self, index: int, item: Item) -> None:
        self.items[index] = item

    async def add(self, item: Item) -> None:
        await self.close(await self.open(item), item)

    async def turn(self, call: Call, endpoint: Endpoint, body: dict[str, Any], hosted: Toolbox) -> TurnResult:
        answer = await turns.whole_turn(call, endpoint, body)
        if endpoint.policies.applies(Phase.RESULT):  # the model's text, before the client sees it
            await result_policies.check_response_items(call, endpoint, answer)
        result = TurnResult()
        for item in answer.get("output") or ():
            if _is_hosted_call(item, hosted):
                result.held.append(item)
            else:
                await self.add(item)
        _ending(result, answer)
        return result

    async def finish(self, response: dict[str, Any]) -> None:
        pass


class StreamedOutput(Output):
    """The stream opens with the first thing to say, so an error before it (every destination
    refused the first turn) is still a plain HTTP error the client's retry logic understands."""

    def __init__(self, out: EventStream) -> None:
        super().__init__()
        self._out = out
        self._sequence = 0
        self._opening: dict[str, Any] | None = None

    @property
    def started(self) -> bool:
        return self._out.started

    async def start(self, response: dict[str, Any]) -> None:
        self._opening = response

    async def open(self, item: Item) -> int:
        index = await super().open(item)
        await self._emit({"type": "response.output_item.added", "output_index": index, "item": _in_progress(item)})
        kind, at = item["type"], {"output_index": index, "item_id": item.get("id")}
        if kind == "function_call":
            await self._emit({"type": "response.function_call_arguments.delta", **at, "delta": item.get("arguments")})
            await self._emit({"type": "response.function_call_arguments.done", **at, "arguments": item.get("arguments")})
        elif kind == "mcp_call":
            await self._emit({"type": "response.mcp_call_arguments.done", **at, "arguments": item.get("arguments")})
            await self._emit({"type": "response.mcp_call.in_progress", **at})
        elif kind == "mcp_list_tools":
            await self._emit({"type": "response.mcp_list_tools.in_progress", **at})
        return index

    async def close(self, index: int, item: Item) -> None:
        await super().close(index, item)
        kind, at = item["type"], {"output_index": index, "item_id": item.get("id")}
        if kind == "mcp_call":
            await self._emit({"type": f"response.mcp_call.{'failed' if item.get('error') else 'completed'}", **at})
        elif kind == "mcp_list_tools":
            await self._emit({"type": "response.mcp_list_tools.completed", **at})
        await self._emit({"type": "response.output_item.done", "output_index": index, "item": item})

    async def turn(self, call: Call, endpoint: Endpoint, body: dict[str, Any], hosted: Toolbox) -> TurnResult:
        result = TurnResult()
        indexes: dict[int, int] = {}  # the turn's output index -> the response's
        held: set[int] = set()
        error: Item | None = None
        ended = False
        guard = result_policies.ResponsesEventGuard(call, endpoint) if endpoint.policies.applies(Phase.RESULT) else None
        try:
            async for upstream_event in turns.streamed_turn(call, endpoint, body):
                for event in guard.feed(upstream_event) if guard is not None else (upstream_event,):
                    ended, error = await self._turn_event(event, result, indexes, held, hosted, ended, error)
            for event in guard.flush() if guard is not None else ():
                ended, error = await self._turn_event(event, result, indexes, held, hosted, ended, error)
        finally:
            if guard is not None:
                call.policy_runs.extend(guard.runs())
        if guard is not None and guard.denied:  # the response ends here: no tool runs on a refused turn
            result.held.clear()
        if not ended:  # cut short: what arrived may be half an answer, and must not pass for a whole one
            message = (error or {}).get("message")
            if not isinstance(message, str) or not message:
                message = f"Destination '{call.destination}' ended its stream before the response was completed."
            raise GatewayError(ErrorKind.UPSTREAM_ERROR, message)
        return result

    async def _turn_event(
        self, event: Item, result: TurnResult, indexes: dict[int, int], held: set[int], hosted: Toolbox, ended: bool, error: Item | None
    ) -> tuple[bool, Item | None]:
        """One event of a streamed turn: (whether the turn ended, the error event seen)."""
        kind = event.get("type")
        if kind in ("response.created", "response.in_progress"):
            return ended, error
        if kind in ("response.completed", "response.incomplete"):
            _ending(result, event.get("response") or {})
            return True, error
        if kind == "error":
            return ended, event
        if kind == "response.failed":
            failure = (event.get("response") or {}).get("error") or error or {}
            raise GatewayError(ErrorKind.UPSTREAM_ERROR, str(failure.get("message") or "The model's stream failed."))
        local = event.get("output_index")
        if isinstance(local, int):
            if kind == "response.output_item.added" and _is_hosted_call(event.get("item") or {}, hosted):
                held.add(local)
            if local in held:
                if kind == "response.output_item.done":
                    result.held.append(event["item"])
                return ended, error
            if local not in indexes:
                indexes[local] = self._allocate()
            event["output_index"] = indexes[local]
            if kind == "response.output_item.done":
                self.items[indexes[local]] = event["item"]
        await self._emit(event)
        return ended, error

    async def finish(self, response: dict[str, Any]) -> None:
        await self._emit({"type": f"response.{response['status']}", "response": response})
        await self._out.write(b"data: [DONE]\n\n")
        await self._out.close()

    async def fail(self, error: GatewayError, response: dict[str, Any]) -> None:
        await self._emit({"type": "error", **openai_responses.error_event_fields(error)})
        await self.finish(response)

    async def _emit(self, event: Item) -> None:
        if not self._out.started:
            await self._out.start(SSE_HEADERS)
            opening, self._opening = self._opening, None
            await self._emit({"type": "response.created", "response": opening})
            await self._emit({"type": "response.in_progress", "response": opening})
        kind = event["type"]
        event.pop("sequence_number", None)
        framed = {"type": kind, "sequence_number": self._sequence, **event}  # OpenAI's key order
        self._sequence += 1
        await self._out.write(sse_frame(orjson.dumps(framed), kind))


def _in_progress(item: Item) -> Item:
    """An item as its `output_item.added` event shows it: still in progress, no result yet."""
    if item.get("type") == "mcp_call":
        return {**item, "status": "in_progress", "output": None, "error": None}
    if item.get("type") == "function_call":
        return {**item, "status": "in_progress", "arguments": ""}
    if "status" in item:
        return {**item, "status": "in_progress"}
    return item


def _is_hosted_call(item: Item, hosted: Toolbox) -> bool:
    # A call in a namespace is to the client's tool, whatever its bare name.
    return item.get("type") == "function_call" and item.get("namespace") is None and item.get("name") in hosted.hosted


def _ending(result: TurnResult, response: dict[str, Any]) -> None:
    result.usage = decode_usage(response.get("usage"))
    result.status = "incomplete" if response.get("status") == "incomplete" else "completed"
    result.incomplete_reason = (response.get("incomplete_details") or {}).get("reason")
    result.model = response.get("model") or ""


def add_usage(total: Usage, more: Usage | None) -> Usage:
    if more is None:
        return total

    def plus(a: int | None, b: int | None) -> int | None:
        return None if a is None and b is None else (a or 0) + (b or 0)

    return Usage(
        input_tokens=total.input_tokens + more.input_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        cached_input_tokens=plus(total.cached_input_tokens, more.cached_input_tokens),
        cache_creation_input_tokens=plus(total.cache_creation_input_tokens, more.cache_creation_input_tokens),
        reasoning_tokens=plus(total.reasoning_tokens, more.reasoning_tokens),
    )


class AgentRun:
    """One response's run of the loop."""

    def __init__(
        self,
        *,
        call: Call,
        endpoint: Endpoint,
        body: dict[str, Any],
        history: list[Item],
        new_items: list[Item],
        toolbox: Toolbox,
        tracing: Tracing,
        max_turns: int,
        response_id: str,
        created_at: int,
        trace_parent: Any = None,
        cancelled: Callable[[], Awaitable[bool]] | None = None,
        progress: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.call, self.endpoint, self.body, self.toolbox, self.tracing = call, endpoint, body, toolbox, tracing
        self.tool_policies = ToolPolicies(endpoint, call)
        self.history, self.new_items = history, new_items
        self.max_turns = max_turns
        self.id, self.created_at = response_id, created_at
        self.trace_parent = trace_parent  # the incoming traceparent's context
        self.cancelled = cancelled  # asked before each turn: was the response cancelled elsewhere?
        self.progress = progress  # told the response so far after each turn (background runs)
        self.usage = Usage()
        self.model = ""
        self.tool_calls = 0
        self.max_tool_calls = body.get("max_tool_calls")

    def response(self, output: Output, status: str, **fields: Any) -> dict[str, Any]:
        usage = self.usage if status not in ("queued", "in_progress") else None
        return build_response(
            self.body, id=self.id, model=self.model or self.body["model"], created_at=self.created_at, status=status,
            output=output.list(), usage=usage, **fields,
        )  # fmt: skip

    async def run(self, output: Output, persist: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> dict[str, Any]:
        """Run to the end; the final Response object, given to `persist` before the client sees
        its end (so a GET right after finds it), then written to `output`."""
        attributes = {"aigw.response_id": self.id, "aigw.endpoint": self.endpoint.name}
        with self.tracing.span("aigw.agent.response", parent=self.trace_parent, attributes=attributes) as span:
            await output.start(self.response(output, "in_progress"))
            try:
                status, reason = await self._loop(output)
            except GatewayError as error:
                return await self._failed(output, error, persist)
            except (RunCancelled, asyncio.CancelledError):
                raise
            except Exception:  # a defect: still end the response properly, and say so in the log
                log.exception("agent response %s failed", self.id)
                error = GatewayError(ErrorKind.INTERNAL, "Internal gateway error.")
                return await self._failed(output, error, persist)
            self.call.usage = self.usage
            response = self.response(output, status, incomplete_reason=reason)
            span.set_attribute("aigw.status", status)
            if persist is not None:
                await persist(response)
            await output.finish(response)
            return response

    async def _failed(
        self, output: Output, error: GatewayError, persist: Callable[[dict[str, Any]], Awaitable[None]] | None
    ) -> dict[str, Any]:
        """End the response as failed: stored (a GET finds it failed), then streamed as an `error`
        event and `response.failed` once the stream is open; before that, `error` is raised for the
        surface to answer with its status (a 429 keeps its Retry-After)."""
        self.call.usage = self.usage
        response = self.response(output, "failed", error=openai_responses.failure(error))
        if persist is not None:
            await persist(response)
        if isinstance(output, StreamedOutput) and output.started:
            await output.fail(error, response)
            return response
        raise error

    async def _loop(self, output: Output) -> tuple[str, str | None]:
        listed = {i.get("server_label") for i in self.history if i.get("type") == "mcp_list_tools"}
        for listing in self.toolbox.listings:
            if listing["server_label"] not in listed:
                await output.add(listing)
        for request, approved in conversation.approvals(self.history, self.new_items):
            await self._run_approved(output, request, approved)
        turn = 0
        while True:
            if self.cancelled is not None and await self.cancelled():
                raise RunCancelled
            turn += 1
            with self.tracing.span("aigw.agent.turn", attributes={"aigw.turn": turn, "aigw.endpoint": self.endpoint.name}) as span:
                result = await output.turn(self.call, self.endpoint, await run_heavy(self._turn_body, output, turn), self.toolbox)
                self.usage = add_usage(self.usage, result.usage)
                self.model = result.model or self.model
                if result.usage is not None:
                    span.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
                    span.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)
                span.set_attribute("aigw.destination", self.call.destination or "")
            if self.progress is not None:
                await self.progress(self.response(output, "in_progress"))
            if not result.held:
                return result.status, result.incomplete_reason
            waiting = await self._hosted_calls(output, result.held)
            if waiting or self._client_calls_pending(output):
                return "completed", None
            if turn >= self.max_turns:
                return "incomplete", "max_turns"

    def _turn_body(self, output: Output, turn: int) -> dict[str, Any]:
        body = {k: v for k, v in self.body.items() if k not in LOOP_FIELDS}
        items = self.history + self.new_items + output.list()
        body["input"] = conversation.model_view(items, self.toolbox.model_name)
        tools = self.toolbox.model_tools()
        if tools:
            body["tools"] = tools
            choice = self.body.get("tool_choice")
            if self._budget_left() == 0:
                choice = "none"  # the model answers with what it has
            elif turn > 1 and (choice == "required" or isinstance(choice, dict)):
                choice = "auto"  # a forced call was made in the first turn; forcing again would loop
            elif isinstance(choice, dict) and choice.get("type") == "mcp":
                choice = "required"
            if choice is not None:
                body["tool_choice"] = choice
        # The gateway keeps the conversation, so each turn goes out with store false; then OpenAI can
        # only be given reasoning whole, by its encrypted content (it kept nothing to look up by id).
        include = body.get("include") if isinstance(body.get("include"), list) else []
        if REASONING_CONTENT not in include:
            body["include"] = [*include, REASONING_CONTENT]
        body["store"] = False
        return body

    def _budget_left(self) -> int | None:
        return None if self.max_tool_calls is None else max(0, self.max_tool_calls - self.tool_calls)

    def _client_calls_pending(self, output: Output) -> bool:
        items = output.list()
        answered = {i.get("call_id") for i in items if i.get("type") in conversation.OUTPUTS}
        return any(i.get("type") in conversation.CALLS and i.get("call_id") not in answered for i in items)

    async def _hosted_calls(self, output: Output, calls: list[Item]) -> bool:
        """Run the hosted calls of one turn, together (a turn's calls do not depend on each other),
        their items in the order the model made the calls: Python function calls, then MCP calls
        shown in progress, then as each finishes in turn, its result. Calls that need approval are
        held as `mcp_approval_request` items; True if there are any."""
        waiting = False
        runs: list[tuple[HostedTool, Item, int | None, ScreenedArguments]] = []  # (tool, the model's call, mcp item index, ...)
        for item in calls:  # the function calls first: one assistant turn, as the model made it
            if self.toolbox.hosted[item["name"]].server is None:
                await output.add({**item, "status": "completed"})
        for item in calls:
            tool = self.toolbox.hosted[item["name"]]
            screened = await self.tool_policies.arguments(tool, item.get("arguments") or "{}")
            if tool.server is None:
                runs.append((tool, item, None, screened))
            elif (tool.needs_approval or screened.ask) and screened.refusal is None:
                waiting = True
                await output.add(
                    {"id": new_id("mcpr_"), "type": "mcp_approval_request", "server_label": tool.server,
                     "name": tool.remote_name, "arguments": screened.arguments}
                )  # fmt: skip
            else:
                index = await output.open(_mcp_call(tool.server, tool.remote_name, screened.arguments))
                runs.append((tool, item, index, screened))
        outcomes = await asyncio.gather(*(self._run_screened(tool, screened) for tool, _, _, screened in runs))
        for (tool, item, index, _), outcome in zip(runs, outcomes):
            if index is None:
                text = outcome.output if outcome.error is None else f"Error: {outcome.error}"
                await output.add({"id": new_id("fco_"), "type": "function_call_output", "call_id": item.get("call_id"), "output": text, "status": "completed"})
            else:
                await output.close(index, _finished(output.items[index], outcome))
        return waiting

    async def _run_approved(self, output: Output, request: Item, approved: bool) -> None:
        server, name = request.get("server_label") or "", request.get("name") or ""
        tool = self.toolbox.for_call(server, name)
        refusal = None
        if not approved:
            refusal = "The user declined this tool call."
        elif tool is None:
            refusal = f"The tool '{name}' is not among this request's tools."
        await self._mcp_call(output, tool, server, name, request.get("arguments") or "{}", request.get("id"), refusal)

    async def _mcp_call(
        self, output: Output, tool: HostedTool | None, server: str, name: str, arguments: str,
        approval_request_id: str | None = None, refusal: str | None = None,
    ) -> None:  # fmt: skip
        """One `mcp_call` item: shown in progress while the tool runs, then with its result."""
        if refusal is None and tool is not None:  # approved: the policies still deny or mask, but no longer ask
            screened = await self.tool_policies.arguments(tool, arguments, approved=True)
            arguments, refusal = screened.arguments, screened.refusal
        index = await output.open(_mcp_call(server, name, arguments, approval_request_id))
        outcome = ToolOutcome("", refusal) if refusal is not None or tool is None else await self._run_screened(tool, ScreenedArguments(arguments))
        await output.close(index, _finished(output.items[index], outcome))

    async def _run_screened(self, tool: HostedTool, screened: ScreenedArguments) -> ToolOutcome:
        """Run a call its arguments' policies let through, and put its result through the result
        policies (aigw.agent.tool_policies)."""
        if screened.refusal is not None:
            return ToolOutcome("", screened.refusal)
        return await self.tool_policies.result(await self._run(tool, screened.arguments))

    async def _run(self, tool: HostedTool, arguments: str) -> ToolOutcome:
        left = self._budget_left()
        if left == 0:
            return ToolOutcome("", "Not run: this response reached its max_tool_calls.")
        if not self.toolbox.permitted(tool):
            kind, name = tool.grant or ("tool", tool.name)
            return ToolOutcome("", f"Not run: the caller may not use the {kind} '{name}'.")
        self.tool_calls += 1
        attributes = {"gen_ai.tool.name": tool.remote_name or tool.name, "aigw.mcp.server": tool.server or ""}
        with self.tracing.span("aigw.agent.tool", attributes=attributes) as span:
            outcome = await tool.run(arguments)
            if outcome.error is not None:
                span.set_attribute("error.message", outcome.error[:500])
        return outcome


def _mcp_call(server: str, name: str, arguments: str, approval_request_id: str | None = None) -> Item:
    """An `mcp_call` item before its result."""
    return {
        "id": new_id("mcp_"), "type": "mcp_call", "server_label": server, "name": name, "arguments": arguments,
        "output": None, "error": None, "status": "in_progress", "approval_request_id": approval_request_id,
    }  # fmt: skip


def _finished(item: Item, outcome: ToolOutcome) -> Item:
    failed = outcome.error is not None
    return {**item, "output": None if failed else outcome.output, "error": outcome.error, "status": "failed" if failed else "completed"}
