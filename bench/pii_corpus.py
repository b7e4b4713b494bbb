"""Prints the `pii` policy's precision and recall per entity on the labelled corpus
(tests/data/pii_corpus.jsonl; exact spans). Run: `python bench/pii_corpus.py [-v]` (-v: each mistake).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pii_corpus_eval import evaluate  # noqa: E402


def main() -> None:
    table, mistakes = evaluate()
    print(f"{'entity':<12} {'labelled':>8} {'precision':>10} {'recall':>8}")
    for entity, (precision, recall, labelled) in table.items():
        print(f"{entity:<12} {labelled:>8} {precision:>10.3f} {recall:>8.3f}")
    if "-v" in sys.argv:
        print("\n".join(mistakes))


if __name__ == "__main__":
    main()
