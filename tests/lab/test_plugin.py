"""kgen's pytest plugin on real labs (lab contract §10): `pytest --kgen-lab FILE examples/`.

The examples pass against a lab the plugin brings up itself and takes down at
the end; a failing assertion in such a test fails pytest; `--kgen-keep` leaves
the lab running.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT
from tests.lab.conftest import PREFIX, RunningLab, labelled

EXAMPLES = ROOT / "examples" / "test_lab_ideas.py"


def pytest_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The same interpreter, so the plugin is the one installed with this kgen (entry point).
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "-rA", *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_examples_pass_on_a_lab_the_plugin_brings_up_and_down(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "labs" / "demo.yaml").read_text())
    doc["name"] = f"{PREFIX}plugin"[:20]  # its own lab: the shared demo stays as it is
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        result = pytest_run("--kgen-lab", str(lab_file), str(EXAMPLES), cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        tests = EXAMPLES.read_text().count("\ndef test_")
        assert f"{tests} passed" in result.stdout
        assert labelled(doc["name"]) == [], "without --kgen-keep the lab goes down at the end"
    finally:
        subprocess.run([sys.executable, "-m", "generator", "down", "-l", str(lab_file)],
                       cwd=tmp_path, capture_output=True)


def test_a_failing_assertion_fails_pytest_and_keep_leaves_the_lab(demo: RunningLab,
                                                                   tmp_path: Path) -> None:
    wrong = EXAMPLES.read_text().replace('assert answer in {"pod-2", "pod-3"}',
                                         'assert answer in {"pod-0"}')
    assert wrong != EXAMPLES.read_text()
    (tmp_path / "test_wrong.py").write_text(wrong)
    result = pytest_run("--kgen-lab", str(demo.lab_file), "--kgen-keep",
                        str(tmp_path / "test_wrong.py"), cwd=demo.dir)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "FAILED" in result.stdout and "test_clusterip_is_answered_by_a_backend" in result.stdout
    assert "1 failed" in result.stdout
    assert all(n["state"] == "Ready" for n in demo.status()["nodes"]), "--kgen-keep: still up"
