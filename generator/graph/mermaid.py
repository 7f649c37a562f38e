"""`kgen graph --format mermaid`: a flowchart that pastes into GitHub Markdown.

Mermaid ids are short and plain (n1, n2, ... in picture order) so no lab name
can clash with Mermaid's syntax; labels are quoted with `"` escaped as an
entity. A trace adds its path as numbered links, request and reply coloured.
"""

from __future__ import annotations

from generator.graph.overlay import Overlay
from generator.graph.picture import (
    UNDERLAY_ID,
    NodeBox,
    Picture,
    client_id,
    dev_id,
    pod_id,
    service_id,
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
           "  classDef service fill:#eee5fa,stroke:#7247b0"]


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

    def outside(self) -> None:
        ref, picture = self.ref, self.picture
        self.out.append('  subgraph outside["outside the cluster"]')
        for c in picture.clients:
            self.out.append(f"    {ref(client_id(c.name))}[{_text(c.name, c.ip)}]:::client")
        self.out.append("  end")
        self.out.append(f"  {ref(UNDERLAY_ID)}[{_text(f'node network {picture.node_network}')}]:::wire")
        for c in picture.clients:
            self.link(f"{ref(client_id(c.name))} --- {ref(UNDERLAY_ID)}")

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
        for p in n.pods:
            out.append(f"    {ref(pod_id(p.name))}([{_text(p.name, p.ip or 'no IP')}]):::pod")
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
        for s in picture.services:
            lines = [s.name, f"{s.type} {s.cluster_ip}", *(p.text() for p in s.ports)]
            if s.type == "NodePort":
                lines.append(f"externalTrafficPolicy {s.external_traffic_policy}")
            self.out.append(f"    {ref(service_id(s.name))}[{_text(*lines)}]:::service")
        self.out.append("  end")
        for s in picture.services:
            for name in s.endpoint_pods:
                self.link(f"{ref(service_id(s.name))} -.-> {ref(pod_id(name))}")

    def trace(self, overlay: Overlay) -> None:
        for move in overlay.moves:
            colour = "#1f5fd1" if move.direction == "request" else "#d9730d"
            label = ", ".join(str(h) for h in move.hops) or move.direction
            if move.encap is not None:
                label += f" VXLAN {move.encap['src']} to {move.encap['dst']}"
            self.link(f"{self.ref(move.tail)} ==>|{_text(label)}| {self.ref(move.head)}",
                      f"stroke:{colour},stroke-width:3px")


def mermaid(picture: Picture, overlay: Overlay | None = None) -> str:
    chart = _Chart(picture)
    chart.outside()
    for i, n in enumerate(picture.nodes):
        chart.machine(i, n)
    chart.mesh()
    chart.services()
    if overlay is not None:
        chart.trace(overlay)
    return "\n".join(chart.out + chart.links + chart.styles + CLASSES) + "\n"
