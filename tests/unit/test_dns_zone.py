"""The DNS's input computed from a real rendered cluster (the demo lab), a pod's
resolv.conf, and the server's zone file followed as it changes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, cast

from generator.lab.model import load_lab
from generator.node.contract import Cluster, NodeState, published_pods
from generator.node.dns.message import PTR, SRV, A, Srv
from generator.node.dns.records import ClusterZone
from generator.node.dns.resolvconf import resolv_conf
from generator.node.dns.server import RELOAD_EVERY, ZoneFile
from generator.node.dns.zone import dns_zone
from tests.conftest import ROOT
from tests.unit.conftest import desired

SVC = "default.svc.cluster.local"


def demo_cluster() -> Cluster:
    return cast(Cluster, desired(load_lab(ROOT / "labs" / "demo.yaml")))


def states(cluster: Cluster, pending: set[str]) -> dict[str, NodeState]:
    """Each node's published document: every pod Running at its IP, except `pending`."""
    docs: dict[str, Any] = {n["name"]: {"node": n["name"], "generation": cluster["generation"], "ready": True,
                                        "pods": {}, "proxy": None, "error": None} for n in cluster["nodes"]}
    for pod in cluster["pods"]:
        running = pod["name"] not in pending
        state = {"ip": pod["ip"], "state": "Running"} if running else {"ip": None, "state": "Pending"}
        docs[pod["node"]]["pods"][pod["name"]] = state
    return docs


def test_the_zone_document_of_the_demo_lab() -> None:
    cluster = demo_cluster()
    pods = published_pods(cluster, states(cluster, pending={"pod-3"}))
    zone = dns_zone(cluster, pods, nameserver="10.96.0.10")
    assert (zone["domain"], zone["namespaces"], zone["nameserver"]) == (
        "cluster.local", ["default", "kube-system"], "10.96.0.10")
    assert zone["reverseCIDRs"] == ["10.96.0.0/16", "10.244.0.0/16"]
    web = next(s for s in zone["services"] if s["name"] == "web")
    assert web == {"name": "web", "namespace": "default", "clusterIP": "10.96.0.11",
                   "ports": [{"name": "http", "protocol": "TCP", "port": 80},
                             {"name": "udp", "protocol": "UDP", "port": 8081}],
                   "endpoints": [{"ip": "10.244.1.2", "pod": "pod-2"}]}  # pod-3 is not ready
    assert next(s for s in zone["services"] if s["name"] == "no-backends")["endpoints"] == []
    # Pods with an IP, the DNS pods of kube-system among them.
    assert sorted(p["name"] for p in zone["pods"]) == ["coredns-0", "coredns-1", "pod-0", "pod-1",
                                                       "pod-2"]


def test_the_demo_lab_answers_by_the_spec() -> None:
    cluster = demo_cluster()
    zone = ClusterZone(dns_zone(cluster, published_pods(cluster, states(cluster, pending=set()))))
    assert zone.lookup(f"web.{SVC}") == {A: ["10.96.0.11"]}
    assert zone.lookup(f"_http._tcp.web.{SVC}") == {SRV: [Srv(0, 100, 80, f"web.{SVC}")]}
    assert zone.lookup(f"_udp._udp.web.{SVC}") == {SRV: [Srv(0, 100, 8081, f"web.{SVC}")]}
    assert zone.lookup(f"_http._tcp.web-nodeport.{SVC}") is None  # its port has no name
    assert zone.lookup("11.0.96.10.in-addr.arpa") == {PTR: [f"web.{SVC}"]}
    assert zone.lookup("10.0.96.10.in-addr.arpa") == {PTR: ["kube-dns.kube-system.svc.cluster.local"]}
    # pod-2 backs four services: one endpoint name, and PTR, in each (CoreDNS answers them all)
    assert sorted(zone.lookup("2.1.244.10.in-addr.arpa")[PTR]) == sorted(  # type: ignore[index]
        f"10-244-1-2.{s}.{SVC}" for s in ("web", "web-nodeport", "web-local", "web-sticky"))
    assert zone.lookup("2.0.244.10.in-addr.arpa") == {PTR: ["10-244-0-2.default.pod.cluster.local"]}


def test_a_headless_service_spec_has_no_cluster_ip() -> None:
    cluster = demo_cluster()
    cluster["services"][0]["clusterIP"] = "None"
    zone = dns_zone(cluster, published_pods(cluster, states(cluster, pending=set())))
    assert zone["services"][0]["clusterIP"] is None
    assert sorted(ClusterZone(zone).lookup(f"web.{SVC}")[A]) == ["10.244.1.2", "10.244.2.2"]  # type: ignore[index]


def test_a_pods_resolv_conf() -> None:
    assert resolv_conf("10.96.0.10", "shop", "cluster.local.").splitlines() == [
        "nameserver 10.96.0.10", "search shop.svc.cluster.local svc.cluster.local cluster.local",
        "options ndots:5"]


def write_zone(path: Path, services: list[str]) -> None:
    listed = [{"name": s, "namespace": "default", "clusterIP": f"10.96.0.{i + 1}", "ports": [],
               "endpoints": []} for i, s in enumerate(services)]
    doc = {"domain": "cluster.local", "namespaces": ["default"], "pods": [], "reverseCIDRs": [],
           "nameserver": None, "services": listed}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # as the writers do: readers never see half a file


def test_the_zone_file_is_followed_and_a_bad_one_keeps_the_last_good_zone(tmp_path: Path) -> None:
    path, log = tmp_path / "zone.json", io.StringIO()
    follower = ZoneFile(path, log)
    follower.refresh(now=100.0)
    assert follower.zone is None and "unreadable" in log.getvalue()
    write_zone(path, ["web"])
    follower.refresh(now=100.0 + RELOAD_EVERY / 2)
    assert follower.zone is None  # not looked at again yet: at most every RELOAD_EVERY
    follower.refresh(now=100.0 + RELOAD_EVERY)
    assert follower.zone is not None and follower.zone.lookup(f"web.{SVC}") == {A: ["10.96.0.1"]}
    write_zone(path, ["web", "shop"])
    follower.refresh(now=101.0)
    assert follower.zone.lookup(f"shop.{SVC}") == {A: ["10.96.0.2"]}
    path.write_text('{"domain": ')
    follower.refresh(now=102.0)
    assert follower.zone.lookup(f"shop.{SVC}") == {A: ["10.96.0.2"]}
    assert "not loaded, keeping the last good zone" in log.getvalue().splitlines()[-1]
    follower.refresh(now=103.0)
    assert log.getvalue().count("not loaded") == 1  # read once, said once


def test_namespaces_and_hostnames_follow_the_pod_specs_once_they_carry_them() -> None:
    """The lab model has no namespaces or hostnames yet; the zone already reads them."""
    cluster = demo_cluster()
    extra = cast(dict[str, dict[str, Any]], {p["name"]: p for p in cluster["pods"]})
    extra["pod-2"].update(hostname="web-a", subdomain="web")
    extra["pod-3"]["namespace"] = "shop"
    zone = dns_zone(cluster, published_pods(cluster, states(cluster, pending=set())))
    web = next(s for s in zone["services"] if s["name"] == "web")
    assert web["endpoints"] == [{"ip": "10.244.1.2", "pod": "pod-2", "hostname": "web-a"}]  # pod-3: other ns
    sticky = next(s for s in zone["services"] if s["name"] == "web-sticky")
    assert sticky["endpoints"] == [{"ip": "10.244.1.2", "pod": "pod-2"}]  # subdomain names another service
    assert ("pod-3", "shop") in {(p["name"], p["namespace"]) for p in zone["pods"]}
    assert "shop" in zone["namespaces"]
    assert ClusterZone(zone).lookup(f"web-a.web.{SVC}") == {A: ["10.244.1.2"]}
