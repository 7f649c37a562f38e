"""`kgen check` knows issue 21's endpoint behaviour, on a real lab (iptables mode).

A lab with zones, a PreferClose NodePort service and a pod that `kgen apply`
makes Terminating (grace period far longer than the test): the plan expects the
zone-local endpoints from each source, the terminating pod as its service's only
(fallback) answerer, and every node's 127.0.0.1:<nodePort> to answer; `kgen
check` passes. Then node-0's localhost NodePort is broken by hand (its own
traffic to 127.0.0.1:<nodePort> skips the NAT rules): exactly that node's
localhost check fails, and passes again once the rule is gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.lab.conftest import RunningLab, bring_up

AGENT = "^python3 -m generator.node.agent"

LAB: dict[str, Any] = {
    "nodeNetwork": "172.28.208.0/24",  # this suite's own range
    "proxyMode": "iptables",
    "nodes": [{"name": "node-0", "zone": "a"}, {"name": "node-1", "zone": "a"},
              {"name": "node-2", "zone": "b"}],
    "clients": ["client-0"],
    "pods": [
        {"name": "za-0", "node": "node-0", "labels": {"app": "zoned"}},
        {"name": "za-1", "node": "node-1", "labels": {"app": "zoned"}},
        {"name": "zb-0", "node": "node-2", "labels": {"app": "zoned"}},
        {"name": "solo", "node": "node-1", "labels": {"app": "solo"},
         "terminationGracePeriodSeconds": 600},
    ],
    "services": [
        {"name": "zoned", "type": "NodePort", "trafficDistribution": "PreferClose",
         "selector": {"app": "zoned"},
         "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30280}]},
        {"name": "solo", "selector": {"app": "solo"}, "ports": [{"port": 80, "targetPort": 8080}]},
    ],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp("check-endpoints")
    lab_file = workdir / "ce.yaml"
    lab_file.write_text(yaml.safe_dump({"name": "ce", **LAB}, sort_keys=False))
    yield from bring_up(lab_file, workdir)


def check(lab: RunningLab, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = lab.kgen("check", "--json", *args, check=False)
    report = json.loads(result.stdout)
    return result.returncode, {r["id"]: r for r in report["checks"]}


def test_check_expects_zone_local_answers_and_the_terminating_fallback(lab: RunningLab) -> None:
    doc = yaml.safe_load(lab.lab_file.read_text())
    doc["pods"] = [p for p in doc["pods"] if p["name"] != "solo"]
    lab.lab_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    lab.kgen("apply")
    solo = next(s for s in lab.status()["services"] if s["name"] == "solo")
    assert solo["endpoints"] == [] and len(solo["terminating"]) == 1
    code, rows = check(lab)
    failed = {i: r["seen"] for i, r in rows.items() if not r["passed"]}
    assert code == 0 and not failed, failed
    # the terminating pod is its service's answerer; PreferClose keeps zone b in zone b
    assert "solo" in rows["clusterip[solo:80 from za-0]"]["expected"]
    assert "zb-0 serves" in rows["nodeport[zoned:30280 via node-2]"]["expected"]
    assert {f"localhost[zoned:30280 on node-{i}]" for i in range(3)} <= rows.keys()


def test_check_fails_where_localhost_nodeports_are_broken(lab: RunningLab) -> None:
    # By hand, on node-0: its own traffic to 127.0.0.1:30280 skips kube-proxy's
    # KUBE-SERVICES (so nothing DNATs it); the agent is paused, or its proxy's
    # resync could fix the table while the check runs.
    rule = ["-d", "127.0.0.1/32", "-p", "tcp", "--dport", "30280", "-j", "RETURN"]
    lab.exec("node-0", "pkill", "-STOP", "-f", AGENT)
    try:
        lab.exec("node-0", "iptables", "-t", "nat", "-I", "OUTPUT", "1", *rule)
        code, rows = check(lab, "-k", "localhost or nodeport")
    finally:
        lab.exec("node-0", "iptables", "-t", "nat", "-D", "OUTPUT", *rule, check=False)
        lab.exec("node-0", "pkill", "-CONT", "-f", AGENT)
    assert code != 0
    failed = {i for i, r in rows.items() if not r["passed"]}
    assert failed == {"localhost[zoned:30280 on node-0]"}, failed
    assert len(rows) == 6  # three localhost and three NodePort checks ran
    code, rows = check(lab, "-k", "localhost")
    assert code == 0 and all(r["passed"] for r in rows.values())
