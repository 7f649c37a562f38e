"""Scale benchmark (`nox -s bench -- scale`): labs of 3, 20, 50 and 100 nodes
(`--sizes 250` for more).

Each lab has 5 pods per node, three services (two ClusterIP, one NodePort)
over all of them, and one client. For each size it measures, in this order:

- up: wall time of `kgen up -v` (the node image already built), and the phases
  it prints: `create` (the containers created and started), then when every
  node was ready (`agents`), every pod running (`pods`) and every proxy synced
  (`proxies`), each counted from the first container's start;
- up CPU: CPU time the lab's containers used while coming up, per node (the
  engine's own work not included); unlike wall time, other load hardly changes it;
- idle CPU: CPU time all the lab's containers used over a fixed window once
  the lab is up and has settled, from their cgroups (cpuacct, or cpu.stat on
  cgroup v2), as a percentage of one CPU;
- agent RSS: resident memory of each node's agent process (mean and max);
- memory per node: what each node container's cgroup holds (agent, pods,
  proxy; page cache included, as `docker stats` counts it), mean over nodes;
- check: wall time of `kgen check` (bounded by --check-timeout) and its exit status;
- down: wall time of `kgen down`.

The machine's load average is printed next to each row: this machine is
shared, and every number here depends on what else runs.

Lab names are `<prefix>scale<N>`; node networks are Docker networks with
`internal: true` on private ranges, as every kgen lab's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

SIZES = (3, 20, 50, 100)
PHASES = ("create", "agents", "pods", "proxies")
NODE_MB, POD_MB = 25, 9  # agent, and each pod's test server (67 MB a node with 5 pods)
MEMORY_SHARE = 0.8  # of the machine's available memory a lab may take
PODS_PER_NODE = 5
SETTLE_SECONDS = 10.0
IDLE_WINDOW = 30.0
_beside = Path(sys.executable).with_name("kgen")
KGEN = str(_beside) if _beside.exists() else shutil.which("kgen") or "kgen"


def lab_doc(name: str, nodes: int, node_network: str | None,
            pods_per_node: int = PODS_PER_NODE) -> dict[str, Any]:
    apps = ["a", "b", "c", "a", "b"]
    doc: dict[str, Any] = {
        "name": name,
        "nodes": [f"node-{i}" for i in range(nodes)],
        "pods": [{"name": f"p{i}-{j}", "node": f"node-{i}", "labels": {"app": apps[j]}}
                 for i in range(nodes) for j in range(pods_per_node)],
        "services": [
            {"name": "svc-a", "selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": 8080}]},
            {"name": "svc-b", "type": "NodePort", "selector": {"app": "b"},
             "ports": [{"port": 80, "targetPort": 8080}]},
            {"name": "svc-c", "selector": {"app": "c"},
             "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                       {"name": "udp", "port": 8081, "targetPort": 8081, "protocol": "UDP"}]},
        ],
        "clients": ["client-0"],
    }
    if node_network:
        doc["nodeNetwork"] = node_network
    return doc


def kgen(workdir: Path, *args: str, timeout: float = 900) -> tuple[float, int, str]:
    started = time.monotonic()
    try:
        proc = subprocess.run([KGEN, *args], cwd=workdir, capture_output=True, text=True,
                              timeout=timeout)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        code, out = -1, f"timed out after {timeout:.0f}s"
    return time.monotonic() - started, code, out


def containers(lab: str) -> list[dict[str, Any]]:
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=kgen.lab={lab}"],
                         capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return []
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def cpu_ns(container_id: str) -> int:
    """CPU time the container's cgroup has used, in ns (cgroup v1 or v2)."""
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text())
    for v2 in (Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),
               Path(f"/sys/fs/cgroup/docker/{container_id}/cpu.stat")):
        if v2.exists():
            fields = dict(line.split() for line in v2.read_text().splitlines())
            return int(fields["usage_usec"]) * 1000
    raise FileNotFoundError(f"no cgroup CPU accounting found for container {container_id[:12]}")


def memory_bytes(container_id: str) -> int:
    """Memory the container's cgroup holds (cgroup v1 or v2)."""
    for path in (Path(f"/sys/fs/cgroup/memory/docker/{container_id}/memory.usage_in_bytes"),
                 Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.current"),
                 Path(f"/sys/fs/cgroup/docker/{container_id}/memory.current")):
        if path.exists():
            return int(path.read_text())
    raise FileNotFoundError(f"no cgroup memory accounting found for container {container_id[:12]}")


def node_memory_mb(lab: str) -> list[float]:
    return [memory_bytes(c["Id"]) / 2**20 for c in containers(lab)
            if (c["Config"].get("Labels") or {}).get("kgen.role") == "node"]


def phases(output: str) -> dict[str, float]:
    """The seconds `kgen up -v` printed for each phase (lines `name  seconds ...`)."""
    found = {}
    for line in output.splitlines():
        m = re.match(r"^(\S+)\s+(\d+\.\d+)(\s|$)", line)
        if m and m.group(1) in PHASES:
            found[m.group(1)] = float(m.group(2))
    return found


def idle_cpu_percent(lab: str, window: float) -> float:
    ids = [c["Id"] for c in containers(lab)]
    before = {i: cpu_ns(i) for i in ids}
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    used = sum(cpu_ns(i) - before[i] for i in ids)
    return 100.0 * used / (elapsed * 1e9)


def agent_rss_mb(lab: str) -> list[float]:
    """RSS of each node's agent: the child of the container's init (docker-init)."""
    found = []
    for c in containers(lab):
        if (c["Config"].get("Labels") or {}).get("kgen.role") != "node":
            continue
        init = c["State"]["Pid"]
        children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
        for pid in children:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"generator.node.agent" in cmdline:
                status = Path(f"/proc/{pid}/status").read_text()
                kb = next(int(line.split()[1]) for line in status.splitlines()
                          if line.startswith("VmRSS:"))
                found.append(kb / 1024)
    return found


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_size(nodes: int, prefix: str, node_network: str | None, check_timeout: float,
             up_timeout: float | None, pods_per_node: int = PODS_PER_NODE) -> dict[str, Any]:
    name = f"{prefix}scale{nodes}"
    need = nodes * (NODE_MB + POD_MB * pods_per_node)
    if need > MEMORY_SHARE * available_mb():
        # A lab the machine cannot hold would take every other lab on it down too.
        return {"nodes": nodes, "pods": nodes * pods_per_node, "load_before": load(),
                "error": f"skipped: needs about {need:.0f} MB, {available_mb():.0f} MB available"}
    # A lab whose down failed keeps writing its state dir: the row counts, not the cleanup.
    with tempfile.TemporaryDirectory(prefix="kgen-scale-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(lab_doc(name, nodes, node_network, pods_per_node), sort_keys=False))
        row: dict[str, Any] = {"nodes": nodes, "pods": nodes * pods_per_node, "load_before": load()}
        try:
            extra = ["--timeout", str(up_timeout)] if up_timeout else []
            row["up_s"], code, out = kgen(workdir, "up", "-v", "-l", str(path), *extra,
                                          timeout=max(900.0, 8.0 * nodes))
            if code != 0:
                row["error"] = f"up exited {code}: {out.strip().splitlines()[-1:]}"
                return row
            row["phases"] = phases(out)
            # CPU the lab's containers used to come up: what a loaded machine cannot hide.
            row["up_cpu_s_per_node"] = sum(cpu_ns(c["Id"]) for c in containers(name)) / 1e9 / nodes
            time.sleep(SETTLE_SECONDS)
            row["load_idle"] = load()
            row["idle_cpu_pct"] = idle_cpu_percent(name, IDLE_WINDOW)
            rss = agent_rss_mb(name)
            row["agent_rss_mb_mean"] = sum(rss) / len(rss) if rss else float("nan")
            row["agent_rss_mb_max"] = max(rss) if rss else float("nan")
            memory = node_memory_mb(name)
            row["node_mb_mean"] = sum(memory) / len(memory) if memory else float("nan")
            row["check_s"], row["check_exit"], out = kgen(workdir, "check", "-l", str(path),
                                                          timeout=check_timeout)
            # What failed, for the note under the table: a failed check is a result too.
            row["check_tail"] = [line for line in out.splitlines() if "FAIL" in line][:5] + \
                out.strip().splitlines()[-1:]
        finally:
            row["down_s"], _, _ = kgen(workdir, "down", "-l", str(path))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="Node counts, comma-separated (default 3,20,50,100; 250 works).")
    parser.add_argument("--prefix", default=os.environ.get("KGEN_BENCH_PREFIX", "bn"),
                        help="Lab names are <prefix>scale<N> (default $KGEN_BENCH_PREFIX or bn).")
    parser.add_argument("--node-network", default=None,
                        help="A private /24 for every lab's node network (default: kgen picks).")
    parser.add_argument("--check-timeout", type=float, default=600.0)
    parser.add_argument("--up-timeout", type=float, default=None)
    parser.add_argument("--pods-per-node", type=int, default=PODS_PER_NODE,
                        help="Pods on each node (default 5); fewer fit a larger lab in memory.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for n in args.sizes.split(","):
        rows.append(run_size(int(n), args.prefix, args.node_network, args.check_timeout,
                             args.up_timeout, args.pods_per_node))
        # Each row as it comes (stderr): a later size that fails loses none of them.
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print_table(rows)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'nodes':>5} {'pods':>5} {'up s':>6} {'create':>6} {'agents':>6} {'pods':>6} "
          f"{'proxy':>6} {'CPU/node':>8} {'idle CPU %':>10} {'MB/node':>7} {'agent RSS MB':>12} "
          f"{'check s':>7} "
          f"{'exit':>4} {'down s':>6}  load (before; idle)")
    for r in rows:
        if "error" in r:
            print(f"{r['nodes']:>5} {r['pods']:>5}  {r['error']}  load before {r['load_before']}")
            continue
        rss = f"{r['agent_rss_mb_mean']:.1f}/{r['agent_rss_mb_max']:.1f}"
        check = "timeout" if r["check_exit"] == -1 else str(r["check_exit"])
        steps = " ".join(f"{r['phases'].get(p, float('nan')):>6.1f}" for p in PHASES)
        print(f"{r['nodes']:>5} {r['pods']:>5} {r['up_s']:>6.1f} {steps} "
              f"{r['up_cpu_s_per_node']:>8.2f} {r['idle_cpu_pct']:>10.2f} {r['node_mb_mean']:>7.1f} "
              f"{rss:>12} "
              f"{r['check_s']:>7.1f} {check:>4} {r['down_s']:>6.1f}  "
              f"{r['load_before']}; {r['load_idle']}")
    for r in rows:
        if r.get("check_exit") not in (None, 0):
            print(f"\n{r['nodes']} nodes, kgen check:\n  " + "\n  ".join(r.get("check_tail", [])))
    print(f"\ncreate: seconds to create and start the containers; agents, pods, proxy: seconds "
          "from the first container's start until every node was ready, every pod running, "
          "every proxy synced (`kgen up -v`). CPU/node: CPU seconds the lab's containers used "
          "to come up, per node. idle CPU: all the lab's containers over "
          f"{IDLE_WINDOW:.0f}s, {SETTLE_SECONDS:.0f}s after up. MB/node: a node container's "
          "cgroup memory, mean; agent RSS: mean/max over nodes. Goals (issue 20): 100 nodes up "
          "in <= 90 s and checked in <= 60 s, 50 up in <= 45 s, idle below 5 % of one CPU.")


if __name__ == "__main__":
    main()
