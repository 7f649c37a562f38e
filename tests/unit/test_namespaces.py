"""Namespaces (issue 23, contract section 1): in the lab file, in the cluster state,
in what kube-proxy selects and names, in status, and in the names commands take."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from generator.cluster.build import build_state
from generator.cluster.targets import find_pod, find_service
from generator.lab.errors import LabError
from generator.lab.model import parse_lab
from generator.node.proxy.rules import service_port_rules
from generator.node.proxy.service import PortTracker, port_infos
from generator.runtime.execute import exec_argv
from generator.runtime.status import service_endpoints

NODE_NETWORK = ipaddress.IPv4Network("172.28.192.0/24")

# `web` in two namespaces, each selecting `app: web`, and a pod of each namespace.
TWO_WEBS: dict[str, Any] = {
    "name": "ns-two",
    "nodes": ["node-0", "node-1"],
    "dns": {"enabled": False},  # the lab's own services only (test_dns_wiring adds kube-dns)
    "namespaces": [{"name": "shop", "labels": {"team": "a"}}],
    "pods": [
        {"name": "web-default", "node": "node-0", "labels": {"app": "web"}},
        {"name": "web-shop", "namespace": "shop", "node": "node-1", "labels": {"app": "web"}},
        {"name": "lone", "namespace": "tools", "node": "node-1"},
    ],
    "services": [
        {"name": "web", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80,
                                                               "targetPort": 8080}]},
        {"name": "web", "namespace": "shop", "selector": {"app": "web"},
         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    ],
}


def running(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod published Running with its address, as node agents would."""
    return [{"name": p["name"], "node": p["node"], "ip": p["ip"], "state": "Running",
             "labels": p["labels"], "namespace": p["namespace"]} for p in cluster["pods"]]


@pytest.fixture
def cluster() -> dict[str, Any]:
    return dict(build_state(parse_lab(TWO_WEBS, "two.yaml"), NODE_NETWORK))


def test_every_namespace_exists_with_its_name_label() -> None:
    lab = parse_lab(TWO_WEBS, "two.yaml")
    assert list(lab.namespaces) == ["default", "kube-system", "shop", "tools"]
    assert lab.namespaces["shop"] == {"team": "a", "kubernetes.io/metadata.name": "shop"}
    assert lab.namespaces["tools"] == {"kubernetes.io/metadata.name": "tools"}
    assert [p.namespace for p in lab.pods] == ["default", "shop", "tools"]
    assert [s.namespace for s in lab.services] == ["default", "shop"]


def test_web_in_two_namespaces_is_two_services(cluster: dict[str, Any]) -> None:
    webs = [(s["namespace"], s["name"], s["clusterIP"]) for s in cluster["services"]]
    assert [w[:2] for w in webs] == [("default", "web"), ("shop", "web")]
    assert webs[0][2] != webs[1][2]


def test_a_default_service_keeps_the_address_it_had_before_namespaces() -> None:
    """Allocation is seeded by the bare name in `default`, so labs keep their cluster IPs."""
    alone = {**TWO_WEBS, "services": TWO_WEBS["services"][:1]}
    before = build_state(parse_lab(alone, "a.yaml"), NODE_NETWORK)["services"][0]["clusterIP"]
    both = build_state(parse_lab(TWO_WEBS, "b.yaml"), NODE_NETWORK)["services"]
    assert both[0]["clusterIP"] == before


def test_a_service_selects_only_pods_of_its_namespace(cluster: dict[str, Any]) -> None:
    pods = running(cluster)
    ip = {p["name"]: p["ip"] for p in pods}
    default_web, shop_web = cluster["services"]
    assert service_endpoints(default_web, pods) == [f"{ip['web-default']}:8080"]
    assert service_endpoints(shop_web, pods) == [f"{ip['web-shop']}:8080"]
    infos = {i.spn: [e.ip for e in i.endpoints] for i in port_infos(cluster["services"], pods)}
    assert infos == {"default/web:http": [ip["web-default"]], "shop/web:http": [ip["web-shop"]]}


def test_the_tracker_keeps_same_named_services_apart(cluster: dict[str, Any]) -> None:
    tracker = PortTracker()
    pods = running(cluster)
    assert tracker.update(cluster["services"], pods) == list(port_infos(cluster["services"], pods))
    moved = [{**p, "namespace": "default"} if p["name"] == "web-shop" else p for p in pods]
    found = {i.spn: len(i.endpoints) for i in tracker.update(cluster["services"], moved)}
    assert found == {"default/web:http": 2, "shop/web:http": 0}


def test_kube_proxy_names_and_comments_carry_the_namespace(cluster: dict[str, Any]) -> None:
    shop = next(i for i in port_infos(cluster["services"], running(cluster))
                if i.namespace == "shop")
    rules = service_port_rules(shop, "node-0", "10.244.0.0/16", False)
    text = "\n".join(r for chain in rules.chains.values() for r in chain)
    assert '"shop/web:http' in text and "default/web" not in text


def test_targets_take_namespace_slash_pod(cluster: dict[str, Any]) -> None:
    assert find_pod(cluster["pods"], "shop/web-shop")["name"] == "web-shop"  # type: ignore[index]
    assert find_pod(cluster["pods"], "web-shop")["name"] == "web-shop"  # type: ignore[index]
    assert find_pod(cluster["pods"], "default/web-shop") is None
    argv = exec_argv(cluster, "shop/web-shop", ["true"], False)  # type: ignore[arg-type]
    assert argv[-4:] == ["netns", "exec", "web-shop", "true"]
    with pytest.raises(LookupError, match="NAMESPACE/POD"):
        exec_argv(cluster, "tools/web-shop", ["true"], False)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "from_namespace", "expected"), [
    ("web", "default", "default"),
    ("web", "shop", "shop"),
    ("web", "tools", None),  # a short name resolves in the asking pod's namespace only
    ("web.shop", "default", "shop"),
    ("web.default", "shop", "default"),
    ("web.shop.svc", "default", "shop"),
    ("web.shop.svc.cluster.local", "default", "shop"),
    ("web.shop.svc.cluster.local.", "default", "shop"),
    ("web.nowhere", "default", None),
    ("web.shop.svc.other.domain", "default", None),
])
def test_service_names_resolve_as_a_pod_resolves_them(cluster: dict[str, Any], name: str,
                                                      from_namespace: str,
                                                      expected: str | None) -> None:
    found = find_service(cluster["services"], name, "cluster.local", from_namespace)
    assert (found["namespace"] if found else None) == expected


def test_duplicate_service_in_one_namespace_is_one_line() -> None:
    doc = {**TWO_WEBS, "services": [*TWO_WEBS["services"], TWO_WEBS["services"][1]]}
    with pytest.raises(LabError) as err:
        parse_lab(doc, "dup.yaml")
    assert str(err.value) == ("dup.yaml: services[2]: duplicate service 'web' in namespace "
                              "'shop' (also at [1])")
