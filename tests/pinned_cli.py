"""The real command-line clients the suite runs (Claude Code, Codex CLI), installed by .ci/run at
pinned versions: a test gets the binary, or is skipped when it is missing, except under CI=true,
where a missing or wrong client fails the test instead (a skipped client proves nothing)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def require_cli(binary: Path, version_line: str, install_hint: str) -> Path:
    """`binary` if `binary --version` prints exactly `version_line`."""
    if not os.access(binary, os.X_OK):
        problem = f"{binary} is not installed"
    else:
        try:
            printed = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError as exc:  # e.g. Node missing for a Node wrapper
            printed = f"unrunnable ({exc})"
        problem = None if printed == version_line else f"{binary} says {printed!r}, not {version_line!r}"
    if problem is None:
        return binary
    problem += f": `bash .ci/run` installs it ({install_hint})"
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)
