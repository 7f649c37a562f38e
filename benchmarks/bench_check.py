"""`kgen check` at scale (`nox -s bench -- check`): how long the whole plan takes.

For each size, a throw-away lab of N nodes x 5 pods with a ClusterIP service
backed by one pod on every node (N backends), a NodePort with
externalTrafficPolicy Cluster and one with Local (backends on every fourth
node), a ClientIP-affinity service and a client; `kgen check --json` runs on
it with the default parallelism and again with `--parallel 1` (one
`docker exec` at a time), and the table shows both and their ratio.

`time_check(lab_file, workdir)` is the reusable part (the scale benchmark
calls it on its own labs): one `kgen check --json` run, its wall time, and
how many checks passed and failed. Nothing is timed as an assertion.

`--compare OTHER_KGEN` measures another kgen (e.g. main's checkout, before a
change) side by side with this one on the same running lab: the runs
alternate (other, this, this, other, ...) so that a shared, loaded machine
weighs on both alike; the table shows each one's median and best and the
ratio of the medians (this / other), and the median of each round's ratio
(the two runs of a round met about the same load).

`python -m benchmarks.bench_check --nodes 3 20 [--runs R] [--prefix ck] [--network
172.28.32.0/20] [--workdir DIR] [--keep] [--compare /path/to/old/kgen]`
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

PODS_PER_NODE = 5


def kgen_command() -> list[str]:
    beside = Path(sys.executable).with_name("kgen")
    return [str(beside) if beside.exists() else "kgen"]


def scale_lab(name: str, nodes: int, pods_per_node: int = PODS_PER_NODE,
              network: str | None = None) -> dict[str, Any]:
    """A lab file (as a dict) of `nodes` nodes with services spread across them."""
    pods = []
    for i in range(nodes):
        for j in range(pods_per_node):
            app = "web" if j == 0 else "api" if j == 1 and i % 4 == 0 else "other"
            pods.append({"name": f"pod-{i}-{j}", "node": f"node-{i}", "labels": {"app": app}})
    http = {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    return {
        "name": name,
        "nodes": [f"node-{i}" for i in range(nodes)],
        "pods": pods,
        "services": [
            {"name": "web", "selector": {"app": "web"},
             "ports": [http, {"name": "udp", "port": 8081, "targetPort": 8081, "protocol": "UDP"}]},
            {"name": "api-cluster", "type": "NodePort", "selector": {"app": "api"},
             "externalTrafficPolicy": "Cluster", "ports": [{**http, "nodePort": 30080}]},
            {"name": "api-local", "type": "NodePort", "selector": {"app": "api"},
             "externalTrafficPolicy": "Local", "ports": [{**http, "nodePort": 30081}]},
            {"name": "web-sticky", "selector": {"app": "web"}, "sessionAffinity": "ClientIP",
             "ports": [http]},
        ],
        "clients": ["client-0"],
        **({"nodeNetwork": network} if network else {}),
    }


def kgen(workdir: Path, *args: str, check: bool = True, timeout: float = 1200,
         command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(command or kgen_command()), *args], cwd=workdir, check=check,
                          capture_output=True, text=True, timeout=timeout)


def time_check(lab_file: Path, workdir: Path, *args: str,
               command: list[str] | None = None) -> dict[str, Any]:
    """One `kgen check --json` on a running lab: wall seconds, checks, passed, failed."""
    started = time.monotonic()
    result = kgen(workdir, "check", "-l", str(lab_file), "--json", *args, check=False,
                  command=command)
    seconds = time.monotonic() - started
    try:
        report = json.loads(result.stdout)
    except ValueError:
        return {"seconds": seconds, "checks": 0, "passed": 0, "failed": 0,
                "error": result.stderr.strip()[-300:]}
    failing = [c["id"] for c in report["checks"] if not c["passed"]]
    return {"seconds": seconds, "checks": len(report["checks"]), "passed": report["passed"],
            "failed": report["failed"], "failing": failing}


def lab_file(workdir: Path, prefix: str, nodes: int, network: str | None) -> Path:
    path = workdir / f"{prefix}{nodes}.yaml"
    path.write_text(yaml.safe_dump(scale_lab(f"{prefix}{nodes}", nodes, network=network),
                                   sort_keys=False))
    return path


def compare_runs(path: Path, workdir: Path, runs: int, other: list[str]) -> dict[str, Any]:
    """`runs` checks by each kgen, alternating (other, this, this, other, ...)."""
    times: dict[str, list[dict[str, Any]]] = {"other": [], "this": []}
    load: list[float] = []
    for i in range(runs):
        order = ("other", "this") if i % 2 == 0 else ("this", "other")
        load.append(round(os.getloadavg()[0], 1))
        for who in order:
            times[who].append(time_check(path, workdir, command=other if who == "other" else None))
    # The machine is shared: the two runs of one round met about the same load, so the
    # median of the rounds' ratios says more than the ratio of the medians.
    paired = [t["seconds"] / o["seconds"] for o, t in zip(times["other"], times["this"], strict=True)]
    row: dict[str, Any] = {"paired_ratio": statistics.median(paired),
                           "paired_ratios": [round(x, 2) for x in paired], "load1": load}
    for who, results in times.items():
        seconds = [r["seconds"] for r in results]
        row[who] = {"median_s": statistics.median(seconds), "best_s": min(seconds),
                    "runs_s": [round(x, 2) for x in seconds], "checks": results[0]["checks"],
                    "all_passed": sum(r["failed"] == 0 and r["checks"] > 0 for r in results),
                    "failing": sorted({f for r in results for f in r.get("failing", [])}),
                    "errors": [r["error"] for r in results if "error" in r]}
    row["ratio"] = row["this"]["median_s"] / row["other"]["median_s"]
    return row


def measure(nodes: int, runs: int, prefix: str, keep: bool, network: str | None = None,
            workdir: Path | None = None, other: list[str] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kgen-bench-check-") as tmp:
        workdir = workdir or Path(tmp)
        path = lab_file(workdir, prefix, nodes, network)
        started = time.monotonic()
        kgen(workdir, "up", "-l", str(path))  # idempotent: a lab already up stays as it is
        up = time.monotonic() - started
        try:
            if other:
                return {"nodes": nodes, "pods": nodes * PODS_PER_NODE, "runs": runs,
                        **compare_runs(path, workdir, runs, other)}
            parallel = [time_check(path, workdir) for _ in range(runs)]
            serial = time_check(path, workdir, "--parallel", "1")
        finally:
            if not keep:
                kgen(workdir, "down", "-l", str(path), check=False)
    best = min(r["seconds"] for r in parallel)
    return {"nodes": nodes, "pods": nodes * PODS_PER_NODE, "up_s": up,
            "checks": parallel[0]["checks"], "runs": runs,
            "runs_all_passed": sum(r["failed"] == 0 and r["checks"] > 0 for r in parallel),
            "check_s": best, "check_s_max": max(r["seconds"] for r in parallel),
            "check_runs_s": [round(r["seconds"], 2) for r in parallel],
            "serial_s": serial["seconds"], "ratio": serial["seconds"] / best,
            "failing": sorted({f for r in parallel for f in r.get("failing", [])})}


def print_comparison(rows: list[dict[str, Any]]) -> None:
    print(f"{'nodes':>5} {'pods':>5} {'checks':>6} {'runs':>4} {'other median s':>15} "
          f"{'this median s':>14} {'other best s':>13} {'this best s':>12} {'this/other':>10} "
          f"{'paired':>7} {'all passed':>12}")
    for r in rows:
        o, t = r["other"], r["this"]
        print(f"{r['nodes']:>5} {r['pods']:>5} {t['checks']:>6} {r['runs']:>4} "
              f"{o['median_s']:>15.2f} {t['median_s']:>14.2f} {o['best_s']:>13.2f} "
              f"{t['best_s']:>12.2f} {r['ratio']:>10.2f} {r['paired_ratio']:>7.2f} "
              f"{o['all_passed']:>5}/{t['all_passed']:<5}")
        print(f"      other runs: {o['runs_s']}  this runs: {t['runs_s']}")
        print(f"      per-round ratios: {r['paired_ratios']}  load (1 min): {r['load1']}")
        for who in ("other", "this"):
            if r[who]["failing"] or r[who]["errors"]:
                print(f"      {who} failing: {r[who]['failing']} {r[who]['errors']}")


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'nodes':>5} {'pods':>5} {'checks':>6} {'up s':>6} {'check s':>8} {'max s':>6} "
          f"{'--parallel 1 s':>15} {'ratio':>6} {'all passed':>10}")
    for r in rows:
        print(f"{r['nodes']:>5} {r['pods']:>5} {r['checks']:>6} {r['up_s']:>6.1f} "
              f"{r['check_s']:>8.1f} {r['check_s_max']:>6.1f} {r['serial_s']:>15.1f} "
              f"{r['ratio']:>6.1f} {r['runs_all_passed']:>5}/{r['runs']}")
        if r["failing"]:
            print(f"      failing: {', '.join(r['failing'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 20])
    parser.add_argument("--runs", type=int, default=3, help="check runs per lab (best is shown)")
    parser.add_argument("--prefix", default="bchk", help="lab names: PREFIX + node count")
    parser.add_argument("--network", type=ipaddress.ip_network, default=None,
                        help="node networks: the n-th /24 of this range for the n-th size")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the lab files are written and rendered (default: a temp dir)")
    parser.add_argument("--compare", metavar="KGEN", default=None,
                        help="another kgen executable, measured side by side on the same lab")
    parser.add_argument("--keep", action="store_true", help="leave the labs up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    nets = list(args.network.subnets(new_prefix=24)) if args.network else []
    rows = [measure(n, args.runs, args.prefix, args.keep, str(nets[i]) if nets else None,
                    args.workdir, [args.compare] if args.compare else None)
            for i, n in enumerate(args.nodes)]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.compare:
        print_comparison(rows)
    else:
        print_table(rows)


if __name__ == "__main__":
    main()
