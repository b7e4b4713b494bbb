"""Content policies in the `call` phase, end to end: the official SDKs of every surface -> a real
gateway whose endpoints carry a `pii` mask and a `keywords` deny -> the fake upstreams, for a
destination that takes the body as it is (pass-through) and one that is translated.

A mask must reach the upstream (read from the fake's own request log) and the payload log, and
the address itself neither; a deny is a 400 in the surface's own error shape, naming the policy and
never the text, and nothing goes upstream; the usage record lists the runs; /metrics counts them;
an endpoint without policies is untouched."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic
import openai
import pytest
import requests
import yaml
from google import genai
from google.genai import errors, types
from prometheus_client.parser import text_string_to_metric_families

from aigw.call import Call
from aigw.errors import ErrorKind, GatewayError
from aigw.policies.guardrails.engine import PolicyEngine
from aigw.policies.guardrails.verdicts import Phase, PolicyContext, Verdict
from aigw.surfaces.common import Surface
from tests.conftest import PROVIDER_DESTINATIONS, SECRETS
from tests.gateway_process import AIGW, GatewayProcess, cleanup, start_gateway

ADDRESS = "jane.doe@example.com"
MASKED = "[EMAIL]"
FORBIDDEN = "Tell me all about Project   Falcon please"  # "project falcon", across a run of spaces
POLICIES = [
    {"name": "no-pii", "kind": "pii", "action": "mask", "on": ["call", "result"]},
    {"name": "words", "kind": "keywords", "deny": ["project falcon", "re:\\bticket-\\d{6}\\b"], "on": ["call"]},
]
TAGS = "x-aigw-request-tags"


def destination(provider: str, fake: str) -> dict[str, Any]:
    return {k: v.replace("{fake}", fake) for k, v in PROVIDER_DESTINATIONS[provider].items()}


def config(fake: str) -> str:
    logged = {"payload_logging": {"enabled": True}}
    endpoints = [
        {"name": f"p-{p}", "task": "chat", "destinations": [destination(p, fake)], "policies": ["no-pii", "words"], **logged}
        for p in ("openai", "anthropic", "gemini")
    ]
    endpoints += [
        {"name": f"e-{p}", "task": "embeddings", "destinations": [destination(p, fake)], "policies": ["no-pii", "words"], **logged}
        for p in ("openai", "gemini")
    ]
    endpoints.append({"name": "plain-openai", "task": ["chat", "embeddings"], "destinations": [destination("openai", fake)], **logged})
    endpoints.append(
        {"name": "g-openai", "destinations": [destination("openai", fake)], "guardrails": {"input": {"pii": {"behavior": "BLOCK"}}}}
    )
    document = {"policies": POLICIES, "endpoints": endpoints}
    # As an operator writes it: YAML 1.1 reads the bare `on:` key as true.
    return yaml.safe_dump(document, sort_keys=False).replace("'on':", "on:")


@pytest.fixture(scope="module")
def gateway(fake_upstream) -> Iterator[GatewayProcess]:
    process = start_gateway(config(fake_upstream.url), env=SECRETS)
    try:
        yield process
    finally:
        cleanup(process)


# --- one call per surface ----------------------------------------------------------------------------


def tagged(case: str) -> dict[str, str]:
    return {TAGS: json.dumps({"case": case})}


def openai_client(gateway: GatewayProcess, case: str, prefix: str = "/openai/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + prefix, api_key=gateway.admin_token, max_retries=0, default_headers=tagged(case))


def anthropic_client(gateway: GatewayProcess, case: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url + "/anthropic", api_key=gateway.admin_token, max_retries=0, timeout=20, default_headers=tagged(case)
    )


def gemini_client(gateway: GatewayProcess, case: str) -> genai.Client:
    options = types.HttpOptions(base_url=gateway.url + "/gemini", api_version="v1beta", timeout=20_000, headers=tagged(case))
    return genai.Client(api_key=gateway.admin_token, http_options=options)


def chat(gateway: GatewayProcess, endpoint: str, text: str, case: str) -> Any:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
    return openai_client(gateway, case).chat.completions.create(model=endpoint, messages=messages)


def responses(gateway: GatewayProcess, endpoint: str, text: str, case: str) -> Any:
    return openai_client(gateway, case).responses.create(model=endpoint, input=text, instructions="Be brief.")


def agent(gateway: GatewayProcess, endpoint: str, text: str, case: str) -> Any:
    return openai_client(gateway, case, "/mlflow/v1").responses.create(model=endpoint, input=[{"role": "user", "content": text}])


def embeddings(gateway: GatewayProcess, endpoint: str, text: str, case: str) -> Any:
    return openai_client(gateway, case).embeddings.create(model=endpoint, input=[text, "nothing to see"])


def messages(gateway: GatewayProcess, endpoint: str, text: str, case: str) -> Any:
    content = [{"type": "text", "text": text}]
    return anthropic_client(gateway, case).messages.create(
        model=endpoint, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": content}]
    )


def count_tokens(gateway: GatewayProcess, endpoint: str, text: str, case: str) -> Any:
    return anthropic_client(gateway, case).messages.count_tokens(model=endpoint, messages=[{"role": "user", "content": text}])


def generate(gateway: GatewayProcess, endpoint: str, text: str, case: str) -> Any:
    client = gemini_client(gateway, case)  # held: a collected Client closes its connection
    return client.models.generate_content(model=endpoint, contents=text, config=types.GenerateContentConfig(system_instruction="Be brief."))


def gemini_count(gateway: GatewayProcess, endpoint: str, text: str, case: str) -> Any:
    client = gemini_client(gateway, case)
    return client.models.count_tokens(model=endpoint, contents=text)


def embed_content(gateway: GatewayProcess, endpoint: str, text: str, case: str) -> Any:
    client = gemini_client(gateway, case)
    return client.models.embed_content(model=endpoint, contents=[text, "nothing to see"])


Send = Callable[[GatewayProcess, str, str, str], Any]
# (surface, call, endpoint, whether the text goes upstream), a pass-through and a translated one each.
CASES: list[tuple[str, Send, str, bool]] = [
    ("openai_chat", chat, "p-openai", True),
    ("openai_chat", chat, "p-anthropic", True),
    ("openai_responses", responses, "p-openai", True),
    ("openai_responses", responses, "p-anthropic", True),
    ("mlflow_responses", agent, "p-openai", True),
    ("openai_embeddings", embeddings, "e-openai", True),
    ("openai_embeddings", embeddings, "e-gemini", True),
    ("anthropic", messages, "p-anthropic", True),
    ("anthropic", messages, "p-gemini", True),
    ("anthropic_count_tokens", count_tokens, "p-anthropic", True),
    ("anthropic_count_tokens", count_tokens, "p-openai", False),  # the gateway's estimate: no upstream call
    ("gemini", generate, "p-gemini", True),
    ("gemini", generate, "p-openai", True),
    ("gemini_count_tokens", gemini_count, "p-gemini", True),
    ("gemini_embeddings", embed_content, "e-gemini", True),
    ("gemini_embeddings", embed_content, "e-openai", True),
]
ANSWERED = {"openai_chat", "openai_responses", "mlflow_responses", "anthropic", "gemini"}  # no-pii runs on the answer too
RECORDED_SURFACE = {"gemini_embeddings": "gemini"}  # embedContent is recorded as the Gemini surface
IDS = [f"{surface}-{endpoint}" for surface, _, endpoint, _ in CASES]


def upstream_text(fake_upstream) -> str:
    return json.dumps([r["json"] for r in fake_upstream.requests])


def metrics(gateway: GatewayProcess) -> dict[tuple[str, frozenset], float]:
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def record_of(gateway: GatewayProcess, case: str, timeout: float = 15.0) -> dict[str, Any]:
    """The usage record of the request tagged `case`, once the record writer stored it."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in gateway.usage_records() if (r["tags"] or {}).get("case") == case]
        if found:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, f"no usage record for {case}"
        time.sleep(0.2)


def payload_of(gateway: GatewayProcess, request_id: str) -> dict[str, Any] | None:
    response = requests.get(
        gateway.url + "/admin/v1/payloads", params={"request_id": request_id},
        headers={"authorization": f"Bearer {gateway.admin_token}"}, timeout=10,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    found = response.json()["payloads"]
    return found[0] if found else None


def runs(record: dict[str, Any]) -> list[tuple[str, str, str, list[str]]]:
    assert all(run["ms"] >= 0 for run in record["policies"])
    return [(r["policy"], r["phase"], r["verdict"], r["categories"]) for r in record["policies"]]


# --- mask ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("surface", "send", "endpoint", "upstream"), CASES, ids=IDS)
def test_a_mask_reaches_the_upstream_and_the_payload_log_never_the_address(gateway, fake_upstream, surface, send, endpoint, upstream):
    case = f"mask-{surface}-{endpoint}"
    fake_upstream.clear()
    send(gateway, endpoint, f"Please write to {ADDRESS} today", case)
    seen = upstream_text(fake_upstream)
    assert ADDRESS not in seen
    if upstream:
        assert MASKED in seen
    record = record_of(gateway, case)
    assert (record["surface"], record["status"]) == (RECORDED_SURFACE.get(surface, surface), 200)
    answered = [("no-pii", "result", "allow", [])] if surface in ANSWERED else []  # the answer holds the mask only
    assert runs(record) == [("no-pii", "call", "mask", ["EMAIL"]), ("words", "call", "allow", []), *answered]
    payload = payload_of(gateway, record["request_id"])
    assert payload is not None
    assert ADDRESS not in payload["request_body"] and MASKED in payload["request_body"]
    assert ADDRESS not in (payload["response_body"] or "")


def test_a_masked_chat_answer_echoes_the_masked_text(gateway, fake_upstream):
    reply = chat(gateway, "p-openai", f"Please write to {ADDRESS} today", "echo-masked")
    assert reply.choices[0].message.content.endswith(f"echo: Please write to {MASKED} today")


def test_unknown_fields_survive_a_mask_on_pass_through(gateway, fake_upstream):
    fake_upstream.clear()
    body = {
        "model": "p-openai", "x_vendor_field": {"keep": [1, 2]},
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"mail {ADDRESS}", "x_part": True}], "x_msg": "m"}],
    }  # fmt: skip
    response = requests.post(gateway.url + "/openai/v1/chat/completions", json=body, headers={"authorization": f"Bearer {gateway.admin_token}"})
    assert response.status_code == 200, response.text
    sent = fake_upstream.last("/chat/completions")["json"]
    assert sent["x_vendor_field"] == {"keep": [1, 2]}
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": f"mail {MASKED}", "x_part": True}], "x_msg": "m"}]


def test_streamed_requests_are_checked_before_the_stream_opens(gateway, fake_upstream):
    """The call phase is the same for a stream: masked upstream, or a plain 400 before any event."""
    fake_upstream.clear()
    messages = [{"role": "user", "content": f"Please write to {ADDRESS} today"}]
    stream = openai_client(gateway, "stream-mask").chat.completions.create(model="p-anthropic", messages=messages, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.endswith(f"echo: Please write to {MASKED} today")
    assert ADDRESS not in upstream_text(fake_upstream)
    fake_upstream.clear()
    client = gemini_client(gateway, "stream-deny")
    with pytest.raises(errors.ClientError) as caught:
        list(client.models.generate_content_stream(model="p-gemini", contents=FORBIDDEN))
    assert refusal("gemini", caught.value) == "The request was refused by policy 'words' (keywords)."
    assert fake_upstream.requests == []


# --- deny ------------------------------------------------------------------------------------------------


def refusal(surface: str, caught: Exception) -> str:
    """The message of a policy's 400, after checking the surface's error shape."""
    if isinstance(caught, openai.BadRequestError):
        assert caught.status_code == 400
        assert caught.body["type"] == "invalid_request_error" and caught.body["code"] == "content_policy_violation"
        assert caught.body["param"] is None
        return caught.body["message"]
    if isinstance(caught, anthropic.BadRequestError):
        assert caught.status_code == 400
        assert caught.body == {"type": "error", "error": {"type": "invalid_request_error", "message": caught.body["error"]["message"]}}
        return caught.body["error"]["message"]
    assert isinstance(caught, errors.ClientError), (surface, caught)
    assert (caught.code, caught.status) == (400, "INVALID_ARGUMENT")
    return caught.message


@pytest.mark.parametrize(("surface", "send", "endpoint", "upstream"), CASES, ids=IDS)
def test_a_deny_is_the_surfaces_400_and_nothing_goes_upstream(gateway, fake_upstream, surface, send, endpoint, upstream):
    case = f"deny-{surface}-{endpoint}"
    fake_upstream.clear()
    with pytest.raises((openai.BadRequestError, anthropic.BadRequestError, errors.ClientError)) as caught:
        send(gateway, endpoint, FORBIDDEN, case)
    message = refusal(surface, caught.value)
    assert message == "The request was refused by policy 'words' (keywords)."
    assert fake_upstream.requests == []
    record = record_of(gateway, case)
    assert (record["status"], record["error"]) == (400, message)
    assert runs(record) == [("no-pii", "call", "allow", []), ("words", "call", "deny", ["keywords"])]
    assert payload_of(gateway, record["request_id"]) is None  # a refused body is not logged


def test_a_regex_entry_denies_too(gateway, fake_upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(gateway, "p-anthropic", "status of TICKET-123456?", "deny-regex")
    assert "'words'" in caught.value.body["message"] and "123456" not in caught.value.body["message"]


def test_the_guardrails_shorthand_blocks_pii(gateway, fake_upstream):
    fake_upstream.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        chat(gateway, "g-openai", f"mail {ADDRESS}", "shorthand-block")
    assert caught.value.body["message"] == "The request was refused by policy 'g-openai/guardrails.input.pii' (EMAIL)."
    assert ADDRESS not in caught.value.body["message"]
    assert fake_upstream.requests == []


# --- no policies, metrics ------------------------------------------------------------------------------


def test_an_endpoint_without_policies_is_untouched(gateway, fake_upstream):
    fake_upstream.clear()
    reply = chat(gateway, "plain-openai", f"Please write to {ADDRESS} about Project Falcon", "plain")
    assert reply.choices[0].message.content.endswith(f"echo: Please write to {ADDRESS} about Project Falcon")
    assert ADDRESS in upstream_text(fake_upstream)
    record = record_of(gateway, "plain")
    assert (record["status"], record["policies"]) == (200, [])
    assert ADDRESS in payload_of(gateway, record["request_id"])["request_body"]


def test_metrics_count_verdicts(gateway, fake_upstream):
    chat(gateway, "p-openai", f"to {ADDRESS}", "metrics-mask")
    with pytest.raises(openai.BadRequestError):
        chat(gateway, "p-openai", FORBIDDEN, "metrics-deny")
    chat(gateway, "plain-openai", f"to {ADDRESS}", "metrics-plain")
    record_of(gateway, "metrics-plain")
    values = metrics(gateway)

    def count(endpoint: str, policy: str, verdict: str) -> float:
        labels = frozenset({"endpoint": endpoint, "policy": policy, "phase": "call", "verdict": verdict}.items())
        return values.get(("aigw_policy_verdicts_total", labels), 0)

    assert count("p-openai", "no-pii", "mask") >= 1
    assert count("p-openai", "words", "deny") >= 1
    assert count("p-openai", "words", "allow") >= 1
    assert not any(n == "aigw_policy_verdicts_total" and dict(labels)["endpoint"] == "plain-openai" for n, labels in values)


# --- configuration errors ----------------------------------------------------------------------------


def check(tmp_path: Path, document: dict[str, Any]) -> subprocess.CompletedProcess:
    path = tmp_path / "aigw.yaml"
    path.write_text(yaml.safe_dump(document).replace("'on':", "on:"))
    return subprocess.run([AIGW, "config", "check", str(path)], capture_output=True, text=True, timeout=60)


def endpoint_with(policies: list[str]) -> dict[str, Any]:
    return {"name": "chat", "destinations": [{"provider": "openai", "model": "gpt-4o-mini", "api_key": "sk-x"}], "policies": policies}


def test_config_check_accepts_the_issues_form_and_names_what_is_wrong(tmp_path):
    ok = check(tmp_path, {"policies": POLICIES, "endpoints": [endpoint_with(["no-pii", "words"])]})
    assert ok.returncode == 0, ok.stderr
    unknown = check(tmp_path, {"policies": POLICIES, "endpoints": [endpoint_with(["no-pii", "nope"])]})
    assert unknown.returncode != 0
    assert "endpoints[0] (chat).policies[1]: unknown policy 'nope' (policies: no-pii, words)" in unknown.stderr
    bad_regex = [POLICIES[0], {**POLICIES[1], "deny": ["fine", "re:ticket-("]}]
    broken = check(tmp_path, {"policies": bad_regex, "endpoints": [endpoint_with(["words"])]})
    assert broken.returncode != 0
    assert "policies[1] (words).deny[1]: not a valid regular expression" in broken.stderr
    judge = {"name": "medical", "kind": "judge", "endpoint": "chat", "rule": "Deny requests that ask for a medical diagnosis.", "on": ["call"]}
    judged = check(tmp_path, {"policies": [*POLICIES, judge], "endpoints": [endpoint_with(["medical"])]})
    assert judged.returncode == 0, judged.stderr
    nowhere = check(tmp_path, {"policies": [*POLICIES, {**judge, "endpoint": "nope"}], "endpoints": [endpoint_with(["medical"])]})
    assert nowhere.returncode != 0 and "policies[2] (medical).endpoint: no endpoint named 'nope'" in nowhere.stderr


# --- reload ----------------------------------------------------------------------------------------


def test_sighup_brings_policies_in_and_a_bad_one_is_refused(fake_upstream):
    from tests.test_reload_and_workers import _hangup_and_wait, _rewrite

    def document(policies: list[dict[str, Any]], attached: list[str]) -> str:
        endpoint = {"name": "chat", "destinations": [destination("openai", fake_upstream.url)], "policies": attached}
        return yaml.safe_dump({"policies": policies, "endpoints": [endpoint]}).replace("'on':", "on:")

    process = start_gateway(document([], []), env=SECRETS)
    try:
        assert chat(process, "chat", FORBIDDEN, "reload-before").choices[0].message.content.endswith(FORBIDDEN)
        _rewrite(process, document(POLICIES, ["words"]))
        _hangup_and_wait(process, "configuration reloaded")
        with pytest.raises(openai.BadRequestError):
            chat(process, "chat", FORBIDDEN, "reload-after")
        _rewrite(process, document([{**POLICIES[1], "deny": ["re:("]}], ["words"]))
        _hangup_and_wait(process, "reload refused")
        with pytest.raises(openai.BadRequestError):  # the running policies stay
            chat(process, "chat", FORBIDDEN, "reload-refused")
    finally:
        cleanup(process)


# --- an ask outside the agent ------------------------------------------------------------------------


class AskingPolicy:
    name, phases, on_error, timeout = "approve-first", frozenset({Phase.CALL}), "deny", None

    async def check(self, texts: list[str], context: PolicyContext) -> Verdict:
        return Verdict.ask(("needs_approval",), "")


def test_an_ask_on_a_plain_request_is_refused(tmp_path):
    """Only the agent's tool calls have someone to ask: elsewhere an ask fails closed, as a deny."""
    call = Call("openai_chat", {})
    endpoint = SimpleNamespace(name="chat", policies=PolicyEngine([AskingPolicy()]))
    body = {"messages": [{"role": "user", "content": "hello"}]}
    with pytest.raises(GatewayError) as caught:
        asyncio.run(Surface(None)._check_call(call, endpoint, body, "openai_chat"))  # type: ignore[arg-type]
    assert (caught.value.kind, caught.value.status) == (ErrorKind.POLICY, 400)
    assert caught.value.message == "The request was refused by policy 'approve-first' (needs_approval)."
    assert [run.action for run in call.policy_runs] == ["ask"]
