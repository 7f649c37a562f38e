"""The node agent: the main process of every node container.

It plays kubelet and the network daemons of a node: reads the cluster state mounted at
/etc/kgen, builds the overlay, runs this node's pods (and serves the DNS zone to its DNS
pods), feeds the kube-proxy clone with the pods of every live node, announces its
LoadBalancer IPs, renews its heartbeat, and publishes what it has done in the state directory.

Idle, it costs next to nothing: its main loop sleeps until a file it reads changes, a
pod's process ends or a peer comes or goes (waker.py), and wakes by itself only for
kubelet's canary and a rare safety look; the heartbeat thread looks at a peer's
heartbeat only when that peer's grace period is about to run out (liveness.py). It
re-reads only the state files that changed and feeds the proxy only when something did.
While something is on its way (pods starting, a proxy catching up) it looks five times
a second.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

from generator.node import agent_logs, kubelet_chains, overlay
from generator.node.contract import (
    CLUSTER_FILE,
    STATE_DIR,
    Cluster,
    NodeSpec,
    NodeState,
    PublishedPod,
    file_stamp,
    grace_period,
    heartbeat_period,
    input_digest,
    read_json,
    renew_heartbeat,
    serving_pods,
    write_json_atomic,
)
from generator.node.feeds import FeedLimiter, feed_interval
from generator.node.healthcheck import HealthServers
from generator.node.lb_election import lb_announcers, local_ready_endpoints
from generator.node.liveness import PeerLiveness
from generator.node.netpol_sync import NetpolSync
from generator.node.peer_files import PeerFiles
from generator.node.pod_dns import ZoneWriter, dns_settings
from generator.node.pods import PodManager, reset_leftovers
from generator.node.proxy.loop import BaseProxier
from generator.node.proxy.mode import make_proxier
from generator.node.speaker import Speaker
from generator.node.waker import Waker

log = logging.getLogger("kgen.agent")

IDLE_PERIOD = 1.0  # without inotify and pidfds: kubelet's PLEG relists once a second too
# With them every change wakes the agent; it still looks by itself this often, as an
# informer resyncs (a file system that sends no inotify events for a host's writes).
QUIET_PERIOD = 10.0
BUSY_PERIOD = 0.2
BUSY_AFTER_CHANGE = 5.0  # seconds of close watching after anything changed
FIRST_FEED_HOLD = 5.0  # at most this long a node coming up holds its input (may_feed)


class Agent:
    def __init__(self, node: str, cluster_file: Path = CLUSTER_FILE,
                 state_dir: Path = STATE_DIR) -> None:
        self.node = node
        self.cluster_file = cluster_file
        self.state_dir = state_dir
        self.cluster: Cluster | None = None
        self.cluster_stamp: tuple[int, int, int] | None = None
        self.applied = ""  # generation whose overlay and pods are in place
        self.error: str | None = None
        self.pods = PodManager(node)
        self.zone = ZoneWriter()
        self.proxier: BaseProxier | None = None
        self.netpol: NetpolSync | None = None  # the NetworkPolicy controller, beside the proxy
        self.stop = threading.Event()
        self.last_published: dict[str, Any] | None = None
        # Peers: their published documents, the stamps they were read at, and who is live.
        self.peer_files = PeerFiles(state_dir)
        self.liveness = PeerLiveness(state_dir)
        self.peer_names: list[str] = []
        self.busy_until = 0.0
        self.heartbeat: threading.Thread | None = None
        self.fed = ""  # input digest last handed to the proxy
        self.feed_pending = False
        self.settled = False  # every node was ready once: the bring-up hold is over
        self.kubelet_synced = False
        self.canary_checked = 0.0
        self.speaker: Speaker | None = None  # MetalLB's layer 2 speaker (LoadBalancer IPs)
        self.health = HealthServers()  # kube-proxy's health check node ports
        self.missed_heartbeat = threading.Event()  # set by the heartbeat thread
        self.waker: Waker | None = None  # made by `run`: what ends the main loop's sleep
        self.feeds = FeedLimiter()
        self.started = time.monotonic()

    @property
    def live(self) -> frozenset[str]:
        """The peers heard from within the grace period."""
        return self.liveness.live

    @property
    def peer_docs(self) -> dict[str, NodeState]:
        """The peers' published documents, as last read."""
        return self.peer_files.docs

    def me(self) -> NodeSpec:
        assert self.cluster is not None
        return next(n for n in self.cluster["nodes"] if n["name"] == self.node)

    def run(self) -> None:
        # A fresh document (no pods yet) goes out before the first heartbeat, so
        # that a live heartbeat never vouches for pods of an earlier run.
        self.publish()
        self.waker = Waker([self.cluster_file.parent, self.state_dir])
        while not self.stop.is_set():
            stepped = time.monotonic()
            try:
                self.step()
            except Exception as err:  # keep the node alive and say why in its state
                log.exception("agent step failed")
                self.error = f"{type(err).__name__}: {err}"
                self.publish()
                self.stop.wait(2.0)
            self.waker.watch_processes(self.pods.watched_pids())
            self.waker.wait(self.period())
            # Events come in bursts (a lab coming up: each peer's writes wake every agent):
            # at most one step per BUSY_PERIOD, what arrives meanwhile is taken together.
            self.stop.wait(max(0.0, stepped + BUSY_PERIOD - time.monotonic()))
        self.pods.stop_all()
        self.health.close()

    def wake(self) -> None:
        """End the main loop's sleep (any thread, or a signal handler)."""
        if self.waker is not None:
            self.waker.wake()

    def shut_down(self) -> None:
        self.stop.set()
        self.wake()

    def period(self) -> float:
        """How long the main loop may sleep unless woken."""
        now = time.monotonic()
        busy = now < self.busy_until or self.pods.busy() or self.proxy_behind() or (
            self.netpol is not None and self.netpol.behind())
        wait = BUSY_PERIOD if busy else (
            QUIET_PERIOD if self.waker is not None and self.waker.complete else IDLE_PERIOD)
        due = (self.canary_checked + kubelet_chains.CANARY_PERIOD if self.kubelet_synced else None,
               now + self.feeds.ready_in(now) if self.feed_pending else None,
               self.pods.next_restart())  # kubelet's canary, the next input, a restart
        return min([wait, *(max(0.05, at - now) for at in due if at is not None)])

    def proxy_behind(self) -> bool:
        return self.proxier is not None and self.proxier.status()["digest"] != self.fed

    def step(self) -> None:
        changed = self.watch_cluster()
        if self.cluster is None:
            return
        self.ensure_heartbeat()
        changed |= self.pods.tick()
        changed |= self.watch_peers(force=changed)
        changed |= self.watch_liveness()
        changed |= self.woke_up()
        now = time.monotonic()
        if self.kubelet_synced and now - self.canary_checked >= kubelet_chains.CANARY_PERIOD:
            self.canary_checked = now
            kubelet_chains.check_and_repair()
        if changed:
            self.busy_until = now + BUSY_AFTER_CHANGE
            self.feed_pending = True
        # Changes that come in a burst (a lab coming up) reach the proxy together:
        # at most one new input per FEED_INTERVAL after a burst of two, as kube-proxy's
        # minSyncPeriod and burstSyncs.
        if self.feed_pending and self.may_feed(now) and self.feeds.take(now):
            self.feed_proxy()
            self.feed_pending = False
        self.publish()

    def woke_up(self) -> bool:
        """True once after a heartbeat gap longer than the grace period (a paused node):
        another node may have taken its LB IPs meanwhile, so they are announced anew."""
        if not self.missed_heartbeat.is_set():
            return False
        self.missed_heartbeat.clear()
        if self.speaker is not None:
            log.warning("heartbeat late by more than the grace period: LB IPs announced anew")
            self.speaker.forget()
        return True

    def may_feed(self, now: float) -> bool:
        """A node coming up holds its input until its own pods and every peer are ready
        (live, and their published pods out of Pending), or FIRST_FEED_HOLD after it
        started, as kube-proxy waits for its caches to sync. Else it spent its burst of
        two inputs on pods about to change and waited a min sync period for the third."""
        if self.settled or now - self.started > FIRST_FEED_HOLD:
            return True
        docs, live = self.peer_docs, self.live
        self.settled = not self.pods.busy() and all(
            name in live and name in docs and docs[name].get("ready") for name in self.peer_names)
        return self.settled

    def watch_cluster(self) -> bool:
        """Apply a new generation of cluster.json; the file is read only when its
        stamp changed, and a generation whose apply failed is tried again."""
        stamp = file_stamp(self.cluster_file)
        if stamp == self.cluster_stamp:
            return False
        cluster = read_json(self.cluster_file)
        if not isinstance(cluster, dict):
            return False
        changed = cluster.get("generation") != self.applied
        if changed:
            self.apply(cast(Cluster, cluster))  # raises: the stamp stays old, so next step retries
        self.cluster_stamp = stamp
        return changed

    def apply(self, cluster: Cluster) -> None:
        if not any(n["name"] == self.node for n in cluster["nodes"]):
            raise RuntimeError(f"node {self.node} is not in {self.cluster_file}")
        self.learn_nodes(cluster)
        self.pods.dns = dns_settings(cluster)
        self.feeds.interval = feed_interval(len(cluster["nodes"]))
        log.info("applying generation %s", cluster["generation"])
        # Beating before the overlay and pods are set up: peers see this node live
        # as soon as it runs, not after its slowest pod (they wait for its pods anyway).
        self.ensure_heartbeat()
        overlay.setup(cluster, self.node)
        if not self.kubelet_synced:
            kubelet_chains.sync()  # kubelet's chains are in place before kube-proxy's
            self.kubelet_synced, self.canary_checked = True, time.monotonic()
        self.ensure_proxier()
        assert self.netpol is not None
        self.netpol.update(cluster)  # its own thread writes the rules: pods need not wait
        self.ensure_speaker()
        self.reconcile_pods()
        self.applied = cluster["generation"]
        self.error = None

    def learn_nodes(self, cluster: Cluster) -> None:
        """Take this generation's node list: who the peers are."""
        self.cluster = cluster
        self.peer_names = [n["name"] for n in cluster["nodes"] if n["name"] != self.node]
        self.liveness.set_peers(self.peer_names)

    def ensure_heartbeat(self) -> None:
        if self.heartbeat is not None:
            return

        def beat() -> None:
            last = time.monotonic()
            while True:
                assert self.cluster is not None
                try:
                    renew_heartbeat(self.state_dir, self.node)
                except OSError as err:
                    log.error("heartbeat: %s", err)
                now = time.monotonic()
                if now - last > grace_period(self.cluster):
                    self.missed_heartbeat.set()
                    self.wake()
                last = now
                period = heartbeat_period(self.cluster)
                if self.look_at_peers(horizon=period):
                    self.wake()
                if self.stop.wait(period):
                    return

        # Its own thread: a long pod set-up or overlay sync never makes the node look dead,
        # and a peer's end is seen on time. It looks at the peers whose grace runs out
        # before its next beat: the main loop need not wake for them.
        self.heartbeat = threading.Thread(target=beat, name="heartbeat", daemon=True)
        self.heartbeat.start()

    def ensure_proxier(self) -> None:
        if self.proxier is not None:
            return
        assert self.cluster is not None
        self.proxier = make_proxier(self.cluster, self.node, self.me()["ip"])
        self.netpol = NetpolSync(self.node, self.cluster.get("proxyMode", "iptables"),
                                 self.proxier.kernel_lock)
        self.proxier.after_sync.append(self.netpol.proxy_synced)
        for name, loop in (("proxier", self.proxier.run), ("netpol", self.netpol.run)):
            threading.Thread(target=loop, args=(self.stop,), name=name, daemon=True).start()

    def ensure_speaker(self) -> None:
        if self.speaker is None:
            self.speaker = Speaker(overlay.underlay_for(self.me()["ip"]).ifname)
            threading.Thread(target=self.speaker.run, args=(self.stop,), name="speaker",
                             daemon=True).start()

    def sync_load_balancers(self, pods: list[PublishedPod]) -> None:
        """ARP for the LB IPs this node announces; health checks with its endpoint counts."""
        assert self.cluster is not None
        owners = lb_announcers(self.cluster, pods, self.live | {self.node})
        if self.speaker is not None:
            self.speaker.announce({ip for ip, node in owners.items() if node == self.node})
        self.health.sync({port: (s.get("namespace", "default"), s["name"],
                                 local_ready_endpoints(s, pods, self.node))
                          for s in self.cluster["services"] if (port := s.get("healthCheckNodePort"))})

    def reconcile_pods(self) -> None:
        assert self.cluster is not None
        wanted = {p["name"]: p for p in self.cluster["pods"] if p["node"] == self.node}
        for name in [n for n in self.pods.pods if n not in wanted]:
            self.pods.terminate(name)  # kubelet's graceful termination
        for name in [n for n, p in self.pods.pods.items() if n in wanted
                     and p.state == "Terminating"]:
            # Added back while it terminates: the old one goes now, a new one starts.
            self.pods.remove(name, kill=True)
        for name, spec in wanted.items():
            if name in self.pods.pods and self.pods.pods[name].spec != spec:
                self.pods.update(spec)
        new = [spec for name, spec in wanted.items() if name not in self.pods.pods]
        if new:
            started = time.monotonic()
            self.pods.add_all(new)
            log.info("%d pods set up in %.2fs", len(new), time.monotonic() - started)

    def watch_peers(self, force: bool = False) -> bool:
        """Re-read the state files that changed since the last look."""
        changed, wrote = self.peer_files.watch(self.peer_names, force)
        for name in wrote:
            self.liveness.look_now(name)  # a peer that just wrote is likely live
        return changed

    def look_at_peers(self, horizon: float = 0.0, now: float | None = None) -> bool:
        """Look at the heartbeats of the peers whose grace runs out within `horizon`
        seconds (liveness.py); True when the live set changed."""
        assert self.cluster is not None
        return self.liveness.update(grace_period(self.cluster),
                                    time.time() if now is None else now, horizon)

    def watch_liveness(self) -> bool:
        """Did the live set change since the main loop last asked? The peers due now are
        looked at here too: a peer that just wrote, or is not live yet, need not wait
        for the heartbeat thread's next beat (a lab coming up)."""
        self.look_at_peers()
        return self.liveness.take_change()

    def feed_proxy(self) -> None:
        if self.proxier is None or self.cluster is None:
            return
        docs = dict(self.peer_docs)
        docs[self.node] = cast(NodeState, {"pods": self.pods.published()})
        pods = serving_pods(self.cluster, docs, self.live | {self.node})
        self.sync_load_balancers(pods)  # first: an update may wait for a sync in progress
        self.fed = input_digest(self.cluster["services"], pods)
        self.proxier.update(self.cluster["services"], pods, self.me().get("zone") or "")
        # The DNS pods here answer from what this proxy serves: the same pods.
        self.zone.update(self.cluster, pods)

    # ---- what this node says

    def publish(self) -> None:
        pods = self.pods.published()
        doc = {
            "node": self.node,
            "generation": self.applied,
            "ready": bool(self.applied) and all(p["state"] != "Pending" for p in pods.values()),
            "pods": pods,
            # What others need (has it caught up, is it failing), not its counters:
            # a file that changes on every periodic sync would wake every peer.
            "proxy": ({k: v for k, v in self.proxier.status().items() if k in ("digest", "error")}
                      if self.proxier else None),
            "error": self.error,
            "dns": {"digest": self.zone.digest} if self.zone.digest else None,
            "netpol": self.netpol.status() if self.netpol else None,
        }
        if doc != self.last_published:
            write_json_atomic(self.state_dir / f"{self.node}.json", doc)
            self.last_published = doc


def main() -> None:
    node = os.environ.get("KGEN_NODE") or (sys.argv[1] if len(sys.argv) > 1 else "")
    if not node:
        sys.exit("kgen agent: set KGEN_NODE to this node's name")
    agent_logs.setup()
    agent = Agent(node)
    signal.signal(signal.SIGTERM, lambda *_: agent.shut_down())
    signal.signal(signal.SIGINT, lambda *_: agent.shut_down())
    reset_leftovers()
    log.info("node agent for %s starting", node)
    agent.run()


if __name__ == "__main__":
    main()
