"""Reading a lab file: UTF-8 text, YAML with duplicate keys refused, fast.

PyYAML's C loader is used when present (5x faster on large files). A mapping
that repeats a key is refused with the key's field path: PyYAML itself would
silently keep the last value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from generator.lab.errors import LabError, Problem, join

Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text(path: Path) -> str:
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise LabError.one("", f"cannot read lab file: {err.strerror}", source) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LabError.one("", f"is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                               f"{err.start})", source) from None


def parse_yaml(text: str, source: str = "") -> Any:
    """The YAML document, or LabError: a syntax error, or every duplicated key."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        problems = list(duplicate_keys(node, "")) if node is not None else []
        if problems:
            raise LabError(problems, source)
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise LabError.one("", f"{where}{problem}", source) from None
    finally:
        loader.dispose()


def duplicate_keys(node: yaml.Node, path: str) -> list[Problem]:
    found: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = join(path, key)
            if key in seen and key != "<<":
                found.append(Problem(here, f"duplicate key (line {key_node.start_mark.line + 1}; "
                                           f"first on line {seen[key]})"))
            seen.setdefault(key, key_node.start_mark.line + 1)
            found += duplicate_keys(value_node, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += duplicate_keys(item, join(path, i))
    return found


def load_data(path: Path) -> Any:
    return parse_yaml(read_text(path), str(path))
