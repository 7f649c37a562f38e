"""Render a validated lab into `kgen-<name>/`: compose file, cluster state, per-node files.

Same input, byte-identical output: everything is sorted or ordered by the lab
file, and nothing time- or host-dependent is written (the node network is
the one choice that depends on the machine, and it is kept once made).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2

from generator.image import node_tag
from generator.model import Lab
from generator.resources import templates_dir
from generator.state import build_state

IPv4Network = ipaddress.IPv4Network
# Candidates for a node network when the lab file names none.
NODE_NETWORK_POOL = ipaddress.IPv4Network("172.31.0.0/16")
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


def lab_dir(lab: Lab, base: Path | None = None) -> Path:
    return (base or Path.cwd()) / f"kgen-{lab.name}"


def project_name(name: str) -> str:
    return f"kgen-{name}"


def network_name(name: str) -> str:
    return f"kgen-{name}"


def choose_node_network(lab: Lab, previous: str | None,
                        used: Iterable[IPv4Network]) -> IPv4Network:
    """The lab's own, else the one chosen before, else the first free /24 of the pool."""
    if lab.node_network is not None:
        return ipaddress.IPv4Network(lab.node_network)
    taken = [*used, lab.pod_cidr, lab.service_cidr]
    if previous:
        net = ipaddress.ip_network(previous)
        if isinstance(net, IPv4Network) and not any(net.overlaps(t) for t in taken):
            return net
    for candidate in NODE_NETWORK_POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise RuntimeError(f"no free /24 left in {NODE_NETWORK_POOL} for the node network")


def docker_networks(exclude_network: str) -> list[tuple[str, IPv4Network]]:
    """(name, subnet) of Docker networks other than this lab's; none when Docker is away."""
    try:
        import docker

        client = docker.from_env()
        networks = client.networks.list()
    except Exception:  # no engine: render still works, with the first candidate
        return []
    found = []
    for net in networks:
        if net.name == exclude_network:
            continue
        for config in (net.attrs.get("IPAM") or {}).get("Config") or []:
            try:
                subnet = ipaddress.ip_network(config.get("Subnet", ""))
            except ValueError:
                continue
            if isinstance(subnet, IPv4Network):
                found.append((net.name, subnet))
    return found


def docker_subnets(exclude_network: str) -> list[IPv4Network]:
    return [subnet for _, subnet in docker_networks(exclude_network)]


def previous_node_network(out_dir: Path) -> str | None:
    try:
        return str(json.loads((out_dir / "config" / "cluster.json").read_text())["nodeNetwork"])
    except (OSError, ValueError, KeyError):
        return None


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def cluster_state(lab: Lab, out_dir: Path) -> dict[str, Any]:
    network = choose_node_network(lab, previous_node_network(out_dir),
                                  docker_subnets(network_name(lab.name)))
    return build_state(lab, network)


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


def render(lab: Lab, out_dir: Path) -> dict[str, Any]:
    state = cluster_state(lab, out_dir)
    write_files(out_dir, render_files(lab, state))
    return state
