"""Usage and payload recording end to end: a real gateway process in front of the fake upstreams,
driven with the official SDKs (and raw HTTP where the wire matters).

One usage record per request with the right fields (tokens as the fake reported them, passed through
and translated, streamed and not, on every surface; tags; user agent; the status the client got,
errors included); payload records sampled at 1.0 and 0.0, streamed answers stitched into one response
in the client's wire format, the size-cap markers; `/metrics`; `aigw usage --json` and
`aigw usage export` read back with pyarrow; the admin API for admins only.

The traffic is sent once, concurrently, by a module fixture (the record writer stores once a second);
each test asserts its part of it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import anthropic
import openai
import pyarrow.parquet as pq
import pytest
import requests
import yaml
from google import genai
from google.genai import types as genai_types
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.scenario import count_input_tokens
from tests.gateway_process import GatewayProcess, cleanup, start_gateway

TAGS_HEADER = "X-Aigw-Request-Tags"
TEAM = "governance"
CAP_BYTES = 300
LOG_ALL = {"enabled": True, "sample": 1.0}
SDK_AGENTS = {"openai": "OpenAI/Python", "anthropic": "Anthropic/Python", "gemini": "google-genai-sdk/"}

# endpoint -> (destination, its label, upstream model)
DESTINATIONS = {
    "rec-openai": {"provider": "openai", "model": "gpt-4o-mini", "api_key": "key-openai", "base": "/v1"},
    "rec-anthropic": {"provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": "key-anthropic", "base": ""},
    "rec-gemini": {"provider": "gemini", "model": "gemini-2.5-flash", "api_key": "key-gemini", "base": ""},
}


def label(endpoint: str) -> str:
    d = DESTINATIONS[endpoint]
    return f"{d['provider']}/{d['model']}"


def _compat(fake: str, model: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai_compatible", "model": model, "base_url": f"{fake}/v1", **extra}


def _config(fake: str) -> str:
    endpoints: list[dict[str, Any]] = []
    for name, d in DESTINATIONS.items():
        destination = {k: v for k, v in d.items() if k != "base"} | {"base_url": fake + d["base"]}
        tasks = ["chat", "embeddings"] if d["provider"] != "anthropic" else ["chat"]
        endpoints.append({"name": name, "task": tasks, "destinations": [destination], "payload_logging": LOG_ALL})
    endpoints += [
        {"name": "sample-all", "destinations": [_compat(fake, "all")], "payload_logging": LOG_ALL},
        {"name": "sample-none", "destinations": [_compat(fake, "none")], "payload_logging": {"enabled": True, "sample": 0.0}},
        {"name": "capped", "destinations": [_compat(fake, "cap")], "payload_logging": {**LOG_ALL, "max_bytes": CAP_BYTES}},
        {"name": "metered", "destinations": [_compat(fake, "meter")]},
        {"name": "metered-err", "destinations": [_compat(fake, "error-500")]},
        {"name": "err-500", "destinations": [_compat(fake, "error-500")]},
        {"name": "err-429", "destinations": [_compat(fake, "error-429")]},
        {"name": "err-400", "destinations": [_compat(fake, "error-400")]},
        {"name": "err-hang", "destinations": [_compat(fake, "hang", timeout=0.5)]},
        {"name": "limited", "destinations": [_compat(fake, "lim")], "rate_limits": [{"key": "endpoint", "calls": 1}]},
    ]
    return yaml.safe_dump({"server": {"token_refresh_seconds": 0.5}, "endpoints": endpoints}, sort_keys=False)


@pytest.fixture(scope="module")
def gateway(fake_upstream) -> Iterator[GatewayProcess]:
    process = start_gateway(_config(fake_upstream.url))
    try:
        yield process
    finally:
        cleanup(process)


def admin_headers(gateway: GatewayProcess) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.admin_token}"}


def tags_of(case: str) -> dict[str, str]:
    return {"case": case, "team": TEAM}


def tag_headers(case: str) -> dict[str, str]:
    return {TAGS_HEADER: json.dumps(tags_of(case))}


# -- the SDK requests -------------------------------------------------------------------------------------


def sdk_clients(gateway: GatewayProcess) -> dict[str, Any]:
    token = gateway.admin_token
    return {
        "openai": openai.OpenAI(base_url=gateway.url + "/openai/v1", api_key=token, max_retries=0, timeout=20),
        "anthropic": anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=token, max_retries=0, timeout=20),
        "gemini": genai.Client(api_key=token, http_options=genai_types.HttpOptions(base_url=gateway.url + "/gemini", timeout=20_000)),
    }


def send(clients: dict[str, Any], surface: str, endpoint: str, text: str, stream: bool, case: str) -> Any:
    """Ask `endpoint` on `surface`: the answer's text (embeddings: the input tokens the client was told)."""
    headers = tag_headers(case)
    if surface == "openai_chat":
        client, messages = clients["openai"], [{"role": "user", "content": text}]
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
        return clients["openai"].embeddings.create(model=endpoint, input=text, extra_headers=headers).usage.prompt_tokens
    if surface == "anthropic":
        client, messages = clients["anthropic"], [{"role": "user", "content": text}]
        if not stream:
            message = client.messages.create(model=endpoint, max_tokens=200, messages=messages, extra_headers=headers)
            return "".join(b.text for b in message.content if b.type == "text")
        events = client.messages.create(model=endpoint, max_tokens=200, messages=messages, stream=True, extra_headers=headers)
        return "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    if surface == "gemini":
        client = clients["gemini"]
        config = genai_types.GenerateContentConfig(http_options=genai_types.HttpOptions(headers=headers))
        if not stream:
            return client.models.generate_content(model=endpoint, contents=text, config=config).text
        return "".join(c.text or "" for c in client.models.generate_content_stream(model=endpoint, contents=text, config=config))
    raise AssertionError(surface)


SDK_OF = {"openai_chat": "openai", "openai_responses": "openai", "openai_embeddings": "openai", "anthropic": "anthropic", "gemini": "gemini"}
# (surface, endpoint, passed through?) : each surface to its own vendor (pass-through) and to another.
CHAT_CASES = [
    (surface, endpoint, stream)
    for surface, endpoints in {
        "openai_chat": ("rec-openai", "rec-anthropic"),
        "openai_responses": ("rec-openai", "rec-gemini"),
        "anthropic": ("rec-anthropic", "rec-openai"),
        "gemini": ("rec-gemini", "rec-anthropic"),
    }.items()
    for endpoint in endpoints
    for stream in (False, True)
]
EMBEDDING_CASES = [("openai_embeddings", "rec-openai", False), ("openai_embeddings", "rec-gemini", False)]
TOKEN_CASES = CHAT_CASES + EMBEDDING_CASES


def case_id(surface: str, endpoint: str, stream: bool) -> str:
    return f"{surface}-{endpoint}-{'stream' if stream else 'whole'}"


def prompt_of(case: str) -> str:
    return f"please count the tokens of {case} twice"


# -- raw HTTP requests --------------------------------------------------------------------------------------


def post_chat(gateway: GatewayProcess, endpoint: str, text: str, case: str, token: str | None = "admin", **headers: str) -> requests.Response:
    all_headers = {**tag_headers(case), **headers}
    if token is not None:
        all_headers["authorization"] = f"Bearer {gateway.admin_token if token == 'admin' else token}"
    body = {"model": endpoint, "messages": [{"role": "user", "content": text}]}
    return requests.post(f"{gateway.url}/mlflow/v1/chat/completions", json=body, headers=all_headers, timeout=20)


# (case, endpoint, expected status, a phrase of the recorded error, the attempts)
ERROR_CASES = [
    ("status-502", "err-500", 502, "returned HTTP 500", [("openai_compatible/error-500", 500)]),
    ("status-429-upstream", "err-429", 429, "returned HTTP 429", [("openai_compatible/error-429", 429)]),
    ("status-400", "err-400", 400, "returned HTTP 400", [("openai_compatible/error-400", 400)]),
    ("status-504", "err-hang", 504, "did not answer", [("openai_compatible/hang", None)]),
    ("status-404", "no-such-endpoint", 404, "does not exist", []),
    ("status-429-limited", "limited", 429, "Rate limit exceeded", []),
    ("status-401", "err-400", 401, "", []),
]
ANONYMOUS_AGENT = "gov-anonymous/1.0"  # finds the 401's record even if it keeps no tags


def _outcome(fn: Callable[[], Any]) -> dict[str, Any]:
    try:
        return {"answer": fn(), "error": None}
    except Exception as exc:  # asserted by the case's own test
        return {"answer": None, "error": exc}


def metrics_text(gateway: GatewayProcess) -> str:
    response = requests.get(gateway.url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus exposition, by (name, labels); the parser rejects a bad one."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_until_stored(gateway: GatewayProcess, timeout: float = 15.0) -> None:
    """Until the record writer holds nothing in memory: every record submitted so far is stored."""
    deadline = time.monotonic() + timeout
    while samples(metrics_text(gateway)).get(("aigw_records_buffered", frozenset())) != 0:
        assert time.monotonic() < deadline, "the record writer kept records buffered"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def traffic(gateway) -> dict[str, Any]:
    """All of this module's requests; their outcomes, usage records (by case tag) and payloads."""
    clients = sdk_clients(gateway)
    started = datetime.now(timezone.utc)
    jobs: dict[str, Callable[[], Any]] = {}
    for surface, endpoint, stream in TOKEN_CASES:
        case = case_id(surface, endpoint, stream)
        jobs[case] = lambda s=surface, e=endpoint, st=stream, c=case: send(clients, s, e, prompt_of(c), st, c)
    for name, endpoint, *_ in ERROR_CASES:
        if name in ("status-429-limited", "status-401"):
            continue  # below, in order
        jobs[name] = lambda e=endpoint, c=name: post_chat(gateway, e, "hi", c)
    for i in range(4):
        for endpoint in ("sample-all", "sample-none", "metered"):
            jobs[f"{endpoint}-{i}"] = lambda e=endpoint, c=f"{endpoint}-{i}": post_chat(gateway, e, "count me", c)
    for i in range(2):
        jobs[f"metered-err-{i}"] = lambda c=f"metered-err-{i}": post_chat(gateway, "metered-err", "count me", c)
    jobs["capped-small"] = lambda: post_chat(gateway, "capped", "tiny", "capped-small")
    jobs["capped-large"] = lambda: post_chat(gateway, "capped", "large " * 200, "capped-large")
    jobs["agent"] = lambda: post_chat(gateway, "metered-err", "who", "agent", **{"user-agent": "gov-test-agent/1.0"})
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {case: pool.submit(_outcome, job) for case, job in jobs.items()}
        outcomes = {case: future.result() for case, future in futures.items()}
    # The rate limit admits one call a minute: the first is answered, the second refused.
    outcomes["limited-first"] = _outcome(lambda: post_chat(gateway, "limited", "hi", "limited-first"))
    outcomes["status-429-limited"] = _outcome(lambda: post_chat(gateway, "limited", "hi", "status-429-limited"))
    outcomes["status-401"] = _outcome(
        lambda: post_chat(gateway, "err-400", "hi", "status-401", token=None, **{"user-agent": ANONYMOUS_AGENT})
    )

    wait_until_stored(gateway)
    records: dict[str, list[dict]] = {}
    for row in gateway.usage_records():
        case = (row["tags"] or {}).get("case")
        if case is None and row["user_agent"] == ANONYMOUS_AGENT:
            case = "status-401"
        records.setdefault(case, []).append(row)
    payloads: dict[str, dict] = {}
    for endpoint in [*DESTINATIONS, "sample-all", "sample-none", "capped"]:
        response = requests.get(
            f"{gateway.url}/admin/v1/payloads", params={"endpoint": endpoint, "limit": "1000"}, headers=admin_headers(gateway)
        )
        assert response.status_code == 200, response.text
        payloads.update((p["request_id"], p) for p in response.json()["payloads"])
    return {"outcomes": outcomes, "records": records, "payloads": payloads, "started": started}


def one_record(traffic: dict[str, Any], case: str) -> dict:
    rows = traffic["records"].get(case, [])
    assert len(rows) == 1, f"{case}: {len(rows)} usage records"
    return rows[0]


def answer_of(traffic: dict[str, Any], case: str) -> Any:
    outcome = traffic["outcomes"][case]
    assert outcome["error"] is None, f"{case}: {outcome['error']!r}"
    return outcome["answer"]


# -- usage records -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("surface", "endpoint", "stream"), TOKEN_CASES, ids=[case_id(*c) for c in TOKEN_CASES])
def test_one_usage_record_per_request_with_the_upstreams_tokens(traffic, surface, endpoint, stream):
    case = case_id(surface, endpoint, stream)
    prompt = prompt_of(case)
    answer = answer_of(traffic, case)
    record = one_record(traffic, case)
    expected_input = count_input_tokens([prompt])
    if surface == "openai_embeddings":
        if endpoint == "rec-openai":
            assert answer == expected_input  # the fake's count, passed through
        # Gemini reports no usage for embeddings: the gateway's estimate, as the client was told.
        assert record["input_tokens"] == answer and record["output_tokens"] in (0, None)
        assert record["total_tokens"] == answer
    else:
        assert answer == f"echo: {prompt}"
        expected_output = len(f"echo: {prompt}".split())
        assert (record["input_tokens"], record["output_tokens"]) == (expected_input, expected_output)
        assert record["total_tokens"] == expected_input + expected_output

    assert record["surface"] == surface and record["endpoint"] == endpoint
    assert (record["destination"], record["model"]) == (label(endpoint), DESTINATIONS[endpoint]["model"])
    assert (record["status"], record["error"], record["streamed"]) == (200, None, stream)
    assert record["principal_name"] == "admin" and isinstance(record["principal_id"], int)
    assert record["user_agent"].startswith(SDK_AGENTS[SDK_OF[surface]]), record["user_agent"]
    assert record["tags"] == tags_of(case)
    assert [(a["destination"], a["status"]) for a in record["attempts"]] == [(label(endpoint), 200)]
    assert 0 < record["upstream_latency_ms"] <= record["latency_ms"] < 20_000
    event_time = record["event_time"]
    event_time = event_time if event_time.tzinfo else event_time.replace(tzinfo=timezone.utc)
    assert traffic["started"] - timedelta(seconds=1) <= event_time <= datetime.now(timezone.utc)


def test_the_user_agent_is_recorded_as_sent(traffic):
    assert traffic["outcomes"]["agent"]["answer"].status_code == 502
    assert one_record(traffic, "agent")["user_agent"] == "gov-test-agent/1.0"


@pytest.mark.parametrize(("case", "endpoint", "status", "phrase", "attempts"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_are_recorded_with_the_status_the_client_got(traffic, case, endpoint, status, phrase, attempts):
    if case == "status-429-limited":
        assert answer_of(traffic, "limited-first").status_code == 200
    response = answer_of(traffic, case)
    assert response.status_code == status, response.text
    record = one_record(traffic, case)
    assert record["status"] == status
    assert record["error"] is not None and phrase in record["error"]
    if status == 401:  # the body naming the endpoint is not read for an unauthenticated request
        assert record["principal_name"] is None and record["endpoint"] in (endpoint, None, "")
        return
    assert (record["endpoint"], record["tags"], record["principal_name"]) == (endpoint, tags_of(case), "admin")
    assert [(a["destination"], a["status"]) for a in record["attempts"]] == attempts
    if attempts:
        assert record["destination"] == attempts[-1][0]


# -- payload records ---------------------------------------------------------------------------------------


def _sent_text(surface: str, request: dict) -> str:
    if surface in ("openai_chat", "anthropic"):
        return request["messages"][0]["content"]
    if surface == "openai_responses":
        return request["input"]
    if surface == "openai_embeddings":
        return request["input"]
    contents = request["contents"]
    return (contents[0] if isinstance(contents, list) else contents)["parts"][0]["text"]


def _answered_text(surface: str, response: dict) -> str:
    """The text of a whole response in `surface`'s wire format, read through the SDK's own types."""
    if surface == "openai_chat":
        assert response["object"] == "chat.completion"
        return openai.types.chat.ChatCompletion.model_validate(response).choices[0].message.content
    if surface == "openai_responses":
        assert response["object"] == "response" and response["status"] == "completed"
        return openai.types.responses.Response.model_validate(response).output_text
    if surface == "anthropic":
        assert response["type"] == "message" and response["role"] == "assistant"
        message = anthropic.types.Message.model_validate(response)
        return "".join(b.text for b in message.content if b.type == "text")
    if surface == "gemini":
        return genai_types.GenerateContentResponse.model_validate(response).text
    raise AssertionError(surface)


@pytest.mark.parametrize(("surface", "endpoint", "stream"), CHAT_CASES, ids=[case_id(*c) for c in CHAT_CASES])
def test_payloads_hold_the_request_and_the_whole_response_streams_stitched(traffic, surface, endpoint, stream):
    case = case_id(surface, endpoint, stream)
    record = one_record(traffic, case)
    payload = traffic["payloads"].get(record["request_id"])
    assert payload is not None, f"{case}: no payload record"
    assert (payload["endpoint"], payload["status"], payload["principal_name"]) == (endpoint, 200, "admin")
    assert payload["request_marker"] is None and payload["response_marker"] is None
    request = json.loads(payload["request_body"])
    assert request.get("model", endpoint) == endpoint
    assert _sent_text(surface, request) == prompt_of(case)
    if stream and surface != "gemini":
        assert request["stream"] is True
    # A streamed answer is stored as one complete response in the client's wire format.
    assert _answered_text(surface, json.loads(payload["response_body"])) == f"echo: {prompt_of(case)}"


def test_payload_sampling_all_and_none(traffic):
    payloads = traffic["payloads"]
    for i in range(4):
        logged = one_record(traffic, f"sample-all-{i}")
        skipped = one_record(traffic, f"sample-none-{i}")
        assert logged["status"] == skipped["status"] == 200
        assert logged["request_id"] in payloads
        assert skipped["request_id"] not in payloads
        body = json.loads(payloads[logged["request_id"]]["response_body"])
        assert body["choices"][0]["message"]["content"] == "echo: count me"
    assert sum(p["endpoint"] == "sample-all" for p in payloads.values()) == 4
    assert sum(p["endpoint"] == "sample-none" for p in payloads.values()) == 0


def test_payload_size_caps_leave_markers(traffic):
    small = traffic["payloads"][one_record(traffic, "capped-small")["request_id"]]
    # The request fits the cap; the (indented) upstream answer does not.
    assert json.loads(small["request_body"])["messages"][0]["content"] == "tiny"
    assert small["request_marker"] is None
    assert (small["response_body"], small["response_marker"]) == (None, "MAX_RESPONSE_SIZE_EXCEEDED")
    assert len(traffic["outcomes"]["capped-small"]["answer"].content) > CAP_BYTES

    large = traffic["payloads"][one_record(traffic, "capped-large")["request_id"]]
    assert (large["request_body"], large["request_marker"]) == (None, "MAX_REQUEST_SIZE_EXCEEDED")
    assert (large["response_body"], large["response_marker"]) == (None, "MAX_RESPONSE_SIZE_EXCEEDED")
    assert large["status"] == 200


# -- metrics, CLI, export, admin API ------------------------------------------------------------------------

METERED = ("metered", "openai_compatible/meter")
METERED_ERR = ("metered-err", "openai_compatible/error-500")
METERED_IN, METERED_OUT = count_input_tokens(["count me"]), len("echo: count me".split())


def test_metrics_expose_the_counters(traffic, gateway):
    values = samples(metrics_text(gateway))

    def value(name: str, endpoint_destination: tuple[str, str], **labels: str) -> float | None:
        endpoint, destination = endpoint_destination
        return values.get((name, frozenset({"endpoint": endpoint, "destination": destination, **labels}.items())))

    assert value("aigw_requests_total", METERED, status_class="2xx") == 4
    assert value("aigw_requests_total", METERED, status_class="5xx") is None
    assert value("aigw_request_errors_total", METERED) == 0
    assert value("aigw_input_tokens_total", METERED) == 4 * METERED_IN
    assert value("aigw_output_tokens_total", METERED) == 4 * METERED_OUT
    assert value("aigw_request_duration_seconds_count", METERED) == 4
    assert value("aigw_request_duration_seconds_bucket", METERED, le="+Inf") == 4
    assert value("aigw_gateway_overhead_seconds_count", METERED) == 4
    # Two requests of the test itself and the user-agent one went to the failing destination.
    assert value("aigw_requests_total", METERED_ERR, status_class="5xx") == 3
    assert value("aigw_request_errors_total", METERED_ERR) == 3
    assert value("aigw_requests_total", ("rec-anthropic", label("rec-anthropic")), status_class="2xx") == sum(
        1 for _, endpoint, _ in TOKEN_CASES if endpoint == "rec-anthropic"
    )

    stored = sum(len(rows) for rows in traffic["records"].values())
    assert values[("aigw_records_written_total", frozenset())] >= stored + len(traffic["payloads"])
    assert values[("aigw_records_buffered", frozenset())] == 0
    assert values[("aigw_record_store_up", frozenset())] == 1
    assert values[("aigw_record_store_failures_total", frozenset())] == 0
    assert values[("aigw_records_spilled_total", frozenset())] == 0


def _cli_json(gateway: GatewayProcess, *args: str) -> Any:
    result = gateway.cli(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_usage_cli_json(traffic, gateway):
    with ThreadPoolExecutor(max_workers=2) as pool:  # each command takes a second to start
        one, grouped = pool.map(
            lambda args: _cli_json(gateway, *args),
            [("usage", "--endpoint", "metered", "--json"), ("usage", "--group-by", "endpoint", "--since", "1h", "--json")],
        )
    [row] = one["rows"]
    assert (row["requests"], row["errors"]) == (4, 0)
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
        4 * METERED_IN, 4 * METERED_OUT, 4 * (METERED_IN + METERED_OUT),
    )  # fmt: skip
    assert 0 < row["p50_latency_ms"] <= row["p95_latency_ms"] <= row["p99_latency_ms"]

    assert grouped["group_by"] == "endpoint"
    by_endpoint = {r["group"]: r for r in grouped["rows"]}
    assert (by_endpoint["metered-err"]["requests"], by_endpoint["metered-err"]["errors"]) == (3, 3)
    assert by_endpoint["metered"]["requests"] == 4
    # The same report from the admin API.
    response = requests.get(
        f"{gateway.url}/admin/v1/usage", params={"group_by": "endpoint"}, headers=admin_headers(gateway)
    )
    assert response.status_code == 200
    assert {r["group"]: r for r in response.json()["rows"]} == by_endpoint


def test_usage_export_reads_back_with_pyarrow(traffic, gateway, tmp_path):
    out = tmp_path / "export"
    result = gateway.cli("usage", "export", "--out", str(out))
    assert result.returncode == 0, result.stderr
    usage = pq.read_table(out / "usage.parquet").to_pylist()
    payloads = pq.read_table(out / "payloads.parquet").to_pylist()
    assert len(usage) == len(gateway.usage_records())
    assert len(payloads) == len(traffic["payloads"])

    case = case_id("anthropic", "rec-anthropic", True)
    [row] = [r for r in usage if dict(r["tags"] or []).get("case") == case]
    record = one_record(traffic, case)
    assert row["request_id"] == record["request_id"]
    assert dict(row["tags"]) == tags_of(case)
    assert [(a["destination"], a["status"]) for a in row["attempts"]] == [(label("rec-anthropic"), 200)]
    assert (row["input_tokens"], row["output_tokens"], row["streamed"]) == (
        record["input_tokens"], record["output_tokens"], True,
    )  # fmt: skip
    [payload] = [p for p in payloads if p["request_id"] == record["request_id"]]
    assert payload["response_body"] == traffic["payloads"][record["request_id"]]["response_body"]


def test_admin_api_is_for_admins_only(traffic, gateway):
    token = gateway.cli("tokens", "create", "--name", "viewer", "--principal", "viewer", "--create-principal")
    assert token.returncode == 0, token.stderr
    viewer = {"authorization": f"Bearer {token.stdout.strip()}"}
    for path in ("/admin/v1/usage", "/admin/v1/payloads"):
        refused = requests.get(gateway.url + path, headers=viewer)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "permission_error"
        assert set(refused.json()) == {"error"}  # no rows, no payloads
        assert requests.get(gateway.url + path).status_code == 401
        assert requests.get(gateway.url + path, headers=admin_headers(gateway)).status_code == 200
