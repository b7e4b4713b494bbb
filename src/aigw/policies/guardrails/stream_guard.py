"""One text channel of a streamed result through an endpoint's `result` policies, in declared order.

Each policy is a stage; what a stage releases is fed to the next, so masks compose as they do on a
whole body. A `pii` policy masks (holding back only what may still be a finding) or, with `action:
block`, denies the stream when a finding is complete, before any of it is released. A `keywords`
policy denies as soon as an entry is complete. After a deny nothing more is released: the surface
ends the stream in its own way (finish_reason content_filter, an incomplete response, ...).
Kinds that need the whole text (judge, webhook, python) are not stream stages; their `stream:` mode
decides whether the surface buffers the stream or checks the text at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

from .keywords import KeywordsPolicy
from .pii import PiiPolicy
from .streams import StreamKeywordChecker, StreamMasker
from .verdicts import POLICY_ERROR, Phase, Policy, PolicyContext, PolicyRun, refusal_message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamStep:
    text: str  # safe to send now
    denied: bool = False
    policy: str | None = None  # the policy that denied
    categories: tuple[str, ...] = ()
    message: str = ""


class _Stage:
    def __init__(self, policy: PiiPolicy | KeywordsPolicy) -> None:
        self.policy = policy
        self.elapsed = 0.0
        if isinstance(policy, PiiPolicy):
            self.masker: StreamMasker | None = StreamMasker(policy.scanner)
            self.checker: StreamKeywordChecker | None = None
        else:
            self.masker, self.checker = None, StreamKeywordChecker(policy.matcher)

    def step(self, delta: str, final: bool) -> tuple[str, tuple[str, ...] | None]:
        """(released text, categories of a deny or None)."""
        if self.masker is not None:
            out = self.masker.finish() if final else self.masker.feed(delta)
            if self.masker.found and self.policy.action == "block":  # type: ignore[union-attr]
                return "", tuple(sorted(self.masker.found))
            return out, None
        assert self.checker is not None
        out, denied = self.checker.finish() if final else self.checker.feed(delta)
        return ("", ("keywords",)) if denied else (out, None)

    def categories(self) -> tuple[str, ...]:
        return tuple(sorted(self.masker.found)) if self.masker is not None else ()

    def pending(self) -> str:
        held = self.masker or self.checker
        return held.pending if held is not None else ""


def stream_capable(policy: Policy) -> bool:
    return isinstance(policy, (PiiPolicy, KeywordsPolicy))


class StreamGuard:
    """`feed(delta)` and, at the end, `finish()`; each returns a `StreamStep`. `runs()` gives the
    usage record's entries once the stream is over."""

    def __init__(self, policies: Sequence[Policy], context: PolicyContext) -> None:
        self._stages = [_Stage(p) for p in policies if stream_capable(p) and Phase.RESULT in p.phases]  # type: ignore[arg-type]
        self._context = context
        self._denied: StreamStep | None = None
        self._failed: set[str] = set()

    @property
    def active(self) -> bool:
        return bool(self._stages)

    def feed(self, delta: str) -> StreamStep:
        return self._run(delta, final=False)

    def finish(self) -> StreamStep:
        return self._run("", final=True)

    def _run(self, text: str, final: bool) -> StreamStep:
        if self._denied is not None:
            return StreamStep("", True, self._denied.policy, self._denied.categories, self._denied.message)
        for index, stage in enumerate(self._stages):
            if not text and not final:
                return StreamStep("")
            started = time.perf_counter()
            try:
                if final:  # the text released by the stages before, then this stage's rest
                    released, denied = stage.step(text, final=False) if text else ("", None)
                    if denied is None:
                        rest, denied = stage.step("", final=True)
                        released += rest
                else:
                    released, denied = stage.step(text, final=False)
            except Exception as exc:  # noqa: BLE001: a failing policy is its verdict, never a broken stream
                log.warning("policy %s failed on a stream: %s", stage.policy.name, type(exc).__name__)
                self._failed.add(stage.policy.name)
                if stage.policy.on_error == "allow":  # what it held goes on unchecked, then all that follows
                    stage.elapsed += (time.perf_counter() - started) * 1000
                    text = stage.pending() + text
                    self._stages[index] = _PassThrough(stage)
                    continue
                released, denied = "", (POLICY_ERROR,)
            stage.elapsed += (time.perf_counter() - started) * 1000
            if denied is not None:
                message = refusal_message(stage.policy.name, Phase.RESULT, denied)
                self._denied = StreamStep("", True, stage.policy.name, denied, message)
                return self._denied
            text = released
        return StreamStep(text)

    def runs(self) -> tuple[PolicyRun, ...]:
        records = []
        for stage in self._stages:
            name = stage.policy.name
            if self._denied is not None and self._denied.policy == name:
                action, categories = "deny", self._denied.categories
            elif name in self._failed:
                action, categories = "allow", (POLICY_ERROR,)
            else:
                categories = stage.categories()
                action = "mask" if categories else "allow"
            records.append(PolicyRun(name, Phase.RESULT, action, categories, stage.elapsed))  # type: ignore[arg-type]
        return tuple(records)


class _PassThrough(_Stage):
    """A stage whose policy failed with `on_error: allow`: the text goes on unchecked."""

    def __init__(self, failed: _Stage) -> None:  # noqa: D107
        self.policy, self.elapsed, self.masker, self.checker = failed.policy, failed.elapsed, None, None

    def step(self, delta: str, final: bool) -> tuple[str, tuple[str, ...] | None]:
        return delta, None

    def categories(self) -> tuple[str, ...]:
        return ()
