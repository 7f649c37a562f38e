"""Run the planned checks with pytest against a live lab; print a table or JSON."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from generator.checks.plan import Check, plan
from generator.checks.probes import Lab, Outcome


class ChecksPlugin:
    """Feeds the checks to test_datapath.py and keeps what each one saw."""

    def __init__(self, checks: list[Check], lab: Lab) -> None:
        self.checks = checks
        self.lab = lab
        self.outcomes: dict[str, Outcome] = {}

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "check" in metafunc.fixturenames:
            metafunc.parametrize("check", self.checks, ids=[c.id for c in self.checks])

    @pytest.fixture
    def live_lab(self) -> Lab:
        return self.lab

    @pytest.fixture
    def record(self) -> Any:
        def keep(check: Check, outcome: Outcome) -> None:
            self.outcomes[check.id] = outcome

        return keep


def execute(cluster: dict[str, Any], status: dict[str, Any],
            checks: list[Check] | None = None) -> list[dict[str, Any]]:
    """Run checks (default: the lab's plan); one result row per check."""
    checks = plan(cluster) if checks is None else checks
    plugin = ChecksPlugin(checks, Lab(cluster, status))
    module = Path(__file__).with_name("test_datapath.py")
    # Our own ini (none) and rootdir, so a project's pytest config does not leak in;
    # pytest's report goes to a buffer: kgen prints its own table.
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([str(module), "-q", "-p", "no:cacheprovider", "-c", os.devnull,
                     "--rootdir", str(module.parent)], plugins=[plugin])
    rows = []
    for c in checks:
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


def run_checks(model: Any, paths: Any, as_json: bool, console: Console) -> int:
    from generator.runtime.engine import docker_client
    from generator.runtime.errors import RuntimeFailure
    from generator.runtime.status import status as lab_status

    cluster = paths.cluster()
    status = lab_status(docker_client(), paths, model.name) if cluster else None
    if cluster is None or status is None or any(n["state"] != "Ready" for n in status["nodes"]):
        raise RuntimeFailure(f"lab {model.name} is not up; run `kgen up` first")
    rows = execute(cluster, status)
    failed = sum(not r["passed"] for r in rows)
    if as_json:
        print(json.dumps({"lab": model.name, "passed": len(rows) - failed, "failed": failed,
                          "checks": rows}, indent=2))
    else:
        console.print(table(rows))
        console.print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0
