"""A yes/no test of a value against (a part of) the lab schema, compiled once into closures.

jsonschema finds and describes every error but costs some microseconds per value;
a 1 MB lab file holds 100,000 of them. validate.py asks this test first and
hands jsonschema only the values that fail it (`items` of a list one by one), so
a valid file is never walked by jsonschema and a bad one only where it is bad.

It must agree with the validator validate.py builds (draft-07 with an integer that
is an int, never 24.0 or true, and patterns matched whole, skipped for a string over
maxLength): a keyword it does not know is refused when it is compiled, so a
schema that grows one cannot be tested wrongly.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: _is_number(v),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
# Words for people and editors: no rule in them.
_NOT_RULES = {"description", "default", "title", "examples", "$schema", "$id"}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)  # as jsonschema


def compile_check(schema: dict[str, Any]) -> Check:
    """A function telling whether a value passes `schema` (its `$ref`s inlined)."""
    tests = [_keyword(word, expected, schema) for word, expected in schema.items()
             if word not in _NOT_RULES and word != "properties"]
    if "properties" in schema or "additionalProperties" in schema:
        tests.append(_members(schema.get("properties", {}), schema.get("additionalProperties",
                                                                       True)))
    if len(tests) == 1:
        return tests[0]
    return lambda value: all(test(value) for test in tests)


def _keyword(word: str, expected: Any, schema: dict[str, Any]) -> Check:  # noqa: C901
    if word == "type":
        kinds = [_TYPES[k] for k in ([expected] if isinstance(expected, str) else expected)]
        return kinds[0] if len(kinds) == 1 else lambda v: any(kind(v) for kind in kinds)
    if word == "enum":
        if not all(isinstance(e, str) for e in expected):
            raise ValueError(f"enum of non-strings: {expected!r}")
        allowed = frozenset(expected)
        return lambda v: isinstance(v, str) and v in allowed
    if word == "pattern":
        matches = re.compile(expected.removeprefix("^").removesuffix("$")).fullmatch
        longest = schema.get("maxLength")
        return lambda v: not isinstance(v, str) or (longest is not None and len(v) > longest) \
            or matches(v) is not None
    if word in ("maxLength", "minLength", "minItems"):
        kind = list if word == "minItems" else str
        if word == "maxLength":
            return lambda v: not isinstance(v, kind) or len(v) <= expected
        return lambda v: not isinstance(v, kind) or len(v) >= expected
    if word == "minimum":
        return lambda v: not _is_number(v) or v >= expected
    if word == "maximum":
        return lambda v: not _is_number(v) or v <= expected
    if word == "required":
        return lambda v: not isinstance(v, dict) or all(key in v for key in expected)
    if word == "items":
        each = compile_check(expected)
        return lambda v: not isinstance(v, list) or all(each(item) for item in v)
    if word == "propertyNames":
        name = compile_check(expected)
        return lambda v: not isinstance(v, dict) or all(name(key) for key in v)
    if word == "anyOf":
        branches = [compile_check(branch) for branch in expected]
        return lambda v: any(branch(v) for branch in branches)
    if word == "additionalProperties":
        return lambda v: True  # with properties, in _members
    raise ValueError(f"schema keyword {word!r} has no fast test")


def _members(properties: dict[str, Any], additional: Any) -> Check:
    """properties and additionalProperties together: one pass over a mapping's members."""
    known = {key: compile_check(sub) for key, sub in properties.items()}
    other: Check | None = None if additional is False else \
        (lambda v: True) if additional is True else compile_check(additional)

    def passes(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for key, member in value.items():
            test = known.get(key, other)  # a key not in properties is an additional one
            if test is None or not test(member):
                return False
        return True
    return passes
