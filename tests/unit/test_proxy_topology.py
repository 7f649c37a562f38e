"""Terminating endpoints and topology, from kube-proxy's own test cases, in both modes.

- TestTerminatingEndpointsTrafficPolicyLocal / ...Cluster (pkg/proxy/nftables and
  iptables proxier_test.go): a service whose endpoints are ready, serving while
  terminating, or terminating and not serving; where packets from a pod and from
  outside end up (kube-proxy's LoadBalancer IP is a kgen NodePort here, which takes
  the same external path), and REJECT once the endpoints are gone.
- TestCategorizeEndpoints (pkg/proxy/topology_test.go): which endpoints the Cluster
  and Local policies use, with zone hints, node hints and terminating endpoints.
- trafficDistribution end to end: hints as the EndpointSlice controller sets them,
  topology filtering in the rules of both modes.
"""

from __future__ import annotations

from typing import Any

import pytest

from generator.node.proxy import nft_rules
from generator.node.proxy.endpoints import Endpoint
from generator.node.proxy.rules import service_port_rules, write_ruleset
from generator.node.proxy.service import PortInfo, categorize, port_infos
from tests.unit.nft_fake import FakeTable, Tracer
from tests.unit.packet_flow import Model, Outcome
from tests.unit.proxy_fixture import CLUSTER_CIDR, NODE, NODE_IP, SERVICE_CIDR, service

MODES = ["iptables", "nftables"]
POD = "10.0.0.2"
OUTSIDE = "203.0.113.2"  # kube-proxy's testExternalClient
CLUSTER_IP, NODE_PORT = "172.30.1.1", 3001


def model(mode: str, services: list[dict[str, Any]], pods: list[dict[str, Any]],
          zone: str = "") -> Any:
    infos = list(port_infos(services, pods))
    if mode == "iptables":
        ports = [service_port_rules(i, NODE, CLUSTER_CIDR, zone=zone) for i in infos]
        return Model(write_ruleset(ports), {NODE_IP})
    table = FakeTable()
    table.apply(nft_rules.full_transaction(
        [nft_rules.service_port_rules(i, NODE, CLUSTER_CIDR, zone) for i in infos], NODE_IP,
        SERVICE_CIDR))
    return Tracer(table, {NODE_IP})


def endpoint_pod(ip: str, condition: str, node: str = NODE, zone: str = "") -> dict[str, Any]:
    """A pod as its node publishes it, for an EndpointSlice endpoint's conditions:
    ready, serving-terminating (ready=false serving=true terminating=true) or
    terminating (ready=false serving=false terminating=true)."""
    doc: dict[str, Any] = {"name": f"ep-{ip}", "node": node, "ip": ip, "labels": {"svc": "svc1"},
                           "namespace": "ns1",  # svc1's: a service selects its namespace's pods
                           "state": "Running" if condition == "ready" else "Terminating"}
    if condition != "ready":
        doc["serving"] = condition == "serving-terminating"
    if zone:
        doc["zone"] = zone
    return doc


def svc1(policy: str) -> dict[str, Any]:
    s = service(1, CLUSTER_IP, "NodePort", NODE_PORT, policy=policy)
    s["ports"][0]["name"] = ""
    return s


def outcomes(text: str, masq: bool) -> set[Outcome]:
    return {Outcome(v.strip(), masq) for v in text.split(",")}


# name, endpoints (ip, condition, on this node?), pod to cluster IP, outside to NodePort
LOCAL_CASES = [
    ("ready endpoints exist",
     [("10.0.1.1", "ready", True), ("10.0.1.2", "ready", True),
      ("10.0.1.3", "serving-terminating", True), ("10.0.1.4", "terminating", True),
      ("10.0.1.5", "ready", False)],
     outcomes("10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", False),
     outcomes("10.0.1.1:80, 10.0.1.2:80", False)),
    ("only terminating endpoints exist",
     [("10.0.1.2", "serving-terminating", True), ("10.0.1.3", "serving-terminating", True),
      ("10.0.1.4", "terminating", True), ("10.0.1.5", "ready", False)],
     outcomes("10.0.1.5:80", False),
     outcomes("10.0.1.2:80, 10.0.1.3:80", False)),
    ("terminating endpoints on remote node",
     [("10.0.1.5", "serving-terminating", False)],
     outcomes("10.0.1.5:80", False),
     outcomes("DROP", False)),
    ("no usable endpoints on any node",
     [("10.0.1.5", "terminating", True), ("10.0.1.6", "terminating", False)],
     outcomes("REJECT", False),
     outcomes("REJECT", False)),
]

CLUSTER_CASES = [
    ("ready endpoints exist",
     [("10.0.1.1", "ready", True), ("10.0.1.2", "ready", True),
      ("10.0.1.3", "serving-terminating", False), ("10.0.1.4", "terminating", False),
      ("10.0.1.5", "ready", False)],
     outcomes("10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", False),
     outcomes("10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", True)),
    ("only terminating endpoints exist",
     [("10.0.1.2", "serving-terminating", True), ("10.0.1.3", "serving-terminating", True),
      ("10.0.1.4", "terminating", False), ("10.0.1.5", "serving-terminating", False)],
     outcomes("10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80", False),
     outcomes("10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80", True)),
    ("terminating endpoints on remote node",
     [("10.0.1.5", "serving-terminating", False)],
     outcomes("10.0.1.5:80", False),
     outcomes("10.0.1.5:80", True)),
    ("no usable endpoints on any node",
     [("10.0.1.5", "terminating", True), ("10.0.1.6", "terminating", False)],
     outcomes("REJECT", False),
     outcomes("REJECT", False)),
]


def _pods(endpoints: list[tuple[str, str, bool]]) -> list[dict[str, Any]]:
    return [endpoint_pod(ip, cond, NODE if local else "node-1") for ip, cond, local in endpoints]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("policy", "case"),
                         [("Local", c) for c in LOCAL_CASES] + [("Cluster", c) for c in CLUSTER_CASES],
                         ids=[f"Local: {c[0]}" for c in LOCAL_CASES]
                         + [f"Cluster: {c[0]}" for c in CLUSTER_CASES])
def test_terminating_endpoints(mode: str, policy: str, case: tuple) -> None:
    _, endpoints, to_cluster_ip, from_outside = case
    m = model(mode, [svc1(policy)], _pods(endpoints))
    assert m.flow(POD, CLUSTER_IP, 80) == to_cluster_ip
    assert m.flow(OUTSIDE, NODE_IP, NODE_PORT) == from_outside
    gone = model(mode, [svc1(policy)], [])
    assert gone.flow(POD, CLUSTER_IP, 80) == outcomes("REJECT", False)
    assert gone.flow(OUTSIDE, NODE_IP, NODE_PORT) == outcomes("REJECT", False)


# ---------------------------------------------------------------- CategorizeEndpoints


def ep(address: str, ready: bool = True, local: bool = False, zones: tuple[str, ...] = (),
       nodes: tuple[str, ...] = ()) -> Endpoint:
    ip, port = address.split(":")
    return Endpoint(ip, int(port), NODE if local else "other", ready, frozenset(zones),
                    frozenset(nodes))


def info(endpoints: list[Endpoint], internal_local: bool = False, external_local: bool = False,
         node_port: int | None = None) -> PortInfo:
    return PortInfo("ns", "svc", "", "tcp", "172.30.0.1", 80, node_port, None, external_local,
                    internal_local, tuple(sorted(endpoints, key=lambda e: e.address)))


A3, A4, A5, A6 = "10.1.2.3:80", "10.1.2.4:80", "10.1.2.5:80", "10.1.2.6:80"
E0, E1, E2, E3 = "10.0.0.0:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"
ZONED = [ep(A3, zones=("zone-a",)), ep(A4, zones=("zone-b",)), ep(A5, zones=("zone-c",)),
         ep(A6, zones=("zone-a",))]
# Only serving endpoints reach kgen's PortInfo: a terminating endpoint here serves.
TERM = {"ready": False}

# name, port info, zone, cluster, local, all (None: the one list that is set), has any
CATEGORIZE = [
    ("zone hints, node in zone-a", info(ZONED), "zone-a", {A3, A6}, None, None, True),
    ("eTP Local: topology ignored for Local endpoints",
     info([ep(A3, local=True, zones=("zone-a",)), ep(A4, local=True, zones=("zone-b",)),
           ep(A5, zones=("zone-c",)), ep(A6, zones=("zone-a",))], external_local=True,
          node_port=8080), "zone-a", {A3, A6}, {A3, A4}, {A3, A4, A6}, True),
    ("iTP Local: topology ignored for Local endpoints",
     info([ep(A3, local=True, zones=("zone-a",)), ep(A4, local=True, zones=("zone-b",)),
           ep(A5, zones=("zone-c",)), ep(A6, zones=("zone-a",))], internal_local=True,
          node_port=8080), "zone-a", {A3, A6}, {A3, A4}, {A3, A4, A6}, True),
    ("empty zone label", info([ep(A3, zones=("zone-a",))]), "", {A3}, None, None, True),
    ("node in a zone no endpoint is hinted for",
     info([ep(A3, zones=("zone-a",))]), "zone-b", {A3}, None, None, True),
    ("a ready endpoint without a hint: no filtering",
     info([ep(A3, zones=("zone-a",)), ep(A4, zones=("zone-b",)), ep(A5),
           ep(A6, zones=("zone-a",))]), "zone-a", {A3, A4, A5, A6}, None, None, True),
    ("multiple hints per endpoint",
     info([ep(A3, zones=("zone-a", "zone-b", "zone-c")), ep(A4, zones=("zone-b", "zone-c")),
           ep(A5, zones=("zone-b", "zone-d")), ep(A6, zones=("zone-c",))]), "zone-c",
     {A3, A4, A6}, None, None, True),
    ("conflicting topology and localness require merging",
     info([ep(E0, local=True, zones=("zone-a",)), ep(E1, local=True, zones=("zone-b",)),
           ep(E2, zones=("zone-a",)), ep(E3, zones=("zone-b",))], external_local=True,
          node_port=8080), "zone-a", {E0, E2}, {E0, E1}, {E0, E1, E2}, True),
    ("iTP Local, no endpoints", info([], internal_local=True), "", None, set(), None, False),
    ("iTP Local, all endpoints remote", info([ep(E0), ep(E1)], internal_local=True), "",
     None, set(), None, True),
    ("iTP Local, some local", info([ep(E0, local=True), ep(E1)], internal_local=True), "",
     None, {E0}, None, True),
    ("Cluster, all endpoints serving-terminating",
     info([ep(E0, local=True, **TERM), ep(E1, **TERM)]), "", {E0, E1}, None, None, True),
    ("iTP Local eTP Local, all remote and serving-terminating",
     info([ep(E0, **TERM), ep(E1, **TERM)], internal_local=True, external_local=True,
          node_port=8080), "", {E0, E1}, set(), {E0, E1}, True),
    ("iTP Cluster eTP Local, with serving-terminating endpoints",
     info([ep(E0), ep(E2, local=True, **TERM), ep(E3, **TERM)], external_local=True,
          node_port=8080), "", {E0}, {E2}, {E0, E2}, True),
    ("eTP ignored if not externally accessible",
     info([ep(E0), ep(E1, local=True)], external_local=True), "", {E0, E1}, None, None, True),
    ("no cluster endpoints for an iTP Local internal-only service",
     info([ep(E0), ep(E1, local=True)], internal_local=True), "", None, {E1}, None, True),
    # PreferSameNode (node hints), as topologyModeFromHints takes them first.
    ("node hints: this node's endpoints",
     info([ep(E0, local=True, zones=("zone-a",), nodes=(NODE,)),
           ep(E1, zones=("zone-a",), nodes=("other",)),
           ep(E2, zones=("zone-b",), nodes=("other-b",))]), "zone-a", {E0}, None, None, True),
    ("node hints but none for this node: falls back to zone hints",
     info([ep(E1, zones=("zone-a",), nodes=("other",)),
           ep(E2, zones=("zone-b",), nodes=("other-b",))]), "zone-a", {E1}, None, None, True),
]


@pytest.mark.parametrize(("name", "port", "zone", "cluster", "local", "everything", "has_any"),
                         CATEGORIZE, ids=[c[0] for c in CATEGORIZE])
def test_categorize_endpoints(name: str, port: PortInfo, zone: str, cluster: set[str] | None,
                              local: set[str] | None, everything: set[str] | None,
                              has_any: bool) -> None:
    pol = categorize(port, NODE, zone)
    assert {e.address for e in pol.cluster} == (cluster or set())
    assert port.uses_cluster_endpoints() == (cluster is not None)
    assert {e.address for e in pol.local} == (local or set())
    assert port.uses_local_endpoints() == (local is not None)
    expected_all = everything if everything is not None else (
        cluster if cluster is not None else local)
    assert {e.address for e in pol.reachable} == expected_all
    assert pol.has_endpoints == has_any


# ---------------------------------------------------------------- trafficDistribution


def topology_service(distribution: str) -> dict[str, Any]:
    s = service(1, CLUSTER_IP)
    s["trafficDistribution"] = distribution
    return s


ZONE_PODS = [endpoint_pod("10.0.1.1", "ready", NODE, "zone-a"),
             endpoint_pod("10.0.1.2", "ready", "node-1", "zone-a"),
             endpoint_pod("10.0.1.3", "ready", "node-2", "zone-b")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("distribution", ["PreferClose", "PreferSameZone"])
def test_prefer_close_keeps_traffic_in_the_zone(mode: str, distribution: str) -> None:
    services = [topology_service(distribution)]
    in_a = model(mode, services, ZONE_PODS, zone="zone-a")
    assert in_a.flow(POD, CLUSTER_IP, 80) == outcomes("10.0.1.1:80, 10.0.1.2:80", False)
    in_b = model(mode, services, ZONE_PODS, zone="zone-b")
    assert in_b.flow(POD, CLUSTER_IP, 80) == outcomes("10.0.1.3:80", False)
    # A zone without endpoints, or a node without a zone: every endpoint.
    everywhere = outcomes("10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80", False)
    assert model(mode, services, ZONE_PODS, zone="zone-c").flow(POD, CLUSTER_IP, 80) == everywhere
    assert model(mode, services, ZONE_PODS).flow(POD, CLUSTER_IP, 80) == everywhere


@pytest.mark.parametrize("mode", MODES)
def test_prefer_same_node(mode: str) -> None:
    services = [topology_service("PreferSameNode")]
    assert model(mode, services, ZONE_PODS, zone="zone-a").flow(POD, CLUSTER_IP, 80) == \
        outcomes("10.0.1.1:80", False)
    # No endpoint on this node: as PreferSameZone.
    elsewhere = ZONE_PODS[1:]
    assert model(mode, services, elsewhere, zone="zone-a").flow(POD, CLUSTER_IP, 80) == \
        outcomes("10.0.1.2:80", False)


@pytest.mark.parametrize("mode", MODES)
def test_a_terminating_endpoint_has_no_hint_and_no_say(mode: str) -> None:
    """Hints go to ready endpoints only (trafficdist's preferCloseHeuristic): with the
    zone's only ready endpoint gone to Terminating, zone-a has no hinted endpoint and
    traffic goes to every ready one, not to the terminating one."""
    pods = [endpoint_pod("10.0.1.1", "serving-terminating", NODE, "zone-a"),
            endpoint_pod("10.0.1.3", "ready", "node-2", "zone-b")]
    m = model(mode, [topology_service("PreferClose")], pods, zone="zone-a")
    assert m.flow(POD, CLUSTER_IP, 80) == outcomes("10.0.1.3:80", False)


# ---------------------------------------------------------------- golden rulesets


def golden_rulesets(policy: str) -> tuple[str, str]:
    """Both modes' rulesets for kube-proxy's case "only terminating endpoints exist"."""
    from tests.unit.nft_fake import sort_transaction
    from tests.unit.test_proxy_rules import sort_rules

    cases = LOCAL_CASES if policy == "Local" else CLUSTER_CASES
    endpoints = next(c[1] for c in cases if c[0] == "only terminating endpoints exist")
    infos = list(port_infos([svc1(policy)], _pods(endpoints)))
    rules = sort_rules(write_ruleset([service_port_rules(i, NODE, CLUSTER_CIDR) for i in infos]))
    table = FakeTable()
    table.apply(nft_rules.full_transaction(
        [nft_rules.service_port_rules(i, NODE, CLUSTER_CIDR) for i in infos], NODE_IP,
        SERVICE_CIDR))
    return rules, sort_transaction(table.dump())


@pytest.mark.parametrize("policy", ["Local", "Cluster"])
def test_only_terminating_endpoints_rulesets_match_the_golden_files(policy: str) -> None:
    from tests.conftest import ROOT
    from tests.unit.nft_fake import sort_transaction

    golden = ROOT / "tests" / "golden" / "proxy"
    rules, table = golden_rulesets(policy)
    assert rules == (golden / f"terminating-{policy.lower()}.rules").read_text()
    assert table == sort_transaction((golden / f"terminating-{policy.lower()}.nft").read_text())
