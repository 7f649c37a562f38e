"""Where a node's CPU goes (`python -m benchmarks.bench_nodecpu`): at bring-up and idle.

Brings up one lab (N nodes, P pods each, the scale benchmark's services), then reads
/proc of every process in the lab's node containers and splits the CPU seconds by role:

- agent: the node agent's own CPU (its threads: pod manager, proxy, heartbeat);
- agent children: what the agent ran and reaped (CNI plugins, `ip`, iptables-restore,
  nft, conntrack); the kernel adds a reaped child's time to its parent's cutime/cstime;
- pod processes: the pods' containers (test servers, commands), per pod;
- container total: the node containers' cgroups (everything above plus docker-init).

Then the same over an idle window (after a settle time), as a percentage of one CPU.
CPU seconds, unlike wall time, hardly depend on what else the shared machine runs;
the load average is printed with every wall time anyway.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_scale import containers, cpu_ns, kgen, lab_doc, load

TICKS = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return found


def _role(cmdline: bytes) -> str:
    if b"generator.node.agent" in cmdline:
        return "agent"
    if b"docker-init" in cmdline or cmdline.startswith(b"/sbin/docker-init"):
        return "init"
    return "pod"


def process_cpu(lab: str) -> dict[str, float]:
    """CPU seconds by role over the lab's node containers (live processes; children
    already reaped count with the parent that reaped them)."""
    totals: dict[str, float] = {"agent": 0.0, "agent children": 0.0, "pod": 0.0,
                                "init": 0.0, "container total": 0.0}
    for c in containers(lab):
        if (c["Config"].get("Labels") or {}).get("kgen.role") != "node":
            continue
        totals["container total"] += cpu_ns(c["Id"]) / 1e9
        for pid in _descendants(c["State"]["Pid"]):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            utime, stime, cutime, cstime = (int(x) / TICKS for x in stat[11:15])
            role = _role(cmdline)
            totals[role] += utime + stime
            if role == "agent":
                totals["agent children"] += cutime + cstime
    return totals


def measure(nodes: int, pods: int, prefix: str, network: str, idle: float) -> dict[str, Any]:
    name = f"{prefix}nodecpu{nodes}"
    with tempfile.TemporaryDirectory(prefix="kgen-nodecpu-") as tmp:
        workdir = Path(tmp)
        path = workdir / f"{name}.yaml"
        doc = lab_doc(name, nodes, network, pods)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        row: dict[str, Any] = {"nodes": nodes, "pods": nodes * pods, "load": load()}
        try:
            row["up_s"], code, out = kgen(workdir, "up", "-v", "-l", str(path))
            if code != 0:
                row["error"] = out.strip().splitlines()[-3:]
                return row
            row["up"] = process_cpu(name)
            time.sleep(10.0)
            before, started = process_cpu(name), time.monotonic()
            time.sleep(idle)
            after, elapsed = process_cpu(name), time.monotonic() - started
            row["idle_pct"] = {k: 100.0 * (after[k] - before[k]) / elapsed for k in after}
        finally:
            kgen(workdir, "down", "-l", str(path))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--pods-per-node", type=int, default=5)
    parser.add_argument("--prefix", default=os.environ.get("KGEN_BENCH_PREFIX", "bn"))
    parser.add_argument("--node-network", required=True, help="a private /24 for the lab")
    parser.add_argument("--idle", type=float, default=30.0, help="idle window, seconds")
    args = parser.parse_args()
    row = measure(args.nodes, args.pods_per_node, args.prefix, args.node_network, args.idle)
    print(f"{row['nodes']} nodes, {row['pods']} pods; load before {row['load']}")
    if "error" in row:
        print("up failed:", *row["error"], sep="\n  ")
        return
    print(f"up {row['up_s']:.1f} s wall; load now {load()}")
    print(f"{'role':<16} {'up CPU s/node':>13} {'idle % of 1 CPU':>15}")
    for role, seconds in row["up"].items():
        print(f"{role:<16} {seconds / row['nodes']:>13.3f} {row['idle_pct'][role]:>15.2f}")
    pods = max(1, row["pods"])
    print(f"pod processes: {row['up']['pod'] / pods:.3f} s per pod at up")


if __name__ == "__main__":
    main()
