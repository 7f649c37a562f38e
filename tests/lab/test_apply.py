"""Issue 4: `kgen apply` brings pod and service edits to a running lab,
without restarting nodes, and every proxy follows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.lab.conftest import RunningLab, bring_up

LAB = {
    "name": "apl",
    "nodes": ["node-0", "node-1"],
    "pods": [{"name": "web-1", "node": "node-1", "labels": {"app": "web"}}],
    "services": [{"name": "web-local", "type": "NodePort", "externalTrafficPolicy": "Local",
                  "selector": {"app": "web"},
                  "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30090}]}],
    "clients": ["client-0"],
}


@pytest.fixture(scope="module")
def apl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp("apply")
    (workdir / "apl.yaml").write_text(yaml.safe_dump(LAB))
    yield from bring_up(workdir / "apl.yaml", workdir)


def edit(lab: RunningLab, change: dict) -> None:
    doc = yaml.safe_load(lab.lab_file.read_text())
    doc.update(change)
    lab.lab_file.write_text(yaml.safe_dump(doc))
    lab.kgen("apply")


def probe(lab: RunningLab, node_ip: str, port: int = 30090) -> list[dict]:
    out = lab.exec("client-0", "python3", "-m", "generator.node.probe", "http", node_ip,
                   str(port), "/clientip", "--timeout", "1.5", "--json", check=False).stdout
    return json.loads(out)


def started_at(lab: RunningLab) -> list[str]:
    import docker

    client = docker.from_env()
    return [client.containers.get(f"kgen-{lab.name}-{n}").attrs["State"]["StartedAt"]
            for n in ("node-0", "node-1")]


def test_adding_a_local_backend_makes_its_node_serve(apl: RunningLab) -> None:
    node0 = next(n for n in apl.status()["nodes"] if n["name"] == "node-0")
    client_ip = apl.status()["clients"][0]["ip"]
    before = started_at(apl)
    assert not probe(apl, node0["ip"])[0]["ok"], "Local: no local endpoint, dropped"
    pods = [*LAB["pods"], {"name": "web-0", "node": "node-0", "labels": {"app": "web"},
                           "terminationGracePeriodSeconds": 2}]
    edit(apl, {"pods": pods})
    answer = probe(apl, node0["ip"])[0]
    assert answer["ok"] and answer["answer"].split(":")[0] == client_ip
    assert started_at(apl) == before, "nodes were not restarted"


def test_removing_a_pod_removes_its_endpoint_and_netns(apl: RunningLab) -> None:
    """The pod is Terminating for its grace period (2 s), then gone with its netns."""
    edit(apl, {"pods": LAB["pods"]})
    svc = next(s for s in apl.status()["services"] if s["name"] == "web-local")
    assert len(svc["endpoints"]) == 1
    deadline = time.monotonic() + 2 + 5
    while "web-0" in apl.exec("node-0", "ip", "netns", "list").stdout:
        assert time.monotonic() < deadline, "web-0 outlived its grace period"
        time.sleep(0.5)
    assert "web-0" not in [p["name"] for p in apl.status()["pods"]]


def test_service_changes_reach_every_proxy(apl: RunningLab) -> None:
    services = [{**LAB["services"][0], "externalTrafficPolicy": "Cluster"},
                {"name": "extra", "type": "NodePort", "selector": {"app": "web"},
                 "ports": [{"port": 81, "targetPort": 8080, "nodePort": 30091}]}]
    edit(apl, {"services": services})
    node0 = next(n for n in apl.status()["nodes"] if n["name"] == "node-0")
    answer = probe(apl, node0["ip"])[0]
    assert answer["ok"], "Cluster policy now serves via node-0 from node-1's backend"
    assert probe(apl, node0["ip"], 30091)[0]["ok"]
    edit(apl, {"services": LAB["services"]})
    rules = apl.exec("node-0", "iptables-save", "-t", "nat").stdout
    assert "30091" not in rules and "default/extra" not in rules


def test_node_changes_are_refused(apl: RunningLab, tmp_path: Path) -> None:
    doc = yaml.safe_load(apl.lab_file.read_text())
    doc["nodes"] = ["node-0", "node-1", "node-2"]
    apl.lab_file.write_text(yaml.safe_dump(doc))
    try:
        result = apl.kgen("apply", check=False)
        assert result.returncode == 1 and "nodes changed" in result.stderr
    finally:
        doc["nodes"] = LAB["nodes"]
        apl.lab_file.write_text(yaml.safe_dump(doc))
