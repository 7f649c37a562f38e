"""The shared `kgen` app: options every command takes, and how failures exit.

Exit status: 0 ok, 1 failure at run time, 2 bad lab file or usage.
Nothing heavy is imported here: rich consoles are made on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from generator.lab.errors import LabError

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kubernetes networking labs in Docker: nodes, pods, VXLAN, kube-proxy.")

LabOption = Annotated[str | None, typer.Option(
    "-l", "--lab", help="Lab file, or the name of a built-in lab (default: ./lab.yaml, else demo).")]


@functools.cache
def out() -> Console:
    from rich.console import Console

    return Console()


@functools.cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True)


class Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _say(message: str) -> None:
    err().print(message, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def failures() -> Iterator[None]:
    """Turn known errors into one line on stderr and the contract's exit status."""
    from generator.runtime.errors import RUNTIME_ERRORS

    try:
        yield
    except LabError as e:
        _say(f"kgen: {e}")
        raise typer.Exit(2) from None
    except Exit as e:
        _say(f"kgen: {e}")
        raise typer.Exit(e.code) from None
    except RUNTIME_ERRORS as e:
        _say(f"kgen: error: {e}")
        raise typer.Exit(1) from None


def echo(message: str) -> None:
    err().print(f"[dim]·[/dim] {message}", highlight=False)
