"""The node's NetworkPolicy controller: the one writer of this node's policy rules.

It runs in a thread of its own, as kube-router's network policy controller runs
beside kube-proxy, and writes when cluster.json's policy input changes (`update`) and
after each kube-proxy sync (`proxy_synced`): kube-proxy prepends its FORWARD jumps
when they are missing, and ours must stay first (see netpol/iptables.jump_commands).
Its writes and kube-proxy's never overlap: both hold the proxier's `kernel_lock`.

- iptables mode: `iptables-restore --noflush` of the chains that changed since the last
  write (what the kernel held is read once with `iptables-save`, after a restart or a
  failure), then the jump from FORWARD, first and once;
- nftables mode: the table `ip kgen-netpol`, replaced whole in one `nft -f` transaction;
- a lab without policies gets none of it (what an earlier write left is removed).

Neither touches conntrack: the pod chains accept ESTABLISHED,RELATED first, so an
allowed connection outlives any change. Writing the same input again changes nothing
(idempotent). `status()` is what the node publishes: the digest of the input in the
kernel (`netpol.spec.netpol_digest`), which the host compares with its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from generator.node import proc
from generator.node.netpol import iptables, nftables
from generator.node.netpol.plan import node_plan
from generator.node.netpol.policy import parse_cluster
from generator.node.netpol.spec import NetpolStatus, netpol_digest, netpol_input

log = logging.getLogger("kgen.netpol")

Runner = Callable[..., proc.Completed]
RETRY_PERIOD = 5.0  # seconds before a failed write is tried again


class WriteFailed(Exception):
    pass


class NetpolSync:
    def __init__(self, node: str, mode: str, kernel_lock: threading.Lock,
                 runner: Runner = proc.run) -> None:
        self.node, self.mode = node, mode
        self.kernel_lock = kernel_lock
        self.run_cmd = runner
        self.wake = threading.Event()
        # (digest, netpol_input) of the cluster last handed in: one attribute, so the loop
        # never reads one cluster's digest with another's input
        self.wanted: tuple[str, dict[str, Any] | None] = ("", None)
        self.digest = ""  # the digest of what the kernel holds
        self.error: str | None = None
        self.jumps_due = True  # FORWARD's jump to be checked (after a kube-proxy sync)
        self.held: dict[str, list[str]] | None = None  # iptables: our chains in the kernel
        self.enforcing = False  # the last write had policies (and so the FORWARD jump)
        self.retry_at = 0.0
        self.last_write_ms = 0.0

    # ---- inputs and status (any thread)

    def update(self, cluster: Mapping[str, Any]) -> None:
        digest = netpol_digest(cluster)
        if digest != self.wanted[0]:
            self.wanted = (digest, netpol_input(cluster))
            self.wake.set()

    def proxy_synced(self, full: bool) -> None:
        """kube-proxy's jumps are (re)inserted at the head of FORWARD on its full syncs."""
        if full and self.mode == "iptables":
            self.jumps_due = True
            self.wake.set()

    def behind(self) -> bool:
        """Is a wanted set of policies not in place yet (its status is about to change)?"""
        return self.wanted[1] is not None and self.wanted[0] != self.digest

    def status(self) -> NetpolStatus:
        return {"digest": self.digest, "error": self.error}

    # ---- the loop (its own thread)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            # Woken by a change (or stop); a timed wake only while a failed write waits
            # for its retry: an idle node's thread costs nothing.
            self.wake.wait(None if self.error is None else
                           max(0.0, self.retry_at - time.monotonic()))
            if stop.is_set():
                return
            now = time.monotonic()
            due = self.wake.is_set() or (self.error is not None and now >= self.retry_at)
            if due:
                self.wake.clear()
                self.sync_once()

    def sync_once(self) -> bool:
        wanted, doc = self.wanted
        if doc is None or (wanted == self.digest and not self.jumps_due and self.error is None):
            return True
        started = time.monotonic()
        rewrite = wanted != self.digest or self.error is not None
        try:
            with self.kernel_lock:
                if rewrite:
                    self.write(doc)
                jumps, self.jumps_due = self.jumps_due or rewrite, False  # a later sync sets it
                if self.mode == "iptables" and self.enforcing and jumps:
                    self.ensure_jump()
        except WriteFailed as err:
            self.error, self.held = str(err)[:300], None  # read the kernel again next time
            self.retry_at = time.monotonic() + RETRY_PERIOD
            log.error("network policies: %s", self.error)
            return False
        self.digest, self.error = wanted, None
        if rewrite:
            self.last_write_ms = (time.monotonic() - started) * 1000
            log.info("network policies %s in place (%.1f ms)", wanted, self.last_write_ms)
        return True

    def write(self, doc: dict[str, Any]) -> None:
        self.enforcing = bool(doc["networkPolicies"])
        if not self.enforcing:
            self.remove()
            return
        plan = node_plan(parse_cluster(doc), self.node)
        if self.mode == "nftables":
            self.check(["nft", "-f", "-"], nftables.render(plan))
            return
        if self.held is None:
            self.held = iptables.held_chains(self.check(["iptables-save", "-t", "filter"]))
        now = iptables.chain_rules(plan)
        self.check(["iptables-restore", "-w", "--noflush"], iptables.restore_input(now, self.held))
        self.held = now

    def remove(self) -> None:
        """A lab without policies has none of our rules: nothing in the path of its packets
        (a `kgen trace` of it shows kube-proxy's rules only). What an earlier sync left goes."""
        if self.mode == "nftables":  # created if missing, then deleted: one transaction
            self.check(["nft", "-f", "-"], f"table {nftables.FAMILY} {nftables.TABLE} {{}}\n"
                                           f"delete table {nftables.FAMILY} {nftables.TABLE}\n")
            return
        if self.held is None:
            self.held = iptables.held_chains(self.check(["iptables-save", "-t", "filter"]))
        ours = [c for c in self.held if c == iptables.TOP or c.startswith(iptables.OWN_PREFIXES)]
        if ours:
            forward = self.check(["iptables", "-w", "-t", "filter", "-S", "FORWARD"])
            for _ in range(forward.splitlines().count(iptables.JUMP_RULE)):
                self.check(["iptables", "-w", "-t", "filter", "-D", *iptables.JUMP])
            self.check(["iptables-restore", "-w", "--noflush"], "\n".join(
                ["*filter", *(f":{c} - [0:0]" for c in ours), *(f"-X {c}" for c in ours),
                 "COMMIT"]) + "\n")
        self.held = {}

    def ensure_jump(self) -> None:
        forward = self.check(["iptables", "-w", "-t", "filter", "-S", "FORWARD"])
        for command in iptables.jump_commands(forward):
            self.check(["iptables", "-w", "-t", "filter", *command])

    def check(self, argv: list[str], stdin: str | None = None) -> str:
        result = self.run_cmd(argv, input=stdin)
        if result.returncode != 0:
            raise WriteFailed(f"{argv[0]}: {(result.stderr or result.stdout).strip()}")
        return str(result.stdout)
