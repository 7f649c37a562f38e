"""`kgen check` for people and CI: the table, the progress bar, JSON, JUnit, GitHub's summary."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from generator.checks import matrix
from generator.checks.base import Check, Outcome
from generator.checks.batch import DEFAULT_DEADLINE, PARALLEL
from generator.checks.runner import Progress, execute
from generator.runtime.neighbours import NEIGH, entries_needed, has_room, limit


def table(rows: list[dict[str, Any]]) -> Table:
    t = Table("check", "from", "to", "expected", "seen", "result", title="kgen check")
    for r in rows:
        t.add_row(r["what"], r["from"], r["to"], r["expected"], r["seen"],
                  "[green]pass[/]" if r["passed"] else "[red]FAIL[/]")
    return t


def closing_line(rows: list[dict[str, Any]], seconds: float) -> str:
    failed = sum(not r["passed"] for r in rows)
    return f"{len(rows) - failed} passed, {failed} failed in {seconds:.1f} s"


def _cell(text: str) -> str:
    """Table cell text for Markdown: pipes escaped, one line."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(lab: str, rows: list[dict[str, Any]], seconds: float) -> str:
    """The run as a GitHub job summary: failures first, then the closing line."""
    lines = [f"### kgen check: lab `{lab}`", "",
             "| result | check | test | from | to | expected | seen |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["passed"]):
        lines.append("| " + " | ".join([
            "✅ pass" if r["passed"] else "❌ FAIL", _cell(r["what"]), f"`{_cell(r['id'])}`",
            _cell(r["from"]), _cell(r["to"]), _cell(r["expected"]), _cell(r["seen"])]) + " |")
    netpol = matrix.report(rows)
    if netpol:
        lines += ["", "```", netpol, "```"]
    return "\n".join([*lines, "", f"**{closing_line(rows, seconds)}**", ""])


def github_summary(lab: str, rows: list[dict[str, Any]], seconds: float) -> None:
    """Under GitHub Actions, append the run to the job's summary page."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(markdown(lab, rows, seconds) + "\n")


def progress_display(console: Console) -> tuple[Any, Progress]:
    """A rich progress bar (on a terminal) and the factory the plugin calls with the total."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
                   console=console, transient=True, disable=not console.is_terminal)

    def start(total: int) -> Callable[[Check, Outcome], None]:
        task = bar.add_task("checks", total=total, failed=0)
        failed = 0

        def done(_check: Check, outcome: Outcome) -> None:
            nonlocal failed
            failed += not outcome.passed
            bar.update(task, advance=1, failed=failed)

        return done

    return bar, start


def neighbour_warning(cluster: Any, neigh: Path = NEIGH) -> str | None:
    """Why a big lab may fail its checks on this host, before it does (`kgen up`
    raises the limit when it can; see generator/runtime/neighbours.py)."""
    if has_room(cluster, neigh):
        return None
    return (f"warning: the checks need about {entries_needed(cluster)} neighbour (ARP) entries at "
            f"once and this host shares at most {limit(neigh)} among all its network namespaces "
            "(net.ipv4.neigh.default.gc_thresh3): checks may fail with 'neighbor table overflow!' "
            "in dmesg. Raise the limit, e.g. sysctl -w net.ipv4.neigh.default.gc_thresh1=4096 "
            "net.ipv4.neigh.default.gc_thresh2=8192 net.ipv4.neigh.default.gc_thresh3=16384")


def run_checks(ref: Any, as_json: bool, console: Console, keyword: str | None = None,
               timeout: float = DEFAULT_DEADLINE, parallel: int = PARALLEL,
               junitxml: Path | None = None) -> int:
    """`kgen check` on the running lab `ref` (a LabRef): exit status 1 when any check fails."""
    from generator.checks.lab import KgenLab
    from generator.runtime.errors import RuntimeFailure

    lab = KgenLab.running(ref)
    status = lab.status()
    if any(n["state"] != "Ready" for n in status["nodes"]):
        raise RuntimeFailure(f"lab {lab.name} is not up; run `kgen up` first")
    # The progress display writes to the terminal's stderr, fixed now: pytest's own output
    # is redirected while the checks run.
    progress_console = Console(file=sys.stderr)
    warning = neighbour_warning(lab.cluster)
    if warning:
        progress_console.print(warning, style="yellow", markup=False, highlight=False)
    bar, start = progress_display(progress_console)
    started = time.monotonic()
    with bar:
        rows = execute(lab.cluster, status, keyword=keyword, parallel=parallel, timeout=timeout,
                       progress=start, junitxml=junitxml, lab=lab)
    seconds = time.monotonic() - started
    failed = sum(not r["passed"] for r in rows)
    github_summary(lab.name, rows, seconds)
    if as_json:
        print(json.dumps({"lab": lab.name, "passed": len(rows) - failed, "failed": failed,
                          "seconds": round(seconds, 2), "checks": rows}, indent=2))
    else:
        console.print(table(rows))
        netpol = matrix.report(rows)
        if netpol:  # only a lab with NetworkPolicies has netpol rows
            console.print(netpol, markup=False, highlight=False, soft_wrap=True)
        console.print(closing_line(rows, seconds))
    return 1 if failed else 0
