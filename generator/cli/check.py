"""`kgen check`: the connectivity and NAT checks against the running lab."""

from __future__ import annotations

from typing import Annotated

import typer

from generator.cli.app import Exit, LabOption, app, failures, out
from generator.runtime.locate import find_lab


@app.command()
def check(lab: LabOption = None,
          as_json: Annotated[bool, typer.Option("--json", help="Results as JSON.")] = False) -> None:
    """Run the connectivity and NAT checks against the running lab."""
    with failures(lambda: "the checks stopped; the lab is unchanged"):
        from generator.checks.runner import run_checks

        ref = find_lab(lab)
        if ref.running is None or not ref.running.running:
            if ref.given_file:
                ref.model()  # a bad lab file says so (exit 2)
            raise Exit(1, f"lab {ref.name} is not up; run `kgen up {ref.file_flag}` first")
        # The checks read the running lab (cluster.json, status): they need its name and
        # directory, not a lab file that may have been edited since.
        raise typer.Exit(run_checks(ref, ref.paths, as_json, out()))
