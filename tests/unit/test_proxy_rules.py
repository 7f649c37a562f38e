"""The iptables ruleset generator against kube-proxy's TestOverallIPTablesRules, and its parts."""

from __future__ import annotations

import re
from collections import defaultdict

from generator.node.proxy.endpoints import Endpoint, endpoints_for
from generator.node.proxy.naming import sep_chain, service_port_name, svc_chain, svl_chain
from generator.node.proxy.rules import (
    dirty_top_level,
    jump_order,
    service_port_rules,
    write_chains,
    write_ruleset,
)
from generator.node.proxy.service import port_infos
from tests.conftest import GOLDEN
from tests.unit.proxy_fixture import CLUSTER_CIDR, NODE, PODS, SERVICES, pod, service

# Everything of kube-proxy's fixture is written, LoadBalancer and externalIP parts included.
# kube-proxy's fake has its nfacct counters; so does the golden ruleset (nfacct=True).
# And one the other way: the fixture's fake iptables has no --random-fully, which real
# kube-proxy adds to MASQUERADE whenever iptables supports it, as here.


def ports_for(services=SERVICES, pods=PODS, large=False):
    return [service_port_rules(i, NODE, CLUSTER_CIDR, large) for i in port_infos(services, pods)]


# Chains whose rules kube-proxy writes in Go map order (random): its tests sort them.
UNORDERED = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL"}


def sort_rules(payload: str) -> str:
    """kube-proxy's test sorting: per table, chain declarations sorted, then the rules
    grouped by chain (chains sorted), keeping each chain's own rule order, except in the
    chains written in map order (sorted, the nodeports rule of KUBE-SERVICES last)."""
    out = []
    for table in re.findall(r"^\*(\w+)\n(.*?)^COMMIT$", payload, re.M | re.S):
        name, body = table
        lines = body.splitlines()
        declared = sorted(line for line in lines if line.startswith(":"))
        by_chain: dict[str, list[str]] = defaultdict(list)
        for line in lines:
            if line.startswith(("-A ", "-X ")):
                by_chain[line.split()[1]].append(line)
        out += [f"*{name}", *declared]
        for chain in sorted(by_chain):
            rules = by_chain[chain]
            if chain in UNORDERED:
                last = [r for r in rules if "must be the last rule" in r]
                rules = sorted(r for r in rules if r not in last) + last
            out += rules
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def test_overall_rules_match_the_golden_file() -> None:
    golden = (GOLDEN / "proxy" / "overall.rules").read_text()
    ports = [service_port_rules(i, NODE, CLUSTER_CIDR, nfacct=True)
             for i in port_infos(SERVICES, PODS)]
    assert sort_rules(write_ruleset(ports, nfacct=True)) == golden


def test_golden_file_is_sorted_like_kube_proxy_sorts() -> None:
    golden = (GOLDEN / "proxy" / "overall.rules").read_text()
    assert sort_rules(golden) == golden


def test_jump_rules_are_in_kube_proxys_order() -> None:
    """kubelet's KUBE-FIREWALL jumps first, then kube-proxy prepends each of its jumps in
    the order of its iptablesJumpChains: the result is the golden file's order."""
    golden = (GOLDEN / "proxy" / "jumps.rules").read_text()
    lines = [f"-t {table} -A {chain} {rule}"
             for (table, chain), rules in sorted(jump_order().items()) for rule in rules]
    assert "\n".join(lines) + "\n" == golden
    targets = {key: [r.split("-j ")[-1] for r in rules] for key, rules in jump_order().items()}
    assert targets[("filter", "INPUT")] == ["KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS",
                                            "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL"]
    assert targets[("filter", "FORWARD")] == ["KUBE-PROXY-FIREWALL", "KUBE-FORWARD",
                                              "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"]


def test_chain_names_are_kube_proxys() -> None:
    # Names from kube-proxy's fixture for ns1/svc1:p80 and its endpoint.
    assert svc_chain("ns1/svc1:p80", "TCP") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert service_port_name("web", "") == "default/web"
    assert service_port_name("web", "http") == "default/web:http"


def test_endpoints_are_ordered_by_their_ip_port_string() -> None:
    svc = {**SERVICES[0], "selector": {"app": "x"}}
    pods = [pod(f"p{i}", f"10.180.0.{i}", "x", namespace="ns1") for i in (9, 10, 2)]
    for p in pods:
        p["labels"] = {"app": "x"}
    found = endpoints_for(svc, svc["ports"][0], pods)
    assert [e.ip for e in found] == ["10.180.0.10", "10.180.0.2", "10.180.0.9"]


def test_random_ladder_probabilities() -> None:
    svc = {**SERVICES[0], "selector": {"app": "x"}}
    pods = [{"name": f"p{i}", "node": "n", "ip": f"10.180.1.{i}", "state": "Running",
             "labels": {"app": "x"}, "namespace": "ns1"} for i in range(1, 5)]
    rules = ports_for([svc], pods)[0]
    ladder = [r for r in rules.chains[svc_chain("ns1/svc1:p80", "tcp")] if "->" in r]
    probabilities = [re.search(r"--probability (\S+)", r) for r in ladder]
    assert [m.group(1) if m else None for m in probabilities] == [
        "0.2500000000", "0.3333333333", "0.5000000000", None]


def test_large_cluster_mode_drops_endpoint_comments() -> None:
    rules = ports_for(large=True)[0]
    sep = sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80")
    assert rules.chains[sep] == [f"-A {sep} -s 10.180.0.1 -j KUBE-MARK-MASQ",
                                 f"-A {sep} -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80"]
    svc = svc_chain("ns1/svc1:p80", "tcp")
    assert rules.chains[svc][1] == f"-A {svc} -j {sep}"
    assert "cluster IP" in rules.chains[svc][0], "the cluster IP rule keeps its comment"


def test_local_policy_uses_only_local_endpoints() -> None:
    pods = [*PODS, pod("mine", "10.180.0.9", "svc2", node=NODE)]
    rules = ports_for([SERVICES[1]], pods)[0]
    svl = next(c for c in rules.chains if c.startswith("KUBE-SVL-"))
    assert [r.split("--comment ")[1].split('"')[1] for r in rules.chains[svl]] == [
        "ns2/svc2:p80 -> 10.180.0.9:80"]
    assert rules.filter_external == [], "a local endpoint: no DROP"


def test_internal_traffic_policy_local_uses_the_svl_chain() -> None:
    svc = service(7, "172.30.0.47", internal="Local")
    local, remote = pod("a", "10.180.0.7", "svc7", node=NODE), pod("b", "10.180.0.8", "svc7")
    rules = ports_for([svc], [local, remote])[0]
    svl, svc_name = svl_chain("ns7/svc7:p80", "tcp"), svc_chain("ns7/svc7:p80", "tcp")
    assert svc_name not in rules.chains, "no Cluster chain for a ClusterIP service"
    assert rules.nat_services == [
        f'-A KUBE-SERVICES -m comment --comment "ns7/svc7:p80 cluster IP" -m tcp -p tcp '
        f"-d 172.30.0.47 --dport 80 -j {svl}"]
    assert [r.split(" -j ")[-1] for r in rules.chains[svl]] == [
        "KUBE-MARK-MASQ", sep_chain("ns7/svc7:p80", "tcp", "10.180.0.7:80")]
    assert set(rules.chains) == {svl, sep_chain("ns7/svc7:p80", "tcp", "10.180.0.7:80")}


def test_internal_traffic_policy_local_without_local_endpoints_drops() -> None:
    svc = service(7, "172.30.0.47", internal="Local")
    rules = ports_for([svc], [pod("b", "10.180.0.8", "svc7")])[0]
    assert rules.chains == {} and rules.nat_services == []
    assert rules.filter_services == [
        '-A KUBE-SERVICES -m comment --comment "ns7/svc7:p80 has no local endpoints" '
        "-m tcp -p tcp -d 172.30.0.47 --dport 80 -j DROP"]


def test_pending_pods_and_empty_selectors_give_no_endpoints() -> None:
    svc, port = SERVICES[0], SERVICES[0]["ports"][0]
    assert endpoints_for(svc, port, [{**PODS[0], "state": "Pending"}]) == []
    assert endpoints_for({**svc, "selector": {}}, port, PODS) == []
    assert endpoints_for(svc, port, PODS) == [Endpoint("10.180.0.1", 80, "other-node")]


def test_partial_ruleset_writes_only_changed_chains_but_all_top_level_ones() -> None:
    ports = ports_for()
    payload = write_ruleset(ports, only=ports[:1], stale=["KUBE-SEP-GONE"])
    declared = {line[1:].split()[0] for line in payload.splitlines() if line.startswith(":")}
    assert "KUBE-SVC-XPGD46QRK7WJZT7O" in declared
    assert "KUBE-SVC-X27LE4BHSL4DOUIK" not in declared, "unchanged: left as it is"
    assert "-A KUBE-SERVICES" in payload and "KUBE-SVC-X27LE4BHSL4DOUIK" in payload
    assert "-X KUBE-SEP-GONE" in payload and ":KUBE-SEP-GONE - [0:0]" in payload


def test_payload_order_is_descending_chain_names() -> None:
    """Each iptables-nft-restore insert then lands at the head of its sorted chain list."""
    payload = write_ruleset(ports_for())
    nat = payload.split("*nat")[1]
    targets = [line.split(" -j ")[-1] for line in nat.splitlines()
               if line.startswith("-A KUBE-SERVICES") and "KUBE-SVC-" in line]
    assert targets == sorted(targets, reverse=True) and len(targets) == 5
    staged = write_chains(ports_for())
    declared = [line[1:].split()[0] for line in staged.splitlines()
                if line.startswith(":KUBE-S")]
    assert declared == sorted(declared, reverse=True)
    assert sort_rules(staged).count("-A ") == staged.count("-A ")


def test_only_top_level_chains_whose_rules_change_are_dirty() -> None:
    before = ports_for()
    after = ports_for(pods=[*PODS, pod("e4b", "10.180.0.14", "svc4")])
    changed = [a for a, b in zip(after, before, strict=True) if a.chains != b.chains]
    assert [p.key for p in changed] == ["ns4/svc4:p80/tcp"]
    assert dirty_top_level(changed, [before[3]]) == set(), "a new endpoint: no top-level change"
    gone = ports_for(pods=PODS[1:])  # svc1 loses its only endpoint: nat jump out, REJECT in
    assert dirty_top_level([gone[0]], [before[0]]) == {("filter", "KUBE-SERVICES"),
                                                       ("nat", "KUBE-SERVICES")}
    assert dirty_top_level([], [before[2]]) == {("nat", "KUBE-SERVICES"),
                                                ("nat", "KUBE-NODEPORTS")}, "svc3 removed"
