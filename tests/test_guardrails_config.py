"""Parsing `policies:` and the `guardrails:` shorthand: the issue's minimal form, typed kinds, and
errors that name the policy and the field."""

from __future__ import annotations

import pytest
import yaml

from aigw.policies.guardrails.config import (
    EndpointPolicies, JudgePolicyConfig, KeywordsPolicyConfig, PiiPolicyConfig, PolicyConfigError, PythonPolicyConfig,
    TopicsPolicyConfig, WebhookPolicyConfig, build_engine, parse_policies, resolve_policies,
)  # fmt: skip
from aigw.policies.guardrails.verdicts import Phase, PolicyContext

MINIMAL = """
policies:
  - name: no-pii
    kind: pii
    action: mask
    on: [call, result]
  - name: words
    kind: keywords
    deny: ["project falcon", "re:\\\\bticket-\\\\d{6}\\\\b"]
    on: [call]
  - name: medical
    kind: judge
    endpoint: judge
    rule: "Deny requests that ask for a medical diagnosis."
    on: [call]
endpoints:
  - name: chat
    task: chat
    policies: [no-pii, words]
  - name: judge
"""


def endpoints(document: dict) -> list[EndpointPolicies]:
    return [EndpointPolicies(e["name"], e.get("policies", []), e.get("guardrails")) for e in document["endpoints"]]


async def test_the_minimal_form_works_as_written() -> None:
    document = yaml.safe_load(MINIMAL)
    resolved = resolve_policies(document["policies"], endpoints(document))
    assert list(resolved) == ["chat"]
    pii, words = resolved["chat"]
    assert isinstance(pii, PiiPolicyConfig) and pii.action == "mask" and pii.phases == frozenset(Phase)
    assert isinstance(words, KeywordsPolicyConfig) and words.phases == {Phase.CALL}
    assert words.deny == ["project falcon", "re:\\bticket-\\d{6}\\b"]
    engine = build_engine(resolved["chat"])
    outcome = await engine.run(["mail john@example.com about ticket-123456"], PolicyContext(Phase.CALL, "chat"))
    assert outcome.denied and outcome.policy == "words"
    outcome = await engine.run(["mail john@example.com"], PolicyContext(Phase.RESULT, "chat"))
    assert outcome.action == "mask" and list(outcome.texts) == ["mail [EMAIL]"]


def test_every_kind_parses_into_its_type_with_its_defaults() -> None:
    declared = parse_policies([
        {"name": "t", "kind": "topics", "topics": ["billing"], "endpoint": "judge"},
        {"name": "j", "kind": "jailbreak"},
        {"name": "u", "kind": "unsafe_content", "endpoint": "judge", "stream": "after"},
        {"name": "m", "kind": "judge", "endpoint": "judge", "rule": "no diagnoses", "cache_seconds": 60},
        {"name": "w", "kind": "webhook", "url": "https://policy.example.com/check", "headers": {"Authorization": "Bearer x"}},
        {"name": "p", "kind": "python", "function": "tests.guardrail_functions:deny_all"},
    ])  # fmt: skip
    assert isinstance(declared["t"], TopicsPolicyConfig) and declared["t"].phases == {Phase.CALL}
    assert declared["j"].endpoint is None and declared["j"].effective_timeout == 10.0
    assert declared["u"].stream == "after" and declared["u"].phases == frozenset(Phase)
    assert isinstance(declared["m"], JudgePolicyConfig) and declared["m"].stream == "buffer"
    assert isinstance(declared["w"], WebhookPolicyConfig) and declared["w"].effective_timeout == 5.0
    assert isinstance(declared["p"], PythonPolicyConfig)
    assert len(build_engine(list(declared.values())).policies) == len(declared)  # every kind builds


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ([{"name": "x", "kind": "pii", "action": "nuke"}], r"policies\[0\] \(x\)\.action: Invalid enum value 'nuke'"),
        ([{"name": "x", "kind": "nope"}], r"policies\[0\] \(x\)\.kind: unknown kind 'nope'"),
        ([{"name": "x"}], r"policies\[0\] \(x\)\.kind: missing"),
        ([{"name": "w", "kind": "keywords", "deny": ["ok", "re:(a+)+"]}], r"policies\[0\] \(w\)\.deny\[1\]: .*exponential"),
        ([{"name": "w", "kind": "keywords", "deny": ["re:("]}], r"\(w\)\.deny\[0\]: not a valid regular expression"),
        ([{"name": "w", "kind": "keywords"}], r"\(w\): Object missing required field `deny`"),
        ([{"name": "x", "kind": "pii", "entities": ["EMAIL", "FOO"]}], r"\(x\)\.entities\[1\]: unknown entity 'FOO'"),
        ([{"name": "x", "kind": "pii", "region": "XX"}], r"\(x\)\.region"),
        ([{"name": "x", "kind": "pii", "colour": 1}], r"\(x\): Object contains unknown field `colour`"),
        ([{"name": "x", "kind": "pii", "on": []}], r"\(x\)\.on: list call, result or both"),
        ([{"name": "x", "kind": "pii", "on": ["later"]}], r"\(x\)\.on\[0\]: Invalid enum value 'later'"),
        ([{"name": "x", "kind": "pii", "timeout": 0}], r"\(x\)\.timeout: must be positive"),
        ([{"name": "x", "kind": "webhook", "url": "ftp://x"}], r"\(x\)\.url"),
        ([{"name": "x", "kind": "python", "function": "not a path"}], r"\(x\)\.function"),
        ([{"name": "x", "kind": "judge", "endpoint": "e", "rule": " "}], r"\(x\)\.rule"),
        ([{"name": "x", "kind": "pii"}, {"name": "x", "kind": "pii"}], r"policies\[1\]\.name: duplicate policy name 'x'"),
        ([{"name": "bad name!", "kind": "pii"}], r"\.name: 'bad name!' is not a valid policy name"),
        ({"name": "x"}, r"policies: must be a list"),
    ],
)
def test_errors_name_the_policy_and_the_field(policies, message: str) -> None:
    with pytest.raises(PolicyConfigError, match=message):
        parse_policies(policies)


def test_endpoint_references_are_checked() -> None:
    declared = [{"name": "no-pii", "kind": "pii"}, {"name": "m", "kind": "judge", "endpoint": "ghost", "rule": "r"}]
    with pytest.raises(PolicyConfigError, match=r"policies\[1\] \(m\)\.endpoint: no endpoint named 'ghost'"):
        resolve_policies(declared, [EndpointPolicies("chat", [])])
    with pytest.raises(PolicyConfigError, match=r"endpoints\[0\]\.policies\[1\]: unknown policy 'nope'"):
        resolve_policies(declared[:1], [EndpointPolicies("chat", ["no-pii", "nope"])])
    with pytest.raises(PolicyConfigError, match=r"endpoints\[0\]\.policies\[1\]: policy 'no-pii' is listed twice"):
        resolve_policies(declared[:1], [EndpointPolicies("chat", ["no-pii", "no-pii"])])


def test_the_databricks_guardrails_block_maps_onto_policies() -> None:
    guardrails = {
        "input": {"pii": {"behavior": "BLOCK"}, "invalid_keywords": ["falcon"], "safety": True, "valid_topics": ["billing"]},
        "output": {"pii": {"behavior": "MASK"}, "safety": False},
        "endpoint": "judge",
    }
    resolved = resolve_policies(None, [EndpointPolicies("chat", [], guardrails), EndpointPolicies("judge", [])])
    summary = [(p.name, p.kind, sorted(x.value for x in p.phases), getattr(p, "action", None)) for p in resolved["chat"]]
    assert summary == [
        ("chat/guardrails.input.pii", "pii", ["call"], "block"),
        ("chat/guardrails.input.invalid_keywords", "keywords", ["call"], None),
        ("chat/guardrails.input.safety", "unsafe_content", ["call"], None),
        ("chat/guardrails.input.valid_topics", "topics", ["call"], None),
        ("chat/guardrails.output.pii", "pii", ["result"], "mask"),
    ]
    none = resolve_policies(None, [EndpointPolicies("chat", [], {"input": {"pii": {"behavior": "NONE"}}})])
    assert none == {}


@pytest.mark.parametrize(
    ("guardrails", "message"),
    [
        ({"input": {"pii": {"behavior": "SOMETIMES"}}}, r"endpoints\[0\]\.guardrails\.input\.pii\.behavior"),
        ({"output": {"invalid_keywords": ["x"]}}, r"endpoints\[0\]\.guardrails\.output: Object contains unknown field `invalid_keywords`"),
        ({"input": {"valid_topics": ["billing"]}}, r"guardrails\.input\.valid_topics: needs endpoints\[0\]\.guardrails\.endpoint"),
        ({"input": {"invalid_keywords": ["re:("]}}, r"guardrails\.input\.invalid_keywords\[0\]: not a valid regular expression"),
        ({"input": {"safety": True}, "endpoint": "ghost"}, r"guardrails\.endpoint: no endpoint named 'ghost'"),
    ],
)
def test_shorthand_errors(guardrails: dict, message: str) -> None:
    with pytest.raises(PolicyConfigError, match=message):
        resolve_policies(None, [EndpointPolicies("chat", [], guardrails)])
