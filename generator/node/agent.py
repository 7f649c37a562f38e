"""The node agent: the main process of every node container.

It plays kubelet and the network daemons of a node: reads the cluster state
mounted at /etc/kgen, builds the overlay, runs this node's pods, feeds the
kube-proxy clone with every node's published pods, and publishes what it has
done in the shared state directory.
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

from generator.node import overlay
from generator.node.contract import (
    CLUSTER_FILE,
    STATE_DIR,
    Cluster,
    NodeSpec,
    NodeState,
    published_pods,
    read_json,
    read_node_states,
    write_json_atomic,
)
from generator.node.pods import PodManager, reset_leftovers
from generator.node.proxy.loop import BaseProxier
from generator.node.proxy.nftables import NFTablesProxier
from generator.node.proxy.proxier import Proxier

log = logging.getLogger("kgen.agent")

LOOP_PERIOD = 0.2


class Agent:
    def __init__(self, node: str, cluster_file: Path = CLUSTER_FILE,
                 state_dir: Path = STATE_DIR) -> None:
        self.node = node
        self.cluster_file = cluster_file
        self.state_dir = state_dir
        self.cluster: Cluster | None = None
        self.applied = ""  # generation whose overlay and pods are in place
        self.error: str | None = None
        self.pods = PodManager(node)
        self.proxier: BaseProxier | None = None
        self.stop = threading.Event()
        self.last_published: dict[str, Any] | None = None

    def me(self) -> NodeSpec:
        assert self.cluster is not None
        return next(n for n in self.cluster["nodes"] if n["name"] == self.node)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.step()
            except Exception as err:  # keep the node alive and say why in its state
                log.exception("agent step failed")
                self.error = f"{type(err).__name__}: {err}"
                self.publish()
                self.stop.wait(2.0)
            self.stop.wait(LOOP_PERIOD)
        self.pods.stop_all()

    def step(self) -> None:
        cluster = read_json(self.cluster_file)
        if isinstance(cluster, dict) and cluster.get("generation") != self.applied:
            self.apply(cast(Cluster, cluster))
        self.pods.tick()
        self.feed_proxy()
        self.publish()

    def apply(self, cluster: Cluster) -> None:
        if not any(n["name"] == self.node for n in cluster["nodes"]):
            raise RuntimeError(f"node {self.node} is not in {self.cluster_file}")
        self.cluster = cluster
        log.info("applying generation %s", cluster["generation"])
        overlay.setup(cluster, self.node)
        self.ensure_proxier()
        self.reconcile_pods()
        self.applied = cluster["generation"]
        self.error = None

    def ensure_proxier(self) -> None:
        if self.proxier is not None:
            return
        assert self.cluster is not None
        self.proxier = make_proxier(self.cluster, self.node, self.me()["ip"])
        threading.Thread(target=self.proxier.run, args=(self.stop,), name="proxier",
                         daemon=True).start()

    def reconcile_pods(self) -> None:
        assert self.cluster is not None
        wanted = {p["name"]: p for p in self.cluster["pods"] if p["node"] == self.node}
        for name in [n for n in self.pods.pods if n not in wanted]:
            self.pods.remove(name)
        for name, spec in wanted.items():
            if name in self.pods.pods and self.pods.pods[name].spec != spec:
                self.pods.update(spec)
        new = [spec for name, spec in wanted.items() if name not in self.pods.pods]
        if new:
            started = time.monotonic()
            # In lab-file order, one at a time: round-robin IPAM then gives every run
            # the same addresses, which the walkthrough and users rely on.
            for spec in new:
                self.pods.add(spec)
            log.info("%d pods set up in %.2fs", len(new), time.monotonic() - started)

    def feed_proxy(self) -> None:
        if self.proxier is None or self.cluster is None:
            return
        nodes = [n["name"] for n in self.cluster["nodes"] if n["name"] != self.node]
        docs = read_node_states(self.state_dir, nodes)
        docs[self.node] = cast(NodeState, {"pods": self.pods.published()})
        self.proxier.update(self.cluster["services"], published_pods(self.cluster, docs))

    def publish(self) -> None:
        pods = self.pods.published()
        doc = {
            "node": self.node,
            "generation": self.applied,
            "ready": bool(self.applied) and all(p["state"] != "Pending" for p in pods.values()),
            "pods": pods,
            "proxy": self.proxier.status() if self.proxier else None,
            "error": self.error,
        }
        if doc != self.last_published:
            write_json_atomic(self.state_dir / f"{self.node}.json", doc)
            self.last_published = doc


def make_proxier(cluster: Cluster, node: str, node_ip: str) -> BaseProxier:
    """kube-proxy in the lab's mode (cluster.json `proxyMode`: iptables | nftables)."""
    if cluster.get("proxyMode", "iptables") == "nftables":
        return NFTablesProxier(node, node_ip, cluster["podCIDR"], cluster.get("serviceCIDR"))
    return Proxier(node, node_ip, cluster["podCIDR"])


def main() -> None:
    node = os.environ.get("KGEN_NODE") or (sys.argv[1] if len(sys.argv) > 1 else "")
    if not node:
        sys.exit("kgen agent: set KGEN_NODE to this node's name")
    Path("/var/log/kgen").mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        handlers=[logging.StreamHandler(),
                                  logging.FileHandler("/var/log/kgen/agent.log")])
    agent = Agent(node)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stop.set())
    reset_leftovers()
    log.info("node agent for %s starting", node)
    agent.run()


if __name__ == "__main__":
    main()
