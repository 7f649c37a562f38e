"""Run the planned checks with pytest against a live lab; print a table or JSON.

pytest parametrises `test_datapath.py` with the plan and applies `-k` to the
check ids exactly as it does to test ids. Once collection has chosen the
checks, the plugin runs them all at once (`probes.run_all`: batched probes,
in parallel, within the deadline, with a progress display), and each test
asserts its check's outcome.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from generator.checks.plan import Check, plan
from generator.checks.probes import DEFAULT_DEADLINE, PARALLEL, Lab, Outcome, run_all
from generator.node.documents import StatusReport
from generator.runtime.neighbours import NEIGH, entries_needed, has_room, limit


class SelectionError(ValueError):
    """-k matched no check, or is not a valid expression."""


class ChecksPlugin:
    """Feeds the checks to test_datapath.py, runs the selected ones, keeps what each saw."""

    def __init__(self, checks: list[Check], lab: Lab, parallel: int, timeout: float,
                 progress: Callable[[int], Callable[[Check, Outcome], None]] | None) -> None:
        self.checks = checks
        self.lab = lab
        self.parallel = parallel
        self.timeout = timeout
        self.progress = progress
        self.selected: list[Check] = []
        self.outcomes: dict[str, Outcome] = {}

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "check" in metafunc.fixturenames:
            metafunc.parametrize("check", self.checks, ids=[c.id for c in self.checks])

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected = [item.callspec.params["check"] for item in session.items
                         if hasattr(item, "callspec")]
        done = self.progress(len(self.selected)) if self.progress and self.selected else None
        self.outcomes = run_all(self.lab, self.selected, self.parallel, self.timeout, done)

    @pytest.fixture
    def outcome_of(self) -> Callable[[Check], Outcome]:
        return lambda check: self.outcomes.get(check.id, Outcome(False, "did not run"))


def execute(cluster: dict[str, Any], status: StatusReport,
            checks: list[Check] | None = None, keyword: str | None = None,
            parallel: int = PARALLEL, timeout: float = DEFAULT_DEADLINE,
            progress: Callable[[int], Callable[[Check, Outcome], None]] | None = None,
            ) -> list[dict[str, Any]]:
    """Run checks (default: the lab's plan; `keyword` selects as pytest -k does);
    one result row per check run, in plan order."""
    checks = plan(cluster) if checks is None else checks
    plugin = ChecksPlugin(checks, Lab(cluster, status), parallel, timeout, progress)
    module = Path(__file__).with_name("test_datapath.py")
    # Our own ini (none) and rootdir, so a project's pytest config does not leak in;
    # no capture, so the progress display reaches the terminal; pytest's report goes
    # to a buffer: kgen prints its own table.
    args = [str(module), "-q", "-s", "-p", "no:cacheprovider", "-c", os.devnull,
            "--rootdir", str(module.parent)]
    if keyword:
        args += ["-k", keyword]
    report = io.StringIO()
    with contextlib.redirect_stdout(report), contextlib.redirect_stderr(report):
        code = pytest.main(args, plugins=[plugin])
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
        lines = [line.removeprefix("ERROR: ") for line in report.getvalue().splitlines()
                 if line.startswith("ERROR")]
        raise SelectionError("; ".join(lines[-2:]) or f"-k {keyword!r}: pytest exit {code}")
    if not plugin.selected:
        raise SelectionError(f"no check matches -k {keyword!r}" if keyword else "no checks planned")
    rows = []
    for c in plugin.selected:
        outcome = plugin.outcomes.get(c.id, Outcome(False, "did not run"))
        rows.append({"id": c.id, "kind": c.kind, "what": c.what, "from": c.source,
                     "to": c.target, "expected": c.expected, "seen": outcome.seen,
                     "passed": outcome.passed})
    return rows


def table(rows: list[dict[str, Any]]) -> Table:
    t = Table("check", "from", "to", "expected", "seen", "result", title="kgen check")
    for r in rows:
        t.add_row(r["what"], r["from"], r["to"], r["expected"], r["seen"],
                  "[green]pass[/]" if r["passed"] else "[red]FAIL[/]")
    return t


def progress_display(console: Console) -> tuple[Any, Callable[[int], Callable[[Check, Outcome],
                                                                              None]]]:
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


def neighbour_warning(cluster: dict[str, Any], neigh: Path = NEIGH) -> str | None:
    """Why a big lab may fail its checks on this host, before it does (`kgen up`
    raises the limit when it can; see generator/runtime/neighbours.py)."""
    if has_room(cluster, neigh):
        return None
    return (f"warning: the checks need about {entries_needed(cluster)} neighbour (ARP) entries at "
            f"once and this host shares at most {limit(neigh)} among all its network namespaces "
            "(net.ipv4.neigh.default.gc_thresh3): checks may fail with 'neighbor table overflow!' "
            "in dmesg. Raise the limit, e.g. sysctl -w net.ipv4.neigh.default.gc_thresh1=4096 "
            "net.ipv4.neigh.default.gc_thresh2=8192 net.ipv4.neigh.default.gc_thresh3=16384")


def run_checks(model: Any, paths: Any, as_json: bool, console: Console,
               keyword: str | None = None, timeout: float = DEFAULT_DEADLINE,
               parallel: int = PARALLEL) -> int:
    from generator.runtime.engine import docker_client
    from generator.runtime.errors import RuntimeFailure
    from generator.runtime.status import status as lab_status

    cluster = paths.cluster()
    status = lab_status(docker_client(), paths, model.name) if cluster else None
    if cluster is None or status is None or any(n["state"] != "Ready" for n in status["nodes"]):
        raise RuntimeFailure(f"lab {model.name} is not up; run `kgen up` first")
    # The progress display writes to the terminal's stderr, fixed now: pytest's own output
    # is redirected while the checks run.
    progress_console = Console(file=sys.stderr)
    warning = neighbour_warning(cluster)
    if warning:
        progress_console.print(warning, style="yellow", markup=False, highlight=False)
    bar, start = progress_display(progress_console)
    started = time.monotonic()
    with bar:
        rows = execute(cluster, status, keyword=keyword, parallel=parallel, timeout=timeout,
                       progress=start)
    seconds = time.monotonic() - started
    failed = sum(not r["passed"] for r in rows)
    if as_json:
        print(json.dumps({"lab": model.name, "passed": len(rows) - failed, "failed": failed,
                          "seconds": round(seconds, 2), "checks": rows}, indent=2))
    else:
        console.print(table(rows))
        console.print(f"{len(rows) - failed} passed, {failed} failed in {seconds:.1f} s")
    return 1 if failed else 0
