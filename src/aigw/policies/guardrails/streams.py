"""Policies on streamed text: release what is safe as soon as it is safe, and no sooner.

`StreamMasker` masks one text channel (e.g. an assistant message's content deltas). It holds back
only text that could still be part of a finding: each detector's `live` regex marks where a finding
might still be in progress at the end of what arrived, and a candidate that straddles the cut moves
the cut before it. Everything before the cut is final: its findings cannot change whatever follows,
so the concatenated outputs equal the one-shot mask of the whole text, however the text was split.
What is held is bounded by the longest finding of the enabled entities: a few characters after an
ordinary word, up to ~12 KB inside a JWT and ~16 KB inside a PEM private-key block (which is a
single finding and must not leak in part).

`StreamKeywordChecker` says deny as soon as a keyword or phrase is complete, holding back the
longest entry's length (whitespace runs counting once), so a denied phrase never reaches the
client; `re:` entries hold back their window.
"""

from __future__ import annotations

import re

from .keywords import KeywordMatcher
from .pii import PiiScanner, apply_mask, resolve

_CONTEXT = 64  # released characters kept for lookbehinds and the detectors' left context
# Deciding what to release costs time in proportion to what is held. While much is held (inside a
# key block, a long whitespace run) the decision waits until the held text has grown by a quarter,
# so a stream costs linear time whatever it holds. Waiting is safe: fewer, larger chunks give the
# same output.
_EAGER_HOLD = 1024
_KEYWORD_HOLD_LIMIT = 64 * 1024  # past this, held text is released even inside a whitespace run
_SPACE_RUNS = re.compile(r"\s{2,}")


class StreamMasker:
    """`feed(delta)` returns the text now safe to release (masked); `finish()` returns the rest."""

    def __init__(self, scanner: PiiScanner) -> None:
        self._scanner = scanner
        self._text = ""  # kept context, then the text not yet released
        self._start = 0  # where the unreleased text begins in _text
        self.found: set[str] = set()  # the entities of the findings released so far (masked)
        self._waiting = 0  # characters arrived since the last decision

    @property
    def held(self) -> int:
        return len(self._text) - self._start

    @property
    def pending(self) -> str:
        """The text held back, as it arrived."""
        return self._text[self._start :]

    def feed(self, delta: str) -> str:
        if not delta:
            return ""
        self._text += delta
        if not self._scanner.detectors:
            return self._release(len(self._text), [])
        self._waiting += len(delta)
        if self.held > _EAGER_HOLD and self._waiting < self.held // 4:
            return ""
        self._waiting = 0
        return self._release(*self._safe_cut())

    def finish(self) -> str:
        findings, _ = self._scanner.candidates(self._text, self._start)
        return self._release(len(self._text), findings)

    def _safe_cut(self) -> tuple[int, list]:
        text, end = self._text, len(self._text)
        assert self._scanner.live is not None
        live = self._scanner.live.search(text, max(self._start, end - self._scanner.horizon))
        cut = end if live is None else live.start()
        if cut <= self._start:  # the usual case mid-word: nothing to release, nothing to scan
            return cut, []
        findings, spans = self._scanner.candidates(text, self._start)
        moved = True
        while moved:  # a candidate across the cut is not final: cut before it (which may cross another)
            moved = False
            for start, stop in spans:
                if start < cut < stop:
                    cut, moved = start, True
        return cut, findings

    def _release(self, cut: int, findings: list) -> str:
        if cut <= self._start:
            return ""
        final = resolve(f for f in findings if f.start < cut)
        self.found.update(f.entity for f in final)
        out = apply_mask(self._text, final, self._start, cut)
        keep = max(0, cut - _CONTEXT)
        self._text = self._text[keep:]
        self._start = cut - keep
        return out


class StreamKeywordChecker:
    """`feed(delta)` returns `(text safe to release, denied)`; once denied, nothing more is released."""

    def __init__(self, matcher: KeywordMatcher) -> None:
        self._matcher = matcher
        self._hold = matcher.longest + 1 if matcher.words is not None else 0  # +1: the boundary after
        if matcher.regexes:
            self._hold = max(self._hold, matcher.window)
        self._context = 8  # for the lookbehind at a keyword's start
        self._text = ""
        self._start = 0
        self._waiting = 0
        self.denied = False

    @property
    def pending(self) -> str:
        return self._text[self._start :]

    def feed(self, delta: str) -> tuple[str, bool]:
        if self.denied:
            return "", True
        self._text += delta
        self._waiting += len(delta)
        if len(self._text) - self._start > _EAGER_HOLD and self._waiting < (len(self._text) - self._start) // 4:
            return "", False
        self._waiting = 0
        if self._matches(final=False):
            return self._deny()
        return self._release(self._cut()), False

    def finish(self) -> tuple[str, bool]:
        if self.denied or self._matches(final=True):
            return self._deny()
        return self._release(len(self._text)), False

    def _matches(self, final: bool) -> bool:
        """A match counts once the character after it has arrived (it may yet continue a word). No
        match starts in released text (that is what the hold is for), so the search starts there."""
        text, end = self._text, len(self._text)
        patterns = ([self._matcher.words] if self._matcher.words is not None else []) + self._matcher.regexes
        for pattern in patterns:
            for match in pattern.finditer(text, self._start):
                if match.end() < end or final:
                    return True
        return False

    def _cut(self) -> int:
        """`hold` characters back from the end, a whitespace run counting as one character."""
        text, end = self._text, len(self._text)
        cut = max(self._start, end - self._hold)
        while cut > self._start:  # widen by the extra whitespace in the tail until it is stable
            extra = sum(run.end() - run.start() - 1 for run in _SPACE_RUNS.finditer(text, cut, end))
            widened = max(self._start, end - self._hold - extra)
            if widened == cut:
                break
            cut = widened
        return max(cut, end - _KEYWORD_HOLD_LIMIT)

    def _release(self, cut: int) -> str:
        if cut <= self._start:
            return ""
        out = self._text[self._start : cut]
        keep = max(0, cut - self._context)
        self._text = self._text[keep:]
        self._start = cut - keep
        return out

    def _deny(self) -> tuple[str, bool]:
        self.denied = True
        self._text, self._start = "", 0
        return "", True
