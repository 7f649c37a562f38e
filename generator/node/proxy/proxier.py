"""The sync loop of kube-proxy's iptables mode.

Each sync writes with `iptables-restore --noflush`: the top-level chains whole,
the owned chains (KUBE-SVC/SVL/EXT/SEP) of the service ports whose PortInfo
changed, and the deletion of chains no longer wanted. A full sync (the first, after
a failure, hourly, or when the canary chain is gone) writes every owned chain and
ensures the jump rules from the built-in chains.

Large syncs are staged: the owned chains go first, `STAGE` service ports per
restore, then one restore writes the top-level chains that jump to them. Every
stage replaces whole chains atomically and nothing jumps to a new chain before it
exists, so no service is unreachable at any moment; and each restore stays small,
which avoids iptables-nft-restore's cost of commands x chains under --noflush.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path

from generator.node import canary
from generator.node.proxy.loop import (
    FULL_SYNC_PERIOD,
    MIN_SYNC_PERIOD,
    SYNC_PERIOD,
    BaseProxier,
    Runner,
    SyncFailed,
    SyncPlan,
    Written,
    chunks,
    run_command,
)
from generator.node.proxy.rules import (
    JUMPS,
    KUBELET_JUMPS,
    LARGE_CLUSTER_ENDPOINTS,
    OWNED_PREFIXES,
    PortRules,
    dirty_top_level,
    service_port_rules,
    write_chains,
    write_ruleset,
)
from generator.node.proxy.service import PortInfo

log = logging.getLogger("kgen.proxy")

CANARY = "KUBE-PROXY-CANARY"
CANARY_TABLES = canary.TABLES
STAGE = 500  # service ports per restore in a staged sync (see the benchmark)


ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")


def route_localnet(path: Path = ROUTE_LOCALNET) -> bool:
    """kube-proxy's iptables mode (localhost NodePorts on, its default) sets
    net.ipv4.conf.all.route_localnet=1, so that a packet to 127.0.0.1:<nodePort>
    may be DNATed to a pod and routed out; kubelet's KUBE-FIREWALL keeps the network
    away from the loopback services. The compose file sets it as well (/proc/sys is
    read-only in a container); False when it is not set."""
    try:
        if path.read_text().strip() != "1":
            path.write_text("1")
        return True
    except OSError as err:
        log.warning("cannot set %s=1 (%s): localhost NodePorts will not answer", path, err)
        return False


class Proxier(BaseProxier[PortRules]):
    mode = "iptables"

    def __init__(self, node_name: str, node_ip: str, cluster_cidr: str,
                 iptables_restore: tuple[str, ...] = ("iptables-restore",),
                 iptables: tuple[str, ...] = ("iptables",),
                 iptables_save: tuple[str, ...] = ("iptables-save",),
                 runner: Runner = run_command, min_sync_period: float = MIN_SYNC_PERIOD,
                 sync_period: float = SYNC_PERIOD, stage: int = STAGE,
                 nfacct: bool = False) -> None:
        super().__init__(node_name, node_ip, cluster_cidr, runner, min_sync_period, sync_period)
        self.nfacct = nfacct  # kube-proxy's nfacct counters exist: rules count with them
        self.restore_cmd, self.iptables_cmd, self.save_cmd = iptables_restore, iptables, iptables_save
        self.stage = stage
        self.large = False  # the last sync's rules were written in large-cluster mode
        self.large_next = False  # this sync's
        self.written: set[str] = set()
        self.last_full = 0.0
        self.last_cleanup = 0.0
        self.last_canary = time.monotonic()

    # ---- periodic work

    def periodic(self, now: float) -> bool:
        if now - self.last_full > FULL_SYNC_PERIOD:
            self.need_full = True
            return True
        if now - self.last_canary >= self.sync_period:
            self.last_canary = now
            return not self.canary_present()
        return False

    def periodic_in(self, now: float) -> float:
        return min(self.last_full + FULL_SYNC_PERIOD, self.last_canary + self.sync_period) - now

    def canary_present(self) -> bool:
        """kube-proxy's canary monitor (canary.py): False, and a full resync next, once a
        reload has flushed the tables."""
        if not canary.flushed(self._canary_exists, CANARY_TABLES):
            return True
        if not self.need_full:
            log.warning("canary chain missing in %s: full resync", CANARY_TABLES[0])
        self.need_full = True
        return False

    def _canary_exists(self, table: str) -> bool:
        return self.run_cmd([*self.iptables_cmd, "-w", "-t", table, "-S", CANARY]).returncode == 0

    # ---- one sync: the mode's hooks of the shared skeleton (loop.BaseProxier.sync_once)

    def build(self, info: PortInfo) -> PortRules:
        return service_port_rules(info, self.node, self.cluster_cidr, self.large_next,
                                  self.zone, self.nfacct, self.node_ip)

    def reusable(self, cached: PortRules) -> bool:
        # Crossing the large-cluster threshold changes every endpoint rule's comment.
        return self.large_next == self.large

    def before_sync(self, started: float, infos: list[PortInfo]) -> None:
        self.large_next = sum(len(i.endpoints) for i in infos) > LARGE_CLUSTER_ENDPOINTS

    def write(self, plan: SyncPlan[PortRules]) -> Written:
        full, ports, changed = plan.full, plan.ports, plan.changed
        to_write = plan.rewritten
        if full:
            wanted = {name for p in ports for name in p.chains}
            stale = self.written - wanted
        else:
            # Only the chains of changed and removed ports can have become stale.
            new = {name for p in changed for name in p.chains}
            stale = {name for p in plan.replaced for name in p.chains} - new
            wanted = (self.written - stale) | new
        now = time.monotonic()
        if full and (not self.large_next or now - self.last_cleanup > self.sync_period):
            # Chains left by an earlier run; in large clusters at most once per sync period.
            existing = self.existing_chains()
            if existing is not None:
                stale |= existing - wanted
                self.last_cleanup = now
        staged, final = ([], to_write) if len(to_write) <= self.stage else (to_write, [])
        for batch in chunks(staged, self.stage):
            self.restore(write_chains(batch))
        top = None if full else dirty_top_level(changed, plan.replaced)
        self.restore(write_ruleset(ports, final, stale, top, self.nfacct))
        if full:
            t = time.monotonic()
            self.ensure_jumps_and_canary()
            self.kernel_s += time.monotonic() - t
            self.last_full = time.monotonic()
        self.large, self.written = self.large_next, wanted
        return Written(len(staged), len(stale))

    def restore(self, payload: str) -> None:
        result = self.timed_run([*self.restore_cmd, "-w", "--noflush"], input=payload)
        if result.returncode != 0:
            raise SyncFailed(f"iptables-restore: {result.stderr.strip()}")

    def existing_chains(self) -> set[str] | None:
        result = self.run_cmd([*self.save_cmd, "-t", "nat"])
        if result.returncode != 0:
            log.error("iptables-save: %s: stale chains are not deleted", result.stderr.strip())
            return None
        return {line[1:].split()[0] for line in result.stdout.splitlines()
                if line.startswith(":") and line[1:].startswith(OWNED_PREFIXES)}

    def ensure_jumps_and_canary(self) -> None:
        """kube-proxy's EnsureRule(Prepend) for each jump: insert at the head unless
        present. kubelet's KUBE-FIREWALL jumps are in place before kube-proxy's (the node
        agent plays kubelet); kube-proxy then prepends each of its jumps in list order.
        Each built-in chain is listed once (not one `iptables -C` per jump: with 60,000
        chains in the table every iptables call costs tens of milliseconds)."""
        present: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        for table, chain, rule in [*KUBELET_JUMPS, *JUMPS, *KUBELET_JUMPS]:
            key = (table, chain)
            if key not in present:
                listed = self.run_cmd([*self.iptables_cmd, "-w", "-t", table, "-S", chain]).stdout
                present[key] = {tuple(shlex.split(line)[2:]) for line in listed.splitlines()
                                if line.startswith(f"-A {chain} ")}
            args = shlex.split(rule)
            if tuple(args) not in present[key]:
                self.run_cmd([*self.iptables_cmd, "-w", "-t", table, "-I", chain, "1", *args])
                present[key].add(tuple(args))
        for table in CANARY_TABLES:
            self.run_cmd([*self.iptables_cmd, "-w", "-t", table, "-N", CANARY])
