"""A running lab's NetworkPolicy view: the evaluator fed from cluster.json.

cluster.json carries the lab's policies (`networkPolicies`, as the lab file has
them), its namespaces with their labels, and each pod's namespace, labels, node,
address and containers. A container without a command runs the test server,
whose ports are declared as `http` 8080/TCP and `udp` 8081/UDP (lab contract §4),
so policies may name them; other containers name their own `ports`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from generator.netpol.evaluate import Evaluator
from generator.node.netpol.policy import Cluster, NamedPort, Namespace, Pod, parse_policy

TEST_SERVER_PORTS = (NamedPort("http", 8080, "TCP"), NamedPort("udp", 8081, "UDP"))


def policies_of(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(cluster.get("networkPolicies") or [])


def named_ports(pod: Mapping[str, Any]) -> tuple[NamedPort, ...]:
    ports: list[NamedPort] = []
    for container in pod.get("containers") or ():
        if not container.get("command"):
            ports += TEST_SERVER_PORTS
        ports += [NamedPort(str(p["name"]), int(p["containerPort"]), str(p.get("protocol") or "TCP"))
                  for p in container.get("ports") or () if p.get("name")]
    return tuple(ports)


def policy_cluster(cluster: Mapping[str, Any], pod_ips: Mapping[str, str] | None = None) -> Cluster:
    """The lab's pods (those with an address), namespaces and policies. `pod_ips` (pod
    name -> address, from `kgen status`) overrides the addresses cluster.json holds."""
    ips = pod_ips or {}
    namespaces = [Namespace(n["name"], dict(n.get("labels") or {}))
                  for n in cluster.get("namespaces") or ()]
    pods = []
    for raw in cluster.get("pods") or ():
        ip = ips.get(raw["name"]) or raw.get("ip")
        if ip:
            pods.append(Pod(str(raw.get("namespace") or "default"), raw["name"], ip,
                            dict(raw.get("labels") or {}), named_ports(raw), raw.get("node", "")))
    return Cluster(namespaces, pods, [parse_policy(p) for p in policies_of(cluster)])


def lab_evaluator(cluster: Mapping[str, Any], pod_ips: Mapping[str, str] | None = None
                  ) -> Evaluator | None:
    """The lab's evaluator; None for a lab without policies (nothing is isolated)."""
    if not policies_of(cluster):
        return None
    node_ips = {n["name"]: n["ip"] for n in cluster.get("nodes") or () if n.get("ip")}
    return Evaluator(policy_cluster(cluster, pod_ips), node_ips)
