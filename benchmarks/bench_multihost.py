"""Pod to pod across hosts against pod to pod on one host (`nox -s bench -- multihost`).

Builds the two-engine simulation (scripts/multihost-sim.sh: two dockerd in two
network namespaces on one bridge, one swarm; root) and one lab of three nodes:
node-0 and node-2 on host a, node-1 on host b. From a pod on node-0 it measures,
alternating the two paths round by round, in one run:

- across hosts: to a pod on node-1 (the lab's overlay inside the swarm's overlay);
- on one host: to a pod on node-2 (the lab's overlay only, between two nodes of host a).

Latency: `ping` round trips (median of each round's average); throughput: one TCP
stream of SIZE_MB from a Python sender to a Python receiver in the pods (median MB/s).
Both hosts share this machine's CPUs, so the cross-host cost shown is the swarm
overlay's work (VXLAN, its bridge and namespaces), not a wire's. Nothing asserts.
Set KGEN_TEST_LAB_PREFIX to give the lab a name of your own on a shared machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "scripts" / "multihost-sim.sh"
ENGINES = {"a": "unix:///var/run/kgmh-a.sock", "b": "unix:///var/run/kgmh-b.sock"}
_beside = Path(sys.executable).with_name("kgen")
KGEN = str(_beside) if _beside.exists() else shutil.which("kgen") or "kgen"
ROUNDS = 5
PINGS = 50
SIZE_MB = 100
PORT = 9300

RECEIVER = (f"import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            f"s.bind(('0.0.0.0',{PORT}));s.listen(1);c,_=s.accept();n=0\n"
            "while (b:=c.recv(1<<16)): n+=len(b)\n"
            "c.sendall(str(n).encode());c.close()")
SENDER = (f"import socket,sys,time;c=socket.create_connection((sys.argv[1],{PORT}));"
          f"buf=bytes(1<<16);t=time.perf_counter()\nfor _ in range({SIZE_MB}*16): c.sendall(buf)\n"
          "c.shutdown(socket.SHUT_WR);c.recv(64);print(time.perf_counter()-t)")


def kgen(*args: str, cwd: Path) -> str:
    done = subprocess.run([KGEN, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_multihost: kgen {' '.join(args)} exited {done.returncode}: "
                 f"{done.stderr.strip()[-500:]}")
    return done.stdout


def lab_doc(name: str) -> dict[str, object]:
    return {"name": name, "nodeNetwork": "172.29.21.0/24",
            "hosts": [{"name": h, "docker": d} for h, d in ENGINES.items()],
            "nodes": ["node-0", "node-1", "node-2"],
            "pods": [{"name": f"pod-{i}", "node": f"node-{i}"} for i in range(3)],
            "dns": {"enabled": False}}


def ping_ms(cwd: Path, lab: str, ip: str) -> float:
    out = kgen("exec", "-l", lab, "pod-0", "--", "ping", "-q", "-c", str(PINGS), "-i", "0.01",
               ip, cwd=cwd)
    return float(re.search(r"= [\d.]+/([\d.]+)/", out).group(1))  # type: ignore[union-attr]


def throughput_mbs(cwd: Path, lab: str, pod: str, ip: str) -> float:
    server = subprocess.Popen([KGEN, "exec", "-l", lab, pod, "--", "python3", "-c", RECEIVER],
                              cwd=cwd, stdout=subprocess.PIPE, text=True)
    for _ in range(50):  # until the receiver listens
        probe = subprocess.run([KGEN, "exec", "-l", lab, pod, "--", "ss", "-ltn",
                                f"sport = :{PORT}"], cwd=cwd, capture_output=True, text=True)
        if str(PORT) in probe.stdout:
            break
    seconds = float(kgen("exec", "-l", lab, "pod-0", "--", "python3", "-c", SENDER, ip, cwd=cwd))
    server.wait(30)
    return SIZE_MB / seconds


def measure(cwd: Path, lab: str) -> dict[str, dict[str, float]]:
    status = json.loads(kgen("status", "--json", "-l", lab, cwd=cwd))
    ips = {p["name"]: p["ip"] for p in status["pods"]}
    paths = {"across hosts (a→b)": "pod-1", "one host (a→a)": "pod-2"}
    found: dict[str, dict[str, list[float]]] = {k: {"rtt": [], "mbs": []} for k in paths}
    for _ in range(ROUNDS):
        for label, pod in paths.items():
            found[label]["rtt"].append(ping_ms(cwd, lab, ips[pod]))
            found[label]["mbs"].append(throughput_mbs(cwd, lab, pod, ips[pod]))
    return {k: {"rtt_ms": statistics.median(v["rtt"]), "mb_s": statistics.median(v["mbs"])}
            for k, v in found.items()}


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_multihost: the two-engine simulation needs root")
    subprocess.run(["sh", str(SIM), "up"], check=True)
    name = f"{os.environ.get('KGEN_TEST_LAB_PREFIX', 'mh')}-bench"[:20]
    with tempfile.TemporaryDirectory(prefix="kgen-bench-mh-") as tmp:
        cwd = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(cwd / "xdg")
        (cwd / "lab.yaml").write_text(yaml.safe_dump(lab_doc(name), sort_keys=False))
        try:
            kgen("up", "-l", "lab.yaml", cwd=cwd)
            rows = measure(cwd, name)
        finally:
            subprocess.run([KGEN, "down", "-l", "lab.yaml"], cwd=cwd, capture_output=True)
            subprocess.run(["sh", str(SIM), "down"], capture_output=True)
    one = rows["one host (a→a)"]
    print(f"pod↔pod, {ROUNDS} rounds alternating, {PINGS} pings and {SIZE_MB} MB per round")
    print(f"{'path':<22}{'rtt ms':>10}{'MB/s':>10}")
    for label, row in rows.items():
        print(f"{label:<22}{row['rtt_ms']:>10.3f}{row['mb_s']:>10.1f}")
    across = rows["across hosts (a→b)"]
    print(f"{'across / one host':<22}{across['rtt_ms'] / one['rtt_ms']:>10.2f}"
          f"{across['mb_s'] / one['mb_s']:>10.2f}")


if __name__ == "__main__":
    main()
