"""Browser apps (CORS on allowed origins only) and compressed request bodies (gzip and deflate
decoded with the size limit applied after decompression; other codings 415), against a real gateway."""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Iterator

import orjson
import pytest
import requests

from tests.gateway_process import GatewayProcess, cleanup, start_gateway

APP = "https://app.example.com"
CONFIG = f"""
server:
  cors_origins: ["{APP}", "http://localhost:5173"]
  max_request_bytes: 1048576
"""
CHAT = orjson.dumps({"model": "demo", "messages": [{"role": "user", "content": "compressed hello"}]})


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    process = start_gateway(CONFIG)
    yield process
    cleanup(process)


def _auth(gateway: GatewayProcess, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {gateway.admin_token}", "content-type": "application/json", **headers}


def test_a_preflight_from_an_allowed_origin_is_answered(gateway: GatewayProcess) -> None:
    response = requests.options(
        f"{gateway.url}/mlflow/v1/chat/completions",
        headers={"origin": APP, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, x-stainless-os"},
        timeout=10,
    )  # fmt: skip
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP and response.headers["vary"] == "origin"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
    assert response.headers["access-control-max-age"] == "600"


def test_a_preflight_from_another_origin_gets_no_cors_headers(gateway: GatewayProcess) -> None:
    response = requests.options(
        f"{gateway.url}/mlflow/v1/chat/completions",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"}, timeout=10,
    )  # fmt: skip
    assert response.status_code == 204 and "access-control-allow-origin" not in response.headers


def test_answers_to_an_allowed_origin_carry_cors_headers_streams_and_errors_included(gateway: GatewayProcess) -> None:
    url = f"{gateway.url}/mlflow/v1/chat/completions"
    ok = requests.post(url, data=CHAT, headers=_auth(gateway, origin=APP), timeout=10)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP
    assert "retry-after" in ok.headers["access-control-expose-headers"]
    streamed = requests.post(url, data=orjson.dumps({**orjson.loads(CHAT), "stream": True}), headers=_auth(gateway, origin=APP), timeout=10)
    assert streamed.headers["access-control-allow-origin"] == APP and "data: [DONE]" in streamed.text
    refused = requests.post(url, data=CHAT, headers={"origin": APP, "content-type": "application/json"}, timeout=10)
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP
    other = requests.post(url, data=CHAT, headers=_auth(gateway, origin="https://evil.example"), timeout=10)
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    plain = requests.post(url, data=CHAT, headers=_auth(gateway), timeout=10)
    assert "access-control-allow-origin" not in plain.headers


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda data: _raw_deflate(data)),
    ("gzip, identity", gzip.compress),
])  # fmt: skip
def test_compressed_bodies_are_decoded(gateway: GatewayProcess, encoding: str, compress) -> None:  # type: ignore[no-untyped-def]
    response = requests.post(
        f"{gateway.url}/mlflow/v1/chat/completions", data=compress(CHAT), headers=_auth(gateway, **{"content-encoding": encoding}), timeout=10
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert "compressed hello" in response.json()["choices"][0]["message"]["content"]


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


def test_a_zip_bomb_is_refused_after_the_limit_not_inflated(gateway: GatewayProcess) -> None:
    bomb = gzip.compress(b'{"model": "demo", "messages": [], "x": "' + b"0" * (512 * 1024 * 1024))  # 512 MiB -> ~500 KiB
    assert len(bomb) < 1024 * 1024
    started = time.monotonic()
    response = requests.post(
        f"{gateway.url}/mlflow/v1/chat/completions", data=bomb, headers=_auth(gateway, **{"content-encoding": "gzip"}), timeout=30
    )  # fmt: skip
    assert response.status_code == 413 and response.json()["error"]["type"] == "invalid_request_error"
    assert time.monotonic() - started < 5
    assert requests.get(f"{gateway.url}/health", timeout=5).status_code == 200


def test_unsupported_and_broken_encodings_get_4xx_in_the_surface_shape(gateway: GatewayProcess) -> None:
    brotli = requests.post(
        f"{gateway.url}/anthropic/v1/messages", data=b"\x0b\x02\x80", headers=_auth(gateway, **{"content-encoding": "br"}), timeout=10
    )  # fmt: skip
    assert brotli.status_code == 415 and brotli.json()["type"] == "error" and "br" in brotli.json()["error"]["message"]
    broken = requests.post(
        f"{gateway.url}/mlflow/v1/chat/completions", data=b"not gzip at all", headers=_auth(gateway, **{"content-encoding": "gzip"}), timeout=10
    )  # fmt: skip
    assert broken.status_code == 400 and "not valid gzip" in broken.json()["error"]["message"]
    truncated = requests.post(
        f"{gateway.url}/mlflow/v1/chat/completions", data=gzip.compress(CHAT)[:-12], headers=_auth(gateway, **{"content-encoding": "gzip"}), timeout=10
    )  # fmt: skip
    assert truncated.status_code == 400, truncated.text


def test_cors_origins_are_checked_at_start() -> None:
    from aigw.config import ConfigError, Settings, _check_store  # noqa: PLC2701

    import msgspec

    settings = msgspec.convert({"server": {"cors_origins": ["app.example.com"]}}, Settings)
    with pytest.raises(ConfigError, match="cors_origins\\[0\\]: 'app.example.com' is not an origin"):
        _check_store(settings, "aigw.yaml")


def test_head_is_get_without_a_body_and_doubled_slashes_are_one(gateway: GatewayProcess) -> None:
    auth = _auth(gateway)
    got = requests.get(f"{gateway.url}/mlflow/v1/models", headers=auth, timeout=10)
    head = requests.head(f"{gateway.url}/mlflow/v1/models", headers=auth, timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
    doubled = requests.post(f"{gateway.url}//mlflow//v1/chat/completions", data=CHAT, headers=auth, timeout=10)
    assert doubled.status_code == 200 and "compressed hello" in doubled.json()["choices"][0]["message"]["content"]
    gemini = requests.post(
        f"{gateway.url}/gemini//v1beta/models/demo:generateContent", json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers=auth, timeout=10,
    )  # fmt: skip
    assert gemini.status_code == 200, gemini.text
