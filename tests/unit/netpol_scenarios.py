"""Scenarios of the Kubernetes network-policy e2e suite (test/e2e/network/netpol/
network_policy.go), each named after its e2e test, as kgen's input and expected truth tables.

The suite now starts only the pods each test needs; these tables are written
for its full model (x, y, z times a, b, c), which the older suite used, so a
few rows the newer subset leaves out are spelled out here (e.g. z/a in
"Multiple PodSelectors and NamespaceSelectors"). A stage is one state of the
cluster (policies, namespace and pod labels) and the probes the test makes in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.unit.netpol_model import (
    Reach,
    expr,
    labels,
    ns_named,
    pod_a,
    pod_ip,
    policy,
    with_policy,
)

NS_KEY = "kubernetes.io/metadata.name"
Policies = list[dict[str, Any]]


@dataclass
class Stage:
    policies: Policies
    probes: list[tuple[int, str, Reach]]  # (port, protocol, expected table)
    ns_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)


def one(policies: Policies, port: int, reach: Reach, proto: str = "TCP") -> list[Stage]:
    return [Stage(policies, [(port, proto, reach)])]


def deny_all_ingress() -> Reach:
    return Reach().expect_peer("", "x", False)


DENY_INGRESS = policy("deny-ingress", ingress=[])
FROM_Y = {"from": [{"namespaceSelector": ns_named("y")}]}
Y_POD_A = {"namespaceSelector": ns_named("y"), "podSelector": labels(pod="a")}


def _stacked() -> list[Stage]:
    p81 = pod_a("allow-client-a-via-ns-selector", ingress=[
        {**FROM_Y, "ports": [{"port": 81, "protocol": "TCP"}]}])
    p80 = pod_a("allow-client-a-via-ns-selector-80", ingress=[
        {**FROM_Y, "ports": [{"port": 80, "protocol": "TCP"}]}])
    allow = Reach().expect_peer("x", "x/a", False).expect_peer("z", "x/a", False)
    return [Stage([p81], [(81, "TCP", allow), (80, "TCP", Reach().expect_all_ingress("x/a", False))]),
            Stage([p81, p80], [(80, "TCP", allow)])]


def _cidr_except() -> Policies:
    return [pod_a("allow-client-a-via-cidr-egress-rule", egress=[{"to": [{"ipBlock": {
        "cidr": pod_ip("x", "b") + "/4", "except": [pod_ip("x", "b") + "/32"]}}]}])]


def _overlap() -> list[Stage]:
    first = _cidr_except()
    second = pod_a("allow-client-a-via-cidr-egress-rule", egress=[{"to": [{"ipBlock": {
        "cidr": pod_ip("x", "b") + "/32"}}]}])
    return [Stage(first, [(80, "TCP", Reach().expect("x/a", "x/b", False))]),
            Stage(with_policy(first, second),
                  [(80, "TCP", Reach().expect_all_egress("x/a", False).expect("x/a", "x/b", True))])]


def _client_side_egress() -> list[Stage]:
    from_xa = [{"from": [{"namespaceSelector": ns_named("x"), "podSelector": labels(pod="a")}]}]
    policies = [pod_a("allow-to-ns-y-pod-a", egress=[{"to": [Y_POD_A]}]),
                policy("allow-from-xa-on-ya-match-selector", labels(pod="a"), "y", ingress=from_xa),
                policy("allow-from-xa-on-yb-match-selector", labels(pod="b"), "y", ingress=from_xa)]
    reach = (Reach().expect_peer("x/a", "", False).expect_peer("", "y/a", False)
             .expect("x/a", "y/a", True).expect_peer("", "y/b", False))
    return one(policies, 80, reach)


def _named_ingress() -> list[Stage]:
    p = policy("allow-all", ingress=[{"ports": [{"port": "serve-81-tcp"}]}])
    return [Stage([p], [(81, "TCP", Reach()), (80, "TCP", Reach().expect_peer("", "x", False))])]


def _named_from_namespace() -> list[Stage]:
    p = pod_a("allow-client-a-via-ns-selector-80", ingress=[
        {**FROM_Y, "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}]}])
    return [Stage([p], [(80, "TCP", Reach().expect_peer("x", "x/a", False)
                                         .expect_peer("z", "x/a", False)),
                        (81, "TCP", Reach().expect_all_ingress("x/a", False))])]


def _named_egress() -> list[Stage]:
    p = policy("allow-egress", egress=[{"ports": [{"port": "serve-80-tcp"}]}])
    return [Stage([p], [(80, "TCP", Reach()), (81, "TCP", Reach().expect_peer("x", "", False))])]


def _ingress_and_egress() -> list[Stage]:
    p = pod_a("allow-client-a-via-pod-selector", ingress=[{"from": [{"podSelector": labels(pod="b")}]}],
              egress=[{"ports": [{"port": 80}]}])
    p80 = Reach().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)
    p81 = (Reach().expect_all_ingress("x/a", False).expect_all_egress("x/a", False)
           .expect("x/b", "x/a", True))
    return [Stage([p], [(80, "TCP", p80), (81, "TCP", p81)])]


def _precedence(direction: str) -> list[Stage]:
    port80 = [{"ports": [{"port": 80}]}]
    first = policy(f"allow-{direction}-port-80", **{direction: port80})
    everything = policy(f"allow-{direction}", **{direction: [{}]})
    peer = ("", "x") if direction == "ingress" else ("x", "")
    return [Stage([first], [(81, "TCP", Reach().expect_peer(*peer, False))]),
            Stage([first, everything], [(81, "TCP", Reach())])]


def _updated(kind: str) -> list[Stage]:
    if kind == "namespace":
        p = pod_a("allow-client-a-via-ns-selector", ingress=[
            {"from": [{"namespaceSelector": labels(ns2="updated")}]}])
        after = Reach().expect_all_ingress("x/a", False).expect_peer("y", "", True)
        return [Stage([p], [(80, "TCP", Reach().expect_all_ingress("x/a", False))]),
                Stage([p], [(80, "TCP", after)], ns_labels={"y": {"ns2": "updated"}})]
    p = pod_a("allow-client-a-via-pod-selector", ingress=[
        {"from": [{"podSelector": labels(pod="b", pod2="updated")}]}])
    after = Reach().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)
    return [Stage([p], [(80, "TCP", Reach().expect_all_ingress("x/a", False))]),
            Stage([p], [(80, "TCP", after)], pod_labels={"x/b": {"pod2": "updated"}})]


def _deny_updated_pod() -> list[Stage]:
    p = policy("deny-ingress-via-label-selector", labels(target="isolated"), ingress=[])
    return [Stage([p], [(80, "TCP", Reach())]),
            Stage([p], [(80, "TCP", Reach().expect_all_ingress("x/a", False))],
                  pod_labels={"x/a": {"target": "isolated"}})]


def _independent() -> list[Stage]:
    egress = pod_a("allow-egress-for-target", egress=[{}])
    deny = pod_a("deny-ingress-via-label-selector", ingress=[])
    return [Stage([egress], [(80, "TCP", Reach())]),
            Stage([egress, deny], [(80, "TCP", Reach().expect_all_ingress("x/a", False))])]


def _deleted() -> list[Stage]:
    deny = policy("deny-all", ingress=[], egress=[])
    return [Stage([deny], [(80, "TCP", Reach().expect_peer("x", "", False)
                                              .expect_peer("", "x", False))]),
            Stage([], [(80, "TCP", Reach())])]


def _mutated() -> list[Stage]:
    p = policy("allow-all-mutate-to-deny-all", ingress=[{}])
    return [Stage([p], [(81, "TCP", Reach())]),
            Stage([with_policy([p], policy("allow-all-mutate-to-deny-all", ingress=[]))[0]],
                  [(81, "TCP", deny_all_ingress())])]


def _ports(proto: str) -> list[Stage]:
    p = pod_a("allow-ingress-on-port-81-ns-x", ingress=[
        {**FROM_Y, "ports": [{"port": 81, "protocol": proto}]}])
    return one([p], 81, Reach().expect_peer("x", "x/a", False).expect_peer("z", "x/a", False), proto)


def _pod_in_other_ns(proto: str) -> list[Stage]:
    p = pod_a("allow-ns-y-pod-a-via-namespace-pod-selector", ingress=[{"from": [Y_POD_A]}])
    return one([p], 80, Reach().expect_all_ingress("x/a", False).expect("y/a", "x/a", True), proto)


def _by_protocol() -> list[Stage]:
    p = pod_a("allow-ingress-by-proto", ingress=[{"ports": [{"protocol": "TCP"}]}])
    return [Stage([p], [(80, "TCP", Reach()), (80, "UDP", Reach().expect_all_ingress("x/a", False))])]


NOT_X = expr(NS_KEY, "NotIn", "x")
FROM_NS_Y_ONLY = Reach().expect_peer("x", "x/a", False).expect_peer("z", "x/a", False)

SCENARIOS: dict[str, list[Stage]] = {
    "should support a 'default-deny-ingress' policy": one([DENY_INGRESS], 80, deny_all_ingress()),
    "should support a 'default-deny-all' policy": one(
        [policy("deny-all", ingress=[], egress=[])], 80,
        Reach().expect_peer("", "x", False).expect_peer("x", "", False)),
    "should enforce policy to allow traffic from pods within server namespace based on PodSelector":
        one([pod_a("x-a-allows-x-b", ingress=[{"from": [{"podSelector": labels(pod="b")}]}])], 80,
            Reach().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)),
    "should enforce policy to allow ingress traffic for a target": one(
        [policy("deny-all", ingress=[]), pod_a("allow-all-to-a", ingress=[
            {"from": [{"podSelector": {}, "namespaceSelector": {}}]}])], 80,
        Reach().expect_all_ingress("x/b", False).expect_all_ingress("x/c", False)),
    "should enforce policy to allow ingress traffic from pods in all namespaces": one(
        [pod_a("allow-from-another-ns", ingress=[{"from": [{"namespaceSelector": {}}]}])], 80,
        Reach()),
    "should enforce policy to allow traffic only from a different namespace, based on "
    "NamespaceSelector": one([pod_a("allow-client-a-via-ns-selector", ingress=[FROM_Y])], 80,
                             FROM_NS_Y_ONLY),
    "should enforce policy based on PodSelector with MatchExpressions": one(
        [pod_a("x-a-allows-x-b", ingress=[{"from": [{"podSelector": expr("pod", "In", "b")}]}])],
        80, Reach().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)),
    "should enforce policy based on NamespaceSelector with MatchExpressions": one(
        [pod_a("allow-ns-y-match-selector", ingress=[
            {"from": [{"namespaceSelector": expr(NS_KEY, "In", "y")}]}])], 80, FROM_NS_Y_ONLY),
    "should enforce policy based on PodSelector or NamespaceSelector": one(
        [pod_a("allow-ns-y-match-selector", ingress=[{"from": [
            {"namespaceSelector": NOT_X}, {"podSelector": labels(pod="b")}]}])], 80,
        Reach().expect("x/a", "x/a", False).expect("x/c", "x/a", False)),
    "should enforce policy based on PodSelector and NamespaceSelector": one(
        [pod_a("allow-ns-y-podselector-and-nsselector", ingress=[{"from": [
            {"namespaceSelector": NOT_X, "podSelector": labels(pod="b")}]}])], 80,
        Reach().expect_all_ingress("x/a", False).expect("y/b", "x/a", True)
        .expect("z/b", "x/a", True)),
    "should enforce policy based on Multiple PodSelectors and NamespaceSelectors": one(
        [pod_a("allow-ns-y-z-pod-b-c", ingress=[{"from": [
            {"namespaceSelector": NOT_X, "podSelector": expr("pod", "In", "b", "c")}]}])], 80,
        Reach().expect_peer("x", "x/a", False).expect("y/a", "x/a", False)
        .expect("z/a", "x/a", False)),
    "should enforce policy based on any PodSelectors": one(
        [pod_a("allow-ns-x-pod-b-c", ingress=[{"from": [
            {"podSelector": labels(pod="b")}, {"podSelector": labels(pod="c")}]}])], 80,
        Reach().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)
        .expect("x/c", "x/a", True)),
    "should enforce policy to allow traffic only from a pod in a different namespace based on "
    "PodSelector and NamespaceSelector": _pod_in_other_ns("TCP"),
    "should enforce policy based on Ports": _ports("TCP"),
    "should enforce multiple, stacked policies with overlapping podSelectors": _stacked(),
    "should support allow-all policy": [Stage([policy("allow-all", ingress=[{}])],
                                              [(80, "TCP", Reach()), (81, "TCP", Reach())])],
    "should allow ingress access on one named port": _named_ingress(),
    "should allow ingress access from namespace on one named port": _named_from_namespace(),
    "should allow egress access on one named port": _named_egress(),
    "should enforce updated policy": _mutated(),
    "should allow ingress access from updated namespace": _updated("namespace"),
    "should allow ingress access from updated pod": _updated("pod"),
    "should deny ingress from pods on other namespaces": one(
        [policy("deny-empty-policy", ingress=[{"from": [{"podSelector": {}}]}])], 80,
        Reach().expect_peer("y", "x", False).expect_peer("z", "x", False)),
    "should deny ingress access to updated pod": _deny_updated_pod(),
    "should deny egress from pods based on PodSelector": one(
        [pod_a("deny-egress-pod-a", egress=[])], 80, Reach().expect_all_egress("x/a", False)),
    "should deny egress from all pods in a namespace": one(
        [policy("deny-egress-ns-x", egress=[])], 80, Reach().expect_peer("x", "", False)),
    "should work with Ingress, Egress specified together": _ingress_and_egress(),
    "should support denying of egress traffic on the client side (even if the server explicitly "
    "allows this traffic)": _client_side_egress(),
    "should enforce egress policy allowing traffic to a server in a different namespace based on "
    "PodSelector and NamespaceSelector": one(
        [pod_a("allow-to-ns-y-pod-a", egress=[{"to": [Y_POD_A]}])], 80,
        Reach().expect_all_egress("x/a", False).expect("x/a", "y/a", True)),
    "should enforce ingress policy allowing any port traffic to a server on a specific protocol":
        _by_protocol(),
    "should enforce multiple ingress policies with ingress allow-all policy taking precedence":
        _precedence("ingress"),
    "should enforce multiple egress policies with egress allow-all policy taking precedence":
        _precedence("egress"),
    "should stop enforcing policies after they are deleted": _deleted(),
    "should allow egress access to server in CIDR block": one(
        [pod_a("allow-client-a-via-cidr-egress-rule", egress=[
            {"to": [{"ipBlock": {"cidr": pod_ip("y", "b") + "/32"}}]}])], 80,
        Reach().expect_all_egress("x/a", False).expect("x/a", "y/b", True)),
    "should enforce except clause while egress access to server in CIDR block": one(
        _cidr_except(), 80, Reach().expect("x/a", "x/b", False)),
    "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed": _overlap(),
    "should enforce policies to check ingress and egress policies can be controlled "
    "independently based on PodSelector": _independent(),
    "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin "
    "doesn't support SCTP": one(
        [DENY_INGRESS, pod_a("allow-only-sctp-ingress-on-port-81", ingress=[
            {"ports": [{"port": 81, "protocol": "SCTP"}]}])], 81, deny_all_ingress()),
    "should properly isolate pods that are selected by a policy allowing SCTP, even if the "
    "plugin doesn't support SCTP": one(
        [pod_a("allow-only-sctp-ingress-on-port-80", ingress=[
            {"ports": [{"port": 80, "protocol": "SCTP"}]}])], 81,
        Reach().expect_all_ingress("x/a", False)),
    "should not allow access by TCP when a policy specifies only UDP": one(
        [pod_a("allow-only-udp-ingress-on-port-81", ingress=[
            {"ports": [{"port": 81, "protocol": "UDP"}]}])], 81,
        Reach().expect_all_ingress("x/a", False)),
    "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using "
    "default ns label": one([pod_a("allow-client-a-via-ns-selector-for-immutable-ns-label",
                                   ingress=[FROM_Y])], 80, FROM_NS_Y_ONLY),
    "should enforce policy based on NamespaceSelector with MatchExpressions using default ns "
    "label": one([pod_a("allow-ns-y-match-selector-for-immutable-ns-label", egress=[
        {"to": [{"namespaceSelector": expr(NS_KEY, "NotIn", "y")}]}])], 80,
        Reach().expect_peer("x/a", "y", False)),
    "UDP: should support a 'default-deny-ingress' policy": one(
        [policy("deny-all", ingress=[])], 80, deny_all_ingress(), "UDP"),
    "UDP: should enforce policy based on Ports": _ports("UDP"),
    "UDP: should enforce policy to allow traffic only from a pod in a different namespace based "
    "on PodSelector and NamespaceSelector": _pod_in_other_ns("UDP"),
}
