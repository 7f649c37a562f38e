"""Helpers the unit tests share: render a lab without any Docker engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from generator.cluster.build import build_state
from generator.cluster.network import choose_node_network
from generator.lab.model import Lab, load_lab
from generator.render.files import render


def desired(lab: Lab) -> dict[str, Any]:
    """The desired cluster on the lab's own node network, else the pool's first /24."""
    return build_state(lab, choose_node_network(lab, None, []))


def render_lab(lab: Lab | Path, out: Path) -> dict[str, Any]:
    """Render like `kgen render` does, as if no Docker network were taken."""
    model = load_lab(lab) if isinstance(lab, Path) else lab
    return render(model, desired(model), out)


@pytest.fixture(autouse=True)
def _no_recorded_engines(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Unit tests never see the engines this machine's `kgen up` recorded for labs that
    span hosts (runtime/hostcli.py keeps them under XDG_STATE_HOME)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
