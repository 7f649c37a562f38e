"""The documents that cross between host and node, and the ones kgen hands out, keep
the shape of their types in generator/node/documents.py.

Each side is exercised for real: the host's plan builder on recorded traces, the
node's report and frame builders, the recorded reports of real node helpers, the
join's --json, and the status report of a rendered lab with published node
states. A key renamed on one side and not in the type fails here (mypy strict
catches the reads; these catch what is built and what was really sent).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from generator.lab.model import load_lab
from generator.node import contract, trace_sniff
from generator.node.documents import (
    Frame,
    StatusReport,
    TracePlan,
    TraceProbeResult,
    TraceReport,
    TraceResult,
    trace_report,
)
from generator.runtime import status
from generator.trace.join import join
from generator.trace.plan import make_plan, member_plans
from tests.conftest import ROOT
from tests.unit.conftest import desired
from tests.unit.typed import keys_of, problems, required_keys

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "trace").glob("*.json"))
TRACE_FILES = sorted((ROOT / "docs" / "traces").glob("*.json")) + sorted(
    (ROOT / "tests" / "golden" / "traces").glob("real-*.json"))
TRACE_FILES = [p for p in TRACE_FILES if p.stem != "real-cluster"]  # that one is their cluster.json


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_the_checker_catches_a_renamed_a_missing_and_a_mistyped_key() -> None:
    good = trace_report("node-0", None)
    assert problems(good, TraceReport) == []
    renamed = {("nat_chains" if k == "natChains" else k): v for k, v in good.items()}
    assert problems(renamed, TraceReport) == ["$.natChains: missing",
                                              "$.nat_chains: not in TraceReport"]
    assert problems({**good, "lines": "one"}, TraceReport) == ["$.lines: not a list"]
    plan: dict[str, Any] = {"id": "x", "mode": "iptables", "member": "n", "node": True,
                            "proto": "tcp", "deadline": 1, "capture": None, "probe": None,
                            "matches": [{"proto": "tcp", "sport": "22000"}]}
    assert problems(plan, TracePlan) == ["$.matches[0].sport: '22000' is not int"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_the_host_builds_trace_plans(fixture: Path) -> None:
    d = load(fixture)
    a = d["args"]
    plan = make_plan(d["cluster"], d["pods"], a["src"], a["dst"], a["port"], a["protocol"],
                     sport=a["sport"])
    plans = member_plans(d["cluster"], plan)
    assert plans
    for container, doc in plans.items():
        assert problems(json.loads(json.dumps(doc)), TracePlan) == [], container


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_real_helpers_sent_trace_reports_and_probe_results(fixture: Path) -> None:
    d = load(fixture)
    assert problems(d["probe"], TraceProbeResult) == []
    for member, report in d["reports"].items():
        assert problems(report, TraceReport) == [], member


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_the_join_gives_trace_results(fixture: Path) -> None:
    d = load(fixture)
    a = d["args"]
    plan = make_plan(d["cluster"], d["pods"], a["src"], a["dst"], a["port"], a["protocol"],
                     sport=a["sport"])
    doc = json.loads(json.dumps(join(plan, d["cluster"], d["reports"], d["probe"]).as_json()))
    assert problems(doc, TraceResult) == []
    assert set(doc) == keys_of(TraceResult)


@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: p.stem)
def test_the_traces_kgen_graph_draws_are_trace_results(path: Path) -> None:
    assert problems(load(path), TraceResult) == []


def test_the_node_builds_every_key_of_its_report_and_frames() -> None:
    assert set(trace_report("node-0", "interrupted")) == keys_of(TraceReport)
    payload = struct.pack("!HH", 21001, 8080) + b"\0" * 16
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 7, 0, 64, 6, 0,
                     socket.inet_aton("10.244.0.2"), socket.inet_aton("10.244.1.2"))
    frame = trace_sniff.parse_frame(b"\x02" * 12 + b"\x08\x00" + ip + payload, 4789, 6, True, 1.5)
    assert frame is not None and problems(frame, Frame) == []
    assert set(frame) == keys_of(Frame) - {"icmp_type", "icmp_id"}
    assert required_keys(Frame) == keys_of(Frame) - {"icmp_type", "icmp_id", "t"}


def test_status_reports_of_a_rendered_lab(tmp_path: Path) -> None:
    cluster = desired(load_lab(ROOT / "labs" / "demo.yaml"))
    state = tmp_path / "state"
    state.mkdir()
    first = cluster["nodes"][0]["name"]
    pods = {p["name"]: {"ip": p.get("ip"), "state": "Running", "restarts": 1}
            for p in cluster["pods"] if p["node"] == first}
    contract.write_json_atomic(state / f"{first}.json", {
        "node": first, "generation": cluster["generation"], "ready": True, "pods": pods,
        "proxy": {"digest": "", "error": None}, "error": None})
    contract.renew_heartbeat(state, first)
    running = {n["container"]: "running" for n in cluster["nodes"]}
    doc: StatusReport = status.report(cluster, state, running, time.time())
    assert problems(json.loads(json.dumps(doc)), StatusReport) == []
    assert {n["name"]: n["state"] for n in doc["nodes"]}[first] == "Ready"
    assert {p["name"]: p["restarts"] for p in doc["pods"] if p["name"] in pods} == dict.fromkeys(pods, 1)
    assert problems(status.empty("x"), StatusReport) == []


# Being rewritten with the probe documents (issue 19): held to strict by that work.
NOT_YET_STRICT = {"generator.checks.runner", "generator.checks.probes"}


def test_every_module_that_builds_or_reads_the_documents_is_strictly_typed() -> None:
    import ast
    import fnmatch
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    strict = [m for o in config["tool"]["mypy"]["overrides"] if o.get("disallow_untyped_defs")
              for m in o["module"]]
    assert {"generator.node.contract", "generator.node.documents"} <= set(strict)
    readers = set()
    for path in sorted((ROOT / "generator").rglob("*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.ImportFrom) and n.module == "generator.node.documents"
               for n in ast.walk(tree)):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            readers.add(module)
    assert readers, "nothing reads the documents?"
    loose = {m for m in readers - NOT_YET_STRICT
             if not any(fnmatch.fnmatch(m, pattern) for pattern in strict)}
    assert loose == set(), "add these to [[tool.mypy.overrides]] in pyproject.toml"


def test_the_reference_documents_every_command_and_every_json_key() -> None:
    import re

    from typer.main import get_command

    from generator.cli import app
    from generator.node.documents import NodeRow, PodRow, ServiceRow, TraceDns, TraceHop, TraceTried

    text = (ROOT / "docs" / "reference.md").read_text()
    headings = re.findall(r"^### `kgen ([a-z]+)", text, re.M)
    headings += re.findall(r"^### .*`kgen ([a-z]+)[^`]*`$", text, re.M)  # "`kgen image build`, `kgen schema`"
    commands = set(get_command(app).commands)
    assert commands - set(headings) == set(), "commands docs/reference.md does not describe"
    for tp in (StatusReport, NodeRow, PodRow, ServiceRow, TraceResult, TraceHop, TraceDns,
               TraceTried):
        missing = {k for k in keys_of(tp) if f'"{k}"' not in text}
        assert missing == set(), f"{tp.__name__} keys docs/reference.md does not show"
