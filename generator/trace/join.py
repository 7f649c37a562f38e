"""Join what every node reported into one ordered path, request then reply.

Nodes are visited in the order the packet took: from the source, following
each node's output interface (cbr0: delivered to a local pod; the VXLAN
device or the underlay: to the node owning the destination's subnet) until it
is delivered, dropped or lost. find.py finds the packet's records on each
node, narrate.py says what each one did, verdict.py sums it up.
"""

from __future__ import annotations

import ipaddress
import re

from generator.node.contract import Cluster
from generator.node.documents import TraceProbeResult, TraceReport
from generator.trace import find
from generator.trace.find import NodeView, Packet
from generator.trace.narrate import Hop, Narrator, ap, encap_doc, packet_doc
from generator.trace.parse import Record
from generator.trace.plan import Plan
from generator.trace.policy import PolicyNamer, derived_drop, planned_chains
from generator.trace.verdict import Result, decide

__all__ = ["Hop", "Result", "join"]

_NAT_RULE = re.compile(r"\b(dnat|masquerade)\b", re.I)
_WHAT = {"tcp": "TCP SYN (HTTP GET /hostname)", "udp": "UDP datagram \"hostname\""}


class Joiner:
    """Walks the request, then the reply, through the nodes' reports, collecting hops."""

    def __init__(self, plan: Plan, cluster: Cluster, views: dict[str, NodeView],
                 probe: TraceProbeResult) -> None:
        self.plan, self.cluster, self.views = plan, cluster, views
        self.say = Narrator(plan, cluster, views)
        self.result = Result(plan, probe, src_ip=plan.src.ip)
        self.request_at: dict[str, Packet] = {}  # the request as each node first saw it
        self.drop: Hop | None = None
        self.last_seen: Hop | None = None
        self.policy_chains: dict[str, str] = {}  # KUBE-NWPLCY-<hash> -> policy, from jumps seen
        self._planned: dict[str, str] | None = None

    def planned_chains(self) -> dict[str, str]:
        """The lab's policy chains as the nodes plan them (computed once, when needed)."""
        if self._planned is None:
            self._planned = planned_chains(self.cluster)
        return self._planned

    def add(self, hop: Hop) -> Hop:
        self.result.hops.append(hop)
        self.last_seen = hop
        if hop.step in ("drop", "reject") and self.drop is None:
            self.drop = hop
        return hop

    # ------------------------------------------------------------ one node

    def record_hops(self, direction: str, node: str, records: list[Record], packet: Packet,
                    marked: list[str]) -> tuple[bool, Packet]:
        """Each rule, policy and translation the node's netfilter applied; (whether the
        packet went on, the packet as it leaves)."""
        routed = records[0].hook != "PREROUTING"
        namer = PolicyNamer(self.policy_chains, self.planned_chains)
        for rec in records:
            packet = Packet.of(rec)
            if not routed and rec.hook != "PREROUTING":
                routed = True
                self.route_hop(direction, node, rec, packet)
            for ev in rec.events:
                ours = "kgen-trace" in (ev.rule or "") or "nftrace" in (ev.rule or "")
                if (ev.table == "raw" and ours) or ev.table.startswith("kgen_trace"):
                    continue
                if ev.kind == "policy" and ev.verdict == "ACCEPT" and ev.table != "filter":
                    continue  # raw, mangle and nat chains that decided nothing
                if ev.kind == "return" or (ev.kind == "rule" and not ev.rule):
                    continue
                step, detail, packet = self.say.event(node, ev, packet, marked)
                policy = namer.name(ev)
                detail = namer.detail(ev, detail, policy)
                self.add(Hop(direction, node, step, f"{node}: {detail}", packet_doc(packet),
                             ev.table, ev.chain, ev.rule, policy=policy))
                if step in ("drop", "reject"):
                    return False, packet
        if not routed:
            return self.route_hop(direction, node, records[-1], packet), packet
        return True, packet

    def route_hop(self, direction: str, node: str, rec: Record, packet: Packet) -> bool:
        """The routing decision; False when there is no route (the packet dies here)."""
        if rec.hook == "OUTPUT":
            return True
        first = next((r for r in self.views[node].records if r.trace_id == rec.trace_id
                      and r.hook == "PREROUTING"), rec)
        if self.say.bridged(node, first) or self.say.bridged(node, rec):
            self.add(Hop(direction, node, "bridge",
                         f"{node}: cbr0 switches the frame straight to {self.say.label(packet.dst)}'s "
                         "port (same subnet: no routing; br_netfilter still passes it through iptables)",
                         packet_doc(packet)))
            return True
        answer = self.say.route_for(node, packet.dst, rec.iif)
        if answer is None:
            return True
        text, ok = self.say.route_text(node, packet.dst, answer)
        self.add(Hop(direction, node, "route" if ok else "drop", f"{node}: {text}",
                     packet_doc(packet)))
        return ok

    def arrival(self, direction: str, node: str, r0: Record, came_from: str | None) -> None:
        """How the packet came into a node other than the source's."""
        if r0.iif == self.say.vxlan_dev:
            f = find.frame_for(self.views[node], self._ip(node), [r0], False, Packet.of(r0))
            enc = f["encap"] if f else None
            detail = (f"{node}: arrives on eth0 inside VXLAN from {came_from or '?'}"
                      + (f" ({enc['src']} → {enc['dst']}, UDP {enc['dport']}, VNI {enc['vni']})"
                         if enc else "") + f", decapsulated by {self.say.vxlan_dev}")
            self.add(Hop(direction, node, "decap", detail, packet_doc(Packet.of(r0)),
                         encap=encap_doc(enc)))
        elif r0.iif == "cbr0":
            pod = self.say.name_of(r0.src) or r0.src
            veth = self.say.pod_port(node, pod)
            detail = (f"{pod} sends {ap(r0.src, r0.sport)} → {ap(r0.dst, r0.dport)}"
                      f" ({'/'.join(r0.flags) or self.plan.proto}) out of its eth0"
                      + (f" through {veth}" if veth else "") + f" into {node}'s cbr0")
            self.add(Hop(direction, node, "leave-netns", detail, packet_doc(Packet.of(r0))))
        elif r0.iif:
            detail = f"{node}: arrives on {r0.iif} from {came_from or self.say.label(r0.src)}"
            self.add(Hop(direction, node, "arrive", detail, packet_doc(Packet.of(r0))))

    def un_nat(self, direction: str, node: str) -> None:
        """conntrack turning the reply back on a node that translated the request."""
        entry = self.say.nat_nodes.get(node) if direction == "reply" else None
        if entry is None:
            return
        o, r = entry.orig, entry.reply
        tuples = re.findall(r"\b(?:src|dst|sport|dport|type|code|id)=\S+", entry.line)
        detail = (f"{node}: conntrack turns the reply {ap(r[0], r[1])} → {ap(r[2], r[3])} "
                  f"back into {ap(o[2], o[3])} → {ap(o[0], o[1])} (entry: {entry.proto} "
                  f"{' '.join(tuples)})")
        self.add(Hop(direction, node, "conntrack", detail,
                     packet_doc(Packet(o[2], o[3], o[0], o[1]))))

    def leave(self, direction: str, node: str, records: list[Record], packet: Packet
              ) -> tuple[str, str | None, Packet]:
        """How the packet leaves the node: (how, the next member, the packet on its way)."""
        how, nxt = find.next_member(self.cluster, records)
        entry = self.say.nat_nodes.get(node) if direction == "reply" else None
        if entry is not None:
            o = entry.orig
            packet = Packet(o[2], o[3], o[0], o[1])
        if how in ("vxlan", "wire"):
            f = find.frame_for(self.views[node], self._ip(node), records, True, packet)
            if f:
                packet = Packet(f["src"], f.get("sport"), f["dst"], f.get("dport"))
            enc = f["encap"] if f else None
            if how == "vxlan":
                detail = (f"{node}: encapsulates for {nxt or '?'}: "
                          + (f"VXLAN {enc['src']}:{enc['sport']} → {enc['dst']}:{enc['dport']}, "
                             f"VNI {enc['vni']}, out of eth0" if enc else
                             f"out of {self.say.vxlan_dev} (no frame seen on eth0)"))
                self.add(Hop(direction, node, "encap", detail, packet_doc(packet),
                             encap=encap_doc(enc)))
            else:
                plain = " (host-gw: no encapsulation)" if nxt in self.say.nodes else ""
                detail = f"{node}: sends it out of eth0 to {nxt or self.say.label(packet.dst)}{plain}"
                self.add(Hop(direction, node, "wire", detail, packet_doc(packet)))
        elif how == "cbr0":
            self.add(self.onto_bridge(direction, node, packet))
        elif how == "local":
            detail = f"{node}: delivers it to its own stack (INPUT) on {ap(packet.dst, packet.dport)}"
            self.add(Hop(direction, node, "deliver", detail, packet_doc(packet)))
        return how, nxt, packet

    def onto_bridge(self, direction: str, node: str, packet: Packet) -> Hop:
        """Out of cbr0: delivered to a pod of this node, or to nobody."""
        pod = self.say.name_of(packet.dst) or ""
        local = {p["name"] for p in self.cluster["pods"] if p["node"] == node}
        if pod in local:
            veth = self.say.pod_port(node, pod)
            detail = (f"{node}: delivers through cbr0" + (f" and {veth}" if veth else "")
                      + f" into {pod} (eth0 {ap(packet.dst, packet.dport)})")
            return Hop(direction, node, "deliver", detail, packet_doc(packet))
        svc = ipaddress.IPv4Address(packet.dst) in ipaddress.IPv4Network(self.cluster["serviceCIDR"])
        why = (": the service address was never translated (no DNAT rule matched; is "
               "kube-proxy's nat table there?)" if svc else "")
        detail = f"{node}: sends {packet.dst} out of cbr0, but no pod there has it; nobody answers{why}"
        return Hop(direction, node, "drop", detail, packet_doc(packet))

    def visit(self, direction: str, node: str, records: list[Record], first: bool,
              came_from: str | None, packet: Packet) -> tuple[str, str | None, Packet]:
        """One node's part of the path: (how it left, the next member, the packet)."""
        if not first:
            self.arrival(direction, node, records[0], came_from)
        self.un_nat(direction, node)
        went_on, packet = self.record_hops(direction, node, records, packet, [])
        if not went_on:
            return "dropped", None, packet
        return self.leave(direction, node, records, packet)

    def _ip(self, node: str) -> str | None:
        spec = self.say.nodes.get(node)
        return spec["ip"] if spec else None

    # ------------------------------------------------------------ the walk

    def source_hop(self) -> None:
        p = self.plan
        node = p.src.node or p.src.name
        view = self.views.get(node)
        route = view.source.get("route") if view and view.source else None
        via = ""
        answer = route[0] if isinstance(route, list) and route else {}
        if answer:
            via = (f"route via {answer['gateway']} dev {answer.get('dev')}"
                   if answer.get("gateway") else f"route dev {answer.get('dev')}")
            if answer.get("prefsrc") and p.src.kind == "node":
                self.result.src_ip = str(answer["prefsrc"])
        elif isinstance(route, dict):
            via = f"no route: {route.get('error', '').replace('RTNETLINK answers: ', '')}"
        sport = p.sport if p.proto != "icmp" else None
        flow = f"{ap(self.result.src_ip, sport)} → {ap(p.dst.ip, p.port)}"
        what = p.what or _WHAT.get(p.proto, f"ICMP echo request (id {p.sport})")
        if p.src.kind == "pod":
            veth = self.say.pod_port(node, p.src.name)
            bridge = view.bridge.get("cbr0") if view and view.bridge else None
            detail = (f"{p.src.name} sends {what} {flow}: {via}, out of its eth0"
                      + (f" through {veth}" if veth else "") + f" into {node}'s cbr0"
                      + (f" (cbr0 is {bridge})" if bridge and bridge != "UP" else ""))
            step = "leave-netns"
        else:
            detail = f"{p.src.name} sends {what} {flow}: {via}"
            step = "send"
        self.add(Hop("request", node, step, detail,
                     {"src": ap(self.result.src_ip, sport), "dst": ap(p.dst.ip, p.port)}))

    def records_on(self, direction: str, node: str, key: Record | None) -> list[Record]:
        if direction == "reply":
            request = self.request_at.get(node)
            return find.reply_on(self.plan, self.views[node], request) if request else []
        records = find.request_on(self.plan, self.views[node], key) if key else []
        if records:
            self.request_at[node] = Packet.of(records[0])
            if any(ev.rule and _NAT_RULE.search(ev.rule) for r in records for ev in r.events):
                self.say.nat_nodes[node] = find.conntrack_on(self.plan, self.views[node],
                                                             Packet.of(records[0]))
        return records

    def walk(self, direction: str, start: str, key: Record | None, came_from: str | None,
             is_source: bool) -> tuple[str, str | None, str]:
        """Follow one packet from `start`; returns (how it ended, last node, next member)."""
        node: str | None = start
        prev = came_from
        visited: set[str] = set()
        how, nxt = "none", None
        packet: Packet | None = None
        first_visit = is_source
        while node and node not in visited and node in self.views:
            visited.add(node)
            records = self.records_on(direction, node, key)
            if not records:
                break
            if packet is None:
                packet = Packet.of(records[0])
            how, nxt, packet = self.visit(direction, node, records, first_visit, prev, packet)
            first_visit = False
            if how in ("cbr0", "local", "none", "dropped") or nxt is None:
                return how, node, nxt or ""
            prev, node = node, nxt
        return how, node, nxt or ""

    def run(self) -> Result:
        p = self.plan
        self.source_hop()
        key = find.first_request(p, self.views)
        ended, end_node = "none", None
        if key is not None:
            if p.src.kind == "node":
                self.result.src_ip = key.src
            if p.src.kind == "client":
                self.add(Hop("request", p.src.name, "wire",
                             f"{p.src.name}: out of eth0 onto the node network to {key.node}",
                             packet_doc(Packet.of(key))))
            ended, end_node, _ = self.walk("request", key.node, key,
                                           p.src.name if p.src.kind == "client" else None,
                                           p.src.kind in ("pod", "node"))
        # The reply starts where the request was delivered.
        if end_node and ended in ("cbr0", "local"):
            how, _, nxt = self.walk("reply", end_node, None, None, False)
            if how == "wire" and nxt in {c["name"] for c in self.cluster["clients"]}:
                self.add(Hop("reply", nxt, "deliver", f"{nxt}: receives the answer on eth0",
                             self.last_seen.packet if self.last_seen else {"src": "", "dst": ""}))
        decide(self.result, self.cluster, self.plan.names, key is not None, self.drop,
               self.last_seen)
        if self.result.verdict == "timeout":
            self.untraced_drop()
        lossy = sorted(name for name, v in self.views.items() if v.lost)
        if lossy:
            self.result.summary += (f" (the kernel's trace lost events on {', '.join(lossy)}: "
                                    "its monitor fell behind, so hops there may be missing)")
        return self.result


    def untraced_drop(self) -> None:
        """No answer and no drop in the trace: when the lab's policies drop this connection,
        say so, from the evaluator, as the last hop (the kernel's trace lost the drop)."""
        p = self.plan
        request = [h for h in self.result.hops if h.direction == "request"]
        dst, port = _split(request[-1].packet["dst"]) if request else (p.dst.ip, p.port)
        ends = [(dst, port)]
        if dst == p.dst.ip and p.endpoints:  # never seen translated: any endpoint it may reach
            ends = [(e.ip, e.port) for e in p.endpoints]
        found = [derived_drop(self.cluster, self.result.src_ip or p.src.ip, ip, to, p.proto)
                 for ip, to in ends]
        drops = [f for f in found if f is not None]
        if not drops or len(drops) != len(found):
            return  # the policies let it through (to some endpoint): not theirs to explain
        policy, reason, node = drops[0]
        detail = (f"{node or '?'}: dropped by NetworkPolicy {policy}: {reason} (derived from the "
                  "lab's policies: the kernel's trace showed no drop rule)")
        self.add(Hop("request", node or (request[-1].node if request else ""), "drop", detail,
                     request[-1].packet if request else {"src": p.src.ip, "dst": dst},
                     policy=policy))
        self.result.verdict = "dropped"
        self.result.summary = f"dropped by NetworkPolicy {policy}: {reason} (derived, not traced)"


def _split(address: str) -> tuple[str, int | None]:
    """"ip:port" or "ip" (ICMP) as a hop's packet shows it."""
    ip, _, port = address.partition(":")
    return ip, int(port) if port.isdigit() else None


def join(plan: Plan, cluster: Cluster, reports: dict[str, TraceReport],
         probe: TraceProbeResult) -> Result:
    views = {name: find.view(name, rep, plan.mode) for name, rep in reports.items()}
    return Joiner(plan, cluster, views, probe).run()
