"""What every client-facing surface shares: authentication, permission, body parsing, request tags,
and the start of every call to an endpoint (its account, its content policies' `call` phase, payload
sampling, rate limits): `Surface.begin` is the one place every call passes. The chat flow itself is
in `chat_flow`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from aigw.call import Call
from aigw.canonical import estimate_tokens_of_size
from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.http.asgi import JSON_HEADERS, Request, Send
from aigw.offload import note_request_size, run_heavy
from aigw.policies.auth import Principal
from aigw.policies.guardrails.verdicts import Phase, PolicyContext, refusal_message
from aigw.policies.guardrails.wire_texts import text_slots
from aigw.wire.schemas import Schema, check_depth, conform

if TYPE_CHECKING:
    from aigw.app import Gateway
    from aigw.routing import Endpoint

Handler = Callable[[Request, Send], Any]
ErrorRenderer = Callable[[GatewayError], tuple[int, bytes, list[tuple[bytes, bytes]]]]
TAGS_HEADER = "x-aigw-request-tags"


def parse_json(body: bytes, schema: type[Schema] | None = None) -> Any:
    """The parsed body, no deeper than the gateway writes back, and fitting `schema` if given:
    400 naming the field otherwise, before any work is done on it."""
    if not body:
        raise invalid("The request body is empty; expected a JSON object.")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON: {exc}.") from None
    check_depth(parsed, body)
    if schema is not None:
        conform(parsed, schema)
    return parsed


def request_tags(request: Request) -> dict[str, str]:
    """The `X-Aigw-Request-Tags` header: a JSON object of strings kept with the request."""
    raw = request.headers.get(TAGS_HEADER)
    if not raw:
        return {}
    try:
        tags = orjson.loads(raw)
    except orjson.JSONDecodeError:
        tags = None
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise invalid(f"The {TAGS_HEADER} header must be a JSON object of strings.", TAGS_HEADER)
    return tags


class Surface:
    """Base of every surface: the gateway, and the steps each request starts with."""

    # Paths under these prefixes that match no route still get this surface's error shape.
    path_prefixes: tuple[str, ...] = ()
    # Whether a `?key=` query parameter may carry the token. Only Gemini's REST clients send one;
    # elsewhere a token in the URL would only end up in proxy and access logs, so it is not read.
    query_token = False

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        """(method, path, handler) triples; a path ending in `/*` matches every path under it."""
        raise NotImplementedError

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        raise NotImplementedError

    def open_call(self, request: Request, surface: str) -> Call:
        """Start accounting for a request to an endpoint: from here on it is recorded, whatever happens."""
        call = request.call = Call(surface, request.headers)
        return call

    async def authenticate(self, request: Request) -> Principal:
        principal = await self.gateway.auth.authenticate(request.headers, request.query if self.query_token else None)
        if request.call is not None:
            request.call.principal = principal
        return principal

    def authorize(self, principal: Principal, endpoint: str) -> None:
        """403 unless `principal` may query `endpoint`: every handler that names an endpoint calls
        this. An endpoint that does not exist passes, so it gets the router's 404 whether this runs
        before or after the endpoint is resolved."""
        if endpoint in self.gateway.router.endpoints:
            self.gateway.permissions.require_query(principal, endpoint)

    def queryable(self, principal: Principal, names: Iterable[str]) -> list[str]:
        """`names` without the endpoints `principal` may not query: what the model lists show."""
        return self.gateway.permissions.queryable(principal, names)

    async def json_body(self, request: Request, schema: type[Schema] | None = None) -> Any:
        raw = await request.body(self.gateway.settings.server.max_request_bytes)
        note_request_size(len(raw))
        return await run_heavy(parse_json, raw, schema)

    async def begin(
        self, request: Request, name: str, task: str, *, body: Any = None, wire: str | None = None
    ) -> tuple[Endpoint, Call]:
        """The checks every call to an endpoint starts with, after `open_call` and `authenticate`:
        the endpoint, permission, request tags, the endpoint's `call` policies on `body` (the parsed
        request, in `wire`'s format: masked in place), payload sampling, and admission by the
        endpoint's rate limits, which take the body's characters for the token estimate until the
        upstream reports real usage."""
        call, principal = request.call, request.call.principal
        call.endpoint = name
        call.tags = request_tags(request)
        endpoint = self.gateway.router.endpoint(name, task)
        self.authorize(principal, endpoint.name)
        raw = request.raw_body
        if wire is not None and endpoint.policies.applies(Phase.CALL):
            if await self._check_call(call, endpoint, body, wire):
                raw = await run_heavy(orjson.dumps, body, size=len(raw))  # the masked body is what is logged
        call.log_payload(endpoint.config.payload_logging, raw)
        call.admission = await self.gateway.limiter.admit(
            endpoint.name, principal.name, principal.kind, principal.groups, estimate_tokens_of_size(len(raw))
        )
        return endpoint, call

    async def _check_call(self, call: Call, endpoint: Endpoint, body: Any, wire: str) -> bool:
        """Run the endpoint's `call` policies on the request's text: a deny (or an ask, which has
        no one to ask outside the agent's tool calls) is a 400; a mask is written into `body`.
        Whether the body changed."""
        slots = await run_heavy(text_slots, body, wire)
        context = PolicyContext(Phase.CALL, endpoint.name, call.principal.name if call.principal else None, call.surface)
        outcome = await endpoint.policies.run(slots.texts, context)
        call.policy_runs.extend(outcome.runs)
        if outcome.action in ("deny", "ask"):
            message = outcome.message or refusal_message(outcome.policy or "?", Phase.CALL, outcome.categories)
            raise GatewayError(ErrorKind.POLICY, message, code="content_policy_violation")
        return outcome.action == "mask" and slots.write(outcome.texts)


def json_error(status: int, body: dict[str, Any], error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """A rendered error: status, JSON body, and the error's headers (Retry-After, ...)."""
    headers = JSON_HEADERS + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    return status, orjson.dumps(body), headers

