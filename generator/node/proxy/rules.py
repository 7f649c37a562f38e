"""kube-proxy's iptables ruleset (pkg/proxy/iptables) for ClusterIP, NodePort, LoadBalancer
and externalIPs.

`service_port_rules` computes, per service port, the rules it adds to the
top-level chains and the chains it owns (KUBE-SVC/SVL/EXT/FW/SEP). Payload writers:
`write_ruleset` (both tables, top-level chains whole, owned chains of the given
ports) and `write_chains` (only owned chains, for staged full syncs).

Order inside the payload follows iptables-nft-restore 1.8.9's cost model: every
command inserts its chain and its jump target into a sorted linked list walked
from the head, so chains and KUBE-SERVICES/KUBE-NODEPORTS rules are written in
descending order of chain name, where each insert stops at the head. (kube-proxy
writes them in Go map order, which is random: the order carries no meaning.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from generator.node.proxy.naming import sep_chain, svc_chain
from generator.node.proxy.service import Policy, PortInfo, policy

MASQ_MARK = "0x4000"
FILTER_CHAINS = ["KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL",
                 "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"]
NAT_CHAINS = ["KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"]
OWNED_PREFIXES = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-", "KUBE-FW-")
# kube-proxy's largeClusterEndpointsThreshold: above it, endpoint rules carry no comment.
LARGE_CLUSTER_ENDPOINTS = 1000
# kube-proxy's nfacct counters (metrics.go), used where the kernel has nfacct.
LOCALHOST_NODEPORT_COUNTER = "localhost_nps_accepted_pkts"
INVALID_CT_COUNTER = "ct_state_invalid_dropped_pkts"


def comment(text: str) -> str:
    """kube-proxy quotes a comment only when it has spaces."""
    return f'-m comment --comment "{text}"' if " " in text else f"-m comment --comment {text}"


@dataclass
class PortRules:
    """What one service port contributes to the ruleset."""

    info: PortInfo
    order: str  # the chain-name hash: payloads are written in descending order of it
    nat_services: list[str] = field(default_factory=list)
    nat_nodeports: list[str] = field(default_factory=list)
    filter_services: list[str] = field(default_factory=list)
    filter_external: list[str] = field(default_factory=list)
    filter_nodeports: list[str] = field(default_factory=list)  # health check node port ACCEPT
    filter_firewall: list[str] = field(default_factory=list)  # KUBE-PROXY-FIREWALL drops
    chains: dict[str, list[str]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.info.key


def _ladder(chain: str, spn: str, seps: dict[str, str], endpoints: Sequence,
            affinity: int | None, large: bool) -> list[str]:
    """Endpoint i of N taken with probability 1/(N-i); ClientIP affinity first."""
    rules = []
    if affinity is not None:
        for ep in endpoints:
            sep = seps[ep.address]
            note = "" if large else f" {comment(f'{spn} -> {ep.address}')}"
            rules.append(f"-A {chain}{note} -m recent --name {sep} --rcheck --seconds {affinity} "
                         f"--reap -j {sep}")
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        sep = seps[ep.address]
        note = "" if large else f" {comment(f'{spn} -> {ep.address}')}"
        chance = "" if i == n - 1 else (f" -m statistic --mode random --probability "
                                        f"{1.0 / (n - i):.10f}")
        rules.append(f"-A {chain}{note}{chance} -j {sep}")
    return rules


def _sep_rules(spn: str, proto: str, sep: str, ep, affinity: int | None,
               large: bool) -> list[str]:
    note = "" if large else f" {comment(spn)}"
    recent = f" -m recent --name {sep} --set" if affinity is not None else ""
    return [
        # Hairpin: a pod reaching itself through its service must come back via the node.
        f"-A {sep}{note} -s {ep.ip} -j KUBE-MARK-MASQ",
        f"-A {sep}{note}{recent} -m {proto} -p {proto} -j DNAT --to-destination {ep.address}",
    ]


def service_port_rules(info: PortInfo, node: str, cluster_cidr: str,
                       large: bool = False, zone: str = "", nfacct: bool = False,
                       node_ip: str = "") -> PortRules:
    """What one service port adds to the ruleset on `node` (in `zone`, at `node_ip`);
    `nfacct`: the kernel has nfacct, so localhost NodePorts are counted as kube-proxy
    counts them."""
    spn, proto = info.spn, info.protocol
    svc = svc_chain(spn, proto)
    digest = svc[len("KUBE-SVC-"):]  # KUBE-SVC, KUBE-SVL and KUBE-EXT share it
    svl = f"KUBE-SVL-{digest}"
    pol = policy(info, node, zone)
    seps = {ep.address: sep_chain(spn, proto, ep.address) for ep in pol.reachable}
    r = PortRules(info, digest)
    _top_level(r, info, pol, digest, nfacct)
    _policy_chains(r, info, pol, digest, cluster_cidr)
    if _uses_firewall(info, pol):
        r.chains[f"KUBE-FW-{digest}"] = _firewall_chain(info, digest, node_ip)
    if pol.cluster:
        r.chains.setdefault(svc, []).extend(
            _ladder(svc, spn, seps, pol.cluster, info.affinity, large))
    if pol.local:
        r.chains.setdefault(svl, []).extend(
            _ladder(svl, spn, seps, pol.local, info.affinity, large))
    for ep in pol.reachable:
        r.chains[seps[ep.address]] = _sep_rules(spn, proto, seps[ep.address], ep, info.affinity,
                                                large)
    return r


def _no_endpoints(pol: Policy) -> tuple[str, str]:
    return (("has no endpoints", "REJECT") if not pol.has_endpoints
            else ("has no local endpoints", "DROP"))


def _uses_firewall(info: PortInfo, pol: Policy) -> bool:  # kube-proxy's usesFWChain
    return pol.has_endpoints and bool(info.lb_ips) and bool(info.source_ranges)


def _firewall_chain(info: PortInfo, digest: str, node_ip: str) -> list[str]:
    """KUBE-FW-*: sources inside loadBalancerSourceRanges go on to KUBE-EXT-*; what falls
    off the end is not DNATed, and KUBE-PROXY-FIREWALL (filter) drops it."""
    fw, ext = f"KUBE-FW-{digest}", f"KUBE-EXT-{digest}"
    head = f"-A {fw} {comment(f'{info.spn} loadbalancer IP')}"
    rules = [f"{head} -s {cidr} -j {ext}" for cidr in info.source_ranges]
    if node_ip and any(ipaddress.ip_address(node_ip) in ipaddress.ip_network(c)
                       for c in info.source_ranges):
        # A node reaching a VIP it holds itself loops back with the VIP as source.
        rules += [f"{head} -s {lb} -j {ext}" for lb in info.lb_ips]
    last = f"other traffic to {info.spn} will be dropped by KUBE-PROXY-FIREWALL"
    return [*rules, f"-A {fw} {comment(last)}"]


def _top_level(r: PortRules, info: PortInfo, pol: Policy, digest: str, nfacct: bool) -> None:
    """The port's rules in the top-level chains, in kube-proxy's order: cluster IP,
    external IPs, load-balancer IPs, nodePort, health check node port."""
    spn, proto, ip, port = info.spn, info.protocol, info.cluster_ip, info.port
    match, ext = f"-m {proto} -p {proto}", f"KUBE-EXT-{digest}"
    internal = f"KUBE-SVL-{digest}" if info.internal_local else f"KUBE-SVC-{digest}"
    if pol.has_internal:
        r.nat_services.append(f"-A KUBE-SERVICES {comment(f'{spn} cluster IP')} {match} -d {ip} "
                              f"--dport {port} -j {internal}")
    else:
        why, verdict = _no_endpoints(pol)
        r.filter_services.append(f"-A KUBE-SERVICES {comment(f'{spn} {why}')} {match} -d {ip} "
                                 f"--dport {port} -j {verdict}")
    _external_ips(r, info, pol, ext, match)
    _load_balancer_ips(r, info, pol, digest, match)
    if info.health_check_node_port:
        # Accepted whether or not this node has local endpoints: the answer says so.
        r.filter_nodeports.append(
            f"-A KUBE-NODEPORTS {comment(f'{spn} health check node port')} -m tcp -p tcp "
            f"--dport {info.health_check_node_port} -j ACCEPT")
    if info.node_port is None:
        return
    if pol.has_endpoints:
        if nfacct:
            r.nat_nodeports.append(f"-A KUBE-NODEPORTS {comment(spn)} {match} -d 127.0.0.0/8 "
                                   f"--dport {info.node_port} -m nfacct --nfacct-name "
                                   f"{LOCALHOST_NODEPORT_COUNTER} -j {ext}")
        r.nat_nodeports.append(f"-A KUBE-NODEPORTS {comment(spn)} {match} "
                               f"--dport {info.node_port} -j {ext}")
    if not pol.has_external:
        why, verdict = _no_endpoints(pol)
        r.filter_external.append(f"-A KUBE-EXTERNAL-SERVICES {comment(f'{spn} {why}')} "
                                 f"-m addrtype --dst-type LOCAL {match} --dport {info.node_port} "
                                 f"-j {verdict}")


def _external_ips(r: PortRules, info: PortInfo, pol: Policy, ext: str, match: str) -> None:
    for external_ip in info.external_ips:
        dst = f"{match} -d {external_ip} --dport {info.port}"
        if pol.has_endpoints:
            note = comment(f"{info.spn} external IP")
            r.nat_services.append(f"-A KUBE-SERVICES {note} {dst} -j {ext}")
        if not pol.has_external:
            why, verdict = _no_endpoints(pol)
            r.filter_external.append(f"-A KUBE-EXTERNAL-SERVICES {comment(f'{info.spn} {why}')} "
                                     f"{dst} -j {verdict}")


def _load_balancer_ips(r: PortRules, info: PortInfo, pol: Policy, digest: str,
                       match: str) -> None:
    fw = _uses_firewall(info, pol)
    target = f"KUBE-FW-{digest}" if fw else f"KUBE-EXT-{digest}"
    for lb in info.lb_ips:
        dst = f"{match} -d {lb} --dport {info.port}"
        if pol.has_endpoints:
            r.nat_services.append(f"-A KUBE-SERVICES {comment(f'{info.spn} loadbalancer IP')} "
                                  f"{dst} -j {target}")
        if fw:
            note = comment(f"{info.spn} traffic not accepted by KUBE-FW-{digest}")
            r.filter_firewall.append(f"-A KUBE-PROXY-FIREWALL {note} {dst} -j DROP")
    if not pol.has_external:
        why, verdict = _no_endpoints(pol)
        for lb in info.lb_ips:
            r.filter_external.append(f"-A KUBE-EXTERNAL-SERVICES {comment(f'{info.spn} {why}')} "
                                     f"{match} -d {lb} --dport {info.port} -j {verdict}")


def _policy_chains(r: PortRules, info: PortInfo, pol: Policy, digest: str,
                   cluster_cidr: str) -> None:
    """The first rules of the port's KUBE-SVC/SVL chain and its KUBE-EXT chain."""
    spn, proto, ip, port = info.spn, info.protocol, info.cluster_ip, info.port
    svc, svl, ext = f"KUBE-SVC-{digest}", f"KUBE-SVL-{digest}", f"KUBE-EXT-{digest}"
    internal = svl if info.internal_local else svc
    if pol.has_internal:
        # Masquerade off-cluster traffic to the service IP (it may bounce off-node).
        r.chains[internal] = [f"-A {internal} {comment(f'{spn} cluster IP')} -m {proto} "
                              f"-p {proto} -d {ip} --dport {port} ! -s {cluster_cidr} "
                              "-j KUBE-MARK-MASQ"]
    if not (pol.has_endpoints and info.externally_accessible):
        return
    if not info.external_local:
        r.chains[ext] = [
            f"-A {ext} {comment(f'masquerade traffic for {spn} external destinations')} "
            "-j KUBE-MARK-MASQ"]
    else:
        # Pods and the node itself may use any endpoint; outside clients only local
        # ones, and they keep their source address.
        r.chains[ext] = [
            f"-A {ext} {comment(f'pod traffic for {spn} external destinations')} "
            f"-s {cluster_cidr} -j {svc}",
            f"-A {ext} {comment(f'masquerade LOCAL traffic for {spn} external destinations')}"
            " -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
            f"-A {ext} {comment(f'route LOCAL traffic for {spn} external destinations')} "
            f"-m addrtype --src-type LOCAL -j {svc}",
        ]
    if pol.has_external:
        r.chains[ext].append(f"-A {ext} -j {svl if info.external_local else svc}")


def static_filter_rules(nfacct: bool = False) -> list[str]:
    counted = f" -m nfacct --nfacct-name {INVALID_CT_COUNTER}" if nfacct else ""
    return [
        '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" '
        "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        f"-A KUBE-FORWARD -m conntrack --ctstate INVALID{counted} -j DROP",
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark '
        f"{MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]


def static_nat_rules() -> list[str]:
    return [
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}",
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]


NODEPORTS_LAST = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: '
                  'this must be the last rule in this chain" -m addrtype --dst-type LOCAL '
                  "-j KUBE-NODEPORTS")


def _owned(ports: Iterable[PortRules]) -> list[tuple[str, list[str]]]:
    return sorted(((name, rules) for p in ports for name, rules in p.chains.items()), reverse=True)


def write_chains(ports: Iterable[PortRules]) -> str:
    """Only the owned chains of `ports` (nat table): one stage of a staged full sync.
    KUBE-MARK-MASQ, which they jump to, is written too (whole, so it may not exist yet)."""
    owned = _owned(ports)
    lines = ["*nat", *(f":{name} - [0:0]" for name, _ in owned), ":KUBE-MARK-MASQ - [0:0]"]
    for _, rules in owned:
        lines += rules
    lines.append(static_nat_rules()[0])
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# The top-level chains that service ports add rules to, as (table, chain, PortRules field).
TOP_LEVEL = [("filter", "KUBE-SERVICES", "filter_services"),
             ("filter", "KUBE-EXTERNAL-SERVICES", "filter_external"),
             ("filter", "KUBE-NODEPORTS", "filter_nodeports"),
             ("filter", "KUBE-PROXY-FIREWALL", "filter_firewall"),
             ("nat", "KUBE-NODEPORTS", "nat_nodeports"),
             ("nat", "KUBE-SERVICES", "nat_services")]


def dirty_top_level(changed: Iterable[PortRules], old: Iterable[PortRules]
                    ) -> set[tuple[str, str]]:
    """The top-level chains whose rules differ once `old` ports are replaced by `changed`
    ones (ports are compared by key: an old port without a new one was removed)."""
    before = {p.key: p for p in old}
    after = {p.key: p for p in changed}
    dirty = set()
    for table, chain, attr in TOP_LEVEL:
        for key in before.keys() | after.keys():
            if getattr(before.get(key), attr, []) != getattr(after.get(key), attr, []):
                dirty.add((table, chain))
                break
    return dirty


def write_ruleset(ports: Sequence[PortRules], only: Iterable[PortRules] | None = None,
                  stale: Iterable[str] = (), top: set[tuple[str, str]] | None = None,
                  nfacct: bool = False) -> str:
    """The iptables-restore payload for both tables.

    `only`: the ports whose owned chains are written (None: all).
    `stale`: owned chains that exist but are no longer wanted; declared, then deleted.
    `top`: the top-level chains to write whole, with their jumps to every port's chains
    (None: all of them, and the fixed chains too, as every full sync does). kube-proxy
    rewrites them all on every sync; kgen leaves a chain whose rules did not change as it
    is (rewriting KUBE-SERVICES costs most of a partial sync at 10,000 services), which
    puts the same rules in the kernel.
    `nfacct`: the kernel has kube-proxy's nfacct counters (the INVALID drop counts).
    """
    ordered = sorted(ports, key=lambda p: p.order, reverse=True)
    everything = top is None
    lines = ["*filter"]
    if everything:
        lines += [*(f":{c} - [0:0]" for c in FILTER_CHAINS), *static_filter_rules(nfacct)]
    for table, chain, attr in (t for t in TOP_LEVEL if t[0] == "filter"):
        if everything or (table, chain) in (top or set()):
            if not everything:
                lines.append(f":{chain} - [0:0]")
            for p in ordered:
                lines += getattr(p, attr)
    lines.append("COMMIT")
    owned = _owned(ports if only is None else only)
    stale = sorted(stale, reverse=True)
    lines += ["*nat", *(f":{c} - [0:0]" for c in NAT_CHAINS if everything or
                        ("nat", c) in (top or set())),
              *(f":{name} - [0:0]" for name, _ in owned), *(f":{name} - [0:0]" for name in stale)]
    for _, rules in owned:
        lines += rules
    if everything or ("nat", "KUBE-NODEPORTS") in (top or set()):
        for p in ordered:
            lines += p.nat_nodeports
    if everything or ("nat", "KUBE-SERVICES") in (top or set()):
        for p in ordered:
            lines += p.nat_services
        lines.append(NODEPORTS_LAST)
    if everything:
        lines += static_nat_rules()
    lines += [f"-X {name}" for name in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _jump(table: str, src: str, dst: str, comment_text: str, extra: str = "") -> tuple[str, str, str]:
    note = f' -m comment --comment "{comment_text}"' if comment_text else ""
    return (table, src, f"{extra}{note} -j {dst}".strip())


NEW = "-m conntrack --ctstate NEW"
# kube-proxy's iptablesJumpChains, in its order; each is ensured with "prepend", so a
# chain's jumps end up in the reverse of this order.
JUMPS: list[tuple[str, str, str]] = [
    _jump("filter", "INPUT", "KUBE-EXTERNAL-SERVICES",
          "kubernetes externally-visible service portals", NEW),
    _jump("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES",
          "kubernetes externally-visible service portals", NEW),
    _jump("filter", "INPUT", "KUBE-NODEPORTS", "kubernetes health check service ports"),
    _jump("filter", "FORWARD", "KUBE-SERVICES", "kubernetes service portals", NEW),
    _jump("filter", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals", NEW),
    _jump("filter", "FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules"),
    _jump("filter", "INPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", NEW),
    _jump("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", NEW),
    _jump("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", NEW),
    _jump("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals"),
    _jump("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals"),
    _jump("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules"),
]
# kube-proxy's iptablesKubeletJumpChains: kubelet's own KUBE-FIREWALL jumps, which kubelet
# (played by the node agent) puts in place before kube-proxy starts.
KUBELET_JUMPS: list[tuple[str, str, str]] = [
    _jump("filter", "INPUT", "KUBE-FIREWALL", ""),
    _jump("filter", "OUTPUT", "KUBE-FIREWALL", ""),
]


def jump_order(existing: dict[tuple[str, str], list[str]] | None = None,
               ) -> dict[tuple[str, str], list[str]]:
    """The jump rules each built-in chain ends up with after kubelet then kube-proxy
    ensured theirs by prepending (a model of `iptables -C` / `-I chain 1`)."""
    chains: dict[tuple[str, str], list[str]] = {k: list(v) for k, v in (existing or {}).items()}
    for table, chain, rule in [*KUBELET_JUMPS, *JUMPS, *KUBELET_JUMPS]:
        rules = chains.setdefault((table, chain), [])
        if rule not in rules:
            rules.insert(0, rule)
    return chains
