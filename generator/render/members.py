"""The lab's containers, described once: one registry of member kinds (node,
client), as containerlab keeps one registry of node kinds.

The compose file and the containerlab topology are both rendered from
`members(state)`, so they cannot drift apart. Paths inside the containers come
from the host<->node contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.node import contract
from generator.node.contract import ClientSpec, Cluster, NodeSpec

NODE_SYSCTLS = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
    # The service range is routed back out of cbr0 (see node/overlay.py): no ICMP
    # redirects, which would also eat the ICMP budget that REJECT answers come from.
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    # kube-proxy's localhost NodePorts (iptables mode; kubelet's KUBE-FIREWALL guards it).
    ("net.ipv4.conf.all.route_localnet", "1"),
]
CLIENT_SYSCTLS = [("net.ipv6.conf.all.disable_ipv6", "1")]
# Relative host paths: compose resolves them against the compose file, containerlab
# against the topology file; both sit in the rendered directory.
CONFIG_BIND = f"./{contract.RENDERED_CONFIG}:{contract.CONFIG_MOUNT}:ro"


@dataclass(frozen=True)
class Kind:
    """What every member of one kind gets."""

    role: str
    caps: tuple[str, ...]
    sysctls: list[tuple[str, str]]
    command: tuple[str, ...] | None  # None: the image's own (the node agent)


KINDS = {
    "node": Kind("node", ("NET_ADMIN", "NET_RAW", "SYS_ADMIN"), NODE_SYSCTLS, None),
    "client": Kind("client", ("NET_ADMIN", "NET_RAW"), CLIENT_SYSCTLS,
                   ("python3", "-m", "generator.node.client")),
}


@dataclass(frozen=True)
class Member:
    """One container of the lab."""

    name: str
    container: str
    ip: str
    kind: Kind
    binds: list[str]
    env: list[tuple[str, str]]
    host: str | None = None  # the lab's host it runs on (lab contract section 11)

    @property
    def role(self) -> str:
        return self.kind.role


def node_member(node: NodeSpec) -> Member:
    binds = [CONFIG_BIND,
             f"./{contract.RENDERED_CONFIG}/nodes/{node['name']}:{contract.CNI_CONF_MOUNT}:ro",
             f"./{contract.RENDERED_STATE}:{contract.STATE_MOUNT}"]
    return Member(node["name"], node["container"], node["ip"], KINDS["node"], binds,
                  [("KGEN_NODE", node["name"])], node.get("host"))


def client_member(client: ClientSpec) -> Member:
    return Member(client["name"], client["container"], client["ip"], KINDS["client"],
                  [CONFIG_BIND], [], client.get("host"))


# A node of a lab spanning hosts also runs the state relay (generator/node/statesync.py):
# the hosts share no state directory, so each node's document and heartbeat travel
# between hosts over the node network.
MULTIHOST_NODE_COMMAND = ("python3", "-m", "generator.node.statesync")


def host_members(state: Cluster, host: str) -> list[Member]:
    """The members placed on `host`, their binds relative to hosts/<host>/ (the compose
    file there), nodes running the state relay."""
    placed = []
    for member in members(state):
        if member.host != host:
            continue
        binds = [f"../../{b.removeprefix('./')}" for b in member.binds]
        kind = member.kind if member.role != "node" else \
            Kind(member.kind.role, member.kind.caps, member.kind.sysctls, MULTIHOST_NODE_COMMAND)
        placed.append(Member(member.name, member.container, member.ip, kind, binds, member.env,
                             member.host))
    return placed


def members(state: Cluster) -> list[Member]:
    """Nodes, then clients, in lab-file order."""
    return [*map(node_member, state["nodes"]), *map(client_member, state["clients"])]
