"""LoadBalancer and externalIP traffic in both proxy modes, in the style of kube-proxy's
TestLoadBalancer, TestNoEndpointsReject, TestExternalIPsReject and
TestOnlyLocalLoadBalancing packet-flow tests (pkg/proxy/{iptables,nftables}/proxier_test.go)."""

from __future__ import annotations

import pytest

from generator.node.proxy import nft_rules
from generator.node.proxy.rules import service_port_rules
from generator.node.proxy.service import port_infos
from tests.unit.packet_flow import Outcome
from tests.unit.proxy_fixture import CLUSTER_CIDR, NODE, NODE_IP, PODS, SERVICES, pod, service
from tests.unit.test_proxy_flow import MODES, OUTSIDE, POD, model

IN_RANGE = "203.0.113.7"  # inside svc5's loadBalancerSourceRanges (203.0.113.0/25)
OUT_OF_RANGE = "203.0.113.200"

CASES = [
    ("client in the source range to LB IP, policy Cluster", IN_RANGE, "5.6.7.8",
     {Outcome("10.180.0.3:80", True)}),
    ("client outside the source range to LB IP is dropped", OUT_OF_RANGE, "5.6.7.8",
     {Outcome("DROP", False)}),
    ("pod outside the source range to LB IP is dropped", POD, "5.6.7.8",
     {Outcome("DROP", False)}),
    ("outside to LB IP, policy Local, no local endpoint", OUTSIDE, "1.2.3.4",
     {Outcome("DROP", False)}),
    ("pod to LB IP, policy Local: short-circuited to any endpoint", POD, "1.2.3.4",
     {Outcome("10.180.0.2:80", False)}),
    ("outside to external IP, policy Local, no local endpoint", OUTSIDE, "192.168.99.22",
     {Outcome("DROP", False)}),
    ("outside to external IP, policy Cluster: masqueraded", OUTSIDE, "192.168.99.33",
     {Outcome("10.180.0.4:80", True), Outcome("10.180.0.5:80", True)}),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "src", "dst", "expected"), CASES, ids=[c[0] for c in CASES])
def test_load_balancer_flow(mode: str, name: str, src: str, dst: str,
                            expected: set[Outcome]) -> None:
    assert model(mode).flow(src, dst, 80) == expected


@pytest.mark.parametrize("mode", MODES)
def test_local_load_balancer_keeps_the_client_address(mode: str) -> None:
    pods = [*PODS, pod("mine", "10.180.0.9", "svc2", node=NODE)]
    assert model(mode, pods).flow(OUTSIDE, "1.2.3.4", 80) == {Outcome("10.180.0.9:80", False)}
    assert model(mode, pods).flow(OUTSIDE, "192.168.99.22", 80) == \
        {Outcome("10.180.0.9:80", False)}


def lb_without_endpoints() -> list[dict]:
    svc = service(1, "172.30.0.41", "LoadBalancer", 3001)
    return [{**svc, "selector": {"svc": "nothing"}, "loadBalancerIP": "1.2.3.4",
             "externalIPs": ["192.168.99.11"]}]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("src", "dst", "port"), [
    (POD, "172.30.0.41", 80), (OUTSIDE, "192.168.99.11", 80), (POD, NODE_IP, 3001),
    (OUTSIDE, NODE_IP, 3001), (POD, "1.2.3.4", 80), (OUTSIDE, "1.2.3.4", 80)])
def test_no_endpoints_reject(mode: str, src: str, dst: str, port: int) -> None:
    """kube-proxy's TestNoEndpointsReject: cluster IP, external IP, NodePort and LB IP."""
    assert model(mode, PODS, lb_without_endpoints()).flow(src, dst, port) == \
        {Outcome("REJECT", False)}


def test_source_range_holding_the_node_ip_lets_the_vip_itself_in() -> None:
    """kube-proxy's allowFromNode: a source range that holds the node's IP also accepts
    the load-balancer IP as a source (a node reaching a VIP it holds loops back)."""
    svc = {**SERVICES[4], "loadBalancerSourceRanges": ["192.168.0.0/24"]}
    info = next(port_infos([svc], PODS))
    fw = service_port_rules(info, NODE, CLUSTER_CIDR, node_ip=NODE_IP).chains
    assert fw["KUBE-FW-NUKIZ6OKUXPJNT4C"][:2] == [
        '-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" '
        "-s 192.168.0.0/24 -j KUBE-EXT-NUKIZ6OKUXPJNT4C",
        '-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" '
        "-s 5.6.7.8 -j KUBE-EXT-NUKIZ6OKUXPJNT4C"]
    nft = nft_rules.service_port_rules(info, NODE, CLUSTER_CIDR, node_ip=NODE_IP).chains
    assert nft["firewall-HVFWP5L3-ns5/svc5/tcp/p80"] == \
        ["ip saddr != { 192.168.0.0/24 , 5.6.7.8 } drop"]
    # A node outside the ranges gets no such exception.
    elsewhere = service_port_rules(info, NODE, CLUSTER_CIDR, node_ip="10.9.9.9").chains
    assert len(elsewhere["KUBE-FW-NUKIZ6OKUXPJNT4C"]) == 2


def test_health_check_node_port_only_under_local_policy() -> None:
    """kube-proxy's serviceInfo has a health check node port only with policy Local: svc5
    (Cluster) asks for one and gets no ACCEPT rule; svc2 (Local) does."""
    rules = {i.service: service_port_rules(i, NODE, CLUSTER_CIDR)
             for i in port_infos(SERVICES, PODS)}
    assert rules["svc5"].filter_nodeports == []
    assert rules["svc2"].filter_nodeports == [
        '-A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" '
        "-m tcp -p tcp --dport 30000 -j ACCEPT"]
