"""The datapath checks as pytest + testinfra tests (collected by `kgen check`).

Parametrised by `generator.checks.runner.ChecksPlugin` with the checks the
lab's plan holds (`-k` selects among them by id); the plugin runs the
selected checks together, in parallel, once collection is done, and each test
asserts its own check's outcome.
"""

from __future__ import annotations

from typing import Any

from generator.checks.plan import Check


def test_datapath(check: Check, outcome_of: Any) -> None:
    outcome = outcome_of(check)
    assert outcome.passed, f"{check.what}: expected {check.expected}; saw {outcome.seen}"
