"""`kgen check` without a lab: -k selects as pytest does, and the deadline holds.

With a deadline already passed nothing is sent (no container is asked), so
these run anywhere; the lab tests run the same code against real labs.
"""

from __future__ import annotations

import ipaddress

import pytest

from generator.checks.plan import plan
from generator.checks.probes import Lab, run_all
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


def test_k_selects_checks_by_id_like_pytest(demo: tuple[dict, dict]) -> None:
    rows = execute(*demo, keyword="nodeport:web and not local", timeout=0)
    assert [r["id"] for r in rows] == [f"nodeport:web-nodeport:node-{i}" for i in range(3)]
    rows = execute(*demo, keyword="pod-to-pod or hairpin", timeout=0)
    assert {r["kind"] for r in rows} == {"pod-to-pod", "hairpin"}


def test_k_matching_nothing_or_malformed_is_refused(demo: tuple[dict, dict]) -> None:
    with pytest.raises(SelectionError, match="no check matches"):
        execute(*demo, keyword="no-such-check", timeout=0)
    with pytest.raises(SelectionError):
        execute(*demo, keyword="nodeport and (", timeout=0)


def test_checks_past_the_deadline_fail_as_not_run(demo: tuple[dict, dict]) -> None:
    rows = execute(*demo, timeout=0)
    assert len(rows) == len(plan(demo[0]))
    assert not any(r["passed"] for r in rows)
    assert all("timeout was reached" in r["seen"] for r in rows)


def test_progress_hears_of_every_check_once(demo: tuple[dict, dict]) -> None:
    checks = plan(demo[0])
    heard: list[str] = []
    outcomes = run_all(Lab(*demo), checks, timeout=0, done=lambda c, o: heard.append(c.id))
    assert sorted(heard) == sorted(outcomes) == sorted(c.id for c in checks)


def test_a_lab_too_big_for_the_hosts_neighbour_table_is_warned_of(tmp_path) -> None:
    from benchmarks.bench_check import scale_lab
    from generator.checks.runner import neighbour_warning
    from generator.lab.model import parse_lab

    limit = tmp_path / "gc_thresh3"
    limit.write_text("1024\n")
    big = build_state(parse_lab(scale_lab("big", 50)), NET)
    small = build_state(parse_lab(scale_lab("small", 20)), NET)
    assert "gc_thresh3" in (neighbour_warning(big, limit) or "")
    assert neighbour_warning(small, limit) is None
    limit.write_text("16384\n")
    assert neighbour_warning(big, limit) is None
    assert neighbour_warning(big, tmp_path / "missing") is None
