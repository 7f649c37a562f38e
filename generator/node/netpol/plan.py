"""What one node enforces: its own pods, the policies that isolate them, and every rule
resolved to addresses and ports. Both renderers (iptables, nftables) draw from this plan.

Names follow kube-router's network policy controller: a firewall chain per pod
(KUBE-POD-FW-<hash>), a chain per policy (KUBE-NWPLCY-<hash>; kgen keeps one per
direction), and the peers of a rule in KUBE-SRC-<hash> (ingress sources) or
KUBE-DST-<hash> (egress destinations), which kube-router keeps as ipsets; kgen
names them by their members, so rules naming the same peers share one.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from generator.node.netpol.policy import Cluster, Pod, Policy, Port, Rule

MARK = "0x10000"  # kube-router's "a policy allowed this" bit (kube-proxy uses 0x4000 and 0x8000)
DIRECTIONS = ("ingress", "egress")


def chain_hash(*parts: str) -> str:
    """kube-router's: sha256, base32, the first 16 characters."""
    return base64.b32encode(hashlib.sha256("".join(parts).encode()).digest()).decode()[:16]


@dataclass(frozen=True)
class PortMatch:
    protocol: str           # TCP, UDP or SCTP
    first: int | None       # None: every port of the protocol
    last: int | None = None  # an endPort range's end
    dst: str | None = None   # a named port resolved on this pod's address only
    final: bool = False      # the pod it resolved on is itself the allowed peer (egress)


@dataclass(frozen=True)
class Block:
    cidr: str
    excepts: tuple[str, ...] = ()


@dataclass
class RulePlan:
    index: int
    ports: list[PortMatch] | None  # None: any port and protocol
    peer_ips: list[str] | None     # None: any peer; pod addresses otherwise
    blocks: list[Block] = field(default_factory=list)
    peer_chain: str = ""

    @property
    def any_peer(self) -> bool:
        return self.peer_ips is None

    @property
    def uses_peer_set(self) -> bool:
        """Whether some match goes through the rule's peers (egress named ports name their
        pods themselves)."""
        has_peers = bool(self.peer_ips or self.blocks)
        return has_peers and (self.ports is None or any(not m.final for m in self.ports))


@dataclass
class PolicyPlan:
    key: str  # namespace/name
    direction: str
    chain: str
    rules: list[RulePlan]


@dataclass
class PodPlan:
    pod: Pod
    chain: str
    ingress: list[PolicyPlan]  # empty: not isolated for ingress
    egress: list[PolicyPlan]

    def isolated_by(self, direction: str) -> list[str]:
        return [p.key for p in (self.ingress if direction == "ingress" else self.egress)]

    def drop_reason(self, direction: str) -> str:
        """The drop rule's comment: how many policies isolate the pod, then the first (the
        one a trace names), last, as a too long comment loses its end (nftables keeps 128
        characters)."""
        first, *more = self.isolated_by(direction)
        count = f"{len(more) + 1} policies, first " if more else ""
        return (f"DROP {direction} of POD {self.pod.namespace}/{self.pod.name}: isolated by "
                f"{count}{first}")


def fit(text: str, limit: int) -> str:
    """A comment within the tool's limit (a NetworkPolicy name alone may be 253 characters)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass
class NodePlan:
    pods: list[PodPlan]
    policies: list[PolicyPlan]


def node_plan(cluster: Cluster, node: str) -> NodePlan:
    local = [p for p in cluster.pods if p.node == node]
    plans: dict[tuple[str, str], PolicyPlan] = {}
    pods = []
    for pod in local:
        by_direction: dict[str, list[PolicyPlan]] = {"ingress": [], "egress": []}
        for direction in DIRECTIONS:
            for policy in cluster.isolating(pod, direction):
                key = (policy.key, direction)
                if key not in plans:
                    targets = [p for p in cluster.selected(policy) if p.node == node]
                    plans[key] = _policy_plan(cluster, policy, direction, targets)
                by_direction[direction].append(plans[key])
        if by_direction["ingress"] or by_direction["egress"]:
            pods.append(PodPlan(pod, "KUBE-POD-FW-" + chain_hash(pod.namespace, pod.name),
                                by_direction["ingress"], by_direction["egress"]))
    return NodePlan(pods, list(plans.values()))


def _policy_plan(cluster: Cluster, policy: Policy, direction: str, targets: list[Pod]) -> PolicyPlan:
    chain = "KUBE-NWPLCY-" + chain_hash(policy.namespace, policy.name, direction)
    rules = [_rule_plan(cluster, policy, direction, i, rule, targets)
             for i, rule in enumerate(policy.rules(direction) or ())]
    return PolicyPlan(policy.key, direction, chain, rules)


def _rule_plan(cluster: Cluster, policy: Policy, direction: str, index: int, rule: Rule,
               targets: list[Pod]) -> RulePlan:
    plan = RulePlan(index, None, None)
    if rule.peers is not None:
        ips: set[str] = set()
        for peer in rule.peers:
            if peer.block is not None:
                if peer.block.cidr.version == 4:  # kgen labs are IPv4: a v6 block names no one
                    plan.blocks.append(Block(str(peer.block.cidr),
                                             tuple(str(e) for e in peer.block.excepts)))
            else:
                ips.update(p.ip for p in cluster.pods_named(peer, policy.namespace))
        plan.peer_ips = sorted(ips, key=cluster.ip_order.__getitem__)
        # Named by what they hold, so rules naming the same peers share one chain or set
        # (kube-router names its ipsets per rule; policies repeat peers a great deal).
        prefix = "KUBE-SRC-" if direction == "ingress" else "KUBE-DST-"
        plan.peer_chain = prefix + chain_hash(direction, *plan.peer_ips,
                                              *(f"{b.cidr}-{','.join(b.excepts)}" for b in plan.blocks))
    if rule.ports is not None:
        plan.ports = []
        for port in rule.ports:
            plan.ports += _port_matches(cluster, policy, direction, rule, port, targets)
    return plan


def _port_matches(cluster: Cluster, policy: Policy, direction: str, rule: Rule, port: Port,
                  targets: list[Pod]) -> list[PortMatch]:
    if not isinstance(port.port, str):
        return [PortMatch(port.protocol, port.port, port.end_port)]
    # A named port means a number on one pod: the destination. For ingress that is the
    # isolated pod itself; for egress each destination pod the rule's peers name.
    if direction == "ingress":
        return [PortMatch(port.protocol, number, None, pod.ip)
                for pod in targets if (number := port.resolve(pod)) is not None]
    if rule.peers is None:
        candidates = {p.ip: p for p in cluster.pods}
    else:
        candidates = {p.ip: p for peer in rule.peers for p in cluster.pods_named(peer,
                                                                               policy.namespace)}
    return [PortMatch(port.protocol, number, None, ip, final=True)
            for ip in sorted(candidates, key=cluster.ip_order.__getitem__)
            if (number := port.resolve(candidates[ip])) is not None]
