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

from pathlib import Path

from generator.cluster.build import UNDERLAY_MTU
from generator.cluster.names import network_name
from generator.lab.model import Lab
from generator.node.contract import Cluster
from generator.render.files import template_environment, where_labels, write_files
from generator.render.members import members
from generator.render.node_image import node_tag

PREFIX = "kgen"


def clab_file(name: str) -> str:
    return f"{name}.clab.yml"


def render_clab_text(lab: Lab, state: Cluster, out_dir: Path) -> str:
    return template_environment().get_template("clab.yml.j2").render(
        state=state, members=members(state), image=node_tag(), prefix=PREFIX,
        network=network_name(lab.name), mtu=UNDERLAY_MTU, file=clab_file(lab.name),
        source=Path(lab.source).name or "a lab file", **where_labels(lab, out_dir))


def render_clab(lab: Lab, state: Cluster, out_dir: Path) -> Path:
    """Write `<out_dir>/<name>.clab.yml` (atomically, like every rendered file)."""
    name = clab_file(lab.name)
    write_files(out_dir, {name: render_clab_text(lab, state, out_dir)})
    return out_dir / name
