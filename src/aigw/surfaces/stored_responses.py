"""Responses kept in the gateway's store, as the Responses surfaces share them: the conversation a
`previous_response_id` continues, `item_reference` input items resolved to the items they name,
saving a finished response, and the routes that read and delete stored responses.

Two surfaces keep state this way: the agent API (/mlflow/v1/responses, for every destination) and
OpenAI's Responses API at /openai/v1 and /codex/v1 for endpoints that no destination serves natively
(see surfaces/responses.py). One store, one rule of ownership: a stored response, and every item in
it, is visible to the principal that created it only. To anyone else it does not exist, so a 404 or
a 400 never tells another principal's id from an unknown one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import orjson

from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.asgi import Request, Send, send_body
from aigw.policies.auth import Principal
from aigw.store.responses import ResponseStore, StoredResponse
from aigw.surfaces.common import Handler, Surface

log = logging.getLogger("aigw.agent")

Item = dict[str, Any]
RUNNING = ("queued", "in_progress")
FINISHED = ("completed", "incomplete", "failed", "cancelled")
# At most this many `item_reference` items in one request: each is looked up in the store (one
# query for all), and the responses holding them are read whole.
MAX_REFERENCES = 500
# The longest a finished response's insert holds its answer (see `save`).
SAVE_WAIT_SECONDS = 2.0
# A background run still "in progress" this long after its maximum duration has lost the instance
# that ran it (killed, not shut down): it is reported failed instead of pending forever.
LOST_AFTER_GRACE_SECONDS = 60.0


def not_found(id: str, note: str = "") -> GatewayError:
    message = f"Response with id '{id}' not found.{note}"
    return GatewayError(ErrorKind.NOT_FOUND, message, param="response_id", code="not_found")


def has_references(input: Any) -> bool:
    """Whether a request's `input` holds `item_reference` items: a scan, no store round trip."""
    return isinstance(input, list) and any(isinstance(i, dict) and i.get("type") == "item_reference" for i in input)


async def history(store: ResponseStore, principal: Principal, previous: str | None) -> list[Item]:
    """The items of the conversation `previous` ends, oldest first: each response's input items,
    then its output. 404 (param previous_response_id) when it is not the principal's."""
    if previous is None:
        return []
    chain = await asyncio.to_thread(store.history, previous)
    if not chain or chain[-1].id != previous or any(r.principal_id != principal.id for r in chain):
        raise GatewayError(
            ErrorKind.NOT_FOUND, f"Previous response with id '{previous}' not found.",
            param="previous_response_id", code="previous_response_not_found",
        )  # fmt: skip
    if chain[-1].status in RUNNING:
        raise invalid(f"Previous response with id '{previous}' is still {chain[-1].status}.", "previous_response_id")
    items: list[Item] = []
    for stored in chain:
        items += stored.input_items
        items += stored.response.get("output") or []
    return items


async def resolve_references(store: ResponseStore, principal: Principal, input: Any) -> Any:
    """`input` with each `{"type": "item_reference", "id": ...}` replaced by the item it names, from
    the principal's stored responses (their input and output items). 400 naming `input[i]` for a
    reference to no item of the principal's. Input without references is returned as it is, and
    costs no store round trip."""
    if not has_references(input):
        return input
    wanted: dict[int, str] = {}
    for n, item in enumerate(input):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            id = item.get("id")
            if not isinstance(id, str) or not id:
                raise invalid(f"Missing required parameter: 'input[{n}].id'.", f"input[{n}].id")
            wanted[n] = id
    if len(wanted) > MAX_REFERENCES:
        raise invalid(f"Too many item references in 'input': {len(wanted)}; at most {MAX_REFERENCES} are allowed.", "input")
    found = await asyncio.to_thread(store.find_items, principal.id, set(wanted.values()))
    resolved = list(input)
    for n, id in wanted.items():
        item = found.get(id)
        if item is None:  # OpenAI's answer to an id it does not have: a 404 naming `input`
            raise GatewayError(ErrorKind.NOT_FOUND, f"Item with id '{id}' not found.", param="input", code="not_found")
        resolved[n] = item
    return resolved


async def save(store: ResponseStore, stored: StoredResponse, wait: float = SAVE_WAIT_SECONDS) -> None:
    """Store a finished response before its end is sent, so the next request finds it; but a slow
    store holds the answer `wait` seconds at most: then the answer goes and the insert finishes on
    its own. One that could not be stored is still answered (a continuation of it will 404), so a
    failure is logged, not raised."""
    saving = asyncio.get_running_loop().run_in_executor(None, store.create, stored)
    saving.add_done_callback(lambda done: _log_failure(done, stored.id))
    try:
        await asyncio.wait_for(asyncio.shield(saving), wait)
    except TimeoutError:
        log.warning("response %s is still being stored after %g s: answered without waiting for it", stored.id, wait)
    except Exception:
        pass  # logged by the callback


def _log_failure(done: asyncio.Future[None], id: str) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("could not store response %s", id, exc_info=done.exception())


class StoredResponseRoutes(Surface):
    """`GET .../responses/{id}` (and `/input_items`) and `DELETE .../responses/{id}` under each of
    `stored_prefixes`, in the surface's own error shape."""

    stored_prefixes: tuple[str, ...] = ()
    # Added to the 404 of an id the store does not hold (where another party may hold it).
    not_found_note = ""

    def stored_routes(self) -> Iterable[tuple[str, str, Handler]]:
        for prefix in self.stored_prefixes:
            yield "GET", prefix + "/responses/*", self.read
            yield "DELETE", prefix + "/responses/*", self.delete

    async def read(self, request: Request, send: Send) -> None:
        principal = await self.authenticate(request)
        id, rest = _id_and_rest(request.path)
        stored = await self._settle_lost(await self.own(principal, id))
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
        id, rest = _id_and_rest(request.path)
        if rest:
            raise GatewayError(ErrorKind.NOT_FOUND, f"Unknown path: {request.path}")
        await self.own(principal, id)
        runtime = self.gateway.agent
        task = runtime.runs.get(id)
        if task is not None:
            task.cancel()
        await asyncio.to_thread(runtime.responses.delete, id)
        await send_body(send, 200, orjson.dumps({"id": id, "object": "response.deleted", "deleted": True}))

    async def own(self, principal: Principal, id: str) -> StoredResponse:
        stored = await asyncio.to_thread(self.gateway.agent.responses.get, id) if id else None
        if stored is None or stored.principal_id != principal.id:
            raise not_found(id, self.not_found_note)
        return stored

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


def _id_and_rest(path: str) -> tuple[str, str]:
    """`.../responses/{id}/{rest}` -> (id, rest)."""
    id, _, rest = path.split("/responses/", 1)[1].partition("/")
    return id, rest


def _item_page(items: list[Item], query: dict[str, str]) -> dict[str, Any]:
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
