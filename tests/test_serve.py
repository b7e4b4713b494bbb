"""`aigw serve` as a user meets it: first start, configuration errors, and the PostgreSQL store."""

from __future__ import annotations

import os
import subprocess
import textwrap

import openai
import pytest

from tests.gateway_process import AIGW, cleanup, start_gateway
from tests.store_fixtures import postgres_database  # noqa: F401  (a fixture)


def test_first_start_prints_an_admin_token_once_and_stores_only_its_hash():
    gateway = start_gateway()
    try:
        token = gateway.admin_token
        assert token.startswith("aigw_")
        client = openai.OpenAI(base_url=gateway.url + "/mlflow/v1", api_key=token, max_retries=0)
        reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Echo: hi"
        database = (gateway.data_dir / "aigw.db").read_bytes()
        assert token.encode() not in database and token.split("_", 2)[2].encode() not in database
        gateway.stop()

        again = subprocess.Popen([AIGW, "serve"], env=gateway.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            out, _ = again.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            again.terminate()
            out, _ = again.communicate(timeout=10)
        assert out == b""  # no second admin token
    finally:
        cleanup(gateway)


def run_serve(config: str, tmp_path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "aigw.yaml"
    path.write_text(textwrap.dedent(config))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}
    full_env.update({"AIGW_DATA_DIR": str(tmp_path / "data"), **(env or {})})
    return subprocess.run([AIGW, "serve", "--config", str(path), "--port", "1"], env=full_env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    "config, expected",
    [
        ("endpoints: [{name: x, destinations: [{provider: nope, model: m}]}]", "endpoints[0].destinations[0].provider: unknown provider 'nope'"),
        ("endpoints: [{name: x, destinations: [{provider: openai, model: m}]}]", "endpoints[0].destinations[0].api_key"),
        ("endpoints: [{name: x, destinations: [{provider: openai_compatible, model: m}]}]", "endpoints[0].destinations[0].base_url"),
        ("endpoints: [{name: x, destinations: [{provider: demo}]}]", "endpoints[0].destinations[0]: Object missing required field `model`"),
        ("endpoints: [{name: x, task: chat, destinations: [{provider: demo, model: m, colour: red}]}]", "Object contains unknown field `colour`"),
        ("endpoints: [{name: x, task: images, destinations: [{provider: demo, model: m}]}]", "endpoints[0].task"),
        ("server: {port: eighty}", "server.port: Expected `int`, got `str`"),
        ("server: {request_body_timeout: 0}", "server.request_body_timeout: must be positive"),
        ("server: {max_connections: 0}", "server.max_connections: must be at least 1"),
        ("endpoints: [{name: a, destinations: [{provider: demo, model: m}]}, {name: a, destinations: [{provider: demo, model: m}]}]", "duplicate endpoint name 'a'"),
        ("endpoints: [{name: a, destinations: []}]", "endpoints[0].destinations: at least one destination"),
        ("endpoints: [{name: a, task: embeddings, destinations: [{provider: anthropic, model: m, api_key: k}]}]", "does not support task(s) embeddings"),
        ("endpoints: [{name: a, destinations: [{provider: openai, model: m, api_key: '${NOT_SET_ANYWHERE}'}]}]", "endpoints[0].destinations[0].api_key: environment variable NOT_SET_ANYWHERE is not set"),
        ("endpoints: [{name: a\n", "not valid YAML"),
    ],
)
def test_config_errors_name_the_file_and_key_and_stop_the_start(tmp_path, config, expected):
    result = run_serve(config, tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path / 'aigw.yaml'}: " in result.stderr
    assert expected in result.stderr, result.stderr


def test_the_readme_minimal_config_works(fake_upstream):
    config = f"""
endpoints:
  - name: chat
    task: chat
    destinations:
      - provider: openai_compatible
        model: llama-3.1-8b
        base_url: {fake_upstream.url}/v1
        api_key: ${{UPSTREAM_KEY}}
"""
    gateway = start_gateway(config, env={"UPSTREAM_KEY": "k-123"})
    try:
        client = openai.OpenAI(base_url=gateway.url + "/mlflow/v1", api_key=gateway.admin_token, max_retries=0)
        fake_upstream.clear()
        reply = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "echo: hi"
        assert fake_upstream.requests[-1]["headers"]["authorization"] == "Bearer k-123"
    finally:
        cleanup(gateway)


def test_gateway_on_postgresql(postgres_database):  # noqa: F811
    """Two gateway processes sharing one PostgreSQL store: one admin token, shared tokens."""
    env = {"AIGW_DATABASE_URL": postgres_database}
    first = start_gateway(env=env)
    second = start_gateway(env=env)
    try:
        assert first.admin_token.startswith("aigw_") and second.admin_token == ""
        created = second.cli("tokens", "create", "--name", "pg-user")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        for gateway in (first, second):
            client = openai.OpenAI(base_url=gateway.url + "/mlflow/v1", api_key=token, max_retries=0)
            assert client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "pg"}]).choices
        listed = first.cli("tokens", "list")
        assert "pg-user" in listed.stdout and token not in listed.stdout
    finally:
        cleanup(first)
        cleanup(second)
