"""`kgen check`: the connectivity and NAT checks against the running lab."""

from __future__ import annotations

from typing import Annotated

import typer

from generator.cli.app import Exit, LabOption, app, failures, out
from generator.runtime.locate import find_lab


@app.command()
def check(lab: LabOption = None,
          as_json: Annotated[bool, typer.Option("--json", help="Results as JSON.")] = False,
          keyword: Annotated[str | None, typer.Option(
              "-k", metavar="PATTERN",
              help="Only the checks whose id matches, as pytest -k matches test ids: "
                   "substrings with and/or/not, e.g. -k 'nodeport and not local'.")] = None,
          timeout: Annotated[float, typer.Option(
              "--timeout", min=1, max=3600, metavar="SECONDS",
              help="For the whole run; checks not done by then fail.")] = 300,
          parallel: Annotated[int, typer.Option(
              "--parallel", min=1, max=32, metavar="N",
              help="Probe batches (docker execs) running at once.")] = 6) -> None:
    """Run the connectivity and NAT checks against the running lab."""
    with failures(lambda: "the checks stopped; the lab is unchanged"):
        from generator.checks.runner import SelectionError, run_checks

        ref = find_lab(lab)
        if not ref.is_up:
            if ref.given_file:
                ref.model()  # a bad lab file says so (exit 2)
            raise Exit(1, f"lab {ref.name} is not up; run `kgen up {ref.file_flag}` first")
        # The checks read the running lab (cluster.json, status): they need its name and
        # directory, not a lab file that may have been edited since.
        try:
            code = run_checks(ref, ref.paths, as_json, out(), keyword=keyword, timeout=timeout,
                              parallel=parallel)
        except SelectionError as e:
            raise Exit(2, str(e)) from None
        raise typer.Exit(code)
