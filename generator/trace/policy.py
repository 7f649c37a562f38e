"""Which NetworkPolicy a trace hop belongs to, and a drop the kernel's trace did not show.

The node's policy rules (generator/node/netpol, kube-router's layout) carry
comments that name the policy, and the trace shows each rule with its
comment, so the comment is read first:
- `run through nw policy NS/NAME` on a KUBE-POD-FW-<hash> rule jumping to that
  policy's KUBE-NWPLCY-<hash> chain (the jump also teaches which policy the
  chain is);
- `NS/NAME ingress rule N` (or egress) on a policy chain's rules;
- `DROP ingress of POD NS/POD: isolated by [N policies, first] NS/NAME` on the
  drop rule: the isolating policy (the first, as the evaluator names it).
A rule without a comment in a KUBE-NWPLCY-<hash> chain (the RETURN once the
allow mark is set) is named by its chain: from a jump seen earlier in the same
trace, else from the lab's policies planned as the nodes plan them. Peer
chains (KUBE-SRC-/KUBE-DST-, shared between policies) belong to the policy
whose rule jumped into them. In nftables mode everything is in the table
`ip kgen-netpol`, with the same chain names and comments.

When a policy isolates the destination (or the source) and the trace shows no
drop (the kernel's trace can lose events on a busy node), the verdict is
derived from the evaluator instead, and the hop says so.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from generator.trace.parse import Event

NETPOL_TABLE = "kgen-netpol"  # nftables mode's table of its own
POLICY_CHAINS = ("KUBE-NWPLCY-", "KUBE-POD-FW-", "KUBE-SRC-", "KUBE-DST-")
PEER_CHAINS = ("KUBE-SRC-", "KUBE-DST-")
_RUN = re.compile(r"run through nw policy (\S+)")
_RULE = re.compile(r"^(\S+/\S+) (?:ingress|egress) rule \d+$")
_ISOLATED = re.compile(r"isolated by (?:\d+ policies, first )?(\S+)")
_SETS_MARK = re.compile(r"--set-xmark 0x10000/0x10000|meta mark set meta mark \| 0x0*10000\b")
_CLEARS_MARK = re.compile(r"--set-xmark 0x0/0x10000|meta mark set meta mark & 0xfffeffff")
_RETURNS_MARKED = re.compile(r"--mark 0x10000/0x10000 -j RETURN|mark & 0x0*10000 == 0x0*10000 return")


def is_netpol(ev: Event) -> bool:
    return ev.table == NETPOL_TABLE or ev.chain.startswith(POLICY_CHAINS)


def planned_chains(cluster: Any) -> dict[str, str]:
    """KUBE-NWPLCY-<hash> -> NS/NAME, for every node, as the nodes plan the lab's policies."""
    if not cluster.get("networkPolicies"):
        return {}
    from generator.netpol.lab import policy_cluster
    from generator.node.netpol.plan import node_plan

    policies = policy_cluster(cluster)
    return {p.chain: p.key for node in cluster["nodes"]
            for p in node_plan(policies, node["name"]).policies}


class PolicyNamer:
    """Names the policy of each netpol hop of one node's records, in the order the kernel
    evaluated them. `chains` is shared by the trace's namers (what jumps taught);
    `planned` gives the lab's chain names when a chain was never jumped to in the trace."""

    def __init__(self, chains: dict[str, str], planned: Callable[[], dict[str, str]]) -> None:
        self.chains = chains
        self.planned = planned
        self.current: str | None = None  # the policy whose rules the packet is running through

    def name(self, ev: Event) -> str | None:
        if not is_netpol(ev):
            return None
        comment = ev.comment or ""
        run = _RUN.search(comment)
        if run:
            if ev.target:
                self.chains[ev.target] = run.group(1)
            self.current = run.group(1)
            return self.current
        found = _RULE.match(comment) or _ISOLATED.search(comment)
        if found:
            self.current = found.group(1)
            return self.current
        if ev.chain.startswith("KUBE-NWPLCY-"):
            self.current = self.chains.get(ev.chain) or self.planned().get(ev.chain)
            return self.current
        if ev.chain.startswith(PEER_CHAINS):
            return self.current
        return None

    @staticmethod
    def detail(ev: Event, detail: str, policy: str | None) -> str:
        """The hop's line, saying what the policy did where the rule alone does not."""
        where = f"{ev.table} {ev.chain}"
        rule = ev.rule or ""
        if is_netpol(ev) and _CLEARS_MARK.search(rule):
            return f"{where}: some policy allowed it; clears the allow mark (0x10000) → CONTINUE"
        if policy is None:
            return detail
        if ev.verdict == "RETURN" and _RETURNS_MARKED.search(rule):
            return f"{where}: allowed by NetworkPolicy {policy} (allow mark 0x10000 set) → RETURN"
        if _SETS_MARK.search(rule):
            said = f" ({ev.comment})" if ev.comment else ""
            return (f"{where}: a rule of NetworkPolicy {policy} matches{said}: "
                    "marks the packet allowed (0x10000)")
        if policy not in detail:
            return f"{detail} (NetworkPolicy {policy})"
        return detail


def derived_drop(cluster: Any, src_ip: str, dst_ip: str, port: int | None, proto: str
                 ) -> tuple[str, str, str] | None:
    """(the policy that isolates, the reason, the node of the isolated pod) when the lab's
    policies drop this connection; None when they allow it (or the lab has none)."""
    from generator.netpol.lab import lab_evaluator

    evaluator = lab_evaluator(cluster)
    if evaluator is None:
        return None
    try:
        ipaddress.ip_address(src_ip)
        ipaddress.ip_address(dst_ip)
    except ValueError:
        return None
    verdict = evaluator.decide(src_ip, dst_ip, port or 0, proto.upper())
    if verdict.allowed or verdict.policy is None:
        return None
    side = verdict.egress if not verdict.egress.allowed else verdict.ingress
    isolated = evaluator.cluster.by_ip.get(src_ip if side.direction == "egress" else dst_ip)
    return verdict.policy, verdict.reason, isolated.node if isolated else ""
