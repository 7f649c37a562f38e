"""What both proxiers share: inputs, status, the sync loop and UDP conntrack cleanup.

The loop is kube-proxy's BoundedFrequencyRunner: a change is synced at once while
a token is left (burst 2), else when the next token comes (one per min sync
period, 1 s), so a storm of changes costs one sync per second. A failed sync is
retried after the sync period (kube-proxy's default 30 s); `periodic` runs every
loop and says when a sync is due without a change (iptables: the hourly full
sync and the canary, checked at the sync period).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from generator.node import conntrack, proc
from generator.node.contract import PublishedPod, ServiceSpec, input_digest
from generator.node.proxy.service import PortInfo, PortTracker

log = logging.getLogger("kgen.proxy")

Runner = Callable[..., subprocess.CompletedProcess[str]]

MIN_SYNC_PERIOD = 1.0  # kube-proxy --*-min-sync-period default
BURST_SYNCS = 2  # kube-proxy's burstSyncs
SYNC_PERIOD = 30.0  # kube-proxy --*-sync-period default: canary checks, retries
FULL_SYNC_PERIOD = 3600.0  # kube-proxy's proxyutil.FullSyncPeriod


def run_command(cmd: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    return proc.run(cmd, input=input)


class BaseProxier:
    def __init__(self, node_name: str, node_ip: str, cluster_cidr: str, runner: Runner,
                 min_sync_period: float, sync_period: float) -> None:
        self.node, self.node_ip, self.cluster_cidr = node_name, node_ip, cluster_cidr
        self.run_cmd = runner
        self.min_sync_period, self.sync_period = min_sync_period, sync_period
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.services: list[ServiceSpec] = []
        self.pods: list[PublishedPod] = []
        self.input = ""  # generation of the services + pods last handed in
        self.synced = ""  # input digest of the last successful sync (see status)
        self.synced_input: tuple[list[ServiceSpec], list[PublishedPod]] | None = None
        self.digest_of: tuple[list[ServiceSpec], list[PublishedPod]] | None = None
        self.tracker = PortTracker()
        self.need_full = True
        self.syncs = 0
        self.last_sync_ms = 0.0
        self.timing: dict[str, float] = {}  # the last sync's parts, in seconds
        self.error: str | None = None
        self.udp: dict[tuple[str, int], frozenset[str]] = {}  # last sync's UDP frontends
        self.udp_node_ports: dict[int, frozenset[str]] = {}

    # ---- inputs and status

    def update(self, services: list[ServiceSpec], pods: list[PublishedPod]) -> None:
        """Hand in the cluster's services and pods (treated as immutable from here on)."""
        with self.lock:
            if services == self.services and pods == self.pods and self.input:
                return
            self.services, self.pods = services, pods
            self.input = str(int(self.input or "0") + 1)  # a generation number
        self.changed.set()

    def status(self) -> dict[str, Any]:
        """`digest`: the input digest (`contract.input_digest`) of what the last successful
        sync put in place; computed here, off the sync path, once per synced input."""
        if self.synced_input is not None and self.digest_of is not self.synced_input:
            self.synced, self.digest_of = input_digest(*self.synced_input), self.synced_input
        return {"digest": self.synced, "syncs": self.syncs,
                "lastSyncMs": round(self.last_sync_ms, 2), "error": self.error}

    # ---- the loop

    def sync_once(self, full: bool = False) -> bool:
        raise NotImplementedError

    def periodic(self, now: float) -> bool:
        """True when a sync is due although nothing changed."""
        return False

    def run(self, stop: threading.Event) -> None:
        tokens, refilled = float(BURST_SYNCS), time.monotonic()
        retry_at: float | None = None
        while not stop.is_set():
            self.changed.wait(1.0)
            if stop.is_set():
                break
            now = time.monotonic()
            due = self.changed.is_set() or self.periodic(now) or (
                retry_at is not None and now >= retry_at)
            if not due:
                continue
            tokens = min(float(BURST_SYNCS), tokens + (now - refilled) / self.min_sync_period)
            refilled = now
            if tokens < 1.0:
                # Out of burst: whatever arrives meanwhile is batched into the next sync.
                stop.wait((1.0 - tokens) * self.min_sync_period)
                continue
            tokens -= 1.0
            self.changed.clear()
            ok = self.sync_once()
            retry_at = None if ok else time.monotonic() + self.sync_period

    def snapshot(self) -> tuple[list[PortInfo], tuple[list[ServiceSpec], list[PublishedPod]]]:
        """Every service port of the input last handed in, and that input."""
        with self.lock:
            services, pods = self.services, self.pods
        return self.tracker.update(services, pods), (services, pods)

    def synced_ok(self, synced: tuple[list[ServiceSpec], list[PublishedPod]],
                  started: float) -> None:
        self.need_full, self.error = False, None
        self.synced_input, self.syncs = synced, self.syncs + 1
        self.last_sync_ms = (time.monotonic() - started) * 1000

    def failed(self, error: str) -> bool:
        self.error = error[:300]
        self.need_full = True
        log.error("%s", self.error)
        return False

    # ---- UDP conntrack cleanup, as kube-proxy >= 1.31 does it

    def cleanup_udp(self, infos: Iterable[PortInfo]) -> None:
        """Delete the UDP conntrack entries to a service IP:port or a nodePort whose reply
        source is not a serving endpoint (a gone endpoint, or none when the flow was
        made: REJECTed flows then keep failing), and every entry to the frontends of
        UDP service ports that are gone. UDP has no connection to end, so without this
        a client keeps sending into the void."""
        frontends: dict[tuple[str, int], frozenset[str]] = {}
        node_ports: dict[int, frozenset[str]] = {}
        for info in infos:
            if info.protocol != "udp":
                continue
            ips = frozenset(e.ip for e in info.endpoints)
            frontends[(info.cluster_ip, info.port)] = ips
            if info.node_port:
                node_ports[info.node_port] = ips
        gone = {k: frozenset[str]() for k in self.udp if k not in frontends}
        gone_ports = {k: frozenset[str]() for k in self.udp_node_ports if k not in node_ports}
        changed = (frontends != self.udp or node_ports != self.udp_node_ports)
        self.udp, self.udp_node_ports = frontends, node_ports
        if not changed:
            return
        # A service port without endpoints needs no cleanup (kube-proxy): keep those out.
        serving = {k: v for k, v in frontends.items() if v} | gone
        serving_ports = {k: v for k, v in node_ports.items() if v} | gone_ports
        if not serving and not serving_ports:
            return
        listed = self.run_cmd(["conntrack", "-L", "-p", "udp"])
        deletes: list[list[str]] = []
        for orig_dst, orig_dport, reply_src in parse_conntrack(listed.stdout):
            eps = serving.get((orig_dst, orig_dport))
            if eps is not None and reply_src not in eps:
                deletes.append(["--orig-dst", orig_dst, "--orig-port-dst", str(orig_dport),
                                "--reply-src", reply_src])
            eps = serving_ports.get(orig_dport)
            if eps is not None and reply_src not in eps:
                deletes.append(["--orig-port-dst", str(orig_dport), "--reply-src", reply_src])
        for match in dict.fromkeys(tuple(d) for d in deletes):
            # Exit status 1 means "0 flow entries deleted": nothing to do.
            self.run_cmd(["conntrack", "-D", "-p", "udp", *match])


def parse_conntrack(text: str) -> list[tuple[str, int, str]]:
    """(original destination, original destination port, reply source) per entry of
    `conntrack -L` that has all three."""
    return [(e.orig[2], e.orig[3], e.reply[0]) for e in conntrack.parse(text.splitlines())
            if e.orig[2] and e.orig[3] is not None and e.reply[0]]


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
