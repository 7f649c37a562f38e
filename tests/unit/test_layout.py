"""The layout's rules, checked: rendering is pure, node code is stdlib-only,
and each stage imports only earlier stages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "generator"
NODE = PACKAGE / "node"
# What each host stage may import from kgen itself (besides its own modules).
ALLOWED = {
    "lab": {"generator.lab", "generator.resources"},
    "cluster": {"generator.lab", "generator.cluster", "generator.node.contract"},
    "render": {"generator.lab", "generator.cluster", "generator.render", "generator.resources",
               "generator.node"},
    # Pure like render: the CLI hands it a cluster, a status report, a trace result.
    "graph": {"generator.graph", "generator.node.contract", "generator.node.documents",
              "generator.node.lb_election"},
    # generator.cluster.targets: what a pod or service name means (imports nothing),
    # shared with exec and capture.
    # generator.netpol and generator.node.netpol: the pure NetworkPolicy evaluator and the
    # nodes' plan, which name a policy chain's policy and a drop the trace did not show.
    "trace": {"generator.trace", "generator.node.contract", "generator.node.documents",
              "generator.node.conntrack", "generator.cluster.targets", "generator.netpol",
              "generator.node.netpol"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_rendering_and_drawing_import_no_docker() -> None:
    code = ("import sys, generator.render.files, generator.render.clab, generator.cluster.build, "
            "generator.graph.dot, generator.graph.mermaid, generator.graph.page; "
            "bad = sorted(m for m in sys.modules if m == 'docker' or m.startswith('docker.')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted(NODE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_node_code_imports_only_the_standard_library(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        if name == "generator" or name.startswith("generator.node"):
            continue
        assert top in sys.stdlib_module_names, f"{path.name} imports {name}"


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_each_stage_imports_only_what_it_may(stage: str) -> None:
    for path in sorted((PACKAGE / stage).rglob("*.py")):
        for name in imported_modules(path):
            if name.startswith("generator"):
                assert any(name == a or name.startswith(a + ".") for a in ALLOWED[stage]), \
                    f"{path.relative_to(ROOT)} imports {name}"
