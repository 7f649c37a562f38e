"""How often a node agent hands its kube-proxy clone new input: kube-proxy's
minSyncPeriod and burstSyncs (its BoundedFrequencyRunner), scaled for large labs."""

from __future__ import annotations

import time

FEED_INTERVAL = 1.0  # kube-proxy's default iptables minSyncPeriod
FEED_BURST = 2  # kube-proxy's burstSyncs: two syncs back to back, then one per minSyncPeriod
# Large clusters raise kube-proxy's minSyncPeriod: every node's proxy re-syncs as pods
# anywhere come and go, so at 1 s a lab coming up costs nodes x seconds of syncs, and
# all of a lab's nodes share the host's few CPUs. One more second per this many nodes
# (one per 25 nodes was too few: at 100 nodes, with a proxy input every 4 s, the
# programs each agent ran while the lab came up (iptables-restore, ip, nft...) took
# 0.9 s of CPU per node), up to MAX_FEED_INTERVAL (a cap of 10 s was too low: at 250
# nodes each proxy re-synced its 500-endpoint service every 10 s for the whole of a
# bring-up that took 1,472 s, 8.7 CPU s per node).
NODES_PER_FEED_SECOND = 10
MAX_FEED_INTERVAL = 30.0


def feed_interval(nodes: int) -> float:
    return min(MAX_FEED_INTERVAL, max(FEED_INTERVAL, nodes / NODES_PER_FEED_SECOND))


class FeedLimiter:
    """kube-proxy's BoundedFrequencyRunner: a bucket of FEED_BURST tokens, one back
    every FEED_INTERVAL. A lab coming up gets its first two inputs (this node's
    pods, then its peers') without waiting a whole period in between."""

    def __init__(self, interval: float = FEED_INTERVAL, burst: int = FEED_BURST) -> None:
        self.interval, self.burst = interval, burst
        self.tokens, self.stamp = float(burst), time.monotonic()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) / self.interval)
        self.stamp = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def ready_in(self, now: float) -> float:
        """Seconds until a token is there."""
        self._refill(now)
        return max(0.0, (1 - self.tokens) * self.interval)
