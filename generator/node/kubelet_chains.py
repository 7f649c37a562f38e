"""kubelet's own iptables chains (pkg/kubelet/kubelet_network_linux.go), which kubelet
creates whatever kube-proxy's mode, before kube-proxy starts:

- KUBE-IPTABLES-HINT in mangle: its presence tells other components that this node
  uses iptables-nft (not iptables-legacy);
- KUBE-FIREWALL in filter, jumped to (prepended) from INPUT and OUTPUT, dropping
  connections to 127.0.0.0/8 from elsewhere (localhost NodePorts with
  route_localnet=1 must not open the node's loopback services to the network);
- KUBE-KUBELET-CANARY in mangle, nat and filter: a firewall reload deletes them, and
  kubelet (looking at mangle's once a minute, canary.py) puts everything back.

In iptables mode kube-proxy writes KUBE-FIREWALL's rule too (its
iptablesKubeletJumpChains), the same rule, so the two never disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from subprocess import CompletedProcess

from generator.node import canary, proc

log = logging.getLogger("kgen.kubelet")

HINT_CHAIN = "KUBE-IPTABLES-HINT"
FIREWALL_CHAIN = "KUBE-FIREWALL"
CANARY_CHAIN = "KUBE-KUBELET-CANARY"
CANARY_TABLES = canary.TABLES
CANARY_PERIOD = 60.0  # kubelet's iptClient.Monitor interval
LOCALNET_RULE = ["-m", "comment", "--comment", "block incoming localnet connections",
                 "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-m", "conntrack",
                 "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"]

Run = Callable[[Sequence[str]], CompletedProcess[str]]


def _iptables(run: Run, table: str, *args: str) -> bool:
    return run(["iptables", "-w", "-t", table, *args]).returncode == 0


def _ensure_chain(run: Run, table: str, chain: str) -> None:
    if not _iptables(run, table, "-S", chain):
        _iptables(run, table, "-N", chain)


def _ensure_rule(run: Run, table: str, chain: str, rule: list[str], prepend: bool) -> None:
    if not _iptables(run, table, "-C", chain, *rule):
        where = ["-I", chain, "1"] if prepend else ["-A", chain]
        _iptables(run, table, *where, *rule)


def sync(run: Run = proc.run) -> None:
    """kubelet's syncIPTablesRules (IPv4), then its canaries."""
    _ensure_chain(run, "mangle", HINT_CHAIN)
    _ensure_chain(run, "filter", FIREWALL_CHAIN)
    _ensure_rule(run, "filter", FIREWALL_CHAIN, LOCALNET_RULE, prepend=False)
    for chain in ("OUTPUT", "INPUT"):
        _ensure_rule(run, "filter", chain, ["-j", FIREWALL_CHAIN], prepend=True)
    for table in CANARY_TABLES:
        _ensure_chain(run, table, CANARY_CHAIN)


def check_and_repair(run: Run = proc.run) -> bool:
    """kubelet's canary monitor (canary.py): True when a reload had flushed the tables
    and everything was put back."""
    if not canary.flushed(lambda table: _iptables(run, table, "-S", CANARY_CHAIN), CANARY_TABLES):
        return False
    log.warning("kubelet canary chain missing: iptables rules put back")
    sync(run)
    return True
