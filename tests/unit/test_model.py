"""The lab file model: defaults, the demo lab, and golden error lines."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from generator.lab.errors import LabError
from generator.lab.model import load_lab, parse_lab
from tests.conftest import GOLDEN, ROOT

BAD = GOLDEN / "bad-labs"
CASES = sorted(p.stem for p in BAD.glob("*.yaml"))


@pytest.mark.parametrize("case", CASES)
def test_bad_lab_is_refused_with_its_golden_line(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD)
    with pytest.raises(LabError) as err:
        load_lab(Path(f"{case}.yaml"))
    expected = (BAD / f"{case}.expected").read_text().strip()
    assert str(err.value) == expected
    assert all(line.startswith(f"{case}.yaml: ") for line in err.value.lines())


def test_every_error_of_a_file_is_reported_on_its_own_line() -> None:
    with pytest.raises(LabError) as err:
        load_lab(BAD / "three-errors.yaml")
    assert [p.path for p in err.value.problems] == ["name", "backend", "services[0].ports[0].nodePort"]
    assert len(str(err.value).splitlines()) == 3


def test_every_golden_case_has_an_expected_line() -> None:
    assert len(CASES) >= 20
    assert sorted(p.stem for p in BAD.glob("*.expected")) == CASES


def test_defaults() -> None:
    lab = parse_lab({"name": "x", "nodes": ["n0", {"name": "n1"}],
                     "services": [{"name": "s", "ports": [{"port": 80}]}]})
    assert lab.pod_cidr == ipaddress.ip_network("10.244.0.0/16")
    assert lab.service_cidr == ipaddress.ip_network("10.96.0.0/16")
    assert (lab.node_cidr_mask, lab.backend, lab.vxlan_vni, lab.vxlan_port) == (24, "vxlan", 1, 4789)
    assert lab.node_network is None
    assert lab.nodes == ["n0", "n1"]
    svc = lab.services[0]
    assert (svc.type, svc.session_affinity, svc.external_traffic_policy) == ("ClusterIP", "None",
                                                                             "Cluster")
    assert svc.affinity_timeout == 10800
    port = svc.ports[0]
    assert (port.target_port, port.protocol, port.node_port, port.name) == (80, "TCP", None, "")


def test_pod_without_containers_runs_the_test_server() -> None:
    lab = parse_lab({"name": "x", "nodes": ["n0"], "pods": [{"name": "p", "node": "n0"}]})
    assert [(c.name, c.command) for c in lab.pods[0].containers] == [("p", None)]


def test_affinity_timeout_can_be_set() -> None:
    lab = parse_lab({"name": "x", "nodes": ["n0"], "services": [{
        "name": "s", "sessionAffinity": "ClientIP", "ports": [{"port": 80}],
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}]})
    assert lab.services[0].affinity_timeout == 60


def test_demo_lab_covers_every_path_of_the_story() -> None:
    lab = load_lab(ROOT / "labs" / "demo.yaml")
    assert len(lab.nodes) == 3 and lab.clients
    by_node: dict[str, list[str]] = {}
    for pod in lab.pods:
        by_node.setdefault(pod.node, []).append(pod.name)
    assert any(len(p) >= 2 for p in by_node.values()), "two pods on one node"
    kinds = {(s.type, s.external_traffic_policy) for s in lab.services}
    assert {("ClusterIP", "Cluster"), ("NodePort", "Cluster"), ("NodePort", "Local")} <= kinds
    web = next(s for s in lab.services if s.type == "ClusterIP")
    backends = {p.node for p in lab.pods
                if all(p.labels.get(k) == v for k, v in web.selector.items())}
    assert len(backends) >= 2, "ClusterIP backed by pods on two nodes"


def test_every_builtin_lab_is_valid() -> None:
    for path in (ROOT / "labs").glob("*.yaml"):
        assert load_lab(path).name


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"nope\.yaml: cannot read lab file"):
        load_lab(tmp_path / "nope.yaml")
    assert os.path.exists(tmp_path)
