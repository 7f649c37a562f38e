"""Issue 20: a lab survives its Docker engine restarting, as kind's nodes do.

The demo comes up on a private engine (tests/lab/engine.py: the shared engine
is never stopped), the engine is killed outright (or stopped, as on a host's
shutdown) and started again, and with
no kgen command in between every node is Ready again, every pod Running on
the address it had, and `kgen check` passes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.lab.conftest import KGEN, PREFIX, prefixed
from tests.lab.engine import PrivateEngine, cannot_run

BACK_WITHIN = 120.0  # seconds for the nodes to come back on a loaded machine


@pytest.fixture
def engine() -> Iterator[PrivateEngine]:
    why = cannot_run()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the engine restart test: {why}")
        pytest.skip(why)
    from generator.render.node_image import node_tag

    # The node image comes from the shared engine: build it there if it is missing.
    subprocess.run([*KGEN, "image", "build"], check=True, capture_output=True, timeout=900)
    private = PrivateEngine(f"{PREFIX or 't'}{os.getpid() % 10000}")
    try:
        private.create()
        private.start()
        private.copy_image(node_tag())
        yield private
    finally:
        private.destroy()


def kgen(engine: PrivateEngine, cwd: Path, *args: str,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*KGEN, *args], cwd=cwd, env=engine.env(), capture_output=True,
                            text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"kgen {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def addresses(status: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": {n["name"]: n["ip"] for n in status["nodes"]},
            "pods": {p["name"]: p["ip"] for p in status["pods"]}}


def all_ready(status: dict[str, Any]) -> bool:
    return (all(n["state"] == "Ready" for n in status["nodes"])
            and all(p["state"] == "Running" for p in status["pods"]))


def heartbeats_since(state_dir: Path, moment: float, nodes: list[str]) -> bool:
    """Every node has renewed its heartbeat after `moment`: the documents are this run's."""
    try:
        return all((state_dir / "heartbeat" / n).stat().st_mtime > moment for n in nodes)
    except OSError:
        return False


@pytest.mark.parametrize("how", ["crash", "stop"])
def test_demo_comes_back_after_the_engine_restarts(engine: PrivateEngine, tmp_path: Path,
                                                   how: str) -> None:
    """`crash`: dockerd and containerd killed outright; `stop`: dockerd stopped as on
    a host's shutdown, which stops every container first."""
    lab_file = prefixed(ROOT / "labs" / "demo.yaml", tmp_path)
    kgen(engine, tmp_path, "up", "-l", str(lab_file))
    before = json.loads(kgen(engine, tmp_path, "status", "--json", "-l", str(lab_file)).stdout)
    assert all_ready(before)
    state_dir = tmp_path / f"kgen-{before['name']}" / "state"
    nodes = [n["name"] for n in before["nodes"]]

    engine.crash() if how == "crash" else engine.stop()
    restarted = time.time()
    engine.start()

    deadline = time.monotonic() + BACK_WITHIN
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if heartbeats_since(state_dir, restarted, nodes):
            status = json.loads(kgen(engine, tmp_path, "status", "--json", "-l",
                                     str(lab_file)).stdout)
            if all_ready(status):
                break
        time.sleep(1.0)
    assert status and all_ready(status), f"not back after {BACK_WITHIN:.0f}s: {status}"
    assert addresses(status) == addresses(before)
    started = engine.docker("inspect", "-f", "{{.State.StartedAt}}",
                            *[n["container"] for n in status["nodes"]]).stdout.split()
    # Restarted by the engine itself (its restart policy), after it came back.
    assert len(started) == len(nodes)
    assert all(datetime.fromisoformat(s[:26] + "+00:00").timestamp() > restarted
               for s in started), started
    checked = kgen(engine, tmp_path, "check", "-l", str(lab_file), check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert " 0 failed" in checked.stdout.strip().splitlines()[-1]
