"""The plan's LoadBalancer, health check and externalIP checks (labs/loadbalancer.yaml)."""

from __future__ import annotations

import ipaddress

from generator.checks.base import Planning
from generator.checks.kinds.external_ip import summary
from generator.checks.kinds.loadbalancer import admitted, announcer
from generator.checks.plan import plan
from generator.cluster.build import build_state
from generator.lab.model import load_lab, parse_lab
from generator.node import healthcheck
from tests.conftest import ROOT

NET = ipaddress.ip_network("172.31.200.0/24")


def lb_state():
    return build_state(load_lab(ROOT / "labs" / "loadbalancer.yaml"), NET)


def lb_plan():
    return {c.id: c for c in plan(lb_state())}


def service(name: str):
    return next(s for s in lb_state()["services"] if s["name"] == name)


def test_loadbalancer_services_get_nodeport_loadbalancer_health_and_external_checks() -> None:
    checks = lb_plan()
    kinds = {c.kind for c in checks.values()}
    assert {"nodeport", "loadbalancer", "lb-health", "external-ip"} <= kinds
    ports = {c.label.split(" via ")[0] for c in checks.values() if c.kind == "nodeport"}
    assert {p.split(":")[0] for p in ports} == {"web-lb", "web-lb-local", "web-lb-ranges"}
    lb = [c for c in checks.values() if c.kind == "loadbalancer"]
    assert len(lb) == 3 * 2  # three LoadBalancer services, from each of two clients


def test_cluster_policy_spreads_over_all_and_expects_the_announcers_addresses() -> None:
    checks = lb_plan()
    ctx = Planning(lb_state())
    owner = announcer(ctx, service("web-lb"))
    check = checks["loadbalancer[web-lb 172.31.200.229:80 from client-0]"]
    assert check.params["node"]["name"] == owner
    assert check.params["backends"] == ["web-0", "web-1"]
    assert check.params["policy"] == "Cluster" and f"an address of {owner}" in check.expected
    assert f"nat:{owner}" in check.depends


def test_local_policy_is_announced_by_a_node_with_a_backend_and_keeps_the_client_ip() -> None:
    checks = lb_plan()
    for client, ip in (("client-0", "172.31.200.254"), ("client-1", "172.31.200.253")):
        check = checks[f"loadbalancer[web-lb-local 172.31.200.230:80 from {client}]"]
        node = check.params["node"]["name"]
        assert node in {"node-1", "node-2"}
        backend = {"node-1": "web-0", "node-2": "web-1"}[node]
        assert check.params["backends"] == [backend]
        assert check.params["client_ip"] == ip and f"client's IP {ip}" in check.expected


def test_a_client_outside_the_source_ranges_must_be_dropped() -> None:
    checks = lb_plan()
    inside = checks["loadbalancer[web-lb-ranges 172.31.200.232:80 from client-0]"]
    outside = checks["loadbalancer[web-lb-ranges 172.31.200.232:80 from client-1]"]
    assert inside.params["drop"] is False and inside.params["backends"] == ["web-0", "web-1"]
    assert outside.params["drop"] is True and outside.depends == frozenset()
    assert outside.params["false_failure"] == 0.0


def test_source_ranges_admit_by_prefix_and_empty_admits_all() -> None:
    svc = service("web-lb-ranges")
    assert admitted(svc, "172.31.200.254") and not admitted(svc, "172.31.200.253")
    assert admitted(service("web-lb"), "10.1.2.3")
    assert admitted({**svc, "loadBalancerSourceRanges": ["172.31.200.0/25", "172.31.200.252/30"]},
                    "172.31.200.253")


def test_health_check_is_200_with_local_endpoints_and_503_without_on_every_node() -> None:
    checks = lb_plan()
    port = service("web-lb-local")["healthCheckNodePort"]
    health = {c.label: c for c in checks.values() if c.kind == "lb-health"}
    assert set(health) == {f"web-lb-local on node-{i}" for i in range(3)}
    assert health["web-lb-local on node-0"].params == {
        "status": 503, "body": healthcheck.body("default", "web-lb-local", 0), "false_failure": 0.0}
    assert health["web-lb-local on node-1"].params["status"] == 200
    assert health["web-lb-local on node-1"].params["body"] == healthcheck.body(
        "default", "web-lb-local", 1)
    node_ip = next(n["ip"] for n in lb_state()["nodes"] if n["name"] == "node-2")
    assert health["web-lb-local on node-2"].target == f"{node_ip}:{port}"


def test_external_ip_is_routed_via_a_node_without_backends_under_cluster() -> None:
    checks = lb_plan()
    check = checks["external_ip[web-external 172.31.200.220:80 via node-0]"]
    assert check.target == "172.31.200.220:80" and check.source == "client-0"
    assert check.params["backends"] == ["web-0", "web-1"] and check.params["policy"] == "Cluster"


def test_external_ip_under_local_goes_via_a_node_with_a_backend() -> None:
    lab = parse_lab({"name": "t", "nodeNetwork": "172.31.200.0/24", "nodes": ["n0", "n1"],
                     "clients": ["c0"],
                     "pods": [{"name": "w", "node": "n1", "labels": {"app": "w"}}],
                     "services": [{"name": "s", "externalIPs": ["172.31.200.220"],
                                   "externalTrafficPolicy": "Local", "type": "NodePort",
                                   "selector": {"app": "w"},
                                   "ports": [{"port": 80, "targetPort": 8080}]}]})
    checks = {c.id: c for c in plan(build_state(lab, NET)) if c.kind == "external-ip"}
    assert list(checks) == ["external_ip[s 172.31.200.220:80 via n1]"]
    check = checks["external_ip[s 172.31.200.220:80 via n1]"]
    assert check.params["backends"] == ["w"] and "client's IP" in check.expected


def test_probe_attempts_sum_up_as_a_batch_summary() -> None:
    attempts = [{"ok": True, "answer": "a", "error": None, "ms": 1.0},
                {"ok": True, "answer": "a", "error": None, "ms": 3.0},
                {"ok": False, "answer": None, "error": "timed out", "ms": 10.0}]
    assert summary(attempts) == {"sent": 3, "ok": 2, "answers": {"a": 2},
                                 "errors": {"timed out": 1}, "ms_max": 10.0}
