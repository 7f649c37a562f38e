"""The cluster DNS's answers against the Kubernetes DNS-Based Service Discovery
specification (kubernetes/dns docs/specification.md, schema 1.1.0): its own
question and answer examples, then the rcodes around them (NXDOMAIN, NODATA,
REFUSED) and the sizes (EDNS0 payload, TC over UDP, TCP)."""

from __future__ import annotations

from typing import Any

import pytest

from generator.node.dns.answer import handle
from generator.node.dns.message import (
    AAAA,
    ANY,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    PTR,
    REFUSED,
    SERVFAIL,
    SOA,
    SRV,
    TXT,
    A,
    Edns,
    Message,
    Question,
    Soa,
    Srv,
    decode,
    encode,
)
from generator.node.dns.records import ClusterZone
from generator.node.documents import DnsService, DnsZone

SVC = "default.svc.cluster.local"


def service(name: str, cluster_ip: str | None, ports: list[tuple[str, str, int]],
            endpoints: list[dict[str, Any]] | None = None, namespace: str = "default") -> DnsService:
    return {"name": name, "namespace": namespace, "clusterIP": cluster_ip,
            "ports": [{"name": n, "protocol": p, "port": port} for n, p, port in ports],
            "endpoints": endpoints or []}  # type: ignore[typeddict-item]


def spec_zone(*extra: DnsService) -> ClusterZone:
    """The spec's examples: `kubernetes` at 10.3.0.1 with https 443, and `headless`
    with ready endpoints 10.3.0.1-3 (the spec's A example; here in the pod range
    10.4.0.x, as a cluster IP cannot also be an endpoint) and `my-pet` at .100."""
    headless_eps = [{"ip": f"10.4.0.{i}", "pod": f"hl-{i}"} for i in (1, 2, 3)]
    headless_eps.append({"ip": "10.4.0.100", "pod": "my-pet-0", "hostname": "my-pet"})
    doc: DnsZone = {"domain": "cluster.local", "namespaces": ["default", "kube-system", "shop"],
                    "reverseCIDRs": ["10.3.0.0/24", "10.4.0.0/16"], "nameserver": "10.3.0.10",
                    "pods": [{"name": "hl-1", "namespace": "default", "ip": "10.4.0.1"},
                             {"name": "lonely", "namespace": "shop", "ip": "10.4.9.9"}],
                    "services": [service("kubernetes", "10.3.0.1", [("https", "TCP", 443)]),
                                 service("headless", None, [("https", "TCP", 443)], headless_eps),
                                 *extra]}
    return ClusterZone(doc, serial=1700000000)


def ask(zone: ClusterZone | None, name: str, qtype: int = A, udp: bool = True,
        edns: Edns | None = None, **header: Any) -> Message:
    query = Message(id=4711, rd=True, questions=[Question(name, qtype)], edns=edns, **header)
    wire = handle(encode(query), zone, udp=udp).wire
    assert wire is not None
    reply = decode(wire)
    assert reply.id == 4711 and reply.qr and reply.rd and not reply.ra  # never a recursor
    return reply


def answers(reply: Message) -> list[tuple[str, int, int, object]]:
    return [(r.name, r.rtype, r.ttl, r.data) for r in reply.answers]


# ---------------------------------------------------------------- the spec's examples


def test_2_2_schema_version_txt() -> None:
    reply = ask(spec_zone(), "dns-version.cluster.local", TXT)
    assert answers(reply) == [("dns-version.cluster.local", TXT, 28800, (b"1.1.0",))]


def test_2_3_1_a_record_of_a_cluster_ip_service() -> None:
    reply = ask(spec_zone(), f"kubernetes.{SVC}")
    assert (reply.rcode, reply.aa) == (NOERROR, True)
    assert answers(reply) == [(f"kubernetes.{SVC}", A, 5, "10.3.0.1")]


def test_2_3_2_srv_record_of_a_named_port_with_its_a_record_as_additional() -> None:
    reply = ask(spec_zone(), f"_https._tcp.kubernetes.{SVC}", SRV)
    assert answers(reply) == [(f"_https._tcp.kubernetes.{SVC}", SRV, 5,
                               Srv(0, 100, 443, f"kubernetes.{SVC}"))]
    assert [(r.name, r.data) for r in reply.additional] == [(f"kubernetes.{SVC}", "10.3.0.1")]


def test_2_3_2_unnamed_ports_have_no_srv_record() -> None:
    zone = spec_zone(service("plain", "10.3.0.7", [("", "TCP", 80)]))
    assert ask(zone, f"plain.{SVC}").rcode == NOERROR
    assert ask(zone, f"_._tcp.plain.{SVC}", SRV).rcode == NXDOMAIN
    assert ask(zone, f"_80._tcp.plain.{SVC}", SRV).rcode == NXDOMAIN


def test_2_3_3_ptr_record_of_a_cluster_ip() -> None:
    reply = ask(spec_zone(), "1.0.3.10.in-addr.arpa", PTR)
    assert answers(reply) == [("1.0.3.10.in-addr.arpa", PTR, 5, f"kubernetes.{SVC}")]


def test_2_4_1_headless_service_one_a_per_ready_endpoint() -> None:
    reply = ask(spec_zone(), f"headless.{SVC}")
    assert sorted(r.data for r in reply.answers) == ["10.4.0.1", "10.4.0.100", "10.4.0.2", "10.4.0.3"]
    assert {(r.name, r.ttl) for r in reply.answers} == {(f"headless.{SVC}", 5)}


def test_2_4_1_hostname_record_of_an_endpoint() -> None:
    reply = ask(spec_zone(), f"my-pet.headless.{SVC}")
    assert answers(reply) == [(f"my-pet.headless.{SVC}", A, 5, "10.4.0.100")]
    # without a hostname the endpoint's name is its address with dashes, as CoreDNS's
    assert [r.data for r in ask(spec_zone(), f"10-4-0-2.headless.{SVC}").answers] == ["10.4.0.2"]


def test_2_4_1_headless_service_without_ready_endpoints_is_nxdomain() -> None:
    zone = spec_zone(service("empty", None, [("https", "TCP", 443)]))
    assert ask(zone, f"empty.{SVC}").rcode == NXDOMAIN
    assert ask(zone, f"_https._tcp.empty.{SVC}", SRV).rcode == NXDOMAIN


def test_2_4_2_headless_srv_one_per_endpoint_and_port_targeting_its_hostname() -> None:
    endpoints = [{"ip": "10.4.1.1", "pod": "a"}, {"ip": "10.4.1.2", "pod": "b", "hostname": "b"}]
    zone = spec_zone(service("two", None, [("https", "TCP", 443), ("dns", "UDP", 53)], endpoints))
    https = ask(zone, f"_https._tcp.two.{SVC}", SRV)
    assert [r.data for r in https.answers] == [Srv(0, 50, 443, f"10-4-1-1.two.{SVC}"),
                                               Srv(0, 50, 443, f"b.two.{SVC}")]
    assert sorted((r.name, r.data) for r in https.additional) == [
        (f"10-4-1-1.two.{SVC}", "10.4.1.1"), (f"b.two.{SVC}", "10.4.1.2")]
    assert [r.data.port for r in ask(zone, f"_dns._udp.two.{SVC}", SRV).answers] == [53, 53]  # type: ignore[union-attr]
    assert ask(zone, f"_dns._tcp.two.{SVC}", SRV).rcode == NXDOMAIN  # the protocol is part of the name


def test_2_4_3_ptr_record_of_a_headless_endpoint() -> None:
    reply = ask(spec_zone(), "100.0.4.10.in-addr.arpa", PTR)
    assert answers(reply) == [("100.0.4.10.in-addr.arpa", PTR, 5, f"my-pet.headless.{SVC}")]


# ---------------------------------------------------------------- pods and namespaces


def test_pod_records_in_the_pods_namespace_only() -> None:
    zone = spec_zone()
    assert [r.data for r in ask(zone, "10-4-9-9.shop.pod.cluster.local").answers] == ["10.4.9.9"]
    assert ask(zone, "10-4-9-9.default.pod.cluster.local").rcode == NXDOMAIN
    assert ask(zone, "10-4-7-7.shop.pod.cluster.local").rcode == NXDOMAIN  # no such pod


def test_a_pod_that_is_no_endpoint_resolves_back_to_its_pod_record() -> None:
    zone = spec_zone()
    assert [r.data for r in ask(zone, "9.9.4.10.in-addr.arpa", PTR).answers] == [
        "10-4-9-9.shop.pod.cluster.local"]
    # an endpoint keeps its endpoint name only, as CoreDNS answers it
    assert [r.data for r in ask(zone, "1.0.4.10.in-addr.arpa", PTR).answers] == [f"10-4-0-1.headless.{SVC}"]


def test_services_of_the_same_name_in_two_namespaces_are_two_services() -> None:
    zone = spec_zone(service("web", "10.3.0.20", []), service("web", "10.3.0.21", [], namespace="shop"))
    assert [r.data for r in ask(zone, f"web.{SVC}").answers] == ["10.3.0.20"]
    assert [r.data for r in ask(zone, "web.shop.svc.cluster.local").answers] == ["10.3.0.21"]


def test_names_are_compared_without_case_and_echoed_as_asked() -> None:
    reply = ask(spec_zone(), "KuberNetes.Default.SVC.Cluster.Local")
    assert answers(reply) == [("KuberNetes.Default.SVC.Cluster.Local", A, 5, "10.3.0.1")]


# ---------------------------------------------------------------- rcodes


def soa_of(reply: Message) -> tuple[str, Soa]:
    assert [r.rtype for r in reply.authority] == [SOA]
    data = reply.authority[0].data
    assert isinstance(data, Soa)
    return reply.authority[0].name, data


@pytest.mark.parametrize("name", [f"nope.{SVC}", "kubernetes.nons.svc.cluster.local",
                                  "nons.svc.cluster.local", "web.cluster.local",
                                  f"_tcp.kubernetes.{SVC}", f"a.b.c.d.kubernetes.{SVC}"])
def test_unknown_names_in_the_zone_are_nxdomain_with_the_zone_soa(name: str) -> None:
    reply = ask(spec_zone(), name)
    assert (reply.rcode, reply.aa, reply.answers) == (NXDOMAIN, True, [])
    apex, soa = soa_of(reply)
    assert (apex, soa.mname, soa.rname, soa.serial, soa.minimum) == (
        "cluster.local", "ns.dns.cluster.local", "hostmaster.cluster.local", 1700000000, 5)


@pytest.mark.parametrize(("name", "qtype"), [
    (f"kubernetes.{SVC}", AAAA), (f"headless.{SVC}", AAAA), (f"kubernetes.{SVC}", TXT),
    (f"kubernetes.{SVC}", SRV), ("dns-version.cluster.local", A), (SVC, A), ("shop.pod.cluster.local", A),
    ("cluster.local", A), ("svc.cluster.local", AAAA), ("1.0.3.10.in-addr.arpa", A)])
def test_names_that_exist_with_other_types_are_nodata(name: str, qtype: int) -> None:
    reply = ask(spec_zone(), name, qtype)
    assert (reply.rcode, reply.aa, reply.answers) == (NOERROR, True, [])
    soa_of(reply)


@pytest.mark.parametrize("name", ["example.com", "local", "cluster.local.example.com", "kubernetes.default",
                                  "8.8.8.8.in-addr.arpa", "in-addr.arpa", "1.0.0.0.ip6.arpa", ""])
def test_names_outside_the_zone_are_refused_never_forwarded(name: str) -> None:
    reply = ask(spec_zone(), name)
    assert (reply.rcode, reply.aa, reply.answers, reply.authority) == (REFUSED, False, [], [])


def test_an_unknown_lab_address_is_nxdomain_under_the_reverse_zone() -> None:
    reply = ask(spec_zone(), "77.0.3.10.in-addr.arpa", PTR)
    assert reply.rcode == NXDOMAIN
    assert soa_of(reply)[0] == "in-addr.arpa"


def test_the_apex_answers_its_soa_and_its_nameserver() -> None:
    zone = spec_zone()
    soa = ask(zone, "cluster.local", SOA).answers
    assert soa_of(Message(authority=soa))[1].mname == "ns.dns.cluster.local"
    ns = ask(zone, "cluster.local", 2)
    assert [r.data for r in ns.answers] == ["ns.dns.cluster.local"]
    assert [(r.name, r.data) for r in ns.additional] == [("ns.dns.cluster.local", "10.3.0.10")]


def test_any_gets_every_type_at_the_name() -> None:
    assert {r.rtype for r in ask(spec_zone(), "cluster.local", ANY).answers} == {2, SOA}


def test_other_opcodes_classes_and_question_counts() -> None:
    zone = spec_zone()
    assert ask(zone, f"kubernetes.{SVC}", opcode=2).rcode == NOTIMP
    none = Message(id=4711, rd=True)
    assert decode(handle(encode(none), zone, udp=True).wire or b"").rcode == FORMERR
    assert ask(zone, "cluster.local", 252).rcode == REFUSED  # AXFR: no zone transfers
    chaos = Message(id=4711, rd=True, questions=[Question("version.bind", TXT, 3)])
    assert decode(handle(encode(chaos), zone, udp=True).wire or b"").rcode == REFUSED


def test_before_any_zone_is_loaded_every_query_is_servfail() -> None:
    assert ask(None, f"kubernetes.{SVC}").rcode == SERVFAIL


# ---------------------------------------------------------------- sizes


def big_zone() -> ClusterZone:
    many = [{"ip": f"10.4.2.{i}", "pod": f"p{i}"} for i in range(1, 101)]
    return spec_zone(service("many", None, [("http", "TCP", 80)], many))


def test_edns_payload_is_echoed_and_absent_without_edns() -> None:
    assert ask(spec_zone(), f"kubernetes.{SVC}").edns is None
    reply = ask(spec_zone(), f"kubernetes.{SVC}", edns=Edns(payload=1400))
    assert reply.edns is not None and reply.edns.payload == 1400


@pytest.mark.parametrize(("edns", "truncated"), [(None, True), (Edns(payload=1232), True),
                                                 (Edns(payload=4096), False), (Edns(payload=65000), False)])
def test_udp_answers_over_the_limit_are_truncated(edns: Edns | None, truncated: bool) -> None:
    reply = ask(big_zone(), f"many.{SVC}", edns=edns)  # 100 A records, about 1.7 kB
    assert reply.tc is truncated
    assert len(reply.answers) == (0 if truncated else 100)


def test_tcp_carries_the_whole_answer() -> None:
    reply = ask(big_zone(), f"_http._tcp.many.{SVC}", SRV, udp=False)
    assert (reply.tc, len(reply.answers), len(reply.additional)) == (False, 100, 100)
    assert {r.data.weight for r in reply.answers} == {1}  # type: ignore[union-attr]


def test_the_additional_section_goes_first_and_without_tc() -> None:
    zone = spec_zone(service("six", None, [("http", "TCP", 80)],
                             [{"ip": f"10.4.3.{i}", "pod": f"q{i}"} for i in range(1, 8)]))
    full = ask(zone, f"_http._tcp.six.{SVC}", SRV, udp=False)
    assert len(encode(full)) > 512
    reply = ask(zone, f"_http._tcp.six.{SVC}", SRV)
    assert (reply.tc, len(reply.answers), reply.additional) == (False, 7, [])
