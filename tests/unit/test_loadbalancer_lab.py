"""LoadBalancer services and externalIPs in the lab file (contract §1): validation, one
line per problem, and the addresses the cluster build gives them."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from generator.cluster.build import build_state
from generator.lab.errors import LabError
from generator.lab.model import NODE_PORT_RANGE, parse_lab

NET = "172.28.180.0/24"


def lab(services: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    # The lab's own services only: no cluster DNS (its kube-dns is a ClusterIP service).
    return {"name": "lbtest", "nodeNetwork": NET, "nodes": ["n0", "n1"], "clients": ["c0"],
            "dns": {"enabled": False},
            "pods": [{"name": "p0", "node": "n0", "labels": {"app": "web"}}],
            "services": services, **top}


def lb(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "LoadBalancer", "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080}], **fields}


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(LabError) as err:
        parse_lab(doc, "lab.yaml")
    return [f"{p.path}: {p.message}" for p in err.value.problems]


@pytest.mark.parametrize(("doc", "expected"), [
    (lab([lb("a")], loadBalancerPool="172.28.181.0/28"),
     "loadBalancerPool: 172.28.181.0/28 is not inside nodeNetwork 172.28.180.0/24"),
    (lab([lb("a")], loadBalancerPool="172.28.180.0/28"),
     "loadBalancerPool: 172.28.180.0/28 holds 172.28.180.0, a node's, client's or the "
     "network's own address"),
    (lab([lb("a")], loadBalancerPool="172.28.180.240/28"),
     "loadBalancerPool: 172.28.180.240/28 holds 172.28.180.254, a node's, client's or the "
     "network's own address"),
    ({**lab([lb("a")], loadBalancerPool="172.28.180.224/28"), "nodeNetwork": None},
     "loadBalancerPool: needs nodeNetwork (the default node network is chosen when the lab "
     "starts)"),
    (lab([lb("a", loadBalancerIP="172.28.180.100")]),
     "services[0].loadBalancerIP: 172.28.180.100 is not a free address of loadBalancerPool "
     "172.28.180.224/28"),
    (lab([lb("a", loadBalancerIP="172.28.180.230"), lb("b", loadBalancerIP="172.28.180.230")]),
     "services[1].loadBalancerIP: 172.28.180.230 is already used by services[0].loadBalancerIP"),
    (lab([{**lb("a", loadBalancerIP="172.28.180.230"), "type": "NodePort"}]),
     "services[0].loadBalancerIP: may only be set on LoadBalancer services"),
    (lab([{**lb("a", loadBalancerSourceRanges=["10.0.0.0/8"]), "type": "ClusterIP"}]),
     "services[0].loadBalancerSourceRanges: may only be set on LoadBalancer services"),
    (lab([lb("a", loadBalancerSourceRanges=["10.0.0.300/8"])]),
     "services[0].loadBalancerSourceRanges[0]: '10.0.0.300/8' is not a CIDR such as "
     "172.31.0.0/24"),
    (lab([lb("a", externalIPs=["172.28.181.9"])]),
     "services[0].externalIPs[0]: 172.28.181.9 is not inside nodeNetwork 172.28.180.0/24"),
    (lab([lb("a", externalIPs=["172.28.180.3"])]),
     "services[0].externalIPs[0]: 172.28.180.3 is a node's, client's or the network's own "
     "address"),
    (lab([lb("a", externalIPs=["172.28.180.230"])]),
     "services[0].externalIPs[0]: 172.28.180.230 is in loadBalancerPool 172.28.180.224/28, "
     "whose addresses go to LoadBalancer services"),
    (lab([lb(f"s{i}") for i in range(17)]),
     "services: 17 LoadBalancer services need 17 addresses but loadBalancerPool "
     "172.28.180.224/28 holds 16"),
    (lab([{**lb("a"), "type": "ClusterIP", "externalTrafficPolicy": "Local"}]),
     "services[0].externalTrafficPolicy: may only be set on NodePort and LoadBalancer "
     "services"),
])
def test_bad_load_balancer_fields_are_refused(doc: dict[str, Any], expected: str) -> None:
    if doc.get("nodeNetwork") is None:
        doc = {k: v for k, v in doc.items() if k != "nodeNetwork"}
    assert expected in problems(doc)


def services_of(doc: dict[str, Any]) -> dict[str, Any]:
    state = build_state(parse_lab(doc), ipaddress.IPv4Network(NET))
    return {s["name"]: s for s in state["services"]}


def test_load_balancer_ips_come_from_the_default_pool_and_stay_put() -> None:
    first = services_of(lab([lb("a"), lb("b", loadBalancerIP="172.28.180.230")]))
    pool = ipaddress.IPv4Network("172.28.180.224/28")
    assert ipaddress.IPv4Address(first["a"]["loadBalancerIP"]) in pool
    assert first["b"]["loadBalancerIP"] == "172.28.180.230"
    # Adding a service moves no other's address, as nodePorts and cluster IPs.
    more = services_of(lab([lb("a"), lb("b", loadBalancerIP="172.28.180.230"), lb("c")]))
    assert more["a"]["loadBalancerIP"] == first["a"]["loadBalancerIP"]
    assert len({s["loadBalancerIP"] for s in more.values()}) == 3


def test_sixteen_services_fill_the_pool() -> None:
    got = services_of(lab([lb(f"s{i}") for i in range(16)]))
    assert sorted(int(s["loadBalancerIP"].rsplit(".", 1)[1]) for s in got.values()) == \
        list(range(224, 240))


def test_health_check_node_port_only_for_local_load_balancers() -> None:
    got = services_of(lab([lb("local", externalTrafficPolicy="Local"), lb("cluster"),
                           {**lb("np"), "type": "NodePort", "externalTrafficPolicy": "Local"}]))
    port = got["local"]["healthCheckNodePort"]
    assert NODE_PORT_RANGE[0] <= port <= NODE_PORT_RANGE[1]
    node_ports = {p["nodePort"] for s in got.values() for p in s["ports"]}
    assert port not in node_ports and all(node_ports)
    assert "healthCheckNodePort" not in got["cluster"] and "healthCheckNodePort" not in got["np"]


def test_a_lab_without_load_balancers_keeps_its_cluster_json() -> None:
    """No new keys on plain services: a lab's generation stays what it was."""
    got = services_of(lab([{"name": "plain", "selector": {"app": "web"},
                            "ports": [{"port": 80}]}]))
    assert not {"loadBalancerIP", "externalIPs", "healthCheckNodePort"} & got["plain"].keys()


def test_same_name_in_two_namespaces_is_two_load_balancers() -> None:
    doc = lab([lb("web"), {**lb("web"), "namespace": "shop"}], namespaces=[{"name": "shop"}])
    doc["pods"].append({"name": "p1", "node": "n1", "namespace": "shop",
                        "labels": {"app": "web"}})
    state = build_state(parse_lab(doc), ipaddress.IPv4Network(NET))
    ips = [s["loadBalancerIP"] for s in state["services"] if s.get("type") == "LoadBalancer"]
    assert len(ips) == 2 and len(set(ips)) == 2


def test_free_pool_addresses_are_indexed_without_listing_the_pool() -> None:
    from generator.cluster.build import _FreeAddresses
    from generator.lab.lb_checks import host_addresses

    net = ipaddress.IPv4Network("10.0.0.0/24")
    off = host_addresses(net, 3, 2)
    free = _FreeAddresses(net, off)
    listed = [a for a in net if a not in off]
    assert free.size == len(listed)
    assert [free.at(i) for i in range(free.size)] == listed
    assert [free.index(a) for a in listed] == list(range(len(listed)))
    assert all(free.index(a) is None for a in off)
    # A /8 node network and pool: a 16M-address pool is indexed, never listed.
    big = ipaddress.IPv4Network("10.0.0.0/8")
    wide = _FreeAddresses(big, host_addresses(big, 3, 2))
    assert wide.at(0) == ipaddress.IPv4Address("10.0.0.5")
    assert wide.index(ipaddress.IPv4Address("10.255.255.252")) == wide.size - 1
