"""Streams: the masker's output, however the text is split, equals the one-shot mask; it holds back
only what may still be part of a finding; the keyword checker denies before a phrase is released."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from aigw.policies.guardrails.keywords import KeywordMatcher
from aigw.policies.guardrails.pii import PiiScanner
from aigw.policies.guardrails.streams import StreamKeywordChecker, StreamMasker

SCANNER = PiiScanner()
PIECES = [
    "john.doe@example.com", "a.b+x@sub.example.co.uk", "(202) 555-0143", "+44 20 7946 0958", "call ", "2025550143",
    "4111 1111 1111 1111", "4111111111111111", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "078-05-1120",
    "192.168.1.10", "2001:db8::1", "version ", "sk-proj-" + "aB3xY9" * 8, "AKIAIOSFODNN7EXAMPLE", "ghp_" + "a1B2" * 9,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "-----BEGIN RSA PRIVATE KEY-----", "\nMIIBOgIBAAJBAKj34Gkx",
    "-----END RSA PRIVATE KEY-----", "-----", "-", ".", ",", ":", "@", "+", "(", " ", "\n", "1", "9", "a", "Z", "ff", "x",
]  # fmt: skip
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(alphabet="0123456789 .-:@+()aeAEx\n", max_size=6)), max_size=14).map("".join)


def stream(masker: StreamMasker, text: str, cuts: list[int]) -> str:
    out, at = [], 0
    for size in cuts:
        if at >= len(text):
            break
        out.append(masker.feed(text[at : at + size]))
        at += size
    out.append(masker.feed(text[at:]))
    out.append(masker.finish())
    return "".join(out)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, cuts=st.lists(st.integers(min_value=1, max_value=12), max_size=40))
def test_any_chunking_gives_the_one_shot_mask(text: str, cuts: list[int]) -> None:
    assert stream(StreamMasker(SCANNER), text, cuts) == SCANNER.mask(text)


@settings(max_examples=200, deadline=None)
@given(text=texts, entity=st.sampled_from(["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "SECRET"]))
def test_one_character_at_a_time_with_one_entity(text: str, entity: str) -> None:
    scanner = PiiScanner([entity])
    assert stream(StreamMasker(scanner), text, [1] * len(text)) == scanner.mask(text)


def test_an_address_split_across_chunks_never_leaks() -> None:
    masker = StreamMasker(SCANNER)
    released = [masker.feed(chunk) for chunk in ["Write to jo", "hn.doe@exa", "mple.com today", " please"]]
    released.append(masker.finish())
    assert "".join(released) == "Write to [EMAIL] today please"
    assert not any("john" in part or "example" in part for part in released)


def test_ordinary_text_is_held_back_by_a_word_at_most() -> None:
    masker = StreamMasker(SCANNER)
    out = masker.feed("The quick brown fox jumps over the lazy dog and ")
    assert out.startswith("The quick brown fox jumps over the lazy dog")
    assert masker.held <= len(" and ")


def test_a_key_block_is_held_until_its_end_and_memory_stays_bounded() -> None:
    masker = StreamMasker(SCANNER)
    assert masker.feed("key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0") == "key:\n"
    assert masker.feed("\n-----END PRIVATE KEY-----\nbye") == "[SECRET]\n"
    assert masker.finish() == "bye"
    endless = StreamMasker(SCANNER)
    endless.feed("-----BEGIN PRIVATE KEY-----\n")
    for _ in range(3000):
        endless.feed("abcdefghij")
    assert endless.held < 20_000


def test_keywords_deny_before_the_phrase_is_released() -> None:
    checker = StreamKeywordChecker(KeywordMatcher(["project falcon"]))
    released = []
    for chunk in ["Tell me about the pro", "ject  ", "fal", "con plans"]:
        text, denied = checker.feed(chunk)
        released.append(text)
        if denied:
            break
    assert denied
    assert "falcon" not in "".join(released).lower() and "project" not in "".join(released).lower()


def test_keywords_wait_for_the_word_to_end() -> None:
    checker = StreamKeywordChecker(KeywordMatcher(["falcon"]))
    first, denied = checker.feed("a falcon")
    assert not denied  # it may still be "falconry"
    second, denied = checker.feed("ry is an art")
    assert not denied
    rest, denied = checker.finish()
    assert not denied and first + second + rest == "a falconry is an art"
    checker = StreamKeywordChecker(KeywordMatcher(["falcon"]))
    checker.feed("a falcon")
    assert checker.finish() == ("", True)


def test_regex_keywords_hold_back_their_window() -> None:
    checker = StreamKeywordChecker(KeywordMatcher([r"re:ticket-\d{6}"], window=32))
    out, denied = checker.feed("x" * 100)
    assert not denied and len(out) == 100 - 32
    assert checker.feed(" ticket-12")[1] is False
    assert checker.feed("3456 ")[1] is True


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(alphabet="ab \n", max_size=30), after=st.text(alphabet="ab \n.", max_size=10),
    cuts=st.lists(st.integers(min_value=1, max_value=5), max_size=30),
)
def test_a_denied_phrase_never_reaches_the_client(before: str, after: str, cuts: list[int]) -> None:
    text = before + " Project \n Falcon" + (" " + after if after else "")
    checker = StreamKeywordChecker(KeywordMatcher(["project falcon", "re:b{5}"]))
    released, at, denied = [], 0, False
    for size in cuts + [len(text)]:
        piece, denied = checker.feed(text[at : at + size])
        released.append(piece)
        at += size
        if denied or at >= len(text):
            break
    if not denied:
        piece, denied = checker.finish()
        released.append(piece)
    assert denied
    assert "falcon" not in "".join(released).lower()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN PRIVATE KEY-----\n" + "QUJD" * 100_000,  # a key block that never ends
        "eyJhbGciOiJub25lIn0." + "a" * 400_000,  # a JWT that never ends
        "a" * 400_000, "1 " * 200_000, "john" + "." * 400_000,
    ],
)
def test_a_long_hostile_stream_costs_linear_time(text: str) -> None:
    started = time.perf_counter()
    masker = StreamMasker(SCANNER)
    for at in range(0, len(text), 4):
        masker.feed(text[at : at + 4])
        assert masker.held < 40_000
    masker.finish()
    assert time.perf_counter() - started < 20  # ~1-3 s measured alone: 100k feeds


@pytest.mark.timeout(120)
def test_a_long_whitespace_run_costs_the_keyword_checker_linear_time() -> None:
    checker = StreamKeywordChecker(KeywordMatcher(["project falcon", "re:x{3}"]))
    started = time.perf_counter()
    for _ in range(100_000):
        checker.feed("    ")
    rest, denied = checker.finish()
    assert not denied and rest.strip() == "" and len(rest) < 90_000  # the 64 KiB limit plus a quarter
    assert time.perf_counter() - started < 20
