"""Python functions as hosted tools: schema from the signature, load errors, and calls."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from aigw.agent.functions import PythonFunction, ToolError
from aigw.config import FunctionConfig


def load(function: str, **options) -> PythonFunction:
    config = FunctionConfig(name=function, function=f"tests.agent_functions:{function}", **options)
    return PythonFunction.load(config)


# Schema


def test_schema_types_required_defaults() -> None:
    tool = load("add")
    assert tool.name == "add"
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "The first number."},
            "b": {"type": "integer", "default": 2, "description": "The second number, two unless given."},
        },
        "required": ["a"],
        "additionalProperties": False,
    }


def test_description_from_docstring_first_paragraph_or_config() -> None:
    assert load("add").description == "Add two integers."
    assert load("add", description="Adds.").description == "Adds."
    assert load("fail").description == ""


def test_literal_becomes_enum() -> None:
    properties = load("weather").parameters["properties"]
    assert properties["unit"] == {"enum": ["C", "F"], "default": "C"}
    assert properties["city"] == {"type": "string"}


def test_nested_types_are_inlined() -> None:
    schema = load("shapes").parameters
    assert "$defs" not in schema and "$ref" not in orjson.dumps(schema).decode()
    box = schema["properties"]["box"]
    assert box["type"] == "object" and box["required"] == ["corner"]
    assert box["properties"]["corner"]["properties"]["x"] == {"type": "number"}
    assert schema["properties"]["tags"]["anyOf"] == [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]
    assert schema["properties"]["extra"] == {"type": "object", "default": {"k": 1}}
    assert schema["properties"]["anything"] == {"default": None}  # unannotated: any JSON value
    assert schema["required"] == ["box"]


def test_recursive_type_keeps_defs() -> None:
    schema = load("total").parameters
    assert schema["properties"]["tree"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}
    assert schema["$defs"]["Tree"]["properties"]["value"] == {"type": "integer"}


def test_no_parameters() -> None:
    empty = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    assert load("nothing").parameters == empty


# Load errors


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.no_such_module:add", "cannot import module 'tests.no_such_module'"),
        ("tests.agent_functions:missing", "has no attribute 'missing'"),
        ("tests.agent_functions:NOT_CALLABLE", "is not callable"),
        ("tests.agent_functions:variadic", "*args and **kwargs"),
        ("tests.agent_functions:keywords", "*args and **kwargs"),
        ("add", "expected an import path"),
    ],
)
def test_load_errors(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        PythonFunction.load(FunctionConfig(name="f", function=path))


def test_dotted_path_accepted() -> None:
    assert PythonFunction.load(FunctionConfig(name="add", function="tests.agent_functions.add")).name == "add"


# Calls


async def test_call_sync_and_default() -> None:
    tool = load("add")
    assert await tool.call('{"a": 1}') == "3"
    assert await tool.call('{"a": 1, "b": 5}') == "6"


async def test_call_async() -> None:
    assert await load("greet").call('{"name": "Ada", "excited": true}') == "Hello, Ada!"


async def test_dict_result_is_json() -> None:
    text = await load("weather").call('{"city": "Oslo", "unit": "F"}')
    assert orjson.loads(text) == {"city": "Oslo", "temperature": 70, "unit": "F"}


async def test_other_results() -> None:
    assert await load("nothing").call("") == ""
    assert orjson.loads(await load("point").call("{}")) == {"x": 1.0, "y": 2.0}


async def test_nested_arguments_are_converted() -> None:
    text = await load("shapes").call('{"box": {"corner": {"x": 1, "y": 2}, "label": "b"}}')
    assert text == "1.0,2.0 b None {'k': 1} None"
    assert await load("total").call('{"tree": {"value": 1, "children": [{"value": 2}]}}') == "3"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"b": 1}', "missing required field `a`"),
        ('{"a": "one"}', r"Expected `int`, got `str` - at `\$.a`"),
        ('{"a": 1, "c": 2}', "unknown field `c`"),
    ],
)
async def test_bad_arguments(arguments: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        await load("add").call(arguments)


async def test_bad_enum_value() -> None:
    with pytest.raises(ToolError, match=r"\$.unit"):
        await load("weather").call('{"city": "Oslo", "unit": "K"}')


async def test_exception_becomes_tool_error() -> None:
    with pytest.raises(ToolError) as caught:
        await load("fail").call('{"x": "zz"}')
    assert str(caught.value) == "ValueError: bad x: zz"


async def test_timeout() -> None:
    tool = load("sleepy", timeout=0.2)
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"timed out after 0.2 s"):
        await tool.call('{"seconds": 1}')
    assert time.monotonic() - started < 1.0


async def test_sync_function_does_not_block_the_loop() -> None:
    tool = load("sleepy")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        for _ in range(5):
            await asyncio.sleep(0.01)
            ticks += 1

    await asyncio.gather(tool.call('{"seconds": 0.2}'), tick())
    assert ticks == 5
