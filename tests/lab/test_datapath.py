"""Issues 3 and 4 on live labs: every planned check of the demo and host-gw labs,
run through the same code as `kgen check` (no second copy), plus what the
checks do not cover: shared pod namespaces, IPAM placement, `kgen check` itself.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generator.checks.plan import plan
from generator.checks.runner import execute
from generator.cluster.build import build_state
from generator.lab.model import load_lab
from tests.conftest import ROOT
from tests.lab.conftest import RunningLab, bring_up

# The ids only depend on names, so any node network gives the lab's plan.
_ANY_NET = ipaddress.ip_network("172.31.0.0/24")


def plan_ids(lab_file: Path) -> list[str]:
    return [c.id for c in plan(build_state(load_lab(lab_file), _ANY_NET))]


def cluster_of(lab: RunningLab) -> dict[str, Any]:
    name = lab.status()["name"]
    return json.loads((lab.dir / f"kgen-{name}" / "config" / "cluster.json").read_text())


def results(lab: RunningLab) -> dict[str, dict[str, Any]]:
    """Every planned check of a running lab, run once, by id."""
    return {r["id"]: r for r in execute(cluster_of(lab), lab.status())}


@pytest.fixture(scope="module")
def hostgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    yield from bring_up(ROOT / "labs" / "host-gw.yaml", tmp_path_factory.mktemp("hostgw"))


# Lab file -> the fixture that brings it up; every planned check of each is a test.
LABS = {"demo": "demo", "host-gw": "hostgw"}
CASES = [(lab, check_id) for lab in LABS for check_id in plan_ids(ROOT / "labs" / f"{lab}.yaml")]


@pytest.fixture(scope="module")
def checked() -> dict[str, dict[str, dict[str, Any]]]:
    """Results per lab, filled by the first test of that lab: each lab is checked once."""
    return {}


@pytest.mark.parametrize("lab,check_id", CASES, ids=[f"{lab}:{cid}" for lab, cid in CASES])
def test_planned_check(lab: str, check_id: str, request: pytest.FixtureRequest,
                       checked: dict[str, dict[str, dict[str, Any]]]) -> None:
    if lab not in checked:
        checked[lab] = results(request.getfixturevalue(LABS[lab]))
    row = checked[lab][check_id]
    assert row["passed"], f"{row['what']}: expected {row['expected']}; saw {row['seen']}"


def test_host_gw_has_no_vxlan_device(hostgw: RunningLab) -> None:
    links = hostgw.exec("node-0", "ip", "-br", "link").stdout
    assert "kgen." not in links
    routes = hostgw.exec("node-0", "ip", "route").stdout
    node1 = next(n for n in hostgw.status()["nodes"] if n["name"] == "node-1")
    assert f"{node1['podCIDR']} via {node1['ip']}" in routes


def test_pod_ips_lie_in_their_node_subnets(demo: RunningLab) -> None:
    status = demo.status()
    subnet = {n["name"]: ipaddress.ip_network(n["podCIDR"]) for n in status["nodes"]}
    for pod in status["pods"]:
        assert pod["state"] == "Running"
        assert ipaddress.ip_address(pod["ip"]) in subnet[pod["node"]], pod


def test_two_container_pod_shares_one_netns(demo: RunningLab) -> None:
    pids = demo.exec("node-0", "ip", "netns", "pids", "pod-1").stdout.split()
    commands = [demo.exec("node-0", "cat", f"/proc/{pid}/cmdline").stdout for pid in pids]
    assert any("testserver" in c for c in commands) and any("sleep" in c for c in commands)
    # The sidecar's view: the web container answers on the pod's own loopback.
    assert demo.exec("pod-1", "curl", "-s", "127.0.0.1:8080/hostname").stdout == "pod-1"


def test_node_has_the_overlay_and_unreachable_ranges(demo: RunningLab) -> None:
    details = demo.exec("node-0", "ip", "-d", "link", "show", "kgen.1").stdout
    assert "vxlan id 1" in details and "dstport 4789" in details and "nolearning" in details
    assert "mtu 1450" in details
    # Its own MAC (0a:58 + gateway IP), so it never follows a port that comes or goes.
    assert demo.exec("node-0", "cat", "/sys/class/net/cbr0/address").stdout.strip() == \
        "0a:58:0a:f4:00:01"
    routes = demo.exec("node-0", "ip", "route").stdout
    assert "unreachable 10.244.0.0/16" in routes
    assert "10.244.1.0/24 via 10.244.1.0 dev kgen.1 onlink" in routes


def test_kgen_check_passes_on_the_demo_and_prints_json(demo: RunningLab) -> None:
    result = demo.kgen("check", "--json", check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 0, [c for c in report["checks"] if not c["passed"]]
    assert report["failed"] == 0 and report["passed"] == len(report["checks"]) >= 20


def test_kgen_check_k_selects_checks_by_id(demo: RunningLab) -> None:
    result = demo.kgen("check", "--json", "-k", "nodeport[web-local", check=False)
    report = json.loads(result.stdout)
    ids = {c["id"] for c in report["checks"]}
    assert ids == {f"nodeport[web-local:30081 via node-{i}]" for i in range(3)}
    assert result.returncode == 0 and report["failed"] == 0
    nothing = demo.kgen("check", "-k", "no-such-check", check=False)
    assert nothing.returncode == 2 and "no check matches" in nothing.stderr
