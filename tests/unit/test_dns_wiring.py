"""The cluster DNS wired into a lab (issue 23, contract section 8): kube-dns and the
coredns pods in the cluster state, the names and address they take, the zone file
each agent keeps, each pod's resolv.conf and hosts file, and `kgen up`'s wait."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from generator.cluster.build import build_state
from generator.lab.errors import LabError
from generator.lab.model import load_lab, parse_lab
from generator.node.contract import serving_pods
from generator.node.netpol.spec import netpol_digest
from generator.node.pod_dns import (
    ZoneWriter,
    hosts_file,
    remove_pod_files,
    write_pod_files,
    zone_digest,
    zone_text,
)
from generator.runtime.ready import pending
from tests.conftest import ROOT

NODE_NETWORK = ipaddress.IPv4Network("172.28.192.0/24")
SMALL: dict[str, Any] = {
    "name": "ns-small", "nodes": ["node-0", "node-1", "node-2"],
    "pods": [{"name": "a", "node": "node-0", "labels": {"app": "a"}},
             {"name": "b", "namespace": "shop", "node": "node-1", "labels": {"app": "a"}}],
    "services": [{"name": "a", "selector": {"app": "a"}, "ports": [{"port": 80}]}],
}


def state(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(build_state(parse_lab(doc, "lab.yaml"), NODE_NETWORK))


def test_dns_pods_spread_round_robin_behind_kube_dns() -> None:
    cluster = state({**SMALL, "dns": {"replicas": 4}})
    dns = [p for p in cluster["pods"] if p["namespace"] == "kube-system"]
    assert [(p["name"], p["node"]) for p in dns] == [
        ("coredns-0", "node-0"), ("coredns-1", "node-1"), ("coredns-2", "node-2"),
        ("coredns-3", "node-0")]
    assert all(p["labels"] == {"k8s-app": "kube-dns"} for p in dns)
    argv = dns[0]["containers"][0]["command"]
    assert argv[:3] == ["python3", "-m", "generator.node.dns"] and "--port" in argv
    # Ready (an endpoint of kube-dns) only once it listens, as a readiness probe would say.
    assert dns[0]["containers"][0]["readyPorts"] == [["udp", 53], ["tcp", 53]]
    assert "readyPorts" not in cluster["pods"][0]["containers"][0]
    (svc,) = [s for s in cluster["services"] if s["name"] == "kube-dns"]
    assert (svc["namespace"], svc["clusterIP"], svc["selector"]) == (
        "kube-system", "10.96.0.10", {"k8s-app": "kube-dns"})
    assert [(p["name"], p["port"], p["targetPort"], p["protocol"]) for p in svc["ports"]] == [
        ("dns", 53, 53, "UDP"), ("dns-tcp", 53, 53, "TCP")]
    assert cluster["dns"] == {"enabled": True, "clusterIP": "10.96.0.10", "replicas": 4}


def test_the_dns_moves_no_address_of_the_labs_own_pods() -> None:
    with_dns, without = state(SMALL), state({**SMALL, "dns": {"enabled": False}})
    ips = {p["name"]: p["ip"] for p in with_dns["pods"]}
    assert all(ips[p["name"]] == p["ip"] for p in without["pods"])
    assert [p["name"] for p in without["pods"]] == ["a", "b"]
    assert not any(s["name"] == "kube-dns" for s in without["services"])


def test_the_demo_keeps_web_off_the_dns_address() -> None:
    cluster = build_state(load_lab(ROOT / "labs" / "demo.yaml"), NODE_NETWORK)
    addresses = [s["clusterIP"] for s in cluster["services"]]
    assert len(set(addresses)) == len(addresses) and "10.96.0.10" in addresses


@pytest.mark.parametrize(("change", "line"), [
    ({"services": [{"name": "x", "clusterIP": "10.96.0.10", "ports": [{"port": 80}]}]},
     "services[0].clusterIP: 10.96.0.10 is already used by dns.clusterIP (the kube-dns service)"),
    ({"dns": {"clusterIP": "10.97.0.10"}},
     "dns.clusterIP: 10.97.0.10 is not a usable address of serviceCIDR 10.96.0.0/16"),
    ({"pods": [{"name": "coredns-1", "node": "node-0"}]},
     "pods[0].name: 'coredns-1' is a DNS pod's name (dns.replicas); rename the pod or set "
     "dns.enabled: false"),
    ({"services": [{"name": "kube-dns", "namespace": "kube-system", "ports": [{"port": 53}]}]},
     "services[0]: kube-system/kube-dns is the lab's DNS service; rename the service or set "
     "dns.enabled: false"),
    ({"clusterDomain": "Cluster.Local"},
     "clusterDomain: 'Cluster.Local' is not a valid name (a DNS domain: dot-separated labels "
     "of lower-case letters, digits and '-', at most 200 characters)"),
])
def test_what_the_dns_takes_is_refused_in_one_line(change: dict[str, Any], line: str) -> None:
    with pytest.raises(LabError) as err:
        parse_lab({**SMALL, **change}, "lab.yaml")
    assert str(err.value) == f"lab.yaml: {line}"


def test_without_dns_its_names_and_address_are_free() -> None:
    doc = {**SMALL, "dns": {"enabled": False},
           "pods": [{"name": "coredns-0", "node": "node-0"}],
           "services": [{"name": "x", "clusterIP": "10.96.0.10", "ports": [{"port": 80}]}]}
    assert parse_lab(doc, "lab.yaml").services[0].cluster_ip == "10.96.0.10"


def running_docs(cluster: dict[str, Any]) -> dict[str, Any]:
    """Every node's published document with all its pods Running."""
    docs: dict[str, Any] = {n["name"]: {"node": n["name"], "generation": cluster["generation"],
                                        "ready": True, "pods": {}, "proxy": None, "error": None,
                                        "netpol": {"digest": netpol_digest(cluster), "error": None}}
                            for n in cluster["nodes"]}
    for p in cluster["pods"]:
        docs[p["node"]]["pods"][p["name"]] = {"ip": p["ip"], "state": "Running"}
    return docs


def test_the_zone_file_is_written_only_when_it_changes(tmp_path: Path) -> None:
    cluster = state(SMALL)
    pods = serving_pods(cluster, running_docs(cluster), {n["name"] for n in cluster["nodes"]})
    writer = ZoneWriter(tmp_path / "dns" / "zone.json")
    assert writer.update(cluster, pods) is True
    zone = json.loads(writer.path.read_text())
    assert zone["nameserver"] == "10.96.0.10" and zone["domain"] == "cluster.local"
    assert {(s["namespace"], s["name"]) for s in zone["services"]} == {
        ("default", "a"), ("kube-system", "kube-dns")}
    inode = writer.path.stat().st_ino
    assert writer.update(cluster, pods) is False and writer.path.stat().st_ino == inode
    fewer = [p for p in pods if p["name"] != "a"]
    assert writer.update(cluster, fewer) is True and writer.path.stat().st_ino != inode
    assert writer.digest == zone_digest(writer.path.read_text())


def test_no_zone_without_dns(tmp_path: Path) -> None:
    cluster = state({**SMALL, "dns": {"enabled": False}})
    assert zone_text(cluster, []) is None
    writer = ZoneWriter(tmp_path / "zone.json")
    assert writer.update(cluster, []) is False and not writer.path.exists()


def test_a_pods_resolv_conf_and_hosts_file(tmp_path: Path) -> None:
    spec: Any = {"name": "b", "namespace": "shop", "node": "node-1", "labels": {},
                 "containers": []}
    write_pod_files(spec, "10.244.1.2", ("10.96.0.10", "cluster.local"), etc=tmp_path)
    assert (tmp_path / "b" / "resolv.conf").read_text() == (
        "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n")
    hosts = (tmp_path / "b" / "hosts").read_text().splitlines()
    assert hosts[0] == "# Kubernetes-managed hosts file." and hosts[-1] == "10.244.1.2\tb"
    assert "127.0.0.1\tlocalhost" in hosts
    remove_pod_files("b", etc=tmp_path)
    assert not (tmp_path / "b").exists()
    write_pod_files(spec, "10.244.1.2", None, etc=tmp_path)  # no DNS: the node's resolv.conf
    assert not (tmp_path / "b" / "resolv.conf").exists() and (tmp_path / "b" / "hosts").exists()
    assert hosts_file("x", None).splitlines()[-1] == "fe00::2\tip6-allrouters"


def test_kgen_up_waits_for_every_node_to_serve_the_current_zone() -> None:
    from generator.node.contract import input_digest

    cluster = state(SMALL)
    docs = running_docs(cluster)
    live = {n["name"] for n in cluster["nodes"]}
    pods = serving_pods(cluster, docs, live)
    for doc in docs.values():
        doc["proxy"] = {"digest": input_digest(cluster["services"], pods), "error": None}
    assert pending(cluster, docs, live) == [f"DNS zone on {n}" for n in sorted(live)]
    text = zone_text(cluster, pods)
    assert text is not None
    for doc in docs.values():
        doc["dns"] = {"digest": zone_digest(text)}
    assert pending(cluster, docs, live) == []


def test_a_headless_service_has_no_address_and_no_proxy_rules() -> None:
    from generator.node.proxy.service import port_infos

    headless = {"name": "h", "clusterIP": "None", "selector": {"app": "a"},
                "ports": [{"name": "http", "port": 80}]}
    cluster = state({**SMALL, "services": [*SMALL["services"], headless]})
    (svc,) = [s for s in cluster["services"] if s["name"] == "h"]
    assert svc["clusterIP"] == "None"
    pods = serving_pods(cluster, running_docs(cluster), {n["name"] for n in cluster["nodes"]})
    assert "default/h:http" not in {i.spn for i in port_infos(cluster["services"], pods)}
    text = zone_text(cluster, pods)
    assert text is not None
    (h,) = [s for s in json.loads(text)["services"] if s["name"] == "h"]
    assert h["clusterIP"] is None and [e["pod"] for e in h["endpoints"]] == ["a"]
    with pytest.raises(LabError, match=r"services\[1\].clusterIP: None \(a headless service\) "
                                       "is for ClusterIP services only"):
        parse_lab({**SMALL, "services": [*SMALL["services"], {**headless, "type": "NodePort"}]},
                  "lab.yaml")
