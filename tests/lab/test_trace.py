"""Issue 13: `kgen trace` on real labs, through the real command line.

One copy of the demo (plus a single-endpoint service, so that a pod reaching
itself through its service is not a coin toss) serves every path; the
broken-lab tests come last and restore what they break. After every test,
no node holds a trace rule or a trace helper.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from generator.node.canary import FLUSH_TIMEOUT
from generator.node.proxy.loop import SYNC_PERIOD
from tests.conftest import ROOT
from tests.lab.conftest import KGEN, RunningLab, bring_up

AGENT = "^python3 -m generator.node.agent"
MEMBERS = ("node-0", "node-1", "node-2", "client-0")


@pytest.fixture(scope="module")
def tlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp("trace")
    doc = yaml.safe_load((ROOT / "labs" / "demo.yaml").read_text())
    doc["name"] = "trace"
    for pod in doc["pods"]:
        if pod["name"] == "pod-2":
            pod["labels"]["solo"] = "yes"
    doc["services"].append({"name": "solo", "clusterIP": "10.96.0.60", "selector": {"solo": "yes"},
                            "ports": [{"port": 80, "targetPort": 8080}]})
    lab_file = workdir / "trace.yaml"
    lab_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    yield from bring_up(lab_file, workdir)


def leftovers(lab: RunningLab, members: tuple[str, ...] = MEMBERS) -> list[str]:
    """Trace rules, nft trace tables, trace processes, and the raw table (no lab has one
    before a trace: the last trace out removes it) still on any member."""
    found = []
    for member in members:
        script = ("iptables-save 2>/dev/null | grep -x '[*]raw' | sed 's/^/table /'; "
                  "iptables-save -t raw 2>/dev/null | grep kgen-trace; "
                  "command -v nft >/dev/null && nft list tables | grep kgen_trace; "
                  "pgrep -af 'xtables-monito[r]|nft monito[r]|generator[.]node[.]trac[e]'; true")
        out = lab.exec(member, "sh", "-c", script).stdout.strip()
        found += [f"{member}: {line}" for line in out.splitlines()]
    return found


@pytest.fixture(autouse=True)
def nothing_left_behind(tlab: RunningLab) -> Iterator[None]:
    yield
    assert leftovers(tlab) == []


def trace(lab: RunningLab, *args: str) -> dict[str, Any]:
    result = lab.kgen("trace", *args, "--json")
    return dict(json.loads(result.stdout))


def cluster(lab: RunningLab) -> dict[str, Any]:
    return dict(json.loads((lab.dir / f"kgen-{lab.name}" / "config" / "cluster.json").read_text()))


def node_ips(lab: RunningLab) -> dict[str, str]:
    return {n["name"]: n["ip"] for n in lab.status()["nodes"]}


def pod_ips(lab: RunningLab) -> dict[str, str]:
    return {p["name"]: p["ip"] for p in lab.status()["pods"]}


def hops(doc: dict[str, Any], direction: str = "request") -> list[dict[str, Any]]:
    return [h for h in doc["hops"] if h["direction"] == direction]


def chains(doc: dict[str, Any]) -> list[str]:
    return [h["chain"] for h in hops(doc) if h["chain"]]


def dnat_rule_of(lab: RunningLab, node: str, sep: str) -> str:
    saved = lab.exec(node, "iptables-save", "-t", "nat").stdout
    return next(line for line in saved.splitlines() if line.startswith(f"-A {sep} ")
                and "DNAT" in line)


def assert_clusterip_chains(lab: RunningLab, doc: dict[str, Any], port: int) -> None:
    """KUBE-SERVICES → KUBE-SVC-<hash> → the KUBE-SEP of the pod that answered → DNAT to it."""
    answered = doc["answeredBy"]
    ip = pod_ips(lab)[answered]
    c = chains(doc)
    svc = next(x for x in c if x.startswith("KUBE-SVC-"))
    sep = next(x for x in c if x.startswith("KUBE-SEP-"))
    assert c.index("KUBE-SERVICES") < c.index(svc) < c.index(sep)
    assert f"--to-destination {ip}:{port}" in dnat_rule_of(lab, "node-0", sep)
    dnat = next(h for h in hops(doc) if h["step"] == "dnat")
    assert dnat["chain"] == sep and dnat["packet"]["dst"] == f"{ip}:{port}"
    assert dnat["rule"] == dnat_rule_of(lab, "node-0", sep)


def assert_vxlan(lab: RunningLab, doc: dict[str, Any], src_node: str, dst_node: str) -> None:
    ips, vx = node_ips(lab), cluster(lab)["vxlan"]
    encap = next(h for h in hops(doc) if h["step"] == "encap")
    assert encap["node"] == src_node
    assert encap["encap"] == {"src": ips[src_node], "dst": ips[dst_node], "dport": vx["port"],
                              "vni": vx["vni"]}
    decap = next(h for h in hops(doc) if h["step"] == "decap")
    assert decap["node"] == dst_node and decap["encap"] == encap["encap"]


# ---------------------------------------------------------------- every path of the demo


def test_pod_to_clusterip_tcp(tlab: RunningLab) -> None:
    doc = trace(tlab, "pod-0", "web")
    assert doc["verdict"] == "answered" and doc["answeredBy"] in {"pod-2", "pod-3"}
    assert doc["src"] == {"name": "pod-0", "ip": pod_ips(tlab)["pod-0"]}
    assert doc["dst"] == {"name": "web", "ip": "10.96.0.11", "port": 80, "protocol": "tcp"}
    assert_clusterip_chains(tlab, doc, 8080)
    backend_node = tlab.node_of(doc["answeredBy"])
    assert_vxlan(tlab, doc, "node-0", backend_node)
    assert hops(doc)[-1]["step"] == "deliver" and doc["answeredBy"] in hops(doc)[-1]["detail"]
    reply = hops(doc, "reply")
    ct = next(h for h in reply if h["step"] == "conntrack")
    assert ct["node"] == "node-0" and ct["packet"]["src"] == "10.96.0.11:80"
    assert reply[-1]["step"] == "deliver" and "pod-0" in reply[-1]["detail"]


def test_pod_to_clusterip_udp(tlab: RunningLab) -> None:
    doc = trace(tlab, "pod-0", "web", "--protocol", "udp")
    assert doc["dst"]["port"] == 8081 and doc["dst"]["protocol"] == "udp"
    assert doc["verdict"] == "answered" and doc["answeredBy"] in {"pod-2", "pod-3"}
    assert_clusterip_chains(tlab, doc, 8081)


def test_pod_to_pod_on_one_node_is_bridged(tlab: RunningLab) -> None:
    doc = trace(tlab, "pod-0", "pod-1")
    assert doc["verdict"] == "answered" and doc["answeredBy"] == "pod-1"
    steps = [h["step"] for h in doc["hops"]]
    assert "bridge" in steps and "encap" not in steps
    assert {h["node"] for h in doc["hops"]} == {"node-0"}


def test_pod_to_pod_across_nodes(tlab: RunningLab) -> None:
    doc = trace(tlab, "pod-0", "pod-2")
    assert doc["verdict"] == "answered" and doc["answeredBy"] == "pod-2"
    assert_vxlan(tlab, doc, "node-0", "node-1")
    assert not any(h["step"] in ("dnat", "masquerade") for h in doc["hops"])


def test_icmp_across_nodes(tlab: RunningLab) -> None:
    doc = trace(tlab, "pod-0", "pod-3", "--protocol", "icmp")
    assert doc["verdict"] == "answered" and doc["answeredBy"] == "pod-3"
    assert doc["dst"]["port"] is None
    assert_vxlan(tlab, doc, "node-0", "node-2")


def test_node_to_clusterip(tlab: RunningLab) -> None:
    doc = trace(tlab, "node-0", "web")
    assert doc["verdict"] == "answered" and doc["answeredBy"] in {"pod-2", "pod-3"}
    assert hops(doc)[0]["step"] == "send"
    assert [h["chain"] for h in hops(doc) if h["table"] == "nat"][:2] == ["OUTPUT", "KUBE-SERVICES"]
    assert_clusterip_chains(tlab, doc, 8080)


def test_nodeport_cluster_masquerades(tlab: RunningLab) -> None:
    doc = trace(tlab, "client-0", "node-1", "--port", "30080")
    assert doc["verdict"] == "answered" and doc["answeredBy"] in {"pod-2", "pod-3"}
    masq = next(h for h in hops(doc) if h["step"] == "masquerade")
    assert masq["node"] == "node-1" and masq["table"] == "nat"
    assert masq["chain"] == "KUBE-POSTROUTING" and "MASQUERADE" in masq["rule"]
    assert "externalTrafficPolicy Cluster" in masq["detail"]
    assert "KUBE-NODEPORTS" in chains(doc)
    reply = hops(doc, "reply")
    assert reply[-1]["node"] == "client-0"
    assert reply[-1]["packet"]["src"] == f"{node_ips(tlab)['node-1']}:30080"


def test_nodeport_local_without_endpoint_drops_in_kube_external_services(tlab: RunningLab) -> None:
    doc = trace(tlab, "client-0", "node-0", "--port", "30081")
    assert doc["verdict"] == "dropped" and doc["answeredBy"] is None
    drop = hops(doc)[-1]
    assert drop["step"] == "drop" and drop["node"] == "node-0"
    assert (drop["table"], drop["chain"]) == ("filter", "KUBE-EXTERNAL-SERVICES")
    assert "no local endpoints" in drop["rule"] and hops(doc, "reply") == []


def test_nodeport_local_keeps_the_client(tlab: RunningLab) -> None:
    doc = trace(tlab, "client-0", "node-1", "--port", "30081")
    assert doc["verdict"] == "answered" and doc["answeredBy"] == "pod-2"
    assert not any(h["step"] == "masquerade" for h in doc["hops"])
    deliver = next(h for h in hops(doc) if h["step"] == "deliver")
    assert deliver["packet"]["src"].startswith("172.") and "pod-2" in deliver["detail"]


def test_hairpin_masquerades_to_the_bridge(tlab: RunningLab) -> None:
    doc = trace(tlab, "pod-2", "solo")
    assert doc["verdict"] == "answered" and doc["answeredBy"] == "pod-2"
    masq = next((h for h in hops(doc) if h["step"] == "masquerade"), None)
    assert masq is not None, json.dumps(doc, indent=1)
    gateway = next(n["gateway"] for n in cluster(tlab)["nodes"] if n["name"] == "node-1")
    assert "hairpin" in masq["detail"] and masq["packet"]["src"].startswith(f"{gateway}:")
    assert hops(doc)[-1]["step"] == "deliver" and hops(doc, "reply")[-1]["step"] == "deliver"


def test_no_endpoints_is_refused_by_reject(tlab: RunningLab) -> None:
    doc = trace(tlab, "pod-0", "no-backends")
    assert doc["verdict"] == "refused"
    rej = hops(doc)[-1]
    assert rej["step"] == "reject" and (rej["table"], rej["chain"]) == ("filter", "KUBE-SERVICES")
    assert "REJECT" in rej["rule"] and rej["node"] == "node-0"


def test_text_output_is_one_line_per_hop_and_a_verdict(tlab: RunningLab) -> None:
    text = tlab.kgen("trace", "pod-0", "pod-1").stdout.strip().splitlines()
    assert text[0].startswith("trace pod-0 (") and "request" in text and "reply" in text
    assert text[-1].startswith("verdict: answered by pod-1")


def test_bad_names_and_options_exit_2(tlab: RunningLab) -> None:
    for args in (["pod-9", "web"], ["pod-0", "nothing"], ["pod-0", "node-1"],
                 ["pod-0", "8.8.8.8", "--port", "80"], ["pod-0", "web", "--protocol", "sctp"]):
        result = tlab.kgen("trace", *args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("kgen: ")


# ---------------------------------------------------------------- isolation and clean-up


def test_concurrent_traces_do_not_see_each_other(tlab: RunningLab) -> None:
    argv = [*KGEN, "trace", "-l", str(tlab.lab_file)]
    procs = [subprocess.Popen([*argv, src, "web", "--json"], cwd=tlab.dir, stdout=subprocess.PIPE,
                              text=True) for src in ("pod-0", "pod-1", "pod-0")]
    docs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    ports = []
    for doc in docs:
        first = hops(doc)[0]["packet"]["src"]
        ports.append(first.rsplit(":", 1)[1])
    assert len(set(ports)) == 3
    for doc, own in zip(docs, ports, strict=True):
        assert doc["verdict"] == "answered"
        others = set(ports) - {own}
        for hop in doc["hops"]:
            seen = {hop["packet"]["src"].rsplit(":", 1)[-1], hop["packet"]["dst"].rsplit(":", 1)[-1]}
            assert not seen & others, hop


def armed(lab: RunningLab, node: str) -> bool:
    out = lab.exec(node, "sh", "-c", "iptables-save -t raw | grep -c kgen-trace; true").stdout
    return out.strip() not in ("", "0")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_trace_leaves_nothing(tlab: RunningLab, sig: signal.Signals) -> None:
    # A dropped path: the probe waits for its timeout, so the trace is armed for seconds.
    proc = subprocess.Popen([*KGEN, "trace", "-l", str(tlab.lab_file), "client-0", "node-0",
                             "--port", "30081"], cwd=tlab.dir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not armed(tlab, "node-0"):
        assert proc.poll() is None and time.monotonic() < deadline, "the trace never armed"
        time.sleep(0.1)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 1 and "interrupted" in stderr
    # Every helper disarms when its input ends (kgen gone); give them a bounded while.
    deadline = time.monotonic() + 30
    while leftovers(tlab) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert leftovers(tlab) == []


def test_stale_rules_of_a_killed_helper_are_swept(tlab: RunningLab) -> None:
    """A rule whose deadline has passed (its helper was killed outright) goes with the next
    trace on that node; a live trace's rule stays."""
    stale = "kgen-trace:dead0000:1000"
    live = f"kgen-trace:beef0000:{int(time.time()) + 600}"
    for tag in (stale, live):
        tlab.exec("node-1", "iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--sport", "9",
                  "-m", "comment", "--comment", tag, "-j", "TRACE")
    try:
        trace(tlab, "pod-0", "pod-1")
        saved = tlab.exec("node-1", "iptables-save", "-t", "raw").stdout
        assert stale not in saved and live in saved
    finally:
        tlab.exec("node-1", "sh", "-c", "iptables-save -t raw | grep -q beef0000 && iptables -t raw -D "
                  f"PREROUTING -p tcp --sport 9 -m comment --comment {live} -j TRACE; true")
        # What the next trace's sweep would do: the raw table goes once it is empty.
        tlab.exec("node-1", "python3", "-c",
                  "from generator.node.trace import sweep; sweep('iptables')")


# ---------------------------------------------------------------- a broken lab


@pytest.fixture
def agent_paused(tlab: RunningLab) -> Iterator[None]:
    """The node agents would repair the breaks at once: pause them while broken."""
    for node in ("node-0", "node-1"):
        tlab.exec(node, "pkill", "-STOP", "-f", AGENT)
    try:
        yield
    finally:
        for node in ("node-0", "node-1"):
            tlab.exec(node, "pkill", "-CONT", "-f", AGENT)


def test_broken_route_ends_where_the_packet_died(tlab: RunningLab, agent_paused: None) -> None:
    subnet = next(n["podCIDR"] for n in cluster(tlab)["nodes"] if n["name"] == "node-1")
    route = tlab.exec("node-0", "ip", "route", "show", subnet).stdout.split()
    tlab.exec("node-0", "ip", "route", "del", subnet)
    try:
        doc = trace(tlab, "pod-0", "pod-2")
    finally:
        tlab.exec("node-0", "ip", "route", "replace", *route)
    assert doc["verdict"] == "dropped"
    last = hops(doc)[-1]
    assert last["node"] == "node-0" and last["step"] == "drop" and "no route" in last["detail"]
    assert hops(doc, "reply") == []


def test_bridge_down_ends_where_the_packet_died(tlab: RunningLab, agent_paused: None) -> None:
    tlab.exec("node-1", "ip", "link", "set", "cbr0", "down")
    try:
        doc = trace(tlab, "pod-0", "pod-2")
    finally:
        tlab.exec("node-1", "ip", "link", "set", "cbr0", "up")
        service_cidr = cluster(tlab)["serviceCIDR"]
        tlab.exec("node-1", "ip", "route", "replace", service_cidr, "dev", "cbr0")
    assert doc["verdict"] in ("dropped", "timeout") and doc["answeredBy"] is None
    last = hops(doc)[-1]
    assert last["node"] == "node-1" and last["step"] == "drop" and "no route" in last["detail"]
    assert any(h["step"] == "decap" and h["node"] == "node-1" for h in hops(doc))


def test_nat_flushed_ends_where_the_packet_died(tlab: RunningLab, agent_paused: None) -> None:
    for table in ("nat", "mangle"):  # a firewall reload: mangle holds the polled canary
        tlab.exec("node-0", "iptables", "-t", table, "-F")
        tlab.exec("node-0", "iptables", "-t", table, "-X")
    # By address: a name would first be looked up, and kube-dns is behind the same NAT.
    web = next(s for s in cluster(tlab)["services"] if s["name"] == "web")
    doc = trace(tlab, "pod-0", web["clusterIP"], "--port", str(web["ports"][0]["port"]))
    tlab.exec("node-0", "pkill", "-CONT", "-f", AGENT)  # its proxy's canary restores the rules
    assert doc["verdict"] in ("dropped", "timeout") and doc["answeredBy"] is None
    assert not any(h["step"] == "dnat" for h in doc["hops"])
    last = hops(doc)[-1]
    assert last["node"] == "node-0" and last["step"] == "drop"
    assert "never translated" in last["detail"]
    # The canary is looked at every sync period; the other tables' canaries are waited
    # for up to FLUSH_TIMEOUT (filter's stays: the reload here spared it).
    deadline = time.monotonic() + SYNC_PERIOD + FLUSH_TIMEOUT + 10
    while "KUBE-SERVICES" not in tlab.exec("node-0", "iptables-save", "-t", "nat").stdout:
        assert time.monotonic() < deadline, "the proxy did not restore the nat table"
        time.sleep(0.5)


# ---------------------------------------------------------------- host-gw


@pytest.fixture(scope="module")
def hostgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp("trace-hostgw")
    doc = yaml.safe_load((ROOT / "labs" / "host-gw.yaml").read_text())
    doc["name"] = "tracegw"
    lab_file = workdir / "tracegw.yaml"
    lab_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    yield from bring_up(lab_file, workdir)


def test_host_gw_crosses_in_the_clear(hostgw: RunningLab) -> None:
    doc = trace(hostgw, "pod-b", "pod-c")
    assert doc["verdict"] == "answered" and doc["answeredBy"] == "pod-c"
    ips = node_ips(hostgw)
    wire = next(h for h in hops(doc) if h["step"] == "wire")
    assert wire["node"] == "node-0" and wire["encap"] is None and "host-gw" in wire["detail"]
    route = next(h for h in hops(doc) if h["step"] == "route" and h["node"] == "node-0")
    assert f"via {ips['node-1']} dev eth0" in route["detail"]
    assert not any(h["step"] in ("encap", "decap") for h in doc["hops"])
    assert leftovers(hostgw, ("node-0", "node-1", "client-0")) == []


# ---------------------------------------------------------------- nftables mode


@pytest.fixture(scope="module")
def nftlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp("trace-nft")
    doc = yaml.safe_load((ROOT / "labs" / "nftables.yaml").read_text())
    doc["name"] = "tracenft"
    lab_file = workdir / "tracenft.yaml"
    lab_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    yield from bring_up(lab_file, workdir)


def test_nftables_mode_clusterip_and_local_drop(nftlab: RunningLab) -> None:
    doc = trace(nftlab, "pod-0", "web")
    assert doc["verdict"] == "answered" and doc["answeredBy"] in {"pod-2", "pod-3"}
    c = chains(doc)
    assert "services" in c and any(x.startswith("service-") for x in c)
    dnat = next(h for h in hops(doc) if h["step"] == "dnat")
    ip = pod_ips(nftlab)[doc["answeredBy"]]
    assert dnat["chain"].startswith("endpoint-") and dnat["packet"]["dst"] == f"{ip}:8080"
    table = nftlab.exec("node-0", "nft", "list", "table", "ip", "kube-proxy").stdout
    assert dnat["chain"] in table and f"dnat to {ip}:8080" in table
    assert_vxlan(nftlab, doc, "node-0", nftlab.node_of(doc["answeredBy"]))
    drop = trace(nftlab, "client-0", "node-0", "--port", "30081")
    assert drop["verdict"] == "dropped" and hops(drop)[-1]["node"] == "node-0"
    assert leftovers(nftlab) == []
