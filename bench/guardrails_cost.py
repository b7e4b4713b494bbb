"""What the built-in content policies cost per KB of text: `pii` (find, mask, and the stream masker fed
in ~4-character deltas like a token stream) and `keywords` (a short and a 1,000-entry list), on
ordinary chat text with and without personal data in it. Run: `python bench/guardrails_cost.py`.
"""

from __future__ import annotations

import timeit

from aigw.policies.guardrails.keywords import KeywordMatcher
from aigw.policies.guardrails.pii import PiiScanner
from aigw.policies.guardrails.streams import StreamKeywordChecker, StreamMasker

PROSE = (
    "Thanks for the summary. Could you rewrite the second paragraph so it reads more naturally, keep "
    "the numbers as they are (we shipped 1,240 units in Q3, up 12% on Q2), and suggest a title? The "
    "audience is the sales team, so avoid jargon and keep it under 200 words. "
)
WITH_PII = (
    "Hi, I'm Jane, reach me at jane.doe@example.com or call (202) 555-0143. My card 4111 1111 1111 1111 "
    "was charged twice; the refund can go to DE89 3704 0044 0532 0130 00. The server 10.0.3.7 logged it. "
)


def kb_of(paragraph: str) -> str:
    return (paragraph * (1024 // len(paragraph) + 1))[:1024]


def per_kb(fn, repeat: int = 200) -> float:
    """Microseconds per call of fn (one call handles 1 KB)."""
    return min(timeit.repeat(fn, number=repeat, repeat=5)) / repeat * 1e6


def stream_masker(scanner: PiiScanner, text: str) -> None:
    masker = StreamMasker(scanner)
    for at in range(0, len(text), 4):
        masker.feed(text[at : at + 4])
    masker.finish()


def stream_keywords(matcher: KeywordMatcher, text: str) -> None:
    checker = StreamKeywordChecker(matcher)
    for at in range(0, len(text), 4):
        checker.feed(text[at : at + 4])
    checker.finish()


def main() -> None:
    scanner = PiiScanner()
    short = KeywordMatcher(["project falcon", "confidential", "re:\\bticket-\\d{6}\\b"])
    words = KeywordMatcher(["project falcon", "confidential"])
    long = KeywordMatcher([f"codename{i}" for i in range(1000)] + ["project falcon"])
    rows = []
    for label, paragraph in (("prose", PROSE), ("with PII", WITH_PII)):
        text = kb_of(paragraph)
        rows += [
            (f"pii find ({label})", per_kb(lambda: scanner.find(text))),
            (f"pii mask ({label})", per_kb(lambda: scanner.mask(text))),
            (f"pii stream, 4-char deltas ({label})", per_kb(lambda: stream_masker(scanner, text), 20)),
            (f"keywords, 3 entries ({label})", per_kb(lambda: short.search(text))),
            (f"keywords, 1,001 entries ({label})", per_kb(lambda: long.search(text))),
            (f"keywords stream, words only ({label})", per_kb(lambda: stream_keywords(words, text), 20)),
            (f"keywords stream, with an re: entry ({label})", per_kb(lambda: stream_keywords(short, text), 20)),
        ]
    print(f"{'kind':<44} {'us per KB':>10}")
    for name, micros in rows:
        print(f"{name:<44} {micros:>10.1f}")


if __name__ == "__main__":
    main()
