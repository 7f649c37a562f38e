"""The Kubernetes network-policy e2e suite's model and truth tables, for kgen's tests.

test/e2e/network/netpol: namespaces x, y and z, pods a, b and c in each
(label `pod: <name>`), each serving 80 and 81 over TCP and UDP on the named
ports `serve-80-tcp`, `serve-80-udp`, `serve-81-tcp`, `serve-81-udp`.
`Reach` is the suite's Reachability: a truth table that starts all-true and
is edited with the same four calls (Expect, ExpectPeer, ExpectAllIngress,
ExpectAllEgress); like the suite, comparisons ignore loopback (a pod to
itself), whose semantics Kubernetes leaves open.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from generator.node.netpol.policy import Cluster, NamedPort, Namespace, Pod, parse_policy

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PORTS = tuple(NamedPort(f"serve-{port}-{proto.lower()}", port, proto)
              for port in (80, 81) for proto in ("TCP", "UDP"))


def subnet(ns: str) -> str:
    """Each namespace's pods in a /24 of 10.251.0.0/16 (the range the netns tests may use):
    one node can bridge them all in the /16, two nodes can route between their /24s."""
    return f"10.251.{NAMESPACES.index(ns) + 1}"


def pod_ip(ns: str, name: str) -> str:
    return f"{subnet(ns)}.{POD_NAMES.index(name) + 2}"


def model_pods(extra_labels: Mapping[str, Mapping[str, str]] | None = None,
               nodes: Mapping[str, str] | None = None) -> list[Pod]:
    """`nodes`: namespace -> node (default: every pod on node-0)."""
    extra, where = extra_labels or {}, nodes or {}
    return [Pod(ns, name, pod_ip(ns, name), {"pod": name, **extra.get(f"{ns}/{name}", {})},
                PORTS, node=where.get(ns, "node-0"))
            for ns in NAMESPACES for name in POD_NAMES]


def model_cluster(policies: list[dict[str, Any]], ns_labels: Mapping[str, Mapping[str, str]]
                  | None = None, pod_labels: Mapping[str, Mapping[str, str]] | None = None,
                  nodes: Mapping[str, str] | None = None) -> Cluster:
    labels = ns_labels or {}
    namespaces = [Namespace(ns, dict(labels.get(ns, {}))) for ns in NAMESPACES]
    return Cluster(namespaces, model_pods(pod_labels, nodes), [parse_policy(p) for p in policies])


def keys() -> list[str]:
    return [f"{ns}/{name}" for ns in NAMESPACES for name in POD_NAMES]


class Reach:
    """The e2e suite's Reachability over the full model."""

    def __init__(self, default: bool = True) -> None:
        self.table = {(s, d): default for s in keys() for d in keys()}

    def expect(self, src: str, dst: str, ok: bool) -> Reach:
        self.table[(src, dst)] = ok
        return self

    def expect_peer(self, src: str, dst: str, ok: bool) -> Reach:
        """`src`/`dst` are `ns`, `ns/pod` or "" (any), as the suite's Peer{Namespace, Pod}."""
        for s, d in self.table:
            if _in(s, src) and _in(d, dst):
                self.table[(s, d)] = ok
        return self

    def expect_all_ingress(self, dst: str, ok: bool) -> Reach:
        return self.expect_peer("", dst, ok)

    def expect_all_egress(self, src: str, ok: bool) -> Reach:
        return self.expect_peer(src, "", ok)

    def without_loopback(self) -> dict[tuple[str, str], bool]:
        return {k: v for k, v in self.table.items() if k[0] != k[1]}


def _in(key: str, peer: str) -> bool:
    return not peer or key == peer or key.split("/")[0] == peer


# ------------------------------------------------------------------ policies as the suite builds them


def policy(name: str, pods: dict[str, Any] | None = None, ns: str = "x",
           ingress: list[dict[str, Any]] | None = None,
           egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """GenNetworkPolicyWithNameAndPodSelector + SetSpecIngressRules/SetSpecEgressRules:
    giving `ingress` (even []) adds policyType Ingress, `egress` likewise."""
    spec: dict[str, Any] = {"podSelector": pods or {}, "policyTypes": []}
    if ingress is not None:
        spec["ingress"] = ingress
        spec["policyTypes"].append("Ingress")
    if egress is not None:
        spec["egress"] = egress
        spec["policyTypes"].append("Egress")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def pod_a(name: str, **rules: Any) -> dict[str, Any]:
    """GenNetworkPolicyWithNameAndPodMatchLabel(name, {pod: a}, ...)."""
    return policy(name, {"matchLabels": {"pod": "a"}}, **rules)


def labels(**pairs: str) -> dict[str, Any]:
    return {"matchLabels": dict(pairs)}


def ns_named(name: str) -> dict[str, Any]:
    return labels(**{"kubernetes.io/metadata.name": name})


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


def with_policy(policies: list[dict[str, Any]], changed: dict[str, Any]) -> list[dict[str, Any]]:
    """UpdatePolicy: the policy of the same namespace and name replaced."""
    out = [p for p in policies if p["metadata"] != changed["metadata"]]
    return [*copy.deepcopy(out), changed]
