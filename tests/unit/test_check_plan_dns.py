"""The plan's DNS checks (labs/dns.yaml: `web` in default and shop, a headless service),
and the check loose ends namespaces exposed: terminating pods and check ids per
namespace/service, the LoadBalancer announcer from the running lab's status."""

from __future__ import annotations

import ipaddress
from typing import Any

from generator.checks.answerers import terminating_pods
from generator.checks.base import LabView, Planning
from generator.checks.kinds.dns import Dns, PodLookups, dns_pods, sources
from generator.checks.kinds.loadbalancer import announcer
from generator.checks.plan import plan
from generator.cluster.build import build_state
from generator.lab.model import load_lab, parse_lab
from tests.conftest import ROOT

NET = ipaddress.ip_network("172.29.19.0/24")


def dns_state() -> Any:
    return build_state(load_lab(ROOT / "labs" / "dns.yaml"), NET)


def dns_checks(state: Any = None, status: Any = None) -> dict[str, Dns]:
    return {c.id: c for c in plan(state or dns_state(), status) if isinstance(c, Dns)}


def ip_of(state: Any, namespace: str, name: str) -> str:
    return next(s["clusterIP"] for s in state["services"]
                if (s.get("namespace", "default"), s["name"]) == (namespace, name))


def pod_ip(state: Any, name: str) -> str:
    return next(p["ip"] for p in state["pods"] if p["name"] == name)


def test_one_source_per_namespace_and_the_dns_pods_never_resolve() -> None:
    state = dns_state()
    ctx = Planning(state)
    picked = [p["name"] for p in sources(ctx, [p for p in state["pods"]
                                               if p["name"].startswith("coredns-")])]
    assert picked == ["client", "client-shop"]  # default and shop; they cover both nodes
    assert {c.source for c in dns_checks(state).values()} == {"client", "client-shop"}


def test_a_node_without_a_namespace_source_gets_one() -> None:
    state = build_state(parse_lab({"name": "t", "nodes": ["n0", "n1", "n2"], "pods": [
        {"name": "a", "node": "n0"}, {"name": "b", "node": "n0"}, {"name": "c", "node": "n2"}]}),
        NET)
    ctx = Planning(state)
    assert [p["name"] for p in sources(ctx, dns_pods(ctx))] == ["a", "c"]


def test_the_short_name_is_asked_only_in_its_own_namespace() -> None:
    state = dns_state()
    checks = dns_checks(state)
    default_web, shop_web = ip_of(state, "default", "web"), ip_of(state, "shop", "web")
    assert default_web != shop_web
    assert checks["dns[web.default from client]"].params["names"] == {
        "web": [default_web], "web.default": [default_web],
        "web.default.svc.cluster.local": [default_web]}
    assert checks["dns[web.shop from client-shop]"].params["names"] == {
        "web": [shop_web], "web.shop": [shop_web], "web.shop.svc.cluster.local": [shop_web]}
    # From shop, default's web only by its longer names: `web` there is shop's.
    assert checks["dns[web.default from client-shop]"].params["names"] == {
        "web.default": [default_web], "web.default.svc.cluster.local": [default_web]}


def test_headless_expects_exactly_its_ready_endpoints() -> None:
    state = dns_state()
    webs = sorted([pod_ip(state, "web-0"), pod_ip(state, "web-1")], key=ipaddress.IPv4Address)
    check = dns_checks(state)["dns[web-headless.default from client]"]
    assert set(check.params["names"]) == {"web-headless", "web-headless.default",
                                          "web-headless.default.svc.cluster.local"}
    assert all(ips == webs for ips in check.params["names"].values())  # shop-web-0 is not one
    # With a running lab's status, exactly the endpoints it lists (web-1 is not ready).
    status = {"pods": [], "services": [{"name": "web-headless", "namespace": "default",
                                        "endpoints": [f"{webs[0]}:8080"]}]}
    check = dns_checks(state, status)["dns[web-headless.default from client]"]
    assert all(ips == [webs[0]] for ips in check.params["names"].values())


def test_an_outside_name_must_be_refused_and_one_srv_record_is_checked() -> None:
    checks = dns_checks()
    refused = checks["dns[example.org. from client-shop]"]
    assert refused.params["want"] == {"rcode": "REFUSED", "answers": None}
    srv = [c for c in checks.values() if c.label.startswith("SRV ")]
    assert [c.target for c in srv] == ["_http._tcp.web.default.svc.cluster.local."]
    assert srv[0].params["want"]["answers"] == ["0 100 80 web.default.svc.cluster.local."]


def test_a_source_runs_all_its_lookups_once_and_asks_every_dns_pod() -> None:
    state = dns_state()
    checks = dns_checks(state)
    mine = [c for c in checks.values() if c.source == "client"]
    lookups = {id(c.params["lookups"]) for c in mine}
    assert len(lookups) == 1  # one `docker exec` for all of client's checks
    shared: PodLookups = mine[0].params["lookups"]
    dns_ips = {pod_ip(state, "coredns-0"), pod_ip(state, "coredns-1")}
    assert {q["server"] for q in shared.queries[:2]} == dns_ips
    assert "web" in shared.names and "web.shop.svc.cluster.local" in shared.names
    # Its datapath: its own node's NAT, and the path to every DNS pod.
    parts = mine[0].depends
    assert {"nat:node-0", "veth:client", "veth:coredns-0", "veth:coredns-1",
            "overlay:node-1"} <= parts


def test_without_the_lab_dns_there_are_no_dns_checks() -> None:
    doc = {"name": "t", "nodes": ["n0"], "dns": {"enabled": False},
           "pods": [{"name": "a", "node": "n0"}],
           "services": [{"name": "s", "selector": {"app": "x"}, "ports": [{"port": 80}]}]}
    assert dns_checks(build_state(parse_lab(doc), NET)) == {}


class FakeResult:
    def __init__(self, stdout: str) -> None:
        self.stdout, self.stderr, self.rc = stdout, "", 0


class FakeHost:
    def __init__(self, stdout: str) -> None:
        self.stdout, self.runs = stdout, 0

    def run(self, _cmd: str) -> FakeResult:
        self.runs += 1
        return FakeResult(self.stdout)


def judge(check: Dns, names: dict[str, Any], queries: list[dict[str, Any]]) -> Any:
    import json

    host = FakeHost(json.dumps({"names": names, "queries": queries}))
    view = LabView(dns_state(), {"pods": [], "services": []}, lambda _name: host)  # type: ignore[typeddict-item]
    return check.run(view), host


def test_a_wrong_answer_names_the_name_what_came_and_what_was_expected() -> None:
    state = dns_state()
    check = dns_checks(state)["dns[web.default from client-shop]"]
    lookups: PodLookups = check.params["lookups"]
    ok_pod = {"rcode": "NOERROR", "answers": ["10.96.0.10"], "error": None}
    queries = [ok_pod, ok_pod] + [{"rcode": "REFUSED", "answers": [], "error": None}] * (
        len(lookups.queries) - 2)
    shop_web, default_web = ip_of(state, "shop", "web"), ip_of(state, "default", "web")
    names = {n: {"ips": [default_web], "error": None} for n in lookups.names}
    names["web.default"] = {"ips": [shop_web], "error": None}
    outcome, host = judge(check, names, queries)
    assert not outcome.passed
    assert outcome.seen == f"web.default → {shop_web}, expected {default_web}"
    assert host.runs == 1
    # A DNS pod that does not answer fails every check of the source, named (a new plan:
    # a source's lookups run once).
    check = dns_checks(state)["dns[web.default from client-shop]"]
    queries[1] = {"rcode": None, "answers": [], "error": "timed out"}
    names["web.default"] = {"ips": [default_web], "error": None}
    outcome, _ = judge(check, names, queries)
    assert not outcome.passed and "coredns-1" in outcome.seen and "timed out" in outcome.seen


def test_terminating_pods_are_kept_per_namespace_and_service() -> None:
    status: Any = {"pods": [
        {"name": "a", "namespace": "default", "node": "n0", "ip": "10.244.0.5", "state": "Terminating"},
        {"name": "b", "namespace": "shop", "node": "n0", "ip": "10.244.0.6", "state": "Terminating"}],
        "services": [
            {"name": "web", "namespace": "default", "terminating": ["10.244.0.5:8080"]},
            {"name": "web", "namespace": "shop", "terminating": ["10.244.0.6:8080"]}]}
    found = terminating_pods(status)
    assert [p["name"] for p in found[("default", "web")]] == ["a"]
    assert [p["name"] for p in found[("shop", "web")]] == ["b"]


def test_check_ids_tell_two_namespaces_web_apart() -> None:
    ids = [c.id for c in plan(dns_state())]
    assert len(ids) == len(set(ids))
    assert "clusterip[web:80 from client]" in ids and "clusterip[web.shop:80 from client]" in ids
    # default's web is backed by default's pods only: shop-web-0 is in another namespace.
    check = next(c for c in plan(dns_state()) if c.id == "clusterip[web:80 from client]")
    assert check.params["backends"] == ["web-0", "web-1"]


def test_the_announcer_is_the_running_labs() -> None:
    state = build_state(load_lab(ROOT / "labs" / "loadbalancer.yaml"), NET)
    svc = next(s for s in state["services"] if s["name"] == "web-lb")
    elected = announcer(Planning(state), svc)
    other = next(n["name"] for n in state["nodes"] if n["name"] != elected)
    status: Any = {"pods": [], "services": [{"name": "web-lb", "namespace": "default",
                                             "announcedBy": other, "endpoints": []}]}
    assert announcer(Planning(state, status), svc) == other


def test_a_pod_the_policies_keep_from_the_dns_asks_nothing() -> None:
    doc = {"name": "t", "nodes": ["n0", "n1"], "namespaces": [{"name": "shop"}],
           "pods": [{"name": "a", "node": "n0"},
                    {"name": "s", "node": "n1", "namespace": "shop"}],
           "networkPolicies": [{"metadata": {"name": "deny-out", "namespace": "shop"},
                                "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}]}
    ctx = Planning(build_state(parse_lab(doc), NET))
    assert [p["name"] for p in sources(ctx, dns_pods(ctx))] == ["a"]
    # Allow DNS egress and shop's pod asks again.
    doc["networkPolicies"].append({"metadata": {"name": "dns", "namespace": "shop"}, "spec": {
        "podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"ports": [{"protocol": "UDP", "port": 53}]}]}})
    ctx = Planning(build_state(parse_lab(doc), NET))
    assert [p["name"] for p in sources(ctx, dns_pods(ctx))] == ["a", "s"]


def test_a_service_named_as_the_asking_pod_resolves_from_its_hosts_file() -> None:
    doc = {"name": "t", "nodes": ["n0"], "pods": [{"name": "web", "node": "n0",
                                                    "labels": {"app": "web"}}],
           "services": [{"name": "web", "selector": {"app": "web"},
                         "ports": [{"port": 80, "targetPort": 8080}]}]}
    state = build_state(parse_lab(doc), NET)
    check = dns_checks(state)["dns[web.default from web]"]
    names = check.params["names"]
    assert names["web"] == [pod_ip(state, "web")]  # kubelet's hosts file names the pod
    assert names["web.default"] == [ip_of(state, "default", "web")]
