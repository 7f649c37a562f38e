"""The check plan: derived from any lab, with the dependencies break tests rely on."""

from __future__ import annotations

import ipaddress
import math

import pytest

from generator.checks.kinds.nodeport import reach_requests
from generator.checks.kinds.pod_to_pod import pod_matrix
from generator.checks.plan import plan
from generator.checks.stats import FALSE_FAILURE, hit_requests, miss_probability, spread_requests
from generator.cluster.build import build_state
from generator.lab.model import load_lab, parse_lab
from tests.conftest import ROOT

NET = ipaddress.ip_network("172.31.9.0/24")


def demo_plan():
    return {c.id: c for c in plan(build_state(load_lab(ROOT / "labs" / "demo.yaml"), NET))}


def test_demo_plan_covers_every_path_of_the_story() -> None:
    kinds = {c.kind for c in demo_plan().values()}
    assert kinds == {"pod-to-pod", "wire", "mtu", "clusterip", "conntrack", "clusterip-udp",
                     "affinity", "hairpin", "no-endpoints", "nodeport", "localhost", "dns"}


def test_clusterip_is_checked_from_nodes_with_and_without_backends() -> None:
    checks = demo_plan()
    away, near = checks["clusterip[web:80 from pod-0]"], checks["clusterip[web:80 from pod-2]"]
    assert "without" in away.what and "with a backend" in near.what
    assert away.params["backends"] == ["pod-2", "pod-3"]
    assert away.params["requests"] > 1


def test_nodeport_expectations_follow_the_traffic_policy() -> None:
    checks = demo_plan()
    assert "an address of node-0" in checks["nodeport[web-nodeport:30080 via node-0]"].expected
    assert checks["nodeport[web-local:30081 via node-0]"].params["drop"] is True
    assert "client's IP 172.31.9.254" in checks["nodeport[web-local:30081 via node-1]"].expected
    assert checks["nodeport[web-local:30081 via node-1]"].params["backends"] == ["pod-2"]


def test_dependencies_name_the_parts_a_packet_crosses() -> None:
    checks = demo_plan()
    same = checks["pod_to_pod[pod-0 to pod-1]"].depends
    assert same == {"veth:pod-0", "veth:pod-1", "bridge:node-0"}
    across = checks["pod_to_pod[pod-1 to pod-2]"].depends
    assert {"overlay:node-0", "overlay:node-1", "bridge:node-1"} <= across
    assert "nat:node-0" in checks["clusterip[web:80 from pod-0]"].depends
    assert not any(d.startswith("nat:") for d in checks["no_endpoints[no-backends:80 from pod-0]"].depends)
    assert checks["nodeport[web-local:30081 via node-0]"].depends == frozenset()


def test_a_small_lab_gets_only_the_checks_it_can_run() -> None:
    lab = parse_lab({"name": "t", "nodes": ["n0"], "backend": "host-gw", "dns": {"enabled": False},
                     "pods": [{"name": "a", "node": "n0"}, {"name": "b", "node": "n0"}]})
    checks = plan(build_state(lab, NET))
    assert [c.id for c in checks] == ["pod_to_pod[a to b]", "pod_to_pod[b to a]"]


def test_host_gw_expects_pod_ips_on_the_wire() -> None:
    lab = parse_lab({"name": "t", "nodes": ["n0", "n1"], "backend": "host-gw",
                     "pods": [{"name": "a", "node": "n0"}, {"name": "b", "node": "n1"}]})
    wire = next(c for c in plan(build_state(lab, NET)) if c.kind == "wire")
    assert wire.params["backend"] == "host-gw" and "pod IPs" in wire.expected


# ---- the sampled pod matrix


def matrix_of(pods_per_node: list[int]) -> tuple[list[list[str]], list[tuple[str, str]]]:
    by_node = [[f"n{i}p{j}" for j in range(k)] for i, k in enumerate(pods_per_node)]
    return by_node, pod_matrix(by_node)


@pytest.mark.parametrize("pods_per_node", [[1], [2], [5], [1, 1], [2, 1, 1], [5] * 3, [1] * 7,
                                           [5] * 20, [5] * 50, [3, 0, 1, 7, 2, 0, 4], [10, 1] * 6])
def test_pod_matrix_covers_node_pairs_and_every_pod(pods_per_node: list[int]) -> None:
    by_node, pairs = matrix_of(pods_per_node)
    node_of = {pod: i for i, pods in enumerate(by_node) for pod in pods}
    nodes = [i for i, pods in enumerate(by_node) if pods]
    everyone = set(node_of) if len(node_of) > 1 else set()
    assert len(set(pairs)) == len(pairs), "no pair twice"
    assert all(s != t for s, t in pairs)
    # Every unordered pair of nodes, and every node with two pods inside it.
    covered = {frozenset((node_of[s], node_of[t])) for s, t in pairs}
    wanted = {frozenset((a, b)) for a in nodes for b in nodes if a < b}
    wanted |= {frozenset((a,)) for a in nodes if len(by_node[a]) >= 2}
    assert covered == wanted
    assert {s for s, _ in pairs} == everyone and {t for _, t in pairs} == everyone


def test_pod_matrix_is_linear_in_pods_and_quadratic_only_in_nodes() -> None:
    _, pairs = matrix_of([5] * 50)
    # 1225 node pairs + 50 same-node pairs; all 250 pods fit into those.
    assert len(pairs) == 50 * 49 // 2 + 50
    _, small = matrix_of([5] * 3)
    assert len(small) <= 3 + 3 + 15  # the node pairs, then one extra per pod left out at most


def test_pod_matrix_is_deterministic_and_balanced() -> None:
    by_node, pairs = matrix_of([5] * 20)
    assert pod_matrix(by_node) == pairs
    sends: dict[int, int] = {}
    for s, _ in pairs:
        node = int(s[1:].split("p")[0])
        sends[node] = sends.get(node, 0) + 1
    assert max(sends.values()) - min(sends.values()) <= 1


def test_demo_pod_matrix() -> None:
    ids = [i for i in demo_plan() if i.startswith("pod_to_pod[")]
    assert ids == ["pod_to_pod[pod-0 to pod-1]", "pod_to_pod[pod-1 to pod-2]", "pod_to_pod[pod-2 to pod-3]",
                   "pod_to_pod[pod-3 to pod-0]"]


# ---- how many requests a random draw needs


@pytest.mark.parametrize("n", [2, 3, 5, 10, 20, 50, 100, 250, 1000])
def test_spread_requests_is_the_least_count_within_the_bound(n: int) -> None:
    r = spread_requests(n)
    assert n * (1 - 1 / n) ** r <= FALSE_FAILURE < n * (1 - 1 / n) ** (r - 1)
    assert miss_probability(n, r) <= FALSE_FAILURE
    h = hit_requests(n)
    assert (1 - 1 / n) ** h <= FALSE_FAILURE < (1 - 1 / n) ** (h - 1)


def test_one_backend_needs_one_request_and_known_counts() -> None:
    assert spread_requests(1) == hit_requests(1) == 1 and miss_probability(1, 1) == 0
    assert spread_requests(2) == 21 and spread_requests(10) == 153
    # What the fixed 24 requests gave with 10 backends: all seen only ~39% of the time
    # (inclusion-exclusion, exact).
    exact = sum((-1) ** k * math.comb(10, k) * (1 - k / 10) ** 24 for k in range(11))
    assert 0.38 < exact < 0.40


def test_spreading_checks_carry_their_counts_and_bound() -> None:
    checks = demo_plan()
    spread = checks["clusterip[web:80 from pod-0]"].params
    assert spread["requests"] == spread_requests(2) and spread["spread"] is True
    assert spread["false_failure"] <= FALSE_FAILURE
    assert checks["hairpin[web:80 from pod-2]"].params["requests"] == hit_requests(2)
    cluster = checks["nodeport[web-nodeport:30080 via node-0]"].params
    assert cluster["backends"] == ["pod-2", "pod-3"] and cluster["requests"] == spread_requests(2)
    assert checks["nodeport[web-local:30081 via node-1]"].params["requests"] == 1
    assert checks["clusterip[web-sticky:80 from pod-0]"].params["spread"] is False


def scale_state(nodes: int, pods: int) -> dict:
    doc = {"name": "s", "nodes": [f"n{i}" for i in range(nodes)],
           "pods": [{"name": f"p{i}-{j}", "node": f"n{i}", "labels": {"app": "web" if j == 0 else "x"}}
                    for i in range(nodes) for j in range(pods)],
           "services": [{"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80}]},
                        {"name": "np", "type": "NodePort", "selector": {"app": "web"},
                         "ports": [{"port": 80}]}],
           "clients": ["c"]}
    return build_state(parse_lab(doc), NET)


def test_a_large_lab_gets_a_plan_that_grows_with_node_pairs() -> None:
    checks = plan(scale_state(50, 5))
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids))
    p2p = [c for c in checks if c.kind == "pod-to-pod"]
    assert len(p2p) == 50 * 49 // 2 + 50
    web = next(c for c in checks if c.id.startswith("clusterip[web:80 from "))
    assert len(web.params["backends"]) == 50 and web.params["requests"] == spread_requests(50)
    assert len([c for c in checks if c.kind == "nodeport"]) == 50


def test_a_large_service_spreads_through_five_nodes_and_is_reached_through_the_rest() -> None:
    via = {c.params["node"]["name"]: c for c in plan(scale_state(50, 5)) if c.kind == "nodeport"}
    # Evenly over the lab, the first and the last among them.
    assert {n for n, c in via.items() if c.params["spread"]} == {"n0", "n12", "n24", "n37", "n49"}
    full = via["n0"]
    assert full.params["requests"] == spread_requests(50) and len(full.depends) > 1
    reach = via["n1"]
    # 50 backends, one per node: 5 draws all on one node has chance 50 * (1/50)^5.
    assert reach.params["requests"] == 5 and reach.params["min_nodes"] == 2
    assert reach.params["false_failure"] == pytest.approx(50 * 0.02 ** 5)
    assert reach.params["false_failure"] <= FALSE_FAILURE
    # Few draws may miss a broken backend: a reach check depends on the node's NAT only.
    assert reach.depends == frozenset({"nat:n1"})


def test_a_reach_check_wants_only_backends_and_answers_from_two_nodes() -> None:
    reach = next(c for c in plan(scale_state(50, 5))
                 if c.kind == "nodeport" and c.id.endswith("via n1]"))
    node = reach.params["node"]

    def judged(*answers: str) -> bool:
        draws = {"sent": len(answers), "ok": len(answers), "errors": {}, "ms_max": 1.0,
                 "answers": {a: 1 for a in answers}}
        peers = {"sent": 1, "ok": 1, "errors": {}, "ms_max": 1.0,
                 "answers": {f"{node['ip']}:40000": 1}}
        return reach.judge(None, [draws, peers]).passed  # type: ignore[arg-type]

    assert judged("p3-0", "p7-0")
    assert not judged("p3-0")  # every answer from one node's backends
    assert not judged("p3-0", "p7-1")  # p7-1 is not a backend of np


def test_reach_requests_is_the_least_count_within_the_bound() -> None:
    assert reach_requests([0.5, 0.5]) == 21  # 2 * 0.5^21 <= 1e-6 < 2 * 0.5^20
    assert reach_requests([0.02] * 50) == 5
    for shares in ([0.5, 0.5], [0.9, 0.1], [0.02] * 50):
        r = reach_requests(shares)
        assert sum(s ** r for s in shares) <= FALSE_FAILURE < sum(s ** (r - 1) for s in shares)


# ---- issue 21: CategorizeEndpoints, topology and localhost NodePorts in the plan


def zoned_lab(distribution: str | None, proxy_mode: str = "iptables") -> dict:
    """Zone a: n0, n1; zone b: n2, n3. Backends w0 (n0), w1 (n1), w2 (n2); the ClusterIP
    sources c0 (n0: a node with a backend) and c3 (n3: without); one client."""
    svc = {"name": "web", "selector": {"app": "web"}, "type": "NodePort",
           "ports": [{"port": 80, "nodePort": 30090}]}
    if distribution:
        svc["trafficDistribution"] = distribution
    doc = {"name": "t", "proxyMode": proxy_mode, "clients": ["cl"],
           "nodes": [{"name": "n0", "zone": "a"}, {"name": "n1", "zone": "a"},
                     {"name": "n2", "zone": "b"}, {"name": "n3", "zone": "b"}],
           "pods": [{"name": "w0", "node": "n0", "labels": {"app": "web"}},
                    {"name": "w1", "node": "n1", "labels": {"app": "web"}},
                    {"name": "w2", "node": "n2", "labels": {"app": "web"}},
                    {"name": "c0", "node": "n0"}, {"name": "c3", "node": "n3"}],
           "services": [svc]}
    return build_state(parse_lab(doc), NET)


def by_id(cluster: dict, status: dict | None = None) -> dict:
    return {c.id: c for c in plan(cluster, status)}


def test_prefer_close_keeps_requests_in_the_source_zone_and_sizes_the_draws_to_it() -> None:
    checks = by_id(zoned_lab("PreferClose"))
    zone_a = checks["clusterip[web:80 from c0]"]
    assert zone_a.params["backends"] == ["w0", "w1"]
    assert zone_a.params["requests"] == spread_requests(2)
    assert checks["clusterip[web:80 from c3]"].params["backends"] == ["w2"]
    assert checks["clusterip[web:80 from c3]"].params["requests"] == 1
    plain = by_id(zoned_lab(None))["clusterip[web:80 from c0]"]
    assert plain.params["backends"] == ["w0", "w1", "w2"]
    assert plain.params["requests"] == spread_requests(3) > zone_a.params["requests"]
    assert checks["nodeport[web:30090 via n3]"].params["backends"] == ["w2"]
    assert checks["nodeport[web:30090 via n1]"].params["backends"] == ["w0", "w1"]


def test_prefer_same_node_sends_to_the_node_own_endpoint_else_to_the_zone() -> None:
    checks = by_id(zoned_lab("PreferSameNode"))
    assert checks["clusterip[web:80 from c0]"].params["backends"] == ["w0"]
    assert checks["nodeport[web:30090 via n1]"].params["backends"] == ["w1"]
    assert checks["clusterip[web:80 from c3]"].params["backends"] == ["w2"]


def test_a_zone_without_a_ready_endpoint_uses_them_all() -> None:
    cluster = zoned_lab("PreferClose")
    cluster["pods"] = [p for p in cluster["pods"] if p["name"] != "w2"]
    checks = by_id(cluster)
    assert checks["clusterip[web:80 from c3]"].params["backends"] == ["w0", "w1"]


def terminating_status(cluster: dict, names: list[str]) -> dict:
    """`kgen status --json` with `names` Terminating and removed from the cluster, as
    `kgen apply` leaves them."""
    gone = [p for p in cluster["pods"] if p["name"] in names]
    cluster["pods"] = [p for p in cluster["pods"] if p["name"] not in names]
    return {"pods": [{"name": p["name"], "node": p["node"], "ip": p["ip"],
                      "state": "Terminating"} for p in gone],
            "services": [{"name": "web", "terminating": [f"{p['ip']}:80" for p in gone]}]}


def test_a_terminating_endpoint_is_expected_only_when_none_is_ready() -> None:
    cluster = zoned_lab(None)
    status = terminating_status(cluster, ["w2"])
    checks = by_id(cluster, status)
    assert checks["clusterip[web:80 from c3]"].params["backends"] == ["w0", "w1"]
    assert checks["nodeport[web:30090 via n2]"].params["backends"] == ["w0", "w1"]


def test_only_terminating_endpoints_are_the_fallback() -> None:
    cluster = zoned_lab(None)
    status = terminating_status(cluster, ["w0", "w1", "w2"])
    checks = by_id(cluster, status)
    assert not any(c.kind == "no-endpoints" for c in checks.values())
    assert checks["clusterip[web:80 from c3]"].params["backends"] == ["w0", "w1", "w2"]
    assert "terminating: the fallback" in checks["clusterip[web:80 from c3]"].expected
    assert "terminating" not in by_id(zoned_lab(None))["clusterip[web:80 from c3]"].expected
    assert checks["localhost[web:30090 on n1]"].params["backends"] == ["w0", "w1", "w2"]
    # a terminating pod starts nothing: no hairpin from it, and no source among them
    assert {c.source for c in checks.values() if c.kind == "clusterip"} <= {"c0", "c3"}
    assert not any(c.kind == "hairpin" for c in checks.values())


def test_local_policy_falls_back_to_the_node_own_terminating_endpoint() -> None:
    cluster = zoned_lab(None)
    cluster["services"][0]["externalTrafficPolicy"] = "Local"
    status = terminating_status(cluster, ["w2"])
    checks = by_id(cluster, status)
    assert checks["nodeport[web:30090 via n2]"].params["backends"] == ["w2"]
    assert checks["nodeport[web:30090 via n2]"].params["drop"] is False
    assert checks["nodeport[web:30090 via n3]"].params["drop"] is True
    # the node's own traffic to its localhost NodePort goes to the Cluster endpoints
    assert checks["localhost[web:30090 on n2]"].params["backends"] == ["w0", "w1"]


def test_localhost_nodeports_are_checked_in_iptables_mode_only() -> None:
    iptables = by_id(zoned_lab(None))
    assert [i for i in iptables if i.startswith("localhost[")] == [
        f"localhost[web:30090 on n{i}]" for i in range(4)]
    assert iptables["localhost[web:30090 on n0]"].target == "127.0.0.1:30090"
    assert not any(i.startswith("localhost[") for i in by_id(zoned_lab(None, "nftables")))
