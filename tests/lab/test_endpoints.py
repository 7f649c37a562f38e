"""Issue 21: endpoints live and die as in Kubernetes, on a real lab (iptables mode).

- kubelet's restart timing: the first restart within 2 s of a crash, the next one
  about 10 s after the second crash.
- Graceful termination: a pod removed by `kgen apply` is Terminating; a service whose
  only pod terminates still answers (kube-proxy's serving-terminating fallback), one
  with a ready pod sends every new request there.
- trafficDistribution: PreferClose keeps 30 of 30 requests in the client's zone.
- Localhost NodePorts: `curl 127.0.0.1:<nodePort>` on a node answers.
- UDP: a one-way flow to a service whose last endpoint left meets the REJECT within
  1 s of the proxy's rules saying so (conntrack cleanup).

How many requests: `roll` has one ready and one terminating pod; were the
terminating one still a candidate for new connections, each request would pick it
with probability 1/2, so 30 requests all answered by the ready pod by luck has
probability 2^-30 < 1e-6. `zoned` has two pods in zone a and one in zone b: 30 of 30
in zone a by luck is (2/3)^30 = 5e-6; 40 requests make it 9e-8 < 1e-6.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.lab.conftest import KGEN, RunningLab, bring_up

ZONE_REQUESTS = 40
assert (2 / 3) ** ZONE_REQUESTS < 1e-6
ROLL_REQUESTS = 30
assert 0.5 ** ROLL_REQUESTS < 1e-6
CRASH = "date +%s.%N; exit 3"  # each run prints when it started, then crashes

LAB: dict[str, Any] = {
    # Its own node network (this suite's range), away from other labs.
    "nodeNetwork": "172.28.129.0/24",
    "nodes": [{"name": "node-0", "zone": "a"}, {"name": "node-1", "zone": "a"},
              {"name": "node-2", "zone": "b"}],
    "pods": [
        {"name": "cl", "node": "node-0"},
        {"name": "crash", "node": "node-1",
         "containers": [{"name": "main", "command": ["sh", "-c", CRASH]}]},
        {"name": "solo", "node": "node-1", "labels": {"app": "solo"},
         "terminationGracePeriodSeconds": 120},
        {"name": "old", "node": "node-1", "labels": {"app": "roll"},
         "terminationGracePeriodSeconds": 120},
        {"name": "new", "node": "node-2", "labels": {"app": "roll"}},
        {"name": "za-0", "node": "node-0", "labels": {"app": "zoned"}},
        {"name": "za-1", "node": "node-1", "labels": {"app": "zoned"}},
        {"name": "zb-0", "node": "node-2", "labels": {"app": "zoned"}},
        {"name": "u", "node": "node-2", "labels": {"app": "udp"},
         "terminationGracePeriodSeconds": 0},
    ],
    "services": [
        {"name": "solo", "clusterIP": "10.96.0.21", "selector": {"app": "solo"},
         "ports": [{"port": 80, "targetPort": 8080}]},
        {"name": "roll", "clusterIP": "10.96.0.22", "selector": {"app": "roll"},
         "ports": [{"port": 80, "targetPort": 8080}]},
        {"name": "zoned", "clusterIP": "10.96.0.23", "selector": {"app": "zoned"},
         "trafficDistribution": "PreferClose", "ports": [{"port": 80, "targetPort": 8080}]},
        {"name": "np", "type": "NodePort", "clusterIP": "10.96.0.24", "selector": {"app": "zoned"},
         "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30180}]},
        {"name": "udp", "clusterIP": "10.96.0.25", "selector": {"app": "udp"},
         "ports": [{"port": 53, "targetPort": 8081, "protocol": "UDP"}]},
    ],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp("endpoints")
    lab_file = workdir / "ep.yaml"
    lab_file.write_text(yaml.safe_dump({"name": "ep", **LAB}, sort_keys=False))
    yield from bring_up(lab_file, workdir)


def remove_pods(lab: RunningLab, *names: str) -> float:
    """Drop pods from the lab file and `kgen apply`; the moment apply returned."""
    doc = yaml.safe_load(lab.lab_file.read_text())
    doc["pods"] = [p for p in doc["pods"] if p["name"] not in names]
    lab.lab_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    lab.kgen("apply")
    return time.monotonic()


def service(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in status["services"] if s["name"] == name)


def pod(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in status["pods"] if p["name"] == name)


def hostnames(lab: RunningLab, source: str, url: str, count: int) -> list[str]:
    """`count` requests from `source`, each a new connection: who answered, or FAIL."""
    script = (f"for i in $(seq {count}); do "
              f"curl -s -m 5 {url}/hostname || printf \"FAIL $?\"; echo; done")
    out = lab.exec(source, "sh", "-c", script).stdout.splitlines()
    assert len(out) == count
    return out


# ---------------------------------------------------------------- kubelet's restarts


def test_first_restart_within_2s_then_backoff(lab: RunningLab) -> None:
    """Each run prints its start time and crashes at once: run 2 starts within 2 s of
    run 1 (no back-off entry yet), run 3 about 10 s after run 2's crash."""
    deadline = time.monotonic() + 60
    while True:
        starts = [float(x) for x in lab.kgen("logs", "crash").stdout.split()]
        if len(starts) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert len(starts) >= 3, starts
    print(f"restart waits: {starts[1] - starts[0]:.2f} s, then {starts[2] - starts[1]:.2f} s")
    assert starts[1] - starts[0] <= 2.0, starts
    assert 10.0 - 0.5 <= starts[2] - starts[1] <= 10.0 + 2.0, starts
    state = pod(lab.status(), "crash")
    assert state["restarts"] >= 2


def test_crash_loop_back_off_only_while_a_restart_waits(lab: RunningLab) -> None:
    """From the third crash on, the next restart waits 20 s or more: the pod shows
    CrashLoopBackOff while it waits."""
    deadline = time.monotonic() + 30
    while pod(lab.status(), "crash")["state"] != "CrashLoopBackOff":
        assert time.monotonic() < deadline, "never CrashLoopBackOff while backing off"
        time.sleep(0.5)


# ---------------------------------------------------------------- graceful termination


def test_terminating_endpoints_serve_only_as_fallback(lab: RunningLab) -> None:
    status = lab.status()
    solo_ip, old_ip = pod(status, "solo")["ip"], pod(status, "old")["ip"]
    applied = remove_pods(lab, "solo", "old")
    while True:
        status = lab.status()
        if (service(status, "solo")["terminating"] == [f"{solo_ip}:8080"]
                and service(status, "roll")["terminating"] == [f"{old_ip}:8080"]):
            break
        assert time.monotonic() - applied < 2.0, json.dumps(status, indent=1)
        time.sleep(0.2)
    assert service(status, "solo")["endpoints"] == []
    assert pod(status, "solo")["state"] == pod(status, "old")["state"] == "Terminating"
    # The only pod terminates: kube-proxy falls back to it, and it still serves.
    got = hostnames(lab, "cl", "http://10.96.0.21", 10)
    assert got == ["solo"] * 10, got
    # A ready pod is there: every new connection goes to it, although `old` serves.
    assert hostnames(lab, "cl", f"http://{old_ip}:8080", 1) == ["old"]
    got = hostnames(lab, "cl", "http://10.96.0.22", ROLL_REQUESTS)
    assert got == ["new"] * ROLL_REQUESTS, got
    rules = lab.exec("node-0", "iptables-save", "-t", "nat").stdout
    assert f"{old_ip}:8080" not in rules and f"{solo_ip}:8080" in rules


def test_sigterm_was_sent_and_the_pod_keeps_its_netns(lab: RunningLab) -> None:
    # (`kgen logs` knows only the lab file's pods: the log file is read on the node.)
    log = lab.exec("node-1", "cat", "/var/log/kgen/pods/solo/solo.log").stdout
    assert "SIGTERM, serving until killed" in log
    assert "solo" in lab.exec("node-1", "ip", "netns", "list").stdout.split()


# ---------------------------------------------------------------- topology


def test_prefer_close_keeps_requests_in_the_zone(lab: RunningLab) -> None:
    in_a = hostnames(lab, "cl", "http://10.96.0.23", ZONE_REQUESTS)
    assert set(in_a) <= {"za-0", "za-1"}, in_a
    assert len(set(in_a)) == 2, "both zone-a endpoints take requests"
    in_b = hostnames(lab, "new", "http://10.96.0.23", 10)
    assert set(in_b) == {"zb-0"}, in_b
    # Without trafficDistribution (np selects the same pods) zone b is used from zone a.
    spread = hostnames(lab, "cl", "http://10.96.0.24", ZONE_REQUESTS)
    assert "zb-0" in spread, spread


# ---------------------------------------------------------------- localhost NodePorts


def test_localhost_nodeport_answers_on_a_node(lab: RunningLab) -> None:
    got = lab.exec("node-0", "curl", "-s", "-m", "5", "http://127.0.0.1:30180/hostname").stdout
    assert got in {"za-0", "za-1", "zb-0"}, got
    assert lab.exec("node-0", "sysctl", "-n", "net.ipv4.conf.all.route_localnet").stdout.strip() \
        == "1"


# ---------------------------------------------------------------- UDP conntrack

# Runs on node-0: a one-way UDP sender in pod `cl` (one socket, one source port, a
# datagram every 20 ms), and a watcher of the node's filter rules; prints when the
# REJECT rule for the service appeared and when the sender was first refused.
WATCH = r"""
import json, subprocess, sys, time
SENDER = '''
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("10.96.0.25", 53))
s.settimeout(0.02)
end = time.time() + 60
while time.time() < end:
    try:
        s.send(b"hostname")
        print("answer", s.recv(100).decode(), time.time(), flush=True)
    except socket.timeout:
        pass
    except ConnectionRefusedError:
        print("refused", "-", time.time(), flush=True)
        break
    except OSError as err:  # e.g. the dead pod's node: host unreachable
        print("error", err.errno, time.time(), flush=True)
    time.sleep(0.02)
'''
sender = subprocess.Popen(["ip", "netns", "exec", "cl", "python3", "-c", SENDER],
                          stdout=subprocess.PIPE, text=True)
first = sender.stdout.readline()
print("ready", first.strip(), flush=True)
rule_at = None
end = time.time() + 60
while rule_at is None and time.time() < end:
    rules = subprocess.run(["iptables", "-w", "-t", "filter", "-S", "KUBE-SERVICES"],
                           capture_output=True, text=True).stdout
    if "default/udp has no endpoints" in rules:
        rule_at = time.time()
    time.sleep(0.01)
rest = sender.stdout.read().split("\n")
sender.wait()
refused = [float(l.split()[2]) for l in rest if l.startswith("refused")]
answers = [l.split()[1] for l in [first, *rest] if l.startswith("answer")]
print(json.dumps({"rule": rule_at, "refused": refused[0] if refused else None,
                  "answers": sorted(set(answers))}), flush=True)
"""


def test_udp_flow_meets_the_reject_once_the_last_endpoint_left(lab: RunningLab) -> None:
    watcher = subprocess.Popen([*KGEN, "exec", "-l", str(lab.lab_file), "node-0", "--",
                                "python3", "-c", WATCH], cwd=lab.dir, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert watcher.stdout is not None
        ready = watcher.stdout.readline()
        assert ready.startswith("ready answer u "), ready  # the flow reaches the pod
        remove_pods(lab, "u")
        result = json.loads(watcher.stdout.readline())
    finally:
        watcher.kill()
        watcher.wait()
    assert result["answers"] == ["u"]
    assert result["rule"] is not None, "the service never got its REJECT rule"
    assert result["refused"] is not None, "the flow was never refused"
    print(f"UDP: refused {result['refused'] - result['rule']:.3f} s after the REJECT rule")
    assert result["refused"] - result["rule"] <= 1.0, result
