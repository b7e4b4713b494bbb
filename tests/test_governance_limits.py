"""Rate limits end to end: real gateway processes in front of the fake upstreams, driven with the
official SDKs.

QPM on an endpoint refuses the (N+1)th request with 429 in the OpenAI, Anthropic and Gemini shapes,
with Retry-After and X-RateLimit-* headers; TPM is charged with the real usage after the call; a
per-user limit gives two users a bucket each; and two gateway processes sharing Redis and PostgreSQL
admit exactly N of N + k requests sent across both, with one usage record per request in the
shared database.

Redis keys are isolated by an endpoint name of this run's own (keys are `aigw:rl:<endpoint>|...` and
expire by themselves within the minute); PostgreSQL by a fresh schema (tests/store_fixtures.py)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import anthropic
import openai
import pytest
import requests
import yaml
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.fakes.scenario import count_input_tokens
from tests.gateway_process import GatewayProcess, cleanup, start_gateway
from tests.store_fixtures import _fresh_schema_url

REDIS_URL = os.environ.get("AIGW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TAGS_HEADER = "X-Aigw-Request-Tags"
QPM = 3
TPM = 1000


def _compat(fake: str, model: str = "limited") -> dict[str, Any]:
    return {"provider": "openai_compatible", "model": model, "base_url": f"{fake}/v1"}


def _config(fake: str) -> str:
    endpoints = [
        {"name": f"qpm-{surface}", "destinations": [_compat(fake)], "rate_limits": [{"key": "endpoint", "calls": QPM}]}
        for surface in ("openai", "anthropic", "gemini")
    ]
    endpoints += [
        {"name": "tpm", "destinations": [_compat(fake)], "rate_limits": [{"key": "endpoint", "tokens": TPM}]},
        {"name": "per-user", "destinations": [_compat(fake)], "rate_limits": [{"key": "user", "calls": 2}]},
    ]
    endpoints += [
        {"name": f"count-{surface}", "destinations": [_compat(fake)], "rate_limits": [{"key": "endpoint", "calls": 2}]}
        for surface in ("anthropic", "gemini")
    ]
    return yaml.safe_dump({"server": {"token_refresh_seconds": 0.3}, "endpoints": endpoints}, sort_keys=False)


@pytest.fixture(scope="module")
def gateway(fake_upstream) -> Iterator[GatewayProcess]:
    process = start_gateway(_config(fake_upstream.url))
    try:
        yield process
    finally:
        cleanup(process)


def chat(url: str, token: str, endpoint: str, text: str = "hi", case: str | None = None) -> requests.Response:
    headers = {"authorization": f"Bearer {token}"}
    if case is not None:
        headers[TAGS_HEADER] = json.dumps({"case": case})
    body = {"model": endpoint, "messages": [{"role": "user", "content": text}]}
    return requests.post(f"{url}/openai/v1/chat/completions", json=body, headers=headers, timeout=20)


def assert_limit_headers(headers: Any, limit: int) -> None:
    """Retry-After in whole seconds, and the refusing limit's X-RateLimit-* headers."""
    retry_after = int(headers["retry-after"])
    assert 1 <= retry_after <= 60, retry_after
    assert headers["x-ratelimit-limit"] == str(limit)
    assert headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(headers["x-ratelimit-reset"]) <= 60
    # A bucket of N refilling N a minute: the next call fits about 60/N seconds after the first.
    assert 60 / limit - 5 <= retry_after <= 60 / limit + 1, retry_after


# -- QPM, in each surface's error shape ---------------------------------------------------------------------


def test_qpm_openai_shape(gateway):
    client = openai.OpenAI(base_url=gateway.url + "/openai/v1", api_key=gateway.admin_token, max_retries=0, timeout=20)
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(QPM):
        assert client.chat.completions.create(model="qpm-openai", messages=messages).choices[0].message.content == "echo: hi"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="qpm-openai", messages=messages)
    error = caught.value
    assert error.status_code == 429
    assert (error.body["type"], error.body["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert error.body["message"] == f"Rate limit exceeded for endpoint 'qpm-openai': {QPM} requests per minute for all callers together."
    assert_limit_headers(error.response.headers, QPM)


def test_qpm_anthropic_shape(gateway):
    client = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.admin_token, max_retries=0, timeout=20)
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(QPM):
        assert client.messages.create(model="qpm-anthropic", max_tokens=50, messages=messages).content[0].text == "echo: hi"
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="qpm-anthropic", max_tokens=50, messages=messages, stream=True)
    error = caught.value
    assert error.status_code == 429
    assert error.body["type"] == "error" and error.body["error"]["type"] == "rate_limit_error"
    assert "'qpm-anthropic'" in error.body["error"]["message"]
    assert_limit_headers(error.response.headers, QPM)


def test_qpm_gemini_shape(gateway):
    client = genai.Client(
        api_key=gateway.admin_token, http_options=genai_types.HttpOptions(base_url=gateway.url + "/gemini", timeout=20_000)
    )
    for _ in range(QPM):
        assert client.models.generate_content(model="qpm-gemini", contents="hi").text == "echo: hi"
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="qpm-gemini", contents="hi")
    error = caught.value
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    assert "'qpm-gemini'" in error.message
    assert_limit_headers(error.response.headers, QPM)


# -- token counts are calls too ----------------------------------------------------------------------------


def test_token_counts_are_limited_and_recorded(gateway):
    """count_tokens / countTokens cost the upstream nothing but are still calls: admitted by the
    endpoint's limits (or they would be an unmetered way to reach the upstream) and recorded."""
    claude = anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=gateway.admin_token, max_retries=0, timeout=20)
    messages = [{"role": "user", "content": "count these"}]
    for _ in range(2):
        assert claude.messages.count_tokens(model="count-anthropic", messages=messages).input_tokens > 0
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.count_tokens(model="count-anthropic", messages=messages)
    assert "'count-anthropic'" in refused.value.body["error"]["message"]

    gem = genai.Client(api_key=gateway.admin_token, http_options=genai_types.HttpOptions(base_url=gateway.url + "/gemini", timeout=20_000))
    for _ in range(2):
        assert gem.models.count_tokens(model="count-gemini", contents="count these").total_tokens > 0
    with pytest.raises(genai_errors.ClientError) as caught:
        gem.models.count_tokens(model="count-gemini", contents="count these")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")

    deadline = time.monotonic() + 10
    while True:
        records = [r for r in gateway.usage_records() if r["endpoint"].startswith("count-")]
        if len(records) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    seen = sorted((r["surface"], r["status"]) for r in records)
    assert seen == [("anthropic_count_tokens", 200)] * 2 + [("anthropic_count_tokens", 429)] + [
        ("gemini_count_tokens", 200)
    ] * 2 + [("gemini_count_tokens", 429)], seen
    assert all(r["destination"] == "openai_compatible/limited" for r in records if r["status"] == 200)
    assert all(r["total_tokens"] is None for r in records)  # counting used no tokens


# -- TPM with the real usage --------------------------------------------------------------------------------


def test_tpm_is_charged_with_the_real_usage(gateway):
    # 600 one-letter words: 300 input tokens (the body's estimate: about 315), 601 output tokens.
    text = " ".join(["a"] * 600)
    real = count_input_tokens([text]) + len(f"echo: {text}".split())
    estimate = len(json.dumps({"model": "tpm", "messages": [{"role": "user", "content": text}]})) // 4
    assert real > 850 and estimate < 350 and real + estimate > TPM >= 2 * estimate

    first = chat(gateway.url, gateway.admin_token, "tpm", text)
    assert first.status_code == 200, first.text
    assert first.json()["usage"]["total_tokens"] == real
    time.sleep(0.2)  # the settlement follows the answer
    # On estimates alone the bucket would hold ~2 x 315 < 1000 and admit this one; with the real usage
    # of the first (901) it cannot take another ~315.
    second = chat(gateway.url, gateway.admin_token, "tpm", text)
    assert second.status_code == 429, second.text
    assert "1000 tokens per minute" in second.json()["error"]["message"]
    assert second.headers["x-ratelimit-limit"] == str(TPM)
    remaining = int(second.headers["x-ratelimit-remaining"])
    assert TPM - real <= remaining < estimate, remaining  # what the real usage left (and a little refill)
    # A small request still fits in what is left.
    assert chat(gateway.url, gateway.admin_token, "tpm", "small").status_code == 200


# -- per-user limits ----------------------------------------------------------------------------------------


def _cli(gateway: GatewayProcess, *args: str) -> str:
    result = gateway.cli(*args)
    assert result.returncode == 0, f"aigw {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def _first_allowed(gateway: GatewayProcess, token: str, endpoint: str, timeout: float = 10.0) -> requests.Response:
    """The first answer that is not a 403 (grants reach the gateway within its refresh period; a
    refused permission is checked before the rate limit, so it costs no call)."""
    deadline = time.monotonic() + timeout
    while True:
        response = chat(gateway.url, token, endpoint)
        if response.status_code != 403 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_per_user_limits_give_each_user_a_bucket(gateway):
    users = ("alice", "bob")
    commands = [("tokens", "create", "--name", f"{u}-key", "--principal", u, "--create-principal") for u in users]
    commands.append(("grants", "add", "per-user", "--group", "users"))  # every token holder
    with ThreadPoolExecutor(max_workers=3) as pool:  # each command takes a second to start
        outputs = list(pool.map(lambda args: _cli(gateway, *args), commands))
    tokens = dict(zip(users, outputs))
    assert _first_allowed(gateway, tokens["alice"], "per-user").status_code == 200
    assert _first_allowed(gateway, tokens["bob"], "per-user").status_code == 200
    assert chat(gateway.url, tokens["alice"], "per-user").status_code == 200
    assert chat(gateway.url, tokens["bob"], "per-user").status_code == 200
    for user in ("alice", "bob"):
        refused = chat(gateway.url, tokens[user], "per-user")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["message"] == (
            f"Rate limit exceeded for endpoint 'per-user': 2 requests per minute for user '{user}'."
        )
        assert_limit_headers(refused.headers, 2)
    # The admin has a bucket of its own too, untouched by theirs.
    assert chat(gateway.url, gateway.admin_token, "per-user").status_code == 200


# -- scale-out: two gateways sharing Redis and PostgreSQL ----------------------------------------------------

SHARED_N, SHARED_EXTRA = 8, 6


def _redis_reachable(url: str) -> str | None:
    """None when Redis answers PING at `url`, else the reason."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return str(exc)
    return None if reply.startswith((b"+PONG", b"-NOAUTH")) else f"unexpected reply {reply!r}"


def _metrics(gateway: GatewayProcess) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in requests.get(gateway.url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _wait_until_stored(gateway: GatewayProcess, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _metrics(gateway).get("aigw_records_buffered") != 0:
        assert time.monotonic() < deadline, "the record writer kept records buffered"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def scale_out(request, fake_upstream) -> Iterator[dict[str, Any]]:
    """Two gateways sharing Redis and a fresh PostgreSQL schema; N + k requests across both."""
    problem = _redis_reachable(REDIS_URL)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required when CI=true but unreachable at {REDIS_URL}: {problem}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {problem}")
    database = _fresh_schema_url(request.config)
    endpoint = f"shared-{secrets.token_hex(4)}"  # this run's own Redis keys
    config = yaml.safe_dump({
        "endpoints": [
            {"name": endpoint, "destinations": [_compat(fake_upstream.url, "shared")],
             "rate_limits": [{"key": "endpoint", "calls": SHARED_N}]},
        ],
    })  # fmt: skip
    env = {"AIGW_DATABASE_URL": database, "AIGW_REDIS_URL": REDIS_URL}
    first = start_gateway(config, env)
    try:
        second = start_gateway(config, env)  # same database: the first's admin token works here too
    except BaseException:
        cleanup(first)
        raise
    try:
        token = first.admin_token
        gateways = [first, second]
        cases = [f"scale-{i}" for i in range(SHARED_N + SHARED_EXTRA)]

        def send(i: int) -> int:
            return chat(gateways[i % 2].url, token, endpoint, f"n{i}", cases[i]).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(cases)) as pool:
            statuses = dict(zip(cases, pool.map(send, range(len(cases)))))
        elapsed = time.monotonic() - started
        for gateway in gateways:
            _wait_until_stored(gateway)
        records: dict[str, list[dict]] = {}
        for row in first.usage_records():
            records.setdefault((row["tags"] or {}).get("case"), []).append(row)
        yield {
            "statuses": statuses, "elapsed": elapsed, "records": records, "endpoint": endpoint,
            "metrics": [_metrics(g) for g in gateways], "second_records": len(second.usage_records()),
        }  # fmt: skip
    finally:
        cleanup(second)
        cleanup(first)


def test_scale_out_admits_exactly_n_across_two_gateways(scale_out):
    statuses = list(scale_out["statuses"].values())
    assert scale_out["elapsed"] < 5  # well inside the refill of one call (60 / N s)
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) == SHARED_N and statuses.count(429) == SHARED_EXTRA
    # Both gateways served requests; together they answered N.
    endpoint = scale_out["endpoint"]
    answered = [
        sum(v for k, v in m.items() if k.startswith("aigw_requests_total{") and f'endpoint="{endpoint}"' in k
            and 'status_class="2xx"' in k)
        for m in scale_out["metrics"]
    ]  # fmt: skip
    assert sum(answered) == SHARED_N


def test_scale_out_every_answered_request_has_one_record_in_the_shared_database(scale_out):
    records = scale_out["records"]
    answered = [case for case, status in scale_out["statuses"].items() if status == 200]
    assert len(answered) == SHARED_N
    for case in answered:
        assert len(records.get(case, [])) == 1, f"{case}: {len(records.get(case, []))} usage records"
        assert records[case][0]["status"] == 200 and records[case][0]["endpoint"] == scale_out["endpoint"]
    # Each gateway reads the same table.
    assert scale_out["second_records"] == sum(len(rows) for rows in records.values())


def test_scale_out_every_refused_request_has_one_record_in_the_shared_database(scale_out):
    records = scale_out["records"]
    refused = [case for case, status in scale_out["statuses"].items() if status == 429]
    assert len(refused) == SHARED_EXTRA
    for case in refused:
        assert len(records.get(case, [])) == 1, f"{case}: {len(records.get(case, []))} usage records"
        assert records[case][0]["status"] == 429
