"""Where a rendered lab lives on the host (the directory compose mounts into nodes).

On the path of `kgen exec`: imports neither `typing` nor `dataclasses` (each
costs more CPU at start-up than the rest of that path; see benchmarks/bench_exec.py).
"""

from __future__ import annotations

import json
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from generator.node.contract import Cluster


class LabPaths:
    """Where a rendered lab lives."""

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"LabPaths(root={self.root!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabPaths) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @property
    def compose_file(self) -> Path:
        return self.root / "docker-compose.yml"

    @property
    def cluster_file(self) -> Path:
        return self.root / "config" / "cluster.json"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def cluster(self) -> Cluster | None:
        """cluster.json as rendered, or None (not rendered, or unreadable)."""
        try:
            doc: Cluster | None = json.loads(self.cluster_file.read_text())  # written by kgen render
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None
