"""The picture as Graphviz DOT, and its renderings (svg, png) by Graphviz's `dot`.

Layout is Graphviz's: each node is a cluster holding its eth0, overlay device,
cbr0 and pods, the pods grouped in one cluster per namespace; the underlay is
one bar that node eth0s and clients hang from, and the LoadBalancer pool hangs
from it too, holding each LoadBalancer IP with a line to the node that answers
ARP for it (externalIPs beside it); services sit below the nodes, grouped by
namespace, with dashed lines up to their endpoint pods. The cluster DNS's pods
and kube-dns are drawn in a colour of their own. A lab across hosts (lab
contract section 11) draws each host as a frame around its nodes and clients,
below the node network, which is then the swarm's overlay network spanning them.
Same picture in, same DOT out (insertion order only, no hashes or dates), so
the SVG is byte-identical for the same Graphviz and fonts.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any, TypeVar

from generator.graph.overlay import Move, Overlay
from generator.graph.picture import (
    POOL_ID,
    UNDERLAY_ID,
    ClientBox,
    NodeBox,
    Picture,
    PodBox,
    ServiceBox,
    address_id,
    client_id,
    dev_id,
    pod_id,
)

FONT = "DejaVu Sans"
T = TypeVar("T")

# Colours: one per kind of thing, readable on white and in print.
NODE_FILL, NODE_LINE = "#f2f5fa", "#4a6fa5"
POD_FILL, POD_LINE = "#e2f3df", "#3b8a3e"
BRIDGE_FILL = "#fff4d1"
ETH_FILL = "#e6e6e6"
OVERLAY_FILL, OVERLAY_LINE = "#dcecfb", "#2d6db5"
SERVICE_FILL, SERVICE_LINE = "#eee5fa", "#7247b0"
CLIENT_FILL, CLIENT_LINE = "#fde6d4", "#b5652d"
DNS_FILL, DNS_LINE = "#d5f0ee", "#1f7a72"
POOL_FILL, POOL_LINE = "#fbf3c8", "#9a7d0a"
NAMESPACE_LINE = "#8c8c8c"
HOST_FILL, HOST_LINE = "#fafaf5", "#3d4a55"
REQUEST, REPLY, NAT, DROP = "#1f5fd1", "#d9730d", "#c0392b", "#b00020"


def _lines(*lines: str) -> str:
    """A multi-line DOT label (\\n is DOT's own line break)."""
    return "\\n".join(lines)


def _with_marks(plain: str, extra: list[str]) -> str:
    """A label with the trace's marks for this element as red lines under it (HTML-like)."""
    if not extra:
        return plain
    lines = [html.escape(line) for line in plain.split("\\n")]
    lines += [f'<font color="{NAT}" point-size="9"><b>{html.escape(e)}</b></font>' for e in extra]
    return "<" + "<br/>".join(lines) + ">"


def _numbers(hops: list[int]) -> str:
    """[3, 4, 5, 8] -> '3–5, 8'."""
    parts: list[str] = []
    for n in hops:
        if parts and parts[-1].split("–")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('–')[0]}–{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts)


def service_lines(s: ServiceBox) -> list[str]:
    """A service's label, line by line: name, type and cluster IP, ports, what sets it apart."""
    address = "None (headless)" if s.cluster_ip == "None" else s.cluster_ip
    lines = [s.name, *(["the cluster DNS"] if s.dns else []), f"{s.type} {address}"]
    lines += [p.text() for p in s.ports]
    lines += s.policy_lines()
    if not s.endpoints:
        lines.append("no endpoints")
    return lines


def service_label(s: ServiceBox) -> str:
    return _lines(*service_lines(s))


def pod_lines(p: PodBox) -> list[str]:
    extra = [] if p.state in ("Running", "Desired") else [p.state]
    return [p.name, p.ip or "no IP", *(["DNS :53 UDP+TCP"] if p.dns else []), *extra]


def _trace_marks(overlay: Overlay | None) -> dict[str, list[str]]:
    """The lines a trace adds to elements: its translations, and where it ended."""
    marks: dict[str, list[str]] = {}
    if overlay is not None:
        for mark in overlay.marks:
            marks.setdefault(mark.element, []).append(
                f"{mark.hop}: {mark.kind} {mark.before} → {mark.after}")
        if overlay.end is not None:
            element, hop = overlay.end
            marks.setdefault(element, []).append(f"✖ {overlay.verdict} at hop {hop}")
    return marks


class _Drawing:
    """One graphviz.Digraph of a picture, drawn part by part in a fixed order (the same
    picture gives the same dot source)."""

    def __init__(self, picture: Picture, overlay: Overlay | None) -> None:
        import graphviz

        self.picture, self.overlay = picture, overlay
        self.marks = _trace_marks(overlay)
        title = f"kgen lab {picture.name} (from the {picture.source})"
        if overlay is not None:
            title += f"\\n{overlay.title()}"
        self.g = graphviz.Digraph(
            picture.name,
            graph_attr={"fontname": FONT, "fontsize": "13", "label": title, "labelloc": "t",
                        "newrank": "true", "nodesep": "0.25", "ranksep": "0.45",
                        "bgcolor": "white", "pad": "0.2", "id": "kgen-graph"},
            node_attr={"fontname": FONT, "fontsize": "10", "shape": "box",
                       "style": "rounded,filled", "fillcolor": "white", "margin": "0.12,0.05"},
            edge_attr={"fontname": FONT, "fontsize": "9", "arrowsize": "0.6"})

    def node(self, parent: Any, element: str, label: str, **attrs: str) -> None:
        if element in self.marks:
            attrs = {**attrs, "color": NAT, "penwidth": "2"}
        parent.node(element, _with_marks(label, self.marks.get(element, [])), id=element, **attrs)

    def outside(self, name: str = "cluster_outside", clients: list[ClientBox] | None = None,
                parent: Any = None) -> None:
        """The clients (all, or one host's) in their frame."""
        parent = self.g if parent is None else parent
        with parent.subgraph(name=name) as outside:
            outside.attr(label="outside the cluster", style="dashed", color="#999999", fontsize="10")
            for c in self.picture.clients if clients is None else clients:
                self.node(outside, client_id(c.name), _lines(c.name, c.ip), fillcolor=CLIENT_FILL,
                          color=CLIENT_LINE)

    def network(self) -> None:
        """The node network the nodes and clients share (one bar)."""
        self.g.node(UNDERLAY_ID, _lines(*self.picture.network_lines()), id=UNDERLAY_ID, shape="box",
                    style="filled", fillcolor="#d0d0d0", color="#707070", width="9")

    def one_engine(self) -> None:
        """The clients above the node network, the nodes below it."""
        self.outside()
        self.network()
        for c in self.picture.clients:
            self.g.edge(client_id(c.name), UNDERLAY_ID, dir="none", label=f"eth0 {c.ip}",
                        color="#707070")
        for n in self.picture.nodes:
            self.machine(n)

    def hosts(self) -> None:
        """A lab across hosts: the swarm's overlay network on top, each host a frame below it
        with its clients and nodes (clients hang below the network here: a frame is one
        rectangle, so it cannot hold members on both sides of the bar)."""
        self.network()
        for host in self.picture.hosts:
            nodes, clients = self.picture.on_host(host)
            with self.g.subgraph(name=f"cluster_{host.id}") as frame:
                frame.attr(label=host.title(), style="rounded,filled", fillcolor=HOST_FILL,
                           color=HOST_LINE, penwidth="2", fontsize="12", labeljust="l", id=host.id)
                if clients:
                    self.outside(f"cluster_{host.id}_outside", clients, frame)
                for n in nodes:
                    self.machine(n, frame)
        placed = {h.name for h in self.picture.hosts}   # every member, with kgen's placement
        for n in (n for n in self.picture.nodes if n.host not in placed):
            self.machine(n)
        if any(c.host not in placed for c in self.picture.clients):
            self.outside(clients=[c for c in self.picture.clients if c.host not in placed])
        for c in self.picture.clients:
            self.g.edge(UNDERLAY_ID, client_id(c.name), dir="none", label=f"eth0 {c.ip}",
                        color="#707070")

    def machine(self, n: NodeBox, parent: Any = None) -> None:
        """One node: eth0, its overlay device, cbr0 and its pods."""
        picture = self.picture
        parent = self.g if parent is None else parent
        with parent.subgraph(name=f"cluster_node_{n.name}") as box:
            state = "" if n.state in ("Ready", "Desired") else f" · {n.state}"
            box.attr(label=f"{n.name} ({n.container}){state}", style="rounded,filled",
                     fillcolor=NODE_FILL, color=NODE_LINE, fontsize="11", id=f"node_{n.name}")
            self.node(box, dev_id(n.name, "eth0"), _lines(f"eth0 {n.ip}", f"pod subnet {n.pod_cidr}"),
                      fillcolor=ETH_FILL)
            if picture.backend == "vxlan":
                label = _lines(f"{picture.vxlan_device} (VXLAN)", f"VTEP {n.vtep}")
            else:
                label = _lines("host-gw routes", *(f"{o.pod_cidr} via {o.ip}"
                                                   for o in picture.nodes if o.name != n.name))
            self.node(box, dev_id(n.name, "overlay"), label, fillcolor=OVERLAY_FILL,
                      color=OVERLAY_LINE)
            prefix = n.pod_cidr.split("/")[1]
            self.node(box, dev_id(n.name, "cbr0"), _lines(f"cbr0 {n.gateway}/{prefix}"),
                      fillcolor=BRIDGE_FILL)
            box.edge(dev_id(n.name, "eth0"), dev_id(n.name, "overlay"), dir="none", color="#888888")
            box.edge(dev_id(n.name, "overlay"), dev_id(n.name, "cbr0"), dir="none", color="#888888")
            for namespace, pods in self.by_namespace(n.pods, lambda p: p.namespace):
                with box.subgraph(name=f"cluster_node_{n.name}_ns_{namespace}") as group:
                    self.namespace_frame(group, namespace, f"node_{n.name}_ns_{namespace}")
                    for p in pods:
                        fill, line = (DNS_FILL, DNS_LINE) if p.dns else (POD_FILL, POD_LINE)
                        self.node(group, pod_id(p.name), _lines(*pod_lines(p)), fillcolor=fill,
                                  color=line)
            for p in n.pods:
                box.edge(dev_id(n.name, "cbr0"), pod_id(p.name), dir="none", color=POD_LINE,
                         label="veth")
        self.g.edge(UNDERLAY_ID, dev_id(n.name, "eth0"), dir="none", color="#707070")

    def by_namespace(self, items: list[T], namespace_of: Callable[[T], str]) -> list[tuple[str, list[T]]]:
        """Items grouped by namespace, in the order of the lab's namespaces."""
        groups = [(ns.name, [i for i in items if namespace_of(i) == ns.name])
                  for ns in self.picture.namespaces]
        return [(name, found) for name, found in groups if found]

    def namespace_frame(self, group: Any, namespace: str, element: str) -> None:
        box = next(ns for ns in self.picture.namespaces if ns.name == namespace)
        group.attr(label=box.title(), style="dashed,rounded", color=NAMESPACE_LINE,
                   fontcolor="#555555", fontsize="9", labeljust="l", id=element)

    def mesh(self) -> None:
        """The overlay between every two nodes."""
        nodes = self.picture.nodes
        for i, a in enumerate(nodes):
            for j, b in enumerate(nodes[i + 1:]):
                # One label for the whole mesh (on the first pair); a trace brings its own.
                label = self.picture.overlay_text() if (i, j) == (0, 0) and self.overlay is None else ""
                self.g.edge(dev_id(a.name, "overlay"), dev_id(b.name, "overlay"), dir="both",
                            arrowsize="0.5", constraint="false", style="dashed", color=OVERLAY_LINE,
                            fontcolor=OVERLAY_LINE, label=label)

    def services(self) -> None:
        """The services below the nodes, with a line to each endpoint pod."""
        picture = self.picture
        with self.g.subgraph(name="cluster_services") as services:
            services.attr(label=f"services (kube-proxy {picture.proxy_mode} rules on every node)",
                          style="rounded,dashed", labelloc="b", color=SERVICE_LINE,
                          fontcolor=SERVICE_LINE, fontsize="10", rank="same")
            for namespace, found in self.by_namespace(picture.services, lambda s: s.namespace):
                with services.subgraph(name=f"cluster_services_ns_{namespace}") as group:
                    self.namespace_frame(group, namespace, f"services_ns_{namespace}")
                    for s in found:
                        fill, line = (DNS_FILL, DNS_LINE) if s.dns else (SERVICE_FILL, SERVICE_LINE)
                        self.node(group, s.id, service_label(s), fillcolor=fill, color=line)
        for s in picture.services:
            for name in s.endpoint_pods:
                # Drawn pod -> service (arrow reversed) so that services rank below the pods.
                self.g.edge(pod_id(name), s.id, dir="back", style="dashed",
                            color=DNS_LINE if s.dns else SERVICE_LINE, arrowsize="0.5",
                            penwidth="0.8")

    def addresses(self) -> None:
        """The LoadBalancer pool on the node network with its IPs, each linked to the node that
        answers ARP for it and naming its service; externalIPs beside it. (No line to the
        service: it would cross every node; the box names it.)"""
        picture = self.picture
        lb = [a for a in picture.addresses if a.kind == "loadBalancerIP"]
        if lb and picture.load_balancer_pool:
            with self.g.subgraph(name="cluster_lbpool") as pool:
                pool.attr(label="LoadBalancer IPs (MetalLB layer 2: one node answers ARP for each)",
                          style="rounded,dashed", color=POOL_LINE, fontcolor=POOL_LINE,
                          fontsize="10", id="lbpool_box")
                self.node(pool, POOL_ID, _lines(f"loadBalancerPool {picture.pool_range()}"),
                          fillcolor=POOL_FILL, color=POOL_LINE, shape="box", style="filled")
                for a in lb:
                    self.node(pool, address_id(a.ip), _lines(*a.text()), fillcolor=POOL_FILL,
                              color=POOL_LINE)
                    pool.edge(POOL_ID, address_id(a.ip), dir="none", color=POOL_LINE,
                              penwidth="0.6")
            self.g.edge(UNDERLAY_ID, POOL_ID, dir="none", color="#707070")
        for a in (a for a in picture.addresses if a.kind == "externalIP"):
            self.node(self.g, address_id(a.ip), _lines(*a.text()), fillcolor=POOL_FILL,
                      color=POOL_LINE, style="rounded,filled,dashed")
            self.g.edge(UNDERLAY_ID, address_id(a.ip), dir="none", color="#707070", style="dotted")
        for a in picture.addresses:
            if a.announced_by is not None:
                self.g.edge(address_id(a.ip), dev_id(a.announced_by, "eth0"), color=POOL_LINE,
                            fontcolor=POOL_LINE, penwidth="1.6", label="ARP", constraint="false")


def build(picture: Picture, overlay: Overlay | None = None) -> Any:
    """A graphviz.Digraph of the picture, with the trace drawn on it when given."""
    drawing = _Drawing(picture, overlay)
    if picture.hosts:
        drawing.hosts()
    else:
        drawing.one_engine()
    drawing.mesh()
    drawing.services()
    drawing.addresses()
    if overlay is not None:
        _draw_trace(drawing.g, picture, overlay)
    return drawing.g


def _draw_trace(g: Any, picture: Picture, overlay: Overlay) -> None:
    for i, move in enumerate(overlay.moves):
        colour = REQUEST if move.direction == "request" else REPLY
        attrs = {"color": colour, "fontcolor": colour, "penwidth": "2.2", "constraint": "false",
                 "label": _numbers(move.hops), "id": f"trace-{move.direction}-{i}",
                 "class": f"trace {move.direction}"}
        if move.encap is not None:
            # The encapsulated stretch: out of the VXLAN device, onto the wire through both
            # nodes' eth0 and the node network, drawn as a tube (two lines).
            e = move.encap
            a, b = _node_of(move.tail), _node_of(move.head)
            tube = {**attrs, "color": f"{colour}:white:{colour}", "penwidth": "1.4"}
            path = [move.tail, dev_id(a, "eth0"), UNDERLAY_ID, dev_id(b, "eth0"), move.head]
            for j, (tail, head) in enumerate(zip(path, path[1:], strict=False)):
                label = _lines(f"{_numbers(move.hops)} VXLAN VNI {e['vni']}",
                               f"{e['src']} → {e['dst']}:{e['dport']}") if j == 0 else ""
                label = _swarm_label(move) if j == 1 else label
                g.edge(tail, head, **{**tube, "id": f"trace-{move.direction}-{i}-{j}",
                                      "label": label, "arrowhead": "normal" if j == 3 else "none"})
            continue
        if _machine(picture, move.tail) != _machine(picture, move.head):
            # From one machine to another without a tunnel: across the node network.
            g.edge(move.tail, UNDERLAY_ID, **{**attrs, "arrowhead": "none",
                                              "label": _swarm_label(move),
                                              "id": f"trace-{move.direction}-{i}-0"})
            g.edge(UNDERLAY_ID, move.head, **{**attrs, "id": f"trace-{move.direction}-{i}-1"})
            continue
        g.edge(move.tail, move.head, **attrs)
    g.node("trace-legend", _legend(overlay), id="trace-legend", shape="plaintext",
           style="", margin="0")


def _swarm_label(move: Move) -> str:
    """The swarm's own VXLAN between the hosts, around what the lab sends (lab across hosts)."""
    s = move.swarm
    if s is None:
        return ""
    return _lines(f"in the swarm's VXLAN VNI {s['vni']}", f"{s['src']} → {s['dst']}:{s['dport']}")


def _machine(picture: Picture, element: str) -> str:
    """The container an element lives in: a client, or a node (pods live in their node)."""
    if element.startswith("pod_"):
        pod = picture.pod(element[len("pod_"):])
        return pod.node if pod else element
    if element.startswith("node_"):
        return _node_of(element)
    return element


def _node_of(element: str) -> str:
    return element[len("node_"):].rsplit("_", 1)[0]


def _legend(overlay: Overlay) -> str:
    rows = [f'<tr><td colspan="3" align="left"><b>{html.escape(overlay.title())}</b></td></tr>']
    if overlay.dns is not None:
        rows.append(f'<tr><td colspan="3" align="left">first: {html.escape(overlay.dns)}</td></tr>')
    for hop in overlay.hops:
        colour = REQUEST if hop.direction == "request" else REPLY
        detail = hop.detail.removeprefix(f"{hop.node}: ")   # the node has its own column
        if hop.policy and hop.policy not in detail:
            detail += f" (policy {hop.policy})"
        detail = detail if len(detail) <= 110 else detail[:107] + "..."
        rows.append(f'<tr><td align="right"><font color="{colour}"><b>{hop.number}</b></font></td>'
                    f'<td align="left">{html.escape(hop.node)}</td>'
                    f'<td align="left"><font point-size="8">'
                    f"{html.escape(detail)}</font></td></tr>")
    rows.append(f'<tr><td colspan="3" align="left"><font color="{REQUEST}">━ request</font>   '
                f'<font color="{REPLY}">━ reply</font>   <font color="{NAT}">▭ translation</font>'
                "   ═ encapsulated</td></tr>")
    return ('<<table border="1" cellborder="0" cellspacing="0" cellpadding="2" color="#999999" '
            f'bgcolor="#fafafa">{"".join(rows)}</table>>')


def source(picture: Picture, overlay: Overlay | None = None) -> str:
    return str(build(picture, overlay).source)


def render(picture: Picture, fmt: str, overlay: Overlay | None = None) -> bytes:
    """svg or png bytes from Graphviz's `dot` (graphviz.ExecutableNotFound without it)."""
    return bytes(build(picture, overlay).pipe(format=fmt))
