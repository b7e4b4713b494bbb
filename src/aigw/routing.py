"""Endpoints and their destinations: the name a client puts in `model`, resolved to providers, and
the order they are tried in.

An endpoint splits its traffic among its `destinations` by weight and, when the chosen one fails
with something another destination may not (a connection error, a timeout, a 429, a 5xx), tries the
other destinations (heaviest first) and then its `fallbacks` in order. A destination may be retried
first, with exponential backoff and jitter, honouring the upstream's Retry-After. One that keeps
failing is put at the back of the line for a cool-down period. All of this happens before the
first byte reaches the client; afterwards a failure can only be reported in the stream.

Built once at start from the settings; on the hot path an endpoint with one destination costs a
dict lookup and a list.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aigw.call import Call
from aigw.canonical import ChatRequest, EmbeddingsRequest, Message, TextPart
from aigw.config import DestinationConfig, EndpointConfig, Settings, endpoint_policies
from aigw.errors import ErrorKind, GatewayError
from aigw.http.upstream import UpstreamClient
from aigw.policies.guardrails.config import build_engine, resolve_policies
from aigw.policies.guardrails.engine import NO_POLICIES, PolicyEngine
from aigw.providers.base import Provider
from aigw.providers.registry import PROVIDERS
from aigw.policies.guardrails.verdicts import PolicyContext
from aigw.recording.records import Attempt, UsageRecord

log = logging.getLogger("aigw.routing")

T = TypeVar("T")

DEMO_ENDPOINT = EndpointConfig(
    name="demo",
    task=["chat", "embeddings"],
    destinations=[DestinationConfig(provider="demo", model="aigw-demo-1")],
)
MAX_RETRY_WAIT = 30.0  # seconds: a longer Retry-After sends the request to the next destination instead


class Endpoint:
    __slots__ = (
        "name", "tasks", "config", "destinations", "weights", "fallbacks", "policies", "_failures", "_cooling_until",
        "_all_take",
    )  # fmt: skip

    def __init__(self, config: EndpointConfig, client: UpstreamClient, policies: PolicyEngine = NO_POLICIES) -> None:
        self.name = config.name
        self.policies = policies  # its content policies (guardrails), built with the configuration
        self.tasks = config.tasks
        self.config = config
        self.destinations: list[Provider] = [PROVIDERS[d.provider](d, client) for d in config.destinations]
        self.weights = [d.weight for d in config.destinations]
        self.fallbacks: list[Provider] = [PROVIDERS[d.provider](d, client) for d in config.fallbacks]
        self._failures: dict[str, int] = {}  # destination label -> failures in a row
        self._cooling_until: dict[str, float] = {}  # destination label -> monotonic time
        self._all_take: dict[str, bool] = {}  # chat wire -> every destination takes it as it is

    def every_destination(self) -> list[Provider]:
        return [*self.destinations, *self.fallbacks]

    def all_take(self, wire: str) -> bool:
        """Whether every destination takes chat bodies of `wire` as they are (then no request of
        that wire needs decoding)."""
        known = self._all_take.get(wire)
        if known is None:
            known = self._all_take[wire] = all(wire in p.chat_wires for p in self.every_destination())
        return known

    def none_take(self, wire: str) -> bool:
        """Whether no destination takes chat bodies of `wire` as they are (every one translates)."""
        return not any(wire in p.chat_wires for p in self.every_destination())

    def attempt_order(self) -> list[Provider]:
        """The destinations to try, in order: one chosen by weight, the other destinations heaviest
        first, then the fallbacks; those cooling down go last (still tried if all else fails)."""
        if len(self.destinations) == 1 and not self.fallbacks:
            return self.destinations
        first = random.choices(self.destinations, self.weights)[0]
        others = sorted((d for d in self.destinations if d is not first), key=lambda d: -d.destination.weight)
        order = [first, *others, *self.fallbacks]
        if self._cooling_until:
            now = time.monotonic()
            order.sort(key=lambda d: self._cooling_until.get(d.label, 0.0) > now)  # stable
        return order

    def succeeded(self, provider: Provider) -> None:
        if self._failures:
            self._failures.pop(provider.label, None)
            self._cooling_until.pop(provider.label, None)

    def failed(self, provider: Provider) -> None:
        label = provider.label
        failures = self._failures.get(label, 0) + 1
        self._failures[label] = failures
        if failures >= self.config.cooldown.failures:
            self._cooling_until[label] = time.monotonic() + self.config.cooldown.seconds


async def call_with_fallback(
    endpoint: Endpoint, attempts: list[Attempt], attempt: Callable[[Provider], Awaitable[T]]
) -> tuple[Provider, T]:
    """Run `attempt` against the endpoint's destinations in order until one succeeds, recording
    each try in `attempts`. An error another destination would repeat (a 400, a 413) is raised at
    once; otherwise the last destination's error is."""
    error: GatewayError | None = None
    for provider in endpoint.attempt_order():
        tries = provider.destination.retries + 1
        for n in range(tries):
            started = time.perf_counter()
            try:
                result = await attempt(provider)
            except asyncio.CancelledError:
                # The client left (or the gateway is stopping): the record still names the destination
                # that was called, which may bill for what it generated.
                attempts.append(Attempt(provider.label, None, _ms(started), "cancelled"))
                raise
            except GatewayError as failure:
                attempts.append(Attempt(provider.label, failure.upstream_status, _ms(started), failure.message))
                if not failure.retryable:
                    raise
                endpoint.failed(provider)
                error = failure
                wait = _retry_wait(provider.destination, n, failure) if n + 1 < tries else None
                _log_failure(endpoint, provider, failure, "retrying" if wait is not None else "trying the next destination, if any")
                if wait is None:
                    break
                await asyncio.sleep(wait)
            else:
                attempts.append(Attempt(provider.label, 200, _ms(started)))
                endpoint.succeeded(provider)
                return provider, result
    assert error is not None
    raise error


def _log_failure(endpoint: Endpoint, provider: Provider, failure: GatewayError, then: str) -> None:
    """A warning an operator can act on: which destination failed how (never a key: error messages
    name destinations, not credentials), and what the router does next."""
    log.warning(
        "upstream failure on endpoint %r: %s answered %s (%s); %s", endpoint.name, provider.label,
        failure.upstream_status or failure.status, failure.message[:300], then,
    )  # fmt: skip


def _retry_wait(destination: DestinationConfig, n: int, error: GatewayError) -> float | None:
    """Seconds before retry n + 1: the upstream's Retry-After where it gave one, else exponential
    backoff with full jitter; None when the wait would be too long to be worth it."""
    retry_after = error.headers.get("retry-after")
    if retry_after is not None:
        try:
            wait = float(retry_after)
        except ValueError:
            wait = MAX_RETRY_WAIT + 1  # an HTTP date: far enough to move on
        return wait if wait <= MAX_RETRY_WAIT else None
    return random.uniform(0, destination.retry_backoff * 2**n)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class RouterServices:
    """What content policies get from the gateway (aigw.policies.guardrails.services): its endpoints,
    called in-process through their destinations, retries and fallbacks. The endpoint's own policies,
    permissions and rate limits are not applied to these calls (a judge judging itself would loop);
    each call is recorded as a usage record of its own (surface `policy_judge` or
    `policy_embeddings`, tagged with the policy) when `record` is given."""

    def __init__(self, client: UpstreamClient, record: Callable[[UsageRecord], None] | None) -> None:
        self.http = client
        self.endpoints: dict[str, Endpoint] = {}  # filled by the router once its endpoints are built
        self._record = record

    async def chat(self, endpoint: str, system: str, text: str, context: PolicyContext, policy: str) -> str:
        target = self.endpoints[endpoint]
        request = ChatRequest(
            model=endpoint, messages=[Message("system", [TextPart(system)]), Message("user", [TextPart(text)])]
        )  # no temperature or max_tokens: reasoning models refuse the one and may need more than the other
        response = await self._call(target, "policy_judge", context, policy, lambda p: p.chat(request))
        if not response.choices:
            raise GatewayError(ErrorKind.UPSTREAM_ERROR, f"The judge endpoint '{endpoint}' answered no choice.")
        return "".join(part.text for part in response.choices[0].message.content if isinstance(part, TextPart))

    async def embed(self, endpoint: str, texts: list[str], context: PolicyContext, policy: str) -> list[list[float]]:
        target = self.endpoints[endpoint]
        request = EmbeddingsRequest(model=endpoint, inputs=texts)
        response = await self._call(target, "policy_embeddings", context, policy, lambda p: p.embed(request))
        return response.vectors

    async def _call(self, endpoint: Endpoint, surface: str, context: PolicyContext, policy: str, attempt: Callable[[Provider], Awaitable[T]]) -> T:
        call = Call(surface, {})
        call.endpoint, call.tags = endpoint.name, {"policy": policy, "for_endpoint": context.endpoint}

        async def timed(provider: Provider) -> T:
            call.upstream_start()
            try:
                return await attempt(provider)
            finally:
                call.upstream_end()

        status, error = 200, None
        try:
            provider, result = await call_with_fallback(endpoint, call.attempts, timed)
            call.destination, call.model = provider.label, provider.destination.model
            call.usage = getattr(result, "usage", None)
            return result
        except GatewayError as failure:
            status, error = failure.status, failure.message
            raise
        except asyncio.CancelledError:  # the policy's timeout, or the caller left
            status, error = 499, "The policy's call was cancelled (its timeout, or the client left)."
            raise
        finally:
            if self._record is not None:
                record = call.usage_record(status, error)
                record.principal_name = context.principal
                self._record(record)


class Router:
    def __init__(self, settings: Settings, client: UpstreamClient, record: Callable[[UsageRecord], None] | None = None) -> None:
        configs = list(settings.endpoints)
        if settings.demo_endpoint and not any(e.name == DEMO_ENDPOINT.name for e in configs):
            configs.append(DEMO_ENDPOINT)
        # Built once per configuration (start, reload); settings were checked, so this cannot fail.
        self.services = RouterServices(client, record)
        resolved = resolve_policies(settings.policies, endpoint_policies(configs))
        engines = {name: build_engine(policies, self.services) for name, policies in resolved.items()}
        self.endpoints: dict[str, Endpoint] = {c.name: Endpoint(c, client, engines.get(c.name, NO_POLICIES)) for c in configs}
        self.services.endpoints = self.endpoints

    def names_for(self, task: str | None = None) -> list[str]:
        """The endpoint names (sorted) that serve `task`, or all of them."""
        return sorted(name for name, e in self.endpoints.items() if task is None or task in e.tasks)

    def endpoint(self, name: str, task: str) -> Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise GatewayError(ErrorKind.NOT_FOUND, f"The endpoint '{name}' does not exist.", param="model")
        if task not in endpoint.tasks:
            raise GatewayError(
                ErrorKind.INVALID_REQUEST,
                f"The endpoint '{name}' does not serve {task} (it serves: {', '.join(sorted(endpoint.tasks))}).",
                param="model",
            )
        return endpoint
