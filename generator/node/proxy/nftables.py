"""kube-proxy's nftables mode (pkg/proxy/nftables): the sync loop (the rules: nft_rules.py).

Each sync is an `nft -f` transaction: a full one rebuilds the table's fixed parts
and every map, a partial one only what changed (map elements are diffed, as
kube-proxy's nftElementStorage does).

Scale: a transaction that creates many `numgen ... vmap {...}` rules (each one an
anonymous map the kernel binds by walking the transaction) costs the square of
its size, so service and endpoint chains go in transactions of at most `STAGE`
service ports before the transaction that points the maps at them.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

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
from generator.node.proxy.nft_rules import (
    AFFINITY_SET_PREFIX,
    MARK_MASQ_CHAIN,
    TABLE,
    TABLE_LINE,
    NftPort,
    chain_lines,
    element_lines,
    is_service_chain,
    service_port_rules,
    setup_lines,
)
from generator.node.proxy.service import PortInfo

log = logging.getLogger("kgen.proxy")

STAGE = 1000  # service ports per staged transaction (see the benchmark)


@dataclass
class TableContents:
    """The service chains, affinity sets and map elements a sync leaves in the table."""

    chains: set[str]
    sets: set[str]
    stale: set[str]  # service chains to flush now (deleted a second later)
    dropped_sets: set[str]
    elements: dict[tuple[str, str], tuple[str, str]]
    owners: dict[tuple[str, str], int]  # element: how many ports want it
    element_diff: list[str]  # the transaction lines from the old elements to these


class NFTablesProxier(BaseProxier[NftPort]):
    mode = "nftables"

    def __init__(self, node_name: str, node_ip: str, cluster_cidr: str,
                 service_cidr: str | None = None, nft: tuple[str, ...] = ("nft",),
                 runner: Runner = run_command, min_sync_period: float = MIN_SYNC_PERIOD,
                 sync_period: float = SYNC_PERIOD, stage: int = STAGE) -> None:
        super().__init__(node_name, node_ip, cluster_cidr, runner, min_sync_period, sync_period)
        self.service_cidr = service_cidr
        self.nft_cmd = nft
        self.stage = stage
        self.elements: dict[tuple[str, str], tuple[str, str]] = {}
        self.owners: dict[tuple[str, str], int] = {}  # element: how many ports want it
        self.chains: set[str] = set()  # service and endpoint chains wanted in the table
        self.sets: set[str] = set()  # affinity sets in the table
        self.stale: dict[str, float] = {}  # flushed chains to delete a second later
        self.flushed = False
        self.last_sync_at = time.monotonic()

    def periodic(self, now: float) -> bool:
        """kube-proxy's nftables mode syncs at least hourly (a partial sync: no canary)."""
        return now - self.last_sync_at >= FULL_SYNC_PERIOD

    def periodic_in(self, now: float) -> float:
        return self.last_sync_at + FULL_SYNC_PERIOD - now

    def nft(self, text: str) -> tuple[bool, str]:
        result = self.timed_run([*self.nft_cmd, "-f", "-"], input=text)
        return result.returncode == 0, result.stderr.strip()

    def nft_or_fail(self, text: str) -> None:
        ok, err = self.nft(text)
        if not ok:
            raise SyncFailed(f"nft: {err}")

    # ---- one sync: the mode's hooks of the shared skeleton (loop.BaseProxier.sync_once)

    def build(self, info: PortInfo) -> NftPort:
        return service_port_rules(info, self.node, self.cluster_cidr, self.zone, self.node_ip)

    def before_sync(self, started: float, infos: list[PortInfo]) -> None:
        self.last_sync_at = started
        # Chains flushed at least a second ago are no longer referenced: delete them
        # (kernels before 6.2 notice a deleted map element's chain reference late).
        old = [c for c, at in self.stale.items() if started - at >= 1.0]
        if old:
            ok, err = self.nft("".join(f"delete chain {TABLE} {c}\n" for c in old))
            for chain in old:
                del self.stale[chain]
            if not ok:
                log.warning("deleting stale chains: %s (retried later)", err)
                self.stale.update(dict.fromkeys(old, started))

    def write(self, plan: SyncPlan[NftPort]) -> Written:
        contents = self.full_contents(plan) if plan.full else self.partial_contents(plan)
        if not self.flushed:
            # What an earlier run left (kube-proxy lists the chains on every sync; kgen
            # knows what it wrote and lists once, at its first sync: a listing of
            # 60,000 chains costs seconds).
            listed = self.list_table()
            if listed is not None:
                contents.stale |= listed[0] - contents.chains
                contents.dropped_sets |= listed[1] - contents.sets
        contents.stale -= self.stale.keys()  # flushed already, deleted soon
        to_write = plan.rewritten
        staged, final = ([], to_write) if len(to_write) <= self.stage else (to_write, [])
        for batch in chunks(staged, self.stage):
            # The table and the chain every endpoint chain jumps to may not exist yet.
            head = [TABLE_LINE, f"add chain {TABLE} {MARK_MASQ_CHAIN}"]
            self.nft_or_fail("\n".join([*head, *chain_lines(batch)]) + "\n")
        lines = []
        if plan.full:
            lines += setup_lines(self.node_ip, self.service_cidr, not self.flushed)
        lines += chain_lines(final)
        lines += contents.element_diff
        lines += [f"flush chain {TABLE} {c}" for c in sorted(contents.stale)]
        lines += [f"delete set {TABLE} {s}" for s in sorted(contents.dropped_sets)]
        if lines:
            self.nft_or_fail("\n".join(lines) + "\n")
        now = time.monotonic()
        for chain in contents.stale:
            self.stale.setdefault(chain, now)
        self.flushed = self.flushed or plan.full
        self.elements, self.owners = contents.elements, contents.owners
        self.chains, self.sets = contents.chains, contents.sets
        return Written(len(staged), len(contents.stale))

    def full_contents(self, plan: SyncPlan[NftPort]) -> TableContents:
        """Everything the table holds after a full sync, from the plan alone."""
        ports = plan.ports
        chains = {name for p in ports for name in p.chains}
        sets = {name for p in ports for name in p.sets}
        owners: dict[tuple[str, str], int] = {}
        for p in ports:
            for key in p.elements:
                owners[key] = owners.get(key, 0) + 1
        elements = {k: v for p in ports for k, v in p.elements.items()}
        return TableContents(chains, sets, self.chains - chains, self.sets - sets,
                             elements, owners, element_lines({}, elements))

    def partial_contents(self, plan: SyncPlan[NftPort]) -> TableContents:
        """Only what changed and removed ports owned can have changed."""
        old_ports, changed = plan.replaced, plan.changed
        new_chains = {name for p in changed for name in p.chains}
        stale = {name for p in old_ports for name in p.chains} - new_chains
        new_sets = {name for p in changed for name in p.sets}
        dropped_sets = {name for p in old_ports for name in p.sets} - new_sets
        owners = dict(self.owners)
        elements = dict(self.elements)
        for p in old_ports:
            for key in p.elements:
                owners[key] -= 1
        provided = {}
        for p in changed:
            for key, value in p.elements.items():
                owners[key] = owners.get(key, 0) + 1
                provided[key] = value
        affected = {key for p in old_ports for key in p.elements} | provided.keys()
        before = {k: self.elements[k] for k in affected if k in self.elements}
        for key in affected:
            if owners.get(key, 0) <= 0:
                owners.pop(key, None)
                elements.pop(key, None)
            elif key in provided:
                elements[key] = provided[key]
        diff = element_lines(before, {k: elements[k] for k in affected if k in elements})
        return TableContents((self.chains - stale) | new_chains,
                             (self.sets - dropped_sets) | new_sets, stale, dropped_sets,
                             elements, owners, diff)

    def list_table(self) -> tuple[set[str], set[str]] | None:
        """The service chains and affinity sets now in the table (None: no table yet).
        (`list chains` and `list sets` print no rules and no elements, unlike `list table`.)"""
        chains = self.run_cmd([*self.nft_cmd, "list", "chains", "ip"])
        sets = self.run_cmd([*self.nft_cmd, "-t", "list", "sets", "ip"])
        if chains.returncode != 0 or sets.returncode != 0:
            return None
        ours = chains.stdout.partition(f"table {TABLE} {{")[2].partition("\n}")[0]
        names = set(re.findall(r"^\s*chain (\S+) \{", ours, re.M))
        ours = sets.stdout.partition(f"table {TABLE} {{")[2].partition("\n}")[0]
        return ({c for c in names if is_service_chain(c)},
                set(re.findall(rf"^\s*set ({AFFINITY_SET_PREFIX}\S+) {{", ours, re.M)))
