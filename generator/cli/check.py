"""`kgen check`: the connectivity and NAT checks against the running lab, as pytest tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from generator.cli.app import Exit, LabOption, app, failures, out
from generator.runtime.locate import find_lab


@app.command()
def check(lab: LabOption = None,
          as_json: Annotated[bool, typer.Option("--json", help="Results as JSON.")] = False,
          keyword: Annotated[str | None, typer.Option(
              "-k", metavar="PATTERN",
              help="Only the checks whose test name matches, as pytest -k matches: substrings "
                   "with and/or/not, e.g. -k 'nodeport and not local'.")] = None,
          junitxml: Annotated[Path | None, typer.Option(
              "--junitxml", metavar="FILE", dir_okay=False,
              help="Also write JUnit XML, one testcase per check.")] = None,
          timeout: Annotated[float, typer.Option(
              "--timeout", min=1, max=3600, metavar="SECONDS",
              help="For the whole run; checks not done by then fail.")] = 300,
          parallel: Annotated[int, typer.Option(
              "--parallel", min=1, max=32, metavar="N",
              help="Probe batches (docker execs) running at once.")] = 6) -> None:
    """Run the connectivity and NAT checks against the running lab, one pytest test per check."""
    with failures(lambda: "the checks stopped; the lab is unchanged"):
        from generator.checks.report import run_checks
        from generator.checks.runner import SelectionError

        ref = find_lab(lab)
        if not ref.is_up:
            if ref.given_file:
                ref.model()  # a bad lab file says so (exit 2)
            raise Exit(1, f"lab {ref.name} is not up; run `kgen up {ref.file_flag}` first")
        if junitxml is not None and not junitxml.resolve().parent.is_dir():
            raise Exit(2, f"--junitxml {junitxml}: no such directory {junitxml.parent}")
        # The checks read the running lab (cluster.json, status): they need its name and
        # directory, not a lab file that may have been edited since.
        try:
            code = run_checks(ref, as_json, out(), keyword=keyword, timeout=timeout,
                              parallel=parallel, junitxml=junitxml)
        except SelectionError as e:
            raise Exit(2, str(e)) from None
        raise typer.Exit(code)
