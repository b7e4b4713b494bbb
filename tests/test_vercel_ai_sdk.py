"""The Vercel AI SDK's OpenAI provider (the real `ai` and `@ai-sdk/openai` packages, run by Node)
through the gateway's Responses APIs: a two-turn conversation whose second turn refers to the first
turn's stored answer with an `item_reference` item, resolved from the gateway's store for every kind
of destination.

What @ai-sdk/openai 4.0.118 sends (read in its dist/index.js, convertToOpenAIResponsesInput): with
`store` not false (the default), an assistant text part carrying providerOptions.openai.itemId (every
text part of a Responses answer does, in `response.messages`) becomes `{"type": "item_reference",
"id": itemId}` instead of the message, for a model the SDK does not take for a reasoning model (an
endpoint name is not one) or after a reasoning part; a reasoning part with an itemId becomes one too.
Function calls and their outputs are sent whole. With `previousResponseId` or `conversation` set, items
with ids are left out instead. The request body has no `store` field unless the app sets one.

Observed: turn 1's tool round sends the call and its output whole; turn 2 sends turn 1's question, a
reference to its final answer, and the new question. With reasoning (`forceReasoning`), each step's
reasoning item is a reference too, already in the tool round.

The script (tests/node/vercel_two_turns.mjs) records every body the SDK sends with a fetch spy: the
test checks that the second turn did send the reference, so it cannot pass without one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fakes import anthropic_fake, gemini_fake

ROOT = Path(__file__).resolve().parents[1]
AI_SDK_DIR = ROOT / ".ci" / "node" / "ai-sdk"  # `bash .ci/run` installs the pinned packages here
VERSIONS = {"ai": "7.0.173", "@ai-sdk/openai": "4.0.118"}  # keep in step with .ci/run
SCRIPT = Path(__file__).resolve().parent / "node" / "vercel_two_turns.mjs"
# The fake's path a model request reaches, and how the fake reads its conversation.
UPSTREAM = {
    "anthropic": ("/v1/messages", anthropic_fake.parse_turn),
    "gemini": (":generateContent", gemini_fake.parse_turn),
    "openai": ("/v1/responses", None),
}
CASES = [("/mlflow/v1", "anthropic"), ("/mlflow/v1", "gemini"), ("/mlflow/v1", "openai"), ("/openai/v1", "anthropic"), ("/openai/v1", "gemini")]


@pytest.fixture(scope="module")
def node() -> str:
    """Node with the pinned SDK packages; under CI=true their absence fails instead of skipping."""
    problem = None
    node = shutil.which("node")
    if node is None:
        problem = "Node.js is not installed"
    else:
        for name, version in VERSIONS.items():
            manifest = AI_SDK_DIR / "node_modules" / name / "package.json"
            found = json.loads(manifest.read_text()).get("version") if manifest.exists() else None
            if found != version:
                problem = f"{name} {version} is not installed in {AI_SDK_DIR} (found {found})"
                break
    if problem:
        problem += ": `bash .ci/run` installs it (npm install --prefix .ci/node/ai-sdk ai @ai-sdk/openai)"
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    assert node is not None
    return node


def run_two_turns(node: str, base_url: str, token: str, model: str, reasoning: bool = False) -> dict:
    env = {**os.environ, "AIGW_BASE_URL": base_url, "AIGW_TOKEN": token, "AIGW_MODEL": model, "AIGW_REASONING": "1" if reasoning else ""}
    done = subprocess.run(
        [node, "--input-type=module"], input=SCRIPT.read_text(), cwd=AI_SDK_DIR, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("prefix", "endpoint"), CASES, ids=[f"{p.split('/')[1]}-{e}" for p, e in CASES])
def test_item_reference_from_the_vercel_ai_sdk(node, gateway, fake_upstream, prefix, endpoint):
    fake_upstream.clear()
    result = run_two_turns(node, gateway.url + prefix, gateway.admin_token, endpoint)
    assert result["firstSteps"] == 2  # the tool round: the model called lookup, then answered
    assert result["first"] == "tool said: the answer to what fruit is kumquat"
    assert result["second"] == "echo: say it again"

    # The SDK's side: turn 1's answer went back as a reference to its stored item, not as text.
    first_answer, second_turn = result["sent"][1], result["sent"][2]
    assert [r["url"] for r in result["sent"]] == [gateway.url + prefix + "/responses"] * 3
    references = [i for i in second_turn["body"]["input"] if i.get("type") == "item_reference"]
    assert len(references) == 1 and references[0]["id"].startswith("msg_")
    assert "tool said" not in json.dumps(second_turn["body"])
    assert "store" not in second_turn["body"] and first_answer["body"].get("store") is None

    # The destination's side: the referenced answer reached the model, as the item itself.
    path, parse_turn = UPSTREAM[endpoint]
    last = [r for r in fake_upstream.requests if path in r["path"]][-1]
    sent = json.dumps(last["json"])
    assert "tool said: the answer to what fruit is kumquat" in sent
    assert "item_reference" not in sent and references[0]["id"] not in sent
    if parse_turn is not None:
        assert parse_turn(last["json"]).user_text == "say it again"


def test_reasoning_items_referred_to_by_the_vercel_ai_sdk(node, gateway, fake_upstream):
    """With reasoning on, the SDK refers to reasoning items by id as well, from the tool round on:
    the OpenAI destination behind /mlflow/v1 gets each reasoning item whole (its summary), never a
    reference, and never a bare one."""
    fake_upstream.clear()
    result = run_two_turns(node, gateway.url + "/mlflow/v1", gateway.admin_token, "openai", reasoning=True)
    assert result["second"] == "echo: say it again"
    tool_round, second_turn = result["sent"][1]["body"], result["sent"][2]["body"]
    (step_reasoning,) = [i["id"] for i in tool_round["input"] if i.get("type") == "item_reference"]
    references = [i["id"] for i in second_turn["input"] if i.get("type") == "item_reference"]
    assert step_reasoning.startswith("rs_") and sorted(r[:3] for r in references) == ["msg", "rs_"]
    upstream = [r["json"]["input"] for r in fake_upstream.requests if r["path"] == "/v1/responses"]
    assert len(upstream) == 3 and "item_reference" not in json.dumps(upstream)
    # Each reference reached the model as the item it names: reasoning with its summary and its
    # encrypted content (the loop asks OpenAI for it: store is false upstream), the answer.
    summary = [{"type": "summary_text", "text": "thinking about: what fruit"}]

    def reasoning(items: list[dict], id: str) -> dict:
        (item,) = [i for i in items if i.get("id") == id]
        return item

    answer_reasoning = next(r for r in references if r.startswith("rs_"))
    for items, id in ((upstream[1], step_reasoning), (upstream[2], answer_reasoning)):
        item = reasoning(items, id)
        assert item["type"] == "reasoning" and item["summary"] == summary and item.get("encrypted_content"), item
    assert "tool said: the answer to what fruit is kumquat" in json.dumps(upstream[2])
