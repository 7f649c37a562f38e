"""The overlay each node must build, from the cluster state (pure; no system calls)."""

from __future__ import annotations

import ipaddress

from generator.cluster.build import build_state
from generator.lab.model import parse_lab
from generator.node.overlay import Underlay, plan

NET = ipaddress.ip_network("172.31.5.0/24")
UNDERLAY = Underlay("eth0", 1500)


def cluster(backend: str = "vxlan") -> dict:
    return build_state(parse_lab({"name": "t", "backend": backend,
                                  "nodes": ["n0", "n1", "n2"]}), NET)


def test_vxlan_follows_the_flannel_model() -> None:
    desired = plan(cluster(), "n0", UNDERLAY)
    vx = desired["vxlan"]
    assert (vx["name"], vx["vni"], vx["port"], vx["local"], vx["dev"]) == (
        "kgen.1", 1, 4789, "172.31.5.2", "eth0")
    assert vx["mtu"] == 1450 and vx["address"] == "10.244.0.0/32"
    assert vx["mac"] == "0a:58:0a:f4:00:00"
    assert desired["routes"] == [
        {"dst": "10.244.1.0/24", "via": "10.244.1.0", "dev": "kgen.1", "onlink": True},
        {"dst": "10.244.2.0/24", "via": "10.244.2.0", "dev": "kgen.1", "onlink": True}]
    assert desired["neighbours"] == [{"ip": "10.244.1.0", "mac": "0a:58:0a:f4:01:00"},
                                     {"ip": "10.244.2.0", "mac": "0a:58:0a:f4:02:00"}]
    assert desired["fdb"] == [{"mac": "0a:58:0a:f4:01:00", "dst": "172.31.5.3"},
                              {"mac": "0a:58:0a:f4:02:00", "dst": "172.31.5.4"}]


def test_bridge_holds_the_gateway_and_ranges_stay_inside() -> None:
    desired = plan(cluster(), "n1", UNDERLAY)
    assert desired["bridge"] == {"name": "cbr0", "address": "10.244.1.1/24", "mtu": 1450,
                                 "mac": "0a:58:0a:f4:01:01"}
    assert desired["unreachable"] == ["10.244.0.0/16"]
    assert desired["service_route"] == "10.96.0.0/16"


def test_host_gw_routes_via_node_ips() -> None:
    desired = plan(cluster("host-gw"), "n2", UNDERLAY)
    assert desired["vxlan"] is None and desired["fdb"] == []
    assert desired["routes"] == [
        {"dst": "10.244.0.0/24", "via": "172.31.5.2", "dev": "eth0", "onlink": False},
        {"dst": "10.244.1.0/24", "via": "172.31.5.3", "dev": "eth0", "onlink": False}]
    assert desired["bridge"]["mtu"] == 1500
