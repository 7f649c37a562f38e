"""`kgen check` without a lab: the pytest session it runs, -k, JUnit, the deadline.

With a deadline already passed nothing is sent (no container is asked), so
these run anywhere; the lab tests run the same code against real labs.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from generator.checks import test_datapath
from generator.checks.base import CommandCheck, ProbeCheck
from generator.checks.kinds import KINDS
from generator.checks.plan import plan
from generator.checks.report import github_summary, markdown
from generator.checks.runner import SelectionError, execute
from generator.cluster.build import build_state
from generator.lab.model import load_lab
from tests.conftest import ROOT

NET = ipaddress.ip_network("172.31.9.0/24")


@pytest.fixture(scope="module")
def demo() -> tuple[dict, dict]:
    cluster = build_state(load_lab(ROOT / "labs" / "demo.yaml"), NET)
    status = {"pods": [{"name": p["name"], "ip": f"10.244.{i}.9"}
                       for i, p in enumerate(cluster["pods"])]}
    return cluster, status


def test_every_kind_has_its_test_function_and_plans_its_own_class(demo: tuple[dict, dict]) -> None:
    for kind in KINDS:
        assert callable(getattr(test_datapath, kind.test_name())), kind.kind
        assert issubclass(kind, ProbeCheck) != issubclass(kind, CommandCheck), kind.kind
    by_kind = {k.kind: k for k in KINDS}
    # The demo has no LoadBalancer or externalIP: labs/loadbalancer.yaml plans those kinds.
    lb = build_state(load_lab(ROOT / "labs" / "loadbalancer.yaml"),
                     ipaddress.ip_network("172.31.200.0/24"))
    # Any policy at all plans the netpol kind (tests/unit/test_check_netpol.py has the rest).
    deny = {"metadata": {"name": "deny", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}}
    checks = plan(demo[0]) + plan(lb) + plan({**demo[0], "networkPolicies": [deny]})
    assert {c.kind for c in checks} == set(by_kind)
    assert all(type(c) is by_kind[c.kind] for c in checks)
    assert "clusterip[web:80 from pod-0]" in {c.id for c in checks}


def test_k_selects_checks_by_test_name_like_pytest(demo: tuple[dict, dict]) -> None:
    rows = execute(*demo, keyword="nodeport[web-nodeport", timeout=0)
    assert [r["id"] for r in rows] == [f"nodeport[web-nodeport:30080 via node-{i}]"
                                       for i in range(3)]
    rows = execute(*demo, keyword="pod_to_pod or hairpin", timeout=0)
    assert {r["kind"] for r in rows} == {"pod-to-pod", "hairpin"}
    rows = execute(*demo, keyword="nodeport and not local", timeout=0)  # substrings, as pytest
    assert {r["id"] for r in rows} >= {f"nodeport[web-nodeport:30080 via node-{i}]"
                                       for i in range(3)}
    assert not any("local" in r["id"] for r in rows)


def test_k_matching_nothing_or_malformed_is_refused(demo: tuple[dict, dict]) -> None:
    with pytest.raises(SelectionError, match="no check matches"):
        execute(*demo, keyword="no-such-check", timeout=0)
    with pytest.raises(SelectionError):
        execute(*demo, keyword="nodeport and (", timeout=0)


def test_checks_past_the_deadline_fail_as_not_run(demo: tuple[dict, dict]) -> None:
    rows = execute(*demo, timeout=0)
    assert [r["id"] for r in rows] == [c.id for c in plan(demo[0])]  # plan order
    assert not any(r["passed"] for r in rows)
    assert all("timeout was reached" in r["seen"] for r in rows)


def test_progress_hears_of_every_check_once(demo: tuple[dict, dict]) -> None:
    heard: list[str] = []
    totals: list[int] = []

    def start(total: int):
        totals.append(total)
        return lambda check, outcome: heard.append(check.id)

    rows = execute(*demo, timeout=0, progress=start)
    assert totals == [len(rows)] and sorted(heard) == sorted(r["id"] for r in rows)


def test_junitxml_has_one_testcase_per_check(demo: tuple[dict, dict], tmp_path: Path) -> None:
    report = tmp_path / "checks.xml"
    rows = execute(*demo, keyword="clusterip or nodeport", timeout=0, junitxml=report)
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "kgen-check"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] != []
    assert sorted(c.get("name") for c in cases) == sorted(r["id"] for r in rows)
    # Every check failed (past the deadline): each testcase says so, with what it saw.
    for case in cases:
        failure = case.find("failure")
        assert failure is not None and "timeout was reached" in (failure.get("message") or "")


def test_github_summary_appends_a_markdown_table(monkeypatch, tmp_path: Path) -> None:
    rows = [{"id": "pod_to_pod[a to b]", "what": "pod to pod", "from": "a", "to": "b",
             "expected": "answers", "seen": "a|b", "passed": True},
            {"id": "clusterip[web:80 from a]", "what": "ClusterIP web", "from": "a",
             "to": "10.96.0.10:80", "expected": "spreads", "seen": "errors: timed out",
             "passed": False}]
    text = markdown("demo", rows, 1.25)
    lines = text.splitlines()
    assert lines[2].startswith("| result | check |") and "FAIL" in lines[4]  # failures first
    assert "a\\|b" in text and "1 passed, 1 failed in 1.2 s" in text
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    github_summary("demo", rows, 1.25)
    assert summary.read_text() == "earlier step\n" + text + "\n"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    github_summary("demo", rows, 1.25)  # not under GitHub Actions: nothing written
    assert summary.read_text() == "earlier step\n" + text + "\n"


def test_the_pytest_plugin_is_inert_without_kgen_lab(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(
        "def test_plain():\n    assert True\n\n"
        "def test_wants_a_lab(kgen_host):\n    kgen_host('pod-0')\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(tmp_path)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout
    assert "1 passed" in result.stdout and "1 error" in result.stdout
    assert "needs a lab: run pytest with --kgen-lab FILE" in result.stdout
    helped = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert "--kgen-lab=FILE" in helped.stdout and "--kgen-keep" in helped.stdout


def test_a_lab_too_big_for_the_hosts_neighbour_table_is_warned_of(tmp_path) -> None:
    from benchmarks.bench_check import scale_lab
    from generator.checks.report import neighbour_warning
    from generator.lab.model import parse_lab

    (tmp_path / "gc_thresh3").write_text("1024\n")
    big = build_state(parse_lab(scale_lab("big", 50)), NET)
    small = build_state(parse_lab(scale_lab("small", 20)), NET)
    assert "gc_thresh3" in (neighbour_warning(big, tmp_path) or "")
    assert neighbour_warning(small, tmp_path) is None
    (tmp_path / "gc_thresh3").write_text("16384\n")
    assert neighbour_warning(big, tmp_path) is None
    assert neighbour_warning(big, tmp_path / "missing") is None


def test_up_raises_the_neighbour_table_to_fit_the_lab_and_never_lowers_it(tmp_path) -> None:
    from benchmarks.bench_check import scale_lab
    from generator.lab.model import parse_lab
    from generator.runtime.neighbours import entries_needed, has_room, make_room

    for name, value in (("gc_thresh1", 128), ("gc_thresh2", 512), ("gc_thresh3", 1024)):
        (tmp_path / name).write_text(f"{value}\n")
    small = build_state(parse_lab(scale_lab("small", 20)), NET)
    big = build_state(parse_lab(scale_lab("big", 50)), NET)
    assert make_room(small, tmp_path) is None
    assert (tmp_path / "gc_thresh3").read_text().strip() == "1024"
    note = make_room(big, tmp_path) or ""
    assert "raised to 4096" in note and str(entries_needed(big)) in note
    assert [int((tmp_path / n).read_text()) for n in ("gc_thresh1", "gc_thresh2", "gc_thresh3")] \
        == [512, 2048, 4096]
    assert has_room(big, tmp_path)
    (tmp_path / "gc_thresh1").write_text("9000\n")  # an operator's higher value stays
    (tmp_path / "gc_thresh3").write_text("1024\n")
    make_room(big, tmp_path)
    assert int((tmp_path / "gc_thresh1").read_text()) == 9000


def test_a_check_that_broke_says_why_in_one_line(tmp_path: Path) -> None:
    """A test that errors before its check's outcome (a fixture that raised) is reported
    with the exception's own message, as pytest's `--tb=no` run still records it."""
    from generator.checks.runner import _reason

    (tmp_path / "test_broken.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef lab():\n"
        "    raise RuntimeError('cannot reach the lab\\nsecond line')\n\n"
        "def test_check(lab):\n    pass\n")
    reports: list[pytest.TestReport] = []

    class Keep:
        def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
            if report.failed:
                reports.append(report)

    pytest.main([str(tmp_path / "test_broken.py"), "-q", "--tb=no", "-p", "no:cacheprovider"],
                plugins=[Keep()])
    assert [_reason(r) for r in reports] == ["RuntimeError: cannot reach the lab"]
