"""The state relay of a lab that spans hosts (lab contract section 11).

On one engine every node shares one state directory (a bind mount): each agent
publishes `<node>.json` and renews `heartbeat/<node>` there, and reads its
peers'. Hosts share no filesystem, so on each host the nodes share a state
directory of that host (a volume), and this relay carries every node's document
and heartbeat between hosts over the node network, as a kubelet's Lease travels
through the API server: each node serves its own document and heartbeat age on
RELAY_PORT of its node IP, and pulls those of a share of the nodes on other hosts
(each remote node is pulled by exactly one node of this host), writing them into
this host's state directory as if the peer had written them there. The agents
read that directory unchanged.

`python3 -m generator.node.statesync` runs the relay beside the node agent (the
container's main process); `--dump` prints this host's own nodes' documents and
heartbeat ages, which is how `kgen` on the machine that ran `up` reads a remote
host's state (through the engine, never through a shared filesystem).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from generator.node.contract import (
    CLUSTER_FILE,
    STATE_DIR,
    Cluster,
    heartbeat_age,
    heartbeat_path,
    read_json,
    write_json_atomic,
)

log = logging.getLogger("kgen.statesync")
RELAY_PORT = 10250  # kubelet's port: nothing else of a node listens on it
PULL_PERIOD = 1.0  # seconds between pulls: well inside a third of the grace period
PULL_TIMEOUT = 0.5


def own_state(state_dir: Path, node: str, now: float) -> dict[str, Any]:
    """What this node serves: its published document and its heartbeat's age."""
    return {"node": node, "doc": read_json(state_dir / f"{node}.json"),
            "heartbeatAge": heartbeat_age(state_dir, node, now)}


def my_share(cluster: Cluster, node: str) -> list[tuple[str, str]]:
    """(name, ip) of the nodes on other hosts that this node pulls: the remote nodes
    dealt round the nodes of this host in name order, so each is pulled once."""
    hosts = {n["name"]: n.get("host") for n in cluster["nodes"]}
    mine = hosts.get(node)
    local = sorted(n for n, h in hosts.items() if h == mine)
    remote = sorted((n["name"], n["ip"]) for n in cluster["nodes"] if n.get("host") != mine)
    if node not in local:
        return []
    index = local.index(node)
    return [peer for i, peer in enumerate(remote) if i % len(local) == index]


def store(state_dir: Path, peer: str, answer: dict[str, Any], now: float) -> None:
    """Write a peer's document (only when it changed: a rename wakes every agent) and
    date its heartbeat file as the peer last renewed it."""
    doc, age = answer.get("doc"), answer.get("heartbeatAge")
    path = state_dir / f"{peer}.json"
    if isinstance(doc, dict) and read_json(path) != doc:
        write_json_atomic(path, doc)
    if isinstance(age, (int, float)):
        beat = heartbeat_path(state_dir, peer)
        beat.parent.mkdir(parents=True, exist_ok=True)
        beat.touch()
        stamp = now - float(age)
        os.utime(beat, (stamp, stamp))


def pull_once(state_dir: Path, node: str) -> None:
    cluster = read_json(CLUSTER_FILE)
    if not isinstance(cluster, dict):
        return
    for peer, ip in my_share(cluster, node):  # type: ignore[arg-type]
        try:
            with urllib.request.urlopen(f"http://{ip}:{RELAY_PORT}/state",
                                        timeout=PULL_TIMEOUT) as answer:
                got = json.loads(answer.read())
        except (OSError, ValueError):
            continue  # a peer not up yet, or gone: its heartbeat simply ages here
        if isinstance(got, dict) and got.get("node") == peer:
            store(state_dir, peer, got, time.time())


def serve(state_dir: Path, node: str, address: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path != "/state":
                self.send_error(404)
                return
            body = json.dumps(own_state(state_dir, node, time.time())).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:  # a pull a second would flood the log
            pass

    server = ThreadingHTTPServer((address, RELAY_PORT), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="statesync-serve", daemon=True).start()
    return server


def node_ip(node: str) -> str:
    """This node's address from cluster.json; waits while the file is not there yet."""
    while True:
        cluster = read_json(CLUSTER_FILE)
        if isinstance(cluster, dict):
            for n in cluster.get("nodes", []):
                if n.get("name") == node:
                    return str(n["ip"])
        time.sleep(0.5)


def start(node: str, state_dir: Path = STATE_DIR) -> None:
    serve(state_dir, node, node_ip(node))

    def pull_forever() -> None:
        while True:
            try:
                pull_once(state_dir, node)
            except Exception:  # keep relaying; say why once per failure
                log.exception("state relay pull failed")
            time.sleep(PULL_PERIOD)

    threading.Thread(target=pull_forever, name="statesync-pull", daemon=True).start()


def dump(state_dir: Path = STATE_DIR) -> dict[str, Any]:
    """Every node with a document in this host's state directory: document and age."""
    now = time.time()
    names = sorted(p.stem for p in state_dir.glob("*.json") if not p.name.startswith("."))
    return {name: own_state(state_dir, name, now) for name in names}


def main() -> None:
    if sys.argv[1:] == ["--dump"]:
        json.dump(dump(), sys.stdout)
        return
    from generator.node import agent

    node = os.environ.get("KGEN_NODE", "")
    if node:
        start(node)
    agent.main()


if __name__ == "__main__":
    main()
