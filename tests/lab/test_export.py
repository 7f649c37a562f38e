"""`kgen logs --export DIR` on a real lab: one directory per node and client, the
logs and the datapath as the kernel has it, also for a node that has stopped."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import RunningLab, bring_up

LAB = """\
name: export
nodes: [n0, n1]
clients: [c0]
pods:
  - {name: p0, node: n0, labels: {app: web}}
  - {name: p1, node: n1, labels: {app: web}}
services:
  - {name: web, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp("export")
    (workdir / "lab.yaml").write_text(LAB)
    yield from bring_up(workdir / "lab.yaml", workdir)


def export(lab: RunningLab, out: Path) -> subprocess.CompletedProcess[str]:
    return lab.kgen("logs", "--export", str(out), check=False)


def test_export_has_each_members_logs_and_datapath(lab: RunningLab, tmp_path: Path) -> None:
    status = lab.status()
    cluster_ip = status["services"][0]["clusterIP"]
    pods = {p["name"]: p for p in status["pods"]}
    nodes = {n["name"]: n for n in status["nodes"]}
    answered = lab.exec("p0", "curl", "-s", "--max-time", "5", f"http://{cluster_ip}/hostname")
    assert answered.stdout in ("p0", "p1")
    out = tmp_path / "logs"
    result = export(lab, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["c0", "n0", "n1"]
    exported = json.loads((out / "status.json").read_text())
    assert exported["name"] == lab.name and [n["name"] for n in exported["nodes"]] == ["n0", "n1"]
    assert json.loads((out / "cluster.json").read_text())["name"] == lab.name

    n0 = out / "n0"
    assert "node agent for n0 starting" in (n0 / "agent.log").read_text()
    assert "kgen.proxy full sync" in (n0 / "proxy.log").read_text()
    assert "kgen.agent" not in (n0 / "proxy.log").read_text()
    assert "test server p0" in (n0 / "pods" / "p0" / "p0.log").read_text()
    assert f"-A KUBE-SERVICES -d {cluster_ip}/32" in (n0 / "iptables-save.txt").read_text()
    assert "table ip nat" in (n0 / "nft-ruleset.txt").read_text()
    assert f"inet {nodes['n0']['ip']}/" in (n0 / "ip-addr.txt").read_text()
    assert f"{nodes['n1']['podCIDR']} via" in (n0 / "ip-route.txt").read_text()
    assert "PERMANENT" in (n0 / "ip-neigh.txt").read_text()  # the peer VTEP's neighbour
    assert f"dst={cluster_ip} sport=" in (n0 / "conntrack.txt").read_text()  # the request above
    assert f"inet {pods['p0']['ip']}/" in (n0 / "pods" / "p0" / "ip-addr.txt").read_text()
    assert "0.0.0.0:8080" in (n0 / "pods" / "p0" / "sockets.txt").read_text()
    assert json.loads((n0 / "state.json").read_text())["node"] == "n0"
    assert json.loads((n0 / "inspect.json").read_text())["Name"] == f"/kgen-{lab.name}-n0"
    assert "node agent for n0 starting" in (n0 / "container.log").read_text()
    assert "inet " in (out / "c0" / "ip-addr.txt").read_text()
    # Written by kgen, not by root in a node: the user who exported removes it.
    assert {p.stat().st_uid for p in out.rglob("*")} == {os.getuid()}


def test_export_refuses_a_directory_with_something_in_it(lab: RunningLab, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine\n")
    result = export(lab, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"kgen: --export {tmp_path}: not an empty directory; "
                                     "give a new or empty one")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_stopped_node_still_gives_its_logs(lab: RunningLab, tmp_path: Path) -> None:
    """Last in this module: n1 stays stopped (the fixture's down removes it)."""
    subprocess.run(["docker", "stop", "-t", "2", f"kgen-{lab.name}-n1"], check=True,
                   capture_output=True)
    out = tmp_path / "logs"
    result = export(lab, out)
    assert result.returncode == 0, result.stderr
    n1 = out / "n1"
    assert "node agent for n1 starting" in (n1 / "agent.log").read_text()
    assert "test server p1" in (n1 / "pods" / "p1" / "p1.log").read_text()
    assert "was exited at export" in (n1 / "not-running.txt").read_text()
    assert not (n1 / "iptables-save.txt").exists()
    assert "KUBE-SERVICES" in (out / "n0" / "iptables-save.txt").read_text()
    states = {n["name"]: n["state"] for n in json.loads((out / "status.json").read_text())["nodes"]}
    assert states == {"n0": "Ready", "n1": "Exited"}
