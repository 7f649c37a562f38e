"""What is wrong with a lab file: every problem, each naming its field path.

`str(LabError)` is one line per problem, `file: field.path: what`, which is
what the command line prints (exit status 2). A line is always one line of
bounded length: control characters in keys, values or the file name are
escaped, and long values are shortened, so a 20 MB name or a key holding a
newline cannot flood or split the output. The number of lines is not capped: the
lab contract lists every error of the file on a line of its own, so a file of 70,000
unknown keys gets 70,000 lines, and finding and wording each one costs a constant
(benchmarks/bench_badinput.py), never a pass over the others.
"""

from __future__ import annotations

from dataclasses import dataclass

# Longest value or key shown whole in an error line; longer ones are cut and say how long.
SHOWN_CHARS = 60
# Longest error line; a path of many long keys is cut in the middle, keeping its end.
LINE_MAX = 400


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
        prefix = f"{printable(self.source)}: " if self.source else ""
        return [bounded(f"{prefix}{p.path + ': ' if p.path else ''}{p.message}")
                for p in self.problems]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def distinct(problems: list[Problem]) -> list[Problem]:
    """Each problem once, in the order found (a set: a file may hold 30,000 of them)."""
    return list(dict.fromkeys(problems))


def printable(text: str) -> str:
    """`text` with control, format and separator characters escaped (`\\n`, `\\ufeff`,
    `\\u202e`), as repr escapes them: one visible line that reads as the file does."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def bounded(line: str) -> str:
    """One printable line of at most LINE_MAX characters (the middle cut, the end kept:
    the end says what is wrong)."""
    return _cut(printable(_cut(line)))


def _cut(line: str) -> str:
    if len(line) <= LINE_MAX:
        return line
    keep = LINE_MAX - 5
    return f"{line[:keep // 2]} ... {line[-(keep - keep // 2):]}"


def shorten(text: str) -> str:
    """A key or value for an error line: printable, and cut when long."""
    if len(text) > SHOWN_CHARS:
        text = f"{text[:SHOWN_CHARS - 20]}...({len(text)} characters)"
    return printable(text)


def join(path: str, key: object) -> str:
    """The field path of `key` below `path`: `pods[0]`, `pods[0].name`."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    text = shorten(key if isinstance(key, str) else describe(key))
    return f"{path}.{text}" if path else text


def describe(value: object) -> str:
    """A short, quoted rendering of a bad value for error lines."""
    if isinstance(value, str):
        if len(value) > SHOWN_CHARS:
            return f"{value[:SHOWN_CHARS - 20]!r}...({len(value)} characters)"
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 192:
        return f"a {len(hex(abs(value))) - 2}-hex-digit number"  # str() of it may be refused
    return shorten(str(value))
