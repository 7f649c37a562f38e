"""Lab benchmarks (`nox -s bench`): pod start-up and overlay throughput.

- Time for one node to bring up N pods (N = 10, 50): netns + CNI ADD + test
  server until it listens, as the node agent measures it, and `kgen up` end
  to end.
- TCP throughput pod↔pod across nodes against node↔node on the underlay,
  iperf3 inside the lab for a bounded time, per backend, as a ratio.

Everything stays inside throw-away labs; nothing is timed as an assertion.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

IPERF_SECONDS = 5


def kgen(workdir: Path, *args: str) -> str:
    return subprocess.run(["kgen", *args], cwd=workdir, check=True, capture_output=True,
                          text=True).stdout


def lab(workdir: Path, doc: dict[str, Any]) -> Path:
    path = workdir / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def pod_startup(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kgen-bench-") as tmp:
        workdir = Path(tmp)
        path = lab(workdir, {"name": f"bench{n}", "nodes": ["node-0"],
                             "pods": [{"name": f"p{i}", "node": "node-0"} for i in range(n)]})
        started = time.monotonic()
        try:
            kgen(workdir, "up", "-l", str(path))
            total = time.monotonic() - started
            logs = subprocess.run(["docker", "logs", f"kgen-bench{n}-node-0"],
                                  capture_output=True, text=True).stderr
            match = re.search(r"(\d+) pods set up in ([\d.]+)s", logs)
            cni = float(match.group(2)) if match else float("nan")
            ready = _agent_ready_seconds(logs)
        finally:
            kgen(workdir, "down", "-l", str(path))
    return {"pods": n, "cni_and_processes_s": cni, "all_serving_s": ready, "kgen_up_s": total}


def _agent_ready_seconds(logs: str) -> float:
    """From the agent's first log line to the line that reports all pods set up."""
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)", logs, re.M)
    if len(stamps) < 2:
        return float("nan")
    first, last = (datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))
    return (last - first).total_seconds()


def iperf(workdir: Path, path: Path, server: str, server_ip: str, client: str) -> float:
    kgen(workdir, "exec", "-l", str(path), server, "--", "iperf3", "-s", "-1", "-D")
    time.sleep(0.5)
    out = kgen(workdir, "exec", "-l", str(path), client, "--", "iperf3", "-c", server_ip,
               "-t", str(IPERF_SECONDS), "-J")
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def throughput(backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kgen-bench-") as tmp:
        workdir = Path(tmp)
        path = lab(workdir, {"name": f"tput-{backend}", "backend": backend,
                             "nodes": ["node-0", "node-1"],
                             "pods": [{"name": "pod-a", "node": "node-0"},
                                      {"name": "pod-b", "node": "node-1"}]})
        try:
            kgen(workdir, "up", "-l", str(path))
            status = json.loads(kgen(workdir, "status", "--json", "-l", str(path)))
            ips = {p["name"]: p["ip"] for p in status["pods"]}
            ips.update({n["name"]: n["ip"] for n in status["nodes"]})
            pods = iperf(workdir, path, "pod-b", ips["pod-b"], "pod-a")
            nodes = iperf(workdir, path, "node-1", ips["node-1"], "node-0")
        finally:
            kgen(workdir, "down", "-l", str(path))
    return {"backend": backend, "pod_gbps": pods, "node_gbps": nodes, "ratio": pods / nodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    startup = [pod_startup(n) for n in (10, 50)]
    tput = [throughput(b) for b in ("vxlan", "host-gw")]
    if args.json:
        print(json.dumps({"pod_startup": startup, "throughput": tput}, indent=2))
        return
    print(f"{'pods':>5} {'CNI+processes s':>16} {'all serving s':>14} {'kgen up s':>10}")
    for row in startup:
        print(f"{row['pods']:>5} {row['cni_and_processes_s']:>16.2f} {row['all_serving_s']:>14.2f} "
              f"{row['kgen_up_s']:>10.2f}")
    print()
    print(f"{'backend':>8} {'pod↔pod Gbit/s':>15} {'node↔node Gbit/s':>17} {'ratio':>6}")
    for row in tput:
        print(f"{row['backend']:>8} {row['pod_gbps']:>15.2f} {row['node_gbps']:>17.2f} "
              f"{row['ratio']:>6.2f}")


if __name__ == "__main__":
    main()
