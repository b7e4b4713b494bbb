"""Fake OpenAI / Anthropic / Gemini upstream servers for aigw's end-to-end tests.

See ``scenario.py`` for the behaviour chosen by the model name, ``server.py``
for :class:`FakeUpstream`, and ``fixtures.py`` for the ``fake_upstream`` fixture.
"""

from typing import Any

__all__ = ["FakeUpstream", "build_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``python -m tests.fakes.server`` does not import server.py twice.
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
