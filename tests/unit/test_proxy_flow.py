"""Packet-flow tests in the style of kube-proxy's runPacketFlowTests: where does a
packet from a source to a destination end up, and is it masqueraded?"""

from __future__ import annotations

import pytest

from generator.node.proxy.endpoints import endpoints_for
from generator.node.proxy.rules import service_port_rules, write_ruleset
from tests.unit.packet_flow import Model, Outcome
from tests.unit.proxy_fixture import CLUSTER_CIDR, NODE, PODS, SERVICES, pod

NODE_IP = "192.168.0.2"
POD = "10.0.0.2"  # a pod on this node
OUTSIDE = "203.0.113.9"  # a client off the cluster network


def model(pods=PODS) -> Model:
    ports = [service_port_rules(s, p, endpoints_for(s, p, pods), NODE, CLUSTER_CIDR)
             for s in SERVICES for p in s["ports"]]
    return Model(write_ruleset(ports), {NODE_IP})


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


@pytest.mark.parametrize(("name", "src", "dst", "port", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_packet_flow(name: str, src: str, dst: str, port: int, expected: set[Outcome]) -> None:
    assert model().flow(src, dst, port) == expected


def test_local_policy_keeps_the_client_address_with_a_local_endpoint() -> None:
    pods = [*PODS, pod("mine", "10.180.0.9", "svc2", node=NODE)]
    assert model(pods).flow(OUTSIDE, NODE_IP, 3001) == {Outcome("10.180.0.9:80", False)}
    # ...while pods still reach every endpoint through it.
    assert model(pods).flow(POD, NODE_IP, 3001) == {Outcome("10.180.0.2:80", False),
                                                    Outcome("10.180.0.9:80", False)}
