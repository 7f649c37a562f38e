"""LoadBalancer failover benchmark (`nox -s bench -- failover`): how long after the
announcing node is paused does a client's ARP entry for the LoadBalancer IP name
another node (its gratuitous ARP arrived), in both proxy modes, against the
contract's bound (nodeGracePeriod + 5 s from the node's last heartbeat).

Each mode brings up labs/loadbalancer.yaml (renamed, on `--network`), then for each
try: pause the node announcing `web-lb`, poll client-0's neighbour entry every
50 ms until it changes, unpause, and wait until the node has its IP back. The time
is measured from the pause, so it can be shorter than the grace period (the last
heartbeat came before it). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
LAB_PREFIX = "172.31.200."
POLL = 0.05
GIVE_UP = 60.0


def kgen(workdir: Path, *args: str) -> str:
    done = subprocess.run(["kgen", *args], cwd=workdir, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"kgen {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def neighbour_mac(container: str, ip: str) -> str:
    words = docker("exec", container, "ip", "neigh", "show", ip).split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else ""


def wait_until(test: Any) -> float:
    started = time.monotonic()
    while not test():
        if time.monotonic() - started > GIVE_UP:
            raise RuntimeError(f"nothing changed within {GIVE_UP:.0f} s")
        time.sleep(POLL)
    return time.monotonic() - started


def one_try(workdir: Path, lab: Path, name: str) -> float:
    status = json.loads(kgen(workdir, "status", "--json", "-l", str(lab)))
    svc = next(s for s in status["services"] if s["name"] == "web-lb")
    ip, owner, client = svc["loadBalancerIP"], svc["announcedBy"], f"kgen-{name}-client-0"
    docker("exec", client, "curl", "-s", "--max-time", "3", f"http://{ip}/hostname")
    before = neighbour_mac(client, ip)
    docker("pause", f"kgen-{name}-{owner}")
    try:
        took = wait_until(lambda: neighbour_mac(client, ip) not in ("", before))
    finally:
        docker("unpause", f"kgen-{name}-{owner}")
    wait_until(lambda: neighbour_mac(client, ip) == before)  # the node took its IP back
    return took


def run_mode(mode: str, network: str, tries: int) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "labs" / "loadbalancer.yaml").read_text()
                         .replace(LAB_PREFIX, f"{network}."))
    name = f"{os.environ.get('KGEN_TEST_LAB_PREFIX', '')}benchlb-{mode[:3]}"[:20]
    doc["name"], doc["proxyMode"] = name, mode
    with tempfile.TemporaryDirectory(prefix="kgen-bench-") as tmp:
        workdir = Path(tmp)
        lab = workdir / "lab.yaml"
        lab.write_text(yaml.safe_dump(doc, sort_keys=False))
        try:
            kgen(workdir, "up", "-l", str(lab), "--timeout", "300")
            times = [one_try(workdir, lab, name) for _ in range(tries)]
        finally:
            subprocess.run(["kgen", "down", "-l", str(lab)], cwd=workdir, capture_output=True)
    grace = float(doc.get("nodeGracePeriod", 6))
    return {"mode": mode, "tries": times, "bound_s": grace + 5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="172.31.200",
                        help="the /24 prefix the labs use (a free one on this engine)")
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [run_mode(mode, args.network, args.tries) for mode in ("iptables", "nftables")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'mode':>9} {'tries s':>32} {'median s':>9} {'max s':>6} {'bound s':>8} "
          f"{'max/bound':>9}")
    for row in rows:
        tries = " ".join(f"{t:.2f}" for t in row["tries"])
        worst = max(row["tries"])
        print(f"{row['mode']:>9} {tries:>32} {statistics.median(row['tries']):>9.2f} "
              f"{worst:>6.2f} {row['bound_s']:>8.1f} {worst / row['bound_s']:>9.2f}")


if __name__ == "__main__":
    main()
