"""The `pii` kind: find personal data and secrets, then block the text or mask each finding.

A mask replaces each finding with a typed placeholder (`[EMAIL]`, `[SECRET]`, ...). Where findings
overlap (a phone number inside a card number, an e-mail address inside a JWT's text), the entity
earlier in `ENTITIES` wins. See pii_detectors.py for the detectors and why their regexes are linear.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterable, Literal

from aigw.offload import run_heavy

from .pii_detectors import ENTITIES, Detector, build_detectors
from .verdicts import ALLOW, OnError, Phase, PolicyContext, Verdict, refusal_message

_RANK = {entity: i for i, entity in enumerate(ENTITIES)}


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    entity: str


def resolve(findings: Iterable[Finding]) -> list[Finding]:
    """Non-overlapping findings in text order: by entity priority, then leftmost first."""
    starts: list[int] = []
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (_RANK[f.entity], f.start, -f.end)):
        i = bisect.bisect_right(starts, finding.start)
        if i and kept[i - 1].end > finding.start:
            continue
        if i < len(kept) and kept[i].start < finding.end:
            continue
        starts.insert(i, finding.start)
        kept.insert(i, finding)
    return kept


def apply_mask(text: str, findings: list[Finding], offset: int = 0, end: int | None = None) -> str:
    """`text[offset:end]` with each finding (sorted, inside that range) replaced by its placeholder."""
    end = len(text) if end is None else end
    pieces, at = [], offset
    for finding in findings:
        pieces.append(text[at : finding.start])
        pieces.append(f"[{finding.entity}]")
        at = finding.end
    pieces.append(text[at:end])
    return "".join(pieces)


class PiiScanner:
    """The detectors of one policy: which entities, which default phone region."""

    def __init__(self, entities: Iterable[str] = ENTITIES, region: str = "US") -> None:
        self.entities = frozenset(entities)
        self.detectors: tuple[Detector, ...] = build_detectors(self.entities, region)
        # Every detector's `live` regex in one: the leftmost position any of them matches from.
        self.live = re.compile("|".join(f"(?:{d.live.pattern})" for d in self.detectors)) if self.detectors else None
        self.horizon = max((d.horizon for d in self.detectors), default=0)
        # Needles: one regex is quicker on a stream's few held characters, str.find on long texts.
        self._needles = [re.compile("|".join(map(re.escape, d.needles))) if d.needles else None for d in self.detectors]

    def candidates(self, text: str, pos: int = 0) -> tuple[list[Finding], list[tuple[int, int]]]:
        """Unresolved findings from `pos` on, and the span of every candidate (valid or not, and
        widened to its findings: a candidate may read ahead of what it matched)."""
        findings: list[Finding] = []
        spans: list[tuple[int, int]] = []
        short = len(text) - pos < 512
        for detector, needles in zip(self.detectors, self._needles):
            if needles is not None:
                if short and needles.search(text, pos) is None:
                    continue
                if not short and not any(text.find(needle, pos) >= 0 for needle in detector.needles):
                    continue
            for match in detector.candidates.finditer(text, pos):
                stop = match.end()
                for start, end in detector.validate(text, match):
                    findings.append(Finding(start, end, detector.entity))
                    stop = max(stop, end)
                spans.append((match.start(), stop))
        return findings, spans

    def find(self, text: str) -> list[Finding]:
        return resolve(self.candidates(text)[0])

    def mask(self, text: str) -> str:
        return apply_mask(text, self.find(text))


class PiiPolicy:
    def __init__(
        self, name: str, phases: frozenset[Phase], action: Literal["block", "mask"], scanner: PiiScanner,
        on_error: OnError = "deny", timeout: float | None = None,
    ) -> None:  # fmt: skip
        self.name, self.phases, self.action, self.scanner = name, phases, action, scanner
        self.on_error, self.timeout = on_error, timeout

    async def check(self, texts: list[str], context: PolicyContext) -> Verdict:
        # ~0.1-0.25 ms per KB: a big body is checked on a worker thread, not on the serving loop.
        return await run_heavy(self.decide, texts, context.phase, size=sum(len(t) for t in texts))

    def decide(self, texts: list[str], phase: Phase) -> Verdict:
        found: set[str] = set()
        masked: list[str] = []
        for text in texts:
            findings = self.scanner.find(text) if text else []
            found.update(f.entity for f in findings)
            if self.action == "mask":
                masked.append(apply_mask(text, findings) if findings else text)
        if not found:
            return ALLOW
        categories = sorted(found, key=_RANK.__getitem__)
        if self.action == "block":
            return Verdict.deny(categories, refusal_message(self.name, phase, categories))
        return Verdict.mask(masked, categories)
