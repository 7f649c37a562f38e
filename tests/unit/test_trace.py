"""`kgen trace`: parsing and joining, replayed on what real traces captured.

Each fixture in fixtures/trace/ is one real trace on the demo lab (captured
with `generator.trace.collect`): the cluster state, the pods, the probe's
result and every node's report (xtables-monitor lines, underlay frames,
routes, conntrack, bridge ports, nat chains). Joining must give the path the
kernel took, without a lab.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from generator.node import trace_arm, trace_sniff
from generator.trace.join import Result, join
from generator.trace.parse import parse_conntrack, parse_nft, parse_xtables
from generator.trace.plan import SPORT_RANGE, TraceUsageError, make_plan, matches, member_plans
from generator.trace.render import as_text

FIXTURES = Path(__file__).parent / "fixtures" / "trace"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def replay(name: str) -> tuple[Result, dict[str, Any]]:
    d = load(name)
    a = d["args"]
    plan = make_plan(d["cluster"], d["pods"], a["src"], a["dst"], a["port"], a["protocol"],
                     sport=a["sport"])
    return join(plan, d["cluster"], d["reports"], d["probe"]), d


def chains(result: Result, direction: str = "request") -> list[str]:
    return [h.chain for h in result.hops if h.direction == direction and h.chain]


def steps(result: Result, direction: str = "request") -> list[str]:
    return [h.step for h in result.hops if h.direction == direction]


# ---------------------------------------------------------------- parsing


def test_xtables_monitor_lines_become_records_per_base_chain() -> None:
    d = load("clusterip-tcp")
    records = parse_xtables("node-0", d["reports"]["node-0"]["lines"])
    syn = [r for r in records if r.sport == d["args"]["sport"] and r.flags == ("SYN",)]
    assert [r.hook for r in syn][:4] == ["PREROUTING", "PREROUTING", "FORWARD", "POSTROUTING"]
    assert [r.table for r in syn][:4] == ["raw", "nat", "filter", "nat"]
    nat = syn[1]
    jumps = [(e.chain, e.verdict, e.target) for e in nat.events]
    assert jumps[0] == ("PREROUTING", "JUMP", "KUBE-SERVICES")
    assert jumps[1][0] == "KUBE-SERVICES" and jumps[1][2].startswith("KUBE-SVC-")
    dnat = nat.events[-1]
    assert dnat.verdict == "ACCEPT" and "-j DNAT --to-destination" in dnat.rule
    assert dnat.rule.startswith(f"-A {dnat.chain} ")  # as iptables-save prints it
    assert dnat.comment == "default/web:http"
    # The packet after DNAT, as FORWARD saw it: same IP id, new destination.
    assert syn[2].ip_id == nat.ip_id and syn[2].dst != nat.dst and syn[2].oif == "kgen.1"


def test_unnamed_return_verdict_is_return() -> None:
    d = load("clusterip-tcp")
    records = parse_xtables("node-0", d["reports"]["node-0"]["lines"])
    verdicts = {e.verdict for r in records for e in r.events if e.chain == "KUBE-POSTROUTING"}
    assert "RETURN" in verdicts and "0XFFFFFFFB" not in verdicts


def test_trace_events_attach_to_their_own_packet_when_interleaved() -> None:
    lines = [
        "PACKET: 2 aaaa0001 IN=cbr0 SRC=10.0.0.1 DST=10.0.0.2 LEN=60 ID=1 DF SPORT=1 DPORT=2 SYN ",
        "PACKET: 2 bbbb0002 OUT=cbr0 SRC=10.0.0.9 DST=10.0.0.1 LEN=88 ID=7 ",
        " TRACE: 2 bbbb0002 filter:OUTPUT:policy:ACCEPT ",
        " TRACE: 2 aaaa0001 filter:KUBE-SERVICES:rule:0x32:DROP  -4 -t filter -A KUBE-SERVICES "
        "-j REJECT --reject-with icmp-port-unreachable",
    ]
    first, second = parse_xtables("n", lines)
    assert first.ip_id == 1 and first.events[0].verdict == "DROP"
    assert first.events[0].rule == "-A KUBE-SERVICES -j REJECT --reject-with icmp-port-unreachable"
    assert second.events[0].kind == "policy" and second.hook == "OUTPUT"


def test_nft_monitor_trace_lines() -> None:
    lines = [
        'trace id 9c1e trace ip kube-proxy nat-prerouting packet: iif "eth0" ip saddr 10.0.0.1 '
        "ip daddr 10.96.0.10 ip id 77 tcp sport 20001 tcp dport 80 tcp flags == syn",
        "trace id 9c1e ip kube-proxy nat-prerouting rule jump services (verdict jump services)",
    ]
    # nft prints "trace id ID ip TABLE CHAIN ...": the line above with a stray word is ignored.
    assert parse_nft("n", lines) == []
    lines[0] = lines[0].replace("trace ip", "ip")
    (rec,) = parse_nft("n", lines)
    assert rec.src == "10.0.0.1" and rec.dport == 80 and rec.ip_id == 77 and rec.flags == ("SYN",)
    assert rec.events[0].verdict == "JUMP" and rec.events[0].target == "services"


def test_conntrack_lines() -> None:
    (tcp, icmp) = parse_conntrack([
        "tcp      6 118 TIME_WAIT src=10.244.0.2 dst=10.96.0.10 sport=21001 dport=80 "
        "src=10.244.2.2 dst=10.244.0.2 sport=8080 dport=21001 [ASSURED] mark=0 use=1",
        "icmp     1 29 src=10.244.0.2 dst=10.244.1.2 type=8 code=0 id=4242 src=10.244.1.2 "
        "dst=10.244.0.2 type=0 code=0 id=4242 mark=0 use=1",
    ])
    assert tcp.orig == ("10.244.0.2", 21001, "10.96.0.10", 80)
    assert tcp.reply == ("10.244.2.2", 8080, "10.244.0.2", 21001) and tcp.state == "TIME_WAIT"
    assert icmp.orig == ("10.244.0.2", 4242, "10.244.1.2", 4242)


# ---------------------------------------------------------------- joining real traces


def test_clusterip_tcp_names_the_chains_of_the_pod_that_answered() -> None:
    result, d = replay("clusterip-tcp")
    answered = d["probe"]["answer"]
    pod_ip = next(p["ip"] for p in d["pods"] if p["name"] == answered)
    req = chains(result)
    assert req[:2] == ["PREROUTING", "KUBE-SERVICES"]
    svc = next(c for c in req if c.startswith("KUBE-SVC-"))
    sep = next(c for c in req if c.startswith("KUBE-SEP-"))
    assert req.index(svc) < req.index(sep)
    dnat = next(h for h in result.hops if h.step == "dnat")
    assert dnat.chain == sep and dnat.packet["dst"] == f"{pod_ip}:8080" and dnat.node == "node-0"
    pick = next(h for h in result.hops if h.chain == svc and "picks endpoint" in h.detail)
    assert f"→ {sep}" in pick.detail and "of 2" in pick.detail
    assert result.verdict == "answered" and result.answered_by == answered


def test_vxlan_hops_carry_the_underlay_headers() -> None:
    result, d = replay("clusterip-tcp")
    nodes = {n["name"]: n["ip"] for n in d["cluster"]["nodes"]}
    encaps = [h for h in result.hops if h.step == "encap"]
    decaps = [h for h in result.hops if h.step == "decap"]
    assert [h.direction for h in encaps] == ["request", "reply"]
    out = encaps[0].encap
    assert out is not None and out["src"] == nodes["node-0"] and out["dport"] == 4789
    assert out["vni"] == 1 and out["dst"] in set(nodes.values()) - {nodes["node-0"]}
    assert decaps[0].encap == out and decaps[0].node != "node-0"


def test_reply_is_unnatted_by_the_conntrack_entry_of_the_dnat_node() -> None:
    result, d = replay("clusterip-tcp")
    (ct,) = [h for h in result.hops if h.step == "conntrack"]
    assert ct.direction == "reply" and ct.node == "node-0"
    assert ct.packet == {"src": "10.96.0.10:80", "dst": f"10.244.0.2:{d['args']['sport']}"}
    last = [h for h in result.hops if h.direction == "reply"][-1]
    assert last.step == "deliver" and "pod-0" in last.detail
    assert last.packet["src"] == "10.96.0.10:80"


def test_clusterip_udp() -> None:
    result, d = replay("clusterip-udp")
    assert result.verdict == "answered" and result.answered_by == d["probe"]["answer"]
    assert any(h.step == "dnat" and h.packet["dst"].endswith(":8081") for h in result.hops)
    assert steps(result, "reply")[-1] == "deliver"


def test_same_node_pods_are_bridged_not_routed_nor_encapsulated() -> None:
    result, _ = replay("pod-same-node")
    assert "bridge" in steps(result) and "encap" not in steps(result) + steps(result, "reply")
    assert result.verdict == "answered" and result.answered_by == "pod-1"
    assert {h.node for h in result.hops} == {"node-0"}


def test_icmp_across_nodes() -> None:
    result, _ = replay("pod-cross-node-icmp")
    assert result.verdict == "answered" and result.answered_by == "pod-2"
    assert "encap" in steps(result) and "decap" in steps(result, "reply")
    assert result.as_json()["dst"]["port"] is None


def test_node_to_clusterip_starts_in_output() -> None:
    result, _ = replay("node-clusterip")
    assert result.hops[0].step == "send" and result.src_ip == "10.244.0.1"
    assert [h.chain for h in result.hops if h.table == "nat"][:2] == ["OUTPUT", "KUBE-SERVICES"]
    assert any(h.step == "dnat" for h in result.hops) and result.verdict == "answered"


def test_nodeport_cluster_masquerades_and_says_why() -> None:
    result, d = replay("nodeport-cluster")
    masq = next(h for h in result.hops if h.step == "masquerade")
    assert masq.node == "node-1" and masq.chain == "KUBE-POSTROUTING"
    assert "MASQUERADE" in (masq.rule or "") and "externalTrafficPolicy Cluster" in masq.detail
    mark = next(h for h in result.hops if "KUBE-MARK-MASQ" in h.detail)
    assert mark.chain.startswith("KUBE-EXT-")
    # The backend is on node-2: the translated flow was found there too, and the reply
    # came back to the client through node-1.
    assert "node-2" in {h.node for h in result.hops if h.direction == "request"}
    reply = [h for h in result.hops if h.direction == "reply"]
    assert reply[-1].node == "client-0" and reply[-1].packet["src"] == "172.31.0.3:30080"
    assert result.verdict == "answered" and result.answered_by == d["probe"]["answer"]


def test_nodeport_local_without_endpoint_drops_in_kube_external_services() -> None:
    result, _ = replay("nodeport-local-drop")
    assert result.verdict == "dropped" and result.answered_by is None
    drop = next(h for h in result.hops if h.step == "drop")
    assert (drop.node, drop.table, drop.chain) == ("node-0", "filter", "KUBE-EXTERNAL-SERVICES")
    assert "no local endpoints" in (drop.rule or "") and drop is result.hops[-1]


def test_nodeport_local_keeps_the_client_address() -> None:
    result, _ = replay("nodeport-local")
    assert "masquerade" not in steps(result)
    deliver = next(h for h in result.hops if h.step == "deliver")
    assert deliver.packet["src"].startswith("172.31.0.254:") and "pod-2" in deliver.detail


def test_no_endpoints_is_refused_by_the_reject_rule() -> None:
    result, _ = replay("no-endpoints")
    assert result.verdict == "refused"
    rej = next(h for h in result.hops if h.step == "reject")
    assert (rej.table, rej.chain) == ("filter", "KUBE-SERVICES") and "REJECT" in (rej.rule or "")
    assert rej is result.hops[-1] and "no-backends has no endpoints" in result.summary


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_json_is_the_contract_shape(name: str) -> None:
    result, _ = replay(name)
    doc = json.loads(json.dumps(result.as_json()))
    assert set(doc) == {"src", "dst", "verdict", "answeredBy", "hops", "dns"}
    assert doc["dns"] is None  # a request traced on its own: no lookup came first
    assert set(doc["src"]) == {"name", "ip"} and set(doc["dst"]) == {"name", "ip", "port", "protocol"}
    assert doc["verdict"] in {"answered", "refused", "dropped", "timeout"}
    assert doc["hops"]
    for hop in doc["hops"]:
        assert set(hop) == {"direction", "node", "step", "detail", "table", "chain", "rule",
                            "packet", "encap", "policy"}
        if "netpol" not in name:  # the demo lab has no NetworkPolicy: no hop names one
            assert hop["policy"] is None
        assert hop["direction"] in {"request", "reply"} and hop["detail"]
        assert set(hop["packet"]) == {"src", "dst"}
        if hop["encap"] is not None:
            assert set(hop["encap"]) == {"src", "dst", "dport", "vni"}
            assert isinstance(hop["encap"]["dport"], int) and isinstance(hop["encap"]["vni"], int)
    text = as_text(result)
    assert text.splitlines()[-1].startswith("verdict: ")
    assert all(h.detail in text for h in result.hops)
    assert text.count("  [") >= len({h.direction for h in result.hops})  # packet per direction


# ---------------------------------------------------------------- planning


def test_plan_refuses_bad_names_and_options() -> None:
    d = load("clusterip-tcp")
    cl, pods = d["cluster"], d["pods"]
    for src, dst, port, proto, words in [
            ("pod-9", "web", None, None, "SRC"), ("pod-0", "nope", None, None, "DST"),
            ("pod-0", "node-1", None, None, "--port"), ("pod-0", "8.8.8.8", 80, None, "outside"),
            ("pod-0", "web", 81, None, "no port 81"), ("pod-0", "web", None, "sctp", "--protocol")]:
        with pytest.raises(TraceUsageError, match=words):
            make_plan(cl, pods, src, dst, port, proto)


def test_plan_resolves_service_ports_and_nodeports() -> None:
    d = load("clusterip-tcp")
    cl, pods = d["cluster"], d["pods"]
    udp = make_plan(cl, pods, "pod-0", "web", None, "udp")
    assert (udp.dst.ip, udp.port, udp.proto) == ("10.96.0.10", 8081, "udp")
    assert SPORT_RANGE[0] <= udp.sport <= SPORT_RANGE[1] and len(udp.endpoints) == 2
    np = make_plan(cl, pods, "client-0", "node-1", 30080, None)
    assert np.dst.kind == "node" and np.service == "default/web-nodeport"
    assert np.entry_node == "node-1" and "172.31.0.3" in np.snat_addrs
    flow = matches(np)
    assert flow[0] == {"proto": "tcp", "src": "172.31.0.254", "sport": np.sport}
    assert {"proto": "tcp", "src": "10.244.1.0", "dst": "10.244.2.2", "dport": 8080} in flow
    # pod -> cluster IP is never masqueraded: only the exact flow is armed.
    assert len(matches(make_plan(cl, pods, "pod-0", "web", None, None))) == 2
    plans = member_plans(cl, np)
    assert [p["probe"] is not None for p in plans.values()] == [False, False, False, True]


# ---------------------------------------------------------------- the node side


def test_arming_rules_carry_the_trace_and_its_deadline() -> None:
    flow = [{"proto": "tcp", "src": "10.244.0.2", "sport": 21001},
            {"proto": "icmp", "dst": "10.244.0.2", "icmp_type": "echo-reply", "icmp_id": 4242}]
    payload = trace_arm.iptables_arm_payload("abc123", 1800000000, flow)
    assert payload.splitlines()[0] == "*raw" and payload.splitlines()[-1] == "COMMIT"
    assert ("-A PREROUTING -p tcp -s 10.244.0.2/32 -m tcp --sport 21001 -m comment --comment "
            "kgen-trace:abc123:1800000000 -j TRACE") in payload
    assert '-m u32 --u32 "0>>22&0x3C@4>>16=0x1092"' in payload and "--icmp-type 0" in payload
    assert payload.count("-A OUTPUT ") == 2
    nft = trace_arm.nft_arm_payload("abc123", 1800000000, flow)
    assert "table ip kgen_trace_abc123_1800000000" in nft and "priority -350" in nft
    assert "tcp sport 21001 meta nftrace set 1" in nft and "icmp id 4242" in nft


def test_disarm_takes_ours_and_stale_ones_only() -> None:
    ours = "-A PREROUTING -p tcp -m comment --comment kgen-trace:abc123:1800000000 -j TRACE"
    other = "-A PREROUTING -p tcp -m comment --comment kgen-trace:ffff00:1800000000 -j TRACE"
    stale = "-A OUTPUT -p tcp -m comment --comment kgen-trace:ffff00:1000 -j TRACE"
    now = 1700000000.0
    assert trace_arm.stale_or_ours(ours, "abc123", now)
    assert not trace_arm.stale_or_ours(other, "abc123", now)
    assert trace_arm.stale_or_ours(stale, "abc123", now) and trace_arm.stale_or_ours(stale, None, now)
    assert not trace_arm.stale_or_ours(":PREROUTING ACCEPT [0:0]", None, now)


def _frame(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 4242, 0, 64, proto, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return b"\x02" * 12 + b"\x08\x00" + ip + payload


def test_underlay_frames_are_read_as_the_wire_carries_them() -> None:
    inner = _frame("10.244.0.2", "10.244.2.2", 6, struct.pack("!HH", 21001, 8080) + b"\0" * 16)
    vxlan = struct.pack("!HHHH", 40000, 4789, 8 + 8 + len(inner), 0) + b"\x08\0\0\0\0\0\x07\0" + inner
    outer = _frame("172.31.0.2", "172.31.0.4", 17, vxlan)
    rec = trace_sniff.parse_frame(outer, 4789, 6)
    assert rec is not None and rec["encap"] == {"src": "172.31.0.2", "dst": "172.31.0.4",
                                                "sport": 40000, "dport": 4789, "vni": 7}
    assert (rec["src"], rec["sport"], rec["dst"], rec["dport"], rec["id"]) == (
        "10.244.0.2", 21001, "10.244.2.2", 8080, 4242)
    assert trace_sniff.parse_frame(outer, 8472, 6) is None  # VXLAN on another port is not ours
    assert trace_sniff.parse_frame(outer, 4789, 17) is None


def test_the_raw_table_goes_only_when_nothing_uses_it() -> None:
    empty = "*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n" \
            ":OUTPUT ACCEPT [0:0]\nCOMMIT\n*nat\n-A X -j Y\nCOMMIT\n"
    assert trace_arm.raw_section(empty) == [":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    assert trace_arm.raw_table_unused(trace_arm.raw_section(empty))
    assert trace_arm.raw_section("*nat\nCOMMIT\n") is None
    assert not trace_arm.raw_table_unused(None)
    used = empty.replace(":OUTPUT ACCEPT [0:0]\n", ":OUTPUT ACCEPT [0:0]\n-A OUTPUT -j NOTRACK\n")
    assert not trace_arm.raw_table_unused(trace_arm.raw_section(used))
    dropping = empty.replace(":OUTPUT ACCEPT", ":OUTPUT DROP")
    assert not trace_arm.raw_table_unused(trace_arm.raw_section(dropping))


def test_route_removed_ends_at_the_node_without_a_route() -> None:
    result, _ = replay("broken-route")
    last = result.hops[-1]
    assert (last.node, last.step) == ("node-0", "drop") and result.verdict == "dropped"
    assert "nothing routes node-1's pod subnet 10.244.1.0/24" in last.detail
    assert "encap" not in steps(result) and not steps(result, "reply")


def test_bridge_down_ends_after_the_tunnel_on_the_far_node() -> None:
    result, _ = replay("broken-bridge")
    last = result.hops[-1]
    assert (last.node, last.step) == ("node-1", "drop") and result.verdict == "dropped"
    assert "cbr0 is DOWN" in last.detail and "decap" in steps(result)


def test_nat_flushed_ends_on_the_bridge_with_an_untranslated_service_address() -> None:
    result, _ = replay("broken-nat")
    last = result.hops[-1]
    assert (last.node, last.step) == ("node-0", "drop") and "never translated" in last.detail
    assert "dnat" not in steps(result) and result.verdict == "dropped"


# nftables mode: first written against nft's documented format (below), then checked on real
# traces of labs/nftables.yaml (the nft-*.json fixtures after it).
NFT_NODE0 = [
    'trace id 1a ip kgen_trace_ab_1 pre packet: iif "cbr0" ip saddr 10.244.0.2 ip daddr '
    "10.96.0.10 ip id 100 ip length 60 tcp sport 21001 tcp dport 80 tcp flags == syn",
    "trace id 1a ip kgen_trace_ab_1 pre rule meta l4proto tcp ip saddr 10.244.0.2 tcp sport 21001 "
    "meta nftrace set 1 (verdict continue)",
    "trace id 1a ip kgen_trace_ab_1 pre policy accept",
    'trace id 1a ip kube-proxy nat-prerouting packet: iif "cbr0" ip saddr 10.244.0.2 ip daddr '
    "10.96.0.10 ip id 100 tcp sport 21001 tcp dport 80 tcp flags == syn",
    "trace id 1a ip kube-proxy nat-prerouting rule jump services (verdict jump services)",
    "trace id 1a ip kube-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips "
    "(verdict goto service-ULMVA6XW-default/web/tcp/http)",
    "trace id 1a ip kube-proxy service-ULMVA6XW-default/web/tcp/http rule numgen random mod 2 vmap "
    "{ 0 : goto endpoint-5OJB2KTY-default/web/tcp/http__10.244.1.2/8080, 1 : goto "
    "endpoint-ZBOO3Y5Q-default/web/tcp/http__10.244.2.2/8080 } "
    "(verdict goto endpoint-ZBOO3Y5Q-default/web/tcp/http__10.244.2.2/8080)",
    "trace id 1a ip kube-proxy endpoint-ZBOO3Y5Q-default/web/tcp/http__10.244.2.2/8080 rule "
    "meta l4proto tcp dnat to 10.244.2.2:8080 (verdict accept)",
    'trace id 2b ip kube-proxy filter-forward packet: iif "cbr0" oif "kgen.1" ip saddr 10.244.0.2 '
    "ip daddr 10.244.2.2 ip id 100 tcp sport 21001 tcp dport 8080 tcp flags == syn",
    "trace id 2b ip kube-proxy filter-forward policy accept",
    'trace id 3c ip kgen_trace_ab_1 pre packet: iif "kgen.1" ip saddr 10.244.2.2 ip daddr '
    "10.244.0.2 ip id 0 tcp sport 8080 tcp dport 21001 tcp flags == syn | ack",
    "trace id 3c ip kgen_trace_ab_1 pre policy accept",
    'trace id 4d ip kube-proxy filter-forward packet: iif "kgen.1" oif "cbr0" ip saddr 10.244.2.2 '
    "ip daddr 10.244.0.2 ip id 0 tcp sport 8080 tcp dport 21001 tcp flags == syn | ack",
    "trace id 4d ip kube-proxy filter-forward policy accept",
]


def test_nftables_mode_joins_kube_proxys_nft_chains() -> None:
    d = load("clusterip-tcp")
    cluster = dict(d["cluster"], proxyMode="nftables")
    plan = make_plan(cluster, d["pods"], "pod-0", "web", None, None, sport=21001)
    assert plan.mode == "nftables"
    routes = [{"dst": "10.244.2.2", "src": "10.244.0.2", "iif": "cbr0",
               "result": [{"dst": "10.244.2.2", "gateway": "10.244.2.0", "dev": "kgen.1"}]}]
    conntrack = ["tcp      6 119 TIME_WAIT src=10.244.0.2 dst=10.96.0.10 sport=21001 dport=80 "
                 "src=10.244.2.2 dst=10.244.0.2 sport=8080 dport=21001 [ASSURED] mark=0 use=1"]
    reports = {n: {"lines": [], "frames": [], "routes": [], "conntrack": [], "bridge": None,
                   "natChains": [], "source": None, "error": None} for n in ("node-1", "node-2")}
    reports["node-0"] = {"lines": NFT_NODE0, "frames": [], "routes": routes, "conntrack": conntrack,
                         "bridge": None, "natChains": [], "source": None, "error": None}
    result = join(plan, cluster, reports, {"ok": True, "answer": "pod-3", "ms": 1.0})
    assert all(not (h.table or "").startswith("kgen_trace") for h in result.hops)
    pick = next(h for h in result.hops if "picks" in h.detail)
    assert "endpoint 2 of 2 (numgen random mod 2: each 1/2)" in pick.detail
    dnat = next(h for h in result.hops if h.step == "dnat")
    assert dnat.packet["dst"] == "10.244.2.2:8080" and dnat.chain.startswith("endpoint-")
    assert any(h.step == "route" and "kgen.1" in h.detail for h in result.hops)
    assert result.verdict == "answered" and result.answered_by == "pod-3"


def test_a_monitor_that_lost_events_is_said_so() -> None:
    d = load("clusterip-tcp")
    d["reports"]["node-1"]["lines"].append("# ERROR: We lost some netlink events!")
    a = d["args"]
    plan = make_plan(d["cluster"], d["pods"], a["src"], a["dst"], a["port"], a["protocol"],
                     sport=a["sport"])
    result = join(plan, d["cluster"], d["reports"], d["probe"])
    assert "lost events on node-1" in result.summary and result.verdict == "answered"


def test_nftables_mode_real_clusterip() -> None:
    result, d = replay("nft-clusterip-tcp")
    assert result.plan.mode == "nftables"
    chains_seen = chains(result)
    assert "services" in chains_seen and any(c.startswith("service-") for c in chains_seen)
    dnat = next(h for h in result.hops if h.step == "dnat")
    assert dnat.chain.startswith("endpoint-") and "dnat to" in (dnat.rule or "")
    answered_ip = next(p["ip"] for p in d["pods"] if p["name"] == d["probe"]["answer"])
    assert dnat.packet["dst"] == f"{answered_ip}:8080"
    assert any("numgen random mod 2" in h.detail for h in result.hops)
    assert "route" in steps(result) and "encap" in steps(result)
    assert steps(result, "reply")[-1] == "deliver" and "conntrack" in steps(result, "reply")
    assert result.verdict == "answered" and result.answered_by == d["probe"]["answer"]


def test_nftables_mode_real_nodeport_paths() -> None:
    result, _ = replay("nft-nodeport-cluster")
    masq = next(h for h in result.hops if h.step == "masquerade")
    assert masq.chain == "masquerading" and "externalTrafficPolicy Cluster" in masq.detail
    assert result.hops[-1].node == "client-0" and result.verdict == "answered"
    drop, _ = replay("nft-nodeport-local-drop")
    assert drop.verdict == "dropped" and drop.hops[-1].step == "drop"
    assert "no-endpoint-nodeports" in (drop.hops[-1].rule or "")
    refused, _ = replay("nft-no-endpoints")
    assert refused.verdict == "refused" and refused.hops[-1].step == "reject"
    assert refused.hops[-1].chain == "reject-chain"
