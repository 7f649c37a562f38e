"""`kgen graph`: the picture model, its renderers, the trace overlay (no Docker needed).

Rendering tests need Graphviz's `dot` (scripts/install.sh installs it); they
skip with a message where it is missing, except under CI, where that fails.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from generator.cli import app
from generator.cli.graph import desired_cluster
from generator.graph import dot, overlay, picture
from generator.graph.details import details
from generator.graph.mermaid import mermaid
from generator.graph.page import page
from generator.lab.model import load_lab
from tests.conftest import ROOT

DEMO = ROOT / "labs" / "demo.yaml"
TRACES = ROOT / "docs" / "traces"  # real traces of the demo, drawn for the README
# Hand-written traces in the contract's format (written before `kgen trace` existed):
# their hops are fixed, so the tests below can name the hop numbers they expect.
FIXTURES = ROOT / "tests" / "golden" / "traces" / "handwritten"
REAL = ROOT / "tests" / "golden" / "traces"     # recorded from kgen trace itself
SVG = "{http://www.w3.org/2000/svg}"
runner = CliRunner()

# The demo as kgen up brings it up on a machine with no other lab (README walkthrough).
DEMO_NODES = {"node-0": "172.31.0.2", "node-1": "172.31.0.3", "node-2": "172.31.0.4"}
# The cluster DNS's pods and service come after the lab's own (their addresses unmoved).
DEMO_PODS = {"pod-0": "10.244.0.2", "pod-1": "10.244.0.3", "pod-2": "10.244.1.2",
             "pod-3": "10.244.2.2", "coredns-0": "10.244.0.4", "coredns-1": "10.244.1.3"}
DEMO_SERVICES = {"web": "10.96.0.11", "web-nodeport": "10.96.0.20", "web-local": "10.96.0.30",
                 "web-sticky": "10.96.0.40", "no-backends": "10.96.0.50",
                 "kube-dns": "10.96.0.10"}


def need_dot() -> None:
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz's dot is missing; scripts/install.sh installs it")
        pytest.skip("Graphviz's dot is not installed (scripts/install.sh installs graphviz)")


@pytest.fixture
def demo(tmp_path: Path) -> picture.Picture:
    return picture.from_cluster(desired_cluster(load_lab(DEMO), tmp_path / "kgen-demo"))


def trace(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def svg_texts(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)
    return [t.text or "" for t in root.iter(f"{SVG}text")]


# ------------------------------------------------------------------ the model


def test_picture_of_the_demo_lab_file(demo: picture.Picture) -> None:
    assert demo.source == "lab file"
    assert {n.name: n.ip for n in demo.nodes} == DEMO_NODES
    assert {p.name: p.ip for n in demo.nodes for p in n.pods} == DEMO_PODS
    assert [(c.name, c.ip) for c in demo.clients] == [("client-0", "172.31.0.254")]
    assert {s.name: s.cluster_ip for s in demo.services} == DEMO_SERVICES
    web = next(s for s in demo.services if s.name == "web")
    assert web.endpoint_pods == ["pod-2", "pod-3"]
    assert web.endpoints == ["10.244.1.2:8080", "10.244.1.2:8081", "10.244.2.2:8080",
                             "10.244.2.2:8081"]
    assert next(s for s in demo.services if s.name == "no-backends").endpoints == []
    assert demo.overlay_text() == "VXLAN VNI 1, UDP 4789"


def test_running_lab_picture_takes_ips_states_and_endpoints_from_status(
        demo: picture.Picture, tmp_path: Path) -> None:
    from tests.unit.conftest import desired

    cluster = desired(load_lab(DEMO))
    report = {
        "name": "demo",
        "nodes": [{"name": n, "container": f"kgen-demo-{n}", "ip": ip, "podCIDR": "x",
                   "state": "NotReady" if n == "node-2" else "Ready"}
                  for n, ip in DEMO_NODES.items()],
        "pods": [{"name": "pod-0", "node": "node-0", "ip": "10.244.0.7", "state": "Running"},
                 {"name": "pod-2", "node": "node-1", "ip": "10.244.1.9", "state": "Running"},
                 {"name": "pod-3", "node": "node-2", "ip": None, "state": "Pending"}],
        "services": [{"name": "web", "type": "ClusterIP", "clusterIP": "10.96.0.10",
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                 "protocol": "TCP", "nodePort": None}],
                      "endpoints": ["10.244.1.9:8080"]}],
        "clients": [{"name": "client-0", "container": "kgen-demo-client-0",
                     "ip": "172.31.0.254"}]}
    live = picture.from_cluster(cluster, report)
    assert live.source == "running lab"
    pods = {p.name: p for n in live.nodes for p in n.pods}
    assert (pods["pod-0"].ip, pods["pod-2"].ip, pods["pod-3"].ip) == ("10.244.0.7", "10.244.1.9", None)
    assert pods["pod-1"].state == "Unknown"           # not in the report: not drawn as running
    assert live.node("node-2") is not None and live.node("node-2").state == "NotReady"  # type: ignore[union-attr]
    services = {s.name: s for s in live.services}
    assert services["web"].endpoint_pods == ["pod-2"]
    assert services["web-sticky"].endpoints == []     # a service the report lacks has none


def test_a_running_lab_is_drawn_from_the_registry_snapshot_without_docker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kgen graph` hands the graph a status built from the containers the lab resolution
    already listed: node states come from there, and nothing imports the Docker SDK."""
    import sys

    from generator.cli.graph import lab_picture
    from generator.node.contract import renew_heartbeat, write_json_atomic
    from generator.runtime.locate import LabRef
    from generator.runtime.paths import LabPaths
    from generator.runtime.registry import Member, RunningLab, Snapshot
    from tests.unit.conftest import render_lab

    monkeypatch.setitem(sys.modules, "docker", None)  # importing it would fail
    cluster = render_lab(DEMO, tmp_path / "kgen-demo")
    paths = LabPaths(tmp_path / "kgen-demo")
    node = cluster["nodes"][0]
    (paths.state_dir).mkdir(exist_ok=True)
    write_json_atomic(paths.state_dir / f"{node['name']}.json", {
        "node": node["name"], "generation": cluster["generation"], "ready": True, "pods": {},
        "proxy": None, "error": None})
    renew_heartbeat(paths.state_dir, node["name"])
    members = [Member(n["container"], "running" if n is node else "exited", "node")
               for n in cluster["nodes"]]
    running = RunningLab("demo", paths.root, DEMO, members)
    ref = LabRef("demo", paths, DEMO, running, "demo", registry=Snapshot())
    live, where = lab_picture(ref, from_file=False)
    assert live.source == "running lab" and where == paths
    assert [n.state for n in live.nodes] == ["Ready", "Exited", "Exited"]
    drawn, _ = lab_picture(ref, from_file=True)
    assert drawn.source == "lab file"


def test_expected_pod_ips_follow_lab_order_per_node() -> None:
    cluster = {"nodes": [{"name": "a", "podCIDR": "10.1.0.0/24"}, {"name": "b", "podCIDR": "10.1.1.0/24"}],
               "pods": [{"name": "p", "node": "b"}, {"name": "q", "node": "a"},
                        {"name": "r", "node": "b"}]}
    assert picture.expected_pod_ips(cluster) == {"q": "10.1.0.2", "p": "10.1.1.2", "r": "10.1.1.3"}


def test_details_cover_every_hoverable_element(demo: picture.Picture) -> None:
    info = details(demo)
    for name, ip in DEMO_PODS.items():
        assert info[picture.pod_id(name)]["IP"].startswith(ip)
    web = info[picture.service_id("web-nodeport")]
    assert web["cluster IP"] == "10.96.0.20" and "nodePort 30080" in web["ports"]
    assert web["externalTrafficPolicy"] == "Cluster"
    assert info[picture.client_id("client-0")]["IP"] == "172.31.0.254"
    assert info[picture.dev_id("node-1", "overlay")]["VNI"] == "1"


# ------------------------------------------------------------------ renderers


def test_svg_of_the_demo_parses_and_shows_every_node_pod_client_and_service(
        demo: picture.Picture) -> None:
    need_dot()
    svg = dot.render(demo, "svg")
    root = ET.fromstring(svg)                      # well-formed XML
    text = "\n".join(svg_texts(svg))
    ids = {g.get("id") for g in root.iter(f"{SVG}g")}
    for name, ip in DEMO_NODES.items():
        assert f"{name} (kgen-demo-{name})" in text and f"eth0 {ip}" in text
        assert picture.dev_id(name, "cbr0") in ids
    for name, ip in DEMO_PODS.items():
        assert picture.pod_id(name) in ids
        group = next(g for g in root.iter(f"{SVG}g") if g.get("id") == picture.pod_id(name))
        dns = ["DNS :53 UDP+TCP"] if name.startswith("coredns-") else []
        assert [t.text for t in group.iter(f"{SVG}text")] == [name, ip, *dns]
    assert "client-0" in text and "172.31.0.254" in text
    for name, ip in DEMO_SERVICES.items():
        assert name in text and any(ip in t for t in svg_texts(svg))
    assert "80/TCP → 8080, nodePort 30080" in text and "cbr0 10.244.1.1/24" in text
    assert "VXLAN VNI 1, UDP 4789" in text


def test_same_lab_file_same_bytes(demo: picture.Picture, tmp_path: Path) -> None:
    need_dot()
    again = picture.from_cluster(desired_cluster(load_lab(DEMO), tmp_path / "elsewhere"))
    assert dot.source(demo) == dot.source(again)
    assert dot.render(demo, "svg") == dot.render(again, "svg")


def test_dot_output_is_accepted_by_graphviz(demo: picture.Picture, tmp_path: Path) -> None:
    need_dot()
    for name, text in (("plain", dot.source(demo)),
                       ("traced", dot.source(demo, overlay.build(demo, trace("nodeport"))))):
        done = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, (name, done.stderr)
        assert done.stderr == "", (name, done.stderr)     # not even a warning
        ET.fromstring(done.stdout)


def test_host_gw_lab_draws_routes_instead_of_a_tunnel(tmp_path: Path) -> None:
    pic = picture.from_cluster(desired_cluster(load_lab(ROOT / "labs" / "host-gw.yaml"), tmp_path))
    assert pic.backend == "host-gw" and pic.overlay_text() == "host-gw: routes via node IPs"
    text = dot.source(pic)
    assert "VXLAN" not in text
    for n in pic.nodes:
        for other in pic.nodes:
            if other is not n:
                assert f"{other.pod_cidr} via {other.ip}" in text
    info = details(pic)[picture.dev_id(pic.nodes[0].name, "overlay")]
    assert info[pic.nodes[1].pod_cidr] == f"via {pic.nodes[1].ip}"


def test_png_is_a_png(demo: picture.Picture) -> None:
    need_dot()
    assert dot.render(demo, "png").startswith(b"\x89PNG\r\n\x1a\n")


def test_mermaid_is_one_flowchart_with_every_element(demo: picture.Picture) -> None:
    text = mermaid(demo)
    assert text.startswith("flowchart TB\n")
    for name, ip in {**DEMO_PODS, **DEMO_NODES}.items():
        assert ip in text and name in text
    for name, ip in DEMO_SERVICES.items():
        assert f'"{name}<br/>' in text and ip in text
    # Every subgraph is closed, ids are plain, labels are quoted.
    lines = text.splitlines()
    assert sum(line.lstrip().startswith("subgraph ") for line in lines) == \
        sum(line.strip() == "end" for line in lines)
    defined = re.findall(r"^\s+(n\d+)[\[(]", text, re.M)
    used = set(re.findall(r"\b(n\d+)\b", text))
    assert used == set(defined) and len(defined) == len(set(defined))
    assert mermaid(demo) == text


def mermaid_js() -> Path | None:
    """mermaid.min.js where installed: $KGEN_MERMAID_JS, else npm's global `mermaid` package."""
    if os.environ.get("KGEN_MERMAID_JS"):
        return Path(os.environ["KGEN_MERMAID_JS"])
    if shutil.which("npm") is None:
        return None
    root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=60).stdout
    path = Path(root.strip()) / "mermaid" / "dist" / "mermaid.min.js"
    return path if path.is_file() else None


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--enable-logging=stderr", "--v=0"]


def render_mermaid(js: Path, chromium: str, text: str, tmp_path: Path
                   ) -> subprocess.CompletedProcess[str]:
    """Mermaid's renderer run on `text` in headless Chromium: the page's DOM once done,
    marked data-rendered="yes", or data-error with what Mermaid refused."""
    page = tmp_path / "mermaid.html"
    page.write_text(
        f'<!DOCTYPE html><html><body><div id="out"></div><script src="{js.as_uri()}"></script>'
        "<script>mermaid.initialize({startOnLoad: false});"
        f"mermaid.render('g', {json.dumps(text)}).then(function (r) {{"
        "document.getElementById('out').innerHTML = r.svg;"
        "document.body.setAttribute('data-rendered', 'yes'); }).catch(function (e) {"
        "document.body.setAttribute('data-error', String(e)); });</script></body></html>")
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("traced", [False, True])
def test_mermaid_is_accepted_by_mermaid(demo: picture.Picture, tmp_path: Path, traced: bool) -> None:
    """Mermaid's own renderer (the JS library GitHub uses) in headless Chromium, where installed."""
    js, chromium = mermaid_js(), shutil.which("chromium")
    if js is None or chromium is None:
        pytest.skip("needs chromium and the mermaid npm package (npm install -g mermaid@11, "
                    "or KGEN_MERMAID_JS=path/to/mermaid.min.js)")
    text = mermaid(demo, overlay.build(demo, trace("nodeport")) if traced else None)
    done = render_mermaid(js, chromium, text, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'data-rendered="yes"' in done.stdout, re.findall(r'data-error="[^"]*"', done.stdout)
    for name, ip in DEMO_PODS.items():
        assert name in done.stdout and ip in done.stdout


def test_html_is_one_self_contained_page(demo: picture.Picture) -> None:
    need_dot()
    html = page(demo, dot.render(demo, "svg"))
    assert html.startswith("<!DOCTYPE html>")
    assert "<svg" in html and "<?xml" not in html
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", html)
    data = re.search(r'<script type="application/json" id="kgen-details">(.*?)</script>', html, re.S)
    assert data is not None
    info = json.loads(data.group(1))
    assert info == details(demo)
    for element in info:   # every hoverable id is in the SVG (Graphviz writes '-' as &#45;)
        assert f'id="{element.replace("-", "&#45;")}"' in html


# ------------------------------------------------------------------ the trace overlay

CONTRACT_TOP = {"src", "dst", "verdict", "answeredBy", "hops"}
CONTRACT_HOP = {"direction", "node", "step", "detail", "table", "chain", "rule", "packet", "encap"}


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")) + sorted(TRACES.glob("*.json")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_traces_follow_the_contract_schema_exactly(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert set(doc) == CONTRACT_TOP
    assert set(doc["src"]) == {"name", "ip"}
    assert set(doc["dst"]) == {"name", "ip", "port", "protocol"}
    assert doc["verdict"] in overlay.VERDICTS
    for hop in doc["hops"]:
        assert set(hop) == CONTRACT_HOP
        assert set(hop["packet"]) == {"src", "dst"}
        assert hop["encap"] is None or set(hop["encap"]) == {"src", "dst", "dport", "vni"}
        assert all(isinstance(hop[k], str | None) for k in ("table", "chain", "rule"))
    overlay.check(doc)


def test_clusterip_trace_on_the_picture(demo: picture.Picture) -> None:
    ov = overlay.build(demo, trace("clusterip"))
    request = [(m.tail, m.head) for m in ov.moves if m.direction == "request"]
    assert request == [("pod_pod-0", "node_node-0_cbr0"), ("node_node-0_cbr0", "node_node-0_overlay"),
                       ("node_node-0_overlay", "node_node-1_overlay"),
                       ("node_node-1_overlay", "node_node-1_cbr0"), ("node_node-1_cbr0", "pod_pod-2")]
    tunnel = next(m for m in ov.moves if m.direction == "request" and m.encap)
    assert tunnel.encap == {"src": "172.31.0.2", "dst": "172.31.0.3", "dport": 4789, "vni": 1}
    reply = [m for m in ov.moves if m.direction == "reply"]
    assert reply[0].tail == "pod_pod-2" and reply[-1].head == "pod_pod-0"
    assert [(m.kind, m.element, m.before, m.after) for m in ov.marks] == [
        ("DNAT", "node_node-0_cbr0", "10.96.0.10:80", "10.244.1.2:8080"),
        ("un-DNAT", "node_node-0_overlay", "10.244.1.2:8080", "10.96.0.10:80")]
    assert ov.end is None
    numbers = [n for m in ov.moves for n in m.hops]
    assert numbers == sorted(numbers) and set(numbers) == set(range(1, 17))


def test_nodeport_trace_marks_dnat_and_masquerade(demo: picture.Picture) -> None:
    ov = overlay.build(demo, trace("nodeport"))
    kinds = [(m.direction, m.kind) for m in ov.marks]
    assert kinds == [("request", "DNAT"), ("request", "MASQUERADE"), ("reply", "un-SNAT"),
                     ("reply", "un-DNAT")]
    assert ov.moves[0].tail == "client_client-0" and ov.moves[0].head == "node_node-0_eth0"
    assert ov.moves[-1].head == "client_client-0"


def test_a_drop_is_marked_where_it_happened(demo: picture.Picture) -> None:
    ov = overlay.build(demo, trace("nodeport-local-drop"))
    assert ov.end == ("node_node-0_eth0", 5)
    assert [m.direction for m in ov.moves] == ["request"]


def test_traced_svg_numbers_hops_colours_the_reply_and_marks_translations(
        demo: picture.Picture) -> None:
    need_dot()
    svg = dot.render(demo, "svg", overlay.build(demo, trace("nodeport")))
    root = ET.fromstring(svg)
    text = "\n".join(svg_texts(svg))
    assert "6: DNAT 172.31.0.2:30080 → 10.244.1.2:8080" in text
    assert "8: MASQUERADE 172.31.0.254:51000 → 10.244.0.0:63447" in text
    assert "10 VXLAN VNI 1" in text and "172.31.0.2 → 172.31.0.3:4789" in text
    edges = {g.get("id"): g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("trace-")}
    colours = {d: {p.get("stroke") for g in edges.values() if f"trace-{d}-" in (g.get("id") or "")
                   for p in g.iter(f"{SVG}path")} for d in ("request", "reply")}
    # The encapsulated stretch is a tube: the direction's colour around a white core.
    assert colours["request"] == {dot.REQUEST, "white"} and colours["reply"] == {dot.REPLY, "white"}
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("id") == "trace-legend")
    assert len([t for t in legend.iter(f"{SVG}text") if (t.text or "").strip().isdigit()]) == 20
    dropped = dot.render(demo, "svg", overlay.build(demo, trace("nodeport-local-drop")))
    assert "✖ dropped at hop 5" in "\n".join(svg_texts(dropped))


def real(name: str) -> tuple[picture.Picture, dict[str, Any]]:
    cluster = json.loads((REAL / "real-cluster.json").read_text())
    return picture.from_cluster(cluster), json.loads((REAL / f"real-{name}.json").read_text())


@pytest.mark.parametrize("name", ["clusterip", "nodeport", "nodeport-local-drop", "refused"])
def test_real_traces_follow_the_contract_schema(name: str) -> None:
    doc = real(name)[1]
    assert set(doc) == CONTRACT_TOP
    assert all(set(hop) == CONTRACT_HOP for hop in doc["hops"])


def test_real_nodeport_trace_on_the_picture() -> None:
    """What `kgen trace` really prints: the reply's route hop after conntrack still shows the
    untranslated source (conntrack reverses a DNAT in POSTROUTING): one un-DNAT, not three."""
    pic, doc = real("nodeport")
    ov = overlay.build(pic, doc)
    assert [(m.direction, m.kind, m.before, m.after) for m in ov.marks] == [
        ("request", "DNAT", "172.31.5.2:30080", "10.244.2.2:8080"),
        ("request", "MASQUERADE", "172.31.5.254:22174", "10.244.0.0:12489"),
        ("reply", "un-SNAT", "10.244.0.0:12489", "172.31.5.254:22174"),
        ("reply", "un-DNAT", "10.244.2.2:8080", "172.31.5.2:30080")]
    path = [(m.direction, m.tail, m.head, m.encap is not None) for m in ov.moves]
    assert path == [
        ("request", "client_client-0", "node_node-0_eth0", False),
        ("request", "node_node-0_eth0", "node_node-0_overlay", False),
        ("request", "node_node-0_overlay", "node_node-2_overlay", True),
        ("request", "node_node-2_overlay", "node_node-2_cbr0", False),
        ("request", "node_node-2_cbr0", "pod_pod-3", False),
        ("reply", "pod_pod-3", "node_node-2_overlay", False),
        ("reply", "node_node-2_overlay", "node_node-0_overlay", True),
        ("reply", "node_node-0_overlay", "node_node-0_eth0", False),
        ("reply", "node_node-0_eth0", "client_client-0", False)]
    numbers = [n for m in ov.moves for n in m.hops]
    assert numbers == list(range(1, len(doc["hops"]) + 1))    # every hop, once, in order


def test_real_clusterip_refusal_and_drop_on_the_picture() -> None:
    pic, doc = real("clusterip")
    ov = overlay.build(pic, doc)
    assert [(m.kind, m.element) for m in ov.marks] == [("DNAT", "node_node-0_cbr0"),
                                                        ("un-DNAT", "node_node-0_overlay")]
    assert ov.moves[-1].head == "pod_pod-0" and ov.end is None
    pic, doc = real("refused")
    assert overlay.build(pic, doc).end == ("node_node-0_cbr0", 6)
    pic, doc = real("nodeport-local-drop")
    assert overlay.build(pic, doc).end == ("node_node-0_eth0", 10)


def test_a_trace_of_another_lab_is_told(demo: picture.Picture) -> None:
    assert overlay.mismatches(demo, trace("nodeport")) == []
    told = overlay.mismatches(demo, real("nodeport")[1])     # the grtr lab's addresses
    assert told == ["src client-0 has 172.31.5.254 in the trace, no address of lab demo",
                    "dst node-0 has 172.31.5.2 in the trace, no address of lab demo"]
    doc = copy.deepcopy(trace("clusterip"))
    doc["src"]["name"] = "pod-9"
    doc["hops"][0]["node"] = "node-7"
    assert overlay.mismatches(demo, doc) == ["src 'pod-9' is not in lab demo",
                                             "hops on node-7, which lab demo does not have"]


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d.pop("verdict"), "verdict: missing"),
    (lambda d: d.update(verdict="maybe"), "verdict: 'maybe' is not one of"),
    (lambda d: d["hops"][0].update(direction="sideways"), "hops[0].direction"),
    (lambda d: d["hops"][5].update(encap={"src": "x"}), "hops[5].encap"),
    (lambda d: d["hops"][1].pop("packet"), "hops[1].packet"),
])
def test_a_file_that_is_not_a_trace_is_refused(breakage: Any, message: str, tmp_path: Path) -> None:
    doc = copy.deepcopy(trace("clusterip"))
    breakage(doc)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(overlay.TraceFileError, match=re.escape(message)):
        overlay.load(path)
    result = runner.invoke(app, ["graph", "-l", str(DEMO), "--from-file", "--trace", str(path),
                                 "-o", str(tmp_path / "g.svg")])
    assert result.exit_code == 2 and message in result.stderr


# ------------------------------------------------------------------ the command


def test_graph_command_formats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_dot()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["graph", "-l", str(DEMO), "--from-file"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "kgen-demo" / "graph.svg")
    ET.parse(tmp_path / "kgen-demo" / "graph.svg")
    for fmt, start in (("mermaid", "flowchart TB"), ("dot", "digraph demo {")):
        printed = runner.invoke(app, ["graph", "-l", str(DEMO), "--from-file", "--format", fmt])
        assert printed.exit_code == 0 and printed.stdout.startswith(start)
    bad = runner.invoke(app, ["graph", "-l", str(DEMO), "--format", "gif"])
    assert bad.exit_code == 2 and "--format: 'gif' is not one of" in bad.stderr


def test_readme_images_are_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/ holds what `kgen graph` draws from labs/demo.yaml today (regenerate: see docs/README)."""
    need_dot()
    made = {
        "demo.svg": [],
        "demo-trace-clusterip.svg": ["--trace", str(TRACES / "clusterip.json")],
        "demo-trace-nodeport.svg": ["--trace", str(TRACES / "nodeport.json")],
        "demo.html": ["--format", "html"],
    }
    readme = (ROOT / "README.md").read_text()
    top = readme[:readme.index("## Walkthrough")]
    clusterip = readme[readme.index("### 5. ClusterIP"):readme.index("### 6. NodePort")]
    nodeport = readme[readme.index("### 6. NodePort"):readme.index("### 7.")]
    assert "](docs/demo.svg)" in top
    assert "](docs/demo-trace-clusterip.svg)" in clusterip
    assert "](docs/demo-trace-nodeport.svg)" in nodeport
    committed = (ROOT / "docs" / "demo.svg").read_text()
    version = re.search(r"Generated by graphviz version (\S+)", committed)
    installed = subprocess.run(["dot", "-V"], capture_output=True, text=True).stderr
    if version is None or version.group(1) not in installed:
        pytest.skip(f"docs/ was drawn by Graphviz {version and version.group(1)}; this machine has "
                    f"{installed.strip()}: layouts differ between versions")
    monkeypatch.chdir(tmp_path)    # no kgen-demo/ here: the pool's first node network
    for name, args in made.items():
        out = tmp_path / name
        result = runner.invoke(app, ["graph", "-l", str(DEMO), "--from-file", *args, "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == (ROOT / "docs" / name).read_bytes(), (
            f"docs/{name} is stale: regenerate it with the commands in docs/README.md")
