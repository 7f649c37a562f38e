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
