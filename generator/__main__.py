"""The `kgen` console script (and `python -m generator`).

A plain `kgen exec [-l LAB] TARGET [-- CMD...]` runs on a fast path: parsed
here by hand, resolved with the same `find_lab` every command uses, and
replaced by `docker exec`, without importing the `generator.cli` package.
Parsing with typer imports typer itself and, in recent typer, pydantic for
parameter coercion, which would make `kgen exec` cost several times a bare
`docker exec`. Anything else (another command, `-h`, an option of the command
not behind `--`, a missing target) goes to typer: same result, its own help
and usage errors.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see runtime/paths.py)
if TYPE_CHECKING:
    from typing import NoReturn


def parse_exec(args: list[str]) -> tuple[str | None, str, list[str]] | None:
    """(lab, target, command) of a plain exec command line (after `exec`), else None."""
    lab: str | None = None
    target: str | None = None
    command: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            command += args[i + 1:]
            break
        if arg in ("-l", "--lab"):
            if i + 1 >= len(args):
                return None
            lab = args[i + 1]
            i += 2
            continue
        if arg.startswith("--lab="):
            lab = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            return None  # -h, --help, -lX, an option of the command before `--`: typer decides
        elif target is None:
            target = arg
        else:
            command.append(arg)
        i += 1
    if target is None or lab == "":
        return None
    return lab, target, command


def fast_exec(lab: str | None, target: str, command: list[str]) -> NoReturn:
    from generator.runtime.errors import RuntimeFailure
    from generator.runtime.execute import exec_command, run_exec

    try:
        run_exec(exec_command(lab, target, command, sys.stdin.isatty()))
    except LookupError as e:
        sys.stderr.write(f"kgen: {e.args[0]}\n")
        sys.exit(2)
    except RuntimeFailure as e:
        sys.stderr.write(f"kgen: error: {e}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("kgen: interrupted\n")
        sys.exit(130)
    except OSError as e:  # `docker` missing or not executable, an unreadable lab file
        where = f"{e.filename}: " if e.filename is not None else ""
        sys.stderr.write(f"kgen: error: {where}{e.strerror or e}\n")
        sys.exit(1)
    except Exception as e:
        # A bad lab file; generator.lab.errors is loaded only when one was raised.
        errors = sys.modules.get("generator.lab.errors")
        if errors is None or not isinstance(e, errors.LabError):
            raise
        sys.stderr.writelines(f"kgen: {line}\n" for line in e.lines())
        sys.exit(2)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["exec"]:
        parsed = parse_exec(args[1:])
        if parsed is not None:
            fast_exec(*parsed)
    from generator.cli import app

    app()


if __name__ == "__main__":
    main()
