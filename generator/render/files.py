"""Render the desired cluster into a directory: compose file, cluster.json, per-node files.

Same input and output directory, byte-identical output: everything is sorted or ordered by the lab
file, and nothing time- or host-dependent is written. The node network is an
input (the runtime chooses it), so rendering never asks Docker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jinja2

from generator.cluster.names import network_name, project_name
from generator.lab.model import Lab
from generator.node.contract import RENDERED_CLUSTER_FILE, RENDERED_CONFIG, RENDERED_STATE, Cluster
from generator.render.members import host_members, members
from generator.render.node_image import node_tag
from generator.resources import templates_dir


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def where_labels(lab: Lab, out_dir: Path) -> dict[str, str]:
    """The values of the `kgen.dir` and `kgen.file` labels: the rendered directory and
    the lab file, absolute (`generator.runtime.registry` reads them back)."""
    return {"out_dir": str(out_dir.resolve()),
            "lab_file": str(Path(lab.source).resolve()) if lab.source else ""}


def render_files(lab: Lab, state: Cluster, out_dir: Path) -> dict[str, str]:
    """Relative path → content for every file of the lab rendered into `out_dir`.

    The compose file labels every container and network with `out_dir` and the
    lab file (absolute), so that kgen finds a running lab from any directory
    (`generator.runtime.registry`); the output depends on nothing else.
    """
    env = template_environment()
    compose = env.get_template("docker-compose.yml.j2")
    common = {"state": state, "image": node_tag(), "project": project_name(lab.name),
              "network": network_name(lab.name), "source": Path(lab.source).name or "a lab file",
              **where_labels(lab, out_dir)}
    files = {RENDERED_CLUSTER_FILE: json.dumps(state, indent=2, sort_keys=True) + "\n"}
    if "hosts" in state:  # one compose file per host, the swarm's overlay network external
        for host in state["hosts"]:
            files[host_compose_file(host["name"])] = compose.render(
                **common, members=host_members(state, host["name"]), host=host)
    else:
        files["docker-compose.yml"] = compose.render(**common, members=members(state), host=None)
    conflist = env.get_template("10-kgen.conflist.j2")
    for node in state["nodes"]:
        files[f"{RENDERED_CONFIG}/nodes/{node['name']}/10-kgen.conflist"] = conflist.render(
            state=state, node=node)
    return files


def host_compose_file(host: str) -> str:
    """Where a host's share of a lab spanning hosts is, relative to the rendered directory."""
    return f"hosts/{host}/docker-compose.yml"


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
    (out_dir / RENDERED_STATE).mkdir(exist_ok=True)
    return written


def render(lab: Lab, state: Cluster, out_dir: Path) -> Cluster:
    """Write every file of the lab for `state`, the desired cluster built from `lab`."""
    write_files(out_dir, render_files(lab, state, out_dir))
    return state
