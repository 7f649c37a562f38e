"""Narrating hops: each rule, policy, translation and routing decision a node applied
to the traced packet, in the lab's words (which pod, which endpoint of how many,
why a packet was marked for masquerade, why there was no route).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from generator.node.contract import Cluster
from generator.node.documents import FrameEncap, TraceEncap, TraceHop, TracePacket
from generator.trace.find import NodeView, Packet, node_of_subnet
from generator.trace.parse import Conntrack, Event, Record, RouteAnswer, route_answer
from generator.trace.plan import Plan


def ap(ip: str, port: int | None) -> str:
    return f"{ip}:{port}" if port else ip


def packet_doc(packet: Packet) -> TracePacket:
    return {"src": ap(packet.src, packet.sport), "dst": ap(packet.dst, packet.dport)}


def encap_doc(enc: FrameEncap | None) -> TraceEncap | None:
    if not enc:
        return None
    return {"src": enc["src"], "dst": enc["dst"], "dport": enc["dport"], "vni": enc["vni"]}


@dataclass
class Hop:
    direction: str
    node: str
    step: str
    detail: str
    packet: TracePacket
    table: str | None = None
    chain: str | None = None
    rule: str | None = None
    encap: TraceEncap | None = None
    policy: str | None = None  # the NetworkPolicy (namespace/name) that decided it

    def as_json(self) -> TraceHop:
        return {"direction": self.direction, "node": self.node, "step": self.step,
                "detail": self.detail, "table": self.table, "chain": self.chain,
                "rule": self.rule, "packet": self.packet, "encap": self.encap,
                "policy": self.policy}


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


def reason_for_mark(ev_rule: str, chain: str, entry: str = "NodePort") -> str:
    """Why kube-proxy marked the packet for masquerade, from the marking rule; `entry`:
    how the request came in from outside (NodePort, LoadBalancer IP, externalIP)."""
    if "masquerade traffic for" in ev_rule or (chain.startswith("external-")
                                                and "local" not in ev_rule):
        return f"{entry} with externalTrafficPolicy Cluster: the reply must come back through this node"
    if "masquerade LOCAL traffic" in ev_rule or "masquerade local traffic" in ev_rule:
        return "traffic from the node itself"
    if (chain.startswith("KUBE-SEP-") and " -s " in ev_rule) or (
            chain.startswith("endpoint-") and "ip saddr" in ev_rule):
        return "hairpin: the pod reaches itself through its service"
    if "! -s" in ev_rule or "ip saddr !=" in ev_rule:
        return "traffic from outside the pod CIDR"
    return "kube-proxy marks it for masquerade"


def _same_mac(a: str, b: str) -> bool:
    return [int(x, 16) for x in a.split(":")] == [int(x, 16) for x in b.split(":")]


class Narrator:
    """Words for what happened to the packet on a node, from that node's report."""

    def __init__(self, plan: Plan, cluster: Cluster, views: dict[str, NodeView]) -> None:
        self.plan, self.cluster, self.views = plan, cluster, views
        self.names = plan.names
        self.nodes = {n["name"]: n for n in cluster["nodes"]}
        self.vxlan_dev = cluster["vxlan"]["device"]
        # The conntrack entry of every node whose rules translated the request.
        self.nat_nodes: dict[str, Conntrack | None] = {}

    def name_of(self, ip: str) -> str | None:
        return self.names.get(ip)

    def outside_entry(self) -> str:
        """How the traced request entered the cluster: NodePort, LoadBalancer IP, externalIP."""
        for what in ("LoadBalancer IP", "externalIP"):
            if f"({what})" in self.names.get(self.plan.dst.ip, ""):
                return what
        return "NodePort"

    def label(self, ip: str, port: int | None = None) -> str:
        who = self.name_of(ip)
        return f"{ap(ip, port)} ({who})" if who else ap(ip, port)

    def pod_port(self, node: str, pod: str) -> str | None:
        """The veth on the node's cbr0 that leads to `pod`."""
        bridge = self.views[node].bridge if node in self.views else None
        port = (bridge.get("pods") or {}).get(pod) if bridge else None
        return port.get("veth") if port else None

    def bridged(self, node: str, rec: Record) -> bool:
        """A frame from a pod to another pod's MAC on the same cbr0 is switched, not routed
        (br_netfilter still shows it to iptables)."""
        spec = self.nodes.get(node)
        mac = spec["gatewayMAC"] if spec else ""
        seen = rec.fields.get("MACDST")
        if rec.iif != "cbr0" or not seen or not mac:
            return False
        return not _same_mac(seen, mac)

    def route_for(self, node: str, dst: str, iif: str | None) -> RouteAnswer | None:
        """The node's `ip route get` answer for `dst` as it arrived on `iif`."""
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
            bridge = view.bridge.get("cbr0", "?") if view and view.bridge else "?"
            return (f"no route to {dst} ({why}): this node's own pod subnet {owner['podCIDR']} "
                    f"has no route (cbr0 is {bridge}), so the pod range's unreachable route takes it")
        if owner is not None:
            return (f"no route to {dst} ({why}): nothing routes {owner['name']}'s pod subnet "
                    f"{owner['podCIDR']}, so the pod range's unreachable route takes it")
        return f"no route to {dst} ({why})"

    def route_text(self, node: str, dst: str, answer: RouteAnswer) -> tuple[str, bool]:
        """The routing decision in words, and whether the packet goes on."""
        if "error" in answer:
            return self.no_route(node, dst, str(answer["error"])), False
        kind = answer.get("type")
        if kind in ("unreachable", "blackhole", "prohibit"):
            return f"no route to {dst} ({kind})", False
        dev, gw = answer.get("dev"), answer.get("gateway")
        if kind == "local" or dev == "lo":
            return f"{dst} is local to {node}: up to its own sockets (INPUT)", True
        if dev == self.vxlan_dev:
            owner = node_of_subnet(self.cluster, dst)
            return (f"routes {dst} via {gw} dev {dev}: the VXLAN device, to {owner}", True)
        if dev == "cbr0":
            if ipaddress.IPv4Address(dst) in ipaddress.IPv4Network(self.cluster["serviceCIDR"]):
                return (f"routes {dst} dev cbr0: the service range is routed onto the bridge "
                        "(untranslated, nothing there answers)"), True
            return f"routes {dst} dev cbr0: the node's own pod subnet", True
        if gw:
            owner = self.name_of(str(gw))
            return f"routes {dst} via {gw} dev {dev}" + (f" ({owner}, host-gw)" if owner else ""), True
        return f"routes {dst} dev {dev}", True

    def endpoint_step(self, node: str, chain: str, target: str, rule: str) -> str:
        """Which endpoint kube-proxy's iptables ladder picked, and by what draw."""
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

    def jump(self, node: str, ev: Event, where: str, marked: list[str]) -> str:
        """A jump or goto: to the masquerade mark, an endpoint, or a chain."""
        rule, target, comment = ev.rule or "", ev.target or "", ev.comment
        if target in ("KUBE-MARK-MASQ", "mark-for-masquerade"):
            reason = reason_for_mark(rule, ev.chain, self.outside_entry())
            marked.append(reason)
            return f"{where}: marks the packet for masquerade ({reason}) → {target}"
        if target.startswith("endpoint-") and "numgen" in rule:
            return f"{where} {nft_endpoint_step(rule, target)} → {target}"
        if target.startswith("KUBE-SEP-") and ev.chain.startswith(("KUBE-SVC-", "KUBE-SVL-")):
            ep = re.search(r"-> (\d+\.\d+\.\d+\.\d+):(\d+)", comment or "")
            who = self.name_of(ep.group(1)) if ep else None
            to = (f" ({who} at {ep.group(1)}:{ep.group(2)})" if who else
                  f" ({ep.group(1)}:{ep.group(2)})") if ep else ""
            return f"{where} {self.endpoint_step(node, ev.chain, target, rule)} → {target}{to}"
        if comment:
            return f"{where}: {comment} → {target}"
        return f"{where} → {target}"

    def event(self, node: str, ev: Event, packet: Packet, marked: list[str]
              ) -> tuple[str, str, Packet]:
        """(step, detail, the packet after it) of one trace event."""
        rule, comment = ev.rule or "", ev.comment
        where = f"{ev.table} {ev.chain}"
        if ev.kind == "policy":
            step = "drop" if ev.verdict == "DROP" else "policy"
            return step, f"{where}: no rule decided, chain policy {ev.verdict}", packet
        if ev.verdict in ("JUMP", "GOTO") and ev.target:
            return "rule", self.jump(node, ev, where, marked), packet
        if "-j DNAT" in rule or " dnat " in rule:
            found = re.search(r"(?:--to-destination|dnat to) (\d+\.\d+\.\d+\.\d+):?(\d+)?", rule)
            after = packet.to(found.group(1), int(found.group(2)) if found.group(2)
                              else packet.dport) if found else packet
            who = self.name_of(after.dst)
            return "dnat", (f"{where}: DNAT {ap(packet.dst, packet.dport)} → "
                            f"{ap(after.dst, after.dport)}" + (f" ({who})" if who else "")), after
        if "-j MASQUERADE" in rule or re.search(r"(^|\s)masquerade(\s|$)", rule):
            entry = self.nat_nodes.get(node)
            after = packet.source(entry.reply[2], entry.reply[3]) if entry is not None else packet
            why = marked[-1] if marked else "marked earlier"
            return "masquerade", (f"{where}: MASQUERADE source {ap(packet.src, packet.sport)} → "
                                  f"{ap(after.src, after.sport)} (the address of the way out; "
                                  f"why: {why})"), after
        return self.verdict_step(ev, where, rule, comment) + (packet,)

    @staticmethod
    def verdict_step(ev: Event, where: str, rule: str, comment: str | None) -> tuple[str, str]:
        """A rule that ends, marks or returns: (step, detail)."""
        said = f" ({comment})" if comment else ""
        if ev.verdict == "DROP" and "reject" in rule.lower():
            how = re.search(r"--reject-with (\S+)", rule)
            return "reject", f"{where}: REJECT" + (f" with {how.group(1)}" if how else "") + said
        if ev.verdict == "DROP":
            return "drop", f"{where}: DROP{said}"
        if ev.chain in ("KUBE-MARK-MASQ", "mark-for-masquerade"):
            return "rule", f"{where}: sets mark 0x4000 (masquerade when leaving the node)"
        if ev.verdict == "RETURN" and ev.chain == "KUBE-POSTROUTING":
            return "rule", f"{where}: not marked for masquerade → RETURN (source kept)"
        if ev.chain == "KUBE-POSTROUTING" and "MARK" in rule:
            return "rule", f"{where}: clears the masquerade mark"
        return "rule", f"{where}: {ev.verdict}{said}"
