"""What is wrong with a lab file: every problem, each naming its field path.

`str(LabError)` is one line per problem, `file: field.path: what`, which is
what the command line prints (exit status 2).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str  # `services[1].ports[0].nodePort`; "" for the file as a whole
    message: str


class LabError(Exception):
    """A lab file that cannot be used, with every problem found in it."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        super().__init__(str(self))

    @classmethod
    def one(cls, path: str, message: str, source: str = "") -> LabError:
        return cls([Problem(path, message)], source)

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [f"{prefix}{p.path + ': ' if p.path else ''}{p.message}" for p in self.problems]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def join(path: str, key: str | int) -> str:
    """The field path of `key` below `path`: `pods[0]`, `pods[0].name`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def describe(value: object) -> str:
    """A short, quoted rendering of a bad value for error lines."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)
