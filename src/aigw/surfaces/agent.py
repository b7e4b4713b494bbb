"""The agent API at /mlflow/v1/responses: Open Responses over any provider, with the gateway
keeping the state (stored responses, `previous_response_id`, background runs) and running the
loop over hosted tools (see aigw.agent).

Routes: `POST /responses`; `GET` and `DELETE /responses/{id}`; `GET /responses/{id}/input_items`;
`POST /responses/{id}/cancel`. A stored response is visible to the principal that created it only:
to anyone else it does not exist (404), so ids cannot be probed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
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
from aigw.policies.auth import Principal
from aigw.store.responses import StoredResponse
from aigw.surfaces.common import Handler, Surface, json_error
from aigw.wire import openai_chat, openai_responses
from aigw.wire.schemas.responses import ResponsesRequest
from aigw.wire.openai_responses import new_id, now

log = logging.getLogger("aigw.agent")

BASE = "/mlflow/v1/responses"
RUNNING = ("queued", "in_progress")
FINISHED = ("completed", "incomplete", "failed", "cancelled")
# A background run still "in progress" this long after its maximum duration has lost the instance
# that ran it (killed, not shut down): it is reported failed instead of pending forever.
LOST_AFTER_GRACE_SECONDS = 60.0


def not_found(id: str) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, f"Response with id '{id}' not found.", param="response_id", code="not_found")


class AgentSurface(Surface):
    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        yield "POST", BASE, self.create
        yield "GET", BASE + "/*", self.read
        yield "DELETE", BASE + "/*", self.delete
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
        endpoint, call = await self.begin(request, body["model"], "chat")
        runtime = self.gateway.agent
        history = await self._history(principal, body.get("previous_response_id"))
        new_items = await run_heavy(conversation.input_items, body["input"])
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
                await self._save(stored)

        if stream:
            run.call.streamed = True
            await run_cancellable(request.receive, run.run(StreamedOutput(EventStream(send)), persist))
        else:
            response = await run.run(Output(), persist)
            await send_body(send, 200, orjson.dumps(response))

    async def _save(self, stored: StoredResponse) -> None:
        """A response that could not be stored is still answered (its continuation will 404)."""
        try:
            await asyncio.to_thread(self.gateway.agent.responses.create, stored)
        except Exception:
            log.exception("could not store response %s", stored.id)

    async def _history(self, principal: Principal, previous: str | None) -> list[dict[str, Any]]:
        """The items of the conversation `previous` ends, oldest first."""
        if previous is None:
            return []
        chain = await asyncio.to_thread(self.gateway.agent.responses.history, previous)
        if not chain or chain[-1].id != previous or any(r.principal_id != principal.id for r in chain):
            raise GatewayError(
                ErrorKind.NOT_FOUND, f"Previous response with id '{previous}' not found.",
                param="previous_response_id", code="previous_response_not_found",
            )  # fmt: skip
        if chain[-1].status in RUNNING:
            raise invalid(f"Previous response with id '{previous}' is still {chain[-1].status}.", "previous_response_id")
        items: list[dict[str, Any]] = []
        for stored in chain:
            items += stored.input_items
            items += stored.response.get("output") or []
        return items

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

    # --- read, delete, cancel ---------------------------------------------------------------------------

    async def read(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        id, _, rest = request.path[len(BASE) + 1 :].partition("/")
        stored = await self._settle_lost(await self._own(principal, id))
        if request.query.get("stream") in ("true", "1"):
            raise invalid("Streaming a stored response is not supported: retrieve it without stream.", "stream")
        if rest == "":
            await send_body(send, 200, orjson.dumps(stored.response))
        elif rest == "input_items":
            await send_body(send, 200, orjson.dumps(_item_page(stored.input_items, request.query)))
        else:
            raise GatewayError(ErrorKind.NOT_FOUND, f"Unknown path: {request.path}")

    async def delete(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        id = request.path[len(BASE) + 1 :]
        await self._own(principal, id)
        task = self.gateway.agent.runs.get(id)
        if task is not None:
            task.cancel()
        await asyncio.to_thread(self.gateway.agent.responses.delete, id)
        await send_body(send, 200, orjson.dumps({"id": id, "object": "response.deleted", "deleted": True}))

    async def cancel(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        id, _, rest = request.path[len(BASE) + 1 :].partition("/")
        if rest != "cancel":
            raise GatewayError(ErrorKind.NOT_FOUND, f"Unknown path: {request.path}")
        stored = await self._own(principal, id)
        if not stored.response.get("background"):
            raise invalid("Only responses created with background set to true can be cancelled.", "response_id")
        runtime = self.gateway.agent
        cancelled = await asyncio.to_thread(runtime.responses.set_status, id, "cancelled", only_from=RUNNING)
        task = runtime.runs.get(id)
        if task is not None and cancelled is not None:
            task.cancel()
        await send_body(send, 200, orjson.dumps((cancelled or stored).response))

    async def _settle_lost(self, stored: StoredResponse) -> StoredResponse:
        runtime = self.gateway.agent
        if stored.status not in RUNNING or stored.id in runtime.runs or stored.created_at is None:
            return stored
        age = datetime.now(timezone.utc) - stored.created_at
        if age.total_seconds() < runtime.config.max_background_seconds + LOST_AFTER_GRACE_SECONDS:
            return stored
        message = "The background response was lost: the gateway instance running it stopped."
        failed = {**stored.response, "status": "failed", "error": {"code": "server_error", "message": message}}
        await asyncio.to_thread(runtime.responses.update, stored.id, "failed", failed, unless_status=FINISHED)
        return await asyncio.to_thread(runtime.responses.get, stored.id) or stored

    async def _own(self, principal: Principal, id: str) -> StoredResponse:
        stored = await asyncio.to_thread(self.gateway.agent.responses.get, id) if id else None
        if stored is None or stored.principal_id != principal.id:
            raise not_found(id)
        return stored


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


def _item_page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """`GET .../input_items`: newest first unless `order=asc`, `limit` (1-100, default 20), `after`."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid("Invalid value for 'order': expected 'asc' or 'desc'.", "order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise invalid("Invalid value for 'limit': expected an integer from 1 to 100.", "limit")
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    if after is not None:
        at = next((n for n, item in enumerate(ordered) if item.get("id") == after), None)
        if at is None:
            raise invalid(f"No input item found with id '{after}'.", "after")
        ordered = ordered[at + 1 :]
    page = ordered[:limit]
    return {
        "object": "list", "data": page, "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None, "has_more": len(ordered) > limit,
    }  # fmt: skip
