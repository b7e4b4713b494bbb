"""The gateway's log: a start-up summary, an access line per request (never a body or a secret),
warnings for upstream failures and fallbacks, as text or JSON lines; --log-level filters."""

from __future__ import annotations

import socket
import time

import orjson
import requests

from tests.gateway_process import cleanup, start_gateway

PROVIDER_KEY = "sk-provider-secret-4f1c"
BODY_TEXT = "a sentence that must never reach a log"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = f"""
endpoints:
  - name: chat
    destinations:
      - {{provider: openai_compatible, model: m, base_url: "http://127.0.0.1:{_closed_port()}/v1", api_key: "{PROVIDER_KEY}"}}
    fallbacks:
      - {{provider: demo, model: demo-fallback}}
"""


def _traffic(url: str, token: str) -> None:
    chat = {"model": "chat", "messages": [{"role": "user", "content": BODY_TEXT}]}
    answer = requests.post(f"{url}/mlflow/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert requests.post(f"{url}/mlflow/v1/chat/completions", json=chat, timeout=10).status_code == 401
    assert requests.get(f"{url}/gemini/v1beta/nothing?key=query-secret-9d2e", timeout=10).status_code == 404
    requests.get(f"{url}/health", timeout=10)


def _wait_for(gateway, text: str) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while text not in (log := gateway.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return log


def test_json_lines_access_log_and_upstream_warnings_without_secrets() -> None:
    gateway = start_gateway(CONFIG, env={"AIGW_LOG_FORMAT": "json"})
    try:
        _traffic(gateway.url, gateway.admin_token)
        log = _wait_for(gateway, "/gemini/v1beta/nothing")
    finally:
        cleanup(gateway)
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert len(lines) == len(log.strip().splitlines()), log  # every line is JSON
    (summary,) = [e for e in lines if e["message"].startswith("aigw listening on http://127.0.0.1:")]
    assert summary["store"].startswith("SQLite ") and summary["endpoints"] == "chat,demo"
    access = [e for e in lines if e["logger"] == "aigw.access"]
    assert [(e["method"], e["path"], e["status"]) for e in access] == [
        ("POST", "/mlflow/v1/chat/completions", 200),
        ("POST", "/mlflow/v1/chat/completions", 401),
        ("GET", "/gemini/v1beta/nothing", 404),
    ]  # /health is not logged
    served = access[0]
    assert served["endpoint"] == "chat" and served["principal"] == "admin" and served["attempts"] == 2
    assert served["destination"] == "demo/demo-fallback" and served["request_id"] and served["latency_ms"] > 0
    (warning,) = [e for e in lines if e["logger"] == "aigw.routing"]
    assert warning["level"] == "warning" and "openai_compatible/m" in warning["message"] and "chat" in warning["message"]
    for secret in (gateway.admin_token, gateway.admin_token.split("_")[-1], PROVIDER_KEY, "query-secret-9d2e", BODY_TEXT):
        assert secret not in log


def test_text_log_and_level() -> None:
    gateway = start_gateway(CONFIG, env={"AIGW_LOG_LEVEL": "warning"})
    try:
        _traffic(gateway.url, gateway.admin_token)
        log = _wait_for(gateway, "upstream failure")
    finally:
        cleanup(gateway)
    assert "aigw.access" not in log and "listening" not in log  # info lines filtered out
    assert " WARNING aigw.routing: upstream failure on endpoint 'chat'" in log
    quiet = start_gateway(CONFIG)
    try:
        requests.get(f"{quiet.url}/mlflow/v1/models", headers={"authorization": f"Bearer {quiet.admin_token}"}, timeout=10)
        log = _wait_for(quiet, "/mlflow/v1/models")
    finally:
        cleanup(quiet)
    assert " INFO aigw: aigw listening on http://127.0.0.1:" in log and 'store="SQLite ' in log
    assert " INFO aigw.access: request method=GET path=/mlflow/v1/models status=200" in log
