"""HTTPS: the gateway serves TLS with the operator's certificate; clients that verify it work (the
official OpenAI SDK included), clients that don't trust it are refused in the handshake, ALPN
settles HTTP/2-preferring clients on HTTP/1.1, and a bad certificate stops the start in one line."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests

from tests.gateway_process import AIGW, GatewayProcess, cleanup, start_gateway


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=aigw test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", "san.ext", "-out", "server.pem", cwd=d)  # fmt: skip
    return d


@pytest.fixture(scope="module")
def gateway(pki: Path) -> Iterator[GatewayProcess]:
    env = {"AIGW_TLS_CERT": str(pki / "server.pem"), "AIGW_TLS_KEY": str(pki / "server.key")}
    process = start_gateway(env=env, tls_ca=pki / "ca.pem")
    yield process
    cleanup(process)


def test_the_openai_sdk_verifies_the_certificate_and_gets_answers(gateway: GatewayProcess, pki: Path) -> None:
    trusted = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    client = openai.OpenAI(
        base_url=f"{gateway.url}/mlflow/v1", api_key=gateway.admin_token,
        http_client=openai.DefaultHttpxClient(verify=trusted), max_retries=0,
    )  # fmt: skip
    reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "over TLS"}])
    assert reply.choices[0].message.content and gateway.url.startswith("https://")
    stream = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_a_client_that_does_not_trust_the_certificate_is_refused(gateway: GatewayProcess) -> None:
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(f"{gateway.url}/health", timeout=10)  # the system's trust store: not our CA
    with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP to the TLS port: no HTTP answer
        requests.get(gateway.url.replace("https://", "http://") + "/health", timeout=10)


def test_alpn_settles_http2_clients_on_http11(gateway: GatewayProcess, pki: Path) -> None:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.set_alpn_protocols(["h2", "http/1.1"])
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_a_bad_certificate_stops_the_start_in_one_line(pki: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")} | {"AIGW_DATA_DIR": str(tmp_path)}
    mismatched = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "ca.key")]
    for args, message in [
        (mismatched, "cannot load the certificate and key"),
        (["--tls-cert", str(pki / "server.pem"), "--tls-key", str(tmp_path / "missing.key")], "missing.key: no such file"),
        (["--tls-cert", str(pki / "server.pem")], "give both --tls-cert and --tls-key"),
    ]:
        result = subprocess.run([AIGW, "serve", "--port", "1", *args], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and "listening" not in result.stderr
