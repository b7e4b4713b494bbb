"""The `keywords` kind: word boundaries, phrases across whitespace, case, regexes and their checks."""

from __future__ import annotations

import time

import pytest

from aigw.policies.guardrails.keywords import KeywordError, KeywordMatcher

MATCHER = KeywordMatcher(["project falcon", "falcon", "c++", "re:\\bticket-\\d{6}\\b", "Ärger"])


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("the falcon flies", True), ("FALCON", True), ("falconry", False), ("gyrfalcons", False),
        ("Project\n\t  Falcon", True), ("projectfalcon", False),
        ("I write C++.", True), ("ticket-123456", True), ("ticket-1234567", False), ("viel ärger", True),
        ("", False),
    ],
)
def test_matches(text: str, hit: bool) -> None:
    assert MATCHER.search(text) is hit


@pytest.mark.parametrize(
    ("entry", "problem"),
    [("re:(", "not a valid regular expression"), ("re:(a+)+$", "exponential"), ("re:(?:x|y*)*z", "exponential"),
     ("re:a*", "empty string"), ("   ", "empty"), ("x" * 1001, "longer than")],
)  # fmt: skip
def test_bad_entries_are_refused_with_their_position(entry: str, problem: str) -> None:
    with pytest.raises(KeywordError, match=problem) as raised:
        KeywordMatcher(["fine", entry])
    assert str(raised.value).startswith("[1]")


def test_many_words_cost_little() -> None:
    matcher = KeywordMatcher([f"word{i}x" for i in range(5000)] + ["final phrase"])
    text = "lorem ipsum dolor sit amet " * 4000
    started = time.perf_counter()
    assert not matcher.search(text)
    assert matcher.search(text + " Final  phrase")
    assert time.perf_counter() - started < 2.0


@pytest.mark.timeout(60)
def test_a_slow_regex_is_bounded_by_its_window() -> None:
    matcher = KeywordMatcher(["re:\\d+x"], window=64)
    started = time.perf_counter()
    assert not matcher.search("1" * 200_000)
    assert time.perf_counter() - started < 5.0
    assert matcher.search("1" * 200_000 + "x")  # the match's last window holds it


def test_a_window_edge_is_not_a_word_boundary() -> None:
    matcher = KeywordMatcher(["re:\\bticket-\\d{6}\\b"], window=16)
    text = "x" * 18 + " ticket-1234567 " + "y" * 40  # the first window ends inside the number
    assert not matcher.search(text)
    assert matcher.search(text.replace("1234567", "123456"))
