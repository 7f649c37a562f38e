"""`kgen graph --format mermaid`: a flowchart that pastes into GitHub Markdown.

Mermaid ids are short and plain (n1, n2, ... in picture order) so no lab name
can clash with Mermaid's syntax; labels are quoted with `"` escaped as an
entity. A trace adds its path as numbered links, request and reply coloured.
"""

from __future__ import annotations

from generator.graph.overlay import Overlay
from generator.graph.picture import (
    UNDERLAY_ID,
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


def mermaid(picture: Picture, overlay: Overlay | None = None) -> str:
    ids: dict[str, str] = {}

    def ref(element: str) -> str:
        if element not in ids:
            ids[element] = f"n{len(ids) + 1}"
        return ids[element]

    out = ["flowchart TB"]
    links: list[str] = []
    styles: list[str] = []

    def link(line: str, style: str | None = None) -> None:
        if style:
            styles.append(f"  linkStyle {len(links)} {style}")
        links.append(f"  {line}")

    out.append('  subgraph outside["outside the cluster"]')
    for c in picture.clients:
        out.append(f"    {ref(client_id(c.name))}[{_text(c.name, c.ip)}]:::client")
    out.append("  end")
    out.append(f"  {ref(UNDERLAY_ID)}[{_text(f'node network {picture.node_network}')}]:::wire")
    for c in picture.clients:
        link(f"{ref(client_id(c.name))} --- {ref(UNDERLAY_ID)}")
    for i, n in enumerate(picture.nodes):
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
        link(f"{ref(UNDERLAY_ID)} --- {ref(dev_id(n.name, 'eth0'))}")
        link(f"{ref(dev_id(n.name, 'eth0'))} --- {ref(dev_id(n.name, 'overlay'))}")
        link(f"{ref(dev_id(n.name, 'overlay'))} --- {ref(dev_id(n.name, 'cbr0'))}")
        for p in n.pods:
            link(f"{ref(dev_id(n.name, 'cbr0'))} ---|veth| {ref(pod_id(p.name))}")
    for i, a in enumerate(picture.nodes):
        for j, b in enumerate(picture.nodes[i + 1:]):
            label = f"|{_text(picture.overlay_text())}| " if (i, j) == (0, 0) else ""
            link(f"{ref(dev_id(a.name, 'overlay'))} <-.->{label}{ref(dev_id(b.name, 'overlay'))}")
    out.append(f'  subgraph services["services (kube-proxy {picture.proxy_mode} rules on every node)"]')
    for s in picture.services:
        lines = [s.name, f"{s.type} {s.cluster_ip}", *(p.text() for p in s.ports)]
        if s.type == "NodePort":
            lines.append(f"externalTrafficPolicy {s.external_traffic_policy}")
        out.append(f"    {ref(service_id(s.name))}[{_text(*lines)}]:::service")
    out.append("  end")
    for s in picture.services:
        for name in s.endpoint_pods:
            link(f"{ref(service_id(s.name))} -.-> {ref(pod_id(name))}")
    if overlay is not None:
        for move in overlay.moves:
            colour = "#1f5fd1" if move.direction == "request" else "#d9730d"
            label = ", ".join(str(h) for h in move.hops) or move.direction
            if move.encap is not None:
                label += f" VXLAN {move.encap['src']} to {move.encap['dst']}"
            link(f"{ref(move.tail)} ==>|{_text(label)}| {ref(move.head)}",
                 f"stroke:{colour},stroke-width:3px")
    out += links + styles
    out += ["  classDef client fill:#fde6d4,stroke:#b5652d",
            "  classDef wire fill:#d0d0d0,stroke:#707070",
            "  classDef dev fill:#e6e6e6,stroke:#555",
            "  classDef overlay fill:#dcecfb,stroke:#2d6db5",
            "  classDef bridge fill:#fff4d1,stroke:#555",
            "  classDef pod fill:#e2f3df,stroke:#3b8a3e",
            "  classDef service fill:#eee5fa,stroke:#7247b0"]
    return "\n".join(out) + "\n"
