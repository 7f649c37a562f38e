"""The ruleset generator against kube-proxy's TestOverallIPTablesRules, and its parts."""

from __future__ import annotations

import re
from collections import defaultdict

from generator.node.contract import input_digest
from generator.node.proxy.endpoints import Endpoint, endpoints_for
from generator.node.proxy.naming import sep_chain, service_port_name, svc_chain
from generator.node.proxy.rules import service_port_rules, write_ruleset
from tests.conftest import GOLDEN
from tests.unit.proxy_fixture import CLUSTER_CIDR, NODE, PODS, SERVICES

# What kube-proxy's fixture has and kgen deliberately does not write, with the reason:
KUBE_PROXY_ONLY = {
    "LoadBalancer IPs, KUBE-FW-* and KUBE-PROXY-FIREWALL source ranges": "no load balancers",
    "external IP rules (KUBE-SERVICES, KUBE-EXTERNAL-SERVICES)": "no externalIPs in a lab",
    "health check node port ACCEPT in filter KUBE-NODEPORTS": "no LB health checks",
    "-m nfacct counters and localhost (127.0.0.0/8) nodePorts": "v1.29+ metrics and "
    "route_localnet; the 1.28 layout has neither",
}
# And one the other way: the fixture's fake iptables has no --random-fully, which real
# kube-proxy adds to MASQUERADE whenever iptables supports it, as here.


def ports_for(services=SERVICES, pods=PODS):
    return [service_port_rules(s, p, endpoints_for(s, p, pods), NODE, CLUSTER_CIDR)
            for s in services for p in s["ports"]]


def sort_rules(payload: str) -> str:
    """kube-proxy's test sorting: per table, chain declarations sorted, then the rules
    grouped by chain (chains sorted), keeping each chain's own rule order."""
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
            out += by_chain[chain]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def test_overall_rules_match_the_golden_file() -> None:
    golden = (GOLDEN / "proxy" / "overall.rules").read_text()
    assert sort_rules(write_ruleset(ports_for())) == golden


def test_golden_file_is_sorted_like_kube_proxy_sorts() -> None:
    golden = (GOLDEN / "proxy" / "overall.rules").read_text()
    assert sort_rules(golden) == golden


def test_chain_names_are_kube_proxys() -> None:
    # Names from kube-proxy's fixture for ns1/svc1:p80 and its endpoint.
    assert svc_chain("ns1/svc1:p80", "TCP") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert sep_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert service_port_name("web", "") == "default/web"
    assert service_port_name("web", "http") == "default/web:http"


def test_random_ladder_probabilities() -> None:
    svc = {**SERVICES[0], "selector": {"app": "x"}}
    pods = [{"name": f"p{i}", "node": "n", "ip": f"10.180.1.{i}", "state": "Running",
             "labels": {"app": "x"}} for i in range(1, 5)]
    port = svc["ports"][0]
    rules = service_port_rules(svc, port, endpoints_for(svc, port, pods), NODE, CLUSTER_CIDR)
    ladder = [r for r in rules.chains[svc_chain("ns1/svc1:p80", "tcp")] if "->" in r]
    probabilities = [re.search(r"--probability (\S+)", r) for r in ladder]
    assert [m.group(1) if m else None for m in probabilities] == [
        "0.2500000000", "0.3333333333", "0.5000000000", None]


def test_local_policy_uses_only_local_endpoints() -> None:
    svc = {**SERVICES[1]}
    pods = [*PODS, {"name": "mine", "node": NODE, "ip": "10.180.0.9", "state": "Running",
                    "labels": {"svc": "svc2"}}]
    port = svc["ports"][0]
    rules = service_port_rules(svc, port, endpoints_for(svc, port, pods), NODE, CLUSTER_CIDR)
    svl = next(c for c in rules.chains if c.startswith("KUBE-SVL-"))
    assert [r.split("--comment ")[1].split('"')[1] for r in rules.chains[svl]] == [
        "ns2/svc2:p80 -> 10.180.0.9:80"]
    assert rules.filter_external == [], "a local endpoint: no DROP"


def test_pending_pods_and_empty_selectors_give_no_endpoints() -> None:
    svc, port = SERVICES[0], SERVICES[0]["ports"][0]
    assert endpoints_for(svc, port, [{**PODS[0], "state": "Pending"}]) == []
    assert endpoints_for({**svc, "selector": {}}, port, PODS) == []
    assert endpoints_for(svc, port, PODS) == [Endpoint("10.180.0.1", 80, "other-node")]


def test_partial_ruleset_writes_only_changed_chains_but_all_top_level_ones() -> None:
    ports = ports_for()
    changed = {ports[0].key}
    payload = write_ruleset(ports, only=changed, stale=["KUBE-SEP-GONE"])
    declared = {line[1:].split()[0] for line in payload.splitlines() if line.startswith(":")}
    assert "KUBE-SVC-XPGD46QRK7WJZT7O" in declared
    assert "KUBE-SVC-X27LE4BHSL4DOUIK" not in declared, "unchanged: left as it is"
    assert "-A KUBE-SERVICES" in payload and "KUBE-SVC-X27LE4BHSL4DOUIK" in payload
    assert "-X KUBE-SEP-GONE" in payload and ":KUBE-SEP-GONE - [0:0]" in payload


def test_digest_ignores_order_and_pending_pods() -> None:
    a = input_digest(SERVICES, PODS)
    assert a == input_digest(SERVICES, list(reversed(PODS)))
    assert a == input_digest(SERVICES, [*PODS, {"name": "x", "node": "n", "ip": None,
                                                "state": "Pending", "labels": {}}])
    assert a != input_digest(SERVICES, PODS[1:])
