"""Claude Code (`claude -p`, the real CLI) end to end through the gateway's Anthropic surface, once
per provider kind behind it: `anthropic` (pass-through), `openai`, `compat`, `gemini` (translated).

The fake upstream is steered by a directive in the prompt (tests/fakes/scenario.py): it answers
`[[tool Bash {"command": "echo <marker>"}]]` with a real Bash tool call, Claude Code runs it and
sends the output back as a tool_result, and the fake answers `tool said: <marker>`.

What Claude Code 2.1.330 sends (observed against the fake upstream, ANTHROPIC_BASE_URL=<root>):

* Transport: `POST {ANTHROPIC_BASE_URL}/v1/messages?beta=true`, always `"stream": true` (SSE back),
  plain JSON body (not compressed), `accept-encoding: gzip, deflate, br, zstd`, keep-alive.
  With `-p` and CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 a one-tool-call run makes exactly two
  requests, both to /v1/messages: no count_tokens, no GET /v1/models, no haiku title call, and no
  connection to anything but the base URL (checked with strace). Without that variable it also
  sends `HEAD {ANTHROPIC_BASE_URL}/api/hello` (a connectivity probe; a 404 is harmless) and does a
  DNS lookup for an outside host.
* Headers: `authorization: Bearer <ANTHROPIC_AUTH_TOKEN>` (no x-api-key), `anthropic-version:
  2023-06-01`, `anthropic-beta: claude-code-20250219,interleaved-thinking-2025-05-14,
  context-management-2025-06-27,[mid-conversation-tool-changes-2026-07-01,]thinking-token-count-
  2026-05-13,advanced-tool-use-2025-11-20[,effort-2025-11-24]`, `anthropic-dangerous-direct-
  browser-access: true`, `x-app: cli`, `user-agent: claude-cli/2.1.330 (external, sdk-cli)`,
  `x-claude-code-session-id`, `x-stainless-*` (retry-count, timeout 600, ...).
* Body keys: model, messages, system, tools, metadata, max_tokens (32000), thinking,
  context_management `{"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}`, stream,
  and for unknown models also output_config `{"effort": "high"}`. metadata.user_id is a JSON
  *string* `{"device_id": ..., "account_uuid": "", "session_id": ...}`. system is 3 text blocks:
  `x-anthropic-billing-header: cc_version=...` (no cache_control), then two with
  cache_control ephemeral. 12 tools (Agent, Bash, Edit, ListAgents, Read, ReportFindings,
  ScheduleWakeup, Skill, ToolSearch, Workflow, DeferredToolPlaceholder, Write), custom tools only
  (no `type`), one with `"defer_loading": true`; input schemas use $schema (draft 2020-12),
  additionalProperties, exclusiveMinimum, pattern, maxLength, maxItems, enum, default. The last
  user block and the tool_result block carry cache_control; tool_result content is a string with
  `is_error`.
* The shape depends on whether the model name is one Claude Code knows:
  - a gateway endpoint name (`openai`, `gemini`, ...): ~50 KB, `thinking: {"type": "adaptive",
    "display": "omitted"}`, output_config.effort, and the environment/skills/agents context is
    sent as a `{"role": "system", ...}` message INSIDE `messages` (after the user turn; content a
    block list on the first request, a string on later ones) under the beta
    mid-conversation-tool-changes-2026-07-01. stderr gets `[claude-code:unrecognized_model]`.
  - a Claude model name (`claude-sonnet-4-5`): ~88 KB (28 KB system prompt), `thinking:
    {"type": "enabled", "budget_tokens": 31999, "display": "omitted"}`, no output_config, no
    system-role messages: that context comes as ~9 `<system-reminder>` text blocks in the user
    message before the prompt.
* Follow-up turn: `assistant: [tool_use]` then `user: [tool_result]`, the tool_result alone in its
  message. The final text answer ends the run (`num_turns` 2).
* Response needs: a standard Anthropic SSE stream; usage (incl. cache fields) is read for cost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROVIDER_DESTINATIONS, SECRETS
from tests.fakes import anthropic_fake, gemini_fake, openai_fake
from tests.gateway_process import cleanup, start_gateway
from tests.pinned_cli import require_cli

CLAUDE_CODE_VERSION = "2.1.330"  # keep in step with .ci/run, which installs it
CLAUDE = Path(__file__).resolve().parents[1] / ".ci" / "node" / "node_modules" / ".bin" / "claude"
PROVIDERS = ["anthropic", "openai", "gemini", "compat"]
# What the gateway should call upstream for each provider kind, and how the fake reads that request.
UPSTREAM = {
    "anthropic": (("/v1/messages",), anthropic_fake.parse_turn),
    "openai": (("/v1/chat/completions",), openai_fake.parse_turn),
    "compat": (("/v1/chat/completions",), openai_fake.parse_turn),
    "gemini": ((":streamGenerateContent", ":generateContent"), gemini_fake.parse_turn),
}
RUN_TIMEOUT = 90


@pytest.fixture(scope="module")
def claude() -> Path:
    return require_cli(CLAUDE, f"{CLAUDE_CODE_VERSION} (Claude Code)", "npm install --prefix .ci/node @anthropic-ai/claude-code")


def run_claude(
    claude: Path, base_url: str, token: str, model: str, prompt: str, tmp: Path, settings: dict | None = None
) -> subprocess.CompletedProcess:
    """`claude -p prompt` with a fresh HOME and working directory, every model name set to `model`,
    and nothing but `base_url` to talk to; `settings` become the user's ~/.claude/settings.json."""
    home, work, tmpdir = tmp / "home", tmp / "work", tmp / "tmp"
    for d in (home, work, tmpdir):
        d.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        (home / ".claude").mkdir(exist_ok=True)
        (home / ".claude" / "settings.json").write_text(json.dumps(settings))
    env = {
        "PATH": os.environ.get("PATH", os.defpath),  # the Bash tool needs bash and echo
        "SHELL": shutil.which("bash") or "/bin/sh",
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": token,  # sent as `authorization: Bearer`; no ANTHROPIC_API_KEY
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "CLAUDE_CODE_SUBAGENT_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DO_NOT_TRACK": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1",  # a gateway error shows up at once, not after minutes of retries
    }
    args = [
        str(claude), "-p", prompt,
        "--model", model,
        "--output-format", "json",
        "--allowedTools", "Bash",  # (--dangerously-skip-permissions refuses to run as root)
        "--max-turns", "3",
        "--no-session-persistence",
    ]
    try:
        return subprocess.run(
            args, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (exc.stdout, exc.stderr))
        pytest.fail(f"claude -p did not finish in {RUN_TIMEOUT}s\nstdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}")


def directive_prompt(marker: str) -> str:
    call = {"command": f"echo {marker}", "description": "Print the test marker"}
    return f"Print the marker with Bash. [[tool Bash {json.dumps(call)}]]"


def describe(proc: subprocess.CompletedProcess, gateway=None, recorded: list | None = None) -> str:
    """Everything worth seeing when a run goes wrong."""
    parts = [f"exit {proc.returncode}", f"stdout:\n{proc.stdout[-4000:]}", f"stderr:\n{proc.stderr[-4000:]}"]
    if recorded is not None:
        parts.append("upstream requests: " + json.dumps([(r["method"], r["path"], r["query"]) for r in recorded]))
    if gateway is not None:
        parts.append(f"gateway log (tail):\n{gateway.log()[-4000:]}")
    return "\n".join(parts)


def check_run(proc, gateway, fake, provider: str, marker: str, upstream_model: str) -> None:
    recorded = [r for r in fake.requests if marker in json.dumps(r["json"])]
    report = describe(proc, gateway, recorded)
    assert proc.returncode == 0, report
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("stdout is not one JSON result\n" + report)
    assert result["type"] == "result" and result["subtype"] == "success" and result["is_error"] is False, report
    assert f"tool said: {marker}" in result["result"], report

    paths, parse_turn = UPSTREAM[provider]
    assert recorded and all(r["path"].endswith(paths) for r in recorded), report
    turns = [parse_turn(r["json"]) for r in recorded]
    assert "Bash" in turns[0].tools and turns[0].last_kind == "user", report
    tool_turns = [t for t in turns if t.last_kind == "tool"]
    assert tool_turns and any(marker in r for r in tool_turns[-1].tool_results), report
    assert "Bash" in tool_turns[-1].tools, report
    for r in recorded:
        assert r["json"].get("model") == upstream_model or f"/models/{upstream_model}:" in r["path"], report
        assert gateway.admin_token not in json.dumps(r["headers"]), "the gateway token went upstream"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_claude_code_runs_a_tool_through_the_gateway(claude, gateway, fake_upstream, tmp_path, provider):
    marker = f"aigw-e2e-{provider}-{uuid.uuid4().hex[:8]}"
    proc = run_claude(claude, gateway.url + "/anthropic", gateway.admin_token, provider, directive_prompt(marker), tmp_path)
    check_run(proc, gateway, fake_upstream, provider, marker, PROVIDER_DESTINATIONS[provider]["model"])
    assert UNRECOGNIZED in proc.stderr, describe(proc)  # what the README's modelOverrides silences


# Claude Code's warning for a model name it does not know (printed to stderr with -p). The README's
# remedy: `modelOverrides` in settings.json, mapping a Claude model id to the endpoint name, so Claude
# Code treats the endpoint as that model (its context window, its request shape) and says nothing.
UNRECOGNIZED = "[claude-code:unrecognized_model]"


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_model_overrides_silence_the_unknown_model_warning(claude, gateway, fake_upstream, tmp_path, provider):
    marker = f"aigw-e2e-override-{provider}-{uuid.uuid4().hex[:8]}"
    settings = {"modelOverrides": {"claude-sonnet-4-6": provider}}
    proc = run_claude(claude, gateway.url + "/anthropic", gateway.admin_token, provider, directive_prompt(marker), tmp_path, settings)
    check_run(proc, gateway, fake_upstream, provider, marker, PROVIDER_DESTINATIONS[provider]["model"])
    assert UNRECOGNIZED not in proc.stderr and "doesn't recognize" not in proc.stderr, describe(proc)


# Endpoints named like Claude models (what Claude Code users tend to do): Claude Code then sends its
# other request shape (see the top of this file).
CLAUDE_NAMED = {"anthropic": "claude-opus-4-1", "openai": "claude-sonnet-4-5", "gemini": "claude-haiku-4-5", "compat": "claude-sonnet-4-0"}


@pytest.fixture(scope="module")
def claude_named_gateway(fake_upstream):
    endpoints = [
        {"name": name, "task": ["chat"],
         "destinations": [{k: v.replace("{fake}", fake_upstream.url) for k, v in PROVIDER_DESTINATIONS[provider].items()}]}
        for provider, name in CLAUDE_NAMED.items()
    ]
    process = start_gateway(yaml.safe_dump({"endpoints": endpoints}, sort_keys=False), env=SECRETS)
    try:
        yield process
    finally:
        cleanup(process)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_claude_code_with_claude_model_names(claude, claude_named_gateway, fake_upstream, tmp_path, provider):
    """A known model name changes what Claude Code sends: a 28 KB system prompt, thinking with a budget,
    and its context as <system-reminder> blocks in the user message instead of system-role messages."""
    gateway, model = claude_named_gateway, CLAUDE_NAMED[provider]
    marker = f"aigw-e2e-named-{provider}-{uuid.uuid4().hex[:8]}"
    proc = run_claude(claude, gateway.url + "/anthropic", gateway.admin_token, model, directive_prompt(marker), tmp_path)
    check_run(proc, gateway, fake_upstream, provider, marker, PROVIDER_DESTINATIONS[provider]["model"])
