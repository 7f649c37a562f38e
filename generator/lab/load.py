"""Reading a lab file: UTF-8 text, YAML with duplicate keys refused, fast.

PyYAML's C loader is used when present (5x faster on large files). Before
anything is built from the parsed tree, one walk over it (iterative: no
recursion to run out of) refuses what PyYAML would accept but kgen cannot use:
a mapping that repeats a key (PyYAML silently keeps the last value), an alias
inside the value it names (a recursive structure), aliases that expand the
document past ALIAS_BUDGET values (a "billion laughs" file), values nested
deeper than MAX_DEPTH, and scalars that cannot be built (a 5000-digit number,
2001-13-45, a 300-digit one). Each node is visited once however many aliases name it, so the
walk costs the size of the file, not of its expansion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from generator.lab.errors import LabError, Problem, describe, join, shorten

Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Values that aliases may add to the document (each alias counts the values it repeats).
ALIAS_BUDGET = 10_000
# Keys that are instructions to the constructor, not values (`<<: *base` merges a mapping).
_NOT_VALUES = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")
# Widest integer kept: none of a lab's numbers comes near, and Python refuses to print
# some wider ones (more than 4300 digits), which any error message about them would do.
MAX_INT_BITS = 256
# Deepest nesting of mappings and lists; a lab file needs 6 (services[0].ports[0].port).
MAX_DEPTH = 32


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


def _where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""


def parse_yaml(text: str, source: str = "") -> Any:
    """The YAML document, or LabError: a syntax error, or every problem of the tree."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems = check_tree(node, loader)
        if problems:
            raise LabError(problems, source)
        return _construct(loader, node, source)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise LabError.one("", shorten(f"{_where(err)}{problem}"), source) from None
    finally:
        loader.dispose()


def _construct(loader: Any, node: yaml.Node, source: str) -> Any:
    """The document built from the checked tree; every scalar is built already, so what
    can still fail is a tagged list or mapping (`!!omap`, `!!set` on a list)."""
    try:
        return loader.construct_document(node)
    except yaml.YAMLError:
        raise
    except Exception as err:  # what a constructor's own parsing raised
        raise LabError.one("", shorten(f"cannot be read ({err})"), source) from None


@dataclass
class _Walk:
    """What the walk over the node graph knows so far."""

    loader: Any
    problems: list[tuple[int, Problem]] = field(default_factory=list)  # (offset, problem)
    size: dict[int, int] = field(default_factory=dict)  # node id -> values once expanded
    height: dict[int, int] = field(default_factory=dict)  # node id -> nesting below it
    open: set[int] = field(default_factory=set)  # nodes whose children are being walked
    added: int = 0  # values the aliases add so far


def check_tree(root: yaml.Node, loader: Any) -> list[Problem]:
    """Every problem of the parsed tree; a recursive alias or a blown budget stops the walk."""
    walk = _Walk(loader)
    stack: list[tuple[yaml.Node, str, int, bool]] = [(root, "", 0, False)]
    while stack:
        node, path, depth, leaving = stack.pop()
        key = id(node)
        if leaving:
            children = _children(node)
            walk.size[key] = 1 + sum(walk.size[id(c)] for _, c in children)
            walk.height[key] = 1 + max((walk.height[id(c)] for _, c in children), default=0)
            walk.open.discard(key)
            continue
        stop = _enter(walk, node, path, depth)
        if stop:
            return [*_in_file_order(walk), stop]
        if key in walk.open or key in walk.size:
            continue
        walk.open.add(key)
        stack.append((node, path, depth, True))
        for here, child in reversed(_children(node)):
            stack.append((child, join(path, here), depth + 1, False))
    return _in_file_order(walk)


def _in_file_order(walk: _Walk) -> list[Problem]:
    return [problem for _, problem in sorted(walk.problems, key=lambda found: found[0])]


def _enter(walk: _Walk, node: yaml.Node, path: str, depth: int) -> Problem | None:
    """Check one place of the tree; a Problem returned ends the walk."""
    key = id(node)
    if key in walk.open:
        return Problem(path, "an alias inside the value it names (a recursive structure); "
                             "kgen needs plain, finite values")
    seen = key in walk.size
    if depth + (walk.height[key] if seen else 1) > MAX_DEPTH:
        return Problem(path, f"nested deeper than {MAX_DEPTH} levels")
    if seen:  # a second name for a value already walked: an alias repeating it
        walk.added += walk.size[key]
        if walk.added > ALIAS_BUDGET:
            return Problem(path, f"aliases expand the file by more than {ALIAS_BUDGET:,} values; "
                                 "write the values out, or alias fewer of them")
        return None
    if isinstance(node, yaml.MappingNode):
        walk.problems += _duplicates(node, path)
    elif isinstance(node, yaml.ScalarNode) and node.tag not in _NOT_VALUES:
        problem = _scalar(walk.loader, node, path)
        if problem is not None:
            walk.problems.append((node.start_mark.index, problem))
    return None


def _children(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    if isinstance(node, yaml.MappingNode):
        pairs: list[tuple[str | int, yaml.Node]] = []
        for key_node, value_node in node.value:
            pairs += [(_key(key_node), key_node), (_key(key_node), value_node)]
        return pairs
    return []


def _key(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "(a complex key)"


def _duplicates(node: yaml.MappingNode, path: str) -> list[tuple[int, Problem]]:
    found: list[tuple[int, Problem]] = []
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        key = _key(key_node)
        if key in seen and key != "<<":
            found.append((key_node.start_mark.index, Problem(
                join(path, key), f"duplicate key (line {key_node.start_mark.line + 1}; first on "
                                 f"line {seen[key]})")))
        seen.setdefault(key, key_node.start_mark.line + 1)
    return found


def _scalar(loader: Any, node: yaml.ScalarNode, path: str) -> Problem | None:
    """Build one scalar now, where its path is known (PyYAML keeps it for the document)."""
    try:
        value = loader.construct_object(node)
    except yaml.YAMLError as err:
        return Problem(path, f"{_where(err)}{getattr(err, 'problem', None) or err}")
    except Exception as err:  # int('9' * 5000), date(2001, 13, 45), `!!timestamp abc`:
        # PyYAML's constructors raise what their parsing raises, not only YAMLError.
        line = node.start_mark.line + 1
        what = ("is a number too long to read" if node.tag.endswith(":int")
                else f"{describe(node.value)} cannot be read as {node.tag.rsplit(':', 1)[-1]} "
                     f"({err})")
        return Problem(path, f"line {line}: {what}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        return Problem(path, f"line {node.start_mark.line + 1}: is a number too long to read")
    return None


def load_data(path: Path) -> Any:
    return parse_yaml(read_text(path), str(path))
