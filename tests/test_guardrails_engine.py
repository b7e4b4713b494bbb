"""The policy engine: declared order, a deny stops, masks compose, failures fail closed, runs recorded."""

from __future__ import annotations

import asyncio

from aigw.policies.guardrails.engine import NO_POLICIES, PolicyEngine
from aigw.policies.guardrails.keywords import KeywordMatcher, KeywordsPolicy
from aigw.policies.guardrails.pii import PiiPolicy, PiiScanner
from aigw.policies.guardrails.verdicts import ALLOW, Phase, PolicyContext, Verdict

BOTH = frozenset(Phase)
CALL = PolicyContext(Phase.CALL, "chat", "alice", "openai")
RESULT = PolicyContext(Phase.RESULT, "chat", "alice", "openai")


class Scripted:
    """A policy that answers what it is told, and remembers what it saw."""

    def __init__(self, name: str, answer, phases=BOTH, on_error="deny", timeout=None) -> None:
        self.name, self.answer, self.phases, self.on_error, self.timeout = name, answer, phases, on_error, timeout
        self.seen: list[list[str]] = []

    async def check(self, texts, context):
        self.seen.append(list(texts))
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer == "sleep":
            await asyncio.sleep(10)
        return self.answer(texts) if callable(self.answer) else self.answer


async def test_no_policies_returns_the_texts_untouched() -> None:
    texts = ["a"]
    outcome = await NO_POLICIES.run(texts, CALL)
    assert outcome.action == "allow" and outcome.texts is texts and outcome.runs == ()
    assert not NO_POLICIES.applies(Phase.CALL)


async def test_masks_compose_in_declared_order_and_each_run_is_recorded() -> None:
    pii = PiiPolicy("no-pii", BOTH, "mask", PiiScanner(["EMAIL"]))
    upper = Scripted("upper", lambda texts: Verdict.mask([t.upper() for t in texts], ["shout"]))
    outcome = await PolicyEngine([pii, upper]).run(["to john@example.com"], CALL)
    assert outcome.action == "mask" and list(outcome.texts) == ["TO [EMAIL]"]
    assert upper.seen == [["to [EMAIL]"]]  # the second policy saw the first one's mask
    assert [(r.policy, r.action, r.categories) for r in outcome.runs] == [("no-pii", "mask", ("EMAIL",)), ("upper", "mask", ("shout",))]
    assert all(r.elapsed_ms >= 0 and r.phase is Phase.CALL for r in outcome.runs)
    assert outcome.runs[0].as_record()["verdict"] == "mask"


async def test_a_deny_stops_the_run() -> None:
    words = KeywordsPolicy("words", BOTH, KeywordMatcher(["project falcon"]))
    after = Scripted("after", ALLOW)
    outcome = await PolicyEngine([words, after]).run(["about Project Falcon"], CALL)
    assert outcome.denied and outcome.policy == "words" and outcome.categories == ("keywords",)
    assert "falcon" not in outcome.message.lower() and "words" in outcome.message
    assert after.seen == [] and len(outcome.runs) == 1


async def test_phases_select_policies() -> None:
    call_only = Scripted("call-only", Verdict.deny(["x"], "no"), phases=frozenset([Phase.CALL]))
    engine = PolicyEngine([call_only])
    assert (await engine.run(["t"], RESULT)).action == "allow"
    assert (await engine.run(["t"], CALL)).denied
    assert engine.applies(Phase.CALL) and not engine.applies(Phase.RESULT)


async def test_errors_and_timeouts_fail_closed() -> None:
    for broken in (Scripted("boom", RuntimeError("secret text inside")), Scripted("slow", "sleep", timeout=0.05),
                   Scripted("wrong", lambda texts: Verdict.mask(["a", "b"], [])), Scripted("junk", lambda texts: "allow")):  # fmt: skip
        outcome = await PolicyEngine([broken]).run(["t"], CALL)
        assert outcome.denied and outcome.categories == ("policy_error",), broken.name
        assert "secret text" not in outcome.message


async def test_on_error_allow_fails_open_and_says_so() -> None:
    after = Scripted("after", ALLOW)
    outcome = await PolicyEngine([Scripted("boom", RuntimeError(), on_error="allow"), after]).run(["t"], CALL)
    assert outcome.action == "allow" and after.seen == [["t"]]
    assert outcome.runs[0].categories == ("policy_error",)


async def test_ask_waits_for_later_policies_and_a_deny_still_wins() -> None:
    ask = Scripted("approve", Verdict.ask(["tool"], "needs approval"))
    outcome = await PolicyEngine([ask, Scripted("ok", ALLOW)]).run(["t"], CALL)
    assert outcome.action == "ask" and outcome.policy == "approve"
    outcome = await PolicyEngine([ask, Scripted("no", Verdict.deny(["x"], "refused"))]).run(["t"], CALL)
    assert outcome.denied and outcome.policy == "no"


async def test_cancellation_is_not_a_policy_error() -> None:
    task = asyncio.ensure_future(PolicyEngine([Scripted("slow", "sleep")]).run(["t"], CALL))
    await asyncio.sleep(0.01)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return
    raise AssertionError("the cancellation was swallowed")


async def test_a_big_body_is_checked_off_the_serving_loop() -> None:
    import threading

    seen: list[str] = []
    scanner = PiiScanner(["EMAIL"])
    find = scanner.find
    scanner.find = lambda text: seen.append(threading.current_thread().name) or find(text)  # type: ignore[method-assign]
    policy = PiiPolicy("no-pii", BOTH, "mask", scanner)
    await PolicyEngine([policy]).run(["small john@example.com"], CALL)
    outcome = await PolicyEngine([policy]).run(["x" * 300_000 + " john@example.com"], CALL)
    assert outcome.texts[0].endswith(" [EMAIL]")
    assert seen[0] == threading.main_thread().name and seen[1] != threading.main_thread().name
