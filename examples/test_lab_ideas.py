"""Testing your own ideas against a kgen lab, with pytest and testinfra.

    pytest --kgen-lab labs/demo.yaml examples/

brings the demo lab up (or uses it if it already runs from that file), runs
these tests against it, and takes it down at the end (`--kgen-keep` leaves it
running). `kgen_lab` is the lab: `.name`, `.status()` (what `kgen status
--json` prints), `.host(NAME)`; `kgen_host(NAME)` is a testinfra Host for a
node, a client or a pod, and a pod's commands run in its network namespace,
so every testinfra module (interface, addr, socket, iptables, ...) sees the
network as that pod does. Written for the demo lab (labs/demo.yaml).
"""

from __future__ import annotations

from typing import Any

import pytest


def pod(kgen_lab: Any, name: str) -> dict[str, Any]:
    return next(p for p in kgen_lab.status()["pods"] if p["name"] == name)


def service(kgen_lab: Any, name: str) -> dict[str, Any]:
    return next(s for s in kgen_lab.status()["services"] if s["name"] == name)


def test_every_pod_runs_with_its_address_on_eth0(kgen_lab, kgen_host) -> None:
    for p in kgen_lab.status()["pods"]:
        if p.get("namespace", "default") != "default":
            continue  # the lab's own DNS pods, where it has them
        assert p["state"] == "Running", p
        assert p["ip"] in kgen_host(p["name"]).interface("eth0").addresses


def test_the_test_server_listens_inside_the_pod(kgen_host) -> None:
    assert kgen_host("pod-2").socket("tcp://0.0.0.0:8080").is_listening


def test_a_pod_reaches_a_pod_on_another_node(kgen_lab, kgen_host) -> None:
    # pod-0 runs on node-0, pod-3 on node-2: the ping crosses the VXLAN overlay.
    assert kgen_host("pod-0").addr(pod(kgen_lab, "pod-3")["ip"]).is_reachable


def test_the_pods_default_route_is_its_bridge(kgen_host) -> None:
    routes = kgen_host("pod-0").interface("eth0").routes()
    assert any(r["dst"] == "default" for r in routes)


def test_clusterip_is_answered_by_a_backend(kgen_lab, kgen_host) -> None:
    web = service(kgen_lab, "web")
    answer = kgen_host("pod-0").check_output(
        "curl -s --max-time 5 http://%s:%s/hostname", web["clusterIP"], str(web["ports"][0]["port"]))
    assert answer in {"pod-2", "pod-3"}


def test_nodeport_local_keeps_the_clients_address(kgen_lab, kgen_host) -> None:
    node1 = next(n for n in kgen_lab.status()["nodes"] if n["name"] == "node-1")
    client = next(c for c in kgen_lab.status()["clients"] if c["name"] == "client-0")
    seen = kgen_host("client-0").check_output(
        "curl -s --max-time 5 http://%s:30081/clientip", node1["ip"])
    assert seen.rsplit(":", 1)[0] == client["ip"]


def test_kube_proxy_wrote_the_services_rules(kgen_lab, kgen_host) -> None:
    node = kgen_host("node-0")
    if node.run("iptables -t nat -S KUBE-SERVICES").rc != 0:
        pytest.skip("this lab's proxy runs in nftables mode (no KUBE-SERVICES chain)")
    rules = node.iptables.rules("nat", "KUBE-SERVICES")
    assert any(service(kgen_lab, "web")["clusterIP"] + "/32" in rule for rule in rules)
