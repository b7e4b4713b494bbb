"""Python functions as hosted tools: a configured import path becomes a tool the model can call.

The JSON schema the model sees is derived from the function's signature with msgspec, and the same
msgspec struct validates and converts the model's arguments, so what the schema promises is what the
function receives. Plain functions run in a worker thread so a slow one never blocks the event loop;
every call is bounded by the configured timeout. Whatever goes wrong is raised as a `ToolError` whose
message is meant for the model, which can then fix its arguments or carry on without the tool.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from aigw.config import FunctionConfig

_SCHEMA_VALUE_KEYS = frozenset({"default", "enum", "const", "examples"})  # JSON values, not schemas
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs"})  # name -> schema: names are not keywords
_ARGS_SECTION = re.compile(r"^(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class ToolError(Exception):
    """A failed tool call; the message is what the model is told."""


class PythonFunction:
    __slots__ = ("name", "description", "parameters", "timeout", "_func", "_is_async", "_arguments", "_positional")

    def __init__(self, name: str, func: Callable[..., Any], description: str | None, timeout: float) -> None:
        signature = _signature(name, func)
        self.name = name
        self.timeout = timeout
        self._func = func
        self._is_async = inspect.iscoroutinefunction(func)
        self._arguments = _arguments_struct(name, signature)
        # Positional-only parameters have to be passed in order, every time.
        self._positional = [p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_ONLY]
        doc = inspect.getdoc(func.func if isinstance(func, functools.partial) else func) or ""  # not partial's own
        self.description = description if description is not None else _summary(doc)
        self.parameters = _parameters_schema(name, self._arguments, signature, _arg_descriptions(doc))

    @classmethod
    def load(cls, config: FunctionConfig) -> PythonFunction:
        """Import `config.function` ("pkg.mod:func" or "pkg.mod.func"); ValueError if it is unusable."""
        return cls(config.name, _import(config.function), config.description, config.timeout)

    async def call(self, arguments: str) -> str:
        """Run the function with the model's JSON `arguments`; the result as text for the model."""
        args, kwargs = self._decode(arguments)
        try:
            result = await asyncio.wait_for(self._run(args, kwargs), self.timeout)
        except TimeoutError:
            # A thread cannot be stopped: a timed-out sync function runs on, but nobody waits for it.
            raise ToolError(f"{self.name} timed out after {self.timeout:g} s") from None
        return _result_text(result)

    def _decode(self, arguments: str) -> tuple[list[Any], dict[str, Any]]:
        try:
            data = msgspec.json.decode(arguments) if arguments.strip() else {}  # "" for no arguments
        except msgspec.DecodeError as exc:
            raise ToolError(f"arguments are not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ToolError("arguments must be a JSON object")
        try:
            values = msgspec.convert(data, self._arguments)
        except msgspec.ValidationError as exc:
            raise ToolError(f"invalid arguments: {exc}") from None
        args = [getattr(values, name) for name in self._positional]
        # Only what the model gave: the function's own defaults apply to the rest, as in Python.
        kwargs = {name: getattr(values, name) for name in data if name not in self._positional}
        return args, kwargs

    async def _run(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        # Exceptions become ToolErrors here, inside wait_for, so the function raising its own
        # TimeoutError is not mistaken for our timeout.
        try:
            if self._is_async:
                return await self._func(*args, **kwargs)
            result = await asyncio.to_thread(self._func, *args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        except Exception as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc


def _import(path: str) -> Callable[..., Any]:
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"function {path!r}: expected an import path like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # the module's own imports and top-level code count too
        raise ValueError(f"function {path!r}: cannot import module {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"function {path!r}: module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(obj):
        raise ValueError(f"function {path!r}: {attribute!r} is not callable")
    return obj


def _signature(name: str, func: Callable[..., Any]) -> inspect.Signature:
    try:  # eval_str: string annotations (`from __future__ import annotations`) become types
        signature = inspect.signature(func, eval_str=True)
    except Exception as exc:  # no signature (some builtins), or an annotation naming nothing
        raise ValueError(f"function {name!r}: cannot read its signature: {exc}") from None
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ValueError(f"function {name!r}: *args and **kwargs cannot be described to a model ({param})")
    return signature


def _arguments_struct(name: str, signature: inspect.Signature) -> type[msgspec.Struct]:
    """The msgspec struct of the parameters: it gives both the schema and the validation."""
    fields: list[tuple[str, Any, Any]] = []
    for param in signature.parameters.values():
        annotation = Any if param.annotation is param.empty else param.annotation  # any JSON value
        if param.default is param.empty:
            fields.append((param.name, annotation, msgspec.NODEFAULT))
        else:
            # A factory accepts any default (mutable, or not JSON); the schema gets it separately.
            fields.append((param.name, annotation, msgspec.field(default_factory=lambda d=param.default: d)))
    return msgspec.defstruct(f"{name}_arguments", fields, kw_only=True, forbid_unknown_fields=True)


def _parameters_schema(
    name: str, struct: type[msgspec.Struct], signature: inspect.Signature, descriptions: dict[str, str]
) -> dict[str, Any]:
    """A plain `{"type": "object", ...}` schema, nested types inlined (models handle $ref poorly)."""
    try:
        schema = msgspec.json.schema(struct)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"function {name!r}: a parameter type has no JSON schema: {exc}") from None
    defs: dict[str, Any] = schema.get("$defs", {})
    top = _ref_name(schema["$ref"])
    root = _inline(defs[top], defs, frozenset({top}))
    root.pop("title", None)
    root.setdefault("required", [])
    for param in signature.parameters.values():
        prop = root["properties"][param.name]
        if param.name in descriptions:
            prop["description"] = descriptions[param.name]
        if param.default is not param.empty:
            try:
                prop["default"] = msgspec.to_builtins(param.default)
            except TypeError:
                pass  # not a JSON value: the model just isn't told
    kept = _refs(root)  # left only by recursive types
    if kept:
        out: dict[str, Any] = {}
        while kept:
            ref = kept.pop()
            out[ref] = _inline(defs[ref], defs, frozenset({ref}))
            kept |= _refs(out[ref]) - out.keys()
        root["$defs"] = out
    return root


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _inline(node: Any, defs: dict[str, Any], seen: frozenset[str]) -> Any:
    """`node` with each $ref replaced by its definition, except refs back into `seen` (recursion)."""
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node and _ref_name(node["$ref"]) not in seen:
        ref = _ref_name(node["$ref"])
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**_inline(defs[ref], defs, seen | {ref}), **rest}
    return {k: _inline_member(k, v, defs, seen) for k, v in node.items()}


def _inline_member(key: str, value: Any, defs: dict[str, Any], seen: frozenset[str]) -> Any:
    if key in _SCHEMA_VALUE_KEYS:
        return value
    if key in _SCHEMA_MAPS:
        return {name: _inline(schema, defs, seen) for name, schema in value.items()}
    return _inline(value, defs, seen)


def _refs(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = {_ref_name(node["$ref"])} if "$ref" in node else set()
    for key, value in node.items():
        if key in _SCHEMA_MAPS:
            found.update(*(_refs(schema) for schema in value.values()))
        elif key not in _SCHEMA_VALUE_KEYS:
            found |= _refs(value)
    return found


def _summary(doc: str) -> str:
    """The docstring's first paragraph, on one line."""
    paragraph = doc.strip().split("\n\n", 1)[0]
    if _ARGS_SECTION.match(paragraph.split("\n", 1)[0]):
        return ""
    return " ".join(line.strip() for line in paragraph.splitlines())


def _arg_descriptions(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style `Args:` section: `name (type): text`, continued
    on more-indented lines; the section ends at the first line indented no deeper than its title."""
    descriptions: dict[str, str] = {}
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if _ARGS_SECTION.match(line.strip())), None)
    if start is None:
        return descriptions
    title_indent = _indent(lines[start])
    entry_indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = _indent(line)
        if indent <= title_indent:
            break
        entry_indent = indent if entry_indent is None else entry_indent
        match = _ARG_LINE.match(line.strip()) if indent == entry_indent else None
        if match:
            current = match[1]
            descriptions[current] = match[2].strip()
        elif current is not None and indent > entry_indent:
            descriptions[current] = f"{descriptions[current]} {line.strip()}".strip()
    return {name: text for name, text in descriptions.items() if text}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    try:
        return orjson.dumps(result, default=msgspec.to_builtins, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError: not JSON at all
        return str(result)
