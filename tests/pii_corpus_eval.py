"""Precision and recall of the `pii` detectors per entity on tests/data/pii_corpus.jsonl.

A finding counts as found only with the right entity and the exact span."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from aigw.policies.guardrails.pii import PiiScanner
from aigw.policies.guardrails.pii_detectors import ENTITIES

CORPUS = Path(__file__).resolve().parent / "data" / "pii_corpus.jsonl"


def evaluate(path: Path = CORPUS) -> tuple[dict[str, tuple[float, float, int]], list[str]]:
    """{entity: (precision, recall, labelled count)} and a description of each mistake."""
    scanner = PiiScanner()
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    mistakes: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        row = json.loads(line)
        text = row["text"]
        expected = {(e["entity"], e["start"], e["end"]) for e in row["entities"]}
        found = {(f.entity, f.start, f.end) for f in scanner.find(text)}
        for entity, start, end in found & expected:
            tp[entity] += 1
        for entity, start, end in found - expected:
            fp[entity] += 1
            mistakes.append(f"line {number}: false {entity}: {text[start:end]!r}")
        for entity, start, end in expected - found:
            fn[entity] += 1
            mistakes.append(f"line {number}: missed {entity}: {text[start:end]!r}")
    table = {}
    for entity in ENTITIES:
        found, labelled = tp[entity] + fp[entity], tp[entity] + fn[entity]
        table[entity] = (tp[entity] / found if found else 1.0, tp[entity] / labelled if labelled else 1.0, labelled)
    return table, mistakes
