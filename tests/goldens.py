"""Golden files for the translator tests: compare with the file under tests/golden/<wire>/, or rewrite it
with AIGW_UPDATE_GOLDEN=1 (then read the diff: a golden file is only as right as the eye that checked it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

UPDATE = os.environ.get("AIGW_UPDATE_GOLDEN") == "1"


class Goldens:
    def __init__(self, wire: str) -> None:
        self.root = Path(__file__).parent / "golden" / wire

    def json(self, name: str, actual: Any) -> None:
        path = self.root / name
        if UPDATE:
            path.write_bytes(orjson.dumps(actual, option=orjson.OPT_INDENT_2) + b"\n")
        assert actual == orjson.loads(path.read_bytes()), f"differs from {name} (AIGW_UPDATE_GOLDEN=1 rewrites it)"

    def bytes(self, name: str, actual: bytes) -> None:
        path = self.root / name
        if UPDATE:
            path.write_bytes(actual)
        assert actual == path.read_bytes(), f"differs from {name} (AIGW_UPDATE_GOLDEN=1 rewrites it)"

    def load(self, name: str) -> Any:
        return orjson.loads((self.root / name).read_bytes())
