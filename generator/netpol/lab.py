"""A running lab's NetworkPolicy view: the evaluator fed from cluster.json.

It reads what every node's agent reads (`netpol_input`: namespaces with their
labels, each pod's namespace, node, address, labels and named ports, the test
server's `http` 8080/TCP and `udp` 8081/UDP included, and the policies as the
API server stores them), parsed the same way, so the host's expectation and a
node's rules start from one view of the lab; only the decision is made twice
(the evaluator here, the node's rules there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from generator.netpol.evaluate import Evaluator
from generator.node.netpol.policy import Cluster, parse_cluster
from generator.node.netpol.spec import netpol_input


def policy_cluster(cluster: Mapping[str, Any], pod_ips: Mapping[str, str] | None = None) -> Cluster:
    """The lab's pods (those with an address), namespaces and policies. `pod_ips` (pod
    name -> address, from `kgen status`) overrides the addresses cluster.json holds."""
    pods = [{**p, "ip": (pod_ips or {}).get(p["name"]) or p.get("ip")}
            for p in cluster.get("pods") or ()]
    return parse_cluster(netpol_input({**cluster, "pods": pods}))


def lab_evaluator(cluster: Mapping[str, Any], pod_ips: Mapping[str, str] | None = None
                  ) -> Evaluator | None:
    """The lab's evaluator; None for a lab without policies (nothing is isolated)."""
    if not cluster.get("networkPolicies"):
        return None
    node_ips = {n["name"]: n["ip"] for n in cluster.get("nodes") or () if n.get("ip")}
    return Evaluator(policy_cluster(cluster, pod_ips), node_ips)
