"""NetworkPolicy objects in normalised form, with Kubernetes' matching rules.

Input is what the API server stores after validation and defaulting: an
omitted `policyTypes` means Ingress, plus Egress when `egress` has rules; an
omitted or empty `from`/`to` means every peer; omitted or empty `ports` every
port; a port's protocol defaults to TCP. Namespaces always carry
`kubernetes.io/metadata.name` (the API server sets it), so selecting a
namespace by name works as in a cluster.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAME_LABEL = "kubernetes.io/metadata.name"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def all_labels(self) -> dict[str, str]:
        return {**{k: str(v) for k, v in self.labels.items()}, NAME_LABEL: self.name}


@dataclass(frozen=True)
class NamedPort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[NamedPort, ...] = ()
    node: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Selector:
    """A metav1.LabelSelector: every matchLabels pair and every expression must hold."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        have = {k: str(v) for k, v in labels.items()}
        if any(have.get(k) != v for k, v in self.match_labels):
            return False
        return all(_holds(op, have.get(key), values) for key, op, values in self.expressions)


def _holds(op: str, value: str | None, values: tuple[str, ...]) -> bool:
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":  # a missing key is "not in" (labels.Selector semantics)
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    return value is None  # DoesNotExist


@dataclass(frozen=True)
class IPBlock:
    cidr: Network
    excepts: tuple[Network, ...] = ()

    def contains(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        if address.version != self.cidr.version or address not in self.cidr:
            return False
        return not any(address in e for e in self.excepts)


@dataclass(frozen=True)
class Peer:
    pods: Selector | None = None
    namespaces: Selector | None = None
    block: IPBlock | None = None


@dataclass(frozen=True)
class Port:
    protocol: str = "TCP"
    port: int | str | None = None  # None: every port of the protocol
    end_port: int | None = None

    def resolve(self, pod: Pod | None) -> int | None:
        """The number a named port stands for on `pod` (None: the pod has no such port)."""
        if isinstance(self.port, int) or self.port is None:
            return self.port
        if pod is None:
            return None
        for named in pod.ports:
            if named.name == self.port and named.protocol == self.protocol:
                return named.port
        return None

    def matches(self, port: int, protocol: str, dst: Pod | None) -> bool:
        if protocol != self.protocol:
            return False
        if self.port is None:
            return True
        number = self.resolve(dst)
        if number is None:
            return False
        return number <= port <= (self.end_port or number)


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...] | None  # None: every source (ingress) or destination (egress)
    ports: tuple[Port, ...] | None  # None: every port and protocol


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    selector: Selector
    ingress: tuple[Rule, ...] | None  # None: the policy does not isolate for ingress
    egress: tuple[Rule, ...] | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, pod: Pod) -> bool:
        return pod.namespace == self.namespace and self.selector.matches(pod.labels)

    def rules(self, direction: str) -> tuple[Rule, ...] | None:
        return self.ingress if direction == "ingress" else self.egress


# ------------------------------------------------------------------ parsing


def selector(raw: Mapping[str, Any] | None) -> Selector:
    raw = raw or {}
    labels = tuple(sorted((str(k), str(v)) for k, v in (raw.get("matchLabels") or {}).items()))
    exprs = tuple((str(e["key"]), str(e["operator"]), tuple(str(v) for v in e.get("values") or ()))
                  for e in raw.get("matchExpressions") or ())
    return Selector(labels, exprs)


def network(text: str) -> Network:
    """A CIDR as the API server reads ipBlock's (Go's ParseCIDRSloppy): IPv4 octets may carry
    leading zeros, read as decimal, and bits beyond the prefix are dropped."""
    address, _, prefix = text.partition("/")
    if ":" not in address:
        address = ".".join(str(int(octet)) for octet in address.split("."))
    return ipaddress.ip_network(f"{address}/{int(prefix)}", strict=False)


def _peer(raw: Mapping[str, Any]) -> Peer:
    block = raw.get("ipBlock")
    ip_block = None
    if block is not None:
        ip_block = IPBlock(network(block["cidr"]),
                           tuple(network(e) for e in block.get("except") or ()))
    return Peer(pods=selector(raw["podSelector"]) if "podSelector" in raw else None,
                namespaces=(selector(raw["namespaceSelector"])
                            if "namespaceSelector" in raw else None),
                block=ip_block)


def _port(raw: Mapping[str, Any]) -> Port:
    return Port(str(raw.get("protocol") or "TCP"), raw.get("port"), raw.get("endPort"))


def _rules(raw: Iterable[Mapping[str, Any]], peers_key: str) -> tuple[Rule, ...]:
    rules = []
    for rule in raw:
        peers = rule.get(peers_key) or None
        ports = rule.get("ports") or None
        rules.append(Rule(tuple(_peer(p) for p in peers) if peers else None,
                          tuple(_port(p) for p in ports) if ports else None))
    return tuple(rules)


def parse_policy(raw: Mapping[str, Any]) -> Policy:
    """One NetworkPolicy object (already validated) with the API server's defaults."""
    meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
    types = spec.get("policyTypes")
    if not types:  # SetDefaults_NetworkPolicy
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    return Policy(namespace=str(meta.get("namespace") or "default"), name=str(meta["name"]),
                  selector=selector(spec.get("podSelector")),
                  ingress=(_rules(spec.get("ingress") or (), "from")
                           if "Ingress" in types else None),
                  egress=_rules(spec.get("egress") or (), "to") if "Egress" in types else None)


# ------------------------------------------------------------------ who a peer names


class Cluster:
    """Namespaces, pods and policies, indexed for the questions peers ask.

    Selector answers are cached per label set: pods share label sets, and a node's plan
    asks about every pod for every peer of every policy."""

    def __init__(self, namespaces: Iterable[Namespace], pods: Iterable[Pod],
                 policies: Iterable[Policy]) -> None:
        self.pods = list(pods)
        self.policies = list(policies)
        known = {ns.name: ns for ns in namespaces}
        for name in {p.namespace for p in self.pods} | {p.namespace for p in self.policies}:
            known.setdefault(name, Namespace(name))  # a namespace named by a pod exists
        self.namespace_labels = {name: ns.all_labels for name, ns in known.items()}
        self.by_ip = {p.ip: p for p in self.pods}
        self.ip_order = {p.ip: int(ipaddress.ip_address(p.ip)) for p in self.pods}
        self._pod_labels = {p.key: frozenset((k, str(v)) for k, v in p.labels.items())
                            for p in self.pods}
        self._ns_labels = {n: frozenset(labels.items()) for n, labels in self.namespace_labels.items()}
        self._groups: dict[tuple[str, frozenset[tuple[str, str]]], list[Pod]] = {}
        for pod in self.pods:  # pods alike for every selector: one question per group
            self._groups.setdefault((pod.namespace, self._pod_labels[pod.key]), []).append(pod)
        self._by_namespace: dict[str, list[Policy]] = {}
        for policy in self.policies:
            self._by_namespace.setdefault(policy.namespace, []).append(policy)
        self._answers: dict[tuple[Selector, frozenset[tuple[str, str]]], bool] = {}
        # policies repeat selectors and peers: the pods they name, once per namespace
        self._selected: dict[tuple[Selector, str], list[Pod]] = {}
        self._named: dict[tuple[Peer, str], list[Pod]] = {}

    def _matches(self, selector: Selector, labels: frozenset[tuple[str, str]]) -> bool:
        key = (selector, labels)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = selector.matches(dict(labels))
        return answer

    def selects(self, policy: Policy, pod: Pod) -> bool:
        return pod.namespace == policy.namespace and self._matches(policy.selector,
                                                                   self._pod_labels[pod.key])

    def selected(self, policy: Policy) -> list[Pod]:
        """The pods `policy` selects (its podSelector, in its namespace)."""
        key = (policy.selector, policy.namespace)
        if key not in self._selected:
            self._selected[key] = [
                pod for (namespace, labels), pods in self._groups.items()
                if namespace == policy.namespace and self._matches(policy.selector, labels)
                for pod in pods]
        return self._selected[key]

    def peer_has_pod(self, peer: Peer, policy_ns: str, pod: Pod) -> bool:
        """Whether `pod` is one of the pods a pod/namespace selector peer names."""
        return self._names(peer, policy_ns, pod.namespace, self._pod_labels[pod.key])

    def _names(self, peer: Peer, policy_ns: str, namespace: str,
               labels: frozenset[tuple[str, str]]) -> bool:
        if peer.pods is None and peer.namespaces is None:
            return False
        if peer.namespaces is None:
            in_scope = namespace == policy_ns
        else:
            in_scope = self._matches(peer.namespaces, self._ns_labels.get(namespace, frozenset()))
        return in_scope and (peer.pods is None or self._matches(peer.pods, labels))

    def pods_named(self, peer: Peer, policy_ns: str) -> list[Pod]:
        """The pods a peer names: by its selectors, or (an ipBlock) by address."""
        key = (peer, policy_ns)
        if key not in self._named:
            self._named[key] = (
                [p for p in self.pods if peer.block.contains(p.ip)] if peer.block is not None
                else [pod for (namespace, labels), pods in self._groups.items()
                      if self._names(peer, policy_ns, namespace, labels) for pod in pods])
        return self._named[key]

    def peer_has(self, peer: Peer, policy_ns: str, ip: str) -> bool:
        """Whether the address `ip` (a pod's or not) is named by `peer`."""
        if peer.block is not None:
            return peer.block.contains(ip)  # pod IPs too, as the e2e suite expects
        pod = self.by_ip.get(ip)
        return pod is not None and self.peer_has_pod(peer, policy_ns, pod)

    def isolating(self, pod: Pod, direction: str) -> list[Policy]:
        """The policies that select `pod` and isolate it for `direction`."""
        return [p for p in self._by_namespace.get(pod.namespace, ())
                if p.rules(direction) is not None and self.selects(p, pod)]


def parse_cluster(doc: Mapping[str, Any]) -> Cluster:
    """`{"namespaces": [...], "pods": [...], "networkPolicies": [...]}` as the agent gets it."""
    namespaces = [Namespace(n["name"], n.get("labels") or {}) for n in doc.get("namespaces") or ()]
    pods = [Pod(namespace=p.get("namespace") or "default", name=p["name"], ip=p["ip"],
                labels=p.get("labels") or {}, node=p.get("node", ""),
                ports=tuple(NamedPort(q["name"], int(q["containerPort"]), q.get("protocol", "TCP"))
                            for q in p.get("ports") or () if q.get("name")))
            for p in doc.get("pods") or ()]
    return Cluster(namespaces, pods, [parse_policy(r) for r in doc.get("networkPolicies") or ()])
