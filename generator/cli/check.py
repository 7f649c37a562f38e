"""`kgen check`: the connectivity and NAT checks against the running lab."""

from __future__ import annotations

from typing import Annotated

import typer

from generator.cli.app import LabOption, app, failures, out
from generator.cli.lifecycle import lab_paths
from generator.lab.resolve import open_lab


@app.command()
def check(lab: LabOption = None,
          as_json: Annotated[bool, typer.Option("--json", help="Results as JSON.")] = False) -> None:
    """Run the connectivity and NAT checks against the running lab."""
    with failures():
        from generator.checks.runner import run_checks

        model = open_lab(lab)
        raise typer.Exit(run_checks(model, lab_paths(model), as_json, out()))
