"""`kgen up` waits on what the agents publish: counts per kind, milestones, and a
state file re-read only when it changed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from generator.node import contract
from generator.node.netpol.spec import netpol_digest
from generator.runtime.errors import RuntimeFailure
from generator.runtime.ready import Readiness, StateReader, readiness, wait_ready


def lab(nodes: int = 2) -> dict[str, Any]:
    return {"nodeGracePeriod": 6, "generation": "g1", "services": [],
            "nodes": [{"name": f"n{i}"} for i in range(nodes)],
            "pods": [{"name": f"p{i}", "node": f"n{i}", "labels": {"app": "a"}}
                     for i in range(nodes)]}


def publish(state: Path, node: str, pod_state: str, synced: bool = True) -> None:
    i = node[1:]
    doc = {"node": node, "generation": "g1", "ready": pod_state != "Pending",
           "pods": {f"p{i}": {"ip": f"10.0.{i}.2", "state": pod_state, "restarts": 0}},
           "proxy": {"digest": "", "error": None}, "error": None,
           "netpol": {"digest": netpol_digest(lab()), "error": None}}  # no policies
    contract.write_json_atomic(state / f"{node}.json", doc)
    contract.renew_heartbeat(state, node)


def synced_digest(cluster: dict[str, Any], state: Path) -> str:
    docs = contract.read_node_states(state, [n["name"] for n in cluster["nodes"]])
    names = {n["name"] for n in cluster["nodes"]}
    return contract.input_digest([], contract.serving_pods(cluster, docs, names))


def test_counts_per_kind(tmp_path: Path) -> None:
    c = lab()
    publish(tmp_path, "n0", "Running")
    publish(tmp_path, "n1", "Pending")
    docs = contract.read_node_states(tmp_path, ["n0", "n1"])
    found = readiness(c, docs, {"n0", "n1"})  # type: ignore[arg-type]
    assert found.counts() == [("nodes ready", 1, 2), ("pods running", 1, 2),
                              ("proxies synced", 0, 2)]
    assert found.missing == ["proxy on n0", "node n1", "pod p1"]


def test_up_waits_for_every_node_to_enforce_the_current_policies(tmp_path: Path) -> None:
    c = lab()
    for node in ("n0", "n1"):
        publish(tmp_path, node, "Running")
    docs = contract.read_node_states(tmp_path, ["n0", "n1"])
    for doc in docs.values():
        doc["proxy"] = {"digest": synced_digest(c, tmp_path), "error": None}
    assert readiness(c, docs).missing == []  # type: ignore[arg-type]
    c["networkPolicies"] = [{"metadata": {"name": "deny", "namespace": "default"},
                             "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}]
    assert readiness(c, docs).missing == ["network policies on n0",  # type: ignore[arg-type]
                                          "network policies on n1"]
    docs["n1"]["netpol"] = {"digest": netpol_digest(c), "error": None}
    assert readiness(c, docs).missing == ["network policies on n0"]  # type: ignore[arg-type]
    # an agent from before NetworkPolicy publishes no netpol: waited for only with policies
    del docs["n0"]["netpol"]
    assert readiness(c, docs).missing == ["network policies on n0"]  # type: ignore[arg-type]
    del c["networkPolicies"]
    docs["n1"]["netpol"] = None  # a new agent whose controller has not started: waited for
    assert readiness(c, docs).missing == ["network policies on n1"]  # type: ignore[arg-type]


def test_a_state_file_is_read_again_only_when_it_changed(tmp_path: Path) -> None:
    publish(tmp_path, "n0", "Pending")
    reader = StateReader(tmp_path, ["n0", "n1"])
    first = reader.read()
    assert set(first) == {"n0"} and first["n0"]["pods"]["p0"]["state"] == "Pending"
    # Rewritten in place with the same size and mtime: the same stamp, so not read again.
    path = tmp_path / "n0.json"
    st = path.stat()
    path.write_text(path.read_text().replace("Pending", "Pendinx"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert reader.read()["n0"]["pods"]["p0"]["state"] == "Pending"
    publish(tmp_path, "n0", "Running")
    assert reader.read()["n0"]["pods"]["p0"]["state"] == "Running"
    (tmp_path / "n0.json").unlink()
    assert reader.read() == {}


def test_wait_ready_returns_its_milestones_and_names_a_stopped_container(tmp_path: Path) -> None:
    c = lab()
    for node in ("n0", "n1"):
        publish(tmp_path, node, "Running")
    digest = synced_digest(c, tmp_path)
    for node in ("n0", "n1"):
        doc = contract.read_json(tmp_path / f"{node}.json")
        doc["proxy"]["digest"] = digest
        contract.write_json_atomic(tmp_path / f"{node}.json", doc)
    seen: list[Readiness] = []
    done = wait_ready(lambda: [], tmp_path, c, lambda found, waited: seen.append(found),  # type: ignore[arg-type]
                      timeout=5)
    assert set(done) == {"agents", "pods", "proxies"} and seen[-1].missing == []

    publish(tmp_path, "n1", "Pending")
    with pytest.raises(RuntimeFailure, match="container.s. stopped: kgen-t-n1"):
        wait_ready(lambda: ["kgen-t-n1"], tmp_path, c, lambda *a: None, timeout=30)  # type: ignore[arg-type]
