"""The `keywords` kind: deny-lists of words, phrases and regular expressions.

Words and phrases match case-insensitively on word boundaries ("falcon" does not match "falconry"),
and a phrase's words match across any run of whitespace. They are compiled into one regex shaped like
a trie (shared prefixes are tried once), so a long list costs little more than a short one. Entries
with an `re:` prefix are regular expressions (case-insensitive too), checked at load; since an
operator's regex may be slow on some input, each is matched within windows of `window` characters.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from aigw.offload import run_heavy

from .verdicts import ALLOW, OnError, Phase, PolicyContext, Verdict, refusal_message

try:  # the parser behind re.compile; where it is missing, the nesting check is skipped
    from re import _constants as _sre_constants, _parser as _sre_parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _sre_parser = None

REGEX_PREFIX = "re:"
DEFAULT_WINDOW = 256
MAX_ENTRY_CHARS = 1000
_WORD_CHAR = re.compile(r"\w")


class KeywordError(ValueError):
    """An entry that cannot be used; the message names the entry's position, never asks for a fix."""


def _trie_pattern(phrases: Iterable[str]) -> str:
    """One alternation for many phrases (each lower-case, words single-spaced), as a trie."""
    trie: dict[str, Any] = {}
    for phrase in phrases:
        node = trie
        for char in phrase:
            node = node.setdefault(char, {})
        node[""] = {}  # the end of a phrase

    def emit(node: dict[str, Any], last: str) -> str:
        branches = []
        for char, child in sorted(node.items(), key=lambda item: item[0] == ""):
            if char == "":
                branches.append(r"(?!\w)" if _WORD_CHAR.match(last) else "")
            else:
                branches.append((r"\s++" if char == " " else re.escape(char)) + emit(child, char))
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    groups = []
    for starts_with_word in (True, False):
        sub = {c: n for c, n in trie.items() if bool(_WORD_CHAR.match(c)) == starts_with_word}
        if sub:
            groups.append((r"(?<!\w)" if starts_with_word else "") + emit(sub, ""))
    return "|".join(groups)


def _nested_unbounded(tree: Any, inside: bool = False) -> bool:
    """Does a repetition without an upper bound contain another one? (`(a+)+`, `(.*)*`: the
    patterns that backtrack exponentially.)"""
    for op, arg in tree:
        if op in (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT, _sre_constants.POSSESSIVE_REPEAT):
            low, high, sub = arg
            unbounded = high == _sre_constants.MAXREPEAT
            if unbounded and inside:
                return True
            if _nested_unbounded(sub, inside or unbounded):
                return True
        elif op is _sre_constants.SUBPATTERN:
            if _nested_unbounded(arg[-1], inside):
                return True
        elif op is _sre_constants.BRANCH:
            if any(_nested_unbounded(branch, inside) for branch in arg[1]):
                return True
        elif op in (_sre_constants.ASSERT, _sre_constants.ASSERT_NOT):
            if _nested_unbounded(arg[1], inside):
                return True
        elif op is _sre_constants.ATOMIC_GROUP:
            if _nested_unbounded(arg, inside):
                return True
    return False


def compile_regex(source: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(source, re.IGNORECASE)
    except re.error as exc:
        raise KeywordError(f"not a valid regular expression: {exc}") from None
    if _sre_parser is not None and _nested_unbounded(_sre_parser.parse(source, re.IGNORECASE)):
        raise KeywordError("a repetition inside an unbounded repetition (like (a+)+) can take exponential time")
    if pattern.match(""):
        raise KeywordError("the regular expression matches an empty string")
    return pattern


class KeywordMatcher:
    """A deny-list, compiled once."""

    def __init__(self, entries: Iterable[str], window: int = DEFAULT_WINDOW) -> None:
        phrases: list[str] = []
        self.regexes: list[re.Pattern[str]] = []
        for i, entry in enumerate(entries):
            if len(entry) > MAX_ENTRY_CHARS:
                raise KeywordError(f"[{i}]: longer than {MAX_ENTRY_CHARS} characters")
            if entry.startswith(REGEX_PREFIX):
                try:
                    self.regexes.append(compile_regex(entry[len(REGEX_PREFIX) :]))
                except KeywordError as exc:
                    raise KeywordError(f"[{i}]: {exc}") from None
                continue
            phrase = " ".join(entry.lower().split())
            if not phrase:
                raise KeywordError(f"[{i}]: empty")
            phrases.append(phrase)
        self.words = re.compile(_trie_pattern(phrases), re.IGNORECASE) if phrases else None
        self.longest = max((len(p) for p in phrases), default=0)  # whitespace runs counted once
        self.window = window

    def search(self, text: str) -> bool:
        if self.words is not None and self.words.search(text):
            return True
        return any(self._search_windowed(regex, text) for regex in self.regexes)

    def _search_windowed(self, regex: re.Pattern[str], text: str) -> bool:
        """Windows of 2 x window, a window apart: every match up to `window` long lies in one. A
        match touching a window's cut end may be an artefact of the cut (`\b`, `$`): the next
        window holds it whole."""
        span = 2 * self.window
        if len(text) <= span:
            return regex.search(text) is not None
        for at in range(0, len(text) - self.window, self.window):
            stop = at + span
            for match in regex.finditer(text, at, stop):
                if match.end() < stop or stop >= len(text):
                    return True
        return False


class KeywordsPolicy:
    def __init__(
        self, name: str, phases: frozenset[Phase], matcher: KeywordMatcher, on_error: OnError = "deny",
        timeout: float | None = None,
    ) -> None:  # fmt: skip
        self.name, self.phases, self.matcher = name, phases, matcher
        self.on_error, self.timeout = on_error, timeout

    async def check(self, texts: list[str], context: PolicyContext) -> Verdict:
        size = sum(len(t) for t in texts)
        if await run_heavy(self.matches, texts, size=size):  # a big body on a worker thread
            return Verdict.deny(("keywords",), refusal_message(self.name, context.phase, ("keywords",)))
        return ALLOW

    def matches(self, texts: list[str]) -> bool:
        return any(text and self.matcher.search(text) for text in texts)
