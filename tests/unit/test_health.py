"""Node liveness, pod back-off and the agent's change watching (pure logic and files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from generator.node import contract, liveness
from generator.node.agent import Agent
from generator.node.backoff import BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_RESET, next_backoff, restart_delay
from generator.node.contract import file_stamp
from generator.node.netpol.spec import netpol_digest
from generator.node.overlay import neighbour_commands, route_commands
from generator.node.peer_files import RACY_NS
from generator.node.pods import Container, Pod, pod_state


def cluster(grace: int = 6, nodes: int = 3) -> dict[str, Any]:
    return {"nodeGracePeriod": grace, "generation": "g1", "services": [],
            "nodes": [{"name": f"n{i}"} for i in range(nodes)],
            "pods": [{"name": f"p{i}", "node": f"n{i}", "labels": {"app": "a"}}
                     for i in range(nodes)]}


def beat(state: Path, node: str, age: float) -> None:
    contract.renew_heartbeat(state, node)
    when = time.time() - age
    os.utime(contract.heartbeat_path(state, node), (when, when))


# ---------------------------------------------------------------- the contract


def test_a_node_is_live_until_its_grace_period_runs_out(tmp_path: Path) -> None:
    beat(tmp_path, "n0", 1.0)
    beat(tmp_path, "n1", 5.9)
    beat(tmp_path, "n2", 6.1)
    assert contract.live_nodes(cluster(grace=6), tmp_path, time.time()) == {"n0", "n1"}
    assert contract.live_nodes(cluster(grace=10), tmp_path, time.time()) == {"n0", "n1", "n2"}
    assert contract.heartbeat_age(tmp_path, "nobody", time.time()) is None


def test_default_grace_and_three_renewals_per_grace() -> None:
    assert contract.grace_period({}) == contract.DEFAULT_GRACE_PERIOD == 6
    assert contract.heartbeat_period({"nodeGracePeriod": 6}) == 2


def test_pods_of_nodes_not_live_serve_nobody() -> None:
    docs = {f"n{i}": {"pods": {f"p{i}": {"ip": f"10.0.{i}.2", "state": "Running",
                                         "restarts": i}}} for i in range(3)}
    pods = contract.serving_pods(cluster(), docs, {"n0", "n2"})
    assert [(p["name"], p["restarts"]) for p in pods] == [("p0", 0), ("p2", 2)]
    everyone = contract.serving_pods(cluster(), docs, {"n0", "n1", "n2"})
    assert contract.input_digest([], pods) != contract.input_digest([], everyone)


def test_terminating_pods_are_published_with_their_own_labels() -> None:
    """A pod gone from cluster.json that its node still terminates is published with
    the labels its node kept and whether it serves; one moved to another node is two
    pods while the old one terminates (pod_key tells them apart)."""
    c = cluster()
    c["pods"] = [{"name": "p1", "node": "n2", "labels": {"app": "a"}}]
    docs: dict[str, Any] = {
        "n0": {"pods": {"gone": {"ip": "10.0.0.9", "state": "Terminating", "serving": True,
                                 "labels": {"app": "old"}}}},
        "n1": {"pods": {"p1": {"ip": "10.0.1.2", "state": "Terminating", "serving": False,
                               "labels": {"app": "a"}}}},
        "n2": {"pods": {"p1": {"ip": "10.0.2.2", "state": "Running"}}}}
    pods = contract.published_pods(c, docs)
    assert [(p["name"], p["node"], p["state"], p.get("serving")) for p in pods] == [
        ("gone", "n0", "Terminating", True), ("p1", "n1", "Terminating", False),
        ("p1", "n2", "Running", None)]
    assert pods[0]["labels"] == {"app": "old"}
    assert {contract.pod_key(p) for p in pods} == {"n0/gone", "n1/p1", "n2/p1"}
    assert [p["name"] for p in contract.serving_terminating_pods(pods)] == ["gone"]
    drained = contract.published_pods(c, {**docs, "n0": {"pods": {"gone": {
        **docs["n0"]["pods"]["gone"], "serving": False}}}})
    assert contract.input_digest([], pods) != contract.input_digest([], drained)


# ---------------------------------------------------------------- pods


def restart_waits(runs: list[float]) -> list[float]:
    """The wait before each restart of a container that ran `runs[i]` seconds before
    its i-th exit, as kubelet's doBackOff (IsInBackOffSince, then Next) gives it."""
    waits, backoff, updated, now = [], 0.0, 0.0, 0.0
    for ran in runs:
        finished = now + ran
        wait = restart_delay(backoff, updated, finished)
        now = finished + wait
        backoff, updated = next_backoff(backoff, updated, finished), now
        waits.append(wait)
    return waits


def test_backoff_is_kubelets() -> None:
    """kubelet: no back-off entry at the first exit (restart at once), then the
    entry's 10 s window doubling to 300 s; an entry not moved on for 2 x 300 s (the
    container ran 10 min) has expired: the next restart is at once again."""
    assert (BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_RESET) == (10, 300, 600)
    assert restart_waits([1.0] * 9) == [0, 10, 20, 40, 80, 160, 300, 300, 300]
    assert restart_waits([1.0, 1.0, 1.0, 601.0, 1.0]) == [0, 10, 20, 0, 10], \
        "a 10-minute run starts over"
    assert restart_waits([1.0, 1.0, 599.0]) == [0, 10, 20], "shorter than 10 min: no reset"


def test_pod_state_follows_its_containers() -> None:
    pod = Pod({"name": "p", "containers": []})
    a, b = Container({"name": "a"}), Container({"name": "b"})
    pod.containers = {"a": a, "b": b}
    assert pod_state(pod, serving=False, now=100.0) == "Pending"
    assert pod_state(pod, serving=True, now=100.0) == "Running"
    b.restart_at, b.restarts = 123.0, 2
    assert pod_state(pod, serving=False, now=100.0) == "CrashLoopBackOff"
    assert pod_state(pod, serving=False, now=123.0) == "Pending", "restart due: no back-off"
    assert pod.published() == {"ip": None, "state": "Pending", "restarts": 2}
    pod.state = "Failed"
    assert pod_state(pod, serving=True, now=100.0) == "Failed"


@pytest.mark.skipif(sys.platform != "linux", reason="processes and /proc")
def test_an_exiting_container_restarts_at_once_then_backs_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The restart logic on real processes (run directly, not in a netns): the first
    exit restarts in the same tick and never shows CrashLoopBackOff; the second waits
    10 s (CrashLoopBackOff meanwhile), the third 20 s."""
    from generator.node import pods as pods_module

    monkeypatch.setattr(pods_module, "LOG_DIR", tmp_path)
    manager = pods_module.PodManager("n0")
    pod = Pod({"name": "crash", "containers": [{"name": "main", "command": ["true"]}]},
              ip="10.0.0.2")
    container = Container(pod.spec["containers"][0])
    pod.containers["main"] = container
    manager.pods["crash"] = pod
    clock = {"now": 1000.0}

    def start(p: Pod, c: Container) -> None:
        c.proc, c.started, c.restart_at = subprocess.Popen(["true"]), clock["now"], None
        c.proc.wait()  # it exits at once: the next tick sees the exit

    monkeypatch.setattr(manager, "_start", start)
    start(pod, container)
    assert manager.tick(1000.0) is True
    assert (pod.restarts, container.restart_at, pod.state) == (1, None, "Pending")
    clock["now"] = 1001.0
    manager.tick(1001.0)
    assert (pod.restarts, container.restart_at, pod.state) == (1, 1011.0, "CrashLoopBackOff")
    assert manager.tick(1010.9) is False, "still backing off"
    clock["now"] = 1011.0
    manager.tick(1011.0)
    assert pod.restarts == 2
    clock["now"] = 1012.0
    manager.tick(1012.0)
    assert container.restart_at == 1012.0 + 20, "the next window doubles"
    assert pod.state == "CrashLoopBackOff"


# ---------------------------------------------------------------- the agent's watching


def agent(tmp_path: Path, grace: int = 6) -> Agent:
    a = Agent("n0", cluster_file=tmp_path / "cluster.json", state_dir=tmp_path / "state")
    (tmp_path / "state").mkdir(exist_ok=True)
    a.learn_nodes(cluster(grace))
    return a


def publish(state: Path, node: str, pods: dict[str, Any]) -> None:
    contract.write_json_atomic(state / f"{node}.json", {"node": node, "pods": pods})


def test_peers_are_reread_only_when_the_directory_changed(tmp_path: Path) -> None:
    a = agent(tmp_path)
    state = tmp_path / "state"
    publish(state, "n1", {"p1": {"ip": "10.0.1.2", "state": "Running"}})
    assert a.watch_peers() is True
    assert a.watch_peers() is False, "nothing changed: one stat, no reads"
    # A rewrite with the same pods (e.g. a proxy status) is read but changes nothing.
    time.sleep(0.01)
    publish(state, "n1", {"p1": {"ip": "10.0.1.2", "state": "Running"}})
    assert a.watch_peers() is False
    publish(state, "n2", {"p2": {"ip": "10.0.2.2", "state": "Pending"}})
    assert a.watch_peers() is True
    assert set(a.peer_docs) == {"n1", "n2"}


def test_a_rename_in_the_same_clock_tick_is_not_missed(tmp_path: Path) -> None:
    """The kernel stamps the directory from a coarse clock: a second rename within one
    tick leaves its mtime as it was. A stamp that fresh is not trusted (100 nodes: one
    agent missed a peer's last change and its proxy stayed a sync behind for good)."""
    a = agent(tmp_path)
    state = tmp_path / "state"
    for node in ("n1", "n2"):
        publish(state, node, {f"p-{node}": {"ip": "10.0.1.2", "state": "Pending"}})
    assert a.watch_peers() is True
    before = state.stat()
    publish(state, "n2", {"p-n2": {"ip": "10.0.1.2", "state": "Running"}})  # replaced
    os.utime(state, ns=(before.st_atime_ns, before.st_mtime_ns))  # within the same tick
    assert file_stamp(state) == a.peer_files.dir_stamp or a.peer_files.dir_stamp is None
    assert a.watch_peers() is True
    assert a.peer_docs["n2"]["pods"]["p-n2"]["state"] == "Running"
    # An old stamp is trusted: nothing more is read until the directory changes again.
    old = time.time_ns() - 10 * RACY_NS
    os.utime(state, ns=(old, old))
    assert a.watch_peers() is False and a.peer_files.dir_stamp == file_stamp(state)
    assert a.watch_peers() is False


def test_liveness_looks_again_only_when_a_heartbeat_runs_out(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    a = agent(tmp_path, grace=6)
    state = tmp_path / "state"
    beat(state, "n1", 1.0)
    beat(state, "n2", 7.0)
    now = time.time()
    assert a.look_at_peers(now=now) is True and a.live == {"n1"}
    assert a.watch_liveness() is True and a.watch_liveness() is False, "the main loop is told once"
    looked: list[str] = []
    real = liveness.file_age

    def counting(path: str | Path, now: float) -> float | None:
        looked.append(Path(path).name)
        return real(path, now)

    monkeypatch.setattr(liveness, "file_age", counting)
    assert a.look_at_peers(now=now + 0.5) is False
    assert looked == [], "n1 has 5 s left and n2 is looked at once a second"
    assert a.look_at_peers(now=now + 1.01) is False and looked == ["n2"]
    beat(state, "n1", 6.5)  # n1 has not renewed: its grace runs out
    assert a.look_at_peers(now=now + 5.01) is True and a.live == set()
    assert sorted(looked[1:]) == ["n1", "n2"]
    a.liveness.look_now("n2")  # it wrote its state file
    a.liveness.look_now("n2")
    beat(state, "n2", 0.0)
    assert a.look_at_peers(now=now + 5.02) is True and a.live == {"n2"}
    assert looked[3:] == ["n2"], "looked at once, however often it wrote"


def test_the_heartbeat_thread_looks_ahead_to_its_next_beat(tmp_path: Path) -> None:
    """Peers whose grace runs out before the next beat are looked at now: a dead one is
    seen at most one heartbeat period late, and nothing else need wake for it."""
    a = agent(tmp_path, grace=6)
    state = tmp_path / "state"
    beat(state, "n1", 0.0)
    beat(state, "n2", 3.0)
    now = time.time()
    assert a.look_at_peers(now=now) is True and a.live == {"n1", "n2"}
    # n2's grace runs out at now + 3: a beat at now + 1.5 looking 2 s ahead looks at it
    # (still live); the beat after, at now + 3.5, finds it gone.
    assert a.look_at_peers(horizon=2.0, now=now + 1.5) is False
    assert a.liveness.next["n2"] == pytest.approx(now + 3.0, abs=0.01)
    assert a.look_at_peers(horizon=2.0, now=now + 3.5) is True and a.live == {"n1"}


def test_liveness_forgets_a_node_that_left(tmp_path: Path) -> None:
    a = agent(tmp_path, grace=6)
    for node in ("n1", "n2"):
        beat(tmp_path / "state", node, 0.0)
    assert a.look_at_peers() is True and a.live == {"n1", "n2"}
    a.liveness.set_peers(["n1"])
    assert a.watch_liveness() is True and a.live == {"n1"}
    assert a.look_at_peers() is False and len(a.liveness.due) == 1


def test_the_agent_feeds_its_proxy_only_live_nodes_pods(tmp_path: Path) -> None:
    class Proxy:
        def update(self, services: list[Any], pods: list[dict[str, Any]],
                   zone: str = "") -> None:
            self.pods, self.zone = pods, zone

        def status(self) -> dict[str, Any]:
            return {"digest": ""}

    a = agent(tmp_path)
    proxy = Proxy()
    a.proxier = proxy  # type: ignore[assignment]
    state = tmp_path / "state"
    for i in (1, 2):
        publish(state, f"n{i}", {f"p{i}": {"ip": f"10.0.{i}.2", "state": "Running"}})
    beat(state, "n1", 0.5)
    beat(state, "n2", 60.0)
    a.watch_peers()
    a.look_at_peers()
    a.feed_proxy()
    assert [p["name"] for p in proxy.pods] == ["p1"]


# ---------------------------------------------------------------- the overlay in batches


def test_overlay_commands_are_one_batch_for_every_peer() -> None:
    desired = {"routes": [{"dst": f"10.244.{i}.0/24", "via": f"10.244.{i}.0", "dev": "kgen.1",
                           "onlink": True} for i in range(1, 50)],
               "unreachable": ["10.244.0.0/16"],
               "neighbours": [{"ip": "10.244.1.0", "mac": "0a:58:0a:f4:01:00"}],
               "fdb": [{"mac": "0a:58:0a:f4:01:00", "dst": "172.31.0.3"}]}
    current = [{"dst": "10.244.60.0/24", "gateway": "10.244.60.0", "dev": "kgen.1"},
               {"dst": "10.244.1.0/24", "gateway": "10.244.1.0", "dev": "kgen.1"},
               {"dst": "172.31.0.0/24", "dev": "eth0"}]
    lines = route_commands(desired, current, {"kgen.1", "eth0"})
    assert lines[0] == "route del 10.244.60.0/24 dev kgen.1", "a node that left"
    assert lines[1] == "route replace 10.244.1.0/24 via 10.244.1.0 dev kgen.1 onlink"
    assert len(lines) == 1 + 49 + 1 and lines[-1] == "route replace unreachable 10.244.0.0/16"
    ip_lines, bridge_lines = neighbour_commands(
        desired, "kgen.1", [{"dst": "10.244.9.0", "lladdr": "0a:58:0a:f4:09:00"}],
        [{"mac": "0a:58:0a:f4:09:00", "dst": "172.31.0.10"}])
    assert ip_lines == ["neigh del 10.244.9.0 dev kgen.1",
                        "neigh replace 10.244.1.0 lladdr 0a:58:0a:f4:01:00 dev kgen.1 nud permanent"]
    assert bridge_lines == ["fdb del 0a:58:0a:f4:09:00 dev kgen.1 dst 172.31.0.10",
                            "fdb replace 0a:58:0a:f4:01:00 dev kgen.1 dst 172.31.0.3 self permanent"]


def test_batches_are_accepted_by_iproute2(tmp_path: Path) -> None:
    """The generated lines are real `ip -batch` syntax: run them in a throw-away netns."""
    from tests.conftest import need_root_netns

    need_root_netns()
    ns = f"kgt-batch-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def run(*cmd: str, stdin: str | None = None) -> str:
            return subprocess.run(["ip", "netns", "exec", ns, *cmd], input=stdin, check=True,
                                  capture_output=True, text=True).stdout

        run("ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1")
        run("ip", "link", "set", "dummy0", "up")
        run("ip", "addr", "add", "172.31.0.2/24", "dev", "dummy0")
        run("ip", "link", "add", "kgen.1", "type", "vxlan", "id", "1", "dstport", "4789",
            "local", "172.31.0.2", "dev", "dummy0", "nolearning")
        run("ip", "link", "set", "kgen.1", "up")
        desired = {"routes": [{"dst": f"10.244.{i}.0/24", "via": f"10.244.{i}.0",
                               "dev": "kgen.1", "onlink": True} for i in range(1, 4)],
                   "unreachable": ["10.244.0.0/16"],
                   "neighbours": [{"ip": f"10.244.{i}.0", "mac": f"0a:58:0a:f4:0{i}:00"}
                                  for i in range(1, 4)],
                   "fdb": [{"mac": f"0a:58:0a:f4:0{i}:00", "dst": f"172.31.0.{2 + i}"}
                           for i in range(1, 4)]}
        routes = json.loads(run("ip", "-j", "route", "show"))
        run("ip", "-batch", "-", stdin="\n".join(route_commands(desired, routes, {"kgen.1"})) + "\n")
        ip_lines, bridge_lines = neighbour_commands(desired, "kgen.1", [], [])
        run("ip", "-batch", "-", stdin="\n".join(ip_lines) + "\n")
        run("bridge", "-batch", "-", stdin="\n".join(bridge_lines) + "\n")
        table = run("ip", "route", "show")
        assert "10.244.3.0/24 via 10.244.3.0 dev kgen.1 onlink" in table
        assert "unreachable 10.244.0.0/16" in table
        assert "0a:58:0a:f4:02:00 dst 172.31.0.4" in run("bridge", "fdb", "show", "dev", "kgen.1")
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


# ---------------------------------------------------------------- the host's side


def test_up_waits_for_live_nodes_and_settled_pods() -> None:
    from generator.runtime.ready import default_timeout, pending

    c = cluster(nodes=2)
    c["services"] = []
    ready = {"digest": contract.input_digest([], [])}

    def doc(node: str, state: str) -> dict[str, Any]:
        i = node[1:]
        return {"node": node, "generation": "g1", "ready": True, "proxy": ready, "error": None,
                "pods": {f"p{i}": {"ip": f"10.0.{i}.2", "state": state}},
                "netpol": {"digest": netpol_digest(c), "error": None}}

    docs: dict[str, Any] = {"n0": doc("n0", "Running"), "n1": doc("n1", "CrashLoopBackOff")}
    digest = contract.input_digest([], contract.serving_pods(c, docs, {"n0", "n1"}))
    for d in docs.values():
        d["proxy"] = {"digest": digest, "error": None}
    assert pending(c, docs, {"n0", "n1"}) == [], "a crash-looping pod has its IP: settled"
    assert pending(c, docs, {"n0"}) == ["node n1", "pod p1"]
    assert default_timeout(cluster(nodes=50)) > default_timeout(cluster(nodes=3))


def test_logs_command_line() -> None:
    from generator.runtime.logs import logs_argv

    c: Any = {"nodes": [{"name": "n0", "container": "kgen-t-n0"}],
              "pods": [{"name": "p", "node": "n0",
                        "containers": [{"name": "web"}, {"name": "side"}]}]}
    argv, note = logs_argv(c, "p", None)
    assert argv == ["docker", "exec", "kgen-t-n0", "tail", "-n", "+1",
                    "/var/log/kgen/pods/p/web.log"]
    assert note == 'Defaulted container "web" out of: web, side'
    argv, note = logs_argv(c, "p", "side", follow=True, tail=5)
    assert argv[-4:] == ["-n", "5", "-F", "/var/log/kgen/pods/p/side.log"] and note is None
    with pytest.raises(LookupError, match="choose one of: web, side"):
        logs_argv(c, "p", "nope")
    with pytest.raises(LookupError, match="no pod named 'q'"):
        logs_argv(c, "q", None)


def test_a_generation_whose_apply_failed_is_tried_again(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a = agent(tmp_path)
    a.cluster, a.applied = None, "g0"
    contract.write_json_atomic(tmp_path / "cluster.json", cluster())
    calls: list[str] = []

    def apply(c: Any) -> None:
        calls.append(c["generation"])
        if len(calls) == 1:
            raise RuntimeError("overlay failed")
        a.applied = c["generation"]

    monkeypatch.setattr(a, "apply", apply)
    with pytest.raises(RuntimeError):
        a.watch_cluster()
    assert a.watch_cluster() is True and a.applied == "g1"
    assert a.watch_cluster() is False, "unchanged file: not even read"
    assert calls == ["g1", "g1"]


DRAINING = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: print('term', flush=True))\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n")


@pytest.mark.skipif(sys.platform != "linux", reason="processes and /proc")
@pytest.mark.parametrize("drains", [True, False])
def test_a_removed_pod_terminates_gracefully(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             drains: bool) -> None:
    """kubelet's graceful termination on real processes: SIGTERM at once, the pod
    Terminating (published with its labels, serving while its container runs), then
    SIGKILL when the grace period ends; a container that ends on SIGTERM ends the pod
    at once. (The pod's network teardown is stubbed: no netns here.)"""
    from generator.node import pods as pods_module

    monkeypatch.setattr(pods_module, "LOG_DIR", tmp_path)
    monkeypatch.setattr(pods_module.cni, "delete", lambda *a, **k: None)
    monkeypatch.setattr(pods_module.proc, "run", lambda *a, **k: None)
    manager = pods_module.PodManager("n0")
    spec: Any = {"name": "p", "node": "n0", "labels": {"app": "a"},
                 "containers": [{"name": "main", "command": ["x"]}],
                 "terminationGracePeriodSeconds": 5}
    pod = Pod(spec, ip="10.0.0.2", state="Running")
    container = Container(spec["containers"][0])
    pod.containers["main"] = container
    manager.pods["p"] = pod
    code = DRAINING if drains else "import time; print('up', flush=True); time.sleep(60)"
    container.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                      start_new_session=True)
    assert container.proc.stdout is not None
    assert container.proc.stdout.readline() == b"up\n"
    manager.terminate("p", now=100.0)
    published = manager.published()["p"]
    assert (published["state"], published["labels"]) == ("Terminating", {"app": "a"})
    if drains:
        assert container.proc.stdout.readline() == b"term\n", "SIGTERM reached it"
        assert manager.published()["p"]["serving"] is True
        manager.tick(104.9)
        assert "p" in manager.pods and container.proc.poll() is None, "it drains"
        manager.tick(105.0)
        assert container.proc.returncode == -9, "SIGKILL at the end of the grace period"
    else:
        container.proc.wait(5)
        manager.tick(100.5)
        assert container.proc.returncode == -15, "ended by SIGTERM"
    assert "p" not in manager.pods
