"""Issue 11: node and pod health drive endpoints, as in a cluster.

- A crash-looping pod is `CrashLoopBackOff`, counts restarts, is not its
  service's endpoint, and `kgen logs` shows its output.
- A node whose agent is killed (and stays down) leaves every proxy and
  `kgen status` within the grace period plus one sync: from then on every
  request to its services from other nodes succeeds.
- A frozen node (docker pause: agent and pods stop) does the same.
- A node whose agent dies comes back by itself (compose restart policy), and
  after `docker restart`, with its pods, their addresses and its rules.

How many requests: the web service has three backends, one on the node that
goes away. Were its endpoint left in a node's rules, each new connection
would pick it with probability 1/3 (iptables' random statistic), so all of
N requests succeed by luck with probability (2/3)^N; N = 40 makes that
3.0e-7 < 1e-6 per path, and every path below sends 40.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.conftest import RunningLab, bring_up

REQUESTS = 40
BACKENDS = 3
assert (1 - 1 / BACKENDS) ** REQUESTS < 1e-6
GRACE = 4  # nodeGracePeriod of the test lab
# One sync after the grace period: the agents look at heartbeats once a second,
# then the proxy writes its rules (batched at most every 0.25 s, one iptables-restore).
SYNC = 3.0
AGENT = "^python3 -m generator.node.agent"

LAB = {
    # Its own node network, far from the first free /24s that other labs take.
    "nodeNetwork": "172.31.211.0/24",
    "nodeGracePeriod": GRACE,
    "nodes": ["node-0", "node-1", "node-2"],
    "pods": [
        {"name": "web-0", "node": "node-0", "labels": {"app": "web"}},
        {"name": "web-1", "node": "node-1", "labels": {"app": "web"}},
        {"name": "web-2", "node": "node-2", "labels": {"app": "web"}},
        # Its own service: between a restart and its exit a crash-looping container is
        # Running (as under kubelet without a readiness probe), an endpoint for that
        # instant, which a loaded machine stretches to seconds. Under web's selector it
        # made the node tests' 40 requests (and their `endpoints == before`) hit it.
        {"name": "crash", "node": "node-2", "labels": {"app": "crash"},
         "containers": [{"name": "main", "command": ["sh", "-c", "echo crashing; exit 3"]}]},
    ],
    "services": [
        {"name": "web", "clusterIP": "10.96.0.11", "selector": {"app": "web"},
         "ports": [{"port": 80, "targetPort": 8080}]},
        {"name": "web-np", "type": "NodePort", "clusterIP": "10.96.0.20",
         "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080,
                                                "nodePort": 30080}]},
        {"name": "crash", "clusterIP": "10.96.0.30", "selector": {"app": "crash"},
         "ports": [{"port": 80, "targetPort": 8080}]},
    ],
    "clients": ["client-0"],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    import yaml

    workdir = tmp_path_factory.mktemp("health")
    lab_file = workdir / "health.yaml"
    lab_file.write_text(yaml.safe_dump({"name": "health", **LAB}, sort_keys=False))
    yield from bring_up(lab_file, workdir)


def container(lab: RunningLab, node: str) -> str:
    return next(n["container"] for n in lab.status()["nodes"] if n["name"] == node)


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def wait_for(lab: RunningLab, what: str, done: Callable[[dict[str, Any]], bool],
             timeout: float = 90.0) -> dict[str, Any]:
    """Poll `kgen status --json` until `done` holds (bounded; the test fails after)."""
    deadline = time.monotonic() + timeout
    while True:
        status = lab.status()
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s:\n{json.dumps(status, indent=1)}")
        time.sleep(1.0)


def endpoints(status: dict[str, Any], service: str = "web") -> set[str]:
    return set(next(s["endpoints"] for s in status["services"] if s["name"] == service))


def pod(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in status["pods"] if p["name"] == name)


def node_state(status: dict[str, Any], name: str) -> str:
    return str(next(n["state"] for n in status["nodes"] if n["name"] == name))


def answers(lab: RunningLab, source: str, url: str) -> list[str]:
    """REQUESTS requests from `source`, each a new connection; one line per request:
    the pod that answered, or FAIL."""
    # -m 5: a dead endpoint never answers; a live one answers well within 5 s even
    # on a loaded machine. A failure line carries curl's exit status.
    script = (f"for i in $(seq {REQUESTS}); do "
              f"curl -s -m 5 {url}/hostname || printf \"FAIL $?\"; echo; done")
    out = lab.exec(source, "sh", "-c", script).stdout.splitlines()
    assert len(out) == REQUESTS
    return out


def node_ip(status: dict[str, Any], name: str) -> str:
    return str(next(n["ip"] for n in status["nodes"] if n["name"] == name))


def every_path_succeeds(lab: RunningLab, status: dict[str, Any], gone: str) -> set[str]:
    """Requests to the web services from the nodes and pods that stay, and from the
    client through node-0's NodePort: every one answered, never by the gone pod."""
    seen: set[str] = set()
    paths = [("node-0", "http://10.96.0.11"), ("web-2", "http://10.96.0.11"),
             ("client-0", f"http://{node_ip(status, 'node-0')}:30080")]
    for source, url in paths:
        got = answers(lab, source, url)
        failed = [line for line in got if line.startswith("FAIL")]
        assert not failed and gone not in got, (source, url, got)
        seen.update(got)
    return seen


def proxies_in_sync(lab: RunningLab) -> bool:
    """Every node live, ready, and its proxy synced to what the host computes."""
    from generator.node.contract import live_nodes, read_node_states
    from generator.runtime.ready import pending

    rendered = lab.dir / f"kgen-{lab.name}"
    cluster = json.loads((rendered / "config" / "cluster.json").read_text())
    docs = read_node_states(rendered / "state", [n["name"] for n in cluster["nodes"]])
    live = live_nodes(cluster, rendered / "state", time.time())
    return not [m for m in pending(cluster, docs, live) if not m.startswith("pod ")]


def rules_mention(lab: RunningLab, node: str, ip: str) -> bool:
    return f"{ip}:8080" in lab.exec(node, "iptables-save", "-t", "nat").stdout


# ---------------------------------------------------------------- pods


def test_crash_looping_pod_backs_off_and_is_no_endpoint(lab: RunningLab) -> None:
    # kubelet restarts it at once after the first exit, 10 s after the second, 20 s after
    # the third; each run exits at once, so it is soon backing off.
    # (Between a restart and the exit the pod may be Running for an instant, as in
    # kubelet without a readiness probe; so the rules are looked at once every proxy
    # has synced what the host computes, as `kgen up` waits for.)
    status = wait_for(lab, "crash restarted and backing off, every proxy in sync",
                      lambda s: pod(s, "crash")["restarts"] >= 1
                      and pod(s, "crash")["state"] == "CrashLoopBackOff"
                      and proxies_in_sync(lab))
    crash_ip = pod(status, "crash")["ip"]
    assert crash_ip, "a crash-looping pod keeps its address"
    assert endpoints(status, "crash") == set(), "its service has no endpoint"
    assert endpoints(status) == {f"{pod(status, p)['ip']}:8080" for p in ("web-0", "web-1", "web-2")}
    for node in ("node-0", "node-1", "node-2"):
        assert not rules_mention(lab, node, crash_ip), f"{node}'s proxy still has {crash_ip}"
    logs = lab.kgen("logs", "crash").stdout.splitlines()
    assert logs.count("crashing") >= 2, "the output of every run, the restarted ones too"
    table = lab.kgen("status").stdout
    assert "CrashLoopBackOff" in table


def test_restart_count_and_backoff_grow(lab: RunningLab) -> None:
    """The waits double (10 s, 20 s, 40 s ...): in 25 s at most two more restarts."""
    before = pod(lab.status(), "crash")["restarts"]
    time.sleep(25)
    after = pod(lab.status(), "crash")["restarts"]
    assert before <= after <= before + 2


# ---------------------------------------------------------------- nodes


def test_killed_agent_leaves_every_proxy_within_grace(lab: RunningLab) -> None:
    status = lab.status()
    web1 = pod(status, "web-1")["ip"]
    name = container(lab, "node-1")
    docker("update", "--restart=no", name)  # stays down: no restart policy to save it
    try:
        lab.exec("node-1", "pkill", "-KILL", "-f", AGENT, check=False)
        time.sleep(GRACE + SYNC)
        status = lab.status()
        assert node_state(status, "node-1") == "Exited"
        assert f"{web1}:8080" not in endpoints(status)
        assert f"{web1}:8080" not in endpoints(status, "web-np")
        for node in ("node-0", "node-2"):
            assert not rules_mention(lab, node, web1), f"{node} still DNATs to {web1}"
        seen = every_path_succeeds(lab, status, "web-1")
        assert seen <= {"web-0", "web-2"}
    finally:
        docker("update", "--restart=always", name)
        docker("start", name)
    status = wait_for(lab, "node-1 back", lambda s: node_state(s, "node-1") == "Ready"
                      and pod(s, "web-1")["state"] == "Running")
    assert pod(status, "web-1")["ip"] == web1, "the pod comes back with its address"
    assert f"{web1}:8080" in endpoints(status)


def test_frozen_node_leaves_every_proxy_within_grace(lab: RunningLab) -> None:
    status = lab.status()
    web1 = pod(status, "web-1")["ip"]
    name = container(lab, "node-1")
    docker("pause", name)
    try:
        time.sleep(GRACE + SYNC)
        status = lab.status()
        assert f"{web1}:8080" not in endpoints(status)
        every_path_succeeds(lab, status, "web-1")
    finally:
        docker("unpause", name)
    status = wait_for(lab, "node-1 live again", lambda s: node_state(s, "node-1") == "Ready"
                      and f"{web1}:8080" in endpoints(s))
    assert pod(status, "web-1")["restarts"] == 0, "nothing restarted: the node only froze"


@pytest.mark.parametrize("how", ["agent killed", "docker restart"])
def test_node_comes_back_by_itself(lab: RunningLab, how: str) -> None:
    before = lab.status()
    name = container(lab, "node-1")
    restarts = int(docker("inspect", "-f", "{{.RestartCount}}", name).strip() or 0)
    started = docker("inspect", "-f", "{{.State.StartedAt}}", name)
    if how == "agent killed":
        lab.exec("node-1", "pkill", "-KILL", "-f", AGENT, check=False)
    else:
        docker("restart", name)
    backends = [pod(before, p)["ip"] for p in ("web-0", "web-1", "web-2")]
    # Back: restarted, Ready, its pods Running, the same endpoints everywhere, and
    # node-1's own proxy DNATs to every web backend again.
    status = wait_for(lab, f"node-1 back after {how}",
                      lambda s: docker("inspect", "-f", "{{.State.StartedAt}}", name) != started
                      and node_state(s, "node-1") == "Ready"
                      and all(p["state"] == "Running" for p in s["pods"] if p["node"] == "node-1")
                      and endpoints(s) == endpoints(before)
                      and all(rules_mention(lab, "node-1", ip) for ip in backends))
    if how == "agent killed":
        assert int(docker("inspect", "-f", "{{.RestartCount}}", name)) == restarts + 1, \
            "the restart policy, not the test, brought it back"
    assert {p["name"]: p["ip"] for p in status["pods"]} == \
           {p["name"]: p["ip"] for p in before["pods"]}
    got = answers(lab, "node-1", "http://10.96.0.11")
    # All three answer: P(a given backend unseen in 40) = (2/3)^40 < 1e-6.
    assert set(got) == {"web-0", "web-1", "web-2"}


def test_logs_of_a_pod_container(lab: RunningLab, tmp_path: Path) -> None:
    lab.exec("web-0", "curl", "-s", "-m", "2", "http://127.0.0.1:8080/echo?msg=hello")
    out = lab.kgen("logs", "web-0").stdout
    assert "GET /echo?msg=hello" in out
    bad = lab.kgen("logs", "web-0", "-c", "nope", check=False)
    assert bad.returncode == 2 and "nope" in bad.stderr
