"""Real labs in Docker, brought up through the real `kgen` command line.

Without a Docker engine these tests skip with a message, except under CI
(CI=true), where a missing engine is a failure: CI must never go green by
skipping the lab tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

# The console script next to this interpreter: the same `kgen` a user runs.
_beside = Path(sys.executable).with_name("kgen")
KGEN = [str(_beside) if _beside.exists() else shutil.which("kgen") or "kgen"]


def docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session", autouse=True)
def _engine() -> None:
    if docker_ready():
        return
    if os.environ.get("CI"):
        pytest.fail("no Docker engine answers, and CI must run the lab tests")
    pytest.skip("no Docker engine answers (run scripts/install.sh)")


def kgen(*args: str, cwd: Path, check: bool = True,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*KGEN, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"kgen {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def labelled(lab: str) -> list[str]:
    """Every container and network that carries the lab's label."""
    import docker

    client = docker.from_env()
    found = [c.name for c in client.containers.list(all=True, filters={"label": f"kgen.lab={lab}"})]
    found += [n.name for n in client.networks.list(filters={"label": f"kgen.lab={lab}"})]
    return found


@dataclass
class RunningLab:
    """A lab that is up; `dir` is where it was rendered."""

    name: str
    lab_file: Path
    dir: Path

    def kgen(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # -l before anything else: after `--` it would belong to the command run by exec.
        return kgen(command, "-l", str(self.lab_file), *args, cwd=self.dir, check=check)

    def status(self) -> dict[str, Any]:
        return json.loads(self.kgen("status", "--json").stdout)

    def exec(self, target: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kgen("exec", target, "--", *command, check=check)

    def node_of(self, pod: str) -> str:
        return next(p["node"] for p in self.status()["pods"] if p["name"] == pod)


# Developers running lab tests side by side on one engine set a short prefix
# (KGEN_TEST_LAB_PREFIX=t1) so that their labs' names, containers and networks
# never meet; CI runs one suite at a time and leaves it unset.
PREFIX = os.environ.get("KGEN_TEST_LAB_PREFIX", "")


def prefixed(lab_file: Path, workdir: Path) -> Path:
    """A copy of the lab file whose name carries PREFIX (no copy without one)."""
    if not PREFIX:
        return lab_file
    import yaml

    doc = yaml.safe_load(lab_file.read_text())
    doc["name"] = f"{PREFIX}{doc['name']}"[:20]
    copy = workdir / f"{PREFIX}-{lab_file.name}"
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy


def export_for_ci(lab_file: Path, name: str, workdir: Path) -> None:
    """With KGEN_TEST_EXPORT=DIR (CI uploads it when a step fails), `kgen logs
    --export` of the lab into DIR/<name>[.N] before it goes down."""
    top = os.environ.get("KGEN_TEST_EXPORT")
    if not top:
        return
    out, n = Path(top) / name, 1
    while out.exists():
        out, n = Path(top) / f"{name}.{n}", n + 1
    kgen("logs", "--export", str(out), "-l", str(lab_file), cwd=workdir, check=False)


def bring_up(lab_file: Path, workdir: Path) -> Iterator[RunningLab]:
    workdir.mkdir(parents=True, exist_ok=True)
    lab_file = prefixed(lab_file, workdir)
    try:
        kgen("up", "-l", str(lab_file), cwd=workdir)
        status = json.loads(kgen("status", "--json", "-l", str(lab_file), cwd=workdir).stdout)
    except BaseException:  # a lab that never came up must not stay behind either
        export_for_ci(lab_file, lab_file.stem, workdir)
        kgen("down", "-l", str(lab_file), cwd=workdir, check=False)
        raise
    lab = RunningLab(status["name"], lab_file, workdir)
    try:
        yield lab
    finally:
        export_for_ci(lab_file, lab.name, workdir)
        kgen("down", "-l", str(lab_file), cwd=workdir, check=False)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """The demo lab, up once for the whole session."""
    yield from bring_up(ROOT / "labs" / "demo.yaml", tmp_path_factory.mktemp("demo"))
