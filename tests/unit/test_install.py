"""scripts/install.sh detects the Docker *engine* and compose, not the CLI.

Each case puts stub commands on an otherwise empty PATH and asks the script
for its plan (KGEN_INSTALL_PLAN=1): which packages it would install and
whether it would start dockerd. Nothing is installed or started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

TOOLS = ["debootstrap", "iptables", "nft", "conntrack", "tcpdump", "ping", "dig", "dot", "tshark",
         "chromium"]


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _docker_stub(engine: bool, compose_v2: bool) -> str:
    return (f'case "$1" in info) exit {0 if engine else 1};; '
            f'compose) exit {0 if compose_v2 else 1};; esac; exit 0')


def plan(tmp_path: Path, stubs: dict[str, str], cni: bool = False,
         font: bool | None = None) -> dict[str, str]:
    """The plan; `cni` and `font` (default: as `cni`) say whether those files exist."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("dirname", "id"):
        os.symlink(shutil.which(name) or f"/usr/bin/{name}", bin_dir / name)
    os.symlink(sys.executable, bin_dir / "python3")  # has ensurepip and venv
    for name, body in stubs.items():
        _stub(bin_dir, name, body)
    cni_bridge = tmp_path / "cni-bridge"
    if cni:
        _stub(tmp_path, "cni-bridge", "exit 0")
    graph_font = tmp_path / "DejaVuSans.ttf"
    if cni if font is None else font:
        graph_font.write_bytes(b"")
    env = {"PATH": str(bin_dir), "KGEN_INSTALL_PLAN": "1", "KGEN_CNI_BRIDGE": str(cni_bridge),
           "KGEN_GRAPH_FONT": str(graph_font)}
    result = subprocess.run(["/bin/sh", str(ROOT / "scripts" / "install.sh")], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    return {key: value.strip() for key, value in lines.items()}


@pytest.fixture
def tools() -> dict[str, str]:
    return {name: "exit 0" for name in TOOLS}


def test_bare_machine_gets_engine_compose_and_tools(tmp_path: Path) -> None:
    got = plan(tmp_path, {})
    assert got["install"].split() == ["docker.io", "docker-compose", "debootstrap", "iptables",
                                      "nftables", "conntrack", "tcpdump", "iputils-ping",
                                      "dnsutils", "graphviz", "fonts-dejavu-core",
                                      "containernetworking-plugins"]
    assert got["optional"].split() == ["tshark", "chromium"]
    assert got["dockerd"] == "start"


def test_docker_cli_without_engine_still_gets_the_engine(tmp_path: Path,
                                                         tools: dict[str, str]) -> None:
    got = plan(tmp_path, {**tools, "docker": _docker_stub(engine=False, compose_v2=False)},
               cni=True)
    assert got["install"].split() == ["docker.io", "docker-compose"]
    assert got["dockerd"] == "start"


def test_docker_ce_stopped_is_started_not_reinstalled(tmp_path: Path,
                                                      tools: dict[str, str]) -> None:
    stubs = {**tools, "docker": _docker_stub(engine=False, compose_v2=True), "dockerd": "exit 0"}
    got = plan(tmp_path, stubs, cni=True)
    assert got["install"] == ""
    assert got["dockerd"] == "start"


def test_github_runner_engine_answering_needs_nothing(tmp_path: Path,
                                                      tools: dict[str, str]) -> None:
    got = plan(tmp_path, {**tools, "docker": _docker_stub(engine=True, compose_v2=True)}, cni=True)
    assert got == {"install": "", "optional": "", "dockerd": "running"}


def test_compose_v1_alone_counts_as_compose(tmp_path: Path, tools: dict[str, str]) -> None:
    stubs = {**tools, "docker": _docker_stub(engine=True, compose_v2=False),
             "docker-compose": "exit 0"}
    got = plan(tmp_path, stubs, cni=True)
    assert got == {"install": "", "optional": "", "dockerd": "running"}


def test_graph_tools_and_font_are_installed_only_when_missing(tmp_path: Path,
                                                              tools: dict[str, str]) -> None:
    engine = _docker_stub(engine=True, compose_v2=True)
    without = {k: v for k, v in tools.items() if k not in ("dot", "chromium")}
    got = plan(tmp_path, {**without, "docker": engine}, cni=True, font=False)
    assert got["install"].split() == ["graphviz", "fonts-dejavu-core"]
    assert got["optional"].split() == ["chromium"]
