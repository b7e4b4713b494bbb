"""Fault injection through a raw-socket fake upstream, on every surface that reaches an upstream, passed
through and translated, streamed and not, against a real gateway process (issue 11: nothing an
upstream sends can stall, crash or exhaust the gateway).

Each fault is one test that sends every case at once, so the file's wall time is about the sum of
the slowest case of each fault (a timeout of 1 s, a total of 2.5 s), not of all cases.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.fakes.raw_upstream import BIG_BYTES, RawUpstream
from tests.gateway_process import GatewayProcess, cleanup, start_gateway

MB = 1 << 20
TIMEOUT, TOTAL_TIMEOUT = 1.0, 2.5
LIMITS = {"timeout": TIMEOUT, "total_timeout": TOTAL_TIMEOUT, "max_event_bytes": 2 * MB}


@dataclass(frozen=True)
class Case:
    surface: str  # mlflow_chat, openai_chat, embeddings, openai_responses, anthropic, gemini, mlflow_responses
    endpoint: str  # also the provider kind of its one destination
    stream: bool

    @property
    def passed_through(self) -> bool:
        return PASS_THROUGH[self.surface] == self.endpoint

    @property
    def shape(self) -> str:
        return self.surface if self.surface in ("anthropic", "gemini") else "openai"

    def __str__(self) -> str:
        return f"{self.surface}->{self.endpoint}{' stream' if self.stream else ''}"

    def request(self, text: str) -> tuple[str, dict[str, Any]]:
        model, stream = self.endpoint, self.stream
        chat = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
        if self.surface == "mlflow_chat":
            return "/mlflow/v1/chat/completions", chat
        if self.surface == "openai_chat":
            return "/openai/v1/chat/completions", chat
        if self.surface == "embeddings":
            return "/mlflow/v1/embeddings", {"model": model, "input": [text]}
        if self.surface == "anthropic":
            return "/anthropic/v1/messages", {**chat, "max_tokens": 16}
        if self.surface == "gemini":
            method = "streamGenerateContent?alt=sse" if stream else "generateContent"
            return f"/gemini/v1beta/models/{model}:{method}", {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        path = "/openai/v1/responses" if self.surface == "openai_responses" else "/mlflow/v1/responses"
        return path, {"model": model, "input": text, "stream": stream, "store": False}


# The destination each surface passes its body through to, and one it translates for.
PASS_THROUGH = {
    "mlflow_chat": "openai", "openai_chat": "openai", "embeddings": "openai", "openai_responses": "openai",
    "anthropic": "anthropic", "gemini": "gemini", "mlflow_responses": "openai",
}  # fmt: skip
TRANSLATED = {
    "mlflow_chat": "anthropic", "openai_chat": "gemini", "embeddings": "gemini", "openai_responses": "anthropic",
    "anthropic": "openai", "gemini": "openai", "mlflow_responses": "gemini",
}  # fmt: skip
# The agent's translated streamed turns (aigw/agent/turns.py `_encoded_events`) render an upstream
# failure before the first event in-band and then answer 502, and an upstream stream without events
# as an empty completed response: issue 11's "/mlflow/v1/responses streams over translated
# destinations" item, worked on with the agent surface. Here they are held to no 5xx-crash and no hang.
AGENT_TRANSLATED_STREAM = Case("mlflow_responses", "gemini", True)


def cases(stream: bool | None = None) -> list[Case]:
    found = []
    for table in (PASS_THROUGH, TRANSLATED):
        for surface, endpoint in table.items():
            for streamed in (False, True):
                if (surface == "embeddings" and streamed) or (stream is not None and streamed != stream):
                    continue
                found.append(Case(surface, endpoint, streamed))
    return found


@dataclass
class Outcome:
    status: int
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str | None, Any]]:
        """The SSE events of a streamed answer: (event name, parsed data)."""
        found = []
        for block in self.body.replace(b"\r\n", b"\n").split(b"\n\n"):
            name, data = None, None
            for line in block.split(b"\n"):
                if line.startswith(b"event:"):
                    name = line[6:].strip().decode()
                elif line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                    data = json.loads(line[5:])
            if name is not None or data is not None:
                found.append((name, data))
        return found


def destination(provider: str, raw: RawUpstream, **extra: Any) -> dict[str, Any]:
    base = raw.url + "/v1" if provider == "openai" else raw.url
    return {"provider": provider, "model": "m", "base_url": base, "api_key": "k", **LIMITS, **extra}


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    fake = RawUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(raw: RawUpstream) -> Iterator[GatewayProcess]:
    both = ["chat", "embeddings"]
    endpoints = [
        {"name": "openai", "task": both, "destinations": [destination("openai", raw)]},
        {"name": "anthropic", "destinations": [destination("anthropic", raw)]},
        {"name": "gemini", "task": both, "destinations": [destination("gemini", raw)]},
        {"name": "fallback", "task": both, "destinations": [destination("openai", raw, model="fault-garbage")],
         "fallbacks": [destination("openai", raw, name="good")]},
        {"name": "capped", "destinations": [destination("openai", raw, model="capped", max_response_bytes=MB, retries=2)]},
        {"name": "wide", "destinations": [destination("openai", raw, max_event_bytes=64 * MB)]},
    ]  # fmt: skip
    process = start_gateway(yaml.safe_dump({"endpoints": endpoints}))
    yield process
    cleanup(process)


def send(gateway: GatewayProcess, case: Case, text: str) -> Outcome:
    path, body = case.request(text)
    started = time.monotonic()
    headers = {"authorization": f"Bearer {gateway.admin_token}"}
    response = requests.post(gateway.url + path, json=body, headers=headers, timeout=15)
    return Outcome(response.status_code, response.content, time.monotonic() - started)


def send_all(gateway: GatewayProcess, chosen: list[Case], text: str) -> list[tuple[Case, Outcome]]:
    with ThreadPoolExecutor(len(chosen)) as pool:
        return list(zip(chosen, pool.map(lambda case: send(gateway, case, text), chosen)))


def error_message(case: Case, outcome: Outcome, status: int) -> str:
    """The message of an error answered in `case`'s surface's own shape, with `status`."""
    assert outcome.status == status, f"{case}: {outcome.status} {outcome.body[:300]!r}"
    body = outcome.json()
    if case.shape == "anthropic":
        assert body["type"] == "error" and isinstance(body["error"]["type"], str), case
    elif case.shape == "gemini":
        assert body["error"]["code"] == status and isinstance(body["error"]["status"], str), case
    else:
        assert isinstance(body["error"]["type"], str), case
    return body["error"]["message"]


def in_band_message(case: Case, outcome: Outcome) -> str:
    """The message of an error a stream that had started ended with, framed as its wire frames one."""
    assert outcome.status == 200, f"{case}: {outcome.status} {outcome.body[:300]!r}"
    events = outcome.events()
    names = [name for name, _ in events]
    if case.surface in ("openai_responses", "mlflow_responses"):
        assert names[-2:] == ["error", "response.failed"], f"{case}: {names}"
        return events[-2][1]["message"]
    if case.shape == "anthropic":
        assert names[-1] == "error", f"{case}: {names}"
    name, data = events[-1]
    assert isinstance(data, dict) and "error" in data, f"{case}: {outcome.body[-300:]!r}"
    return data["error"]["message"]


def started_or_not(case: Case, outcome: Outcome, status: int) -> str:
    """A stream's failure is a plain error until its first bytes went out, in-band after."""
    return in_band_message(case, outcome) if outcome.status == 200 else error_message(case, outcome, status)


def answered(case: Case, outcome: Outcome) -> str:
    """The whole text of a successful answer (embeddings: the raw body)."""
    assert outcome.status == 200, f"{case}: {outcome.status} {outcome.body[:300]!r}"
    if case.surface == "embeddings":
        return outcome.body.decode()
    if case.stream:
        return outcome.body.decode()  # the pieces are checked in order below
    body = outcome.json()
    if case.shape == "anthropic":
        return body["content"][0]["text"]
    if case.shape == "gemini":
        return body["candidates"][0]["content"]["parts"][0]["text"]
    if case.surface in ("mlflow_chat", "openai_chat"):
        return body["choices"][0]["message"]["content"]
    return body["output"][0]["content"][0]["text"]


def bounded(case: Case, outcome: Outcome, most: float) -> None:
    assert outcome.elapsed < most, f"{case}: took {outcome.elapsed:.2f}s"


# --- whole bodies and timing -------------------------------------------------------------------------


def test_5_mb_whole_bodies_succeed_quickly(gateway: GatewayProcess) -> None:
    # Was: the pool stopped reading at 1 MiB, a false 504 after the timeout, retried and cooled down.
    for case, outcome in send_all(gateway, cases(stream=False), "fault:big"):
        text = answered(case, outcome)
        if case.surface == "embeddings":
            assert len(outcome.body) > BIG_BYTES * 0.9, case
        else:
            assert text == "x" * BIG_BYTES, case
        bounded(case, outcome, 3.0)


def test_a_body_that_drips_but_flows_succeeds(gateway: GatewayProcess) -> None:
    for case, outcome in send_all(gateway, cases(), "fault:drip"):
        text = answered(case, outcome)
        if case.stream:
            pieces = ("Hello", "raw", "fake")
            assert all(piece in text for piece in pieces), f"{case}: {text[-300:]}"
        elif case.surface != "embeddings":
            assert text == "Hello from the raw fake.", case
        assert outcome.elapsed > TIMEOUT / 2, case  # it did drip, for about as long as the timeout or more


def test_a_body_that_drips_forever_ends_at_the_total_timeout(gateway: GatewayProcess) -> None:
    for case, outcome in send_all(gateway, cases(stream=False), "fault:drip_forever"):
        assert "total_timeout" in error_message(case, outcome, 504), case
        assert TOTAL_TIMEOUT - 0.1 < outcome.elapsed < TOTAL_TIMEOUT + 1.5, f"{case}: {outcome.elapsed:.2f}s"


def test_an_upstream_that_never_answers_is_a_504_after_the_timeout(gateway: GatewayProcess) -> None:
    for case, outcome in send_all(gateway, cases(), "fault:hang_head"):
        bounded(case, outcome, TIMEOUT + 1.5)
        if case == AGENT_TRANSLATED_STREAM:
            assert outcome.status in (200, 502, 504), case
            continue
        assert "did not answer within 1s" in error_message(case, outcome, 504), case


def test_a_reset_mid_body_is_a_502_or_an_in_band_error(gateway: GatewayProcess) -> None:
    for case, outcome in send_all(gateway, cases(), "fault:reset"):
        message = started_or_not(case, outcome, 502) if case.stream else error_message(case, outcome, 502)
        assert "ConnectionResetError" in message or "closed" in message, f"{case}: {message}"
        bounded(case, outcome, 2.0)


# --- bounded heads and events ------------------------------------------------------------------------


def rss_mb(gateway: GatewayProcess) -> float:
    for line in Path(f"/proc/{gateway.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("fault", ["endless_head", "many_headers"])
def test_an_unbounded_response_head_is_a_502(gateway: GatewayProcess, fault: str) -> None:
    # Was: an endless header section grew the process to 1 GB and kept it there.
    for case, outcome in send_all(gateway, cases(), f"fault:{fault}"):
        message = error_message(case, outcome, 502)
        assert "64 KiB" in message or "128 headers" in message, f"{case}: {message}"
        bounded(case, outcome, 1.5)
    assert rss_mb(gateway) < 400


def test_an_event_past_max_event_bytes_is_a_502(gateway: GatewayProcess) -> None:
    for case, outcome in send_all(gateway, cases(stream=True), "fault:huge_event"):
        assert "max_event_bytes" in error_message(case, outcome, 502), case
        bounded(case, outcome, 2.0)


def test_an_event_past_max_event_bytes_after_the_first_ends_the_stream_in_band(gateway: GatewayProcess) -> None:
    for case, outcome in send_all(gateway, cases(stream=True), "fault:huge_event_late"):
        # The agent's first upstream event (response.created) is its own to send: nothing went out yet.
        assert "max_event_bytes" in started_or_not(case, outcome, 502), case
        bounded(case, outcome, 2.0)


def gateway_cpu_seconds(gateway: GatewayProcess) -> float:
    fields = Path(f"/proc/{gateway.process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def test_health_answers_at_once_while_a_64_mb_event_arrives(gateway: GatewayProcess) -> None:
    # Was: a 50 MB event without an end took 33 s of CPU, and /health up to 3.8 s meanwhile.
    case = Case("openai_chat", "wide", True)
    cpu_before = gateway_cpu_seconds(gateway)
    outcome: list[Outcome] = []
    worker = threading.Thread(target=lambda: outcome.append(send(gateway, case, "fault:huge_event")))
    worker.start()
    latencies = []
    with requests.Session() as session:
        while worker.is_alive():
            started = time.monotonic()
            assert session.get(gateway.url + "/health", timeout=5).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.01)
    worker.join()
    cpu = gateway_cpu_seconds(gateway) - cpu_before
    assert "max_event_bytes" in error_message(case, outcome[0], 502)
    assert len(latencies) > 20  # the event took a while to arrive: /health was asked throughout
    latencies.sort()  # typically 1-2 ms, tens at worst on a busy machine; the quadratic relays took seconds
    assert latencies[len(latencies) * 9 // 10] < 0.1 and latencies[-1] < 0.25, latencies
    assert cpu < 3.0, f"{cpu:.2f}s of gateway CPU for one 64 MiB event"


# --- answers that are not answers --------------------------------------------------------------------


def test_a_200_that_is_not_what_was_asked_is_a_502(gateway: GatewayProcess) -> None:
    # Was, passed through: relayed as a success with no tokens (the translated paths said 502).
    for case, outcome in send_all(gateway, cases(), "fault:garbage"):
        if case == AGENT_TRANSLATED_STREAM:
            assert outcome.status == 200 and outcome.events(), case
            continue
        message = error_message(case, outcome, 502)
        assert "could not read" in message or "malformed" in message or "empty stream" in message, f"{case}: {message}"


@pytest.mark.parametrize(
    "case",
    [Case("openai_chat", "fallback", False), Case("openai_chat", "fallback", True), Case("embeddings", "fallback", False)],
    ids=str,
)
def test_a_200_that_is_not_what_was_asked_falls_back(gateway: GatewayProcess, raw: RawUpstream, case: Case) -> None:
    before = raw.count("fault-garbage")
    outcome = send(gateway, case, "hello")
    assert outcome.status == 200, outcome.body[:300]
    assert raw.count("fault-garbage") == before + 1  # the first destination was tried, and it failed
    assert b"raw" in outcome.body


def test_a_body_past_max_response_bytes_is_a_502_and_not_retried(gateway: GatewayProcess, raw: RawUpstream) -> None:
    case = Case("openai_chat", "capped", False)
    before = raw.count("capped")
    outcome = send(gateway, case, "fault:big")
    assert "max_response_bytes" in error_message(case, outcome, 502)
    assert outcome.json()["error"]["code"] == "upstream_response_too_large"
    assert raw.count("capped") == before + 1  # retries: 2, but the same request would get the same answer


@pytest.mark.parametrize("surface", ["anthropic", "gemini"])
def test_a_token_count_that_is_not_a_json_object_is_a_502(gateway: GatewayProcess, surface: str) -> None:
    # Was: the passed-through count relayed HTML as a 200.
    case = Case(surface, surface, False)
    if surface == "anthropic":
        path, body = "/anthropic/v1/messages/count_tokens", {"model": "anthropic", "messages": [{"role": "user", "content": "fault:garbage"}]}
    else:
        path, body = "/gemini/v1beta/models/gemini:countTokens", {"contents": [{"role": "user", "parts": [{"text": "fault:garbage"}]}]}
    started = time.monotonic()
    response = requests.post(gateway.url + path, json=body, headers={"authorization": f"Bearer {gateway.admin_token}"}, timeout=15)
    outcome = Outcome(response.status_code, response.content, time.monotonic() - started)
    assert "not a JSON object" in error_message(case, outcome, 502)
