"""The agent API at /mlflow/v1/responses: Open Responses over any provider, with the gateway
keeping the state (stored responses, `previous_response_id`, background runs) and running the
loop over hosted tools (see aigw.agent).

Routes: `POST /responses`; `GET` and `DELETE /responses/{id}`; `GET /responses/{id}/input_items`;
`POST /responses/{id}/cancel`. Stored responses (history, `item_reference` items, reading and
deleting) are kept as surfaces/stored_responses.py says: visible to their creator only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import orjson

from aigw.agent import conversation
from aigw.agent.loop import AgentRun, Output, RunCancelled, StreamedOutput
from aigw.agent.toolbox import Toolbox, open_toolbox
from aigw.call import Call
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.asgi import EventStream, Request, Send, run_cancellable, send_body
from aigw.offload import run_heavy
from aigw.store.responses import StoredResponse
from aigw.surfaces import stored_responses
from aigw.surfaces.common import Handler, json_error
from aigw.surfaces.stored_responses import RUNNING, StoredResponseRoutes
from aigw.wire import openai_chat, openai_responses
from aigw.wire.schemas.responses import ResponsesRequest
from aigw.wire.openai_responses import new_id, now

log = logging.getLogger("aigw.agent")

BASE = "/mlflow/v1/responses"


class AgentSurface(StoredResponseRoutes):
    stored_prefixes = ("/mlflow/v1",)

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        yield "POST", BASE, self.create
        yield from self.stored_routes()
        yield "POST", BASE + "/*", self.cancel

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        return json_error(openai_chat.error_status(error), openai_chat.encode_error(error), error)

    # --- create ------------------------------------------------------------------------------------

    async def create(self, request: Request, send: Send) -> None:
        self.open_call(request, "mlflow_responses")
        principal = await self.authenticate(request)
        body = await self.json_body(request, ResponsesRequest)
        await run_heavy(openai_responses.validate_request, body)
        stream, background = body.get("stream") is True, body.get("background") is True
        if stream and background:
            raise invalid("stream and background cannot both be true: poll a background response with GET instead.", "background")
        if background and body.get("store") is False:
            raise invalid("background responses must be stored: background requires store to be true.", "store")
        if body.get("conversation") is not None:
            raise invalid("conversation objects are not supported: continue a conversation with previous_response_id.", "conversation")
        # The client's new input is checked here; hosted tools' arguments and results are not yet.
        endpoint, call = await self.begin(request, body["model"], "chat", body=body, wire=openai_responses.WIRE)
        runtime = self.gateway.agent
        history = await stored_responses.history(runtime.responses, principal, body.get("previous_response_id"))
        # References name items of earlier responses: each becomes the item it names, for every
        # destination (the model sees, and this response stores, the items themselves).
        input = await stored_responses.resolve_references(runtime.responses, principal, body["input"])
        new_items = await run_heavy(conversation.input_items, input)
        await run_heavy(conversation.check, history, new_items)
        config = runtime.config
        permissions = self.gateway.permissions
        toolbox = await open_toolbox(
            body.get("tools") or [], runtime.connections, runtime.functions, runtime.inline_mcp,
            lambda kind, name: permissions.can_use(principal, kind, name),
        )  # fmt: skip
        response_id, created = new_id("resp_"), now()
        run = AgentRun(
            call=call, endpoint=endpoint, body=body, history=history, new_items=new_items, toolbox=toolbox,
            tracing=runtime.tracing, max_turns=config.max_turns, response_id=response_id, created_at=created,
            trace_parent=runtime.tracing.extract(request.headers),
        )  # fmt: skip
        stored = StoredResponse(
            id=response_id, principal_id=principal.id, endpoint=endpoint.name, status="queued",
            previous_response_id=body.get("previous_response_id"), input_items=new_items, response={},
        )  # fmt: skip
        if background:
            await self._start_background(request, send, run, stored, toolbox)
            return
        try:
            await self._answer(request, send, run, stored, stream, body.get("store") is not False)
        finally:
            await toolbox.close()

    async def _answer(self, request: Request, send: Send, run: AgentRun, stored: StoredResponse, stream: bool, store: bool) -> None:
        async def persist(response: dict[str, Any]) -> None:
            _keep_payload(run.call, response)
            if store:
                stored.status, stored.response = response["status"], response
                await stored_responses.save(self.gateway.agent.responses, stored)

        if stream:
            run.call.streamed = True
            await run_cancellable(request.receive, run.run(StreamedOutput(EventStream(send)), persist))
        else:
            response = await run.run(Output(), persist)
            await send_body(send, 200, orjson.dumps(response))

    # --- background ----------------------------------------------------------------------------------

    async def _start_background(self, request: Request, send: Send, run: AgentRun, stored: StoredResponse, toolbox: Toolbox) -> None:
        runtime = self.gateway.agent
        queued = run.response(Output(), "queued")
        stored.response = queued
        call, request.call = run.call, None  # the run records itself when it ends
        call.streamed = False

        async def store_then_run() -> None:
            try:
                await asyncio.to_thread(runtime.responses.create, stored)
            except BaseException:
                await toolbox.close()
                raise
            runtime.start_background(stored.id, self._background(run, call, stored.id, toolbox))

        # Shielded: a client that leaves while the response is being stored must not leave it stored
        # as "queued" with no run behind it (the insert in the thread completes regardless).
        starting = asyncio.ensure_future(store_then_run())
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            raise
        except BaseException:
            request.call = call  # nothing started: the request is recorded as it ended
            raise
        await send_body(send, 200, orjson.dumps(queued))

    async def _background(self, run: AgentRun, call: Call, id: str, toolbox: Toolbox) -> None:
        runtime = self.gateway.agent
        store = runtime.responses

        async def save(response: dict[str, Any]) -> None:
            await asyncio.to_thread(store.update, id, response["status"], response, unless_status=("cancelled",))

        async def cancelled() -> bool:
            current = await asyncio.to_thread(store.get, id)
            return current is None or current.status == "cancelled"

        run.cancelled, run.progress = cancelled, save
        status, message = 200, None
        output = Output()
        try:
            await asyncio.to_thread(store.set_status, id, "in_progress", only_from=("queued",))
            async with asyncio.timeout(runtime.config.max_background_seconds):
                await run.run(output, lambda response: _persisted(call, response, save))
        except (RunCancelled, asyncio.CancelledError):
            status, message = 499, "cancelled"
            if runtime.closing:
                message = "The gateway shut down before the background response finished."
                await _fail(save, run, output, message)
        except TimeoutError:
            status = 504
            message = f"The background response ran longer than {runtime.config.max_background_seconds:g} s and was stopped."
            await _fail(save, run, output, message)
        except GatewayError as error:
            status, message = error.status, error.message
            await _fail(save, run, output, message, openai_responses.failure_code(error))
        except Exception:
            log.exception("background response %s failed", id)
            status, message = 500, "Internal gateway error."
            await _fail(save, run, output, message)
        finally:
            await toolbox.close()
            self.gateway.finish_call(call, status, message)

    # --- cancel (read and delete: StoredResponseRoutes) --------------------------------------------

    async def cancel(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        id, _, rest = request.path[len(BASE) + 1 :].partition("/")
        if rest != "cancel":
            raise GatewayError(ErrorKind.NOT_FOUND, f"Unknown path: {request.path}")
        stored = await self.own(principal, id)
        if not stored.response.get("background"):
            raise invalid("Only responses created with background set to true can be cancelled.", "response_id")
        runtime = self.gateway.agent
        cancelled = await asyncio.to_thread(runtime.responses.set_status, id, "cancelled", only_from=RUNNING)
        task = runtime.runs.get(id)
        if task is not None and cancelled is not None:
            task.cancel()
        await send_body(send, 200, orjson.dumps((cancelled or stored).response))


async def _persisted(call: Call, response: dict[str, Any], save: Any) -> None:
    _keep_payload(call, response)
    await save(response)


async def _fail(save: Any, run: AgentRun, output: Output, message: str, code: str = "server_error") -> None:
    try:
        await save(run.response(output, "failed", error={"code": code, "message": message}))
    except Exception:
        log.exception("could not store the failure of response %s", run.id)


def _keep_payload(call: Call, response: dict[str, Any]) -> None:
    if call.payload is not None:
        call.payload.response = orjson.dumps(response)
