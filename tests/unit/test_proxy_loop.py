"""The sync loop: kube-proxy's BoundedFrequencyRunner (burst 2, then one sync per
min sync period) and the parsing of conntrack's listing."""

from __future__ import annotations

import threading
import time

from generator.node.proxy.loop import BaseProxier, parse_conntrack
from tests.unit.proxy_fixture import PODS, SERVICES


class Counting(BaseProxier):
    def __init__(self, min_sync_period: float) -> None:
        super().__init__("n", "192.168.0.2", "10.0.0.0/8", runner=lambda *a, **k: None,  # type: ignore[arg-type,return-value]
                         min_sync_period=min_sync_period, sync_period=30.0)
        self.at: list[float] = []

    def sync_once(self, full: bool = False) -> bool:
        self.at.append(time.monotonic())
        return True


def test_two_syncs_at_once_then_one_per_min_sync_period() -> None:
    p = Counting(min_sync_period=0.3)
    stop = threading.Event()
    thread = threading.Thread(target=p.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for i in range(12):  # a change every 0.05 s for 0.6 s
            p.update(SERVICES, PODS[: 1 + i % 6])
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while p.changed.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(3)
    # A bucket of two tokens, refilled one per 0.3 s from the first sync on: sync k (from 0)
    # comes at least (k - 1) x 0.3 s after the first (a slow machine only delays them).
    since = [t - p.at[0] for t in p.at]
    assert all(since[k] >= (k - 1) * 0.3 * 0.95 for k in range(2, len(since))), since
    assert 2 <= len(p.at) < 12, "changes were batched"


def test_conntrack_listing_gives_original_destination_and_reply_source() -> None:
    text = ("udp      17 29 src=10.0.0.2 dst=10.96.0.10 sport=40000 dport=53 "
            "src=10.244.1.2 dst=10.0.0.2 sport=5353 dport=40000 mark=0 use=1\n"
            "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n")
    assert parse_conntrack(text) == [("10.96.0.10", 53, "10.244.1.2")]
