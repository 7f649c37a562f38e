"""`kgen apply`: new pods and services reach a running lab without restarting nodes.

Agents watch `cluster.json`; apply rewrites it atomically and waits for them.
What needs new containers or networks (nodes, clients, ranges, backend) is
refused with a clear line instead of half-applied.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from generator.cluster.build import build_state
from generator.lab.model import Lab
from generator.node.contract import Cluster
from generator.render.files import render_files, write_files
from generator.runtime.errors import RuntimeFailure

# Fields whose change needs `kgen down && kgen up`.
FIXED = ("podCIDR", "serviceCIDR", "nodeNetwork", "backend", "proxyMode", "vxlan", "mtu", "nodes",
         "clients")


# Fields that change as a consequence of others: not named when those are.
DERIVED = {"nodes": ("podCIDR", "nodeNetwork"), "clients": ("nodeNetwork",), "mtu": ("backend",)}


def fixed_changes(state: Cluster, running: Cluster) -> list[str]:
    """The FIXED fields in which the desired cluster differs from the running one, leaving
    out node and client addresses that moved only with podCIDR or nodeNetwork."""
    changed = [key for key in FIXED if state.get(key) != running.get(key)]

    def names(doc: Cluster, key: str) -> list[str]:
        return [m["name"] for m in doc.get(key) or []]  # type: ignore[attr-defined]

    def follows(key: str) -> bool:
        causes = DERIVED.get(key, ())
        return (any(c in changed for c in causes)
                and (key == "mtu" or names(state, key) == names(running, key)))

    return [key for key in changed if not follows(key)]


def describe_changes(changed: list[str], state: Cluster, running: Cluster) -> str:
    """`podCIDR 10.244.0.0/16 -> 10.245.0.0/16, nodes` (values for the one-value fields)."""
    parts = []
    for key in changed:
        old, new = running.get(key), state.get(key)
        simple = all(isinstance(v, str | int) for v in (old, new))
        parts.append(f"{key} {old} -> {new}" if simple else key)
    return ", ".join(parts)


def check_appliable(lab: Lab, running: Cluster, out_dir: Path,
                    redo: str = "run `kgen down` then `kgen up`") -> Cluster:
    """Write the lab's files for a running lab, or refuse (saying `redo`) what needs new containers."""
    state = build_state(lab, lab.node_network or ipaddress.IPv4Network(running["nodeNetwork"]),
                        running)
    changed = fixed_changes(state, running)
    if changed:
        raise RuntimeFailure(f"{lab.source}: {describe_changes(changed, state, running)} changed; "
                             f"apply handles pods and services only: {redo}")
    write_files(out_dir, render_files(lab, state, out_dir))
    if "hosts" in state:  # hosts share no filesystem: cluster.json goes through each engine
        from generator.runtime.remote import push_cluster_file

        push_cluster_file(state, out_dir / "config" / "cluster.json")
    return state
