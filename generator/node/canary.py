"""The iptables canary monitor that kube-proxy and kubelet share (pkg/util/iptables
Monitor): each keeps an empty chain in mangle, nat and filter; a firewall reload that
flushes the tables deletes them.

Only the first table's canary is polled (mangle, the emptiest: reading it costs the
least), once per period. Once it is gone, the others are given up to FLUSH_TIMEOUT
to go too (a reload flushes the tables one after another), so that the owner does
not write its rules back into a table about to be flushed; then the owner reloads.
A flush of nat or filter alone leaves the mangle canary, and goes unnoticed, as in
Kubernetes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

TABLES = ("mangle", "nat", "filter")
FLUSH_POLL = 0.1  # kube-proxy's iptablesFlushPollTime
FLUSH_TIMEOUT = 5.0  # its iptablesFlushTimeout


def flushed(exists: Callable[[str], bool], tables: Sequence[str] = TABLES,
            sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.monotonic) -> bool:
    """True when the canary of `tables[0]` is gone (after waiting, at most FLUSH_TIMEOUT,
    for the other tables' canaries to go too); `exists(table)` looks one up."""
    if exists(tables[0]):
        return False
    deadline = clock() + FLUSH_TIMEOUT
    while any(exists(t) for t in tables[1:]) and clock() < deadline:
        sleep(FLUSH_POLL)
    return True
