"""Does a NetworkPolicy set allow this packet, and why: Kubernetes' semantics.

A connection from SRC to DST needs both directions: SRC's egress (when SRC
is a pod that some policy isolates for egress) and DST's ingress (when DST is
a pod that some policy isolates for ingress). An isolated direction allows
the union of what every isolating policy's rules allow; a rule allows when
one of its peers names the other end and one of its ports matches (named
ports resolve on the destination pod). Traffic between a pod and its own
node is always allowed, and a pod cannot block itself (the NetworkPolicy
documentation says both). Replies of
an allowed connection are allowed: the evaluator answers for the connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.node.netpol.policy import Cluster, Pod, Policy, Rule

Endpoint = Pod | str  # a pod, or an address outside the pod network (a client, a node)


@dataclass(frozen=True)
class Side:
    """One direction's decision: which policies isolate it and which of them allow."""

    direction: str  # "egress" (the source's) or "ingress" (the destination's)
    isolated_by: tuple[str, ...] = ()
    allowed_by: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.isolated_by or bool(self.allowed_by)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress: Side
    ingress: Side

    @property
    def reason(self) -> str:
        """In words, as `kgen check` names a mismatch's expected reason."""
        for side in (self.egress, self.ingress):
            if not side.allowed:
                return (f"{side.direction} isolated by {', '.join(side.isolated_by)}; "
                        "no policy allows it")
        allowed = [f"{s.direction} allowed by {', '.join(s.allowed_by)}"
                   for s in (self.egress, self.ingress) if s.allowed_by]
        return "; ".join(allowed) or "no policy isolates either end"

    @property
    def policy(self) -> str | None:
        """The policy a trace hop names: the isolating one when dropped, else an allowing one."""
        for side in (self.egress, self.ingress):
            if not side.allowed:
                return side.isolated_by[0]
        for side in (self.ingress, self.egress):
            if side.allowed_by:
                return side.allowed_by[0]
        return None


class Evaluator:
    def __init__(self, cluster: Cluster, node_ips: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.node_ips = node_ips or {}  # node name -> its address (its own pods' always-allowed peer)

    def decide(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> Verdict:
        dst_pod = dst if isinstance(dst, Pod) else self.cluster.by_ip.get(dst)
        src_pod = src if isinstance(src, Pod) else self.cluster.by_ip.get(src)
        src_ip = src.ip if isinstance(src, Pod) else src
        dst_ip = dst.ip if isinstance(dst, Pod) else dst
        if src_ip == dst_ip:
            return Verdict(True, Side("egress"), Side("ingress"))
        egress = Side("egress")
        if src_pod is not None and not self._own_node(src_pod, dst_ip):
            egress = self._side(src_pod, "egress", dst_ip, port, protocol, dst_pod)
        ingress = Side("ingress")
        if dst_pod is not None and not self._own_node(dst_pod, src_ip):
            ingress = self._side(dst_pod, "ingress", src_ip, port, protocol, dst_pod)
        return Verdict(egress.allowed and ingress.allowed, egress, ingress)

    def _own_node(self, pod: Pod, ip: str) -> bool:
        return bool(pod.node) and self.node_ips.get(pod.node) == ip

    def _side(self, pod: Pod, direction: str, peer_ip: str, port: int, protocol: str,
              dst_pod: Pod | None) -> Side:
        isolating = self.cluster.isolating(pod, direction)
        allowing = [p.key for p in isolating
                    if any(self._rule_allows(p, r, peer_ip, port, protocol, dst_pod)
                           for r in p.rules(direction) or ())]
        return Side(direction, tuple(p.key for p in isolating), tuple(allowing))

    def _rule_allows(self, policy: Policy, rule: Rule, peer_ip: str, port: int, protocol: str,
                     dst_pod: Pod | None) -> bool:
        if rule.ports is not None and not any(p.matches(port, protocol, dst_pod)
                                              for p in rule.ports):
            return False
        return rule.peers is None or any(self.cluster.peer_has(peer, policy.namespace, peer_ip)
                                         for peer in rule.peers)

    def matrix(self, port: int, protocol: str = "TCP") -> dict[tuple[str, str], bool]:
        """Every ordered pair of pods (`ns/name` keys), loopback included."""
        pods = self.cluster.pods
        return {(s.key, d.key): self.decide(s, d, port, protocol).allowed for s in pods for d in pods}


def render_matrix(keys: list[str], truth: dict[tuple[str, str], bool]) -> str:
    """Rows from, columns to, `.` reachable and `X` blocked, as the e2e suite prints it."""
    lines = ["-\t" + "\t".join(keys)]
    for src in keys:
        marks = ["?" if (src, d) not in truth else "." if truth[(src, d)] else "X" for d in keys]
        lines.append(src + "\t" + "\t".join(marks))
    return "\n".join(lines) + "\n"
