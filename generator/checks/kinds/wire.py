"""The wire: what crosses the node network between two nodes' pods.

With VXLAN, this very ping inside a VXLAN packet from one node IP to the
other (UDP to the VXLAN port); with host-gw, the pod IPs themselves. A capture
on the sending node's eth0 shows it.
"""

from __future__ import annotations

import shlex

from generator.checks.base import CommandCheck, LabView, Outcome, Planning, Pod


class Wire(CommandCheck):
    kind = "wire"

    def run(self, lab: LabView) -> Outcome:
        capture = self._filter(lab.pod_ip[self.source], lab.pod_ip[self.target])
        # Ping only once tcpdump says it listens (its filter is set by then): no race with a
        # slow start on a busy machine. Every wait is bounded; after the ping, tcpdump gets
        # 5 s more to report what it holds (it exits at once when it has the packet).
        script = (f"f=$(mktemp); timeout 15 tcpdump -l -nn -c 1 -i eth0 {shlex.quote(capture)} "
                  f"2>$f & t=$!; i=0; while ! grep -q 'listening on' $f && [ $i -lt 100 ]; do "
                  f"sleep 0.1; i=$((i+1)); done; ip netns exec {shlex.quote(self.source)} "
                  f"ping -c 2 -W 3 {lab.pod_ip[self.target]} >/dev/null; i=0; "
                  f"while kill -0 $t 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); "
                  f"done; kill $t 2>/dev/null; wait; rm -f $f")
        result = lab.host(self.params["capture_node"]).run("sh -c %s", script)
        line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
        return Outcome(bool(line), line[:140] or "no packet captured")

    def _filter(self, src_ip: str, dst_ip: str) -> str:
        p = self.params
        if p["backend"] != "vxlan":
            return f"icmp and src host {src_ip} and dst host {dst_ip}"
        # This very ping inside the VXLAN packet: inner IPv4 at UDP payload offset
        # 8 (UDP) + 8 (VXLAN) + 14 (inner Ethernet), so other checks' traffic between the
        # same nodes, running at the same time, cannot stand in for it.
        inner = 8 + 8 + 14
        return (f"udp dst port {p['port']} and src host {p['src_ip']} and dst host "
                f"{p['dst_ip']} and udp[{inner + 9}:1] = 1 and "
                f"udp[{inner + 12}:4] = {_hex(src_ip)} and udp[{inner + 16}:4] = {_hex(dst_ip)}")


def _hex(ip: str) -> str:
    return "0x" + "".join(f"{int(octet):02x}" for octet in ip.split("."))


def first_pods(ctx: Planning) -> tuple[Pod, Pod] | None:
    """The first serving pod of each of the first two nodes that have one; in a lab with
    NetworkPolicies, the first such pair (in lab order) whose ping the policies allow."""
    first_by_node: dict[str, Pod] = {}
    for pod in ctx.servers:
        first_by_node.setdefault(pod["node"], pod)
    if len(first_by_node) < 2:
        return None
    if ctx.policy is None:
        a, b = list(first_by_node.values())[:2]
        return a, b
    return next(((a, b) for a in ctx.servers for b in ctx.servers
                 if a["node"] != b["node"] and ctx.allows(a, b, 0, "ICMP")), None)


def plan(ctx: Planning) -> list[Wire]:
    pair = first_pods(ctx)
    if pair is None:
        return []
    a, b = pair
    cluster = ctx.cluster
    vx = cluster["vxlan"]
    src_ip, dst_ip = ctx.node[a["node"]]["ip"], ctx.node[b["node"]]["ip"]
    if cluster["backend"] == "vxlan":
        expected = f"UDP {src_ip} → {dst_ip}:{vx['port']} (VXLAN, VNI {vx['vni']})"
    else:
        expected = f"pod IPs on the wire between {a['node']} and {b['node']} (host-gw)"
    return [Wire(f"{a['node']} to {b['node']}", "the overlay on the node network", a["name"],
                 b["name"], expected, frozenset(ctx.path(a, b)),
                 {"backend": cluster["backend"], "port": vx["port"], "capture_node": a["node"],
                  "src_ip": src_ip, "dst_ip": dst_ip})]
