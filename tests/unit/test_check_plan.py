"""The check plan: derived from any lab, with the dependencies break tests rely on."""

from __future__ import annotations

import ipaddress

from generator.checks.plan import plan
from generator.cluster.build import build_state
from generator.lab.model import load_lab, parse_lab
from tests.conftest import ROOT

NET = ipaddress.ip_network("172.31.9.0/24")


def demo_plan():
    return {c.id: c for c in plan(build_state(load_lab(ROOT / "labs" / "demo.yaml"), NET))}


def test_demo_plan_covers_every_path_of_the_story() -> None:
    kinds = {c.kind for c in demo_plan().values()}
    assert kinds == {"pod-to-pod", "wire", "mtu", "clusterip", "conntrack", "clusterip-udp",
                     "affinity", "hairpin", "no-endpoints", "nodeport"}


def test_clusterip_is_checked_from_nodes_with_and_without_backends() -> None:
    checks = demo_plan()
    away, near = checks["clusterip:web:pod-0"], checks["clusterip:web:pod-2"]
    assert "without" in away.what and "with a backend" in near.what
    assert away.params["backends"] == ["pod-2", "pod-3"]
    assert away.params["requests"] > 1


def test_nodeport_expectations_follow_the_traffic_policy() -> None:
    checks = demo_plan()
    assert "an address of node-0" in checks["nodeport:web-nodeport:node-0"].expected
    assert checks["nodeport:web-local:node-0"].params["drop"] is True
    assert "client's IP 172.31.9.254" in checks["nodeport:web-local:node-1"].expected
    assert checks["nodeport:web-local:node-1"].params["backends"] == ["pod-2"]


def test_dependencies_name_the_parts_a_packet_crosses() -> None:
    checks = demo_plan()
    same = checks["pod-to-pod:pod-0->pod-1"].depends
    assert same == {"veth:pod-0", "veth:pod-1", "bridge:node-0"}
    across = checks["pod-to-pod:pod-0->pod-2"].depends
    assert {"overlay:node-0", "overlay:node-1", "bridge:node-1"} <= across
    assert "nat:node-0" in checks["clusterip:web:pod-0"].depends
    assert not any(d.startswith("nat:") for d in checks["no-endpoints:no-backends"].depends)
    assert checks["nodeport:web-local:node-0"].depends == frozenset()


def test_a_small_lab_gets_only_the_checks_it_can_run() -> None:
    lab = parse_lab({"name": "t", "nodes": ["n0"], "backend": "host-gw",
                     "pods": [{"name": "a", "node": "n0"}, {"name": "b", "node": "n0"}]})
    checks = plan(build_state(lab, NET))
    assert [c.id for c in checks] == ["pod-to-pod:a->b"]


def test_host_gw_expects_pod_ips_on_the_wire() -> None:
    lab = parse_lab({"name": "t", "nodes": ["n0", "n1"], "backend": "host-gw",
                     "pods": [{"name": "a", "node": "n0"}, {"name": "b", "node": "n1"}]})
    wire = next(c for c in plan(build_state(lab, NET)) if c.kind == "wire")
    assert wire.params["backend"] == "host-gw" and "pod IPs" in wire.expected
