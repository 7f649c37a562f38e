"""Reading a lab file: UTF-8 text, YAML with duplicate keys refused, fast.

PyYAML's C parser is used when present. A plain file (lists, mappings with
scalar keys, scalars, anchors) is built straight from the parser's events
(`events.py`: a 1 MB file in well under a second). Anything else (merge keys,
tags on collections, complex keys, several documents) is read the thorough way:
PyYAML's composer, then one walk over its nodes (iterative: no recursion to run
out of). Both refuse what PyYAML would accept but kgen cannot use, with the same
error lines: a mapping that repeats a key (PyYAML silently keeps the last value),
an alias inside the value it names (a recursive structure), aliases that expand
the document past ALIAS_BUDGET values (a "billion laughs" file), values nested
deeper than MAX_DEPTH, and scalars that cannot be built (a 5000-digit number,
2001-13-45). Each value is visited once however many aliases name it, so the
cost is the size of the file, not of its expansion. The walk builds the document
too (as PyYAML's safe constructor builds it), so a large file is not walked a
second time by the constructor; a file with merge keys or tags of collections is
built by the constructor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from generator.lab import events
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
# The tags whose values the walk builds itself (PyYAML's constructor builds the rest).
_STR, _NULL, _BOOL, _INT, _SEQ, _MAP = (f"tag:yaml.org,2002:{kind}" for kind in
                                        ("str", "null", "bool", "int", "seq", "map"))
_BOOLS: dict[str, bool] = SafeConstructor.bool_values
# A decimal integer as PyYAML reads it (no 0x, 0o, 0b, 0-octal, `_` or 1:30), short enough
# to stay far under MAX_INT_BITS.
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,70})")


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
        built = events.build(loader, _scalar_value, MAX_DEPTH, ALIAS_BUDGET)
    except events.NotPlain:  # merge keys, tagged collections...: the thorough way
        return _parse_thoroughly(text, source)
    except yaml.YAMLError as err:
        raise _syntax(err, source) from None
    finally:
        loader.dispose()
    if built.problems:
        raise LabError(built.problems, source)
    return built.value


def _syntax(err: yaml.YAMLError, source: str) -> LabError:
    problem = getattr(err, "problem", None) or "invalid YAML"
    return LabError.one("", shorten(f"{_where(err)}{problem}"), source)


def _parse_thoroughly(text: str, source: str) -> Any:
    """Through PyYAML's composer, one walk over its nodes, and its constructor."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        result = _walk(node, loader)
        if result.problems_found:
            raise LabError(result.problems_found, source)
        if result.walk.plain:
            return result.walk.value[id(node)]
        return _construct(loader, node, source)
    except yaml.YAMLError as err:
        raise _syntax(err, source) from None
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


# A place in the tree, built as the walk goes down and spelled out only for a problem:
# None for the document, else (the parent's place, a list index or a mapping's key node).
Place = tuple[Any, "int | yaml.Node"] | None


def spelled(place: Place) -> str:
    """The field path of a place: `services[0].ports[1]`."""
    steps: list[int | str] = []
    while place is not None:
        place, step = place
        steps.append(step if isinstance(step, int) else _key(step))
    path = ""
    for name in reversed(steps):
        path = join(path, name)
    return path


@dataclass
class _Walk:
    """What the walk over the node graph knows so far."""

    loader: Any
    problems: list[tuple[int, Problem]] = field(default_factory=list)  # (offset, problem)
    size: dict[int, int] = field(default_factory=dict)  # node id -> values once expanded
    height: dict[int, int] = field(default_factory=dict)  # node id -> nesting below it
    open: set[int] = field(default_factory=set)  # nodes whose children are being walked
    added: int = 0  # values the aliases add so far
    value: dict[int, Any] = field(default_factory=dict)  # node id -> the value built from it
    # Every collection so far a plain list or mapping with scalar keys and no merge key:
    # the walk builds the document itself, else PyYAML's constructor builds it after.
    plain: bool = True


def _walk(root: yaml.Node, loader: Any) -> _Result:
    """Every problem of the parsed tree (a recursive alias or a blown budget stops the
    walk), and the values built from it, in one pass.

    Depth first with an explicit stack; a collection is pushed again, with its
    children, to sum up their sizes and heights (and build its value) once they are walked.
    """
    walk = _Walk(loader)
    size, done, problems = walk.size, walk.value, walk.problems
    stack: list[tuple[yaml.Node, Place, int, list[yaml.Node] | None]] = [(root, None, 0, None)]
    while stack:
        node, place, depth, walked = stack.pop()
        key = id(node)
        if walked is not None:  # leaving a collection: its children are done
            _leave(walk, node, walked)
            continue
        if key in size or key in walk.open:
            stop = _again(walk, key, place, depth)
        elif depth >= MAX_DEPTH:
            stop = Problem(spelled(place), f"nested deeper than {MAX_DEPTH} levels")
        else:
            stop = None
        if stop is not None:
            return _Result([*_in_file_order(walk), stop], walk)
        if key in size or key in walk.open:
            continue
        if isinstance(node, yaml.ScalarNode):
            size[key] = walk.height[key] = 1
            if node.tag in _NOT_VALUES:
                walk.plain = False  # `<<` or `=`: PyYAML's constructor knows what they mean
            else:
                _scalar(walk, node, place, done)
            continue
        if isinstance(node, yaml.MappingNode):
            problems += _duplicates(node, place)
        children = _children(node)
        walk.open.add(key)
        stack.append((node, place, depth, [c for _, c in children]))
        stack += [(child, (place, step), depth + 1, None) for step, child in reversed(children)]
    return _Result(_in_file_order(walk), walk)


@dataclass
class _Result:
    problems_found: list[Problem]
    walk: _Walk


def _leave(walk: _Walk, node: yaml.Node, walked: list[yaml.Node]) -> None:
    """A collection whose children are walked: its size, its height, and (while the
    document is plain and sound) its value, as PyYAML's safe constructor would build it."""
    key, size, height = id(node), walk.size, walk.height
    size[key] = 1 + sum(size[id(c)] for c in walked)
    height[key] = 1 + max((height[id(c)] for c in walked), default=0)
    walk.open.discard(key)
    if not walk.plain or walk.problems:
        return
    done = walk.value
    if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
        done[key] = [done[id(c)] for c in node.value]
    elif isinstance(node, yaml.MappingNode) and node.tag == _MAP \
            and all(isinstance(k, yaml.ScalarNode) for k, _ in node.value):
        done[key] = {done[id(k)]: done[id(v)] for k, v in node.value}
    else:  # !!omap, !!set, a complex key, a tag of its own: PyYAML's constructor decides
        walk.plain = False


def _in_file_order(walk: _Walk) -> list[Problem]:
    return [problem for _, problem in sorted(walk.problems, key=lambda found: found[0])]


def _again(walk: _Walk, key: int, place: Place, depth: int) -> Problem | None:
    """A node met a second time: through an alias. A Problem returned ends the walk."""
    if key in walk.open:
        return Problem(spelled(place), "an alias inside the value it names (a recursive "
                                       "structure); kgen needs plain, finite values")
    if depth + walk.height[key] > MAX_DEPTH:
        return Problem(spelled(place), f"nested deeper than {MAX_DEPTH} levels")
    walk.added += walk.size[key]
    if walk.added > ALIAS_BUDGET:
        return Problem(spelled(place), f"aliases expand the file by more than {ALIAS_BUDGET:,} "
                                       "values; write the values out, or alias fewer of them")
    return None


def _children(node: yaml.Node) -> list[tuple[int | yaml.Node, yaml.Node]]:
    """(step, child) of a list or mapping; a mapping's keys are children too (a key may be
    an alias), and both name their place by the key node."""
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    return [pair for key_node, value_node in node.value
            for pair in ((key_node, key_node), (key_node, value_node))]


def _key(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "(a complex key)"


def _duplicates(node: yaml.MappingNode, place: Place) -> list[tuple[int, Problem]]:
    found: list[tuple[int, Problem]] = []
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        key = _key(key_node)
        if key in seen and key != "<<":
            found.append((key_node.start_mark.index, Problem(
                join(spelled(place), key), f"duplicate key (line {key_node.start_mark.line + 1}; first on "
                                 f"line {seen[key]})")))
        seen.setdefault(key, key_node.start_mark.line + 1)
    return found


def _scalar(walk: _Walk, node: yaml.ScalarNode, place: Place, done: dict[int, Any]) -> None:
    """Build one scalar now, where its path is known: its value, or a problem."""
    try:
        done[id(node)] = _scalar_value(walk.loader, node.tag, node)
    except events.BadScalar as bad:
        walk.problems.append((node.start_mark.index, Problem(spelled(place), str(bad))))


def _scalar_value(loader: Any, tag: str, source: Any) -> Any:
    """A scalar's value, or BadScalar. `source` is its node or its event (text, marks,
    style); `tag` its resolved tag. Strings, nulls, booleans and plain decimal integers
    are built here as PyYAML's safe constructor builds them; the rest by that constructor."""
    text = source.value
    if tag == _STR:
        return text
    if tag == _NULL:
        return None
    if tag == _BOOL and text.lower() in _BOOLS:
        return _BOOLS[text.lower()]
    if tag == _INT and _PLAIN_INT.fullmatch(text):
        return int(text)
    # The tree's own node when there is one: the constructor keeps what it built for it.
    node = source if isinstance(source, yaml.ScalarNode) else \
        yaml.ScalarNode(tag, text, source.start_mark, source.end_mark, source.style)
    return _constructed(loader, node)


def _constructed(loader: Any, node: yaml.ScalarNode) -> Any:
    """A scalar built by PyYAML's constructor, or BadScalar."""
    try:
        # deep: a collection tag on a scalar (`!!set a0`) fails now, not in a constructor
        # generator left for later (which would hand back an empty set).
        value = loader.construct_object(node, deep=True)
    except yaml.YAMLError as err:
        raise events.BadScalar(f"{_where(err)}{getattr(err, 'problem', None) or err}") from None
    except Exception as err:  # int('9' * 5000), date(2001, 13, 45), `!!timestamp abc`:
        # PyYAML's constructors raise what their parsing raises, not only YAMLError.
        line = node.start_mark.line + 1
        what = ("is a number too long to read" if node.tag.endswith(":int")
                else f"{describe(node.value)} cannot be read as {node.tag.rsplit(':', 1)[-1]} "
                     f"({err})")
        raise events.BadScalar(f"line {line}: {what}") from None
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise events.BadScalar(f"line {node.start_mark.line + 1}: is a number too long to read")
    return value


def load_data(path: Path) -> Any:
    return parse_yaml(read_text(path), str(path))
