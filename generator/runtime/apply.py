"""`kgen apply`: new pods and services reach a running lab without restarting nodes.

Agents watch `cluster.json`; apply rewrites it atomically and waits for them.
What needs new containers or networks (nodes, clients, ranges, backend) is
refused with a clear line instead of half-applied.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from generator.cluster.build import build_state
from generator.lab.model import Lab
from generator.render.files import render_files, write_files
from generator.runtime.errors import RuntimeFailure

# Fields whose change needs `kgen down && kgen up`.
FIXED = ("podCIDR", "serviceCIDR", "nodeNetwork", "backend", "proxyMode", "vxlan", "mtu", "nodes",
         "clients")


def check_appliable(lab: Lab, running: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    state = build_state(lab, lab.node_network or ipaddress.IPv4Network(running["nodeNetwork"]))
    changed = [key for key in FIXED if state[key] != running[key]]
    if changed:
        raise RuntimeFailure(f"{lab.source}: {', '.join(changed)} changed; apply handles pods and "
                             "services only: run `kgen down && kgen up`")
    write_files(out_dir, render_files(lab, state))
    return state
