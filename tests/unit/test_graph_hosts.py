"""`kgen graph` of a lab across hosts (lab contract section 11): each host a frame
around its nodes and clients, the node network the swarm's overlay spanning them,
a trace across hosts with the swarm's encapsulation. Without hosts the output is
the one drawn before hosts existed (tests/golden/graph/). No Docker needed.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.cli.graph import desired_cluster
from generator.cluster.names import network_name
from generator.graph import dot, overlay, picture
from generator.graph.details import details
from generator.graph.mermaid import mermaid
from generator.graph.page import page
from generator.lab.model import load_lab
from tests.conftest import ROOT
from tests.unit.test_graph import need_dot

DEMO = ROOT / "labs" / "demo.yaml"
GOLDEN = ROOT / "tests" / "golden" / "graph"
HOSTS = [{"name": "a", "docker": "unix:///var/run/docker.sock"},
         {"name": "b", "docker": "ssh://root@lab-b"}]
# node-0 spreads to a, node-1 to b, node-2 is placed on b by hand; client-0 on b.
ON_A = {"node_node-0_eth0", "node_node-0_overlay", "node_node-0_cbr0", "pod_pod-0", "pod_pod-1",
        "pod_coredns-0"}
ON_B = {"node_node-1_eth0", "node_node-1_overlay", "node_node-1_cbr0", "pod_pod-2",
        "pod_coredns-1", "node_node-2_eth0", "node_node-2_overlay", "node_node-2_cbr0",
        "pod_pod-3", "client_client-0"}
SWARM = {"src": "192.168.250.11", "dst": "192.168.250.12", "dport": 4789, "vni": 4097}


def wide_lab(tmp_path: Path) -> Path:
    doc = yaml.safe_load(DEMO.read_text())
    doc["name"] = "wide"
    doc["hosts"] = HOSTS
    doc["nodes"] = ["node-0", "node-1", {"name": "node-2", "host": "b"}]
    doc["clients"] = [{"name": "client-0", "host": "b"}]
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def wide(tmp_path: Path) -> picture.Picture:
    return picture.from_cluster(desired_cluster(load_lab(wide_lab(tmp_path)), tmp_path / "kgen-wide"))


@pytest.fixture
def demo(tmp_path: Path) -> picture.Picture:
    return picture.from_cluster(desired_cluster(load_lab(DEMO), tmp_path / "kgen-demo"))


def dot_block(source: str, name: str) -> list[str]:
    """The lines of one `subgraph NAME { ... }` of a DOT source, nested ones included."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"subgraph {name} {{")
    depth = 0
    for end in range(start, len(lines)):
        depth += lines[end].rstrip().endswith("{") - (lines[end].strip() == "}")
        if depth == 0:
            return lines[start:end + 1]
    raise AssertionError(f"subgraph {name} is not closed")


def declared(lines: list[str]) -> set[str]:
    """The element ids given a shape in these DOT lines (not edges, not subgraph attributes)."""
    found = set()
    for line in lines:
        match = re.match(r'\s*"?([A-Za-z0-9_.-]+)"? \[', line)
        if match and "->" not in line:
            found.add(match.group(1))
    return found


def mermaid_block(text: str, header: str) -> list[str]:
    """The lines of the Mermaid subgraph whose line is `header`, to its own `end`."""
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index(header)
    depth = 0
    for end in range(start, len(lines)):
        depth += lines[end].startswith("subgraph ") - (lines[end] == "end")
        if depth == 0:
            return lines[start:end + 1]
    raise AssertionError(f"{header} is not closed")


def across_hosts() -> dict[str, Any]:
    """The demo's ClusterIP trace (pod-0 on node-0, host a, to pod-3 on node-2, host b)
    with the hop trace/hosts.py adds after each encapsulation between hosts."""
    doc = json.loads((ROOT / "docs" / "traces" / "clusterip.json").read_text())
    hops: list[dict[str, Any]] = []
    for hop in doc["hops"]:
        hops.append(hop)
        if hop["step"] == "encap":
            swarm = SWARM if hop["direction"] == "request" else \
                {**SWARM, "src": SWARM["dst"], "dst": SWARM["src"]}
            hops.append({**copy.deepcopy(hop), "step": "swarm-overlay", "encap": swarm,
                         "detail": "the swarm overlay carries it between the hosts"})
    return {**doc, "hops": hops}


# ------------------------------------------------------------------ the model


def test_the_picture_knows_the_hosts_and_where_each_member_runs(wide: picture.Picture) -> None:
    assert [(h.name, h.docker, h.id) for h in wide.hosts] == [
        ("a", "unix:///var/run/docker.sock", "host_a"), ("b", "ssh://root@lab-b", "host_b")]
    assert {n.name: n.host for n in wide.nodes} == {"node-0": "a", "node-1": "b", "node-2": "b"}
    assert [(c.name, c.host) for c in wide.clients] == [("client-0", "b")]
    assert wide.network_lines()[1].startswith(f"overlay {network_name('wide')}, swarm")


def test_a_lab_without_hosts_has_none(demo: picture.Picture) -> None:
    assert demo.hosts == [] and {n.host for n in demo.nodes} == {None}
    assert demo.network_lines()[1] == "Docker bridge, internal: nothing leaves the lab"


# ------------------------------------------------------------------ dot


def test_dot_draws_each_host_as_a_cluster_around_its_nodes_and_clients(
        wide: picture.Picture) -> None:
    source = dot.source(wide)
    host_a, host_b = dot_block(source, "cluster_host_a"), dot_block(source, "cluster_host_b")
    assert 'label="host a (unix:///var/run/docker.sock)"' in host_a[1]
    assert 'label="host b (ssh://root@lab-b)"' in host_b[1]
    assert declared(host_a) == ON_A
    assert declared(host_b) == ON_B
    # the node network is outside both, named as the swarm's overlay network
    underlay = next(line for line in source.splitlines() if line.strip().startswith("underlay ["))
    assert "overlay kgen-wide, swarm: internal, spans hosts a, b" in underlay
    assert "underlay [" not in "\n".join(host_a + host_b)


def test_dot_of_two_hosts_renders_as_a_png(wide: picture.Picture, tmp_path: Path) -> None:
    need_dot()
    dot_file = tmp_path / "wide.dot"
    dot_file.write_text(dot.source(wide, overlay.build(wide, across_hosts())))
    done = subprocess.run(["dot", "-Tpng", str(dot_file), "-o", str(tmp_path / "wide.png")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (tmp_path / "wide.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_hosts_dot_and_mermaid_are_as_before(demo: picture.Picture) -> None:
    """Drawn by main at 03a9378, before graphs knew hosts (tests/golden/graph/README.md)."""
    traced = overlay.build(demo, overlay.load(ROOT / "docs" / "traces" / "nodeport.json"))
    assert dot.source(demo, traced) == (GOLDEN / "demo-nodeport.dot").read_text()
    assert mermaid(demo, traced) == (GOLDEN / "demo-nodeport.mmd").read_text()
    assert "host" not in json.dumps(details(demo))


# ------------------------------------------------------------------ mermaid


def test_mermaid_has_a_subgraph_per_host_with_its_members(wide: picture.Picture) -> None:
    text = mermaid(wide)
    host_a = "\n".join(mermaid_block(text, 'subgraph host0["host a (unix:///var/run/docker.sock)"]'))
    host_b = "\n".join(mermaid_block(text, 'subgraph host1["host b (ssh://root@lab-b)"]'))
    assert "node-0 (kgen-wide-node-0)" in host_a and "eth0 172.31.0.2" in host_a
    assert "pod-0<br/>10.244.0.2" in host_a and "client-0" not in host_a
    for node_ip in ("172.31.0.3", "172.31.0.4"):
        assert f"eth0 {node_ip}" in host_b and f"eth0 {node_ip}" not in host_a
    assert "client-0<br/>172.31.0.254" in host_b and "pod-3<br/>10.244.2.2" in host_b
    assert "overlay kgen-wide, swarm: internal, spans hosts a, b" in text


# ------------------------------------------------------------------ hover, trace


def test_hovering_a_host_or_member_names_the_host(wide: picture.Picture) -> None:
    info = details(wide)
    assert info["host_b"] == {"host": "b", "Docker engine": "ssh://root@lab-b",
                              "nodes": "node-1, node-2", "clients": "client-0",
                              "node network": "overlay kgen-wide, swarm: internal, "
                                              "spans hosts a, b"}
    assert info["node_node-0_eth0"]["host"] == "a" and info["client_client-0"]["host"] == "b"


def test_html_page_holds_the_host_frames(wide: picture.Picture) -> None:
    need_dot()
    html = page(wide, dot.render(wide, "svg"))
    assert 'id="host_a"' in html and 'id="host_b"' in html and '"host_a": {' in html


def test_a_trace_across_hosts_keeps_the_labs_tunnel_and_adds_the_swarms(
        wide: picture.Picture) -> None:
    doc = across_hosts()
    drawn = overlay.build(wide, doc)
    plain = overlay.build(wide, json.loads((ROOT / "docs" / "traces" / "clusterip.json").read_text()))
    crossing = [m for m in drawn.moves if m.encap is not None]
    assert [(m.tail, m.head, m.encap and m.encap["vni"], m.swarm) for m in crossing] == [
        ("node_node-0_overlay", "node_node-2_overlay", 1, SWARM),
        ("node_node-2_overlay", "node_node-0_overlay", 1,
         {**SWARM, "src": SWARM["dst"], "dst": SWARM["src"]})]
    # the swarm's hop happens where the packet already is and translates nothing
    swarm_hops = [h.number for h in drawn.hops if h.step == "swarm-overlay"]
    assert [drawn.places[n] for n in swarm_hops] == [drawn.places[n - 1] for n in swarm_hops]
    assert [(m.element, m.kind, m.before, m.after) for m in drawn.marks] == \
        [(m.element, m.kind, m.before, m.after) for m in plain.marks]
    source = dot.source(wide, drawn)
    assert "in the swarm's VXLAN VNI 4097\\n192.168.250.11 → 192.168.250.12:4789" in source
    assert "VXLAN VNI 1\\n172.31.0.2 → 172.31.0.4:4789" in source
    assert "in the swarm's VXLAN 192.168.250.11 to 192.168.250.12" in mermaid(wide, drawn)
