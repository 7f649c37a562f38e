"""Finding the traced packet in what every node reported.

The request is the flow's first packet (TCP SYN, the UDP datagram, the ICMP
echo request); its IP identification, which no NAT and no tunnel changes,
finds it on every node. The reply is the first packet back (SYN-ACK or RST,
the answer datagram, the echo reply), found on each node through that node's
conntrack entry for the flow. A packet's records on one node are the base
chains it went through, in hook order; the underlay frame that carried it has
the same IP id and the same inner addresses and ports.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from generator.node.contract import Cluster
from generator.node.documents import BridgePorts, Frame, RouteAsked, SourceRoute, TraceReport
from generator.trace.parse import Conntrack, Record, parse_conntrack, parse_nft, parse_xtables
from generator.trace.plan import Plan

# Netfilter priorities of the iptables tables, and of kube-proxy's nftables base chains.
TABLE_PRIORITY = {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50}
HOOKS = {"PREROUTING": 0, "INPUT": 1, "FORWARD": 1, "OUTPUT": 0, "POSTROUTING": 2}
_LOST = re.compile(r"lost|ENOBUFS|no buffer space", re.I)


@dataclass(frozen=True)
class Packet:
    """A packet's addresses and ports as they stand at one point of its path."""

    src: str
    sport: int | None
    dst: str
    dport: int | None

    @classmethod
    def of(cls, record: Record) -> Packet:
        return cls(record.src, record.sport, record.dst, record.dport)

    def reversed(self) -> Packet:
        return Packet(self.dst, self.dport, self.src, self.sport)

    def to(self, dst: str, dport: int | None) -> Packet:
        return replace(self, dst=dst, dport=dport)

    def source(self, src: str, sport: int | None) -> Packet:
        return replace(self, src=src, sport=sport)

    def tuple(self) -> tuple[str, int | None, str, int | None]:
        return (self.src, self.sport, self.dst, self.dport)


@dataclass
class NodeView:
    """One member's report, parsed."""

    name: str
    records: list[Record]
    frames: list[Frame]
    routes: list[RouteAsked]
    conntrack: list[Conntrack]
    bridge: BridgePorts | None
    nat_chains: list[str]
    source: SourceRoute | None
    error: str | None
    lost: bool = False


def view(name: str, report: TraceReport, mode: str) -> NodeView:
    lines = report.get("lines") or []
    records = parse_nft(name, lines) if mode == "nftables" else parse_xtables(name, lines)
    lost = any(_LOST.search(line) for line in lines
               if not line.startswith(("PACKET:", " TRACE:", "TRACE:", "trace id")))
    return NodeView(name, records, report.get("frames") or [], report.get("routes") or [],
                    parse_conntrack(report.get("conntrack") or []), report.get("bridge"),
                    report.get("natChains") or [], report.get("source"), report.get("error"), lost)


def _priority(r: Record) -> int:
    table = r.table or ""
    chain = r.events[0].chain if r.events else ""
    if table.startswith("kgen_trace"):
        return -350
    if table in TABLE_PRIORITY:
        return 100 if table == "nat" and r.hook == "POSTROUTING" else TABLE_PRIORITY[table]
    # nftables (kube-proxy's table): the priority its chain names stand for.
    if chain.startswith("filter-") and chain.endswith("pre-dnat"):
        return -110
    if chain.startswith("nat-"):
        return 100 if r.hook == "POSTROUTING" else -100
    return 0


def _order(r: Record) -> tuple[int, int]:
    return (HOOKS.get(r.hook, 1), _priority(r))


def one_packet(records: list[Record], first: Record) -> list[Record]:
    """`first` and the records after it of the same packet, in hook order."""
    out = [first]
    for r in records:
        if r.index <= first.index or r.ip_id != first.ip_id or r.flags != first.flags:
            continue
        # Hooks and priorities only go up within one packet's passage; two tables' base
        # chains at the same hook and priority (kube-proxy's filter-forward and kgen-netpol's
        # KUBE-ROUTER-FORWARD, both at `filter`) both see it, one after the other.
        if _order(r) < _order(out[-1]) or (_order(r) == _order(out[-1])
                                           and r.table == out[-1].table):
            break
        out.append(r)
    return out


def first_request(plan: Plan, views: dict[str, NodeView]) -> Record | None:
    """The request's first record, looked for on the source's node first."""
    p = plan
    order = [p.src.node] if p.src.kind in ("pod", "node") and p.src.node else []
    order += [n for n in views if n not in order]
    for node in order:
        found = views.get(node)
        for r in found.records if found else []:
            if p.proto == "icmp":
                ok = (p.src.kind == "node" or r.src == p.src.ip) and r.dst == p.dst.ip
            else:
                ok = r.sport == p.sport and (p.src.kind == "node" or r.src == p.src.ip)
                if p.proto == "tcp":
                    ok = ok and "SYN" in r.flags and "ACK" not in r.flags
            if ok:
                return r
    return None


def request_on(plan: Plan, node: NodeView, key: Record) -> list[Record]:
    """The request's records on `node`: same IP id and flags as `key`, one of the flow's ports."""
    ports = {plan.port, *plan.target_ports}
    for r in node.records:
        if r.ip_id != key.ip_id or r.flags != key.flags:
            continue
        if plan.proto != "icmp" and not (r.sport == plan.sport or r.dport in ports):
            continue
        return one_packet(node.records, r)
    return []


def conntrack_on(plan: Plan, node: NodeView, packet: Packet) -> Conntrack | None:
    """The node's conntrack entry whose original direction is `packet`."""
    for entry in node.conntrack:
        if entry.proto == plan.proto and entry.orig == packet.tuple():
            return entry
    return None


def reply_on(plan: Plan, node: NodeView, request: Packet) -> list[Record]:
    """The reply's records on `node`, given the request as it entered there."""
    back = request.reversed()
    wanted = {back.tuple()}
    entry = conntrack_on(plan, node, request)
    if entry is not None:
        r = entry.reply
        wanted |= {r, (r[0], r[1], request.src, request.sport)}
    if plan.proto == "icmp":
        wanted = {(w[0], None, w[2], None) for w in wanted}
    for rec in node.records:
        tup = rec.tuple() if plan.proto != "icmp" else (rec.src, None, rec.dst, None)
        if tup not in wanted:
            continue
        if plan.proto == "tcp" and not ("RST" in rec.flags or {"SYN", "ACK"} <= set(rec.flags)):
            continue
        return one_packet(node.records, rec)
    return []


def node_of_subnet(cluster: Cluster, ip: str) -> str | None:
    """The node whose pod subnet or node address `ip` is."""
    addr = ipaddress.IPv4Address(ip)
    for n in cluster["nodes"]:
        if addr in ipaddress.IPv4Network(n["podCIDR"]) or addr == ipaddress.IPv4Address(n["ip"]):
            return n["name"]
    return None


def next_member(cluster: Cluster, records: list[Record]) -> tuple[str, str | None]:
    """(how the packet leaves the node, the member it goes to)."""
    last = records[-1]
    out = next((r.oif for r in reversed(records) if r.oif), None)
    if last.hook == "INPUT":
        return "local", None
    if out is None:
        return "none", None
    if out == "cbr0":
        return "cbr0", None
    dst = last.dst
    if out == cluster["vxlan"]["device"]:
        return "vxlan", node_of_subnet(cluster, dst)
    owner = node_of_subnet(cluster, dst)
    if owner:
        return "wire", owner
    client = next((c["name"] for c in cluster["clients"] if c["ip"] == dst), None)
    return "wire", client


def frame_for(node: NodeView, node_ip: str | None, records: list[Record], outgoing: bool,
              packet: Packet) -> Frame | None:
    """The underlay frame that carried this packet: same IP id and the same inner
    addresses and ports (replies often share IP id 0, so the id alone is not enough)."""
    last = records[-1]
    for f in node.frames:
        if f.get("outgoing") != outgoing or f.get("id") != last.ip_id:
            continue
        if (f.get("src"), f.get("sport"), f.get("dst"), f.get("dport")) != packet.tuple():
            continue
        enc = f.get("encap")
        if enc and node_ip and (enc["src"] if outgoing else enc["dst"]) != node_ip:
            continue
        return f
    return None
