"""Gemini at /gemini (being written: registers no routes yet)."""

from __future__ import annotations

from collections.abc import Iterable

from aigw.errors import GatewayError
from aigw.surfaces.common import Handler, Surface


class GeminiSurface(Surface):
    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return ()

    def error_response(self, error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        raise NotImplementedError
