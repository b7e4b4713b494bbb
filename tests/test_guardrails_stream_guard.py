"""A streamed result's text through an endpoint's result policies: masks compose, a deny stops the
stream before the offending text, every policy is recorded."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from aigw.policies.guardrails.keywords import KeywordMatcher, KeywordsPolicy
from aigw.policies.guardrails.pii import PiiPolicy, PiiScanner
from aigw.policies.guardrails.stream_guard import StreamGuard
from aigw.policies.guardrails.verdicts import Phase, PolicyContext

RESULT = PolicyContext(Phase.RESULT, "chat")
BOTH = frozenset(Phase)


def run(guard: StreamGuard, chunks: list[str]) -> tuple[str, object]:
    out = []
    for chunk in chunks:
        step = guard.feed(chunk)
        out.append(step.text)
        if step.denied:
            return "".join(out), step
    step = guard.finish()
    out.append(step.text)
    return "".join(out), step


def test_masks_compose_across_chunks_and_are_recorded() -> None:
    emails = PiiPolicy("emails", BOTH, "mask", PiiScanner(["EMAIL"]))
    phones = PiiPolicy("phones", BOTH, "mask", PiiScanner(["PHONE"]))
    guard = StreamGuard([emails, phones], RESULT)
    text, step = run(guard, ["Write to jo", "hn@exam", "ple.com or call (202) 55", "5-0143 today."])
    assert not step.denied and text == "Write to [EMAIL] or call [PHONE] today."
    assert [(r.policy, r.action, r.categories) for r in guard.runs()] == [("emails", "mask", ("EMAIL",)), ("phones", "mask", ("PHONE",))]


def test_a_keyword_denies_mid_stream_before_it_is_released() -> None:
    words = KeywordsPolicy("words", BOTH, KeywordMatcher(["project falcon"]))
    guard = StreamGuard([words], RESULT)
    text, step = run(guard, ["Sure. The plan for Pro", "ject Fal", "con is", " secret"])
    assert step.denied and step.policy == "words" and step.categories == ("keywords",)
    assert "falcon" not in text.lower() and text.startswith("Sure.")
    assert guard.feed("more").denied
    assert guard.runs()[0].action == "deny"


def test_pii_block_denies_before_the_finding_is_sent() -> None:
    guard = StreamGuard([PiiPolicy("no-pii", BOTH, "block", PiiScanner())], RESULT)
    text, step = run(guard, ["my ssn is 078-", "05-1120 ok"])
    assert step.denied and step.categories == ("US_SSN",) and "078" not in text and "078" not in step.message


def test_call_only_policies_are_not_stages() -> None:
    guard = StreamGuard([KeywordsPolicy("words", frozenset([Phase.CALL]), KeywordMatcher(["x"]))], RESULT)
    assert not guard.active
    assert run(guard, ["x y"])[0] == "x y"


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=7), max_size=30))
def test_any_chunking_gives_the_whole_body_result(cuts: list[int]) -> None:
    text = "Mail a.b@example.com, card 4111 1111 1111 1111 and 10.0.0.1; bye john@x.io"
    scanner = PiiScanner(["EMAIL", "CREDIT_CARD"])
    ip = PiiScanner(["IP_ADDRESS"])
    guard = StreamGuard([PiiPolicy("a", BOTH, "mask", scanner), PiiPolicy("b", BOTH, "mask", ip)], RESULT)
    chunks, at = [], 0
    for size in cuts:
        chunks.append(text[at : at + size])
        at += size
    chunks.append(text[at:])
    assert run(guard, chunks)[0] == ip.mask(scanner.mask(text))


def test_a_failing_stage_fails_closed_or_open_as_configured() -> None:
    def broken(delta: str) -> str:
        raise RuntimeError("boom")

    closed = StreamGuard([PiiPolicy("p", BOTH, "mask", PiiScanner())], RESULT)
    closed._stages[0].masker.feed = broken  # type: ignore[union-attr]
    step = closed.feed("hello there")
    assert step.denied and step.categories == ("policy_error",)

    opened = StreamGuard([PiiPolicy("p", BOTH, "mask", PiiScanner(), on_error="allow")], RESULT)
    assert opened.feed("held wor").text == "held "
    opened._stages[0].masker.feed = broken  # type: ignore[union-attr]
    text, step = run(opened, ["d and more"])
    assert not step.denied and text == "word and more"
    assert [(r.action, r.categories) for r in opened.runs()] == [("allow", ("policy_error",))]
