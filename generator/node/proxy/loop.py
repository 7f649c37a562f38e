"""What both proxiers share: inputs, status, the sync loop, the sync skeleton and UDP
conntrack cleanup.

The skeleton (`BaseProxier.sync_once`) is kube-proxy's syncProxyRules minus what is
mode-specific: take the input, compute each service port's rules (reusing the cached
ones of ports whose PortInfo did not change), hand the plan to the mode's `write`,
then commit the cache, clean up UDP conntrack entries and record the timing. Each
mode supplies `build` (one port's rules), `write` (put a plan in the kernel) and,
if it needs them, `reusable` and `before_sync`.

The loop is kube-proxy's BoundedFrequencyRunner: a change is synced at once while
a token is left (burst 2), else when the next token comes (one per min sync
period, 1 s), so a storm of changes costs one sync per second. A failed sync is
retried after the sync period (kube-proxy's default 30 s); `periodic` says when a
sync is due without a change (iptables: the hourly full sync and the canary, checked
at the sync period). Idle, the loop sleeps until the next of those is due, as
kube-proxy's runner does, at most IDLE_WAKE (a once-a-second wake-up of every proxy
was a fifth of an idle node's CPU; at 100 nodes each wake-up of a thread costs
about 0.1 ms of CPU).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from generator.node import conntrack, proc
from generator.node.contract import PublishedPod, ServiceSpec, input_digest
from generator.node.proxy.service import PortInfo, PortTracker

log = logging.getLogger("kgen.proxy")

Runner = Callable[..., subprocess.CompletedProcess[str]]

MIN_SYNC_PERIOD = 1.0  # kube-proxy --*-min-sync-period default
BURST_SYNCS = 2  # kube-proxy's burstSyncs
SYNC_PERIOD = 30.0  # kube-proxy --*-sync-period default: canary checks, retries
FULL_SYNC_PERIOD = 3600.0  # kube-proxy's proxyutil.FullSyncPeriod
IDLE_WAKE = 60.0  # longest sleep of an idle loop (a change or `periodic` wakes it sooner)


class PortRulesLike(Protocol):
    """What the skeleton needs of a mode's per-port rules."""

    @property
    def info(self) -> PortInfo: ...

    @property
    def key(self) -> str: ...


P = TypeVar("P", bound=PortRulesLike)


class SyncFailed(Exception):
    """A mode's write failed: the message goes to the proxy status, a full sync follows."""


@dataclass
class SyncPlan(Generic[P]):
    """One sync's work: every port's rules, the ones built anew, the ones gone."""

    full: bool
    ports: list[P]  # every service port, in input order
    changed: list[P]  # built anew this sync (PortInfo differs from the cached one)
    removed: list[P]  # cached ports the input no longer has
    cached: dict[str, P]  # the cache as the last sync left it

    @property
    def rewritten(self) -> list[P]:
        """The ports whose chains this sync writes: all on a full sync."""
        return self.ports if self.full else self.changed

    @property
    def replaced(self) -> list[P]:
        """The cached versions of changed ports, and the removed ports."""
        return [self.cached[p.key] for p in self.changed if p.key in self.cached] + self.removed


@dataclass
class Written:
    """What a mode's write reports for the log line."""

    staged: int = 0
    stale: int = 0


def run_command(cmd: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    return proc.run(cmd, input=input)


class BaseProxier(Generic[P]):
    mode = ""

    def __init__(self, node_name: str, node_ip: str, cluster_cidr: str, runner: Runner,
                 min_sync_period: float, sync_period: float) -> None:
        self.node, self.node_ip, self.cluster_cidr = node_name, node_ip, cluster_cidr
        self.run_cmd = runner
        self.min_sync_period, self.sync_period = min_sync_period, sync_period
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.services: list[ServiceSpec] = []
        self.pods: list[PublishedPod] = []
        self.wanted_zone = ""  # this node's zone as last handed in
        self.zone = ""  # the zone the cached rules were built for
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
        self.cache: dict[str, P] = {}  # each service port's rules as last written
        self.kernel_s = 0.0  # this sync's time in iptables-restore / nft
        # Held while a sync writes the kernel: the node's NetworkPolicy controller writes
        # the same tables (filter, FORWARD) and takes it too, so writes never interleave.
        self.kernel_lock = threading.Lock()
        self.after_sync: list[Callable[[bool], None]] = []  # called with `full` after each sync

    # ---- inputs and status

    def update(self, services: list[ServiceSpec], pods: list[PublishedPod],
               zone: str = "") -> None:
        """Hand in the cluster's services and pods (treated as immutable from here on)
        and this node's zone (topology.kubernetes.io/zone, for trafficDistribution)."""
        with self.lock:
            if services == self.services and pods == self.pods and zone == self.wanted_zone \
                    and self.input:
                return
            self.services, self.pods, self.wanted_zone = services, pods, zone
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
        """One sync: the skeleton both modes share (see the module docstring)."""
        started = time.monotonic()
        self.kernel_s = 0.0
        infos, synced = self.snapshot()
        with self.lock:
            zone = self.wanted_zone
        if zone != self.zone:
            # Topology filtering depends on it: every port's rules are built again.
            self.zone, self.cache, full = zone, {}, True
        full = full or self.need_full
        try:
            with self.kernel_lock:
                self.before_sync(started, infos)
                plan = self.plan(infos, full)
                written = self.write(plan)
        except SyncFailed as err:
            return self.failed(str(err))
        self.commit(plan)
        if full or any(p.info.protocol == "udp" for p in [*plan.changed, *plan.removed]):
            self.cleanup_udp(infos)
        self.synced_ok(synced, started)
        total = time.monotonic() - started
        self.timing = {"total": total, "kernel": self.kernel_s, "python": total - self.kernel_s}
        log.info("%s sync: %d service ports, %d rewritten (%d staged), %d stale, %.1f ms",
                 "full" if full else "partial", len(plan.ports), len(plan.rewritten),
                 written.staged, written.stale, self.last_sync_ms)
        for hook in self.after_sync:
            hook(full)
        return True

    def plan(self, infos: list[PortInfo], full: bool) -> SyncPlan[P]:
        """Each port's rules: the cached ones while its PortInfo is unchanged."""
        cache = self.cache
        ports: list[P] = []
        changed: list[P] = []
        for info in infos:
            cached = cache.get(info.key)
            if cached is not None and (cached.info is info or cached.info == info) \
                    and self.reusable(cached):
                ports.append(cached)
                continue
            rules = self.build(info)
            ports.append(rules)
            changed.append(rules)
        removed = [cache[k] for k in cache.keys() - {p.key for p in ports}]
        return SyncPlan(full, ports, changed, removed, cache)

    def commit(self, plan: SyncPlan[P]) -> None:
        if plan.full:
            self.cache = {p.key: p for p in plan.ports}
            return
        for p in plan.removed:
            del self.cache[p.key]
        self.cache.update((p.key, p) for p in plan.changed)

    def timed_run(self, cmd: list[str], input: str | None = None,
                  ) -> subprocess.CompletedProcess[str]:
        """A command that writes the kernel's rules: its time counts as the sync's kernel time."""
        t = time.monotonic()
        result = self.run_cmd(cmd, input=input)
        self.kernel_s += time.monotonic() - t
        return result

    # ---- the mode's hooks

    def build(self, info: PortInfo) -> P:
        raise NotImplementedError

    def reusable(self, cached: P) -> bool:
        """May a cached port's rules stand although nothing of its PortInfo changed?"""
        return True

    def before_sync(self, started: float, infos: list[PortInfo]) -> None:
        """Work due at the start of every sync (may raise SyncFailed)."""

    def write(self, plan: SyncPlan[P]) -> Written:
        """Put the plan in the kernel; raise SyncFailed when the kernel refuses."""
        raise NotImplementedError

    def periodic(self, now: float) -> bool:
        """True when a sync is due although nothing changed."""
        return False

    def periodic_in(self, now: float) -> float:
        """Seconds until `periodic` may next say True."""
        return IDLE_WAKE

    def idle_wait(self, now: float, retry_at: float | None) -> float:
        wait = min(IDLE_WAKE, self.periodic_in(now))
        if retry_at is not None:
            wait = min(wait, retry_at - now)
        return max(0.0, wait)

    def run(self, stop: threading.Event) -> None:
        tokens, refilled = float(BURST_SYNCS), time.monotonic()
        retry_at: float | None = None
        while not stop.is_set():
            self.changed.wait(self.idle_wait(time.monotonic(), retry_at))
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

    # ---- UDP conntrack cleanup, as kube-proxy's conntrack.CleanStaleEntries does it

    def cleanup_udp(self, infos: Iterable[PortInfo]) -> None:
        """Delete the UDP conntrack entries to a service IP:port or a nodePort whose reply
        source is not a serving endpoint (a gone endpoint, or none when the flow was
        made: REJECTed flows then keep failing), and every entry to the frontends of
        UDP service ports that are gone. A port without serving endpoints keeps none of
        its entries (kubernetes#139629: one-way senders otherwise refresh a flow to
        the dead pod forever; with it gone the next datagram meets the REJECT). UDP
        has no connection to end, so without this a client keeps sending into the void."""
        frontends: dict[tuple[str, int], frozenset[str]] = {}
        node_ports: dict[int, frozenset[str]] = {}
        for info in infos:
            if info.protocol != "udp":
                continue
            ips = frozenset(e.ip for e in info.endpoints if e.serving)
            for ip in (info.cluster_ip, *info.external_ips, *info.lb_ips):
                frontends[(ip, info.port)] = ips
            if info.node_port:
                node_ports[info.node_port] = ips
        gone = {k: frozenset[str]() for k in self.udp if k not in frontends}
        gone_ports = {k: frozenset[str]() for k in self.udp_node_ports if k not in node_ports}
        changed = (frontends != self.udp or node_ports != self.udp_node_ports)
        self.udp, self.udp_node_ports = frontends, node_ports
        if not changed:
            return
        serving, serving_ports = frontends | gone, node_ports | gone_ports
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
