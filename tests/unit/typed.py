"""Does a JSON document have exactly the shape of a TypedDict? (for the drift tests)

Every required key present, no key the type does not name, and each value of
its declared type, recursively through lists, dicts, unions and nested
TypedDicts. Problems come back as `path: what` lines.
"""

from __future__ import annotations

import types
import typing
from typing import Any, NotRequired, Required, Union, get_args, get_origin, get_type_hints


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def problems(value: Any, tp: Any, path: str = "$") -> list[str]:
    origin = get_origin(tp)
    if origin in (NotRequired, Required):
        return problems(value, get_args(tp)[0], path)
    if origin in (Union, types.UnionType):
        found = [problems(value, arm, path) for arm in get_args(tp)]
        return [] if any(not p for p in found) else min(found, key=len)
    if tp is Any or tp is object:
        return []
    if tp is type(None):
        return [] if value is None else [f"{path}: {value!r} is not null"]
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        hints = get_type_hints(tp, include_extras=True)
        out = [f"{path}.{k}: missing" for k in sorted(required_keys(tp) - value.keys())]
        out += [f"{path}.{k}: not in {tp.__name__}" for k in sorted(value.keys() - hints.keys())]
        for key in value.keys() & hints.keys():
            out += problems(value[key], hints[key], f"{path}.{key}")
        return out
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [p for i, item in enumerate(value) for p in problems(item, get_args(tp)[0], f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        return [p for k, item in value.items() for p in problems(item, get_args(tp)[1], f"{path}.{k}")]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    return [] if ok else [f"{path}: {value!r} is not {getattr(tp, '__name__', tp)}"]


def keys_of(tp: Any) -> set[str]:
    return set(typing.get_type_hints(tp))


def required_keys(tp: Any) -> set[str]:
    """From the hints themselves: with postponed annotations Python 3.11 does not see
    NotRequired[...] when it fills __required_keys__."""
    hints = get_type_hints(tp, include_extras=True)
    return {k for k, h in hints.items()
            if get_origin(h) is Required or (tp.__total__ and get_origin(h) is not NotRequired)}
