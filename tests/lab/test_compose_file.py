"""The rendered compose file stays the lab's artifact (issue 20).

`kgen up` creates the containers through the Engine API; compose, run by hand
on the rendered directory, must still see them as its own (`down` removes
them), and `compose up -d` on the same directory must still give a lab that
comes Ready by itself. Compose v2 where it is installed, else v1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.conftest import PREFIX, kgen, labelled

READY_WITHIN = 120.0


def compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither `docker compose` nor `docker-compose` is installed")


def test_compose_by_hand_takes_down_and_brings_up_what_kgen_made(tmp_path: Path) -> None:
    name = f"{PREFIX}cmp"[:20]
    (tmp_path / "lab.yaml").write_text(
        f"name: {name}\nnodes: [n0, n1]\nclients: [c0]\nnodeNetwork: 172.31.213.0/24\n"
        "pods: [{name: p0, node: n0}, {name: p1, node: n1}]\n")
    rendered = tmp_path / f"kgen-{name}"
    compose = [*compose_command(), "-f", str(rendered / "docker-compose.yml"),
               "-p", f"kgen-{name}"]
    try:
        kgen("up", cwd=tmp_path)
        listed = subprocess.run([*compose, "ps", "-q"], capture_output=True, text=True,
                                check=True, timeout=120).stdout.split()
        assert len(listed) == 3, "compose sees kgen's containers as its project's"
        subprocess.run([*compose, "down"], capture_output=True, check=True, timeout=300)
        assert labelled(name) == [], "compose down removed the containers and the network"

        subprocess.run([*compose, "up", "-d"], capture_output=True, check=True, timeout=300)
        deadline = time.monotonic() + READY_WITHIN
        status: dict = {}
        while time.monotonic() < deadline:
            status = json.loads(kgen("status", "--json", cwd=tmp_path).stdout)
            if (all(n["state"] == "Ready" for n in status["nodes"])
                    and all(p["state"] == "Running" for p in status["pods"])):
                break
            time.sleep(1.0)
        assert [n["state"] for n in status["nodes"]] == ["Ready", "Ready"], status
        assert {p["name"]: p["state"] for p in status["pods"]} == {
            "p0": "Running", "p1": "Running", "coredns-0": "Running", "coredns-1": "Running"}
        # And kgen takes over a lab compose started: `up` is idempotent on it.
        kgen("up", cwd=tmp_path)
    finally:
        kgen("down", cwd=tmp_path, check=False)
    assert labelled(name) == []
