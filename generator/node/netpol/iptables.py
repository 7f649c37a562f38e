"""A node's NetworkPolicy rules as one iptables-restore input (filter table), laid out as
kube-router's iptables network policy controller lays them out.

FORWARD jumps first to KUBE-ROUTER-FORWARD (`jump_commands`), which sends traffic to or
from each isolated pod of this node to the pod's KUBE-POD-FW-* chain. That chain accepts
replies (conntrack ESTABLISHED,RELATED), drops INVALID, runs the traffic through the
KUBE-NWPLCY-* chain of every policy isolating the pod in that direction (each sets mark
0x10000 when one of its rules allows), drops what no policy marked (the comment names the
first isolating policy and how many there are), and clears the mark for the other end's
chain.

FORWARD sees pod traffic after kube-proxy's DNAT (PREROUTING), bridged traffic too
(br_netfilter), so policies apply to service traffic by its real destination. INPUT and
OUTPUT are not hooked: traffic between a pod and its own node is always allowed
(Kubernetes' NetworkPolicy semantics), and a pod's traffic to another pod never passes
them. kube-router keeps a rule's peers in ipsets; the node image has no ipset, so each
peer set is a chain of one rule per address or block (KUBE-SRC-* / KUBE-DST-*).
"""

from __future__ import annotations

from collections.abc import Mapping

from generator.node.netpol.plan import (
    MARK,
    Block,
    NodePlan,
    PodPlan,
    PolicyPlan,
    PortMatch,
    RulePlan,
    chain_hash,
    fit,
)

TOP = "KUBE-ROUTER-FORWARD"
OWN_PREFIXES = ("KUBE-POD-FW-", "KUBE-NWPLCY-", "KUBE-SRC-", "KUBE-DST-")
JUMP = ["FORWARD", "-m", "comment", "--comment", "kube-router netpol - enforce NetworkPolicy",
        "-j", TOP]
JUMP_RULE = f'-A FORWARD -m comment --comment "{JUMP[4]}" -j {TOP}'  # as iptables -S prints it
SET_MARK = f"-j MARK --set-xmark {MARK}/{MARK}"


def _comment(text: str) -> str:
    return f'-m comment --comment "{fit(text, 256)}"'


def chain_rules(plan: NodePlan) -> dict[str, list[str]]:
    """Every chain of ours the plan needs, in order, with its rules (`-A ...` lines)."""
    chains: dict[str, list[str]] = {TOP: []}
    for pod in plan.pods:
        chains[TOP] += _top_jumps(pod)
    for pod in plan.pods:
        chains[pod.chain] = _pod_chain(pod)
    for policy in plan.policies:
        for rule in policy.rules:
            chains.update(_peer_chains(policy, rule))
        chains[policy.chain] = _policy_chain(policy)
    return chains


def restore_input(now: Mapping[str, list[str]], held: Mapping[str, list[str]]) -> str:
    """The iptables-restore input (for --noflush) taking the kernel from `held` (what it
    holds: the agent's last `chain_rules`, or `held_chains` of `iptables-save -t filter`
    after a restart or to repair drift) to `now`. Only chains that differ are written, as
    kube-proxy's partial syncs do (a chain's name hashes its pod or policy, so one policy's
    change touches few); chains of ours no longer needed are flushed and deleted."""
    write = [c for c, rules in now.items() if held.get(c) != rules]
    stale = sorted(c for c in held if c not in now and c.startswith(OWN_PREFIXES))
    lines = ["*filter", *(f":{c} - [0:0]" for c in write + stale),
             *(rule for c in write for rule in now[c]), *(f"-X {c}" for c in stale), "COMMIT"]
    return "\n".join(lines) + "\n"


def render(plan: NodePlan, held: str = "") -> str:
    """`restore_input` from a plan and the text of what the kernel holds."""
    return restore_input(chain_rules(plan), held_chains(held))


def held_chains(text: str) -> dict[str, list[str]]:
    """The chains and rules in an iptables-save dump or an earlier full payload."""
    chains: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            chains.setdefault(line.split()[1], []).append(line)
    return chains


def _pod_name(pod: PodPlan) -> str:
    return f"POD name:{pod.pod.name} namespace: {pod.pod.namespace}"


def _top_jumps(pod: PodPlan) -> list[str]:
    ip = pod.pod.ip
    out = []
    for isolated, words, match in ((pod.ingress, "destined to", "-d"), (pod.egress, "from", "-s")):
        if isolated:
            why = _comment(f"rule to jump traffic {words} {_pod_name(pod)} to chain {pod.chain}")
            out.append(f"-A {TOP} {why} {match} {ip}/32 -j {pod.chain}")
    return out


def _pod_chain(pod: PodPlan) -> list[str]:
    ip, chain = pod.pod.ip, pod.chain
    out = [f"-A {chain} {_comment('rule for stateful firewall for pod')} "
           "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
           f"-A {chain} {_comment('rule to drop invalid state for pod')} "
           "-m conntrack --ctstate INVALID -j DROP",
           f"-A {chain} {_comment('a pod always reaches itself')} -s {ip}/32 -d {ip}/32 -j ACCEPT"]
    for policies, match in ((pod.ingress, f"-d {ip}/32"), (pod.egress, f"-s {ip}/32")):
        for policy in policies:
            out.append(f"-A {chain} {_comment(f'run through nw policy {policy.key}')} {match} "
                       f"-j {policy.chain}")
    for direction, match in (("ingress", f"-d {ip}/32"), ("egress", f"-s {ip}/32")):
        if pod.isolated_by(direction):
            why = pod.drop_reason(direction)
            out.append(f"-A {chain} {_comment(why)} {match} -m mark ! --mark {MARK}/{MARK} -j DROP")
    out.append(f"-A {chain} -j MARK --set-xmark 0x0/{MARK}")
    return out


def _port(match: PortMatch) -> str:
    proto = match.protocol.lower()
    text = f"-p {proto}"
    if match.dst is not None:  # a named port: the number it has on this pod
        text = f"-d {match.dst}/32 {text}"
    if match.first is not None:
        ports = f"{match.first}:{match.last}" if match.last else str(match.first)
        text += f" -m {proto} --dport {ports}"
    return text


def _policy_chain(policy: PolicyPlan) -> list[str]:
    out = []
    for rule in policy.rules:
        what = _comment(f"{policy.key} {policy.direction} rule {rule.index}")
        peers = rule.any_peer or rule.peer_ips or rule.blocks
        target = SET_MARK if rule.any_peer else f"-j {rule.peer_chain}"
        if rule.ports is None:
            if peers:
                out.append(f"-A {policy.chain} {what} {target}")
        else:
            for match in rule.ports:
                if match.final:  # an egress named port: its pod is the allowed peer
                    out.append(f"-A {policy.chain} {what} {_port(match)} {SET_MARK}")
                elif peers:
                    out.append(f"-A {policy.chain} {what} {_port(match)} {target}")
        out.append(f"-A {policy.chain} -m mark --mark {MARK}/{MARK} -j RETURN")
    return out


def _peer_chains(policy: PolicyPlan, rule: RulePlan) -> dict[str, list[str]]:
    """The rule's peer chain (one rule per address or block), and a chain per ipBlock with
    except."""
    if not rule.uses_peer_set:
        return {}
    side = "-s" if policy.direction == "ingress" else "-d"
    chain = rule.peer_chain
    chains: dict[str, list[str]] = {chain: []}
    for ip in rule.peer_ips or ():
        chains[chain].append(f"-A {chain} {side} {ip}/32 {SET_MARK}")
    for number, block in enumerate(rule.blocks):
        if not block.excepts:
            chains[chain].append(f"-A {chain} {side} {block.cidr} {SET_MARK}")
            continue
        sub = _block_chain(chain, number)
        chains[chain].append(f"-A {chain} -j {sub}")
        chains[sub] = _block_rules(sub, side, block)
    return chains


def _block_chain(chain: str, number: int) -> str:
    """An ipBlock with except gets a chain of its own, so its RETURNs skip only that block."""
    return chain[:9] + chain_hash(chain, str(number))


def _block_rules(chain: str, side: str, block: Block) -> list[str]:
    out = [f"-A {chain} {side} {e} -j RETURN" for e in block.excepts]
    return [*out, f"-A {chain} {side} {block.cidr} {SET_MARK}"]


def jump_commands(forward: str) -> list[list[str]]:
    """`iptables -S FORWARD` in; out, the `iptables -t filter` argument lists that leave the
    jump to KUBE-ROUTER-FORWARD first in FORWARD, once. First, because kube-proxy's
    KUBE-FORWARD accepts masquerade-marked and established traffic, which would otherwise
    pass by the policies; kube-proxy only prepends its jumps when they are missing, so a
    jump of ours that something pushed down is moved back up (as kube-router does)."""
    rules = [line for line in forward.splitlines() if line.startswith("-A FORWARD ")]
    ours = rules.count(JUMP_RULE)
    if ours == 1 and rules[0] == JUMP_RULE:
        return []
    return [*(["-D", *JUMP] for _ in range(ours)), ["-I", JUMP[0], "1", *JUMP[1:]]]
