"""Join what every node reported into one ordered path, request then reply.

The request is the flow's first packet (TCP SYN, the UDP datagram, the ICMP
echo request); its IP identification, which no NAT and no tunnel changes,
finds it on every node. The reply is the first packet back (SYN-ACK or RST,
the answer datagram, the echo reply), found on each node through that node's
conntrack entry for the flow. Nodes are visited in the order the packet took:
from the source, following each node's output interface (cbr0: delivered to
a local pod; the VXLAN device or the underlay: to the node owning the
destination's subnet) until it is delivered, dropped or lost.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from generator.trace.parse import (
    Conntrack,
    Record,
    parse_conntrack,
    parse_nft,
    parse_xtables,
    route_answer,
)
from generator.trace.plan import Plan

# Netfilter priorities of the iptables tables, and of kube-proxy's nftables base chains.
TABLE_PRIORITY = {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50}
HOOKS = {"PREROUTING": 0, "INPUT": 1, "FORWARD": 1, "OUTPUT": 0, "POSTROUTING": 2}
Tuple4 = tuple[str, int | None, str, int | None]


@dataclass
class Hop:
    direction: str
    node: str
    step: str
    detail: str
    packet: dict[str, str]
    table: str | None = None
    chain: str | None = None
    rule: str | None = None
    encap: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"direction": self.direction, "node": self.node, "step": self.step,
                "detail": self.detail, "table": self.table, "chain": self.chain,
                "rule": self.rule, "packet": self.packet, "encap": self.encap}


@dataclass
class NodeView:
    """One member's report, parsed."""

    name: str
    records: list[Record]
    frames: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    conntrack: list[Conntrack]
    bridge: dict[str, Any] | None
    nat_chains: list[str]
    source: dict[str, Any] | None
    error: str | None
    lost: bool = False


@dataclass
class Result:
    plan: Plan
    probe: dict[str, Any]
    hops: list[Hop] = field(default_factory=list)
    verdict: str = "timeout"
    answered_by: str | None = None
    summary: str = ""
    src_ip: str = ""

    def as_json(self) -> dict[str, Any]:
        p = self.plan
        return {"src": {"name": p.src.name, "ip": self.src_ip or p.src.ip},
                "dst": {"name": p.dst.name, "ip": p.dst.ip, "port": p.port,
                        "protocol": p.proto},
                "verdict": self.verdict, "answeredBy": self.answered_by,
                "hops": [h.as_json() for h in self.hops]}


def view(name: str, report: dict[str, Any], mode: str) -> NodeView:
    lines = report.get("lines") or []
    records = parse_nft(name, lines) if mode == "nftables" else parse_xtables(name, lines)
    lost = any(re.search(r"lost|ENOBUFS|no buffer space", line, re.I) for line in lines
               if not line.startswith(("PACKET:", " TRACE:", "TRACE:", "trace id")))
    return NodeView(name, records, report.get("frames") or [], report.get("routes") or [],
                    parse_conntrack(report.get("conntrack") or []), report.get("bridge"),
                    report.get("natChains") or [], report.get("source"), report.get("error"), lost)


def ap(ip: str, port: int | None) -> str:
    return f"{ip}:{port}" if port else ip


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


def _one_packet(records: list[Record], first: Record) -> list[Record]:
    """`first` and the records after it of the same packet, in hook order."""
    out = [first]
    for r in records:
        if r.index <= first.index or r.ip_id != first.ip_id or r.flags != first.flags:
            continue
        if _order(r) <= _order(out[-1]):
            break
        out.append(r)
    return out


class Joiner:
    def __init__(self, plan: Plan, cluster: dict[str, Any], views: dict[str, NodeView],
                 probe: dict[str, Any]) -> None:
        self.plan, self.cluster, self.views, self.probe = plan, cluster, views, probe
        self.nodes = {n["name"]: n for n in cluster["nodes"]}
        self.vxlan_dev = cluster["vxlan"]["device"]
        self.names = plan.names
        self.result = Result(plan, probe, src_ip=plan.src.ip)
        self.nat_nodes: dict[str, Conntrack | None] = {}
        self.req_tuple: dict[str, Tuple4] = {}
        self.drop: Hop | None = None
        self.last_seen: Hop | None = None

    # ------------------------------------------------------------ helpers

    def name_of(self, ip: str) -> str | None:
        return self.names.get(ip)

    def label(self, ip: str, port: int | None = None) -> str:
        who = self.name_of(ip)
        return f"{ap(ip, port)} ({who})" if who else ap(ip, port)

    def node_of_subnet(self, ip: str) -> str | None:
        addr = ipaddress.IPv4Address(ip)
        for n in self.cluster["nodes"]:
            if addr in ipaddress.IPv4Network(n["podCIDR"]) or addr == ipaddress.IPv4Address(n["ip"]):
                return str(n["name"])
        return None

    def packet(self, t: Tuple4) -> dict[str, str]:
        return {"src": ap(t[0], t[1]), "dst": ap(t[2], t[3])}

    def add(self, hop: Hop) -> Hop:
        self.result.hops.append(hop)
        self.last_seen = hop
        if hop.step in ("drop", "reject") and self.drop is None:
            self.drop = hop
        return hop

    def pod_port(self, node: str, pod: str) -> str | None:
        bridge = self.views[node].bridge if node in self.views else None
        info = ((bridge or {}).get("pods") or {}).get(pod) or {}
        return info.get("veth")

    # ------------------------------------------------------------ finding the packet

    def first_request(self) -> Record | None:
        p = self.plan
        order = [p.src.node] if p.src.kind in ("pod", "node") and p.src.node else []
        order += [n for n in self.views if n not in order]
        for node in order:
            view = self.views.get(node)
            if view is None:
                continue
            for r in view.records:
                if p.proto == "icmp":
                    ok = (p.src.kind == "node" or r.src == p.src.ip) and r.dst == p.dst.ip
                else:
                    ok = r.sport == p.sport and (p.src.kind == "node" or r.src == p.src.ip)
                    if p.proto == "tcp":
                        ok = ok and "SYN" in r.flags and "ACK" not in r.flags
                if ok:
                    return r
        return None

    def request_on(self, node: str, key: Record) -> list[Record]:
        p = self.plan
        ports = {p.port, *p.target_ports}
        for r in self.views[node].records:
            if r.ip_id != key.ip_id or r.flags != key.flags:
                continue
            if p.proto != "icmp" and not (r.sport == p.sport or r.dport in ports):
                continue
            return _one_packet(self.views[node].records, r)
        return []

    def conntrack_on(self, node: str, t: Tuple4) -> Conntrack | None:
        for entry in self.views[node].conntrack:
            if entry.proto == self.plan.proto and entry.orig == t:
                return entry
        return None

    def reply_on(self, node: str) -> list[Record]:
        t = self.req_tuple.get(node)
        if t is None:
            return []
        entry = self.conntrack_on(node, t)
        wanted = {(t[2], t[3], t[0], t[1])}
        if entry is not None:
            r = entry.reply
            wanted |= {r, (r[0], r[1], t[0], t[1])}
        for rec in self.views[node].records:
            tup = rec.tuple() if self.plan.proto != "icmp" else (rec.src, None, rec.dst, None)
            if self.plan.proto == "icmp":
                wanted_icmp = {(w[0], None, w[2], None) for w in wanted}
                if tup not in wanted_icmp:
                    continue
            elif tup not in wanted:
                continue
            if self.plan.proto == "tcp" and not ("RST" in rec.flags or {"SYN", "ACK"} <= set(rec.flags)):
                continue
            return _one_packet(self.views[node].records, rec)
        return []

    def next_member(self, records: list[Record]) -> tuple[str, str | None]:
        """(how it leaves, the member it goes to)."""
        last = records[-1]
        out = next((r.oif for r in reversed(records) if r.oif), None)
        if last.hook == "INPUT":
            return "local", None
        if out is None:
            return "none", None
        if out == "cbr0":
            return "cbr0", None
        dst = records[-1].dst
        if out == self.vxlan_dev:
            return "vxlan", self.node_of_subnet(dst)
        owner = self.node_of_subnet(dst)
        if owner:
            return "wire", owner
        client = next((c["name"] for c in self.cluster["clients"] if c["ip"] == dst), None)
        return "wire", client

    # ------------------------------------------------------------ hops

    def route_for(self, node: str, dst: str, iif: str | None) -> dict[str, Any] | None:
        for r in self.views[node].routes:
            if r["dst"] == dst and (r.get("iif") == iif or iif is None):
                return route_answer(r)
        return None

    def no_route(self, node: str, dst: str, error: str) -> str:
        """Why a lab address has no route here, in the lab's terms."""
        addr = ipaddress.IPv4Address(dst)
        owner = next((n for n in self.cluster["nodes"]
                      if addr in ipaddress.IPv4Network(n["podCIDR"])), None)
        why = error.replace("RTNETLINK answers: ", "").lower()
        if owner is not None and owner["name"] == node:
            view = self.views.get(node)
            bridge = ((view.bridge if view else None) or {}).get("cbr0", "?")
            return (f"no route to {dst} ({why}): this node's own pod subnet {owner['podCIDR']} "
                    f"has no route (cbr0 is {bridge}), so the pod range's unreachable route takes it")
        if owner is not None:
            return (f"no route to {dst} ({why}): nothing routes {owner['name']}'s pod subnet "
                    f"{owner['podCIDR']}, so the pod range's unreachable route takes it")
        return f"no route to {dst} ({why})"

    def route_text(self, node: str, dst: str, answer: dict[str, Any]) -> tuple[str, bool]:
        if "error" in answer:
            return self.no_route(node, dst, str(answer["error"])), False
        if answer.get("type") in ("unreachable", "blackhole", "prohibit"):
            return f"no route to {dst} ({answer['type']})", False
        dev, gw = answer.get("dev"), answer.get("gateway")
        if answer.get("type") == "local" or dev == "lo":
            return f"{dst} is local to {node}: up to its own sockets (INPUT)", True
        if dev == self.vxlan_dev:
            owner = self.node_of_subnet(dst)
            return (f"routes {dst} via {gw} dev {dev}: the VXLAN device, to {owner}", True)
        if dev == "cbr0":
            if ipaddress.IPv4Address(dst) in ipaddress.IPv4Network(self.cluster["serviceCIDR"]):
                return (f"routes {dst} dev cbr0: the service range is routed onto the bridge "
                        "(untranslated, nothing there answers)"), True
            return f"routes {dst} dev cbr0: the node's own pod subnet", True
        if gw:
            owner = self.name_of(gw)
            return f"routes {dst} via {gw} dev {dev}" + (f" ({owner}, host-gw)" if owner else ""), True
        return f"routes {dst} dev {dev}", True

    def reason_for_mark(self, ev_rule: str, chain: str) -> str:
        if "masquerade traffic for" in ev_rule or (chain.startswith("external-")
                                                    and "local" not in ev_rule):
            return "NodePort with externalTrafficPolicy Cluster: the reply must come back through this node"
        if "masquerade LOCAL traffic" in ev_rule or "masquerade local traffic" in ev_rule:
            return "traffic from the node itself"
        if (chain.startswith("KUBE-SEP-") and " -s " in ev_rule) or (
                chain.startswith("endpoint-") and "ip saddr" in ev_rule):
            return "hairpin: the pod reaches itself through its service"
        if "! -s" in ev_rule or "ip saddr !=" in ev_rule:
            return "traffic from outside the pod CIDR"
        return "kube-proxy marks it for masquerade"

    def endpoint_step(self, node: str, chain: str, target: str, rule: str) -> str:
        ladder = [line for line in self.views[node].nat_chains
                  if line.startswith(f"-A {chain} ") and "-j KUBE-SEP-" in line
                  and "--rcheck" not in line]
        targets = [line.rsplit("-j ", 1)[1].strip() for line in ladder]
        n = len(targets)
        i = targets.index(target) + 1 if target in targets else None
        prob = re.search(r"--probability ([0-9.]+)", rule)
        if "--rcheck" in rule:
            how = "the endpoint this client used before (sessionAffinity ClientIP)"
        elif prob:
            how = f"probability {fraction(float(prob.group(1)))} at this step"
        elif n > 1:
            how = "the last step: taken when every earlier draw declined"
        else:
            how = "the only endpoint"
        which = f"endpoint {i} of {n}" if i else "an endpoint"
        return f"picks {which} ({how})"

    def record_hops(self, direction: str, node: str, records: list[Record], t: list[Any],
                    marked: list[str]) -> bool:
        """Each rule, policy and translation the node's netfilter applied; `t` is the packet
        (src, sport, dst, dport) as it stands, updated in place."""
        routed = records[0].hook != "PREROUTING"
        for rec in records:
            t[0], t[1], t[2], t[3] = rec.src, rec.sport, rec.dst, rec.dport
            if not routed and rec.hook != "PREROUTING":
                routed = True
                self.route_hop(direction, node, rec, t)
            for ev in rec.events:
                ours = "kgen-trace" in (ev.rule or "") or "nftrace" in (ev.rule or "")
                if (ev.table == "raw" and ours) or ev.table.startswith("kgen_trace"):
                    continue
                if ev.kind == "policy" and ev.verdict == "ACCEPT" and ev.table != "filter":
                    continue  # raw, mangle and nat chains that decided nothing
                if ev.kind == "return" or (ev.kind == "rule" and not ev.rule):
                    continue
                hop = self.event_hop(direction, node, ev, t, marked)
                if hop.step in ("drop", "reject"):
                    return False
        if not routed:
            return self.route_hop(direction, node, records[-1], t)
        return True

    def bridged(self, node: str, rec: Record) -> bool:
        """A frame from a pod to another pod's MAC on the same cbr0 is switched, not routed
        (br_netfilter still shows it to iptables)."""
        mac = self.nodes.get(node, {}).get("gatewayMAC", "")
        seen = rec.fields.get("MACDST")
        if rec.iif != "cbr0" or not seen or not mac:
            return False
        return [int(x, 16) for x in seen.split(":")] != [int(x, 16) for x in mac.split(":")]

    def route_hop(self, direction: str, node: str, rec: Record, t: list[Any]) -> bool:
        """The routing decision; False when there is no route (the packet dies here)."""
        if rec.hook == "OUTPUT":
            return True
        first = next((r for r in self.views[node].records if r.trace_id == rec.trace_id
                      and r.hook == "PREROUTING"), rec)
        if self.bridged(node, first) or self.bridged(node, rec):
            self.add(Hop(direction, node, "bridge",
                         f"{node}: cbr0 switches the frame straight to {self.label(t[2])}'s port "
                         "(same subnet: no routing; br_netfilter still passes it through iptables)",
                         self.packet(tuple(t))))  # type: ignore[arg-type]
            return True
        answer = self.route_for(node, t[2], rec.iif)
        if answer is None:
            return True
        text, ok = self.route_text(node, t[2], answer)
        self.add(Hop(direction, node, "route" if ok else "drop", f"{node}: {text}",
                     self.packet(tuple(t))))  # type: ignore[arg-type]
        return ok

    def event_hop(self, direction: str, node: str, ev: Any, t: list[Any], marked: list[str]) -> Hop:
        rule = ev.rule or ""
        comment = ev.comment
        where = f"{ev.table} {ev.chain}"
        step, detail = "rule", ""
        if ev.kind == "policy":
            step, detail = "policy", f"{where}: no rule decided, chain policy {ev.verdict}"
            if ev.verdict == "DROP":
                step = "drop"
        elif ev.verdict in ("JUMP", "GOTO") and ev.target:
            target = ev.target
            if target in ("KUBE-MARK-MASQ", "mark-for-masquerade"):
                reason = self.reason_for_mark(rule, ev.chain)
                marked.append(reason)
                detail = f"{where}: marks the packet for masquerade ({reason}) → {target}"
            elif target.startswith("endpoint-") and "numgen" in rule:
                detail = f"{where} {nft_endpoint_step(rule, target)} → {target}"
            elif target.startswith("KUBE-SEP-") and ev.chain.startswith(("KUBE-SVC-", "KUBE-SVL-")):
                ep = re.search(r"-> (\d+\.\d+\.\d+\.\d+):(\d+)", comment or "")
                who = self.name_of(ep.group(1)) if ep else None
                to = (f" ({who} at {ep.group(1)}:{ep.group(2)})" if who else
                      f" ({ep.group(1)}:{ep.group(2)})") if ep else ""
                detail = f"{where} {self.endpoint_step(node, ev.chain, target, rule)} → {target}{to}"
            elif comment:
                detail = f"{where}: {comment} → {target}"
            else:
                detail = f"{where} → {target}"
        elif "-j DNAT" in rule or " dnat " in rule:
            found = re.search(r"(?:--to-destination|dnat to) (\d+\.\d+\.\d+\.\d+):?(\d+)?", rule)
            before = ap(t[2], t[3])
            if found:
                t[2], t[3] = found.group(1), int(found.group(2)) if found.group(2) else t[3]
            step = "dnat"
            who = self.name_of(t[2])
            detail = (f"{where}: DNAT {before} → {ap(t[2], t[3])}" + (f" ({who})" if who else ""))
        elif "-j MASQUERADE" in rule or re.search(r"(^|\s)masquerade(\s|$)", rule):
            step = "masquerade"
            entry = self.nat_nodes.get(node)
            before = ap(t[0], t[1])
            if entry is not None:
                t[0], t[1] = entry.reply[2], entry.reply[3]
            why = marked[-1] if marked else "marked earlier"
            detail = (f"{where}: MASQUERADE source {before} → {ap(t[0], t[1])}"
                      f" (the address of the way out; why: {why})")
        elif ev.verdict == "DROP" and "reject" in rule.lower():
            step = "reject"
            how = re.search(r"--reject-with (\S+)", rule)
            detail = (f"{where}: REJECT" + (f" with {how.group(1)}" if how else "")
                      + (f" ({comment})" if comment else ""))
        elif ev.verdict == "DROP":
            step = "drop"
            detail = f"{where}: DROP" + (f" ({comment})" if comment else "")
        elif ev.chain in ("KUBE-MARK-MASQ", "mark-for-masquerade"):
            detail = f"{where}: sets mark 0x4000 (masquerade when leaving the node)"
        elif ev.verdict == "RETURN" and ev.chain == "KUBE-POSTROUTING":
            detail = f"{where}: not marked for masquerade → RETURN (source kept)"
        elif ev.chain == "KUBE-POSTROUTING" and "MARK" in rule:
            detail = f"{where}: clears the masquerade mark"
        else:
            detail = f"{where}: {ev.verdict}" + (f" ({comment})" if comment else "")
        return self.add(Hop(direction, node, step, f"{node}: {detail}",
                            self.packet(tuple(t)),  # type: ignore[arg-type]
                            ev.table, ev.chain, ev.rule))

    def frame_for(self, node: str, records: list[Record], outgoing: bool,
                  t: Tuple4 | list[Any]) -> dict[str, Any] | None:
        """The underlay frame that carried this packet: same IP id and the same inner
        addresses and ports (replies often share IP id 0, so the id alone is not enough)."""
        me = self.nodes.get(node, {}).get("ip")
        last = records[-1]
        for f in self.views[node].frames if node in self.views else []:
            if f.get("outgoing") != outgoing or f.get("id") != last.ip_id:
                continue
            if (f.get("src"), f.get("sport"), f.get("dst"), f.get("dport")) != tuple(t):
                continue
            enc = f.get("encap")
            if enc and me and (enc["src"] if outgoing else enc["dst"]) != me:
                continue
            return f
        return None

    def visit(self, direction: str, node: str, records: list[Record], first: bool,
              came_from: str | None, t: list[Any]) -> tuple[str, str | None]:
        p = self.plan
        r0 = records[0]
        if not first:
            if r0.iif == self.vxlan_dev:
                f = self.frame_for(node, records, False, r0.tuple())
                enc = f["encap"] if f else None
                detail = (f"{node}: arrives on eth0 inside VXLAN from {came_from or '?'}"
                          + (f" ({enc['src']} → {enc['dst']}, UDP {enc['dport']}, VNI {enc['vni']})"
                             if enc else "") + f", decapsulated by {self.vxlan_dev}")
                self.add(Hop(direction, node, "decap", detail, self.packet(r0.tuple()),
                             encap=_encap(enc)))
            elif r0.iif == "cbr0":
                pod = self.name_of(r0.src) or r0.src
                veth = self.pod_port(node, pod)
                detail = (f"{pod} sends {ap(r0.src, r0.sport)} → {ap(r0.dst, r0.dport)}"
                          f" ({'/'.join(r0.flags) or p.proto}) out of its eth0"
                          + (f" through {veth}" if veth else "") + f" into {node}'s cbr0")
                self.add(Hop(direction, node, "leave-netns", detail, self.packet(r0.tuple())))
            elif r0.iif:
                detail = f"{node}: arrives on {r0.iif} from {came_from or self.label(r0.src)}"
                self.add(Hop(direction, node, "arrive", detail, self.packet(r0.tuple())))
        marked: list[str] = []
        if direction == "reply" and node in self.nat_nodes:
            entry = self.nat_nodes[node]
            if entry is not None:
                o, r = entry.orig, entry.reply
                tuples = re.findall(r"\b(?:src|dst|sport|dport|type|code|id)=\S+", entry.line)
                detail = (f"{node}: conntrack turns the reply {ap(r[0], r[1])} → {ap(r[2], r[3])} "
                          f"back into {ap(o[2], o[3])} → {ap(o[0], o[1])} (entry: {entry.proto} "
                          f"{' '.join(tuples)})")
                self.add(Hop(direction, node, "conntrack", detail, self.packet((o[2], o[3], o[0], o[1]))))
        if not self.record_hops(direction, node, records, t, marked):
            return "dropped", None
        how, nxt = self.next_member(records)
        if direction == "reply" and node in self.nat_nodes and self.nat_nodes[node] is not None:
            o = self.nat_nodes[node].orig  # type: ignore[union-attr]
            t[0], t[1], t[2], t[3] = o[2], o[3], o[0], o[1]
        if how == "vxlan":
            f = self.frame_for(node, records, True, t)
            enc = f["encap"] if f else None
            if f:
                t[0], t[1], t[2], t[3] = f["src"], f.get("sport"), f["dst"], f.get("dport")
            detail = (f"{node}: encapsulates for {nxt or '?'}: "
                      + (f"VXLAN {enc['src']}:{enc['sport']} → {enc['dst']}:{enc['dport']}, "
                         f"VNI {enc['vni']}, out of eth0" if enc else
                         f"out of {self.vxlan_dev} (no frame seen on eth0)"))
            self.add(Hop(direction, node, "encap", detail, self.packet(tuple(t)),  # type: ignore[arg-type]
                         encap=_encap(enc)))
        elif how == "wire":
            f = self.frame_for(node, records, True, t)
            if f:
                t[0], t[1], t[2], t[3] = f["src"], f.get("sport"), f["dst"], f.get("dport")
            plain = " (host-gw: no encapsulation)" if nxt in self.nodes else ""
            detail = f"{node}: sends it out of eth0 to {nxt or self.label(t[2])}{plain}"
            self.add(Hop(direction, node, "wire", detail, self.packet(tuple(t))))  # type: ignore[arg-type]
        elif how == "cbr0":
            pod = self.name_of(t[2]) or ""
            local = {p["name"] for p in self.cluster["pods"] if p["node"] == node}
            if pod in local:
                veth = self.pod_port(node, pod)
                detail = (f"{node}: delivers through cbr0" + (f" and {veth}" if veth else "")
                          + f" into {pod} (eth0 {ap(t[2], t[3])})")
                self.add(Hop(direction, node, "deliver", detail, self.packet(tuple(t))))  # type: ignore[arg-type]
            else:
                svc = ipaddress.IPv4Address(t[2]) in ipaddress.IPv4Network(self.cluster["serviceCIDR"])
                why = (": the service address was never translated (no DNAT rule matched; is "
                       "kube-proxy's nat table there?)" if svc else "")
                detail = f"{node}: sends {t[2]} out of cbr0, but no pod there has it; nobody answers{why}"
                self.add(Hop(direction, node, "drop", detail, self.packet(tuple(t))))  # type: ignore[arg-type]
        elif how == "local":
            detail = f"{node}: delivers it to its own stack (INPUT) on {ap(t[2], t[3])}"
            self.add(Hop(direction, node, "deliver", detail, self.packet(tuple(t))))  # type: ignore[arg-type]
        return how, nxt

    # ------------------------------------------------------------ the walk

    def source_hop(self) -> None:
        p = self.plan
        node = p.src.node or p.src.name
        view = self.views.get(node)
        info = (view.source if view else None) or {}
        route = info.get("route")
        answer = route[0] if isinstance(route, list) and route else {}
        via = ""
        if answer:
            via = f"route via {answer['gateway']} dev {answer.get('dev')}" if answer.get("gateway") \
                else f"route dev {answer.get('dev')}"
            if answer.get("prefsrc") and p.src.kind == "node":
                self.result.src_ip = answer["prefsrc"]
        elif isinstance(route, dict):
            via = f"no route: {route.get('error', '').replace('RTNETLINK answers: ', '')}"
        src_ip = self.result.src_ip
        flow = f"{ap(src_ip, p.sport if p.proto != 'icmp' else None)} → {ap(p.dst.ip, p.port)}"
        what = {"tcp": "TCP SYN (HTTP GET /hostname)", "udp": "UDP datagram \"hostname\"",
                "icmp": f"ICMP echo request (id {p.sport})"}[p.proto]
        if p.src.kind == "pod":
            veth = self.pod_port(node, p.src.name)
            bridge = (view.bridge or {}).get("cbr0") if view else None
            detail = (f"{p.src.name} sends {what} {flow}: {via}, out of its eth0"
                      + (f" through {veth}" if veth else "") + f" into {node}'s cbr0"
                      + (f" (cbr0 is {bridge})" if bridge and bridge != "UP" else ""))
            step = "leave-netns"
        else:
            detail = f"{p.src.name} sends {what} {flow}: {via}"
            step = "send"
        self.add(Hop("request", node, step, detail,
                     {"src": ap(src_ip, p.sport if p.proto != "icmp" else None),
                      "dst": ap(p.dst.ip, p.port)}))

    def walk(self, direction: str, start: str, first: Record | None, came_from: str | None,
             is_source: bool) -> tuple[str, str | None, str]:
        """Follow one packet from `start`; returns (how it ended, last node, next member)."""
        node, prev = start, came_from
        visited: set[str] = set()
        how, nxt = "none", None
        t: list[Any] = ["", None, "", None]
        first_visit = is_source
        while node and node not in visited and node in self.views:
            visited.add(node)
            if direction == "request":
                records = self.request_on(node, first) if first else []
                if records:
                    self.req_tuple[node] = records[0].tuple()
                    if any(ev.rule and re.search(r"\b(dnat|masquerade)\b", ev.rule, re.I)
                           for r in records for ev in r.events):
                        self.nat_nodes[node] = self.conntrack_on(node, records[0].tuple())
            else:
                records = self.reply_on(node)
            if not records:
                break
            if not t[0]:
                r0 = records[0]
                t = [r0.src, r0.sport, r0.dst, r0.dport]
            how, nxt = self.visit(direction, node, records, first_visit, prev, t)
            first_visit = False
            if how in ("cbr0", "local", "none", "dropped") or nxt is None:
                return how, node, nxt or ""
            prev, node = node, nxt
        return how, node, nxt or ""

    def run(self) -> Result:
        p = self.plan
        self.source_hop()
        key = self.first_request()
        ended, end_node = "none", None
        if key is not None:
            src_node = key.node
            if p.src.kind == "node":
                self.result.src_ip = key.src
            if p.src.kind == "client":
                self.add(Hop("request", p.src.name, "wire",
                             f"{p.src.name}: out of eth0 onto the node network to {src_node}",
                             self.packet(key.tuple())))
            ended, end_node, nxt = self.walk("request", src_node, key,
                                             p.src.name if p.src.kind == "client" else None,
                                             p.src.kind in ("pod", "node"))
        # The reply starts where the request was delivered.
        if end_node and ended in ("cbr0", "local"):
            how, last, nxt = self.walk("reply", end_node, None, None, False)
            if how == "wire" and nxt in {c["name"] for c in self.cluster["clients"]}:
                self.add(Hop("reply", nxt, "deliver", f"{nxt}: receives the answer on eth0",
                             self.last_seen.packet if self.last_seen else {}))
        self.verdict(key is not None)
        return self.result

    def verdict(self, seen: bool) -> None:
        self._verdict(seen)
        lossy = sorted(name for name, v in self.views.items() if v.lost)
        if lossy:
            self.result.summary += (f" (the kernel's trace lost events on {', '.join(lossy)}: "
                                    "its monitor fell behind, so hops there may be missing)")

    def _verdict(self, seen: bool) -> None:
        r, p = self.result, self.plan
        probe = self.probe or {}
        error = str(probe.get("error") or "")
        ms = probe.get("ms")
        took = f" in {ms:.1f} ms" if isinstance(ms, int | float) and ms else ""
        if probe.get("ok"):
            r.verdict = "answered"
            answer = str(probe.get("answer") or "")
            if p.proto == "icmp":
                r.answered_by = self.name_of(answer) if self.name_of(answer) in {
                    x["name"] for x in self.cluster["pods"]} else None
                who = self.label(answer)
            else:
                r.answered_by = answer or None
                where = next((h.packet["dst"] for h in r.hops if h.direction == "request"
                              and h.step == "deliver"), None)
                who = answer + (f" ({where})" if where else "")
            r.summary = f"answered by {who}{took}"
            return
        if "refused" in error:
            r.verdict = "refused"
            rej = next((h for h in r.hops if h.step == "reject"), None)
            if rej:
                r.summary = f"refused at {rej.node} by {rej.table} {rej.chain}: {rej.rule}"
            else:
                delivered = next((h for h in r.hops if h.direction == "request"
                                  and h.step == "deliver"), None)
                rst = next((h for h in r.hops if h.direction == "reply" and "RST" in h.detail), None)
                where = f" at {delivered.packet['dst']}" if delivered else ""
                how = ("answered with a TCP reset" if rst or p.proto == "tcp" else
                       "answered with ICMP port unreachable")
                who = (self.name_of(delivered.packet["dst"].split(":")[0]) if delivered else None) \
                    or "the destination"
                r.summary = f"refused: {who} {how} (nothing listens{where})"
            return
        if self.drop is not None:
            r.verdict = "dropped"
            d = self.drop
            if d.rule:
                why = re.search(r'--comment "([^"]*)"', d.rule)
                r.summary = (f"dropped at {d.node} by {d.table} {d.chain}"
                             + (f" ({why.group(1)})" if why else "") + f": {d.rule}")
            else:
                r.summary = f"dropped at {d.node}: {d.detail.split(': ', 1)[-1]}"
            return
        if "unreachable" in error or "no route" in error:
            r.verdict = "dropped"
            r.summary = f"dropped: {error} (an ICMP error came back)"
            return
        r.verdict = "timeout"
        drops = int(probe.get("backlogDrops") or 0)
        if drops:
            error = (f"{error or 'no answer'}; meanwhile the kernel dropped {drops} packet(s) from "
                     "its input backlog (/proc/net/softnet_stat): a busy machine, not a rule")
        last = self.last_seen
        if not seen:
            r.summary = (f"timeout ({error or 'no answer'}): the packet never reached any node's "
                         "netfilter after leaving the source")
        elif last is not None:
            r.summary = f"timeout ({error or 'no answer'}): last seen at {last.node}: {last.detail}"
        else:
            r.summary = f"timeout ({error or 'no answer'})"


def fraction(p: float) -> str:
    """kube-proxy's 0.50000000000, 0.33333333333 as 1/2, 1/3; anything else as it is."""
    if p > 0 and abs(1 / p - round(1 / p)) < 1e-4:
        return f"1/{round(1 / p)}"
    return f"{p:.4g}"


def nft_endpoint_step(rule: str, target: str) -> str:
    """kube-proxy's nftables pick: `numgen random mod N vmap { 0 : goto endpoint-…, … }`."""
    n = re.search(r"numgen random mod (\d+)", rule)
    i = re.search(rf"(\d+) : (?:goto|jump) {re.escape(target)}\b", rule)
    if not n:
        return "picks an endpoint"
    total = int(n.group(1))
    which = f"endpoint {int(i.group(1)) + 1} of {total}" if i else f"one of {total} endpoints"
    return f"picks {which} (numgen random mod {total}: each 1/{total})"


def _encap(enc: dict[str, Any] | None) -> dict[str, Any] | None:
    if not enc:
        return None
    return {"src": enc["src"], "dst": enc["dst"], "dport": enc["dport"], "vni": enc["vni"]}


def join(plan: Plan, cluster: dict[str, Any], reports: dict[str, dict[str, Any]],
         probe: dict[str, Any]) -> Result:
    views = {name: view(name, rep, plan.mode) for name, rep in reports.items()}
    return Joiner(plan, cluster, views, probe).run()
