"""The swarm overlay's part of a trace across hosts (lab contract section 11).

Between two nodes on different hosts the lab's own packet (VXLAN between node
IPs, or a plain routed packet with host-gw) travels inside the swarm's overlay
network: the engines encapsulate it again, in VXLAN between the hosts' swarm
addresses. That happens in the engines' overlay namespaces, outside every node,
where no node's trace can see it, so this hop is stated from the swarm's own
configuration (each engine's swarm address, the network's VNI) and says so.
"""

from __future__ import annotations

from dataclasses import replace

from generator.node.contract import Cluster
from generator.trace.narrate import Hop

SWARM_VXLAN_PORT = 4789  # Docker Swarm's data path port (docker swarm init --data-path-port)


def with_swarm_hops(cluster: Cluster, hops: list[Hop], addresses: dict[str, str],
                    vni: int | None) -> list[Hop]:
    """`hops` with one `swarm-overlay` hop wherever the packet moves from a node on one
    host to a node on another. `addresses`: host name -> its swarm address."""
    host_of = {n["name"]: n.get("host") for n in [*cluster["nodes"], *cluster["clients"]]}
    out: list[Hop] = []
    for hop, following in zip(hops, [*hops[1:], None], strict=True):
        out.append(hop)
        if following is None or following.direction != hop.direction:
            continue
        here, there = host_of.get(hop.node), host_of.get(following.node)
        if not here or not there or here == there:
            continue
        src, dst = addresses.get(here, "?"), addresses.get(there, "?")
        out.append(replace(
            hop, step="swarm-overlay", table=None, chain=None, rule=None,
            detail=(f"the swarm overlay carries it from host {here} to host {there}: VXLAN "
                    f"{src} → {dst}:{SWARM_VXLAN_PORT}"
                    + (f", VNI {vni}" if vni is not None else "")
                    + " (done by the engines, outside the nodes: from the swarm's settings, "
                      "not traced)"),
            encap={"src": src, "dst": dst, "dport": SWARM_VXLAN_PORT, "vni": vni or 0}))
    return out
