"""host-gw's host rule: an iptables that never answers ends in one line, not a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from generator.runtime import hostgw
from generator.runtime.errors import RuntimeFailure


@pytest.fixture
def stuck_iptables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `iptables` first on PATH that waits as one stuck on the xtables lock does."""
    fake = tmp_path / "iptables"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(hostgw, "host_iptables", lambda: ["iptables", "-w"])
    monkeypatch.setattr(hostgw, "IPTABLES_TIMEOUT", 0.5)
    return fake


def test_removing_the_rule_gives_up_with_one_line(stuck_iptables: Path) -> None:
    with pytest.raises(RuntimeFailure) as raised:
        hostgw.remove_host_gw("lab")
    message = str(raised.value)
    assert "\n" not in message
    assert "gave no answer within 0.5 s" in message


def test_no_iptables_means_no_rule_to_remove(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostgw, "host_iptables", lambda: ["/nonexistent/iptables"])
    assert hostgw.remove_host_gw("lab") is None
