"""Where a rendered lab lives on the host (the directory compose mounts into nodes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.node.contract import read_json


@dataclass
class LabPaths:
    """Where a rendered lab lives."""

    root: Path

    @property
    def compose_file(self) -> Path:
        return self.root / "docker-compose.yml"

    @property
    def cluster_file(self) -> Path:
        return self.root / "config" / "cluster.json"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def cluster(self) -> dict[str, Any] | None:
        doc = read_json(self.cluster_file)
        return doc if isinstance(doc, dict) else None
