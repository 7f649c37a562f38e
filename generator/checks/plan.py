"""Which checks a lab gets: derived from its cluster state, so any lab fits.

A check names what it sends, from where, to what, what it expects, and the
datapath parts it depends on (`bridge:<node>`, `veth:<pod>`, `nat:<node>`,
`overlay:<node>`). Breaking one part must fail exactly the checks that list it.

The plan grows with the lab, never with its square of pods:

- Pod to pod samples the matrix (`pod_matrix`): every pair of nodes once,
  every node with two pods once inside it, and every pod at least once as
  source and once as destination. It is deterministic (node and pod order of
  the lab file), so a run can be reproduced.
- A spreading check (a service must reach every backend) sends up to
  `spread_requests(n)` requests, stopping as soon as every backend has
  answered: with n backends drawn uniformly at random (kube-proxy's
  `statistic` ladder, nftables' `numgen random`), the chance that a healthy
  lab still misses one is at most n(1-1/n)^r <= FALSE_FAILURE (the union bound
  of the coupon collector). Stopping early does not change that chance: the
  check fails only when some backend is unseen after all r requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from generator.node.contract import service_selects

FALSE_FAILURE = 1e-6  # per check: the chance that a healthy lab fails a random-draw check
AFFINITY_REQUESTS = 10
SNAT_DRAWS = 4  # /clientip requests through a NodePort: each shows the source the backend saw
UDP_DRAWS = 8  # datagrams to a UDP ClusterIP: every answer must come from a backend


def spread_requests(n: int, p: float = FALSE_FAILURE) -> int:
    """Fewest requests r with n(1-1/n)^r <= p: n uniform backends all answer but with chance p."""
    if n <= 1:
        return 1
    r = max(1, math.ceil(math.log(p / n) / math.log1p(-1 / n)))
    while r > 1 and miss_probability(n, r - 1) <= p:  # float rounding: the least such r
        r -= 1
    while miss_probability(n, r) > p:
        r += 1
    return r


def miss_probability(n: int, r: int) -> float:
    """Upper bound on P(some of n uniform backends unseen after r requests)."""
    return 0.0 if n <= 1 else min(1.0, n * (1 - 1 / n) ** r)


def hit_requests(n: int, p: float = FALSE_FAILURE) -> int:
    """Fewest requests r with (1-1/n)^r <= p: one given backend of n answers but with chance p."""
    if n <= 1:
        return 1
    r = max(1, math.ceil(math.log(p) / math.log1p(-1 / n)))
    while r > 1 and (1 - 1 / n) ** (r - 1) <= p:
        r -= 1
    while (1 - 1 / n) ** r > p:
        r += 1
    return r


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
    n = len(nodes)
    pairs: list[tuple[int, int]] = [(i, i) for i in range(n) if len(nodes[i]) >= 2]
    for d in range(1, n // 2 + 1):
        for i in range(n):
            if 2 * d == n and i >= d:
                continue  # the pair {i, i+N/2} once, from the first half
            pairs.append((i, (i + d) % n))
    next_src, next_dst = [0] * n, [0] * n
    chosen: list[tuple[str, str]] = []
    for s, t in pairs:
        src = nodes[s][next_src[s] % len(nodes[s])]
        next_src[s] += 1
        dst = nodes[t][next_dst[t] % len(nodes[t])]
        next_dst[t] += 1
        if dst == src:  # same node: the next pod in turn
            dst = nodes[t][next_dst[t] % len(nodes[t])]
            next_dst[t] += 1
        chosen.append((src, dst))
    node_of = {pod: i for i, pods in enumerate(nodes) for pod in pods}
    everyone = [pod for pods in nodes for pod in pods]

    def other(pod: str) -> str | None:
        """A partner for an extra check: the next node's first pod, else a pod alongside."""
        i = node_of[pod]
        if n > 1:
            return nodes[(i + 1) % n][0]
        return next((p for p in nodes[i] if p != pod), None)

    sources = [p for p in everyone if p not in {s for s, _ in chosen}]
    targets = [p for p in everyone if p not in {t for _, t in chosen}]
    for src in sources:
        partner = next((t for t in targets if t != src), None)
        if partner is not None:
            targets.remove(partner)
        else:
            partner = other(src)
        if partner is not None:
            chosen.append((src, partner))
    for dst in targets:
        partner = other(dst)
        if partner is not None:
            chosen.append((partner, dst))
    return chosen


def _names(pods: list[str], shown: int = 4) -> str:
    pods = sorted(pods)
    if len(pods) <= shown:
        return ", ".join(pods)
    return f"{len(pods)} backends ({', '.join(pods[:shown - 1])}, …)"


@dataclass(frozen=True)
class Check:
    id: str
    kind: str  # pod-to-pod | vxlan-wire | clusterip | clusterip-udp | conntrack | ...
    what: str
    source: str  # a pod or client name
    target: str  # "ip:port" or a pod name
    expected: str
    depends: frozenset[str] = field(default_factory=frozenset)
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _serves(pod: dict[str, Any]) -> bool:
    """Pods with a test-server container answer /hostname and /clientip."""
    return any(not c.get("command") for c in pod["containers"])


def _path(cluster: dict[str, Any], *pods: dict[str, Any]) -> set[str]:
    """Datapath parts a packet between these pods crosses."""
    parts = {f"veth:{p['name']}" for p in pods} | {f"bridge:{p['node']}" for p in pods}
    nodes = {p["node"] for p in pods}
    if len(nodes) > 1:
        parts |= {f"overlay:{n}" for n in nodes}
    return parts


class Planner:
    def __init__(self, cluster: dict[str, Any]) -> None:
        self.cluster = cluster
        self.servers = [p for p in cluster["pods"] if _serves(p)]
        self.node_ip = {n["name"]: n["ip"] for n in cluster["nodes"]}
        self.gateway = {n["name"]: n["gateway"] for n in cluster["nodes"]}
        self.conntrack_planned = False

    def plan(self) -> list[Check]:
        checks = self.pod_to_pod() + self.wire()
        for svc in self.cluster["services"]:
            if svc["clusterIP"] != "None":  # headless: nothing of kube-proxy's to check
                checks += self.service(svc)
        return checks

    # ---- pods

    def pod_to_pod(self) -> list[Check]:
        by_node: dict[str, list[str]] = {n["name"]: [] for n in self.cluster["nodes"]}
        for pod in self.servers:
            by_node.setdefault(pod["node"], []).append(pod["name"])
        pods = {p["name"]: p for p in self.servers}
        return [self._pod_pair(pods[a], pods[b]) for a, b in pod_matrix(list(by_node.values()))]

    def _pod_pair(self, a: dict[str, Any], b: dict[str, Any]) -> Check:
        where = "same node" if a["node"] == b["node"] else "across nodes"
        return Check(f"pod-to-pod:{a['name']}->{b['name']}", "pod-to-pod",
                     f"pod to pod, {where} ({a['node']} → {b['node']})", a["name"], b["name"],
                     "answers; sees the source pod's own IP", frozenset(_path(self.cluster, a, b)))

    def wire(self) -> list[Check]:
        """What crosses the node network between two nodes' pods."""
        first_by_node: dict[str, dict[str, Any]] = {}
        for pod in self.servers:
            first_by_node.setdefault(pod["node"], pod)
        if len(first_by_node) < 2:
            return []
        a, b = list(first_by_node.values())[:2]
        vx = self.cluster["vxlan"]
        if self.cluster["backend"] == "vxlan":
            expected = (f"UDP {self.node_ip[a['node']]} → {self.node_ip[b['node']]}:{vx['port']} "
                        f"(VXLAN, VNI {vx['vni']})")
        else:
            expected = f"pod IPs on the wire between {a['node']} and {b['node']} (host-gw)"
        depends = frozenset(_path(self.cluster, a, b))
        payload = self.cluster["mtu"] - 28  # IPv4 20 + ICMP 8
        return [
            Check(f"wire:{a['node']}->{b['node']}", "wire", "the overlay on the node network",
                  a["name"], b["name"], expected, depends,
                  {"backend": self.cluster["backend"], "port": vx["port"],
                   "capture_node": a["node"], "src_ip": self.node_ip[a["node"]],
                   "dst_ip": self.node_ip[b["node"]]}),
            Check(f"mtu:{a['name']}->{b['name']}", "mtu", "a full-size packet across nodes",
                  a["name"], b["name"], f"a {payload}-byte DF ping crosses (pod MTU "
                  f"{self.cluster['mtu']})", depends, {"payload": payload}),
        ]

    # ---- services

    def service(self, svc: dict[str, Any]) -> list[Check]:
        backends = [p for p in self.servers if service_selects(svc, p)]
        if not backends:
            return self._no_endpoints(svc)
        checks = []
        tcp = next((p for p in svc["ports"] if p["protocol"] == "TCP"), None)
        sources = self._sources(backends)

        def reached(source: dict[str, Any]) -> list[dict[str, Any]]:
            """internalTrafficPolicy Local: a pod reaches only its own node's endpoints."""
            if svc.get("internalTrafficPolicy") != "Local":
                return backends
            return [b for b in backends if b["node"] == source["node"]]

        for source in sources if tcp else []:
            if reached(source):
                checks += self._cluster_ip(svc, tcp, source, reached(source))  # type: ignore[arg-type]
            else:
                checks.append(self._no_local_endpoint(svc, tcp, source))  # type: ignore[arg-type]
        served = [s for s in sources if reached(s)]
        for udp in (p for p in svc["ports"] if p["protocol"] == "UDP") if served else []:
            checks.append(self._udp(svc, udp, served[0], reached(served[0])))
        if tcp and served and svc["sessionAffinity"] == "ClientIP":
            checks.append(self._affinity(svc, tcp, served[0], reached(served[0])))
        elif tcp:  # with affinity a pod may be pinned to another backend: no hairpin check
            checks.append(self._hairpin(svc, tcp, reached(backends[0])))
        if svc["type"] == "NodePort":
            checks += self._node_ports(svc, backends)
        return checks

    def _sources(self, backends: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A client pod on a node without backends, and one on a node with one."""
        backend_nodes = {b["node"] for b in backends}
        names = {b["name"] for b in backends}
        away = [p for p in self.servers if p["node"] not in backend_nodes]
        near = [p for p in self.servers if p["node"] in backend_nodes and p["name"] not in names]
        near = near or [b for b in backends if len(backends) > 1]
        return [group[0] for group in (away, near) if group]

    def _service_path(self, source: dict[str, Any], backends: list[dict[str, Any]]) -> set[str]:
        parts = {f"nat:{source['node']}"}
        for b in backends:
            parts |= _path(self.cluster, source, b)
        return parts

    def _cluster_ip(self, svc: dict[str, Any], port: dict[str, Any], source: dict[str, Any],
                    backends: list[dict[str, Any]]) -> list[Check]:
        target = f"{svc['clusterIP']}:{port['port']}"
        names = sorted(b["name"] for b in backends)
        where = "with" if source["node"] in {b["node"] for b in backends} else "without"
        depends = frozenset(self._service_path(source, backends))
        sticky = svc["sessionAffinity"] == "ClientIP"
        requests = 1 if sticky else spread_requests(len(names))
        params = {"backends": names, "port": port, "service": svc["name"],
                  "requests": requests, "spread": not sticky,
                  "false_failure": 0.0 if sticky else miss_probability(len(names), requests),
                  # A backend that draws itself is masqueraded to its node (hairpin).
                  "hairpin_gateway": self.gateway[source["node"]]
                  if source["name"] in names else None}
        spread = f"spreads over {_names(names)} (≤ {requests} requests)"
        if sticky:
            spread = "answered by one of " + _names(names)
        checks = [Check(f"clusterip:{svc['name']}:{source['name']}", "clusterip",
                        f"ClusterIP {svc['name']} from a node {where} a backend", source["name"],
                        target, f"{spread}; backend sees the pod's own IP", depends, params)]
        if where == "without" and not self.conntrack_planned:
            self.conntrack_planned = True  # one DNAT entry shows it; one check per lab
            checks.append(Check(f"conntrack:{svc['name']}:{source['name']}", "conntrack",
                                f"conntrack DNAT of {svc['name']} on {source['node']}",
                                source["name"], target, "entry: reply from a backend IP",
                                depends, {**params, "node": source["node"]}))
        return checks

    def _no_local_endpoint(self, svc: dict[str, Any], port: dict[str, Any],
                           source: dict[str, Any]) -> Check:
        # kube-proxy's KUBE-SVL chain (nftables: the service chain) drops it: "has no local endpoints".
        return Check(f"clusterip:{svc['name']}:{source['name']}", "clusterip",
                     f"ClusterIP {svc['name']} (internalTrafficPolicy Local) from a node without "
                     "a backend", source["name"], f"{svc['clusterIP']}:{port['port']}",
                     "dropped (no local endpoint)", frozenset(), {"drop": True})

    def _udp(self, svc: dict[str, Any], port: dict[str, Any], source: dict[str, Any],
             backends: list[dict[str, Any]]) -> Check:
        return Check(f"clusterip-udp:{svc['name']}:{port['port']}", "clusterip-udp",
                     f"ClusterIP {svc['name']} over UDP", source["name"],
                     f"{svc['clusterIP']}:{port['port']}",
                     f"{UDP_DRAWS} datagrams, each answered by a backend",
                     frozenset(self._service_path(source, backends)),
                     {"requests": UDP_DRAWS, "backends": sorted(b["name"] for b in backends)})

    def _affinity(self, svc: dict[str, Any], port: dict[str, Any], source: dict[str, Any],
                  backends: list[dict[str, Any]]) -> Check:
        return Check(f"affinity:{svc['name']}", "affinity", f"ClientIP affinity of {svc['name']}",
                     source["name"], f"{svc['clusterIP']}:{port['port']}",
                     f"{AFFINITY_REQUESTS} requests, one backend",
                     frozenset(self._service_path(source, backends)),
                     {"requests": AFFINITY_REQUESTS, "backends": sorted(b["name"] for b in backends)})

    def _hairpin(self, svc: dict[str, Any], port: dict[str, Any],
                 backends: list[dict[str, Any]]) -> Check:
        pod = backends[0]
        requests = hit_requests(len(backends))
        # kube-proxy's hairpin rule masquerades a pod that its service sends back to itself.
        return Check(f"hairpin:{svc['name']}:{pod['name']}", "hairpin",
                     f"a backend reaches itself through {svc['name']}", pod["name"],
                     f"{svc['clusterIP']}:{port['port']}",
                     f"{pod['name']} answers itself (≤ {requests} requests)",
                     frozenset(self._service_path(pod, backends)),
                     {"requests": requests, "self": pod["name"],
                      "false_failure": 0.0 if len(backends) <= 1
                      else (1 - 1 / len(backends)) ** requests,
                      "backends": sorted(b["name"] for b in backends)})

    def _no_endpoints(self, svc: dict[str, Any]) -> list[Check]:
        if not self.servers:
            return []
        source = self.servers[0]
        port = svc["ports"][0]
        proto = port["protocol"]
        return [Check(f"no-endpoints:{svc['name']}", "no-endpoints",
                      f"{svc['name']} has no endpoints", source["name"],
                      f"{svc['clusterIP']}:{port['port']}", "refused at once (REJECT)",
                      frozenset({f"veth:{source['name']}", f"bridge:{source['node']}"}),
                      {"protocol": proto})] if proto == "TCP" else []

    def _node_ports(self, svc: dict[str, Any], backends: list[dict[str, Any]]) -> list[Check]:
        clients = self.cluster["clients"]
        if not clients:
            return []
        client = clients[0]
        checks = []
        port = next(p for p in svc["ports"] if p["nodePort"])
        local = svc["externalTrafficPolicy"] == "Local"
        backend_nodes = {b["node"] for b in backends}
        for node in self.cluster["nodes"]:
            target = f"{node['ip']}:{port['nodePort']}"
            has_local = node["name"] in backend_nodes
            if local and not has_local:
                expected = "dropped (no local endpoint)"
                serving: list[dict[str, Any]] = []
            elif local:
                expected = f"backend sees the client's IP {client['ip']}"
                serving = [b for b in backends if b["node"] == node["name"]]
            else:
                expected = f"backend sees an address of {node['name']}, not the client"
                serving = backends
            depends = {f"nat:{node['name']}"}
            for b in serving:
                depends |= {f"veth:{b['name']}", f"bridge:{b['node']}"}
                if b["node"] != node["name"]:
                    depends |= {f"overlay:{node['name']}", f"overlay:{b['node']}"}
            if local and not has_local:
                depends = set()  # a drop needs nothing to work
            requests = spread_requests(len(serving)) if serving else 1
            where = " locally" if local else ""
            if len(serving) == 1:
                expected = f"{serving[0]['name']} serves{where}; {expected}"
            elif serving:
                expected = (f"{_names([b['name'] for b in serving])} all serve{where} "
                            f"(≤ {requests} requests); {expected}")
            checks.append(Check(f"nodeport:{svc['name']}:{node['name']}", "nodeport",
                                f"NodePort {svc['name']} ({svc['externalTrafficPolicy']}) "
                                f"via {node['name']}", client["name"], target, expected,
                                frozenset(depends),
                                {"policy": svc["externalTrafficPolicy"], "node": node,
                                 "drop": local and not has_local, "client_ip": client["ip"],
                                 "requests": requests, "draws": SNAT_DRAWS,
                                 "false_failure": miss_probability(len(serving), requests),
                                 "backends": sorted(b["name"] for b in serving)}))
        return checks


def plan(cluster: dict[str, Any]) -> list[Check]:
    return Planner(cluster).plan()
