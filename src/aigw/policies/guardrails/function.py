"""The `python` kind: a function by import path decides, called with `(texts, context)`.

Imported when the configuration is read, so an import error stops the start (or refuses a reload).
An async function is awaited; a plain one runs in a worker thread so it never blocks the event loop
(after a timeout it runs on, unwaited: a thread cannot be stopped). It returns a `Verdict`, or a dict
shaped like the webhook's answer; an exception or anything else fails closed unless `on_error: allow`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from .verdicts import OnError, Phase, PolicyContext, Verdict
from .webhook import verdict_from_answer


def import_function(path: str) -> Callable[..., Any]:
    """`package.module:name` (dots after the colon reach attributes); ValueError saying why not."""
    module_name, _, attribute = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # the module's own imports and top-level code count too
        raise ValueError(f"cannot import module '{module_name}': {type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module '{module_name}' has no attribute '{attribute}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"'{attribute}' is not callable")
    return obj


class PythonPolicy:
    stream: str = "buffer"  # on a stream: hold it until checked (buffer), or check at the end (after)

    def __init__(
        self, name: str, phases: frozenset[Phase], func: Callable[..., Any], on_error: OnError, timeout: float | None
    ) -> None:
        self.name, self.phases, self.on_error, self.timeout = name, phases, on_error, timeout
        self._func = func
        self._is_async = inspect.iscoroutinefunction(func)

    async def check(self, texts: list[str], context: PolicyContext) -> Verdict:
        if self._is_async:
            result = await self._func(list(texts), context)
        else:
            result = await asyncio.to_thread(self._func, list(texts), context)
            if inspect.isawaitable(result):
                result = await result
        return verdict_from_answer(result, self.name, context.phase, len(texts))
