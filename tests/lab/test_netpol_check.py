"""NetworkPolicy on a live lab, in both proxy modes: `kgen check` on labs/netpol.yaml
prints the matrix and passes, fails naming the pair once enforcement is broken by hand,
and `kgen trace` names the policy that drops a blocked packet and the one that allows
an allowed one.

labs/netpol.yaml: namespace `shop` (frontend, api) isolated both ways by default-deny;
frontend may call api on `http`; namespaces labelled team=ops (tools/debug) may reach
shop's pods over UDP 8081 only; default/outsider reaches nothing in shop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from generator.node.netpol.plan import chain_hash
from tests.conftest import ROOT
from tests.lab.conftest import RunningLab, bring_up

TCP_MATRIX = [  # rows from, columns to
    "-                 shop/frontend  shop/api  tools/debug  default/outsider",
    "shop/frontend     .              .         X            X",
    "shop/api          X              .         X            X",
    "tools/debug       X              X         .            .",
    "default/outsider  X              X         .            ."]
UDP_MATRIX = [
    "-                 shop/frontend  shop/api  tools/debug  default/outsider",
    "shop/frontend     .              X         X            X",
    "shop/api          X              .         X            X",
    "tools/debug       .              .         .            .",
    "default/outsider  X              X         .            ."]
# This suite's own node networks (clients count down from .254).
NETWORKS = {"iptables": "172.29.6.0/24", "nftables": "172.29.7.0/24"}
API_ISOLATED = ("ingress isolated by shop/default-deny, shop/api-from-frontend, shop/ops-udp, "
                "shop/api-from-clients; no policy allows it")


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp(f"netpol-{request.param}")
    doc = yaml.safe_load((ROOT / "labs" / "netpol.yaml").read_text())
    network = NETWORKS[request.param]  # fixed: the policy names the client's address
    doc.update(name=f"npchk{request.param[0]}", proxyMode=request.param, clients=["client-0"],
               nodeNetwork=network)
    # From outside: api's NodePort keeps the client's address (Local) and a policy lets that
    # address in; frontend's NodePort (Cluster) has no policy letting anything in.
    api = doc["services"][0]
    doc["services"] = [{**api, "type": "NodePort", "externalTrafficPolicy": "Local",
                        "ports": [{**api["ports"][0], "nodePort": 30080}]},
                       {"name": "frontend", "namespace": "shop", "type": "NodePort",
                        "selector": {"app": "frontend"},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                   "nodePort": 30081}]}]
    doc["networkPolicies"].append({"metadata": {"name": "api-from-clients", "namespace": "shop"},
                                   "spec": {"podSelector": {"matchLabels": {"app": "api"}},
                                            "ingress": [{"from": [{"ipBlock": {
                                                "cidr": network.replace(".0/24", ".254/32")}}]}]}})
    path = Path(workdir) / "netpol.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    yield from bring_up(path, workdir)


def test_check_passes_and_prints_the_matrix(lab: RunningLab) -> None:
    result = lab.kgen("check", check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    lines = result.stdout.splitlines()
    start = lines.index("NetworkPolicy reachability, TCP 8080 (observed):")
    assert lines[start + 1:start + 6] == TCP_MATRIX
    start = lines.index("NetworkPolicy reachability, UDP 8081 (observed):")
    assert lines[start + 1:start + 6] == UDP_MATRIX
    start = lines.index("NetworkPolicy reachability from clients, NodePort shop/api 30080 (observed):")
    assert lines[start + 1:start + 3] == ["-         node-1:30080", "client-0  ."]
    start = lines.index("NetworkPolicy reachability from clients, NodePort shop/frontend 30081 "
                        "(observed):")
    assert lines[start + 1:start + 3] == ["-         node-0:30081  node-1:30081",
                                          "client-0  X             X"]
    report = json.loads(lab.kgen("check", "--json", "-k", "netpol").stdout)
    rows = {c["id"]: c for c in report["checks"]}
    assert len([i for i in rows if i.startswith("netpol[")]) == 8  # four sources, TCP and UDP
    assert len([i for i in rows if i.startswith("netpol_nodeport[")]) == 2
    tcp = rows["netpol[from outsider tcp/8080]"]["reach"]
    assert tcp["shop/api"] == {"expected": False, "observed": False, "reason": API_ISOLATED}


def test_trace_of_a_blocked_pair_ends_dropped_naming_the_isolating_policy(lab: RunningLab) -> None:
    doc = json.loads(lab.kgen("trace", "debug", "frontend", "--json").stdout)
    assert doc["verdict"] == "dropped"
    last = doc["hops"][-1]
    assert last["policy"] == "shop/default-deny" and last["step"] == "drop"
    assert "derived" not in last["detail"]  # the kernel's trace showed the drop rule
    assert all("policy" in hop for hop in doc["hops"])
    text = lab.kgen("trace", "debug", "frontend").stdout
    assert re.search(r"verdict: dropped at node-0 by NetworkPolicy shop/default-deny ", text)


def test_trace_of_an_allowed_pair_names_the_allowing_policy(lab: RunningLab) -> None:
    doc = json.loads(lab.kgen("trace", "debug", "frontend", "--protocol", "udp", "--json").stdout)
    assert doc["verdict"] == "answered" and doc["answeredBy"] == "frontend"
    allowing = [h for h in doc["hops"] if h["policy"] == "shop/ops-udp"]
    assert any("allowed by NetworkPolicy shop/ops-udp" in h["detail"] for h in allowing)


def test_check_fails_naming_the_pair_once_enforcement_is_broken(lab: RunningLab) -> None:
    """api's firewall chain emptied by hand on its node: nothing drops what reaches api
    any more (the node's sync rewrites it only when the policies change)."""
    chain = "KUBE-POD-FW-" + chain_hash("shop", "api")
    if yaml.safe_load(lab.lab_file.read_text())["proxyMode"] == "nftables":
        lab.exec("node-1", "nft", "flush", "chain", "ip", "kgen-netpol", chain)
    else:
        lab.exec("node-1", "iptables", "-F", chain)
    result = lab.kgen("check", "--json", "-k", "netpol", check=False)
    assert result.returncode == 1
    failed = {c["id"]: c["seen"] for c in json.loads(result.stdout)["checks"] if not c["passed"]}
    assert {"netpol[from outsider tcp/8080]", "netpol[from outsider udp/8081]"} <= set(failed)
    assert (f"default/outsider → shop/api: reached, expected blocked ({API_ISOLATED})"
            in failed["netpol[from outsider tcp/8080]"])
    assert "shop/frontend" not in failed["netpol[from outsider tcp/8080]"]  # node-0 still enforces
