"""The fast way to read a lab file: values built straight from the parser's events.

PyYAML's composer makes a node object for every value and asks the resolver, in
Python, about each one: on a 1 MB file that is most of the time spent reading it
(3 s of 3.5 s for 450,000 nested lists, against 0.4 s for the C parser's events
alone). A lab file is plain YAML: lists, mappings with scalar keys, scalars, now
and then an anchor. For those, this builder makes the document from the events
in one pass, and makes the checks of `load._walk` as it goes: duplicate keys, an
alias inside the value it names, the alias budget, the depth limit, scalars that
cannot be built. Field paths are spelled out only for a problem. A problem that
ends the walk (a recursive alias, the budget, the depth) ends the list where it is
met: the rest of the file is read only for a syntax error, which wins, as when the
whole file is parsed first.

Anything else (merge keys, tags on lists or mappings, complex or aliased keys, an
undefined or repeated anchor, several documents) raises `NotPlain`: the caller
then reads the file the thorough way, which knows what PyYAML means by each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from generator.lab.errors import Problem, join

# The tags a lab file's lists and mappings may carry (none, `!`, or the default one).
_PLAIN_COLLECTION = (None, "!", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")
_STR = "tag:yaml.org,2002:str"
_NOT_VALUES = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")


class NotPlain(Exception):
    """The document needs PyYAML's composer and constructor."""


class BadScalar(Exception):
    """A scalar that cannot be built; its message, without the field path."""


# Builds one scalar from (loader, resolved tag, its ScalarEvent), or raises BadScalar.
ScalarBuilder = Callable[[Any, str, Any], Any]


@dataclass
class Built:
    """The document (None for an empty file), and every problem found in it."""

    value: Any
    problems: list[Problem]


class _Open:
    """A list or mapping whose values are still being read."""

    __slots__ = ("value", "is_list", "parent", "step", "anchor", "size", "height", "key",
                 "key_text", "has_key", "seen")

    def __init__(self, is_list: bool, parent: _Open | None, step: int | str,
                 anchor: str | None) -> None:
        self.value: Any = [] if is_list else {}
        self.is_list, self.parent, self.step, self.anchor = is_list, parent, step, anchor
        self.size = self.height = 1  # values once expanded, and nesting, itself included
        self.key: Any = None  # a mapping's key read, its value not yet
        self.key_text = ""
        self.has_key = False
        self.seen: dict[str, int] = {}  # a mapping's key texts -> their line

    def path(self) -> str:
        steps: list[int | str] = []
        frame: _Open | None = self
        while frame is not None and frame.parent is not None:
            steps.append(frame.step)
            frame = frame.parent
        path = ""
        for step in reversed(steps):
            path = join(path, step)
        return path

    def next_step(self, event: Any) -> int | str:
        """The step below this one of the value `event` starts."""
        if self.is_list:
            return len(self.value)
        return self.key_text if self.has_key else event.value


class _Anchored:
    __slots__ = ("value", "size", "height", "open")

    def __init__(self, value: Any, size: int, height: int, is_open: bool) -> None:
        self.value, self.size, self.height, self.open = value, size, height, is_open


def build(loader: Any, scalar: ScalarBuilder, max_depth: int, budget: int) -> Built:
    """The document of `loader`'s (a CSafeLoader's) events. A recursive alias, a blown
    alias budget or nesting past `max_depth` ends the walk with that problem last."""
    return _Builder(loader, scalar, max_depth, budget).run()


class _Builder:
    def __init__(self, loader: Any, scalar: ScalarBuilder, max_depth: int, budget: int) -> None:
        self.loader, self.scalar = loader, scalar
        self.max_depth, self.budget = max_depth, budget
        self.stack: list[_Open] = []
        self.anchors: dict[str, _Anchored] = {}
        self.problems: list[Problem] = []
        self.added = 0  # values the aliases add so far
        self.resolvers = loader.yaml_implicit_resolvers
        self.wildcard = list(self.resolvers.get(None, ()))

    def run(self) -> Built:
        loader = self.loader
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            return Built(None, [])
        loader.get_event()  # DocumentStart
        done = self.document()
        if isinstance(done, Problem):
            self.drain()
            return Built(None, [*self.problems, done])
        loader.get_event()  # DocumentEnd
        if not loader.check_event(yaml.StreamEndEvent):
            raise NotPlain("more than one document")
        return Built(done, self.problems)

    def drain(self) -> None:
        """The rest of the stream, read for a syntax error (which wins over problems, as
        when the whole file is parsed first) or a second document."""
        loader = self.loader
        while not loader.check_event(yaml.StreamEndEvent):
            if loader.check_event(yaml.DocumentStartEvent):
                raise NotPlain("more than one document")
            loader.get_event()

    def document(self) -> Any:
        """The root value, or the Problem that stopped the walk."""
        get, stack = self.loader.get_event, self.stack
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        mapping_start, sequence_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
        while True:
            event = get()
            kind = type(event)
            parent = stack[-1] if stack else None
            if kind is scalar_event:
                if len(stack) >= self.max_depth:
                    return self.too_deep(parent, event)
                value, size, height = self.on_scalar(event, parent), 1, 1
            elif kind is mapping_start or kind is sequence_start:
                problem = self.open(event, parent, kind is sequence_start)
                if problem is not None:
                    return problem
                continue
            elif kind is alias_event:
                found = self.on_alias(event, parent)
                if isinstance(found, Problem):
                    return found
                value, size, height = found.value, found.size, found.height
            else:  # MappingEnd or SequenceEnd
                closed = stack.pop()
                value, size, height = closed.value, closed.size, closed.height
                if closed.anchor is not None:
                    anchored = self.anchors[closed.anchor]
                    anchored.size, anchored.height, anchored.open = size, height, False
                parent = stack[-1] if stack else None
            if parent is None:
                return value
            self.add(parent, value, size, height, event)

    def open(self, event: Any, parent: _Open | None, is_list: bool) -> Problem | None:
        if event.tag not in _PLAIN_COLLECTION:
            raise NotPlain("a tag on a list or mapping")
        if parent is not None and not parent.is_list and not parent.has_key:
            raise NotPlain("a list or mapping as a key")
        if len(self.stack) >= self.max_depth:
            return self.too_deep(parent, event)
        frame = _Open(is_list, parent, parent.next_step(event) if parent else "", event.anchor)
        if event.anchor is not None:
            self.remember(event.anchor, _Anchored(frame.value, 0, 0, True))
        self.stack.append(frame)
        return None

    def remember(self, anchor: str, anchored: _Anchored) -> None:
        if anchor in self.anchors:
            raise NotPlain("an anchor defined twice")
        self.anchors[anchor] = anchored

    def add(self, parent: _Open, value: Any, size: int, height: int, event: Any) -> None:
        parent.size += size
        if height >= parent.height:
            parent.height = height + 1
        if parent.is_list:
            parent.value.append(value)
        elif parent.has_key:
            parent.value[parent.key] = value
            parent.has_key = False
        else:
            self.key(parent, value, event)

    def key(self, parent: _Open, value: Any, event: Any) -> None:
        text, line = event.value, event.start_mark.line + 1
        if text in parent.seen and text != "<<":
            self.problems.append(Problem(join(parent.path(), text), (
                f"duplicate key (line {line}; first on line {parent.seen[text]})")))
        else:
            parent.seen[text] = line
        parent.key, parent.key_text, parent.has_key = value, text, True

    def on_scalar(self, event: Any, parent: _Open | None) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(event.value) if event.implicit[0] else _STR
        if tag in _NOT_VALUES:
            raise NotPlain("a merge key")
        try:
            value = self.scalar(self.loader, tag, event)
        except BadScalar as bad:
            value = None
            self.problems.append(Problem(self.place(parent, event), str(bad)))
        if event.anchor is not None:
            self.remember(event.anchor, _Anchored(value, 1, 1, False))
        return value

    def resolve(self, text: str) -> str:
        """The tag of a plain scalar, as PyYAML's resolver finds it."""
        for tag, regexp in self.resolvers.get(text[:1] if text else "", ()):
            if regexp.match(text):
                return str(tag)
        for tag, regexp in self.wildcard:
            if regexp.match(text):
                return str(tag)
        return _STR

    def on_alias(self, event: Any, parent: _Open | None) -> _Anchored | Problem:
        anchored = self.anchors.get(event.anchor)
        if anchored is None:
            raise NotPlain("an undefined alias")
        if parent is not None and not parent.is_list and not parent.has_key:
            raise NotPlain("an alias as a key")
        if anchored.open:
            return Problem(self.place(parent, event), "an alias inside the value it names (a "
                           "recursive structure); kgen needs plain, finite values")
        if len(self.stack) + anchored.height > self.max_depth:
            return Problem(self.place(parent, event), f"nested deeper than {self.max_depth} levels")
        self.added += anchored.size
        if self.added > self.budget:
            return Problem(self.place(parent, event), (
                f"aliases expand the file by more than {self.budget:,} values; "
                "write the values out, or alias fewer of them"))
        return anchored

    def place(self, parent: _Open | None, event: Any) -> str:
        """The field path of the value `event` starts."""
        return join(parent.path(), parent.next_step(event)) if parent is not None else ""

    def too_deep(self, parent: _Open | None, event: Any) -> Problem:
        return Problem(self.place(parent, event), f"nested deeper than {self.max_depth} levels")
