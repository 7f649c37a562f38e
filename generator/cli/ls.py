"""`kgen ls`: the labs on this Docker engine, from any directory."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated

import typer

from generator.cli.app import app, failures

COLUMNS = (("LAB", "name"), ("NODES", "nodes"), ("PODS", "pods"), ("STATE", "state"),
           ("LAB FILE", "file"), ("DIRECTORY", "dir"))


def ls_table(labs: Sequence[Mapping[str, object]]) -> str:
    """Plain columns like `docker ps`: whole paths, never cut to the terminal's width."""
    rows = [[head for head, _ in COLUMNS]]
    rows += [["-" if lab[key] is None else str(lab[key]) for _, key in COLUMNS] for lab in labs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join("   ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
                     for row in rows)


@app.command("ls")
def ls(as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False) -> None:
    """The running labs, from any directory: name, nodes, pods, state, lab file, directory."""
    with failures():
        from generator.runtime.registry import describe, running_labs

        labs = [describe(r) for r in running_labs()]
        if as_json:
            print(json.dumps(labs, indent=2))
        elif not labs:
            print("no kgen lab is running")
        else:
            print(ls_table(labs))
