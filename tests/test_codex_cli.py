"""Codex CLI (`codex exec`, the real CLI) end to end through the gateway's /codex/v1 surface:

* a shell command, once per provider kind behind it: `openai` (the Responses API passed through) and
  `anthropic`, `gemini`, `compat` (translated to their chat APIs). The fake upstream is steered by a
  directive in the prompt (tests/fakes/scenario.py): it answers `[[tool exec_command {"cmd": "echo
  <marker>"}]]` with a real call of Codex's shell tool, Codex runs it and sends the output back as a
  function_call_output, and the fake answers `tool said: <output>`;
* its `namespace` tools, to destinations without the Responses API: they reach the provider
  flattened, the provider's model calls one by its flat name (`[[tool multi_agent_v1__close_agent
  {"target": "agent_x"}]]`), Codex runs its real close_agent, which refuses the id ("invalid agent id
  agent_x"), sends the call back in namespace form, and the provider sees the same flat name in the
  history;
* the README's model catalog, which silences Codex's warning about a model it has no metadata for.

What Codex CLI 0.171.0 sends (recorded with a local server in OpenAI's place; a trimmed copy is
tests/golden/openai_responses/decode_codex_namespace.in.json):

* `POST {base_url}/responses`, `"stream": true`, `store: false`, `include:
  ["reasoning.encrypted_content"]`, `prompt_cache_key`, `client_metadata`, headers `originator:
  codex_exec`, `session-id`, `thread-id`, `x-codex-turn-metadata`, `accept-encoding: zstd,gzip`,
  `authorization: Bearer $AIGW_TOKEN`; the whole conversation in `input` on every turn (no
  previous_response_id). No other request in a one-call run.
* For `gpt-5.1-codex` the tools are exec_command, write_stdin, request_user_input, view_image, a
  `namespace` `multi_agent_v1` ("Tools for spawning and managing sub-agents.") holding close_agent,
  resume_agent, send_input, spawn_agent and wait_agent, then get_goal, create_goal, update_goal and a
  hosted `web_search`. (Other model names get other sets: `gpt-5.5` gets no namespace but a
  client-run `tool_search`; `--enable multi_agent_v2` makes the namespace `collaboration`; a name
  Codex does not know gets its fallback set, with no namespace.)
* A call to a namespace's function is expected as `{"type": "function_call", "name":
  "close_agent", "namespace": "multi_agent_v1", ...}` and sent back exactly so on the next turn,
  with its `id` and `status`, followed by the `function_call_output`.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from collections.abc import Iterator

import pytest
import yaml

from tests.conftest import PROVIDER_DESTINATIONS, SECRETS
from tests.expected import upstream_tool_names
from tests.gateway_process import GatewayProcess, cleanup, start_gateway
from tests.pinned_cli import require_cli

CODEX_VERSION = "0.171.0"  # keep in step with .ci/run, which installs it
CODEX = Path(__file__).resolve().parents[1] / ".ci" / "codex" / "node_modules" / ".bin" / "codex"
PROVIDERS = ["openai", "anthropic", "gemini", "compat"]
UPSTREAM_PATHS = {
    "openai": ("/v1/responses",),
    "anthropic": ("/v1/messages",),
    "compat": ("/v1/chat/completions",),
    "gemini": (":streamGenerateContent", ":generateContent"),
}
NAMESPACED_MODEL = "gpt-5.1-codex"  # a model name Codex gives the multi_agent_v1 namespace
NAMESPACED = [f"multi_agent_v1__{n}" for n in ("close_agent", "resume_agent", "send_input", "spawn_agent", "wait_agent")]
RUN_TIMEOUT = 120


@pytest.fixture(scope="module")
def codex() -> Path:
    return require_cli(CODEX, f"codex-cli {CODEX_VERSION}", "npm install --prefix .ci/codex @openai/codex")


def run_codex(codex: Path, base_url: str, token: str, model: str, prompt: str, tmp: Path, config: str = "") -> subprocess.CompletedProcess:
    """`codex exec --json prompt` with a fresh CODEX_HOME whose only provider is the gateway."""
    home, work = tmp / "codex-home", tmp / "work"
    for d in (home, work):
        d.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "aigw"\n{config}\n'
        "[model_providers.aigw]\n"
        f'name = "aigw"\nbase_url = "{base_url}"\nenv_key = "AIGW_TOKEN"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 0\n"
    )
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp),
        "CODEX_HOME": str(home),
        "AIGW_TOKEN": token,
        "LANG": "C.UTF-8",
    }
    args = [
        str(codex), "exec", "--json", "--skip-git-repo-check", "--ephemeral",
        "--dangerously-bypass-approvals-and-sandbox", "-C", str(work), prompt,
    ]  # fmt: skip
    try:
        return subprocess.run(args, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (exc.stdout, exc.stderr))
        pytest.fail(f"codex exec did not finish in {RUN_TIMEOUT}s\nstdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}")


def events(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def describe(proc: subprocess.CompletedProcess, gateway=None) -> str:
    parts = [f"exit {proc.returncode}", f"stdout:\n{proc.stdout[-4000:]}", f"stderr:\n{proc.stderr[-4000:]}"]
    if gateway is not None:
        parts.append(f"gateway log (tail):\n{gateway.log()[-4000:]}")
    return "\n".join(parts)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_codex_runs_a_shell_command_through_the_gateway(codex, gateway, fake_upstream, tmp_path, provider):
    marker = f"aigw-codex-{provider}-{uuid.uuid4().hex[:8]}"
    prompt = f'Print the marker. [[tool exec_command {json.dumps({"cmd": f"echo {marker}"})}]]'
    proc = run_codex(codex, gateway.url + "/codex/v1", gateway.admin_token, provider, prompt, tmp_path)
    report = describe(proc, gateway)
    assert proc.returncode == 0, report
    seen = events(proc)
    commands = [e["item"] for e in seen if e.get("type") == "item.completed" and e["item"].get("type") == "command_execution"]
    assert commands and marker in commands[0].get("aggregated_output", ""), report
    messages = [e["item"]["text"] for e in seen if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
    assert messages and "tool said: " in messages[-1] and marker in messages[-1], report
    assert metadata_warnings(seen), report  # what the README's model catalog silences

    recorded = [r for r in fake_upstream.requests if marker in json.dumps(r["json"])]
    assert len(recorded) >= 2 and all(r["path"].endswith(UPSTREAM_PATHS[provider]) for r in recorded), report
    upstream_model = PROVIDER_DESTINATIONS[provider]["model"]
    for r in recorded:
        assert r["json"].get("model") == upstream_model or f"/models/{upstream_model}:" in r["path"], report
        assert gateway.admin_token not in json.dumps(r["headers"]), "the gateway token went upstream"


def metadata_warnings(seen: list[dict]) -> list[str]:
    return [
        e["item"]["message"] for e in seen
        if e.get("type") == "item.completed" and e["item"].get("type") == "error" and "Model metadata for" in e["item"]["message"]
    ]  # fmt: skip


def test_a_model_catalog_silences_the_unknown_model_warning(codex, gateway, tmp_path):
    """The README's recipe, as written there: Codex's bundled catalog plus its first model copied
    under the endpoint's name, named by `model_catalog_json`."""
    bundled = subprocess.run([str(codex), "debug", "models", "--bundled"], capture_output=True, text=True, timeout=60, env={
        "PATH": os.environ.get("PATH", os.defpath), "HOME": str(tmp_path), "CODEX_HOME": str(tmp_path),
    })  # fmt: skip
    catalog = json.loads(bundled.stdout)
    catalog["models"].append(dict(catalog["models"][0], slug="demo", display_name="demo", context_window=200000))
    (tmp_path / "aigw-models.json").write_text(json.dumps(catalog))
    config = f'model_catalog_json = "{tmp_path / "aigw-models.json"}"'
    proc = run_codex(codex, gateway.url + "/codex/v1", gateway.admin_token, "demo", "Say hello", tmp_path, config)
    seen = events(proc)
    assert proc.returncode == 0 and any(e.get("type") == "turn.completed" for e in seen), describe(proc, gateway)
    assert not metadata_warnings(seen), describe(proc, gateway)


# -- namespace tools --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["anthropic", "gemini", "compat"])
def provider_gateway(request, fake_upstream) -> Iterator[tuple[str, GatewayProcess]]:
    """A gateway whose endpoint is named like the Codex model, routed to one provider."""
    destination = {k: v.replace("{fake}", fake_upstream.url) for k, v in PROVIDER_DESTINATIONS[request.param].items()}
    config = {"endpoints": [{"name": NAMESPACED_MODEL, "task": ["chat"], "destinations": [destination]}]}
    process = start_gateway(yaml.safe_dump(config, sort_keys=False), env=SECRETS)
    try:
        yield request.param, process
    finally:
        cleanup(process)


def last_call_and_result(provider: str, body: dict) -> tuple[str, str]:
    """The name of the last assistant turn's call, and the text of the result that follows it."""
    if provider == "compat":
        return body["messages"][-2]["tool_calls"][0]["function"]["name"], body["messages"][-1]["content"]
    if provider == "anthropic":
        return body["messages"][-2]["content"][0]["name"], body["messages"][-1]["content"][0]["content"]
    response = body["contents"][-1]["parts"][0]["functionResponse"]
    return body["contents"][-2]["parts"][0]["functionCall"]["name"], response["response"]["result"]


def test_codex_runs_a_namespaced_tool_through_a_translated_destination(codex, provider_gateway, fake_upstream, tmp_path):
    provider, gateway = provider_gateway
    fake_upstream.clear()
    prompt = 'Close the agent. [[tool multi_agent_v1__close_agent {"target": "agent_x"}]]'
    proc = run_codex(codex, gateway.url + "/codex/v1", gateway.admin_token, NAMESPACED_MODEL, prompt, tmp_path)
    recorded = [r for r in fake_upstream.requests if "multi_agent_v1__close_agent" in json.dumps(r["json"])]
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}\ngateway:\n{gateway.log()[-3000:]}"
    assert proc.returncode == 0, report
    assert "tool said: invalid agent id agent_x" in proc.stdout, report  # Codex ran its own close_agent
    assert len(recorded) == 2, report
    first, second = (r["json"] for r in recorded)
    names = upstream_tool_names(provider, first)
    assert [n for n in names if n.startswith("multi_agent_v1")] == NAMESPACED and "web_search" not in names, names
    call, result = last_call_and_result(provider, second)
    assert call == "multi_agent_v1__close_agent" and result.startswith("invalid agent id agent_x"), second
    assert upstream_tool_names(provider, second) == names
