"""`kgen trace` to a LoadBalancer service and to a DNS name, on live labs in both proxy
modes (issues 22 and 23).

One lab per mode: labs/loadbalancer.yaml with labs/dns.yaml's namespaces, pods and
services added (its pods web-0 and web-1 are loadbalancer.yaml's already), so both
lessons share one bring-up. The node network is rewritten to
KGEN_TEST_TRACE_LB_NETWORKS (two /24 prefixes, one per mode, e.g.
`172.29.10,172.29.11`) so that engineers sharing an engine do not meet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.lab.conftest import RunningLab, bring_up

NETWORKS = os.environ.get("KGEN_TEST_TRACE_LB_NETWORKS", "172.31.204,172.31.205").split(",")
LAB_PREFIX = "172.31.200."  # labs/loadbalancer.yaml's node network


def lab_file(mode: str, workdir: Path) -> Path:
    net = NETWORKS[0 if mode == "iptables" else 1]
    doc = yaml.safe_load((ROOT / "labs" / "loadbalancer.yaml").read_text()
                         .replace(LAB_PREFIX, f"{net}."))
    dns = yaml.safe_load((ROOT / "labs" / "dns.yaml").read_text())
    have = {p["name"] for p in doc["pods"]}
    doc["namespaces"] = dns["namespaces"]
    doc["pods"] += [p for p in dns["pods"] if p["name"] not in have]
    doc["services"] += dns["services"]
    doc["name"], doc["proxyMode"] = f"trlb-{mode[:3]}", mode
    path = workdir / "trace-lb-dns.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp(f"trlb-{request.param}")
    yield from bring_up(lab_file(request.param, workdir), workdir)


def trace(lab: RunningLab, *args: str) -> dict[str, Any]:
    return dict(json.loads(lab.kgen("trace", *args, "--json").stdout))


def service(lab: RunningLab, name: str, namespace: str = "default") -> dict[str, Any]:
    return next(s for s in lab.status()["services"]
                if s["name"] == name and s["namespace"] == namespace)


def pod_ips(lab: RunningLab) -> dict[str, str]:
    return {p["name"]: p["ip"] for p in lab.status()["pods"]}


def nft(lab: RunningLab) -> bool:
    return lab.name.endswith("nft")


def request(hops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in hops if h["direction"] == "request"]


def test_a_client_reaches_a_loadbalancer_ip_through_its_announcer(lab: RunningLab) -> None:
    svc = service(lab, "web-lb")
    doc = trace(lab, "client-0", "web-lb")
    assert doc["dst"] == {"name": "web-lb", "ip": svc["loadBalancerIP"], "port": 80,
                          "protocol": "tcp"}
    assert doc["verdict"] == "answered" and doc["answeredBy"] in {"web-0", "web-1"}
    hops = request(doc["hops"])
    # The client's frame goes to the node answering ARP for the IP; its hops start there.
    assert hops[1]["node"] == "client-0" and hops[2]["node"] == svc["announcedBy"]
    assert all(h["node"] != "client-0" for h in hops[2:])
    chains = [h["chain"] or "" for h in hops if h["node"] == svc["announcedBy"]]
    ext = "external-" if nft(lab) else "KUBE-EXT-"
    assert any(c.startswith(ext) for c in chains)
    dnat = next(h for h in hops if h["step"] == "dnat")
    assert dnat["node"] == svc["announcedBy"]
    assert dnat["packet"]["dst"] == f"{pod_ips(lab)[doc['answeredBy']]}:8080"
    # externalTrafficPolicy Cluster: the announcer masquerades the client.
    assert any(h["step"] == "masquerade" and h["node"] == svc["announcedBy"] for h in hops)
    assert doc["hops"][-1]["node"] == "client-0" and doc["hops"][-1]["step"] == "deliver"
    assert doc["dns"] is None


def test_a_source_outside_the_ranges_is_dropped_by_the_firewall(lab: RunningLab) -> None:
    svc = service(lab, "web-lb-ranges")
    doc = trace(lab, "client-1", "web-lb-ranges")
    assert doc["verdict"] == "dropped"
    last = doc["hops"][-1]
    assert last["node"] == svc["announcedBy"] and last["step"] == "drop"
    fw = "firewall-" if nft(lab) else "KUBE-PROXY-FIREWALL"
    assert last["chain"].startswith(fw)


def test_an_address_equal_to_a_loadbalancer_ip_is_the_service(lab: RunningLab) -> None:
    svc = service(lab, "web-lb-local")
    doc = trace(lab, "client-0", svc["loadBalancerIP"], "--port", "80")
    assert doc["verdict"] == "answered"
    # Local: the announcer has an endpoint of its own, and the client's address reaches it.
    hops = request(doc["hops"])
    assert lab.node_of(doc["answeredBy"]) == svc["announcedBy"]
    assert not any(h["step"] == "masquerade" for h in hops)
    assert hops[-1]["packet"]["src"].startswith(next(
        c["ip"] for c in lab.status()["clients"] if c["name"] == "client-0") + ":")


def test_a_pod_looks_the_name_up_first_then_sends(lab: RunningLab) -> None:
    web = service(lab, "web", "shop")
    dns_ip = service(lab, "kube-dns", "kube-system")["clusterIP"]
    doc = trace(lab, "client", "web.shop.svc.cluster.local")
    dns = doc["dns"]
    assert dns["server"] == f"{dns_ip}:53" and dns["rcode"] == "NOERROR"
    assert dns["name"] == "web.shop.svc.cluster.local" and dns["answers"] == [web["clusterIP"]]
    # ndots:5: the name has 4 dots, so the search list is tried first.
    assert [t["rcode"] for t in dns["tried"]] == ["NXDOMAIN"] * 3 + ["NOERROR"]
    ips = pod_ips(lab)
    dnat = next(h for h in request(dns["hops"]) if h["step"] == "dnat")
    assert dns["answeredBy"].startswith("coredns-")
    assert dnat["packet"]["dst"] == f"{ips[dns['answeredBy']]}:53"
    assert dns["hops"][-1]["direction"] == "reply" and dns["hops"][-1]["step"] == "deliver"
    assert f"into client (eth0 {ips['client']}:" in dns["hops"][-1]["detail"]
    assert doc["dst"] == {"name": "web.shop.svc.cluster.local", "ip": web["clusterIP"],
                          "port": 80, "protocol": "tcp"}
    assert doc["verdict"] == "answered" and doc["answeredBy"] == "shop-web-0"


def test_a_short_name_is_the_sources_namespaces_service(lab: RunningLab) -> None:
    doc = trace(lab, "client-shop", "web")
    assert doc["dns"]["name"] == "web.shop.svc.cluster.local"
    assert doc["answeredBy"] == "shop-web-0"
    text = lab.kgen("trace", "client", "web").stdout.splitlines()
    assert text[0].startswith("DNS lookup: client (") and "query" in text and "answer" in text
    assert text[1] == f"  asked web.default.svc.cluster.local: NOERROR {service(lab, 'web')['clusterIP']}"
    assert any(line.startswith("trace client (") for line in text)
    assert text[-1].startswith("verdict: answered by web-")


def test_a_name_outside_the_cluster_is_refused_and_nothing_is_sent(lab: RunningLab) -> None:
    doc = trace(lab, "client", "example.org")
    assert doc["dns"]["rcode"] == "REFUSED" and doc["dns"]["answers"] == []
    assert doc["dns"]["verdict"] == "answered" and doc["dns"]["hops"]
    assert doc["verdict"] == "refused" and doc["hops"] == [] and doc["answeredBy"] is None


def test_graph_draws_a_trace_with_its_lookup(lab: RunningLab) -> None:
    saved = lab.dir / "trace-dns.json"
    saved.write_text(lab.kgen("trace", "client", "web.shop", "--json").stdout)
    plain = lab.kgen("graph", "--format", "mermaid").stdout
    traced = lab.kgen("graph", "--trace", str(saved), "--format", "mermaid").stdout
    # The request's path is drawn: numbered hops along thick edges the plain picture lacks.
    assert "==>" not in plain and "==>|" in traced
