"""Which peers are live: heard from, by their heartbeat files, within the grace period.

A peer's heartbeat is looked at again only when the grace period since its last
renewal runs out (about once per grace period per peer), and a peer that is not live
once a second. The peers wait in a heap ordered by that moment: the heartbeat thread,
at each beat, looks at the few whose moment comes before its next beat (`horizon`),
the main loop at those due now. Before, a Python loop over every peer ran each second
(99 of them at 100 nodes, each with pathlib joins): a third of an idle agent's CPU.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from generator.node.contract import HEARTBEAT_DIR, file_age, is_live

log = logging.getLogger("kgen.agent")

NOT_LIVE_RECHECK = 1.0  # a peer that is not live is looked at again once a second


class PeerLiveness:
    """The live peers. The heartbeat thread looks (`update`); the main loop reads `live`
    and `take_change`; the node list changes from the main loop (`set_peers`)."""

    def __init__(self, state_dir: Path) -> None:
        self.heartbeats = str(state_dir / HEARTBEAT_DIR)
        self.lock = threading.Lock()
        self.seen: set[str] = set()  # live at their last look
        self.live: frozenset[str] = frozenset()  # as last reported (replaced, never changed)
        self.changed = False  # since the main loop last asked
        self.paths: dict[str, str] = {}  # each peer's heartbeat file
        self.next: dict[str, float] = {}  # when each peer is looked at again
        self.due: list[tuple[float, str]] = []  # the same, as a heap (with stale entries)

    def set_peers(self, peers: Iterable[str]) -> None:
        """A new list of peers: each new one is looked at on the next `update`."""
        wanted = set(peers)
        with self.lock:
            if wanted == self.paths.keys():
                return
            self.paths = {name: f"{self.heartbeats}/{name}" for name in sorted(wanted)}
            self.next = {name: self.next.get(name, 0.0) for name in self.paths}
            self.due = [(when, name) for name, when in self.next.items()]
            heapq.heapify(self.due)
            self.seen &= wanted
            if self.seen != self.live:  # a node left the lab: no warning, it is not NotReady
                self.live, self.changed = frozenset(self.seen), True

    def look_now(self, name: str) -> None:
        """Look at this peer on the next `update` (it just wrote: it is likely live)."""
        with self.lock:
            if self.next.get(name, 0.0) > 0.0:
                self.next[name] = 0.0
                heapq.heappush(self.due, (0.0, name))

    def take_change(self) -> bool:
        """Did `live` change since the last call?"""
        with self.lock:
            changed, self.changed = self.changed, False
            return changed

    def update(self, grace: float, now: float, horizon: float = 0.0) -> bool:
        """Look at the peers whose grace runs out within `horizon` seconds (the caller
        looks again by then); True when the live set changed."""
        with self.lock:
            looked: list[str] = []
            while self.due and self.due[0][0] <= now + horizon:
                when, name = heapq.heappop(self.due)
                if self.next.get(name) == when:  # else stale: the peer left, or was pushed again
                    looked.append(name)
                    self.next[name] = self._look(name, grace, now)
            for name in looked:
                heapq.heappush(self.due, (self.next[name], name))
            if len(self.due) > 2 * len(self.next) + 16:  # stale entries pile up
                self.due = [(when, name) for name, when in self.next.items()]
                heapq.heapify(self.due)
            return self._report(grace)

    def _look(self, name: str, grace: float, now: float) -> float:
        """Note whether `name` is live; when to look at it again."""
        age = file_age(self.paths[name], now)  # a path made once: no pathlib per look
        if is_live(age, grace):
            assert age is not None
            self.seen.add(name)
            return max(now - age + grace, now + 1e-3)  # never again within this update
        self.seen.discard(name)
        return now + min(NOT_LIVE_RECHECK, grace / 4)

    def _report(self, grace: float) -> bool:
        if self.seen == self.live:
            return False
        for name in sorted(self.live - self.seen):
            log.warning("node %s not heard from for %.0fs: NotReady, its endpoints go", name, grace)
        for name in sorted(self.seen - self.live):
            log.info("node %s is live", name)
        self.live, self.changed = frozenset(self.seen), True
        return True
