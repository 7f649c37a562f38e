"""Room in the host's neighbour (ARP) table for a lab's namespaces.

Every network namespace of a host shares one neighbour table, capped by
net.ipv4.neigh.default.gc_thresh3 (1024 by default): past it the kernel
refuses new entries ("neighbor table overflow!") and packets are dropped.
A lab needs an entry at each end of every node pair that talks (the checks
make every pair talk), of every client-node pair, and of every pod and its
gateway; a 50-node lab needs about three times the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NEIGH = Path("/proc/sys/net/ipv4/neigh/default")
# The kernel's own proportions between its three thresholds (128/512/1024).
THRESHOLDS = {"gc_thresh1": 8, "gc_thresh2": 2, "gc_thresh3": 1}


def entries_needed(cluster: Any) -> int:
    nodes, pods = len(cluster["nodes"]), len(cluster["pods"])
    return nodes * (nodes - 1) + 2 * nodes * len(cluster["clients"]) + 2 * pods


def limit(neigh: Path = NEIGH) -> int | None:
    try:
        return int((neigh / "gc_thresh3").read_text())
    except (OSError, ValueError):
        return None


def has_room(cluster: Any, neigh: Path = NEIGH) -> bool:
    """True when the table holds the lab with a quarter to spare (or cannot be read)."""
    cap = limit(neigh)
    return cap is None or entries_needed(cluster) <= cap * 3 // 4


def make_room(cluster: Any, neigh: Path = NEIGH) -> str | None:
    """Raise the host's thresholds to fit the lab (never lowers them); says what it did,
    or why it could not. None when there was room already."""
    if has_room(cluster, neigh):
        return None
    top = 1024
    while top * 3 // 4 < entries_needed(cluster):
        top *= 2
    try:
        for name, divisor in THRESHOLDS.items():
            path = neigh / name
            if int(path.read_text()) < top // divisor:
                path.write_text(str(top // divisor))
    except OSError as err:
        return (f"warning: lab needs about {entries_needed(cluster)} neighbour (ARP) entries and "
                f"the host shares at most {limit(neigh)} among all network namespaces; raising "
                f"net.ipv4.neigh.default.gc_thresh3 to {top} failed ({err.strerror}): run "
                f"`sysctl -w net.ipv4.neigh.default.gc_thresh3={top}` as root")
    return (f"host neighbour table raised to {top} entries (net.ipv4.neigh.default.gc_thresh3): "
            f"the lab needs about {entries_needed(cluster)}")
