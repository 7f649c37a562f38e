"""kube-proxy's iptables ruleset (v1.28–1.33 layout) for ClusterIP and NodePort.

`service_port_rules` computes, per service port, the rules it adds to the
top-level chains and the chains it owns; `write_ruleset` writes the whole
iptables-restore payload (filter, then nat) in one go, optionally restricted
to the owned chains of changed service ports (a partial sync): top-level
chains are always written whole, unchanged service chains are not declared
and so stay as they are under `--noflush`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from generator.node.contract import ServicePortSpec, ServiceSpec
from generator.node.proxy.endpoints import Endpoint
from generator.node.proxy.naming import (
    NAMESPACE,
    ext_chain,
    sep_chain,
    service_port_name,
    svc_chain,
    svl_chain,
)

MASQ_MARK = "0x4000"
FILTER_CHAINS = ["KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL",
                 "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"]
NAT_CHAINS = ["KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"]
OWNED_PREFIXES = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-")


def comment(text: str) -> str:
    """kube-proxy quotes a comment only when it has spaces."""
    return f'-m comment --comment "{text}"' if " " in text else f"-m comment --comment {text}"


@dataclass
class PortRules:
    """What one service port contributes to the ruleset."""

    key: str  # servicePortName/protocol
    protocol: str
    cluster_ip: str
    endpoints: list[Endpoint]
    node_port: int | None
    nat_services: list[str] = field(default_factory=list)
    nat_nodeports: list[str] = field(default_factory=list)
    filter_services: list[str] = field(default_factory=list)
    filter_external: list[str] = field(default_factory=list)
    chains: dict[str, list[str]] = field(default_factory=dict)

    def fingerprint(self) -> str:
        parts = [self.nat_services, self.nat_nodeports, self.filter_services,
                 self.filter_external, sorted(self.chains.items())]
        return hashlib.sha256(repr(parts).encode()).hexdigest()


def _ladder(chain: str, spn: str, proto: str, endpoints: list[Endpoint], affinity: int | None,
            ) -> list[str]:
    """Endpoint i of N taken with probability 1/(N-i); ClientIP affinity first."""
    rules = []
    if affinity is not None:
        for ep in endpoints:
            sep = sep_chain(spn, proto, ep.address)
            rules.append(f"-A {chain} {comment(f'{spn} -> {ep.address}')} -m recent --name {sep} "
                         f"--rcheck --seconds {affinity} --reap -j {sep}")
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        sep = sep_chain(spn, proto, ep.address)
        chance = "" if i == n - 1 else (f" -m statistic --mode random --probability "
                                        f"{1.0 / (n - i):.10f}")
        rules.append(f"-A {chain} {comment(f'{spn} -> {ep.address}')}{chance} -j {sep}")
    return rules


def _sep_rules(spn: str, proto: str, ep: Endpoint, affinity: int | None) -> list[str]:
    sep = sep_chain(spn, proto, ep.address)
    recent = f" -m recent --name {sep} --set" if affinity is not None else ""
    return [
        # Hairpin: a pod reaching itself through its service must come back via the node.
        f"-A {sep} {comment(spn)} -s {ep.ip} -j KUBE-MARK-MASQ",
        f"-A {sep} {comment(spn)}{recent} -m {proto} -p {proto} -j DNAT --to-destination "
        f"{ep.address}",
    ]


def service_port_rules(service: ServiceSpec, port: ServicePortSpec, endpoints: list[Endpoint],
                       node: str, cluster_cidr: str) -> PortRules:
    spn = service_port_name(service["name"], port["name"], service.get("namespace", NAMESPACE))
    proto = port["protocol"].lower()
    ip, svc_port = service["clusterIP"], port["port"]
    node_port = port.get("nodePort") if service["type"] == "NodePort" else None
    affinity = service["sessionAffinityTimeout"] if service["sessionAffinity"] == "ClientIP" else None
    r = PortRules(f"{spn}/{proto}", proto, ip, endpoints, node_port)
    match = f"-m {proto} -p {proto}"
    svc = svc_chain(spn, proto)
    if endpoints:
        r.nat_services.append(f"-A KUBE-SERVICES {comment(f'{spn} cluster IP')} {match} -d {ip} "
                              f"--dport {svc_port} -j {svc}")
        r.chains[svc] = [f"-A {svc} {comment(f'{spn} cluster IP')} {match} -d {ip} "
                         f"--dport {svc_port} ! -s {cluster_cidr} -j KUBE-MARK-MASQ",
                         *_ladder(svc, spn, proto, endpoints, affinity)]
        for ep in endpoints:
            r.chains[sep_chain(spn, proto, ep.address)] = _sep_rules(spn, proto, ep, affinity)
    else:
        r.filter_services.append(f"-A KUBE-SERVICES {comment(f'{spn} has no endpoints')} {match} "
                                 f"-d {ip} --dport {svc_port} -j REJECT")
    if node_port is not None:
        _node_port_rules(r, service, spn, node, cluster_cidr, affinity)
    return r


def _node_port_rules(r: PortRules, service: ServiceSpec, spn: str, node: str,
                     cluster_cidr: str, affinity: int | None) -> None:
    proto, match = r.protocol, f"-m {r.protocol} -p {r.protocol}"
    local_match = f"-m addrtype --dst-type LOCAL {match} --dport {r.node_port}"
    if not r.endpoints:
        r.filter_external.append(f"-A KUBE-EXTERNAL-SERVICES {comment(f'{spn} has no endpoints')} "
                                 f"{local_match} -j REJECT")
        return
    ext, svc = ext_chain(spn, proto), svc_chain(spn, proto)
    r.nat_nodeports.append(f"-A KUBE-NODEPORTS {comment(spn)} {match} --dport {r.node_port} "
                           f"-j {ext}")
    if service["externalTrafficPolicy"] != "Local":
        r.chains[ext] = [
            f"-A {ext} {comment(f'masquerade traffic for {spn} external destinations')} "
            "-j KUBE-MARK-MASQ",
            f"-A {ext} -j {svc}",
        ]
        return
    # Local: pods and the node itself may use any endpoint; outside clients only local
    # ones, and they keep their source address.
    r.chains[ext] = [
        f"-A {ext} {comment(f'pod traffic for {spn} external destinations')} "
        f"-s {cluster_cidr} -j {svc}",
        f"-A {ext} {comment(f'masquerade LOCAL traffic for {spn} external destinations')} "
        "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
        f"-A {ext} {comment(f'route LOCAL traffic for {spn} external destinations')} "
        f"-m addrtype --src-type LOCAL -j {svc}",
    ]
    local = [ep for ep in r.endpoints if ep.node == node]
    if not local:
        r.filter_external.append(f"-A KUBE-EXTERNAL-SERVICES "
                                 f"{comment(f'{spn} has no local endpoints')} {local_match} -j DROP")
        return
    svl = svl_chain(spn, proto)
    r.chains[ext].append(f"-A {ext} -j {svl}")
    r.chains[svl] = _ladder(svl, spn, proto, local, affinity)


def static_filter_rules() -> list[str]:
    return [
        '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" '
        "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
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


def write_ruleset(ports: list[PortRules], only: set[str] | None = None,
                  stale: Iterable[str] = ()) -> str:
    """The iptables-restore payload for both tables.

    `only`: keys of the service ports whose owned chains are written (None: all).
    `stale`: owned chains that exist but are no longer wanted; declared, then deleted.
    """
    lines = ["*filter", *(f":{c} - [0:0]" for c in FILTER_CHAINS), *static_filter_rules()]
    for p in ports:
        lines += p.filter_services
    for p in ports:
        lines += p.filter_external
    lines.append("COMMIT")
    written = [p for p in ports if only is None or p.key in only]
    owned = [(name, rules) for p in written for name, rules in p.chains.items()]
    stale = sorted(stale)
    lines += ["*nat", *(f":{c} - [0:0]" for c in NAT_CHAINS),
              *(f":{name} - [0:0]" for name, _ in owned), *(f":{name} - [0:0]" for name in stale)]
    for p in ports:
        lines += p.nat_nodeports
    for p in ports:
        lines += p.nat_services
    lines.append(NODEPORTS_LAST)
    lines += static_nat_rules()
    for _, rules in owned:
        lines += rules
    lines += [f"-X {name}" for name in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# Jump rules from the built-in chains, ensured with `iptables -C/-I` on full syncs.
JUMPS: list[tuple[str, str, str]] = [
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
                        'firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" '
                        "-j KUBE-NODEPORTS"),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes '
                        'externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "INPUT", "-j KUBE-FIREWALL"),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load '
                          'balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service '
                          'portals" -j KUBE-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes '
                          'externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load '
                         'balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service '
                         'portals" -j KUBE-SERVICES'),
    ("filter", "OUTPUT", "-j KUBE-FIREWALL"),
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" '
                           "-j KUBE-POSTROUTING"),
]
