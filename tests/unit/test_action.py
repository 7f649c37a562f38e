"""action.yml (contract §10) and the workflow that uses it: the shape the contract
gives, actionlint with shellcheck clean, and the action's proxy-mode step run for real."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

ACTION = ROOT / "action.yml"
WORKFLOW = ROOT / ".github" / "workflows" / "lab.yml"
BIN = Path(sys.executable).parent


def action() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return doc


def step(name: str) -> dict[str, Any]:
    return next(s for s in action()["runs"]["steps"] if s["name"] == name)


def lint_action(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lint_action.py"), str(path)],
                          capture_output=True, text=True, timeout=120)


def test_inputs_and_outputs_are_the_contracts() -> None:
    doc = action()
    assert doc["runs"]["using"] == "composite"
    inputs = doc["inputs"]
    assert set(inputs) == {"lab", "proxy-mode", "check"}
    assert (inputs["lab"]["default"], inputs["check"]["default"]) == ("demo", "true")
    assert inputs["proxy-mode"]["required"] is False
    assert set(doc["outputs"]) == {"lab-name"}


def test_it_checks_with_junit_and_exports_only_when_a_step_failed() -> None:
    assert "kgen check -l \"$LAB\" --junitxml" in step("Check the lab")["run"]
    assert step("Check the lab")["if"] == "inputs.check == 'true'"
    export = step("Export the lab's logs")
    assert export["if"] == "failure()" and "--export" in export["run"]
    upload = step("Upload the lab's logs")
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["if"].startswith("failure()")
    assert not any("kgen down" in s.get("run", "") for s in action()["runs"]["steps"])


def test_the_workflow_uses_the_action_from_this_repository() -> None:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["lab"]["steps"]
    assert any(s.get("uses") == "./" for s in steps)
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") and s.get("if") == "failure()"
               for s in steps)


def test_actionlint_with_shellcheck_is_clean_on_the_workflow_and_the_action() -> None:
    done = subprocess.run([str(BIN / "actionlint"), str(WORKFLOW)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={"PATH": f"{BIN}:/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    linted = lint_action(ACTION)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_action_lint_sees_the_shell_of_its_steps(tmp_path: Path) -> None:
    """The counter-check: an unquoted variable in a step is found (shellcheck ran)."""
    broken = tmp_path / "action.yml"
    broken.write_text(ACTION.read_text().replace('rm -rf "$dir"', "rm -rf $dir/x"))
    linted = lint_action(broken)
    assert linted.returncode == 1
    assert "SC2086" in linted.stdout


def test_proxy_mode_brings_the_lab_up_from_a_copy_with_that_mode(tmp_path: Path) -> None:
    script = re.search(r"<<'PY'\n(.*?)\n\s*PY\n", step("Choose the lab file")["run"], re.S)
    assert script is not None
    # A lab file by path (a built-in name could mean a lab running on this engine).
    (tmp_path / "mine.yaml").write_text((ROOT / "labs" / "demo.yaml").read_text())
    done = subprocess.run([sys.executable, "-", "mine.yaml", "nftables", str(tmp_path / "lab")],
                          input=script.group(1), capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    copy = Path(done.stdout.strip())
    assert copy == tmp_path / "lab" / "mine.yaml"
    original = yaml.safe_load((ROOT / "labs" / "demo.yaml").read_text())
    assert yaml.safe_load(copy.read_text()) == {**original, "proxyMode": "nftables"}
