"""Checking a parsed request body against its wire's schema: nesting depth first, then the typed
msgspec schema (types, required fields, numeric bounds), a failure becoming a 400 that names the
field in OpenAI's style ("Invalid type for 'messages[0].role': expected a string, but got an
object instead."). Each surface renders it in its own error shape.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from aigw.errors import ErrorKind, GatewayError, invalid
from aigw.wire.schemas.bounds import MAX_DEPTH


class Schema(msgspec.Struct, gc=False):
    """Base of every request schema: unknown fields are allowed (vendor features pass through);
    only the fields the gateway reads are typed. Instances are thrown away: only the check counts."""


def check_depth(body: Any, raw: bytes, limit: int = MAX_DEPTH) -> None:
    """400 if `body` (parsed from `raw`) nests arrays and objects deeper than `limit`. A body with
    at most `limit` opening brackets cannot be that deep (two C-speed counts decide that for nearly
    every request); others are walked level by level, one comprehension per level (a third of the
    cost of a walk with a stack, and no recursion)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    level = [body]
    for _ in range(limit):
        level = [
            child
            for value in level
            for child in (value.values() if type(value) is dict else value)
            if type(child) is dict or type(child) is list
        ]
        if not level:
            return
    raise invalid(f"The request body nests arrays and objects deeper than {limit} levels.")


def conform(body: Any, schema: type[Schema]) -> None:
    """400 naming the field unless `body` fits `schema`."""
    try:
        msgspec.convert(body, schema)
    except msgspec.ValidationError as exc:
        raise schema_error(str(exc), body) from None


_AT = re.compile(r"^(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_TYPE = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_RANGE = re.compile(r"^Expected `(?P<kind>\w+)` (?P<op>[<>]=?) (?P<limit>\S+)$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_LENGTH = re.compile(r"^Expected `(?P<kind>\w+)` of length (?P<op>[<>]=?) (?P<limit>\d+)$")
_NAMES = {
    "str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean", "object": "an object",
    "array": "an array", "null": "null",
}  # fmt: skip
_RANGE_WORDS = {"<=": "above maximum value", "<": "above maximum value", ">=": "below minimum value", ">": "below minimum value"}


def _invalid(message: str, param: str, code: str) -> GatewayError:
    return GatewayError(ErrorKind.INVALID_REQUEST, message, param=param, code=code)


def schema_error(message: str, body: Any) -> GatewayError:
    """msgspec's ValidationError text -> a 400 in OpenAI's words and codes, `param` the field's path."""
    match = _AT.match(message)
    detail, path = (match["detail"], (match["path"] or "").lstrip(".")) if match else (message, "")
    if missing := _MISSING.match(detail):
        field = f"{path}.{missing['field']}" if path else missing["field"]
        return _invalid(f"Missing required parameter: '{field}'.", field, "missing_required_parameter")
    if not path:
        return invalid("The request body must be a JSON object.")
    if kind := _TYPE.match(detail):
        expected = [_NAMES.get(t, t) for t in kind["expected"].split(" | ") if t != "null"] or ["null"]
        got = _NAMES.get(kind["got"], kind["got"])
        return _invalid(f"Invalid type for '{path}': expected {' or '.join(expected)}, but got {got} instead.", path, "invalid_type")
    if limit := _RANGE.match(detail):
        value = _value_at(body, path)
        got = f", but got {value!r} instead" if isinstance(value, (int, float)) else ""
        number = "integer" if limit["kind"] == "int" else "decimal"
        bound = limit["limit"].removesuffix(".0")
        words = f"{number} {_RANGE_WORDS[limit['op']]}"
        code = f"{number}_{'above_max' if '<' in limit['op'] else 'below_min'}_value"  # as OpenAI's
        message = f"Invalid '{path}': {words}. Expected a value {limit['op']} {bound}{got}."
        return _invalid(message, path, code)
    if length := _LENGTH.match(detail):
        if length["op"] == ">=" and length["limit"] == "1":
            return _invalid(f"Invalid '{path}': expected a non-empty {length['kind']}.", path, "empty_array")
        noun = "items" if length["kind"] == "array" else "characters"
        relation = "at most" if length["op"].startswith("<") else "at least"
        code = "array_above_max_length" if relation == "at most" else "array_below_min_length"
        return _invalid(f"Invalid '{path}': expected {relation} {length['limit']} {noun}.", path, code)
    return _invalid(f"Invalid '{path}': {detail[:1].lower()}{detail[1:]}.", path, "invalid_value")


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _value_at(body: Any, path: str) -> Any:
    """The value at a msgspec path (`a.b[2].c`), or None where it cannot be followed."""
    value = body
    for name, index in _STEP.findall("." + path):
        try:
            value = value[int(index)] if index else value[name]
        except (KeyError, IndexError, TypeError):
            return None
    return value
