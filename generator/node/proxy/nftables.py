"""kube-proxy's nftables mode (pkg/proxy/nftables): rules and the sync loop.

Everything lives in table `ip kube-proxy`: base chains hooked into netfilter,
the `service-ips` / `service-nodeports` verdict maps that dispatch to one chain
per service port (`service-HASH-ns/svc/proto/port`, with `external-` and
`local-` chains for the traffic policies), one chain per endpoint
(`endpoint-HASH-ns/svc/proto/port__ip/port`) chosen by `numgen random mod N
vmap`, and the `no-endpoint-services` / `no-endpoint-nodeports` maps that
drop or reject what has no endpoint. Each sync is an `nft -f` transaction: a
full one rebuilds the table's fixed parts and every map, a partial one only
what changed (map elements are diffed, as kube-proxy's nftElementStorage does).

Scale: a transaction that creates many `numgen ... vmap {...}` rules (each one an
anonymous map the kernel binds by walking the transaction) costs the square of
its size, so service and endpoint chains go in transactions of at most `STAGE`
service ports before the transaction that points the maps at them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from generator.node.proxy.loop import (
    FULL_SYNC_PERIOD,
    MIN_SYNC_PERIOD,
    SYNC_PERIOD,
    BaseProxier,
    Runner,
    chunks,
    run_command,
)
from generator.node.proxy.naming import nft_endpoint_base, nft_port_base
from generator.node.proxy.service import PortInfo, policy

log = logging.getLogger("kgen.proxy")

TABLE = "ip kube-proxy"
TABLE_LINE = f'add table {TABLE} {{ comment "rules for kube-proxy" ; }}'
MASQ_MARK = "0x4000"
STAGE = 1000  # service ports per staged transaction (see the benchmark)

# Base chains: name, type, hook, priority (filter before DNAT at dstnat-10, filter at 0).
BASE_CHAINS = [
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0),
    ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
]
# Regular chains jumped to from a base chain: (destination, source, match), in order.
JUMP_CHAINS = [
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    ("firewall-check", "filter-prerouting-pre-dnat", "ct state new"),
    ("firewall-check", "filter-output-pre-dnat", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output", "ct state new"),
]
CONTAINERS = {  # name: "set" | "map", flushed by every full sync
    "cluster-ips": "set", "service-ips": "map", "firewall-ips": "map",
    "no-endpoint-services": "map", "no-endpoint-nodeports": "map", "service-nodeports": "map",
}


def _is_service_chain(name: str) -> bool:
    return "/" in name  # every per-service and per-endpoint chain name has one


@dataclass
class NftPort:
    """What one service port contributes to the table."""

    info: PortInfo
    chains: dict[str, list[str]] = field(default_factory=dict)  # chain: rules
    sets: dict[str, str] = field(default_factory=dict)  # affinity set: its spec
    elements: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # (container, key): (value, comment); value "" for a set

    @property
    def key(self) -> str:
        return self.info.key


def _dispatch(chain: str, info: PortInfo, endpoints: tuple, names: dict[str, str]) -> list[str]:
    rules = []
    if info.affinity is not None:
        for ep in endpoints:
            base = names[ep.address]
            rules.append(f"ip saddr @affinity-{base} goto endpoint-{base}")
    vmap = " , ".join(f"{i} : goto endpoint-{names[ep.address]}" for i, ep in enumerate(endpoints))
    rules.append(f"numgen random mod {len(endpoints)} vmap {{ {vmap} }}")
    return rules


def service_port_rules(info: PortInfo, node: str, cluster_cidr: str) -> NftPort:
    spn, proto = info.spn, info.protocol
    base = nft_port_base(info.namespace, info.service, proto, info.port_name)
    cluster, local, external = f"service-{base}", f"local-{base}", f"external-{base}"
    pol = policy(info, node)
    names = {ep.address: nft_endpoint_base(info.namespace, info.service, proto, info.port_name,
                                           ep.ip, ep.port) for ep in pol.reachable}
    r = NftPort(info)
    internal = local if info.internal_local else cluster
    frontend = f"{info.cluster_ip} . {proto} . {info.port}"

    r.elements[("cluster-ips", info.cluster_ip)] = ("", "")
    if pol.has_internal:
        r.elements[("service-ips", frontend)] = (f"goto {internal}", "")
    else:
        verdict = "goto reject-chain" if not pol.has_endpoints else "drop"
        r.elements[("no-endpoint-services", frontend)] = (verdict, spn)
    if info.node_port is not None:
        node_port = f"{proto} . {info.node_port}"
        if pol.has_endpoints:
            r.elements[("service-nodeports", node_port)] = (f"goto {external}", "")
        if not pol.has_external:
            verdict = "goto reject-chain" if not pol.has_endpoints else "drop"
            r.elements[("no-endpoint-nodeports", node_port)] = (verdict, spn)

    for ep in pol.reachable:
        r.chains[f"endpoint-{names[ep.address]}"] = []
    if pol.cluster:
        r.chains[cluster] = []
    if pol.local:
        r.chains[local] = []
    if pol.has_endpoints and info.externally_accessible:
        r.chains[external] = []

    if pol.has_internal:
        # Masquerade off-cluster traffic to the service IP (it may bounce off-node).
        r.chains[internal].append(f"ip daddr {info.cluster_ip} ip saddr != {cluster_cidr} "
                                  "jump mark-for-masquerade")
    if external in r.chains:
        if not info.external_local:
            r.chains[external].append("jump mark-for-masquerade")
        else:
            r.chains[external] += [
                f'ip saddr {cluster_cidr} goto {cluster} comment "short-circuit pod traffic"',
                'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
                f'fib saddr type local goto {cluster} comment "short-circuit local traffic"',
            ]
        if pol.has_external:
            r.chains[external].append(f"goto {local if info.external_local else cluster}")
    if info.affinity is not None:
        for ep in pol.reachable:
            r.sets[f"affinity-{names[ep.address]}"] = (
                f"{{ type ipv4_addr ; flags dynamic,timeout ; timeout {info.affinity}s ; }}")
    if pol.cluster:
        r.chains[cluster] += _dispatch(cluster, info, pol.cluster, names)
    if pol.local:
        r.chains[local] += _dispatch(local, info, pol.local, names)
    for ep in pol.reachable:
        chain = f"endpoint-{names[ep.address]}"
        r.chains[chain].append(f"ip saddr {ep.ip} jump mark-for-masquerade")
        if info.affinity is not None:
            r.chains[chain].append(f"update @affinity-{names[ep.address]} {{ ip saddr }}")
        r.chains[chain].append(f"meta l4proto {proto} dnat to {ep.address}")
    return r


# ---- transaction text

def _element(container: str, key: str, value: str, note: str) -> str:
    text = key + (f' comment "{note}"' if note else "") + (f" : {value}" if value else "")
    return f"{container} {{ {text} }}"


def setup_lines(node_ip: str, service_cidr: str | None, first: bool) -> list[str]:
    """kube-proxy's setupNFTables: the table's fixed parts, rebuilt by every full sync."""
    t = TABLE
    out = [TABLE_LINE]
    if first:
        # Once: recreate the base chains, so that changed properties (priorities) apply.
        for name, *_ in BASE_CHAINS:
            out += [f"add chain {t} {name}", f"delete chain {t} {name}"]
    for name, kind, hook, prio in BASE_CHAINS:
        out += [f"add chain {t} {name} {{ type {kind} hook {hook} priority {prio} ; }}",
                f"flush chain {t} {name}"]
    created: set[str] = set()

    def ensure(chain: str) -> None:
        if chain not in created:
            created.add(chain)
            out.extend([f"add chain {t} {chain}", f"flush chain {t} {chain}"])

    for dst, src, match in JUMP_CHAINS:
        ensure(dst)
        out.append(f"add rule {t} {src} {match + ' ' if match else ''}jump {dst}")
    for chain in ("services", "cluster-ips-check", "masquerading", "mark-for-masquerade"):
        ensure(chain)
    out += [
        f"add rule {t} mark-for-masquerade mark set mark or {MASQ_MARK}",
        f"add rule {t} masquerading mark and {MASQ_MARK} == 0 return",
        f"add rule {t} masquerading mark set mark xor {MASQ_MARK}",
        f"add rule {t} masquerading masquerade fully-random",
        f'add set {t} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
        f"add rule {t} cluster-ips-check ip daddr @cluster-ips reject "
        'comment "Reject traffic to invalid ports of ClusterIPs"',
    ]
    if service_cidr:
        out.append(f"add rule {t} cluster-ips-check ip daddr {{ {service_cidr} }} drop "
                   'comment "Drop traffic to unallocated ClusterIPs"')
    out += [
        # NodePorts on the node's IP (kube-proxy's default --nodeport-addresses: primary).
        f'add set {t} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort '
        'traffic" ; }',
        f"flush set {t} nodeport-ips",
        f"add element {t} nodeport-ips {{ {node_ip} }}",
        f"add map {t} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : "
        'verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }',
        f"add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
        f'add chain {t} reject-chain {{ comment "helper for @no-endpoint-services / '
        '@no-endpoint-nodeports" ; }',
        f"flush chain {t} reject-chain",
        f"add rule {t} reject-chain reject",
        f"add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport "
        "vmap @no-endpoint-services",
        f"add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport "
        "vmap @no-endpoint-nodeports",
        f"add map {t} firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "destinations that are subject to LoadBalancerSourceRanges" ; }',
    ]
    ensure("firewall-check")
    out += [
        f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        f"add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        f"add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; "
        'comment "NodePort traffic" ; }',
        f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} services ip daddr @nodeport-ips meta l4proto . th dport "
        "vmap @service-nodeports",
    ]
    out += [f"flush {kind} {t} {name}" for name, kind in CONTAINERS.items()]
    return out


def chain_lines(ports: Iterable[NftPort]) -> list[str]:
    """Affinity sets, then each owned chain created (or emptied) and filled."""
    out = []
    for p in ports:
        for name, spec in p.sets.items():
            out.append(f"add set {TABLE} {name} {spec}")
        for name, rules in p.chains.items():
            out += [f"add chain {TABLE} {name}", f"flush chain {TABLE} {name}"]
            out += [f"add rule {TABLE} {name} {rule}" for rule in rules]
    return out


def element_lines(old: dict[tuple[str, str], tuple[str, str]],
                  new: dict[tuple[str, str], tuple[str, str]]) -> list[str]:
    """From the map and set elements `old` to `new` (nftElementStorage's diff)."""
    out = []
    for (container, key), (value, note) in new.items():
        was = old.get((container, key))
        if was == (value, note):
            continue
        if was is not None:
            out.append(f"delete element {TABLE} {container} {{ {key} }}")
        out.append(f"add element {TABLE} {_element(container, key, value, note)}")
    for container, key in old.keys() - new.keys():
        out.append(f"delete element {TABLE} {container} {{ {key} }}")
    return out


def full_transaction(ports: list[NftPort], node_ip: str, service_cidr: str | None,
                     first: bool = True) -> str:
    """One whole ruleset from nothing (what the golden tests compare)."""
    elements = {k: v for p in ports for k, v in p.elements.items()}
    lines = [*setup_lines(node_ip, service_cidr, first), *chain_lines(ports),
             *element_lines({}, elements)]
    return "\n".join(lines) + "\n"


class NFTablesProxier(BaseProxier):
    mode = "nftables"

    def __init__(self, node_name: str, node_ip: str, cluster_cidr: str,
                 service_cidr: str | None = None, nft: tuple[str, ...] = ("nft",),
                 runner: Runner = run_command, min_sync_period: float = MIN_SYNC_PERIOD,
                 sync_period: float = SYNC_PERIOD, stage: int = STAGE) -> None:
        super().__init__(node_name, node_ip, cluster_cidr, runner, min_sync_period, sync_period)
        self.service_cidr = service_cidr
        self.nft_cmd = nft
        self.stage = stage
        self.cache: dict[str, NftPort] = {}
        self.elements: dict[tuple[str, str], tuple[str, str]] = {}
        self.owners: dict[tuple[str, str], int] = {}  # element: how many ports want it
        self.chains: set[str] = set()  # service and endpoint chains wanted in the table
        self.sets: set[str] = set()  # affinity sets in the table
        self.stale: dict[str, float] = {}  # flushed chains to delete a second later
        self.flushed = False
        self.last_sync_at = time.monotonic()

    def periodic(self, now: float) -> bool:
        """kube-proxy's nftables mode syncs at least hourly (a partial sync: no canary)."""
        return now - self.last_sync_at >= FULL_SYNC_PERIOD

    def nft(self, text: str) -> tuple[bool, str, float]:
        started = time.monotonic()
        result = self.run_cmd([*self.nft_cmd, "-f", "-"], input=text)
        return result.returncode == 0, result.stderr.strip(), time.monotonic() - started

    def sync_once(self, full: bool = False) -> bool:
        started = self.last_sync_at = time.monotonic()
        infos, synced = self.snapshot()
        full = full or self.need_full
        kernel = 0.0
        # Chains flushed at least a second ago are no longer referenced: delete them
        # (kernels before 6.2 notice a deleted map element's chain reference late).
        old = [c for c, at in self.stale.items() if started - at >= 1.0]
        if old:
            ok, err, seconds = self.nft("".join(f"delete chain {TABLE} {c}\n" for c in old))
            kernel += seconds
            for chain in old:
                del self.stale[chain]
            if not ok:
                log.warning("deleting stale chains: %s (retried later)", err)
                self.stale.update(dict.fromkeys(old, started))
        cache = self.cache
        ports: list[NftPort] = []
        changed: list[NftPort] = []
        for info in infos:
            cached = cache.get(info.key)
            if cached is not None and (cached.info is info or cached.info == info):
                ports.append(cached)
                if full:
                    changed.append(cached)
                continue
            rules = service_port_rules(info, self.node, self.cluster_cidr)
            ports.append(rules)
            changed.append(rules)
        removed = [cache[k] for k in cache.keys() - {p.key for p in ports}]
        if full:
            old_ports = list(cache.values())
            chains = {name for p in ports for name in p.chains}
            sets = {name for p in ports for name in p.sets}
            stale = self.chains - chains
            dropped_sets = self.sets - sets
            owners: dict[tuple[str, str], int] = {}
            for p in ports:
                for key in p.elements:
                    owners[key] = owners.get(key, 0) + 1
            elements = {k: v for p in ports for k, v in p.elements.items()}
            element_diff = element_lines({}, elements)
        else:
            # Only what changed and removed ports owned can have changed.
            old_ports = [cache[p.key] for p in changed if p.key in cache] + removed
            new_chains = {name for p in changed for name in p.chains}
            stale = {name for p in old_ports for name in p.chains} - new_chains
            chains = (self.chains - stale) | new_chains
            new_sets = {name for p in changed for name in p.sets}
            dropped_sets = {name for p in old_ports for name in p.sets} - new_sets
            sets = (self.sets - dropped_sets) | new_sets
            owners = dict(self.owners)
            elements = dict(self.elements)
            for p in old_ports:
                for key in p.elements:
                    owners[key] -= 1
            provided = {}
            for p in changed:
                for key, value in p.elements.items():
                    owners[key] = owners.get(key, 0) + 1
                    provided[key] = value
            affected = {key for p in old_ports for key in p.elements} | provided.keys()
            before = {k: self.elements[k] for k in affected if k in self.elements}
            for key in affected:
                if owners.get(key, 0) <= 0:
                    owners.pop(key, None)
                    elements.pop(key, None)
                elif key in provided:
                    elements[key] = provided[key]
            element_diff = element_lines(before, {k: elements[k] for k in affected
                                                  if k in elements})
        if not self.flushed:
            # What an earlier run left (kube-proxy lists the chains on every sync; kgen
            # knows what it wrote and lists once, at its first sync: a listing of
            # 60,000 chains costs seconds).
            listed = self.list_table()
            if listed is not None:
                stale |= listed[0] - chains
                dropped_sets |= listed[1] - sets
        stale -= self.stale.keys()  # flushed already, deleted soon
        staged, final = ([], changed) if len(changed) <= self.stage else (changed, [])
        for batch in chunks(staged, self.stage):
            # The table and the chain every endpoint chain jumps to may not exist yet.
            head = [TABLE_LINE, f"add chain {TABLE} mark-for-masquerade"]
            ok, err, seconds = self.nft("\n".join([*head, *chain_lines(batch)]) + "\n")
            kernel += seconds
            if not ok:
                return self.failed(f"nft: {err}")
        lines = []
        if full:
            lines += setup_lines(self.node_ip, self.service_cidr, not self.flushed)
        lines += chain_lines(final)
        lines += element_diff
        lines += [f"flush chain {TABLE} {c}" for c in sorted(stale)]
        lines += [f"delete set {TABLE} {s}" for s in sorted(dropped_sets)]
        if lines:
            ok, err, seconds = self.nft("\n".join(lines) + "\n")
            kernel += seconds
            if not ok:
                return self.failed(f"nft: {err}")
        now = time.monotonic()
        for chain in stale:
            self.stale.setdefault(chain, now)
        self.flushed = self.flushed or full
        if full:
            self.cache = {p.key: p for p in ports}
        else:
            for p in removed:
                del cache[p.key]
            cache.update((p.key, p) for p in changed)
        self.elements, self.owners, self.chains, self.sets = elements, owners, chains, sets
        if full or any(p.info.protocol == "udp" for p in [*changed, *removed]):
            self.cleanup_udp(p.info for p in ports)
        self.synced_ok(synced, started)
        total = time.monotonic() - started
        self.timing = {"total": total, "kernel": kernel, "python": total - kernel}
        log.info("%s sync: %d service ports, %d rewritten (%d staged), %d stale, %.1f ms",
                 "full" if full else "partial", len(ports), len(changed), len(staged),
                 len(stale), self.last_sync_ms)
        return True

    def list_table(self) -> tuple[set[str], set[str]] | None:
        """The service chains and affinity sets now in the table (None: no table yet).
        (`list chains` and `list sets` print no rules and no elements, unlike `list table`.)"""
        chains = self.run_cmd([*self.nft_cmd, "list", "chains", "ip"])
        sets = self.run_cmd([*self.nft_cmd, "-t", "list", "sets", "ip"])
        if chains.returncode != 0 or sets.returncode != 0:
            return None
        ours = chains.stdout.partition(f"table {TABLE} {{")[2].partition("\n}")[0]
        names = set(re.findall(r"^\s*chain (\S+) \{", ours, re.M))
        ours = sets.stdout.partition(f"table {TABLE} {{")[2].partition("\n}")[0]
        return ({c for c in names if _is_service_chain(c)},
                set(re.findall(r"^\s*set (affinity-\S+) \{", ours, re.M)))
