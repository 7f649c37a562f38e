"""The shared `kgen` app: options every command takes, and how failures exit.

Exit status: 0 ok, 1 failure at run time, 2 bad lab file or usage, 130 when
interrupted (SIGINT). Nothing heavy is imported here: rich consoles are made
on first use, and shell completion reads running labs through the `docker` CLI.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from generator.lab.errors import LabError, printable

if TYPE_CHECKING:
    from rich.console import Console


# Failures of a write to an open file (no file name attached): a full disk, a quota, EIO.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
# What `-o` means to kubectl users (`kubectl get -o json`): never a directory name by mistake.
OUTPUT_FORMAT_WORDS = ("json", "yaml", "wide", "name")


class KgenGroup(TyperGroup):
    """The one place where a file-system error no command expected (an output that is a
    directory, a read-only or full disk, a closed stdout) becomes one line and exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a full disk behind stdout shows here, not at exit
            return result
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise  # a reader that went away (`kgen ls | head`): click exits quietly
            _say(f"kgen: error: {os_error_line(e)}")
            raise typer.Exit(1) from None


def os_error_line(e: OSError) -> str:
    """What went wrong, on one line: the file and the system's words for it."""
    if e.filename is None and (not _stdout_writable() or e.errno in _WRITE_ERRNOS):
        return f"cannot write the output: {e.strerror or e}"  # stdout, or a file being written
    where = ": ".join(printable(str(f)) for f in (e.filename, e.filename2) if f is not None)
    return f"{where}: {e.strerror or e}" if where else str(e.strerror or e)


def _stdout_writable() -> bool:
    """Flush stdout; when it cannot take the rest, point it at /dev/null so Python's own
    flush at exit does not print a second error."""
    try:
        sys.stdout.flush()
        return True
    except OSError:
        with contextlib.suppress(OSError, ValueError):  # not a real file: a test's capture
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False


app = typer.Typer(cls=KgenGroup, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Kubernetes networking labs in Docker: nodes, pods, VXLAN, kube-proxy.")


def complete_lab(incomplete: str) -> list[str]:
    """Shell completion for -l: running labs, built-in labs, lab files here."""
    from generator.resources import builtin_labs
    from generator.runtime.registry import running_labs

    names = [r.name for r in running_labs()] + builtin_labs()
    folder = Path(incomplete).parent if "/" in incomplete else Path(".")
    try:
        files = [str(p) if "/" in incomplete else p.name for p in sorted(folder.iterdir())
                 if p.suffix in (".yaml", ".yml") or p.is_dir()]
    except OSError:
        files = []
    seen: list[str] = []
    for word in [*names, *files]:
        if word.startswith(incomplete) and word not in seen:
            seen.append(word)
    return seen


def _lab_members(ctx: typer.Context, kinds: tuple[str, ...]) -> list[str]:
    from generator.runtime.locate import find_lab

    try:
        cluster = find_lab(ctx.params.get("lab")).cluster()
    except (LabError, OSError):
        return []
    if cluster is None:
        return []
    members = {"nodes": [n["name"] for n in cluster.get("nodes", [])],
               "pods": [p["name"] for p in cluster.get("pods", [])],
               "clients": [c["name"] for c in cluster.get("clients", [])]}
    return [name for kind in kinds for name in members.get(kind, [])]


def complete_target(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for a node, pod or client of the lab given with -l (or the default)."""
    return [n for n in _lab_members(ctx, ("nodes", "pods", "clients")) if n.startswith(incomplete)]


def complete_pod(ctx: typer.Context, incomplete: str) -> list[str]:
    return [n for n in _lab_members(ctx, ("pods",)) if n.startswith(incomplete)]


LabOption = Annotated[str | None, typer.Option(
    "-l", "--lab", autocompletion=complete_lab,
    help="Lab file, else a running lab's name (from any directory), else a built-in lab "
         "(default: ./lab.yaml, else demo).")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"kgen {version('kgen')}")
        except PackageNotFoundError:
            print("kgen (not installed)")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print kgen's version.")] = False) -> None:
    """Kubernetes networking labs in Docker: nodes, pods, VXLAN, kube-proxy."""


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
def failures(interrupted: Callable[[], str] | None = None) -> Iterator[None]:
    """Turn known errors into one line on stderr and the contract's exit status.

    On SIGINT, `interrupted()` says what was left behind and how to clean it up.
    """
    from generator.runtime.errors import RUNTIME_ERRORS

    try:
        yield
    except KeyboardInterrupt:
        detail = ""
        if interrupted is not None:
            try:
                detail = interrupted()
            except Exception as e:  # the report must not hide the interrupt
                detail = f"could not see what was left running ({e})"
        _say("kgen: interrupted" + (f"; {detail}" if detail else ""))
        raise typer.Exit(130) from None
    except LabError as e:
        # Plain text, written at once: a file with 60,000 errors would spend seconds
        # in rich's per-line rendering (its lines are printable already).
        sys.stderr.write("".join(f"kgen: {line}\n" for line in e.lines()))
        sys.stderr.flush()
        raise typer.Exit(2) from None
    except Exit as e:
        _say(f"kgen: {e}")
        raise typer.Exit(e.code) from None
    except RUNTIME_ERRORS as e:
        _say(f"kgen: error: {e}")
        raise typer.Exit(1) from None
    except PermissionError as e:
        _say(f"kgen: error: {permission_problem(e)}")
        raise typer.Exit(1) from None


def permission_problem(err: PermissionError) -> str:
    """One line for a file this user may not touch: which, and whose it (or the
    nearest directory above it that exists) is."""
    import os
    from pathlib import Path

    if not err.filename:
        return f"permission denied ({err.strerror or err})"
    path = Path(os.fsdecode(err.filename))
    for where in (path, *path.parents):
        try:
            owner = where.stat().st_uid
        except OSError:
            continue
        return (f"permission denied: {path} ({where} belongs to uid {owner}; "
                f"kgen runs as uid {os.geteuid()})")
    return f"permission denied: {path}"


def output_dir(path: Path) -> Path:
    """`-o DIR` of a command that writes a directory: refuse a file, and a format word
    (`-o json`) that would quietly become a folder of that name."""
    if path.exists() and not path.is_dir():
        raise Exit(2, f"-o {path}: is a file; -o names a directory to write into")
    if str(path) in OUTPUT_FORMAT_WORDS and not path.is_dir():
        raise Exit(2, f"-o {path}: -o names the directory to write into, not an output format; "
                      f"for a directory named {path} write -o ./{path}")
    return path


def echo(message: str) -> None:
    """A progress line on stderr, never wrapped (paths stay whole)."""
    from rich.markup import escape

    err().print(f"[dim]·[/dim] {escape(message)}", highlight=False, soft_wrap=True)
