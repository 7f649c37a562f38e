"""Packet-flow tests in the style of kube-proxy's runPacketFlowTests, in both modes: where
does a packet from a source to a destination end up, and is it masqueraded?"""

from __future__ import annotations

from typing import Any

import pytest

from generator.node.proxy import nft_rules
from generator.node.proxy.rules import service_port_rules, write_ruleset
from generator.node.proxy.service import port_infos
from tests.unit.nft_fake import FakeTable, Tracer
from tests.unit.packet_flow import Model, Outcome
from tests.unit.proxy_fixture import (
    CLUSTER_CIDR,
    NODE,
    NODE_IP,
    PODS,
    SERVICE_CIDR,
    SERVICES,
    pod,
    service,
)

POD = "10.0.0.2"  # a pod on this node
OUTSIDE = "203.0.113.9"  # a client off the cluster network
MODES = ["iptables", "nftables"]


def model(mode: str, pods=PODS, services=SERVICES) -> Any:
    infos = list(port_infos(services, pods))
    if mode == "iptables":
        ports = [service_port_rules(i, NODE, CLUSTER_CIDR) for i in infos]
        return Model(write_ruleset(ports), {NODE_IP})
    table = FakeTable()
    table.apply(nft_rules.full_transaction(
        [nft_rules.service_port_rules(i, NODE, CLUSTER_CIDR) for i in infos], NODE_IP,
        SERVICE_CIDR))
    return Tracer(table, {NODE_IP})


CASES = [
    ("pod to cluster IP", POD, "172.30.0.41", 80, {Outcome("10.180.0.1:80", False)}),
    ("outside to cluster IP", OUTSIDE, "172.30.0.41", 80, {Outcome("10.180.0.1:80", True)}),
    ("node to cluster IP", NODE_IP, "172.30.0.41", 80, {Outcome("10.180.0.1:80", True)}),
    ("hairpin: endpoint to its own service", "10.180.0.1", "172.30.0.41", 80,
     {Outcome("10.180.0.1:80", True)}),
    ("pod to cluster IP, two endpoints", POD, "172.30.0.44", 80,
     {Outcome("10.180.0.4:80", False), Outcome("10.180.0.5:80", False)}),
    ("outside to NodePort, policy Cluster", OUTSIDE, NODE_IP, 3003,
     {Outcome("10.180.0.3:80", True)}),
    ("outside to NodePort, policy Local, no local endpoint", OUTSIDE, NODE_IP, 3001,
     {Outcome("DROP", False)}),
    ("pod to NodePort, policy Local: any endpoint", POD, NODE_IP, 3001,
     {Outcome("10.180.0.2:80", False)}),
    ("node to its own NodePort, policy Local", NODE_IP, NODE_IP, 3001,
     {Outcome("10.180.0.2:80", True)}),
    ("outside to NodePort with ClientIP affinity", OUTSIDE, NODE_IP, 3002,
     {Outcome("10.180.0.3:80", True)}),
    ("pod to cluster IP with no endpoints", POD, "172.30.0.46", 80, {Outcome("REJECT", False)}),
    ("outside to a port nobody serves", OUTSIDE, NODE_IP, 3999, {Outcome("none", False)}),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "src", "dst", "port", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_packet_flow(mode: str, name: str, src: str, dst: str, port: int,
                     expected: set[Outcome]) -> None:
    assert model(mode).flow(src, dst, port) == expected


@pytest.mark.parametrize("mode", MODES)
def test_local_policy_keeps_the_client_address_with_a_local_endpoint(mode: str) -> None:
    pods = [*PODS, pod("mine", "10.180.0.9", "svc2", node=NODE)]
    assert model(mode, pods).flow(OUTSIDE, NODE_IP, 3001) == {Outcome("10.180.0.9:80", False)}
    # ...while pods still reach every endpoint through it.
    assert model(mode, pods).flow(POD, NODE_IP, 3001) == {Outcome("10.180.0.2:80", False),
                                                          Outcome("10.180.0.9:80", False)}


@pytest.mark.parametrize("mode", MODES)
def test_internal_traffic_policy_local(mode: str) -> None:
    services = [*SERVICES, service(7, "172.30.0.47", internal="Local")]
    mine, theirs = pod("a", "10.180.0.7", "svc7", node=NODE), pod("b", "10.180.0.8", "svc7")
    both = model(mode, [*PODS, mine, theirs], services)
    assert both.flow(POD, "172.30.0.47", 80) == {Outcome("10.180.0.7:80", False)}
    only_remote = model(mode, [*PODS, theirs], services)
    assert only_remote.flow(POD, "172.30.0.47", 80) == {Outcome("DROP", False)}
    nobody = model(mode, PODS, services)
    assert nobody.flow(POD, "172.30.0.47", 80) == {Outcome("REJECT", False)}


def test_nftables_drops_traffic_to_unallocated_cluster_ips() -> None:
    assert model("nftables").flow(POD, "172.30.0.99", 80) == {Outcome("DROP", False)}
    # ...and rejects ports a cluster IP does not serve.
    assert model("nftables").flow(POD, "172.30.0.41", 81) == {Outcome("REJECT", False)}
