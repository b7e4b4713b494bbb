"""Sample functions for the hosted-function tests (tests/test_agent_functions.py), loaded by import path."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Literal

import msgspec

NOT_CALLABLE = 42


def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Handy for checking arithmetic.

    Args:
        a: The first number.
        b (int): The second number,
            two unless given.
    """
    return a + b


async def greet(name: str, excited: bool = False) -> str:
    """Greet someone by name."""
    await asyncio.sleep(0)
    return f"Hello, {name}{'!' if excited else '.'}"


def fail(x: str) -> str:
    raise ValueError(f"bad x: {x}")


def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


def weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, Any]:
    """Current weather for a city."""
    return {"city": city, "temperature": 21 if unit == "C" else 70, "unit": unit}


def variadic(*values: int) -> int:
    return sum(values)


def keywords(**options: str) -> str:
    return ",".join(options)


class Point(msgspec.Struct):
    x: float
    y: float


@dataclasses.dataclass
class Box:
    corner: Point
    label: str = ""


class Tree(msgspec.Struct):
    value: int
    children: list[Tree] = []


def shapes(box: Box, tags: list[str] | None = None, extra: dict[str, Any] = {"k": 1}, anything=None) -> str:  # noqa
    return f"{box.corner.x},{box.corner.y} {box.label} {tags} {extra} {anything}"


def total(tree: Tree) -> int:
    return tree.value + sum(total(child) for child in tree.children)


def nothing() -> None:
    return None


def point() -> Point:
    return Point(1.0, 2.0)


def call_again(name: str) -> str:
    """Answer with a directive that makes the fake model call `name` again (an endless agent loop)."""
    return f'[[tool {name} {{"name": "{name}"}}]]'
