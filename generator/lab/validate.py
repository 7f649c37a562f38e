"""Structural validation against the lab schema, every error in plain words.

jsonschema finds the errors; this module words them the way kgen's error
lines read (`pods[0].name: 'Pod_0' is not a valid name (...)`).

Two of draft-07's rules are tightened for the lab file: an integer is an int,
never 24.0 (JSON Schema counts a float with no fraction as an integer, and
the address arithmetic then fails on it), and a pattern must match the whole
string (Python's `$` also matches before a final newline, so 'pod-9\n' would
pass `^[a-z0-9-]+$`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from typing import Any, cast

from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import ValidationError

from generator.lab.errors import Problem, describe, distinct, join
from generator.lab.netpol import namespace_problems, policy_problems
from generator.lab.pod_ports import port_problems
from generator.lab.schema import EMPTY_LIST_WORDS, LAB_SCHEMA, LABEL_KEY, LABEL_VALUE, PATTERN_WORDS
from generator.lab.schema_fast import Check, compile_check
from generator.lab.suggest import suggest


def _is_integer(_checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _full_pattern(_validator: Any, pattern: str, value: Any,
                  schema: dict[str, Any]) -> Iterator[ValidationError]:
    if not isinstance(value, str) or len(value) > schema.get("maxLength", len(value)):
        return  # not a string, or too long: maxLength says so (in the same words)
    if not _compiled(pattern).fullmatch(value):
        yield ValidationError(f"does not match {pattern!r}")


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    # The schema's patterns are anchored (^...$) for editors; here fullmatch anchors them.
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


def _failing_items(validator: Any, items: dict[str, Any], instance: Any,
                   _schema: dict[str, Any]) -> Iterator[ValidationError]:
    """draft-07's `items` (one schema for every item), descending only into the items the
    fast test fails: the same errors, in the same order, at a fraction of the cost."""
    if not isinstance(instance, list):
        return
    passes = _fast(items)
    for index, item in enumerate(instance):
        if not passes(item):
            yield from validator.descend(item, items, path=index)


_FAST: dict[int, tuple[dict[str, Any], Check]] = {}  # id of a subschema -> (it, its test)


def _fast(schema: dict[str, Any]) -> Check:
    if id(schema) not in _FAST:
        _FAST[id(schema)] = (schema, compile_check(schema))  # kept: its id stays its own
    return _FAST[id(schema)][1]


_STRICT = validators.extend(
    Draft7Validator, {"pattern": _full_pattern, "items": _failing_items},
    type_checker=Draft7Validator.TYPE_CHECKER.redefine("integer", _is_integer))


def _inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    """The schema with each `$ref` to its definitions replaced by the definition: the same
    rules, without a reference lookup for every node and client (a third of the time)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/definitions/"):
            return _inlined(definitions[ref.removeprefix("#/definitions/")], definitions)
        return {k: _inlined(v, definitions) for k, v in schema.items() if k != "definitions"}
    if isinstance(schema, list):
        return [_inlined(item, definitions) for item in schema]
    return schema


_INLINED = _inlined(LAB_SCHEMA, LAB_SCHEMA["definitions"])
_VALIDATOR = _STRICT(_INLINED)
_KINDS = {"integer": "an integer", "string": "a string", "array": "a list",
          "object": "a mapping", "number": "a number", "boolean": "true or false"}


def schema_problems(data: Any) -> list[Problem]:
    found: list[Problem] = []
    mistyped: set[str] = set()  # a value of the wrong type gets that line only, not `not one of`
    # jsonschema only for a file the compiled check fails: it has nothing to say otherwise.
    for error in () if _fast(_INLINED)(data) else _VALIDATOR.iter_errors(data):
        if error.validator == "type":
            mistyped.add(_path(error))
        found += _explain(error)
    found = [p for p in distinct(found) if p.path not in mistyped or p.message.startswith("expected ")]
    if isinstance(data, dict):
        # What the schema leaves open: NetworkPolicy objects as the API server checks them
        # (the schema says only "a list of mappings"), and named container ports.
        found += policy_problems(data.get("networkPolicies"))
        found += namespace_problems(data) + list(port_problems(data))
    return distinct(found)


def _path(error: ValidationError) -> str:
    path = ""
    for key in error.absolute_path:
        path = join(path, key)
    return path


def _explain(error: ValidationError) -> Iterator[Problem]:
    path, kind = _path(error), error.validator
    value = cast(Any, error.instance)
    # Our own schema: every subschema is a dict, every validator value plain data.
    schema = cast(dict[str, Any], error.schema)
    expected = cast(Any, error.validator_value)
    if kind == "anyOf":
        yield from _explain_any_of(error, path)
    elif kind == "required":
        for key in expected:
            if isinstance(value, dict) and key not in value:
                yield Problem(join(path, key), "is required")
    elif kind == "additionalProperties":
        allowed = set(schema.get("properties", {}))
        for key in value:
            if key not in allowed:
                yield Problem(join(path, str(key)), f"unknown key ({suggest(str(key), allowed)})")
    elif kind == "type" and "propertyNames" in error.schema_path:
        yield Problem(join(path, str(value)), f"{describe(value)} is not a valid label key "
                                              "(label keys are strings: quote it)")
    elif kind == "type":
        yield Problem(path, f"expected {_kind(expected)}, got {describe(value)}")
    elif kind == "enum":
        yield Problem(path, f"{describe(value)} is not one of "
                            f"{', '.join(map(str, expected))}")
    elif kind in ("minimum", "maximum") and schema.get("pattern") != LABEL_VALUE:
        yield Problem(path, f"{describe(value)} is outside {schema['minimum']}-{schema['maximum']}")
    elif kind in ("pattern", "maxLength", "minimum", "maximum"):
        # A bad label key is reported at the key's own path, as a bad value would be.
        where = join(path, str(value)) if schema.get("pattern") == LABEL_KEY else path
        yield Problem(where, _bad_text(schema, value))
    elif kind == "minItems":
        yield Problem(path, EMPTY_LIST_WORDS.get(path.rsplit(".", 1)[-1], "must not be empty"))
    else:  # a keyword the schema may gain later: jsonschema's own words
        yield Problem(path, error.message)


def _explain_any_of(error: ValidationError, path: str) -> Iterator[Problem]:
    """nodes and clients take a name or {name: ...}: explain the branch the value meant."""
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context or []:
        branches.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    for subs in branches.values():
        if not any(s.validator == "type" and not s.relative_path for s in subs):
            for sub in subs:  # their paths are absolute: jsonschema joins the parent's
                yield from _explain(sub)
            return
    yield Problem(path, f"expected a name or a mapping with 'name', got {describe(error.instance)}")


def _bad_text(schema: dict[str, Any], value: Any) -> str:
    pattern = schema.get("pattern", "")
    if pattern == LABEL_VALUE:
        return f"{describe(value if isinstance(value, str) else str(value))} is not a valid label value"
    if pattern == LABEL_KEY:
        return f"{describe(value)} is not a valid label key"
    words = PATTERN_WORDS.get(pattern, "")
    return (f"{describe(value)} is not a valid name ({words}, at most {schema['maxLength']} "
            "characters)")


def _kind(expected: str | Iterable[str]) -> str:
    if isinstance(expected, str):
        return _KINDS.get(expected, expected)
    names = [_KINDS.get(e, e) for e in expected]
    return names[0] if names[0] == "a string" else " or ".join(names)
