"""Pytest fixtures for the fake upstream.

In ``tests/conftest.py``::

    from tests.fakes.fixtures import fake_upstream  # noqa: F401
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .server import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    """One fake upstream (all three vendors) for the whole session; ``.clear()`` it as needed."""
    fake = FakeUpstream().start()
    try:
        yield fake
    finally:
        fake.stop()
