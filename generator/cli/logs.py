"""`kgen logs [-l LAB] POD [-c CONTAINER]`: a pod container's output."""

from __future__ import annotations

from typing import Annotated

import typer

from generator.cli.app import Exit, LabOption, app, err, failures


@app.command()
def logs(pod: Annotated[str, typer.Argument(help="The pod.")],
         container: Annotated[str | None, typer.Option(
             "-c", "--container", help="The pod's container (default: its first).")] = None,
         follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing.")] = False,
         tail: Annotated[int | None, typer.Option(
             "--tail", help="Only the last N lines.")] = None,
         lab: LabOption = None) -> None:
    """Print a pod container's output (stdout and stderr, across its restarts)."""
    import subprocess

    from generator.runtime.logs import logs_command

    with failures():
        try:
            argv, note = logs_command(lab, pod, container, follow, tail)
        except LookupError as e:
            raise Exit(2, str(e.args[0])) from None
        if note:
            err().print(note, markup=False, highlight=False)
    raise typer.Exit(subprocess.call(argv))
