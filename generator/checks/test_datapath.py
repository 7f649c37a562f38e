"""The datapath checks as pytest + testinfra tests (collected by `kgen check`).

Parametrised by `generator.checks.runner.ChecksPlugin` with the checks the
lab's plan holds; each test records what it saw for the report.
"""

from __future__ import annotations

from typing import Any

from generator.checks.plan import Check
from generator.checks.probes import run_check


def test_datapath(check: Check, live_lab: Any, record: Any) -> None:
    outcome = run_check(live_lab, check)
    record(check, outcome)
    assert outcome.passed, f"{check.what}: expected {check.expected}; saw {outcome.seen}"
