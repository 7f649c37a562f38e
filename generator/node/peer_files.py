"""The peers' published state files, re-read only when they changed.

An agent replaces its file by rename, which changes the directory's mtime: one
stat of the directory says whether any file needs a look at all. But the kernel
stamps times from a coarse clock (a tick of a few ms), so a second rename in the
same tick leaves the mtime as it was; a scan that saw the first rename and missed
the second would then trust the directory forever (found at 100 nodes: one proxy
stayed a sync behind). A stamp that recent is not trusted, as git does with its
"racy" index entries: the next look scans again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from generator.node.contract import NodeState, file_stamp, read_json

# A directory stamp younger than this, when it was taken, is not trusted.
RACY_NS = 100_000_000

Stamp = tuple[int, int, int] | None


class PeerFiles:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dir_stamp: Stamp = None
        self.docs: dict[str, NodeState] = {}
        self.stamps: dict[str, Stamp] = {}

    def watch(self, peers: list[str], force: bool = False) -> tuple[bool, list[str]]:
        """(did any peer's pods change, the peers whose pods did)."""
        seen_ns = time.time_ns()
        stamp = file_stamp(self.state_dir)
        if stamp == self.dir_stamp and not force:
            return False, []
        self.dir_stamp = stamp if stamp is not None and stamp[1] < seen_ns - RACY_NS else None
        changed, wrote = False, []
        for name in peers:
            path = self.state_dir / f"{name}.json"
            peer_stamp = file_stamp(path)
            if peer_stamp == self.stamps.get(name, ()):
                continue
            self.stamps[name] = peer_stamp
            doc = read_json(path)
            if not isinstance(doc, dict):
                changed |= self.docs.pop(name, None) is not None
            elif _pods_of(doc) != _pods_of(self.docs.get(name)):
                self.docs[name] = doc  # type: ignore[assignment]
                changed = True
                wrote.append(name)
            else:
                self.docs[name] = doc  # type: ignore[assignment]
        for gone in set(self.docs) - set(peers):
            del self.docs[gone]
            changed = True
        return changed, wrote


def _pods_of(doc: NodeState | dict[str, Any] | None) -> Any:
    return doc.get("pods") if doc is not None else None
