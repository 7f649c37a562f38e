"""Pod to pod: a pod's request reaches another pod, which sees the source pod's own IP.

The plan grows with the lab, never with its square of pods: `pod_matrix`
samples the pairs, every pair of nodes once, every node with two pods once
inside it, and every pod at least once as source and once as destination. It
is deterministic (node and pod order of the lab file), so a run can be
reproduced.
"""

from __future__ import annotations

from generator.checks.base import LabView, Outcome, Planning, Pod, ProbeCheck
from generator.checks.batch import all_ok, describe, job, peer_ips
from generator.node.documents import ProbeJob, ProbeSummary


class PodToPod(ProbeCheck):
    kind = "pod-to-pod"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        return [job(lab, self.source, "http", f"{lab.pod_ip[self.target]}:8080", "/clientip")]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        [s] = summaries
        return Outcome(all_ok(s) and peer_ips(s) == {lab.pod_ip[self.source]}, describe(s))


def plan(ctx: Planning) -> list[PodToPod]:
    by_node: dict[str, list[str]] = {n["name"]: [] for n in ctx.cluster["nodes"]}
    for pod in ctx.servers:
        by_node.setdefault(pod["node"], []).append(pod["name"])
    pods = {p["name"]: p for p in ctx.servers}
    # Pairs the lab's NetworkPolicies block are left to the netpol kind's matrix.
    return [_pair(ctx, pods[a], pods[b]) for a, b in pod_matrix(list(by_node.values()))
            if ctx.allows(pods[a], pods[b], 8080)]


def _pair(ctx: Planning, a: Pod, b: Pod) -> PodToPod:
    where = "same node" if a["node"] == b["node"] else "across nodes"
    return PodToPod(f"{a['name']} to {b['name']}",
                    f"pod to pod, {where} ({a['node']} → {b['node']})", a["name"], b["name"],
                    "answers; sees the source pod's own IP", frozenset(ctx.path(a, b)))


def _node_pairs(nodes: list[list[str]]) -> list[tuple[int, int]]:
    """Each node with two pods once inside it, then a round-robin tournament of nodes."""
    n = len(nodes)
    pairs: list[tuple[int, int]] = [(i, i) for i in range(n) if len(nodes[i]) >= 2]
    for d in range(1, n // 2 + 1):
        for i in range(n):
            if 2 * d == n and i >= d:
                continue  # the pair {i, i+N/2} once, from the first half
            pairs.append((i, (i + d) % n))
    return pairs


def pod_matrix(by_node: list[list[str]]) -> list[tuple[str, str]]:
    """A deterministic sample of pod pairs (source, destination).

    `by_node` holds each node's pods in lab order. The node pairs are a
    round-robin tournament: node i sends to node (i+d) mod N for d = 1 ..
    floor(N/2) (for even N, d = N/2 only from the first half), so every
    unordered pair of nodes appears once and every node sends and receives
    about (N-1)/2 times; node pairs come first, then the pairs across nodes by
    distance d. Each node hands out its pods in turn, as sources and as
    destinations, so pods take the pairs evenly. Pods the pairs did not reach
    (more pods on a node than pairs) get one extra check each, an uncovered
    source paired with an uncovered destination where possible.
    """
    nodes = [pods for pods in by_node if pods]
    next_src, next_dst = [0] * len(nodes), [0] * len(nodes)
    chosen: list[tuple[str, str]] = []
    for s, t in _node_pairs(nodes):
        src = nodes[s][next_src[s] % len(nodes[s])]
        next_src[s] += 1
        dst = nodes[t][next_dst[t] % len(nodes[t])]
        next_dst[t] += 1
        if dst == src:  # same node: the next pod in turn
            dst = nodes[t][next_dst[t] % len(nodes[t])]
            next_dst[t] += 1
        chosen.append((src, dst))
    return chosen + _uncovered(nodes, chosen)


def _uncovered(nodes: list[list[str]], chosen: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One extra pair for each pod not yet a source, and each not yet a destination."""
    node_of = {pod: i for i, pods in enumerate(nodes) for pod in pods}
    everyone = [pod for pods in nodes for pod in pods]

    def other(pod: str) -> str | None:
        """A partner for an extra check: the next node's first pod, else a pod alongside."""
        i = node_of[pod]
        if len(nodes) > 1:
            return nodes[(i + 1) % len(nodes)][0]
        return next((p for p in nodes[i] if p != pod), None)

    extra: list[tuple[str, str]] = []
    sources = [p for p in everyone if p not in {s for s, _ in chosen}]
    targets = [p for p in everyone if p not in {t for _, t in chosen}]
    for src in sources:
        partner = next((t for t in targets if t != src), None)
        if partner is not None:
            targets.remove(partner)
        else:
            partner = other(src)
        if partner is not None:
            extra.append((src, partner))
    for dst in targets:
        partner = other(dst)
        if partner is not None:
            extra.append((partner, dst))
    return extra
