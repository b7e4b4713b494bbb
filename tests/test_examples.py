"""Every file in examples/ is a valid configuration, with the variables it names set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aigw.config import load_settings

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    variables = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    settings = load_settings(path, environ={name: "x" for name in variables})
    assert settings.endpoints
