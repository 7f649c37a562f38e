"""`kgen trace` for LoadBalancer requests and names looked up first (issues 22, 23).

Planning is pure: a lab's cluster state (from the fixtures, captured on real labs)
and the pods. The search walk of a pod's resolver is checked name by name, and run
against the lab's own DNS server on loopback. Two real traces are replayed: a
client's request to a LoadBalancer IP (iptables) and a pod's DNS query (nftables).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generator.node.dns.resolvconf import parse_resolv_conf, resolv_conf, search_names
from generator.node.dns.server import DnsServer
from generator.node.documents import TraceResult
from generator.node.trace_dns import lookup as resolve
from generator.trace import lookup
from generator.trace.join import join
from generator.trace.plan import TraceUsageError, make_plan, matches
from generator.trace.render import as_text
from generator.trace.verdict import Lookup, Result
from tests.unit.typed import keys_of, problems

FIXTURES = Path(__file__).parent / "fixtures" / "trace"
SEARCH = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.json").read_text()))


@pytest.fixture(scope="module")
def lb() -> dict[str, Any]:
    return load("lb-cluster")


def service(d: dict[str, Any], name: str, namespace: str = "default") -> dict[str, Any]:
    return next(s for s in d["cluster"]["services"]
                if s["name"] == name and (s.get("namespace") or "default") == namespace)


def node_addrs(d: dict[str, Any], node: str) -> list[str]:
    n = next(n for n in d["cluster"]["nodes"] if n["name"] == node)
    return [n["ip"], n["gateway"], n["vtep"]]


# ---------------------------------------------------------------- the resolver's search walk


@pytest.mark.parametrize(("name", "ndots", "expected"), [
    # fewer dots than ndots: the search list first, the name as it is last
    ("web", 5, ["web.default.svc.cluster.local", "web.svc.cluster.local", "web.cluster.local",
                "web"]),
    ("web.shop.svc.cluster.local", 5,
     ["web.shop.svc.cluster.local.default.svc.cluster.local",
      "web.shop.svc.cluster.local.svc.cluster.local", "web.shop.svc.cluster.local.cluster.local",
      "web.shop.svc.cluster.local"]),
    # as many dots as ndots: as it is first
    ("a.b.c.d.e.f", 5, ["a.b.c.d.e.f", "a.b.c.d.e.f.default.svc.cluster.local",
                        "a.b.c.d.e.f.svc.cluster.local", "a.b.c.d.e.f.cluster.local"]),
    ("web.shop", 1, ["web.shop", "web.shop.default.svc.cluster.local",
                     "web.shop.svc.cluster.local", "web.shop.cluster.local"]),
    # a trailing dot: absolute, only itself
    ("web.shop.svc.cluster.local.", 5, ["web.shop.svc.cluster.local"]),
])
def test_search_names_in_glibc_order(name: str, ndots: int, expected: list[str]) -> None:
    assert search_names(name, SEARCH, ndots) == expected


def test_a_pods_resolv_conf_reads_back_as_written() -> None:
    r = parse_resolv_conf(resolv_conf("10.96.0.10", "shop", "cluster.local"))
    assert r.nameservers == ["10.96.0.10"] and r.ndots == 5
    assert r.search == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def test_resolv_conf_as_glibc_reads_it() -> None:
    text = ("# comment\nnameserver 10.0.0.1\nnameserver 10.0.0.2 ; second\n"
            "search a.example b.example\ndomain c.example\noptions rotate ndots:30\n")
    r = parse_resolv_conf(text)
    assert r.nameservers == ["10.0.0.1", "10.0.0.2"]
    assert r.search == ["c.example"]  # the last search or domain line wins
    assert r.ndots == 15  # capped as glibc caps it
    assert parse_resolv_conf("nameserver 10.0.0.1\n").ndots == 1


@pytest.fixture
def dns_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The lab's DNS server on loopback with one service, `web` in `shop`."""
    zone = tmp_path / "zone.json"
    web = {"name": "web", "namespace": "shop", "clusterIP": "10.96.42.111", "ports": [],
           "endpoints": []}
    zone.write_text(json.dumps({"domain": "cluster.local", "namespaces": ["default", "shop"],
                                "pods": [], "reverseCIDRs": [], "nameserver": None,
                                "services": [web]}))
    server = DnsServer(zone, "127.0.0.1", 0, io.StringIO())
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"stop": stop.is_set},
                              daemon=True)
    thread.start()
    try:
        yield server.address
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_the_walk_asks_each_name_until_an_address(dns_server: tuple[str, int]) -> None:
    host, port = dns_server
    conf = resolv_conf(host, "default", "cluster.local")
    found = resolve(conf, "web.shop", 0, 5.0, port=port)
    assert [(t["name"], t["rcode"]) for t in found["tried"]] == [
        ("web.shop.default.svc.cluster.local", "NXDOMAIN"), ("web.shop.svc.cluster.local", "NOERROR")]
    assert found["name"] == "web.shop.svc.cluster.local" and found["answers"] == ["10.96.42.111"]
    assert found["server"] == f"{host}:{port}" and found["rcode"] == "NOERROR"


def test_a_name_outside_the_zone_ends_refused(dns_server: tuple[str, int]) -> None:
    host, port = dns_server
    found = resolve(resolv_conf(host, "default", "cluster.local"), "example.org", 0, 5.0, port=port)
    assert [t["rcode"] for t in found["tried"]] == ["NXDOMAIN"] * 3 + ["REFUSED"]
    assert found["rcode"] == "REFUSED" and found["answers"] == []
    # With ndots:1 the name is asked as it is first, and REFUSED ends the walk there.
    conf = f"nameserver {host}\nsearch default.svc.cluster.local\noptions ndots:1\n"
    assert [t["name"] for t in resolve(conf, "example.org", 0, 5.0, port=port)["tried"]] == \
        ["example.org"]


# ---------------------------------------------------------------- LoadBalancer planning


def test_a_client_reaches_a_loadbalancer_service_on_its_ip(lb: dict[str, Any]) -> None:
    svc = service(lb, "web-lb")
    announcers = {svc["loadBalancerIP"]: "node-2"}
    plan = make_plan(lb["cluster"], lb["pods"], "client-0", "web-lb", None, None,
                     announcers=announcers)
    assert (plan.dst.name, plan.dst.ip, plan.port) == ("web-lb", svc["loadBalancerIP"], 80)
    assert plan.service == "default/web-lb" and {e.pod for e in plan.endpoints} == {"web-0", "web-1"}
    # The announcing node may masquerade it to any of its addresses: those are armed too.
    assert plan.entry_node == "node-2" and plan.snat_addrs == node_addrs(lb, "node-2")
    armed = {(m.get("src"), m.get("dst")) for m in matches(plan)}
    assert (node_addrs(lb, "node-2")[2], plan.endpoints[0].ip) in armed


def test_a_pod_naming_a_loadbalancer_service_keeps_its_cluster_ip(lb: dict[str, Any]) -> None:
    plan = make_plan(lb["cluster"], lb["pods"], "client", "web-lb", None, None)
    assert plan.dst.ip == service(lb, "web-lb")["clusterIP"]
    assert plan.entry_node is None and plan.snat_addrs == []


def test_an_address_that_is_a_loadbalancer_ip_or_external_ip_is_the_service(
        lb: dict[str, Any]) -> None:
    ip = service(lb, "web-lb-local")["loadBalancerIP"]
    plan = make_plan(lb["cluster"], lb["pods"], "client-0", ip, 80, None, announcers={ip: "node-1"})
    assert plan.service == "default/web-lb-local" and plan.entry_node == "node-1"
    ext = service(lb, "web-external")["externalIPs"][0]
    plan = make_plan(lb["cluster"], lb["pods"], "client-0", ext, 80, None)
    assert plan.service == "default/web-external"
    # Nobody announces an externalIP: whichever node the client routes it to may take it.
    assert plan.entry_candidates == ["node-0", "node-1", "node-2"]
    assert len(plan.snat_addrs) == 9


def test_the_replayed_loadbalancer_trace_starts_at_the_announcer(lb: dict[str, Any]) -> None:
    a = lb["args"]
    plan = make_plan(lb["cluster"], lb["pods"], a["src"], a["dst"], None, None, sport=a["sport"],
                     announcers=a["announcers"])
    result = join(plan, lb["cluster"], lb["reports"], lb["probe"])
    announcer = a["announcers"][plan.dst.ip]
    request = [h for h in result.hops if h.direction == "request"]
    assert request[1].node == "client-0" and request[2].node == announcer
    assert request[2].step == "arrive"
    chains = [h.chain or "" for h in request]
    ext = next(c for c in chains if c.startswith("KUBE-EXT-"))
    assert chains.index(ext) < next(i for i, c in enumerate(chains) if c.startswith("KUBE-SEP-"))
    assert any("LoadBalancer IP with externalTrafficPolicy Cluster" in h.detail for h in request)
    assert result.verdict == "answered" and result.hops[-1].node == "client-0"
    doc = json.loads(json.dumps(result.as_json()))
    assert doc["dst"]["ip"] == service(lb, "web-lb")["loadBalancerIP"] and doc["dns"] is None


# ---------------------------------------------------------------- DNS first


@pytest.mark.parametrize(("src", "dst", "expected"), [
    ("client", "web.shop.svc.cluster.local", True),
    ("client", "web.shop", True),
    ("client", "example.org", True),
    ("client", "web", True),  # a service of client's namespace
    ("client-shop", "web-headless", False),  # a service, but of another namespace
    ("client", "web-0", False),  # a pod
    ("client", "shop/client-shop", False),
    ("client", "node-1", False),
    ("client", "10.96.0.10", False),
    ("client-0", "web.shop", False),  # clients and nodes do not use the cluster DNS
    ("node-0", "web", False),
])
def test_which_names_are_looked_up_first(lb: dict[str, Any], src: str, dst: str,
                                         expected: bool) -> None:
    assert lookup.wants_lookup(lb["cluster"], lb["pods"], src, dst) is expected


def test_no_lookup_without_the_labs_dns(lb: dict[str, Any]) -> None:
    cluster = {**lb["cluster"], "dns": {**lb["cluster"]["dns"], "enabled": False}}
    assert not lookup.wants_lookup(cluster, lb["pods"], "client", "web.shop")


def answered(names: list[str], name: str) -> Lookup:
    plan = make_plan(load("lb-cluster")["cluster"], load("lb-cluster")["pods"], "client",
                     "kube-dns.kube-system", 53, "udp")
    return Lookup(Result(plan, {"ok": True, "answer": "", "error": None, "ms": 1,
                                "backlogDrops": 0}), name, "10.96.0.10:53", names, "NOERROR", [])


def test_the_request_goes_to_the_answer_on_the_services_first_port(lb: dict[str, Any]) -> None:
    web = service(lb, "web", "shop")
    found = answered([web["clusterIP"]], "web.shop.svc.cluster.local")
    assert lookup.request_target(lb["cluster"], lb["pods"], found, None, None) == \
        (web["clusterIP"], 80, "tcp")
    assert lookup.request_target(lb["cluster"], lb["pods"], found, 81, None) == \
        (web["clusterIP"], 81, None)
    # A headless service answers with pod addresses: the pod listens on the targetPort.
    pod_ip = next(p["ip"] for p in lb["pods"] if p["name"] == "web-0")
    found = answered([pod_ip], "web-headless.default.svc.cluster.local")
    assert lookup.request_target(lb["cluster"], lb["pods"], found, None, None) == (pod_ip, 8080, "tcp")
    with pytest.raises(TraceUsageError, match="give --port"):
        lookup.request_target(lb["cluster"], lb["pods"], answered(["10.96.0.1"], "x.cluster.local"),
                              None, None)


def test_the_replayed_lookup_reaches_a_dns_pod_through_the_dnat() -> None:
    d = load("nft-dns-lookup")
    a = d["args"]
    plan = lookup.query_plan(d["cluster"], d["pods"], a["src"], a["name"], sport=a["sport"])
    found = lookup.outcome(join(plan, d["cluster"], d["reports"], d["probe"]))
    dns_pods = {p["name"] for p in d["pods"] if p["name"].startswith("coredns-")}
    assert found.query.answered_by in dns_pods and found.rcode == "NOERROR"
    dnat = next(h for h in found.query.hops if h.step == "dnat")
    assert dnat.packet["dst"].endswith(":53") and found.query.answered_by in dnat.detail
    assert found.name == "web.shop.svc.cluster.local" and len(found.tried) == 4
    web = service(d, "web", "shop")
    request = make_plan(d["cluster"], d["pods"], a["src"], web["clusterIP"], 80, "tcp")
    result = Result(request, d["probe"], dns=found)
    doc: TraceResult = json.loads(json.dumps(result.as_json()))
    assert problems(doc, TraceResult) == [] and set(doc) == keys_of(TraceResult)
    assert doc["dns"] is not None and doc["dns"]["answeredBy"] == found.query.answered_by
    text = as_text(result)
    assert text.startswith(f"DNS lookup: {a['src']} (") and "\nquery\n" in text
    assert "\nanswer: answered by coredns-" in text


def test_no_address_sends_no_request_and_says_why() -> None:
    d = load("nft-dns-lookup")
    plan = lookup.query_plan(d["cluster"], d["pods"], "client", "nosuch.shop")
    query = Result(plan, {"ok": True, "answer": "", "error": None, "ms": 1, "backlogDrops": 0},
                   verdict="answered", answered_by="coredns-0")
    found = Lookup(query, "nosuch.shop", "10.96.0.10:53", [], "REFUSED", [])
    result = lookup.unanswered(query, found, "nosuch.shop", None, None)
    doc = json.loads(json.dumps(result.as_json()))
    assert doc["verdict"] == "refused" and doc["hops"] == [] and doc["answeredBy"] is None
    assert doc["dst"] == {"name": "nosuch.shop", "ip": "", "port": None, "protocol": "tcp"}
    assert doc["dns"]["rcode"] == "REFUSED" and problems(doc, TraceResult) == []
    assert "no request was sent" in as_text(result).splitlines()[-1]
    # No answer at all: the verdict is the query's own.
    query.verdict, query.summary = "timeout", "timeout (timed out): last seen at node-0"
    silent = Lookup(query, "nosuch.shop", "10.96.0.10:53", [], None, [])
    assert lookup.unanswered(query, silent, "nosuch.shop", None, None).verdict == "timeout"


def test_the_terminal_shows_the_lookup_before_the_request() -> None:
    from rich.console import Console

    from generator.trace.render import print_rich

    d = load("nft-dns-lookup")
    a = d["args"]
    plan = lookup.query_plan(d["cluster"], d["pods"], a["src"], a["name"], sport=a["sport"])
    found = lookup.outcome(join(plan, d["cluster"], d["reports"], d["probe"]))
    request = make_plan(d["cluster"], d["pods"], a["src"], "10.96.42.111", 80, "tcp")
    shown = io.StringIO()
    print_rich(Console(file=shown, width=200), Result(request, d["probe"], dns=found))
    text = shown.getvalue()
    assert text.index("DNS lookup: client") < text.index("query") < text.index("answer: answered by")
    assert "asked web.shop.svc.cluster.local: NOERROR 10.96.42.111" in text


def test_a_query_without_an_answer_has_no_rcode_and_nobody_answering() -> None:
    d = load("nft-dns-lookup")
    a = d["args"]
    plan = lookup.query_plan(d["cluster"], d["pods"], a["src"], a["name"], sport=a["sport"])
    silent = {"ok": False, "answer": None, "error": "timed out", "ms": 2000, "backlogDrops": 0}
    found = lookup.outcome(join(plan, d["cluster"], d["reports"], silent))
    assert found.rcode is None and found.answers == [] and found.query.answered_by is None
    assert found.server == "10.96.0.10:53" and found.name == a["name"]
