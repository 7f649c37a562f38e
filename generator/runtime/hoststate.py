"""A lab spanning hosts, read back through the engines (lab contract section 11).

The hosts share no filesystem with the machine that ran `kgen up`: `refresh_state`
asks one node per host for its host's own nodes' documents and heartbeat ages
(`docker exec ... generator.node.statesync --dump`) and writes them into the
rendered state directory, dating each heartbeat file as its node renewed it, so
that every reader here (`up`, `status`, `ls`, `check`) reads that directory as
on one engine. No Docker SDK: `kgen status` and `graph` build from the registry.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from generator.node.contract import Cluster
from generator.node.statesync import store
from generator.runtime.hostcli import member_cli

REFRESH_PERIOD = 1.0  # seconds between reads of the hosts' state (one docker exec per host)
_last_refresh: dict[Path, float] = {}
_lock = threading.Lock()


def _dump(cluster: Cluster, host: str) -> dict[str, Any]:
    """One host's own nodes' documents and heartbeat ages, read inside a node there."""
    for node in cluster["nodes"]:
        if node.get("host") != host:
            continue
        try:
            done = subprocess.run([*member_cli(cluster, node["container"]), "exec",
                                   node["container"], "python3", "-m",
                                   "generator.node.statesync", "--dump"],
                                  capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0:
            try:
                found = json.loads(done.stdout)
            except ValueError:
                continue
            mine = {n["name"] for n in cluster["nodes"] if n.get("host") == host}
            return {k: v for k, v in found.items() if k in mine}
    return {}


def refresh_state(cluster: Cluster | None, state_dir: Path, force: bool = False) -> None:
    """Bring the hosts' state documents into `state_dir` (at most once a REFRESH_PERIOD
    unless forced); a lab on one engine has them there already."""
    if cluster is None or "hosts" not in cluster:
        return
    with _lock:
        now = time.monotonic()
        if not force and now - _last_refresh.get(state_dir, -1e9) < REFRESH_PERIOD:
            return
        _last_refresh[state_dir] = now
    with ThreadPoolExecutor(max_workers=len(cluster["hosts"])) as pool:
        dumps = list(pool.map(lambda h: _dump(cluster, h["name"]), cluster["hosts"]))
    state_dir.mkdir(parents=True, exist_ok=True)
    wall = time.time()
    for found in dumps:
        for name, entry in found.items():
            store(state_dir, name, entry, wall)  # as a node stores a peer's on another host
