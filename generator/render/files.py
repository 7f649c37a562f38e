"""Render the desired cluster into a directory: compose file, cluster.json, per-node files.

Same input, byte-identical output: everything is sorted or ordered by the lab
file, and nothing time- or host-dependent is written. The node network is an
input (the runtime chooses it), so rendering never asks Docker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jinja2

from generator.cluster.names import network_name, project_name
from generator.lab.model import Lab
from generator.render.node_image import node_tag
from generator.resources import templates_dir

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
]


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_files(lab: Lab, state: dict[str, Any]) -> dict[str, str]:
    """Relative path → content for every file of the rendered lab."""
    env = template_environment()
    files = {
        "docker-compose.yml": env.get_template("docker-compose.yml.j2").render(
            state=state, image=node_tag(), project=project_name(lab.name),
            network=network_name(lab.name), node_sysctls=NODE_SYSCTLS,
            source=Path(lab.source).name or "a lab file"),
        "config/cluster.json": json.dumps(state, indent=2, sort_keys=True) + "\n",
    }
    conflist = env.get_template("10-kgen.conflist.j2")
    for node in state["nodes"]:
        files[f"config/nodes/{node['name']}/10-kgen.conflist"] = conflist.render(
            state=state, node=node)
    return files


def write_files(out_dir: Path, files: dict[str, str]) -> list[Path]:
    """Write atomically (rename), so running agents never read half a file."""
    written = []
    for rel, content in sorted(files.items()):
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
        written.append(path)
    (out_dir / "state").mkdir(exist_ok=True)
    return written


def render(lab: Lab, state: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write every file of the lab for `state`, the desired cluster built from `lab`."""
    write_files(out_dir, render_files(lab, state))
    return state
