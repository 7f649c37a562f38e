"""The cluster state: addresses derived from the lab."""

from __future__ import annotations

import ipaddress

from generator.cluster.build import build_state, generation
from generator.lab.model import parse_lab

NET = ipaddress.ip_network("172.31.7.0/24")


def lab(**extra: object) -> dict:
    """Allocation of the lab's own objects, without the DNS's (test_dns_wiring has those)."""
    doc = {"name": "t", "nodes": ["n0", "n1"], "clients": ["c0"], "dns": {"enabled": False}}
    doc.update(extra)
    return doc


def test_nodes_get_addresses_subnets_and_vteps() -> None:
    state = build_state(parse_lab(lab()), NET)
    n0, n1 = state["nodes"]
    assert (n0["ip"], n1["ip"]) == ("172.31.7.2", "172.31.7.3")
    assert (n0["podCIDR"], n1["podCIDR"]) == ("10.244.0.0/24", "10.244.1.0/24")
    assert n1["gateway"] == "10.244.1.1" and n1["vtep"] == "10.244.1.0"
    assert n1["vtepMAC"] == "0a:58:0a:f4:01:00" and n1["gatewayMAC"] == "0a:58:0a:f4:01:01"
    assert n0["container"] == "kgen-t-n0"
    assert state["clients"] == [{"name": "c0", "container": "kgen-t-c0", "ip": "172.31.7.254"}]
    assert state["mtu"] == 1450 and state["vxlan"]["device"] == "kgen.1"


def test_host_gw_keeps_the_underlay_mtu() -> None:
    assert build_state(parse_lab(lab(backend="host-gw")), NET)["mtu"] == 1500


def test_allocation_is_stable_when_a_service_is_added() -> None:
    one = {"name": "a", "type": "NodePort", "ports": [{"port": 80}]}
    two = {"name": "b", "type": "NodePort", "ports": [{"port": 80}]}
    before = build_state(parse_lab(lab(services=[one])), NET)["services"]
    after = build_state(parse_lab(lab(services=[two, one])), NET)["services"]
    a_before, a_after = before[0], after[1]
    assert a_before["clusterIP"] == a_after["clusterIP"]
    assert a_before["ports"][0]["nodePort"] == a_after["ports"][0]["nodePort"]
    assert after[0]["clusterIP"] != after[1]["clusterIP"]
    for svc in after:
        assert ipaddress.ip_address(svc["clusterIP"]) in ipaddress.ip_network("10.96.0.0/16")
        assert 30000 <= svc["ports"][0]["nodePort"] <= 32767


def test_allocation_avoids_explicit_addresses_and_ports() -> None:
    services = [{"name": f"s{i}", "type": "NodePort", "ports": [{"port": 80}]} for i in range(5)]
    services.append({"name": "fixed", "type": "NodePort", "clusterIP": "10.96.0.5",
                     "ports": [{"port": 80, "nodePort": 30000}]})
    doc = lab(serviceCIDR="10.96.0.0/29", services=services)
    state = build_state(parse_lab(doc), NET)
    ips = [s["clusterIP"] for s in state["services"]]
    ports = [s["ports"][0]["nodePort"] for s in state["services"]]
    assert len(set(ips)) == len(ips) == 6 and len(set(ports)) == 6


def test_generation_changes_with_content_only() -> None:
    a = build_state(parse_lab(lab()), NET)
    b = build_state(parse_lab(lab()), NET)
    c = build_state(parse_lab(lab(pods=[{"name": "p", "node": "n0"}])), NET)
    assert a["generation"] == b["generation"] == generation(a)
    assert a["generation"] != c["generation"]


def _pods(*placed: tuple[str, str]) -> list[dict]:
    return [{"name": name, "node": node} for name, node in placed]


def _ips(state: dict) -> dict[str, str]:
    return {p["name"]: p["ip"] for p in state["pods"]}


def test_pods_get_addresses_in_lab_file_order_per_node() -> None:
    state = build_state(parse_lab(lab(pods=_pods(("a", "n0"), ("b", "n1"), ("c", "n0")))), NET)
    assert _ips(state) == {"a": "10.244.0.2", "b": "10.244.1.2", "c": "10.244.0.3"}


def test_pods_keep_their_addresses_when_others_come_and_go() -> None:
    first = build_state(parse_lab(lab(pods=_pods(("a", "n0"), ("b", "n0"), ("c", "n0")))), NET)
    # b goes, d comes, c moves to n1: a keeps .2; d does not take b's just released .3.
    second = build_state(parse_lab(lab(pods=_pods(("a", "n0"), ("d", "n0"), ("c", "n1")))), NET,
                         first)
    assert _ips(second) == {"a": "10.244.0.2", "d": "10.244.0.5", "c": "10.244.1.2"}
    # Applying the same lab again changes nothing.
    again = build_state(parse_lab(lab(pods=_pods(("a", "n0"), ("d", "n0"), ("c", "n1")))), NET,
                        second)
    assert again == second


def test_released_addresses_are_reused_when_nothing_else_is_free() -> None:
    small = {"nodeCIDRMaskSize": 30}  # .2 is the only pod address of a /30
    first = build_state(parse_lab(lab(pods=_pods(("a", "n0")), **small)), NET)
    second = build_state(parse_lab(lab(pods=_pods(("b", "n0")), **small)), NET, first)
    assert _ips(first) == {"a": "10.244.0.2"} and _ips(second) == {"b": "10.244.0.2"}
