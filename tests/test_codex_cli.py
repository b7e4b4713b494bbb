"""Codex CLI (`codex exec`, the real CLI) end to end through the gateway's /codex/v1 surface, to
destinations without the Responses API: its `namespace` tools reach the provider flattened, the
provider's model calls one by its flat name, Codex runs the namespaced tool and sends the call back
in namespace form, and the provider sees the same flat name in the history.

The fake upstream is steered by a directive in the prompt (tests/fakes/scenario.py): it answers
`[[tool multi_agent_v1__close_agent {"target": "agent_x"}]]` with that call. Codex runs its real
close_agent, which refuses the id ("invalid agent id agent_x"), sends that back as the call's output,
and the fake answers `tool said: <output>`.

What Codex CLI 0.171.0 sends (recorded with a local server in OpenAI's place; a trimmed copy is
tests/golden/openai_responses/decode_codex_namespace.in.json):

* `POST {base_url}/responses`, `"stream": true`, `store: false`, `include:
  ["reasoning.encrypted_content"]`, `prompt_cache_key`, `client_metadata`, headers `originator:
  codex_exec`, `session-id`, `thread-id`, `x-codex-turn-metadata`, `accept-encoding: zstd,gzip`.
  No other request in a one-call run.
* For `gpt-5.1-codex` the tools are exec_command, write_stdin, request_user_input, view_image, a
  `namespace` `multi_agent_v1` ("Tools for spawning and managing sub-agents.") holding close_agent,
  resume_agent, send_input, spawn_agent and wait_agent, then get_goal, create_goal, update_goal and a
  hosted `web_search`. (Other model names get other sets: `gpt-5.5` gets no namespace but a
  client-run `tool_search`; `--enable multi_agent_v2` makes the namespace `collaboration`.)
* A call to a namespace's function is expected as `{"type": "function_call", "name":
  "close_agent", "namespace": "multi_agent_v1", ...}` and sent back exactly so on the next turn,
  with its `id` and `status`, followed by the `function_call_output`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROVIDER_DESTINATIONS, SECRETS
from tests.gateway_process import GatewayProcess, cleanup, start_gateway

CODEX_VERSION = "0.171.0"  # keep in step with .ci/run, which installs it
CODEX = Path(__file__).resolve().parents[1] / ".ci" / "codex" / "node_modules" / ".bin" / "codex"
MODEL = "gpt-5.1-codex"  # a model name Codex gives the multi_agent_v1 namespace
PROVIDERS = ["anthropic", "gemini", "compat"]
NAMESPACED = [f"multi_agent_v1__{n}" for n in ("close_agent", "resume_agent", "send_input", "spawn_agent", "wait_agent")]
RUN_TIMEOUT = 90


@pytest.fixture(scope="module")
def codex() -> Path:
    """The pinned Codex CLI binary; under CI=true its absence fails instead of skipping."""
    problem = None
    if not os.access(CODEX, os.X_OK):
        problem = f"Codex CLI is not installed at {CODEX}"
    else:
        version = subprocess.run([str(CODEX), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        if version != f"codex-cli {CODEX_VERSION}":
            problem = f"{CODEX} is {version!r}, not Codex CLI {CODEX_VERSION}"
    if problem:
        problem += ": `bash .ci/run` installs it (npm install --prefix .ci/codex @openai/codex)"
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return CODEX


@pytest.fixture(scope="module", params=PROVIDERS)
def provider_gateway(request, fake_upstream) -> Iterator[tuple[str, GatewayProcess]]:
    """A gateway whose endpoint is named like the Codex model, routed to one provider."""
    destination = {k: v.replace("{fake}", fake_upstream.url) for k, v in PROVIDER_DESTINATIONS[request.param].items()}
    config = {"endpoints": [{"name": MODEL, "task": ["chat"], "destinations": [destination]}]}
    process = start_gateway(yaml.safe_dump(config, sort_keys=False), env=SECRETS)
    try:
        yield request.param, process
    finally:
        cleanup(process)


def run_codex(codex: Path, base_url: str, token: str, prompt: str, tmp: Path) -> subprocess.CompletedProcess:
    home, work = tmp / "codex-home", tmp / "work"
    for d in (home, work):
        d.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'model = "{MODEL}"\nmodel_provider = "aigw"\n\n[model_providers.aigw]\nname = "aigw"\n'
        f'base_url = "{base_url}"\nenv_key = "AIGW_TOKEN"\nwire_api = "responses"\n'
    )
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "CODEX_HOME": str(home), "AIGW_TOKEN": token, "LANG": "C.UTF-8"}
    args = [str(codex), "exec", "--skip-git-repo-check", "--sandbox", "read-only", prompt]
    try:
        return subprocess.run(args, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (exc.stdout, exc.stderr))
        pytest.fail(f"codex exec did not finish in {RUN_TIMEOUT}s\nstdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}")


def tool_names(provider: str, body: dict) -> list[str]:
    if provider == "compat":
        return [t["function"]["name"] for t in body["tools"]]
    if provider == "anthropic":
        return [t["name"] for t in body["tools"]]
    return [d["name"] for t in body["tools"] for d in t["functionDeclarations"]]


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
    proc = run_codex(codex, gateway.url + "/codex/v1", gateway.admin_token, prompt, tmp_path)
    recorded = [r for r in fake_upstream.requests if "multi_agent_v1__close_agent" in json.dumps(r["json"])]
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}\ngateway:\n{gateway.log()[-3000:]}"
    assert proc.returncode == 0, report
    assert "tool said: invalid agent id agent_x" in proc.stdout, report  # Codex ran its own close_agent
    assert len(recorded) == 2, report
    first, second = (r["json"] for r in recorded)
    names = tool_names(provider, first)
    assert [n for n in names if n.startswith("multi_agent_v1")] == NAMESPACED and "web_search" not in names, names
    call, result = last_call_and_result(provider, second)
    assert call == "multi_agent_v1__close_agent" and result.startswith("invalid agent id agent_x"), second
    assert tool_names(provider, second) == names
