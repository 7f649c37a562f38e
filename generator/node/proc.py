"""Running a program inside a node: the one subprocess helper of the node side.

Output is captured as text; a program that is not installed answers exit
status 127 (as a shell would) instead of raising, so callers treat "missing"
like any other failure. `check` raises with the command and its stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

Completed = subprocess.CompletedProcess[str]


class CommandFailed(RuntimeError):
    def __init__(self, argv: Sequence[str], result: Completed) -> None:
        self.result = result
        super().__init__(f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()[:500]}")


def run(argv: Sequence[str], *, input: str | None = None, timeout: float | None = None,
        env: Mapping[str, str] | None = None) -> Completed:
    try:
        return subprocess.run(list(argv), input=input, capture_output=True, text=True,
                              timeout=timeout, env=None if env is None else dict(env))
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not installed")


def check(argv: Sequence[str], *, input: str | None = None, timeout: float | None = None) -> str:
    """stdout of a command that must succeed."""
    result = run(argv, input=input, timeout=timeout)
    if result.returncode != 0:
        raise CommandFailed(argv, result)
    return result.stdout
