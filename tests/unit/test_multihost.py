"""Pure parts of a lab across hosts: placement in cluster.json, per-host compose files,
the pod MTU, the swarm's address range, the state relay's shares, the trace's swarm hop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from generator.lab.model import parse_lab
from generator.node.statesync import my_share, store
from generator.runtime.hostcli import cli, member_cli
from generator.runtime.swarm import dynamic_range
from generator.trace.hosts import with_swarm_hops
from generator.trace.narrate import Hop
from tests.unit.conftest import desired, render_lab

HOSTS = [{"name": "a", "docker": "unix:///run/a.sock"}, {"name": "b", "docker": "ctx-b"}]


def lab(**fields: Any) -> Any:
    return parse_lab({"name": "mh", "nodeNetwork": "172.29.20.0/24", "hosts": HOSTS,
                      "nodes": ["n0", "n1", "n2"], "clients": ["c0"],
                      "pods": [{"name": "p0", "node": "n0"}], **fields})


def test_cluster_json_places_members_and_counts_both_overlays_in_the_mtu() -> None:
    cluster = desired(lab())
    assert [(n["name"], n["host"]) for n in cluster["nodes"]] == [("n0", "a"), ("n1", "b"),
                                                                  ("n2", "a")]
    assert cluster["clients"][0]["host"] == "a" and cluster["hosts"] == HOSTS
    assert cluster["mtu"] == 1500 - 50 - 50  # the swarm's VXLAN, then the lab's
    assert desired(lab(backend="host-gw"))["mtu"] == 1450
    single = desired(parse_lab({"name": "one", "nodes": ["n0"]}))
    assert single["mtu"] == 1450 and "hosts" not in single and "host" not in single["nodes"][0]


def test_render_writes_one_compose_file_per_host_with_the_overlay_external(tmp_path: Path) -> None:
    render_lab(lab(), tmp_path)
    assert not (tmp_path / "docker-compose.yml").exists()
    a = yaml.safe_load((tmp_path / "hosts/a/docker-compose.yml").read_text())
    b = yaml.safe_load((tmp_path / "hosts/b/docker-compose.yml").read_text())
    assert sorted(a["services"]) == ["c0", "n0", "n2"] and sorted(b["services"]) == ["n1"]
    assert a["networks"]["lab"] == {"name": "kgen-mh", "external": True}
    node = b["services"]["n1"]
    assert node["labels"]["kgen.host"] == "b"
    assert node["command"] == ["python3", "-m", "generator.node.statesync"]
    assert "../../config:/etc/kgen:ro" in node["volumes"]


def test_the_swarm_range_avoids_every_address_kgen_gives_out() -> None:
    cluster = desired(lab())
    assert dynamic_range(cluster) == "172.29.20.208/28"  # below the pool at .224 and clients
    full = desired(lab(loadBalancerPool="172.29.20.192/27"))
    assert dynamic_range(full) == "172.29.20.224/28"  # the pool moved below it


def test_each_remote_node_is_pulled_by_exactly_one_local_node() -> None:
    cluster = desired(lab(nodes=[f"n{i}" for i in range(7)]))  # a: n0 n2 n4 n6, b: n1 n3 n5
    pulled_by_a = [p for n in ("n0", "n2", "n4", "n6") for p, _ in my_share(cluster, n)]
    pulled_by_b = [p for n in ("n1", "n3", "n5") for p, _ in my_share(cluster, n)]
    assert sorted(pulled_by_a) == ["n1", "n3", "n5"]
    assert sorted(pulled_by_b) == ["n0", "n2", "n4", "n6"]


def test_a_pulled_document_and_heartbeat_land_as_the_peer_wrote_them(tmp_path: Path) -> None:
    doc = {"node": "n1", "ready": True}
    store(tmp_path, "n1", {"doc": doc, "heartbeatAge": 2.5}, now=1000.0)
    assert yaml.safe_load((tmp_path / "n1.json").read_text()) == doc
    assert (tmp_path / "heartbeat" / "n1").stat().st_mtime == 997.5


def test_members_are_reached_through_their_own_engine() -> None:
    cluster = desired(lab())
    assert member_cli(cluster, "kgen-mh-n0") == ["docker", "-H", "unix:///run/a.sock"]
    assert member_cli(cluster, "kgen-mh-n1") == ["docker", "--context", "ctx-b"]
    assert member_cli(None, "kgen-x-n0") == cli(None) == ["docker"]


def test_the_trace_names_the_swarm_overlay_between_hosts() -> None:
    cluster = desired(lab())
    packet = {"src": "10.244.0.2", "dst": "10.244.1.2:8080"}
    hops = [Hop("request", "n0", "encap", "encapsulates", packet),
            Hop("request", "n1", "decap", "arrives", packet),
            Hop("reply", "n1", "encap", "encapsulates", packet),
            Hop("reply", "n0", "deliver", "delivers", packet)]
    out = with_swarm_hops(cluster, hops, {"a": "192.168.250.11", "b": "192.168.250.12"}, 4097)
    swarm = [h for h in out if h.step == "swarm-overlay"]
    assert [(h.direction, h.encap) for h in swarm] == [
        ("request", {"src": "192.168.250.11", "dst": "192.168.250.12", "dport": 4789, "vni": 4097}),
        ("reply", {"src": "192.168.250.12", "dst": "192.168.250.11", "dport": 4789, "vni": 4097})]
    assert [h.step for h in out][:3] == ["encap", "swarm-overlay", "decap"]
