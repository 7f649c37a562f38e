"""A node's NetworkPolicy rules as one `nft -f` transaction: a table of its own
(`ip kgen-netpol`), replaced whole on every sync, with kube-router's chain layout
(as its nftables controller keeps it: KUBE-ROUTER-FORWARD as a base chain,
KUBE-NWPLCY-COMMON for conntrack, KUBE-POD-FW-* per pod, KUBE-NWPLCY-* per policy,
mark 0x10000 for "allowed").

Sets and maps do what the iptables mode spells out rule by rule: verdict maps
send each isolated pod's traffic to its firewall chain (one lookup, however many
pods), and each rule's peers are one interval set (pod addresses and ipBlocks,
merged); an ipBlock with `except` is a rule of its own (`ip saddr CIDR ip saddr
!= { EXCEPT }`). The base chain hooks forward, after kube-proxy's DNAT; replies
of allowed connections pass on conntrack; every drop's comment names the
isolating policies. Replacing the table keeps conntrack entries, so allowed
established connections survive a sync.
"""

from __future__ import annotations

from generator.node.netpol.plan import (
    MARK,
    NodePlan,
    PodPlan,
    PolicyPlan,
    PortMatch,
    RulePlan,
    fit,
)

TABLE = "kgen-netpol"
FAMILY = "ip"
TOP = "KUBE-ROUTER-FORWARD"
COMMON = "KUBE-NWPLCY-COMMON"
SET_MARK = f"meta mark set meta mark | {MARK}"
UNMARKED = f"meta mark & {MARK} != {MARK}"


def _q(text: str) -> str:
    return f'comment "{fit(text, 128)}"'


def render(plan: NodePlan) -> str:
    """The whole transaction: create-if-missing, delete, then the table as it must be."""
    body = [*_maps(plan), *_sets(plan),
            f"\tchain {COMMON} {{",
            f"\t\tct state invalid drop {_q('drop invalid state for pod')}",
            f"\t\tct state established,related accept {_q('rule for stateful firewall for pod')}",
            "\t}",
            f"\tchain {TOP} {{",
            "\t\ttype filter hook forward priority filter; policy accept;",
            "\t\tip daddr vmap @pod-fw-ingress",
            "\t\tip saddr vmap @pod-fw-egress",
            "\t}"]
    for pod in plan.pods:
        body += _pod_chain(pod)
    for policy in plan.policies:
        body += _policy_chain(policy)
    return "\n".join([f"table {FAMILY} {TABLE} {{}}", f"delete table {FAMILY} {TABLE}",
                      f"table {FAMILY} {TABLE} {{",
                      f"\t{_q('kgen NetworkPolicy enforcement (kube-router layout)')}",
                      *body, "}"]) + "\n"


def _maps(plan: NodePlan) -> list[str]:
    out = []
    for direction in ("ingress", "egress"):
        pods = [p for p in plan.pods if p.isolated_by(direction)]
        out.append(f"\tmap pod-fw-{direction} {{")
        out.append("\t\ttype ipv4_addr : verdict")
        if pods:
            out.append("\t\telements = { " + ", ".join(f"{p.pod.ip} : jump {p.chain}"
                                                       for p in pods) + " }")
        out.append("\t}")
    return out


def _set_elements(rule: RulePlan) -> list[str]:
    return [*(rule.peer_ips or ()), *(b.cidr for b in rule.blocks if not b.excepts)]


def _sets(plan: NodePlan) -> list[str]:
    out, named = [], set()
    for policy in plan.policies:
        for rule in policy.rules:
            elements = _set_elements(rule)
            if rule.uses_peer_set and elements and rule.peer_chain not in named:
                named.add(rule.peer_chain)
                out += [f"\tset {rule.peer_chain} {{", "\t\ttype ipv4_addr; flags interval; auto-merge",
                        f"\t\telements = {{ {', '.join(elements)} }}", "\t}"]
    return out


def _pod_chain(pod: PodPlan) -> list[str]:
    ip = pod.pod.ip
    out = [f"\tchain {pod.chain} {{", f"\t\tjump {COMMON}",
           f"\t\tip saddr {ip} ip daddr {ip} accept {_q('a pod always reaches itself')}"]
    for policies, match in ((pod.ingress, f"ip daddr {ip}"), (pod.egress, f"ip saddr {ip}")):
        for policy in policies:
            out.append(f"\t\t{match} jump {policy.chain} {_q(f'run through nw policy {policy.key}')}")
    for direction, match in (("ingress", f"ip daddr {ip}"), ("egress", f"ip saddr {ip}")):
        if pod.isolated_by(direction):
            why = pod.drop_reason(direction)
            out.append(f"\t\t{match} {UNMARKED} drop {_q(why)}")
    return [*out, "\t\tmeta mark set meta mark & 0xfffeffff", "\t}"]


def _port(match: PortMatch) -> str:
    text = f"meta l4proto {match.protocol.lower()}"
    if match.dst is not None:  # a named port: the number it has on this pod
        text = f"ip daddr {match.dst} {text}"
    if match.first is not None:
        text += f" th dport {match.first}-{match.last}" if match.last else f" th dport {match.first}"
    return text


def _peer_matches(direction: str, rule: RulePlan) -> list[str]:
    """Each way the rule's peers can match: its set, and each ipBlock with except."""
    if rule.any_peer:
        return [""]
    field = "ip saddr" if direction == "ingress" else "ip daddr"
    out = [f"{field} @{rule.peer_chain}"] if _set_elements(rule) else []
    for block in rule.blocks:
        if block.excepts:
            out.append(f"{field} {block.cidr} {field} != {{ {', '.join(block.excepts)} }}")
    return out


def _named_egress(rule: RulePlan, what: str) -> list[str]:
    """Egress named ports: one set of `address . port` per protocol, each pair a
    destination pod and the number the name has on it (the pod is the allowed peer)."""
    pairs: dict[str, list[str]] = {}
    for match in rule.ports or ():
        if match.final:
            pairs.setdefault(match.protocol.lower(), []).append(f"{match.dst} . {match.first}")
    return [f"\t\tmeta l4proto {proto} ip daddr . th dport {{ {', '.join(elements)} }} "
            f"{SET_MARK} {what}" for proto, elements in pairs.items()]


def _policy_chain(policy: PolicyPlan) -> list[str]:
    out = [f"\tchain {policy.chain} {{"]
    for rule in policy.rules:
        what = _q(f"{policy.key} {policy.direction} rule {rule.index}")
        peers = _peer_matches(policy.direction, rule)
        out += _named_egress(rule, what)
        for match in rule.ports if rule.ports is not None else [None]:
            if match is not None and match.final:
                continue
            ports = "" if match is None else _port(match)
            out += ["\t\t" + " ".join(p for p in (ports, peer, SET_MARK, what) if p)
                    for peer in peers]
        out.append(f"\t\tmeta mark & {MARK} == {MARK} return")
    return [*out, "\t}"]
