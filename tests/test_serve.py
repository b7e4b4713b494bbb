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
        created = second.cli("tokens", "create", "--name", "pg-user", "--create-principal")
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


def test_cli_refuses_bad_ports_and_unusable_stores_in_one_line(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}

    def aigw(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([AIGW, *args], env=env | extra, capture_output=True, text=True, timeout=60)

    bad_port = aigw("serve", "--port", "99999", AIGW_DATA_DIR=str(tmp_path))
    assert bad_port.returncode == 2 and "99999 is not in the range 1<=x<=65535" in bad_port.stderr
    bad_env_port = aigw("serve", AIGW_PORT="99999", AIGW_DATA_DIR=str(tmp_path))
    assert bad_env_port.returncode == 2 and "server.port: must be between 1 and 65535" in bad_env_port.stderr
    for result, message in [
        (aigw("tokens", "list", AIGW_DATA_DIR="/proc/aigw-test"), "data directory /proc/aigw-test"),
        (aigw("serve", AIGW_DATA_DIR="/proc/aigw-test"), "data directory /proc/aigw-test"),
        (aigw("tokens", "list", AIGW_DATABASE_URL="postgresql://postgres@127.0.0.1:1/x"), "cannot open the database: connection failed"),
        (aigw("users", "list", AIGW_DATABASE_URL="mysql://x/y"), "database_url: must be a sqlite:/// or postgresql:// URL"),
    ]:
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert aigw("-h").stdout.startswith("Usage: aigw") and aigw("tokens", "-h").returncode == 0


def test_config_check_and_admin_commands_without_provider_keys(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_") and k != "AIGW_TEST_UNSET_KEY"}
    config = tmp_path / "aigw.yaml"
    config.write_text(textwrap.dedent("""\
        endpoints:
          - name: gpt
            destinations: [{provider: openai, model: gpt-4o, api_key: "${AIGW_TEST_UNSET_KEY}"}]
    """))

    def aigw(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([AIGW, *args], env=env | {"AIGW_DATA_DIR": str(tmp_path)} | extra, capture_output=True, text=True, timeout=60)

    missing = aigw("config", "check", str(config))
    assert missing.returncode == 2 and "environment variable AIGW_TEST_UNSET_KEY is not set" in missing.stderr
    ok = aigw("config", "check", str(config), AIGW_TEST_UNSET_KEY="sk-x")
    assert ok.returncode == 0 and "ok (2 endpoints: gpt, demo" in ok.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: {port: 0}\n")
    assert "server.port: must be between 1 and 65535" in aigw("config", "check", str(broken)).stderr
    # Administration never calls a provider: it runs without the provider's key.
    users = aigw("users", "create", "alice", AIGW_CONFIG=str(config))
    assert users.returncode == 0, users.stderr
    grant = aigw("grants", "add", "gpt", "--user", "alice", AIGW_CONFIG=str(config))
    assert grant.returncode == 0, grant.stderr


def test_listening_is_said_only_once_the_port_is_bound(tmp_path) -> None:
    import socket

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")} | {"AIGW_DATA_DIR": str(tmp_path)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([AIGW, "serve", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "listening on" not in result.stderr
