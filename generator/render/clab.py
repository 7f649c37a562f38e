"""Render the lab as a containerlab topology: `kgen render --format clab`.

`<out_dir>/<name>.clab.yml` sits next to the compose file and mounts the same
directories, so `containerlab deploy -t` on it gives the same lab: the same
image, capabilities, sysctls, binds, labels and node-network addresses.
Containers keep kgen's names: containerlab calls them `<prefix>-<lab>-<node>`,
and the prefix is `kgen`.

What containerlab cannot express: compose's `init: true` (the agent runs as
PID 1) and an `internal` network; and its `linux` kind turns IPv6 back on
(`net.ipv6.conf.all.disable_ipv6=0`) whatever the topology asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.cluster.build import UNDERLAY_MTU
from generator.cluster.names import network_name
from generator.lab.model import Lab
from generator.render.files import NODE_SYSCTLS, template_environment, write_files
from generator.render.node_image import node_tag

PREFIX = "kgen"
NODE_CAPS = ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]
CLIENT_CAPS = ["NET_ADMIN", "NET_RAW"]
CLIENT_SYSCTLS = [("net.ipv6.conf.all.disable_ipv6", "1")]
CLIENT_CMD = "python3 -m generator.node.client"
# Relative host paths are resolved against the topology file's directory.
CONFIG_BIND = "./config:/etc/kgen:ro"


@dataclass(frozen=True)
class Member:
    """One container of the lab, node or client, as containerlab sees it."""

    name: str
    ip: str
    role: str
    caps: list[str]
    sysctls: list[tuple[str, str]]
    binds: list[str]
    env: list[tuple[str, str]]
    cmd: str | None = None


def clab_file(name: str) -> str:
    return f"{name}.clab.yml"


def node_member(node: dict[str, Any]) -> Member:
    binds = [CONFIG_BIND, f"./config/nodes/{node['name']}:/etc/cni/net.d:ro",
             "./state:/var/lib/kgen/state"]
    return Member(name=node["name"], ip=node["ip"], role="node", caps=NODE_CAPS,
                  sysctls=NODE_SYSCTLS, binds=binds, env=[("KGEN_NODE", node["name"])])


def client_member(client: dict[str, Any]) -> Member:
    return Member(name=client["name"], ip=client["ip"], role="client", caps=CLIENT_CAPS,
                  sysctls=CLIENT_SYSCTLS, binds=[CONFIG_BIND], env=[], cmd=CLIENT_CMD)


def members(state: dict[str, Any]) -> list[Member]:
    """Nodes, then clients, in lab-file order: the order of the compose file."""
    return [*map(node_member, state["nodes"]), *map(client_member, state["clients"])]


def render_clab_text(lab: Lab, state: dict[str, Any]) -> str:
    return template_environment().get_template("clab.yml.j2").render(
        state=state, members=members(state), image=node_tag(), prefix=PREFIX,
        network=network_name(lab.name), mtu=UNDERLAY_MTU, file=clab_file(lab.name),
        source=Path(lab.source).name or "a lab file")


def render_clab(lab: Lab, state: dict[str, Any], out_dir: Path) -> Path:
    """Write `<out_dir>/<name>.clab.yml` (atomically, like every rendered file)."""
    name = clab_file(lab.name)
    write_files(out_dir, {name: render_clab_text(lab, state)})
    return out_dir / name
