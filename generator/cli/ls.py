"""`kgen ls`: the labs on this Docker engine, from any directory."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from generator.cli.app import app, failures, out


@app.command("ls")
def ls(as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False) -> None:
    """The running labs: name, nodes, pods, state, lab file, directory."""
    with failures():
        from generator.runtime.registry import describe, running_labs

        labs = [describe(r) for r in running_labs()]
        if as_json:
            print(json.dumps(labs, indent=2))
            return
        if not labs:
            print("no kgen lab is running")
            return
        from rich.table import Table

        table = Table("lab", "nodes", "pods", "state", "lab file", "directory", box=None)
        for lab in labs:
            table.add_row(lab["name"], str(lab["nodes"]), str(lab["pods"]), lab["state"],
                          lab["file"] or "-", lab["dir"] or "-")
        out().print(table)
