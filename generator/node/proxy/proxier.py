"""The sync loop of kube-proxy's iptables mode.

Changes are batched (at most one sync per `min_sync_period`); each sync is
one `iptables-restore --noflush` carrying both tables. A partial sync writes
the top-level chains and the chains of service ports whose rules changed; a
full sync writes everything, deletes stale chains and ensures the jump rules
and the canary chain. When the canary is gone (tables flushed and deleted, as
a firewall reload does), the next sync is a full one.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from generator.node.contract import PublishedPod, ServiceSpec, input_digest
from generator.node.proxy.endpoints import Endpoint, PodIndex
from generator.node.proxy.rules import JUMPS, OWNED_PREFIXES, PortRules, service_port_rules, write_ruleset

log = logging.getLogger("kgen.proxy")

CANARY = "KUBE-PROXY-CANARY"
CANARY_TABLES = ("mangle", "nat", "filter")
Runner = Callable[..., subprocess.CompletedProcess[str]]


def _run(cmd: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=input, capture_output=True, text=True)


class Proxier:
    def __init__(self, node_name: str, node_ip: str, cluster_cidr: str,
                 iptables_restore: tuple[str, ...] = ("iptables-restore",),
                 iptables: tuple[str, ...] = ("iptables",), runner: Runner = _run,
                 min_sync_period: float = 0.25, full_sync_period: float = 60.0) -> None:
        self.node, self.node_ip, self.cluster_cidr = node_name, node_ip, cluster_cidr
        self.restore_cmd, self.iptables_cmd, self.run_cmd = iptables_restore, iptables, runner
        self.min_sync_period, self.full_sync_period = min_sync_period, full_sync_period
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.services: list[ServiceSpec] = []
        self.pods: list[PublishedPod] = []
        self.input = ""  # digest of services + pods last handed in
        self.synced = ""  # digest of the last successful sync
        self.fingerprints: dict[str, str] = {}
        self.written: set[str] = set()
        self.last_endpoints: dict[str, PortRules] = {}
        self.need_full = True
        self.last_full = 0.0
        self.syncs = 0
        self.last_sync_ms = 0.0
        self.error: str | None = None

    # ---- inputs and status

    def update(self, services: list[ServiceSpec], pods: list[PublishedPod]) -> None:
        digest = input_digest(services, pods)
        with self.lock:
            if digest == self.input:
                return
            self.services, self.pods, self.input = services, pods, digest
        self.changed.set()

    def status(self) -> dict[str, Any]:
        return {"digest": self.synced, "syncs": self.syncs,
                "lastSyncMs": round(self.last_sync_ms, 2), "error": self.error}

    # ---- the loop

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.changed.wait(1.0)
            if stop.is_set():
                break
            due_full = time.monotonic() - self.last_full > self.full_sync_period
            if not self.changed.is_set() and not due_full and self.canary_present():
                continue
            self.changed.clear()
            started = time.monotonic()
            self.sync_once(full=due_full)
            # Batch: whatever arrives during the minimum period waits for the next sync.
            stop.wait(max(0.0, self.min_sync_period - (time.monotonic() - started)))

    def canary_present(self) -> bool:
        for table in CANARY_TABLES:
            if self.run_cmd([*self.iptables_cmd, "-w", "-t", table, "-S", CANARY]).returncode:
                if not self.need_full:
                    log.warning("canary chain missing in %s: full resync", table)
                self.need_full = True
                return False
        return True

    # ---- one sync

    def port_rules(self, services: list[ServiceSpec],
                   pods: list[PublishedPod]) -> list[PortRules]:
        index = PodIndex(pods)
        return [service_port_rules(s, p, index.endpoints(s, p), self.node, self.cluster_cidr)
                for s in services for p in s["ports"]]

    def sync_once(self, full: bool = False) -> bool:
        with self.lock:
            services, pods, digest = self.services, self.pods, self.input
        full = full or self.need_full
        started = time.monotonic()
        ports = self.port_rules(services, pods)
        wanted = {name for p in ports for name in p.chains}
        changed = {p.key for p in ports if self.fingerprints.get(p.key) != p.fingerprint()}
        stale = (self.existing_chains() if full else self.written) - wanted
        payload = write_ruleset(ports, None if full else changed, stale)
        result = self.run_cmd([*self.restore_cmd, "-w", "--noflush"], input=payload)
        if result.returncode != 0:
            self.error = f"iptables-restore: {result.stderr.strip()[:300]}"
            self.need_full = True
            log.error("%s", self.error)
            return False
        if full:
            self.ensure_jumps_and_canary()
            self.last_full = time.monotonic()
        self.flush_stale_udp(ports)
        self.fingerprints = {p.key: p.fingerprint() for p in ports}
        self.written, self.need_full, self.error = wanted, False, None
        self.synced, self.syncs = digest, self.syncs + 1
        self.last_sync_ms = (time.monotonic() - started) * 1000
        log.info("%s sync: %d service ports, %d chains written, %d stale, %.1f ms",
                 "full" if full else "partial", len(ports),
                 len(wanted) if full else sum(len(p.chains) for p in ports if p.key in changed),
                 len(stale), self.last_sync_ms)
        return True

    def existing_chains(self) -> set[str]:
        out = self.run_cmd([*self.iptables_cmd, "-w", "-t", "nat", "-S"]).stdout
        return {line.split()[1] for line in out.splitlines()
                if line.startswith("-N ") and line.split()[1].startswith(OWNED_PREFIXES)}

    def ensure_jumps_and_canary(self) -> None:
        for table, chain, rule in JUMPS:
            args = shlex.split(rule)
            check = [*self.iptables_cmd, "-w", "-t", table, "-C", chain, *args]
            if self.run_cmd(check).returncode != 0:
                self.run_cmd([*self.iptables_cmd, "-w", "-t", table, "-I", chain, "1", *args])
        for table in CANARY_TABLES:
            self.run_cmd([*self.iptables_cmd, "-w", "-t", table, "-N", CANARY])

    # ---- conntrack

    def flush_stale_udp(self, ports: list[PortRules]) -> None:
        """UDP has no connection to end: entries to a gone endpoint would black-hole
        the client, and entries made while a service had no endpoints would keep
        it refused. Delete them, as kube-proxy does."""
        current = {p.key: p for p in ports if p.protocol == "udp"}
        for key, port in current.items():
            before = self.last_endpoints.get(key)
            if before is None:
                continue
            gone = _addresses(before.endpoints) - _addresses(port.endpoints)
            for ip in sorted({a.split(":")[0] for a in gone}):
                self.conntrack("--orig-dst", before.cluster_ip, "--dst-nat", ip)
                if before.node_port:
                    self.conntrack("--orig-port-dst", str(before.node_port), "--dst-nat", ip)
            if not before.endpoints and port.endpoints:
                self.conntrack("--orig-dst", port.cluster_ip)
        self.last_endpoints = current

    def conntrack(self, *match: str) -> None:
        # Exit status 1 means "0 flow entries deleted": nothing to do.
        self.run_cmd(["conntrack", "-D", "-p", "udp", *match])


def _addresses(endpoints: list[Endpoint]) -> set[str]:
    return {e.address for e in endpoints}
