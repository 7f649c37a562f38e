"""`kgen graph --format mermaid`: a flowchart that pastes into GitHub Markdown.

Mermaid ids are short and plain (n1, n2, ... in picture order) so no lab name
can clash with Mermaid's syntax; labels are quoted with `"` escaped as an
entity. The same picture as dot.py's: pods and services in one subgraph per
namespace, the LoadBalancer pool with its IPs linked to the nodes announcing
them, externalIPs, the cluster DNS in a class of its own, and for a lab across
hosts one subgraph per host around its nodes and clients, the node network
named as the swarm's overlay. A trace adds its path as numbered links, request
and reply coloured.
"""

from __future__ import annotations

from generator.graph.dot import pod_lines, service_lines
from generator.graph.overlay import Overlay
from generator.graph.picture import (
    POOL_ID,
    UNDERLAY_ID,
    ClientBox,
    NodeBox,
    Picture,
    address_id,
    client_id,
    dev_id,
    pod_id,
)


def _text(*lines: str) -> str:
    safe = [line.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")
            .replace(">", "#gt;") for line in lines]
    return '"' + "<br/>".join(safe) + '"'


CLASSES = ["  classDef client fill:#fde6d4,stroke:#b5652d",
           "  classDef wire fill:#d0d0d0,stroke:#707070",
           "  classDef dev fill:#e6e6e6,stroke:#555",
           "  classDef overlay fill:#dcecfb,stroke:#2d6db5",
           "  classDef bridge fill:#fff4d1,stroke:#555",
           "  classDef pod fill:#e2f3df,stroke:#3b8a3e",
           "  classDef service fill:#eee5fa,stroke:#7247b0",
           "  classDef dns fill:#d5f0ee,stroke:#1f7a72",
           "  classDef lb fill:#fbf3c8,stroke:#9a7d0a"]


class _Chart:
    """The flowchart's lines: shapes in `out`, links (and their styles) after them."""

    def __init__(self, picture: Picture) -> None:
        self.picture = picture
        self.ids: dict[str, str] = {}
        self.out = ["flowchart TB"]
        self.links: list[str] = []
        self.styles: list[str] = []

    def ref(self, element: str) -> str:
        if element not in self.ids:
            self.ids[element] = f"n{len(self.ids) + 1}"
        return self.ids[element]

    def link(self, line: str, style: str | None = None) -> None:
        if style:
            self.styles.append(f"  linkStyle {len(self.links)} {style}")
        self.links.append(f"  {line}")

    def outside(self, name: str = "outside", clients: list[ClientBox] | None = None) -> None:
        ref, picture = self.ref, self.picture
        self.out.append(f'  subgraph {name}["outside the cluster"]')
        for c in picture.clients if clients is None else clients:
            self.out.append(f"    {ref(client_id(c.name))}[{_text(c.name, c.ip)}]:::client")
        self.out.append("  end")

    def network(self) -> None:
        lines = self.picture.network_lines()
        if not self.picture.hosts:
            lines = lines[:1]   # one engine: its address range alone, as it always was
        self.out.append(f"  {self.ref(UNDERLAY_ID)}[{_text(*lines)}]:::wire")
        for c in self.picture.clients:
            self.link(f"{self.ref(client_id(c.name))} --- {self.ref(UNDERLAY_ID)}")

    def hosts(self) -> None:
        """One subgraph per host around its clients and nodes (nested two spaces deeper)."""
        placed = {h.name for h in self.picture.hosts}
        for k, host in enumerate(self.picture.hosts):
            nodes, clients = self.picture.on_host(host)
            self.out.append(f"  subgraph host{k}[{_text(host.title())}]")
            start = len(self.out)
            if clients:
                self.outside(f"host{k}outside", clients)
            for n in nodes:
                self.machine(self.picture.nodes.index(n), n)
            self.out[start:] = ["  " + line for line in self.out[start:]]
            self.out.append("  end")
        for i, n in enumerate(self.picture.nodes):
            if n.host not in placed:   # never, with kgen's own placement: drawn all the same
                self.machine(i, n)
        if any(c.host not in placed for c in self.picture.clients):
            self.outside(clients=[c for c in self.picture.clients if c.host not in placed])

    def machine(self, i: int, n: NodeBox) -> None:
        ref, picture, out = self.ref, self.picture, self.out
        out.append(f'  subgraph node{i}[{_text(f"{n.name} ({n.container})")}]')
        out.append(f"    {ref(dev_id(n.name, 'eth0'))}[{_text(f'eth0 {n.ip}', f'pod subnet {n.pod_cidr}')}]"
                   ":::dev")
        if picture.backend == "vxlan":
            overlay_label = _text(f"{picture.vxlan_device} (VXLAN)", f"VTEP {n.vtep}")
        else:
            overlay_label = _text("host-gw routes", *(f"{o.pod_cidr} via {o.ip}"
                                                      for o in picture.nodes if o.name != n.name))
        out.append(f"    {ref(dev_id(n.name, 'overlay'))}[{overlay_label}]:::overlay")
        prefix = n.pod_cidr.split("/")[1]
        out.append(f"    {ref(dev_id(n.name, 'cbr0'))}[{_text(f'cbr0 {n.gateway}/{prefix}')}]:::bridge")
        for j, ns in enumerate(self.picture.namespaces):
            pods = [p for p in n.pods if p.namespace == ns.name]
            if pods:
                out.append(f"    subgraph node{i}ns{j}[{_text(ns.title())}]")
                out += [f"      {ref(pod_id(p.name))}([{_text(*pod_lines(p))}])"
                        f":::{'dns' if p.dns else 'pod'}" for p in pods]
                out.append("    end")
        out.append("  end")
        self.link(f"{ref(UNDERLAY_ID)} --- {ref(dev_id(n.name, 'eth0'))}")
        self.link(f"{ref(dev_id(n.name, 'eth0'))} --- {ref(dev_id(n.name, 'overlay'))}")
        self.link(f"{ref(dev_id(n.name, 'overlay'))} --- {ref(dev_id(n.name, 'cbr0'))}")
        for p in n.pods:
            self.link(f"{ref(dev_id(n.name, 'cbr0'))} ---|veth| {ref(pod_id(p.name))}")

    def mesh(self) -> None:
        nodes, ref = self.picture.nodes, self.ref
        for i, a in enumerate(nodes):
            for j, b in enumerate(nodes[i + 1:]):
                label = f"|{_text(self.picture.overlay_text())}| " if (i, j) == (0, 0) else ""
                self.link(f"{ref(dev_id(a.name, 'overlay'))} <-.->{label}{ref(dev_id(b.name, 'overlay'))}")

    def services(self) -> None:
        ref, picture = self.ref, self.picture
        title = f"services (kube-proxy {picture.proxy_mode} rules on every node)"
        self.out.append(f'  subgraph services["{title}"]')
        for j, ns in enumerate(picture.namespaces):
            found = [s for s in picture.services if s.namespace == ns.name]
            if found:
                self.out.append(f"    subgraph servicesns{j}[{_text(ns.title())}]")
                self.out += [f"      {ref(s.id)}[{_text(*service_lines(s))}]"
                             f":::{'dns' if s.dns else 'service'}" for s in found]
                self.out.append("    end")
        self.out.append("  end")
        for s in picture.services:
            for name in s.endpoint_pods:
                self.link(f"{ref(s.id)} -.-> {ref(pod_id(name))}")

    def addresses(self) -> None:
        """The pool and its LoadBalancer IPs (ARP links to their nodes), the externalIPs."""
        ref, picture = self.ref, self.picture
        lb = [a for a in picture.addresses if a.kind == "loadBalancerIP"]
        if lb and picture.load_balancer_pool:
            self.out.append('  subgraph lbpool_box["LoadBalancer IPs (MetalLB layer 2: one node '
                            'answers ARP for each)"]')
            self.out.append(f"    {ref(POOL_ID)}[{_text(f'loadBalancerPool {picture.pool_range()}')}]"
                            ":::lb")
            self.out += [f"    {ref(address_id(a.ip))}[{_text(*a.text())}]:::lb" for a in lb]
            self.out.append("  end")
            self.link(f"{ref(UNDERLAY_ID)} --- {ref(POOL_ID)}")
            for a in lb:
                self.link(f"{ref(POOL_ID)} --- {ref(address_id(a.ip))}")
        for a in (a for a in picture.addresses if a.kind == "externalIP"):
            self.out.append(f"  {ref(address_id(a.ip))}[{_text(*a.text())}]:::lb")
            self.link(f"{ref(UNDERLAY_ID)} -.- {ref(address_id(a.ip))}")
        for a in picture.addresses:
            if a.announced_by is not None:
                self.link(f"{ref(address_id(a.ip))} -->|ARP| {ref(dev_id(a.announced_by, 'eth0'))}",
                          "stroke:#9a7d0a,stroke-width:2px")

    def trace(self, overlay: Overlay) -> None:
        if overlay.dns is not None:   # the lookup before the request, told beside the picture
            self.out.append(f"  {self.ref('trace-dns')}[{_text('first: ' + overlay.dns)}]")
        for move in overlay.moves:
            colour = "#1f5fd1" if move.direction == "request" else "#d9730d"
            label = ", ".join(str(h) for h in move.hops) or move.direction
            if move.encap is not None:
                label += f" VXLAN {move.encap['src']} to {move.encap['dst']}"
            if move.swarm is not None:
                label += f" in the swarm's VXLAN {move.swarm['src']} to {move.swarm['dst']}"
            self.link(f"{self.ref(move.tail)} ==>|{_text(label)}| {self.ref(move.head)}",
                      f"stroke:{colour},stroke-width:3px")


def mermaid(picture: Picture, overlay: Overlay | None = None) -> str:
    chart = _Chart(picture)
    if picture.hosts:
        chart.hosts()
    else:
        chart.outside()
    chart.network()
    if not picture.hosts:
        for i, n in enumerate(picture.nodes):
            chart.machine(i, n)
    chart.mesh()
    chart.services()
    chart.addresses()
    if overlay is not None:
        chart.trace(overlay)
    return "\n".join(chart.out + chart.links + chart.styles + CLASSES) + "\n"
