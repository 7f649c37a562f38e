"""NetworkPolicy on a live lab, in both proxy modes: `kgen check` prints the matrix and
passes, fails naming the pair once enforcement is broken by hand, and `kgen trace`
names the policy that drops a blocked packet and the one that allows an allowed one.

The lab: namespace `shop` denies ingress by default; its web pods take TCP from
default's frontend pods on the named port `http`, its db pod takes TCP 8080 and
UDP 8081 from the web pods (so the matrix is probed over UDP too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from generator.node.netpol.plan import chain_hash
from tests.lab.conftest import RunningLab, bring_up

LAB = {
    "name": "netpolchk",
    "dns": {"enabled": False},
    "namespaces": [{"name": "shop", "labels": {"team": "shop"}}],
    "nodes": ["node-0", "node-1", "node-2"],
    "pods": [
        {"name": "frontend-0", "node": "node-0", "labels": {"app": "frontend"}},
        {"name": "other-0", "node": "node-2", "labels": {"app": "other"}},
        {"name": "web-0", "namespace": "shop", "node": "node-0", "labels": {"app": "web"}},
        {"name": "web-1", "namespace": "shop", "node": "node-1", "labels": {"app": "web"}},
        {"name": "db-0", "namespace": "shop", "node": "node-1", "labels": {"app": "db"}},
    ],
    "networkPolicies": [
        {"metadata": {"name": "default-deny-ingress", "namespace": "shop"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
        {"metadata": {"name": "web-allow-frontend", "namespace": "shop"},
         "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                  "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                      "kubernetes.io/metadata.name": "default"}},
                      "podSelector": {"matchLabels": {"app": "frontend"}}}],
                      "ports": [{"protocol": "TCP", "port": "http"}]}]}},
        {"metadata": {"name": "db-allow-web", "namespace": "shop"},
         "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                               "ports": [{"protocol": "TCP", "port": 8080},
                                         {"protocol": "UDP", "port": 8081}]}]}},
    ],
}
TCP_MATRIX = [  # rows from, columns to: frontend-0, other-0, web-0, web-1, db-0
    "-                   default/frontend-0  default/other-0  shop/web-0  shop/web-1  shop/db-0",
    "default/frontend-0  .                   .                .           .           X",
    "default/other-0     .                   .                X           X           X",
    "shop/web-0          .                   .                .           X           .",
    "shop/web-1          .                   .                X           .           .",
    "shop/db-0           .                   .                X           X           ."]


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp(f"netpol-{request.param}")
    doc = {**LAB, "name": f"{LAB['name']}{request.param[0]}", "proxyMode": request.param}
    path = Path(workdir) / "netpolchk.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    yield from bring_up(path, workdir)


def test_check_passes_and_prints_the_matrix(lab: RunningLab) -> None:
    result = lab.kgen("check", check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    lines = result.stdout.splitlines()
    start = lines.index("NetworkPolicy reachability, TCP 8080 (observed):")
    assert lines[start + 1:start + 7] == TCP_MATRIX
    assert "NetworkPolicy reachability, UDP 8081 (observed):" in lines
    report = json.loads(lab.kgen("check", "--json", "-k", "netpol").stdout)
    rows = {c["id"]: c for c in report["checks"]}
    assert len(rows) == 10  # five sources, TCP and UDP
    udp = rows["netpol[from frontend-0 udp/8081]"]["reach"]
    assert udp["shop/web-0"] == {"expected": False, "observed": False, "reason":
                                 "ingress isolated by shop/default-deny-ingress, "
                                 "shop/web-allow-frontend; no policy allows it"}


def test_trace_of_a_blocked_pair_ends_dropped_naming_the_isolating_policy(lab: RunningLab) -> None:
    doc = json.loads(lab.kgen("trace", "other-0", "web-0", "--json").stdout)
    assert doc["verdict"] == "dropped"
    last = doc["hops"][-1]
    assert last["policy"] == "shop/default-deny-ingress" and last["step"] == "drop"
    assert "derived" not in last["detail"]  # the kernel's trace showed the drop rule
    assert all("policy" in hop for hop in doc["hops"])
    text = lab.kgen("trace", "other-0", "web-0").stdout
    assert re.search(r"verdict: dropped at node-0 by NetworkPolicy shop/default-deny-ingress", text)


def test_trace_of_an_allowed_pair_names_the_allowing_policy(lab: RunningLab) -> None:
    doc = json.loads(lab.kgen("trace", "frontend-0", "web-1", "--json").stdout)
    assert doc["verdict"] == "answered" and doc["answeredBy"] == "web-1"
    allowing = [h for h in doc["hops"] if h["policy"] == "shop/web-allow-frontend"]
    assert any("allowed by NetworkPolicy shop/web-allow-frontend" in h["detail"] for h in allowing)


def test_check_fails_naming_the_pair_once_enforcement_is_broken(lab: RunningLab) -> None:
    """web-0's firewall chain emptied by hand on its node: nothing drops what reaches
    web-0 any more (the node's sync rewrites it only when the policies change)."""
    chain = "KUBE-POD-FW-" + chain_hash("shop", "web-0")
    if yaml.safe_load(lab.lab_file.read_text())["proxyMode"] == "nftables":
        lab.exec("node-0", "nft", "flush", "chain", "ip", "kgen-netpol", chain)
    else:
        lab.exec("node-0", "iptables", "-F", chain)
    result = lab.kgen("check", "--json", "-k", "netpol", check=False)
    assert result.returncode == 1
    failed = {c["id"]: c["seen"] for c in json.loads(result.stdout)["checks"] if not c["passed"]}
    assert set(failed) >= {"netpol[from other-0 tcp/8080]", "netpol[from db-0 tcp/8080]"}
    assert ("default/other-0 → shop/web-0: reached, expected blocked (ingress isolated by "
            "shop/default-deny-ingress, shop/web-allow-frontend; no policy allows it)"
            ) in failed["netpol[from other-0 tcp/8080]"]
    assert "shop/web-1" not in failed["netpol[from other-0 tcp/8080]"]  # node-1 still enforces
