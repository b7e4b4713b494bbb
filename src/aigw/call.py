"""One request as the gateway accounts for it: filled in as the request goes (who, which endpoint,
which destinations were tried, what the upstream reported), and turned into a usage record, a payload
record where the endpoint keeps payloads, and a rate-limit settlement when it ends.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
import time
from datetime import datetime, timezone
from typing import Any

from aigw.canonical import Usage
from aigw.config import PayloadLoggingConfig
from aigw.policies.auth import Principal
from aigw.policies.guardrails.verdicts import PolicyRun
from aigw.recording.records import Attempt, PayloadRecord, UsageRecord, capture_body


def _request_ids() -> Iterator[str]:
    """Unique request ids, cheaply: a random prefix per process (so instances sharing a database
    never collide) and a counter, instead of a random draw per request."""
    prefix = "req_" + os.urandom(8).hex()
    for n in itertools.count():
        yield f"{prefix}{n:08x}"


_REQUEST_IDS = _request_ids()


class Payload:
    """The bodies of a request whose payload is logged (chosen by the endpoint's sampling). A body
    over `config.max_bytes` is logged as a marker only, so it is not held either (an answer on its
    way to the store would keep a 32 MiB request alive for nothing); `..._over` says which."""

    __slots__ = ("config", "request", "response", "request_over", "response_over")

    def __init__(self, config: PayloadLoggingConfig, request: bytes) -> None:
        self.config = config
        self.request_over = len(request) > config.max_bytes
        self.request: bytes | None = None if self.request_over else request
        self.response: bytes | None = None
        self.response_over = False

    def keep_response(self, data: bytes | None) -> None:
        """Keep `data` as the response; None, or more than max_bytes, keeps the marker instead."""
        self.response_over = data is None or len(data) > self.config.max_bytes
        self.response = None if self.response_over else data


class Call:
    __slots__ = (
        "request_id", "event_time", "started", "surface", "user_agent", "principal", "endpoint", "tags", "streamed",
        "destination", "model", "attempts", "usage", "upstream_started", "upstream_ended", "admission", "payload",
        "error", "closed", "policy_runs",
    )  # fmt: skip

    def __init__(self, surface: str, headers: dict[str, str]) -> None:
        """Opened as the request arrives, so a request refused early (no token, an unknown endpoint,
        a rate limit) is recorded too; who and which endpoint are filled in once known."""
        self.request_id = next(_REQUEST_IDS)
        self.event_time = datetime.now(timezone.utc)
        self.started = time.perf_counter()
        self.surface = surface
        self.user_agent = headers.get("user-agent")
        self.principal: Principal | None = None
        self.endpoint = ""
        self.tags: dict[str, str] = {}
        self.streamed = False
        self.destination: str | None = None
        self.model: str | None = None
        self.attempts: list[Attempt] = []
        self.usage: Usage | None = None
        self.upstream_started: float | None = None
        self.upstream_ended: float | None = None
        self.admission: Any = None  # the rate limiter's, settled with the real token count
        self.payload: Payload | None = None
        self.error: str | None = None  # the message of the error the client is answered with
        self.closed = False  # its records are made: nothing more is accounted
        self.policy_runs: list[PolicyRun] = []  # the content policies that ran, both phases

    def log_payload(self, config: PayloadLoggingConfig, body: bytes) -> None:
        """Keep the bodies of this call if the endpoint logs payloads and the sample picks it."""
        if config.enabled and (config.sample >= 1 or random.random() < config.sample):
            self.payload = Payload(config, body)

    def upstream_start(self) -> None:
        if self.upstream_started is None:
            self.upstream_started = time.perf_counter()

    def upstream_end(self) -> None:
        self.upstream_ended = time.perf_counter()

    def usage_record(self, status: int, error: str | None) -> UsageRecord:
        now = time.perf_counter()
        upstream_ms = None
        if self.upstream_started is not None:
            upstream_ms = ((self.upstream_ended or now) - self.upstream_started) * 1000
        usage, principal = self.usage, self.principal
        return UsageRecord(
            event_time=self.event_time,
            request_id=self.request_id,
            principal_id=principal.id if principal else None,
            principal_name=principal.name if principal else None,
            user_agent=self.user_agent,
            surface=self.surface,
            endpoint=self.endpoint,
            destination=self.destination or (self.attempts[-1].destination if self.attempts else None),
            model=self.model,
            status=status,
            error=error,
            latency_ms=(now - self.started) * 1000,
            upstream_latency_ms=upstream_ms,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
            streamed=self.streamed,
            tags=self.tags,
            attempts=self.attempts,
            policies=[run.as_record() for run in self.policy_runs] or None,
        )

    def payload_record(self, record: UsageRecord) -> PayloadRecord | None:
        payload = self.payload
        if payload is None:
            return None
        limit = payload.config.max_bytes
        request_text, request_over = capture_body(payload.request, limit)
        response_text, response_over = capture_body(payload.response, limit)
        request_over = request_over or payload.request_over
        response_over = response_over or payload.response_over
        return PayloadRecord(
            event_time=record.event_time,
            request_id=record.request_id,
            endpoint=record.endpoint,
            principal_name=record.principal_name,
            status=record.status,
            latency_ms=record.latency_ms,
            request_body=request_text,
            response_body=response_text,
            request_marker="MAX_REQUEST_SIZE_EXCEEDED" if request_over else None,
            response_marker="MAX_RESPONSE_SIZE_EXCEEDED" if response_over else None,
        )
