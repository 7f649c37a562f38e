"""`kgen graph` of LoadBalancer services, namespaces and the cluster DNS (issues 22, 23).

The model from labs/loadbalancer.yaml and labs/dns.yaml, the dot and mermaid
texts drawn from it, and trace files that carry keys the picture does not draw.
"""

from __future__ import annotations

import copy
import json
import re
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
from generator.lab.model import load_lab
from generator.node.lb_election import lb_announcer
from tests.conftest import ROOT
from tests.unit.test_graph import FIXTURES, SVG, mermaid_js, need_dot, render_mermaid

LB = ROOT / "labs" / "loadbalancer.yaml"
DNS = ROOT / "labs" / "dns.yaml"
DEMO = ROOT / "labs" / "demo.yaml"
NODES = {"node-0", "node-1", "node-2"}
WEB_NODES = {"node-1", "node-2"}          # where loadbalancer.yaml's web pods run
runner = CliRunner()


def drawn(lab: Path, tmp_path: Path) -> picture.Picture:
    return picture.from_cluster(desired_cluster(load_lab(lab), tmp_path / f"kgen-{lab.stem}"))


@pytest.fixture
def lb(tmp_path: Path) -> picture.Picture:
    return drawn(LB, tmp_path)


@pytest.fixture
def dns(tmp_path: Path) -> picture.Picture:
    return drawn(DNS, tmp_path)


def service(pic: picture.Picture, ref: str) -> picture.ServiceBox:
    found = pic.service(ref)
    assert found is not None, ref
    return found


# ------------------------------------------------------------------ the model


def test_the_pool_and_each_loadbalancer_ip_with_its_announcer_from_the_lab_file(
        lb: picture.Picture) -> None:
    assert lb.load_balancer_pool == "172.31.200.224/28"
    assert lb.pool_range() == "172.31.200.224/28 (.224–.239)"
    lb_ips = {a.service_name: a for a in lb.addresses if a.kind == "loadBalancerIP"}
    assert set(lb_ips) == {"web-lb", "web-lb-local", "web-lb-ranges"}
    assert lb_ips["web-lb-local"].ip == "172.31.200.230"          # the one the lab file asks for
    for a in lb_ips.values():
        assert a.ip.startswith("172.31.200.2") and service(lb, a.service_name).load_balancer_ip == a.ip
    # Cluster: any node may announce; Local: only a node with a web pod (MetalLB's rule).
    assert lb_ips["web-lb"].announced_by == lb_announcer(lb_ips["web-lb"].ip, NODES)
    assert lb_ips["web-lb-local"].announced_by == lb_announcer("172.31.200.230", WEB_NODES)
    assert lb_ips["web-lb-local"].announced_by in WEB_NODES
    assert "once every node is Ready" in lb_ips["web-lb"].note      # not a running lab's word
    [external] = [a for a in lb.addresses if a.kind == "externalIP"]
    assert (external.ip, external.service_name, external.announced_by) == \
        ("172.31.200.220", "web-external", None)


def test_a_local_service_is_announced_only_by_a_node_with_its_pods(tmp_path: Path) -> None:
    """An IP whose first choice among every node is node-0, which has no web pod: under
    Local, the lab-file picture must name a web node, as the agents would."""
    cluster = desired_cluster(load_lab(LB), tmp_path)
    taken = {s.get("loadBalancerIP") for s in cluster["services"]}
    ip = next(f"172.31.200.{n}" for n in range(224, 240) if f"172.31.200.{n}" not in taken
              and lb_announcer(f"172.31.200.{n}", NODES) == "node-0")
    local = next(s for s in cluster["services"] if s["name"] == "web-lb-local")
    local["loadBalancerIP"] = ip
    [address] = [a for a in picture.from_cluster(cluster).addresses if a.ip == ip]
    assert address.announced_by == lb_announcer(ip, WEB_NODES) != "node-0"


def test_loadbalancer_services_carry_policy_ranges_and_health_check_port(
        lb: picture.Picture) -> None:
    local, ranges = service(lb, "web-lb-local"), service(lb, "web-lb-ranges")
    assert local.type == "LoadBalancer" and local.external_traffic_policy == "Local"
    assert local.health_check_node_port is not None and 30000 <= local.health_check_node_port <= 32767
    assert service(lb, "web-lb").health_check_node_port is None
    assert ranges.source_ranges == ["172.31.200.254/32"]
    assert f"healthCheckNodePort {local.health_check_node_port}" in dot.service_lines(local)
    assert "loadBalancerSourceRanges 172.31.200.254/32" in dot.service_lines(ranges)
    assert "externalIPs 172.31.200.220" in dot.service_lines(service(lb, "web-external"))


def test_a_running_lab_takes_the_announcer_from_status(tmp_path: Path) -> None:
    cluster = desired_cluster(load_lab(LB), tmp_path)
    report: dict[str, Any] = {
        "name": "loadbalancer",
        "nodes": [{"name": n["name"], "container": n["container"], "ip": n["ip"], "podCIDR": "x",
                   "state": "Ready"} for n in cluster["nodes"]],
        "pods": [], "clients": [],
        "services": [{"name": s["name"], "namespace": s.get("namespace", "default"),
                      "type": s["type"], "clusterIP": s["clusterIP"], "ports": s["ports"],
                      "loadBalancerIP": s.get("loadBalancerIP"), "endpoints": [],
                      "announcedBy": "node-2" if s["name"] == "web-lb" else None}
                     for s in cluster["services"]]}
    live = picture.from_cluster(cluster, report)  # type: ignore[arg-type]
    by_service = {a.service_name: a for a in live.addresses if a.kind == "loadBalancerIP"}
    assert by_service["web-lb"].announced_by == "node-2" and by_service["web-lb"].note == "ARP: node-2"
    assert by_service["web-lb-local"].announced_by is None
    assert by_service["web-lb-local"].note.startswith("not announced")
    assert details(live)[picture.dev_id("node-2", "eth0")]["answers ARP for"] == by_service["web-lb"].ip


def test_namespaces_group_pods_and_services_and_web_is_two_services(dns: picture.Picture) -> None:
    assert [(ns.name, ns.labels) for ns in dns.namespaces] == [
        ("default", {}), ("kube-system", {}), ("shop", {"team": "a"})]
    assert dns.namespaces[2].title() == "namespace shop (team=a)"
    web, shop_web = service(dns, "web"), service(dns, "web.shop")
    assert (web.id, shop_web.id) == ("service_web", "service_web.shop")
    assert web.endpoint_pods == ["web-0", "web-1"] and shop_web.endpoint_pods == ["shop-web-0"]
    assert service(dns, "shop/web") is shop_web
    assert service(dns, "web.shop.svc.cluster.local") is shop_web
    assert dns.service("web.nowhere") is None
    pods = {p.name: p for p in dns.pods()}
    assert pods["client-shop"].namespace == "shop" and pods["client"].namespace == "default"


def test_the_cluster_dns_is_drawn_like_other_pods_and_services_but_flagged(
        dns: picture.Picture) -> None:
    kube_dns = service(dns, "kube-dns.kube-system")
    assert kube_dns.dns and kube_dns.cluster_ip == "10.96.0.10"
    assert [s.ref for s in dns.services if s.dns] == ["kube-dns.kube-system"]
    flagged = sorted(p.name for p in dns.pods() if p.dns)
    assert flagged == ["coredns-0", "coredns-1"] == sorted(kube_dns.endpoint_pods)
    assert all(p.namespace == "kube-system" for p in dns.pods() if p.dns)
    assert details(dns)[picture.pod_id("coredns-0")]["role"].startswith("a cluster DNS pod")


# ------------------------------------------------------------------ dot and svg


def test_dot_draws_the_pool_the_arp_links_and_namespace_clusters(lb: picture.Picture,
                                                                  dns: picture.Picture) -> None:
    text = dot.source(lb)
    assert "subgraph cluster_lbpool" in text
    assert "loadBalancerPool 172.31.200.224/28 (.224–.239)" in text
    for a in lb.addresses:
        if a.announced_by is not None:
            edge = rf'"?{picture.address_id(a.ip)}"? -> "?node_{a.announced_by}_eth0"? \[[^]]*label=ARP'
            assert re.search(edge, text), a
    assert re.search(r"externalIP 172\.31\.200\.220\\n→ web-external", text)
    shop = dot.source(dns)
    assert re.search(r'subgraph "?cluster_node_node-1_ns_shop"? \{\s+color="#8c8c8c"[^\n]*\n?'
                     r'.*label="namespace shop \(team=a\)"', shop, re.S)
    for cluster in ("cluster_services_ns_default", '"cluster_services_ns_kube-system"',
                    "cluster_services_ns_shop", '"cluster_node_node-0_ns_kube-system"'):
        assert f"subgraph {cluster} {{" in shop
    assert "lbpool" not in dot.source(drawn(DNS, Path("/nonexistent")))   # no LB service: no pool


@pytest.mark.parametrize("lab", [LB, DNS], ids=lambda p: p.stem)
def test_svg_is_accepted_by_graphviz_and_every_detail_has_its_element(lab: Path,
                                                                     tmp_path: Path) -> None:
    need_dot()
    pic = drawn(lab, tmp_path)
    done = subprocess.run(["dot", "-Tsvg"], input=dot.source(pic), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    ids = {g.get("id") for g in ET.fromstring(done.stdout).iter(f"{SVG}g")}
    assert set(details(pic)) <= ids


# ------------------------------------------------------------------ mermaid


@pytest.mark.parametrize("lab", [LB, DNS], ids=lambda p: p.stem)
def test_mermaid_has_the_same_namespaces_pool_and_arp_links(lab: Path, tmp_path: Path) -> None:
    pic = drawn(lab, tmp_path)
    text = mermaid(pic)
    lines = text.splitlines()
    assert sum(line.lstrip().startswith("subgraph ") for line in lines) == \
        sum(line.strip() == "end" for line in lines)
    for ns in pic.namespaces:
        if any(p.namespace == ns.name for p in pic.pods()):
            assert f'["{ns.title()}"]' in text
    arp = [line for line in lines if "-->|ARP|" in line]
    assert len(arp) == sum(a.announced_by is not None for a in pic.addresses)
    assert ("loadBalancerPool" in text) == (lab == LB)
    assert len(re.findall(r":::dns$", text, re.M)) == 3      # coredns-0, coredns-1, kube-dns


@pytest.mark.parametrize("lab", [LB, DNS], ids=lambda p: p.stem)
def test_mermaid_is_rendered_by_mermaid(lab: Path, tmp_path: Path) -> None:
    """Mermaid's own renderer in headless Chromium, where installed (see test_graph.py)."""
    import shutil

    js, chromium = mermaid_js(), shutil.which("chromium")
    if js is None or chromium is None:
        pytest.skip("needs chromium and the mermaid npm package (KGEN_MERMAID_JS=...)")
    text = mermaid(drawn(lab, tmp_path))
    done = render_mermaid(js, chromium, text, tmp_path)
    assert 'data-rendered="yes"' in done.stdout, re.findall(r'data-error="[^"]*"', done.stdout)
    assert "coredns-0" in done.stdout


# ------------------------------------------------------------------ traces with more keys


def newer_trace() -> dict[str, Any]:
    """The ClusterIP fixture as a newer `kgen trace` writes it: a DNS lookup first, a hop
    decided by a NetworkPolicy, and a key nobody documented yet."""
    doc = copy.deepcopy(json.loads((FIXTURES / "clusterip.json").read_text()))
    doc["dst"]["name"] = "web.default.svc.cluster.local"
    doc["dns"] = {"name": "web.default.svc.cluster.local", "server": "10.96.0.10:53",
                  "answers": ["10.96.0.11"], "rcode": "NOERROR", "hops": [doc["hops"][0]]}
    doc["hops"][-1]["policy"] = "default/web-allow"
    doc["hops"][0]["future"] = {"anything": 1}
    doc["sometimeLater"] = True
    return doc


def test_a_trace_with_dns_and_policy_keys_still_draws(tmp_path: Path) -> None:
    need_dot()
    demo = drawn(DEMO, tmp_path)
    doc = newer_trace()
    laid = overlay.build(demo, doc)  # type: ignore[arg-type]
    plain = overlay.build(demo, json.loads((FIXTURES / "clusterip.json").read_text()))
    assert laid.moves == plain.moves and laid.marks == plain.marks
    assert laid.dns == "DNS web.default.svc.cluster.local → 10.96.0.11 from 10.96.0.10:53 " \
                       "(NOERROR), 1 hops"
    assert laid.hops[-1].policy == "default/web-allow"
    assert overlay.mismatches(demo, doc) == []  # type: ignore[arg-type]
    svg = dot.render(demo, "svg", laid)
    texts = [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert any(t.startswith("first: DNS web.default.svc.cluster.local") for t in texts)
    assert any("(policy default/web-allow)" in t for t in texts)
    assert "first: DNS web.default" in mermaid(demo, laid)


@pytest.mark.parametrize("broken", [None, "not a lookup", {"answers": ["x"]}, {"name": 5}])
def test_a_dns_key_out_of_shape_is_left_out(broken: Any) -> None:
    assert overlay.dns_lookup({"dns": broken}) is None


def test_graph_command_draws_a_newer_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_dot()
    monkeypatch.chdir(tmp_path)
    saved = tmp_path / "trace.json"
    saved.write_text(json.dumps(newer_trace()))
    for fmt in ("dot", "mermaid", "html"):
        result = runner.invoke(app, ["graph", "-l", str(DEMO), "--from-file", "--format", fmt,
                                     "--trace", str(saved), "-o", str(tmp_path / f"g.{fmt}")])
        assert result.exit_code == 0, result.output
        assert "first: DNS web.default.svc.cluster.local" in (tmp_path / f"g.{fmt}").read_text()


def test_a_trace_to_a_loadbalancer_ip_is_titled_with_its_service_and_announcer(
        lb: picture.Picture) -> None:
    """A client's request to a LoadBalancer IP, as `kgen trace client-0 IP --port 80` gives
    it: it goes over the node network to the announcing node, and the title says so."""
    [address] = [a for a in lb.addresses if a.service_name == "web-lb-local"]
    node = lb.node(address.announced_by or "")
    assert node is not None
    hop = {"table": None, "chain": None, "rule": None, "encap": None}
    doc = {"src": {"name": "client-0", "ip": "172.31.200.254"},
           "dst": {"name": address.ip, "ip": address.ip, "port": 80, "protocol": "tcp"},
           "verdict": "timeout", "answeredBy": None,
           "hops": [{**hop, "direction": "request", "node": "client-0", "step": "send",
                     "detail": "client-0 sends TCP SYN",
                     "packet": {"src": "172.31.200.254:40000", "dst": f"{address.ip}:80"}},
                    {**hop, "direction": "request", "node": node.name, "step": "arrive",
                     "detail": f"{node.name}: arrives on eth0",
                     "packet": {"src": "172.31.200.254:40000", "dst": f"{address.ip}:80"}}]}
    laid = overlay.build(lb, doc)  # type: ignore[arg-type]
    assert laid.title() == (f"trace client-0 → {address.ip} ({address.ip}:80 TCP), loadBalancerIP "
                            f"of web-lb-local, announced by {node.name}: timeout")
    assert laid.places[2] == picture.dev_id(node.name, "eth0")
    assert overlay.mismatches(lb, doc) == []  # type: ignore[arg-type]
