"""Routing end to end: a real gateway process in front of the fake upstreams, driven with the official
SDKs. Fallback from a failing destination (500, 429, a hang past the timeout, an unreachable port)
to the next one, streamed and not, on every surface; no fallback on a 400; every attempt in the usage
record, in order; the weighted split; retries with backoff and Retry-After on one destination before
the next; the cool-down that skips a destination after N failures.

The requests of the fallback matrix run concurrently in one module fixture (the record writer stores
once a second, so the records are read once for all of them); each case is asserted by its own test.
Upstream hits are counted in the fake's recorded requests, on model names of this module's own
(`gov-...`; the fake ignores a `vendor/` prefix when it picks its scenario)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import openai
import pytest
import yaml
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.gateway_process import GatewayProcess, cleanup, free_port, start_gateway

HANG_TIMEOUT = 0.5  # seconds: the hanging destination's timeout
COOLDOWN_SECONDS = 1.0  # the `cool` endpoint's period, after 2 failures in a row
SPLIT_REQUESTS = 200
TAGS_HEADER = "X-Aigw-Request-Tags"
NO_COOLDOWN = {"failures": 1000, "seconds": 1}  # the matrix fails each primary many times


def _primary(provider: str, fake: str, model: str, **extra: Any) -> dict[str, Any]:
    base = f"{fake}/v1" if provider == "openai" else fake
    return {"provider": provider, "model": model, "base_url": base, "api_key": f"key-{provider}", **extra}


# Per surface provider: its fallback (another provider, so the answer is translated) and the label.
FALLBACKS = {
    "openai": {"provider": "gemini", "model": "gemini-2.5-flash", "api_key": "key-gemini"},
    "anthropic": {"provider": "openai_compatible", "model": "llama-3.1-8b"},
    "gemini": {"provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": "key-anthropic"},
}
FALLBACK_LABELS = {p: f"{d['provider']}/{d['model']}" for p, d in FALLBACKS.items()}
FAILURES = ("500", "429", "hang", "unreachable")
# surface -> the provider whose wire it speaks (its destinations are passed through)
SURFACE_PROVIDER = {
    "openai_chat": "openai",
    "openai_responses": "openai",
    "openai_embeddings": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
}


def _fallback(provider: str, fake: str) -> dict[str, Any]:
    destination = dict(FALLBACKS[provider])
    destination["base_url"] = f"{fake}/v1" if destination["provider"] == "openai_compatible" else fake
    return destination


def _failing(provider: str, failure: str, fake: str, dead_port: int) -> dict[str, Any]:
    if failure == "hang":
        return _primary(provider, fake, "hang", timeout=HANG_TIMEOUT)
    if failure == "unreachable":
        dead = f"http://127.0.0.1:{dead_port}"
        return _primary(provider, dead, "gpt-4o-mini" if provider == "openai" else "m")
    return _primary(provider, fake, f"error-{failure}")


def _primary_label(provider: str, failure: str) -> str:
    model = {"hang": "hang", "unreachable": "gpt-4o-mini" if provider == "openai" else "m"}.get(failure, f"error-{failure}")
    return f"{provider}/{model}"


class RetryAfterStub:
    """An OpenAI-compatible upstream that always answers 429 with `Retry-After: 1`, and notes when."""

    def __init__(self) -> None:
        hits = self.hits = []  # time.monotonic() of each request

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                hits.append(time.monotonic())
                body = json.dumps({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}})
                self.send_response(429)
                self.send_header("content-type", "application/json")
                self.send_header("retry-after", "1")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _config(fake: str, stub_url: str, dead_port: int) -> str:
    endpoints: list[dict[str, Any]] = []
    for provider in ("openai", "anthropic", "gemini"):
        tasks = ["chat", "embeddings"] if provider == "openai" else ["chat"]
        for failure in FAILURES:
            endpoints.append({
                "name": f"fb-{provider}-{failure}",
                "task": tasks,
                "destinations": [_failing(provider, failure, fake, dead_port)],
                "fallbacks": [_fallback(provider, fake)],
                "cooldown": NO_COOLDOWN,
            })  # fmt: skip
        endpoints.append({
            "name": f"no400-{provider}",
            "destinations": [_primary(provider, fake, "error-400")],
            "fallbacks": [{"provider": "openai_compatible", "model": f"gov-no400-{provider}/ok", "base_url": f"{fake}/v1"}],
        })  # fmt: skip
    compat = {"provider": "openai_compatible", "base_url": f"{fake}/v1"}
    endpoints += [
        {
            "name": "split",
            "destinations": [
                {**compat, "model": "gov-split/heavy", "weight": 80},
                {**compat, "model": "gov-split/light", "weight": 20},
            ],
        },
        {
            "name": "retry",
            "destinations": [{**compat, "model": "gov-retry/error-500", "retries": 2, "retry_backoff": 0.05}],
            "fallbacks": [{**compat, "model": "gov-retry/ok"}],
        },
        {
            "name": "retry-after",
            "destinations": [{**compat, "base_url": stub_url, "model": "limited", "retries": 1, "retry_backoff": 0.01}],
            "fallbacks": [{**compat, "model": "gov-retry-after/ok"}],
        },
        {
            "name": "cool",
            "destinations": [{**compat, "model": "gov-cool/error-500"}],
            "fallbacks": [{**compat, "model": "gov-cool/ok"}],
            "cooldown": {"failures": 2, "seconds": COOLDOWN_SECONDS},
        },
    ]
    return yaml.safe_dump({"server": {"token_refresh_seconds": 0.5}, "endpoints": endpoints}, sort_keys=False)


@pytest.fixture(scope="module")
def stub() -> Iterator[RetryAfterStub]:
    server = RetryAfterStub()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def gateway(fake_upstream, stub) -> Iterator[GatewayProcess]:
    process = start_gateway(_config(fake_upstream.url, stub.url, free_port()))
    try:
        yield process
    finally:
        cleanup(process)


@pytest.fixture(scope="module")
def clients(gateway):
    token = gateway.admin_token
    return {
        "openai": openai.OpenAI(base_url=gateway.url + "/openai/v1", api_key=token, max_retries=0, timeout=20),
        "anthropic": anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=token, max_retries=0, timeout=20),
        "gemini": genai.Client(
            api_key=token, http_options=genai_types.HttpOptions(base_url=gateway.url + "/gemini", timeout=20_000)
        ),
    }


# -- one request per surface, streamed or not, with a tag that finds its usage record ------------------


def _tag_headers(case: str) -> dict[str, str]:
    return {TAGS_HEADER: json.dumps({"case": case})}


def send(clients: dict[str, Any], surface: str, endpoint: str, text: str, stream: bool, case: str) -> str:
    """Ask `endpoint` on `surface`; the answer's text (embeddings: 'vector of N')."""
    headers = _tag_headers(case)
    if surface == "openai_chat":
        client = clients["openai"]
        messages = [{"role": "user", "content": text}]
        if not stream:
            return client.chat.completions.create(model=endpoint, messages=messages, extra_headers=headers).choices[0].message.content
        chunks = client.chat.completions.create(model=endpoint, messages=messages, stream=True, extra_headers=headers)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if surface == "openai_responses":
        client = clients["openai"]
        if not stream:
            return client.responses.create(model=endpoint, input=text, extra_headers=headers).output_text
        events = client.responses.create(model=endpoint, input=text, stream=True, extra_headers=headers)
        return "".join(e.delta for e in events if e.type == "response.output_text.delta")
    if surface == "openai_embeddings":
        data = clients["openai"].embeddings.create(model=endpoint, input=text, extra_headers=headers).data
        return f"vector of {len(data[0].embedding)}"
    if surface == "anthropic":
        client = clients["anthropic"]
        messages = [{"role": "user", "content": text}]
        if not stream:
            message = client.messages.create(model=endpoint, max_tokens=100, messages=messages, extra_headers=headers)
            return "".join(b.text for b in message.content if b.type == "text")
        events = client.messages.create(model=endpoint, max_tokens=100, messages=messages, stream=True, extra_headers=headers)
        return "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    if surface == "gemini":
        client = clients["gemini"]
        config = genai_types.GenerateContentConfig(http_options=genai_types.HttpOptions(headers=headers))
        if not stream:
            return client.models.generate_content(model=endpoint, contents=text, config=config).text
        return "".join(c.text or "" for c in client.models.generate_content_stream(model=endpoint, contents=text, config=config))
    raise AssertionError(surface)


def wait_for_records(gateway: GatewayProcess, cases: set[str], timeout: float = 15.0) -> dict[str, list[dict]]:
    """The usage records tagged with each of `cases` (a list per case), once every case has one."""
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, list[dict]] = {}
        for row in gateway.usage_records():
            case = (row["tags"] or {}).get("case")
            if case in cases:
                found.setdefault(case, []).append(row)
        if set(found) >= cases or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def fake_models(fake_upstream, prefix: str) -> list[str]:
    """The models of the fake's recorded requests whose model starts with `prefix`, in order."""
    models = [(r.get("json") or {}).get("model") for r in fake_upstream.requests]
    return [m for m in models if isinstance(m, str) and m.startswith(prefix)]


# -- the fallback matrix ---------------------------------------------------------------------------------

FALLBACK_CASES = [
    (surface, failure, stream)
    for surface in SURFACE_PROVIDER
    for failure in FAILURES
    for stream in ((False,) if surface == "openai_embeddings" else (False, True))
]
NO_FALLBACK_CASES = [
    (surface, stream) for surface in ("openai_chat", "openai_responses", "anthropic", "gemini") for stream in (False, True)
]


def _case_id(*parts: Any) -> str:
    return "-".join("stream" if p is True else "whole" if p is False else str(p) for p in parts)


def _outcome(fn: Callable[[], Any]) -> dict[str, Any]:
    try:
        return {"answer": fn(), "error": None}
    except Exception as exc:  # asserted by the case's own test
        return {"answer": None, "error": exc}


@pytest.fixture(scope="module")
def matrix(gateway, clients) -> dict[str, Any]:
    """Every fallback and no-fallback case, sent concurrently; their outcomes and usage records."""
    jobs: dict[str, Callable[[], Any]] = {}
    for surface, failure, stream in FALLBACK_CASES:
        case = _case_id("fb", surface, failure, stream)
        endpoint = f"fb-{SURFACE_PROVIDER[surface]}-{failure}"
        jobs[case] = lambda s=surface, e=endpoint, st=stream, c=case: send(clients, s, e, f"hello {c}", st, c)
    for surface, stream in NO_FALLBACK_CASES:
        case = _case_id("no400", surface, stream)
        endpoint = f"no400-{SURFACE_PROVIDER[surface]}"
        jobs[case] = lambda s=surface, e=endpoint, st=stream, c=case: send(clients, s, e, f"hello {c}", st, c)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {case: pool.submit(_outcome, job) for case, job in jobs.items()}
        outcomes = {case: future.result() for case, future in futures.items()}
    return {"outcomes": outcomes, "records": wait_for_records(gateway, set(jobs))}


def _attempts(record: dict) -> list[tuple[str, int | None]]:
    return [(a["destination"], a["status"]) for a in record["attempts"]]


@pytest.mark.parametrize(("surface", "failure", "stream"), FALLBACK_CASES, ids=[_case_id(*c) for c in FALLBACK_CASES])
def test_a_failing_destination_falls_back_to_the_next(matrix, surface, failure, stream):
    case = _case_id("fb", surface, failure, stream)
    outcome = matrix["outcomes"][case]
    assert outcome["error"] is None, f"{case}: {outcome['error']!r}"
    expected = "vector of 8" if surface == "openai_embeddings" else f"echo: hello {case}"
    assert outcome["answer"] == expected

    records = matrix["records"].get(case, [])
    assert len(records) == 1, f"{case}: {len(records)} usage records"
    record = records[0]
    provider = SURFACE_PROVIDER[surface]
    primary, fallback = _primary_label(provider, failure), FALLBACK_LABELS[provider]
    upstream_status = {"500": 500, "429": 429}.get(failure)  # no response at all: None
    assert _attempts(record) == [(primary, upstream_status), (fallback, 200)]
    first_error = record["attempts"][0]["error"]
    assert first_error and primary in first_error
    if failure == "hang":
        assert "did not answer" in first_error
        assert record["attempts"][0]["latency_ms"] >= HANG_TIMEOUT * 1000 * 0.9
    if failure == "unreachable":
        assert "unreachable" in first_error
    assert record["attempts"][1]["error"] is None
    assert (record["status"], record["destination"], record["error"]) == (200, fallback, None)
    assert record["surface"] == surface and record["streamed"] is stream
    assert record["endpoint"] == f"fb-{provider}-{failure}"


@pytest.mark.parametrize(("surface", "stream"), NO_FALLBACK_CASES, ids=[_case_id(*c) for c in NO_FALLBACK_CASES])
def test_a_400_comes_straight_back_without_fallback(matrix, fake_upstream, surface, stream):
    case = _case_id("no400", surface, stream)
    error = matrix["outcomes"][case]["error"]
    if surface == "anthropic":
        assert isinstance(error, anthropic.BadRequestError), repr(error)
        assert error.status_code == 400 and error.body["error"]["type"] == "invalid_request_error"
        message = error.body["error"]["message"]
    elif surface == "gemini":
        assert isinstance(error, genai_errors.ClientError), repr(error)
        assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
        message = error.message
    else:
        assert isinstance(error, openai.BadRequestError), repr(error)
        assert error.status_code == 400 and error.body["type"] == "invalid_request_error"
        message = error.body["message"]
    provider = SURFACE_PROVIDER[surface]
    assert f"Destination '{provider}/error-400' returned HTTP 400" in message

    # The fallback was never called, and the record holds the one attempt.
    assert fake_models(fake_upstream, f"gov-no400-{provider}/") == []
    records = matrix["records"].get(case, [])
    assert len(records) == 1, f"{case}: {len(records)} usage records"
    record = records[0]
    assert _attempts(record) == [(f"{provider}/error-400", 400)]
    assert (record["status"], record["destination"]) == (400, f"{provider}/error-400")
    assert record["streamed"] is stream


# -- weighted split, retries, cool-down -----------------------------------------------------------------


@pytest.fixture(scope="module")
def routing_runs(gateway, clients, fake_upstream, stub) -> dict[str, Any]:
    """The weighted split, the retries and the cool-down, interleaved so that their waits overlap (the
    Retry-After, the cool-down period, the record writer's second); what each observed on the way."""
    client = clients["openai"]
    seen: dict[str, Any] = {}

    def ask(endpoint: str, text: str, case: str) -> str:
        reply = client.chat.completions.create(
            model=endpoint, messages=[{"role": "user", "content": text}], extra_headers=_tag_headers(case)
        )
        return reply.choices[0].message.content

    def retry_after() -> None:
        seen["retry-after-started"] = time.monotonic()
        seen["retry-after-answer"] = _outcome(lambda: ask("retry-after", "wait", "retry-after"))

    def cool_hits() -> tuple[int, int]:
        models = fake_models(fake_upstream, "gov-cool/")
        return models.count("gov-cool/error-500"), models.count("gov-cool/ok")

    waiting = threading.Thread(target=retry_after)
    waiting.start()  # about a second of Retry-After: the rest runs meanwhile
    seen["retry-answer"] = _outcome(lambda: ask("retry", "again", "retry"))
    seen["retry-hits"] = fake_models(fake_upstream, "gov-retry/")

    seen["cool-answers"] = [_outcome(lambda i=i: ask("cool", f"c{i}", f"cool-{i}")) for i in range(2)]
    cooled_at = time.monotonic()  # the second failure in a row: the destination cools down
    seen["cool-hits-at-failure"] = cool_hits()
    seen["cool-answers"] += [_outcome(lambda i=i: ask("cool", f"c{i}", f"cool-{i}")) for i in range(2, 6)]
    seen["cool-hits-while-cooling"] = cool_hits()
    seen["cool-observed-within"] = time.monotonic() - cooled_at

    def split(i: int) -> str:  # meanwhile the cool-down period runs out
        return client.chat.completions.create(
            model="split", messages=[{"role": "user", "content": f"split {i}"}], extra_headers=_tag_headers(f"split-{i}")
        ).model

    with ThreadPoolExecutor(max_workers=8) as pool:
        seen["split-answered-by"] = list(pool.map(split, range(SPLIT_REQUESTS)))
    seen["split-hits"] = fake_models(fake_upstream, "gov-split/")

    time.sleep(max(0.0, cooled_at + COOLDOWN_SECONDS + 0.2 - time.monotonic()))
    seen["cool-answers"].append(_outcome(lambda: ask("cool", "c6", "cool-6")))  # the period is over
    seen["cool-hits-after"] = cool_hits()

    waiting.join(timeout=30)
    seen["retry-after-hits"] = list(stub.hits)
    seen["retry-after-fallback-hits"] = fake_models(fake_upstream, "gov-retry-after/")
    cases = {"retry", "retry-after", *(f"cool-{i}" for i in range(7)), *(f"split-{i}" for i in range(SPLIT_REQUESTS))}
    seen["records"] = wait_for_records(gateway, cases)
    return seen


def _one(runs: dict[str, Any], case: str) -> dict:
    rows = runs["records"].get(case, [])
    assert len(rows) == 1, f"{case}: {len(rows)} usage records"
    return rows[0]


def test_weighted_split_sends_traffic_by_weight(routing_runs):
    hits = routing_runs["split-hits"]
    heavy, light = hits.count("gov-split/heavy"), hits.count("gov-split/light")
    assert heavy + light == SPLIT_REQUESTS == len(hits)  # one upstream call each, no retry, no fallback
    assert sorted(routing_runs["split-answered-by"]) == sorted(hits)
    # 80/20 of 200: 160 expected, standard deviation ~5.7; the bound is over 5 deviations wide.
    assert 130 <= heavy <= 190 and light == SPLIT_REQUESTS - heavy, (heavy, light)

    destinations = [_one(routing_runs, f"split-{i}")["destination"] for i in range(SPLIT_REQUESTS)]
    assert destinations.count("openai_compatible/gov-split/heavy") == heavy
    assert destinations.count("openai_compatible/gov-split/light") == light


def test_retries_with_backoff_before_moving_on(routing_runs):
    answer = routing_runs["retry-answer"]
    assert answer["error"] is None and answer["answer"] == "echo: again", answer
    # Three tries of the failing destination (one and two retries), then the fallback, in that order.
    assert routing_runs["retry-hits"] == ["gov-retry/error-500"] * 3 + ["gov-retry/ok"]
    record = _one(routing_runs, "retry")
    failing, fallback = "openai_compatible/gov-retry/error-500", "openai_compatible/gov-retry/ok"
    assert _attempts(record) == [(failing, 500)] * 3 + [(fallback, 200)]
    assert (record["status"], record["destination"]) == (200, fallback)


def test_retries_honour_retry_after(routing_runs):
    answer = routing_runs["retry-after-answer"]
    assert answer["error"] is None and answer["answer"] == "echo: wait", answer
    hits = routing_runs["retry-after-hits"]
    assert len(hits) == 2  # the try and its one retry
    assert hits[0] >= routing_runs["retry-after-started"]
    # The backoff alone would wait at most 0.01 s: the retry waited for the upstream's Retry-After.
    gap = hits[1] - hits[0]
    assert 0.95 <= gap < 5, gap
    assert routing_runs["retry-after-fallback-hits"] == ["gov-retry-after/ok"]
    limited = "openai_compatible/limited"
    attempts = _attempts(_one(routing_runs, "retry-after"))
    assert attempts == [(limited, 429), (limited, 429), ("openai_compatible/gov-retry-after/ok", 200)]


def test_cooldown_skips_a_destination_after_n_failures(routing_runs):
    answers = routing_runs["cool-answers"]
    assert [a["answer"] for a in answers] == [f"echo: c{i}" for i in range(7)], answers
    assert routing_runs["cool-observed-within"] < COOLDOWN_SECONDS, "too slow to observe the cool-down"
    assert routing_runs["cool-hits-at-failure"] == (2, 2)  # (failing, fallback) upstream hits
    assert routing_runs["cool-hits-while-cooling"] == (2, 6)  # skipped: the fallback answered first
    assert routing_runs["cool-hits-after"] == (3, 7)  # the period is over: tried first again

    failing, fallback = "openai_compatible/gov-cool/error-500", "openai_compatible/gov-cool/ok"
    attempts = {i: _attempts(_one(routing_runs, f"cool-{i}")) for i in range(7)}
    assert attempts == {
        **{i: [(failing, 500), (fallback, 200)] for i in (0, 1, 6)},
        **{i: [(fallback, 200)] for i in range(2, 6)},
    }
