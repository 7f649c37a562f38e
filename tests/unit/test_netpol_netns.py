"""The generated NetworkPolicy rules on this machine's kernel, in throw-away namespaces.

One namespace is a node: a bridge with br_netfilter, as cbr0 is. Nine more are
the e2e suite's pods (x, y, z times a, b, c), each on the bridge by a veth pair
and serving 80 and 81 over TCP and UDP. The node's rules come from the real
generator and go in with the real tools (iptables-restore --noflush, nft -f);
each scenario's truth tables are then probed pod to pod and must equal the e2e
suite's expectations (loopback aside). The same with two nodes (x on one, y
and z on the other, routed), each enforcing for its own pods; through a
service's DNAT; and a resync must keep an allowed established connection.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from generator.node.netpol import iptables, nftables
from generator.node.netpol.plan import NodePlan, node_plan
from tests.conftest import ROOT, need_root_netns
from tests.unit.netpol_model import NAMESPACES, POD_NAMES, keys, model_cluster, pod_ip, subnet
from tests.unit.netpol_scenarios import SCENARIOS, Stage

pytestmark = pytest.mark.netns

ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
PROBED = [
    "should support a 'default-deny-ingress' policy",
    "UDP: should enforce policy based on Ports",
    "should allow egress access on one named port",
    "should allow ingress access from namespace on one named port",
    "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
    "should support denying of egress traffic on the client side (even if the server explicitly "
    "allows this traffic)",
    "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
    "should work with Ingress, Egress specified together",
    "should stop enforcing policies after they are deleted",
]


@dataclass
class Lab:
    nodes: dict[str, str]  # node name -> its namespace
    pods: dict[str, str]  # "x/a" -> its namespace
    placement: dict[str, str]  # e2e namespace -> node
    held: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # iptables, per node

    def node_ns(self, pod: str) -> str:
        return self.nodes[self.placement[pod.split("/")[0]]]


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


@contextmanager
def built(placement: dict[str, str], tag: str) -> Iterator[Lab]:
    need_root_netns()
    for tool in ("iptables-restore", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed on this machine")
    nodes = {node: f"{tag}-{node}" for node in dict.fromkeys(placement.values())}
    pods = {f"{ns}/{name}": f"{tag}-{ns}{name}" for ns in NAMESPACES for name in POD_NAMES}
    lab = Lab(nodes, pods, placement)
    servers: list[subprocess.Popen[str]] = []
    try:
        _build(lab, tag)
        for key, netns in pods.items():
            servers.append(subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.unit.netpol_pod",
                 "serve", key], stdout=subprocess.PIPE, text=True, env=ENV))
        for server in servers:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield lab
    finally:
        for server in servers:
            server.kill()
            server.wait()
        for netns in [*nodes.values(), *pods.values()]:
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """One node: every pod on one bridge, in one /16 (bridged traffic, br_netfilter)."""
    with built({ns: "node-0" for ns in NAMESPACES}, f"np-{os.getpid() % 100000}") as one:
        yield one


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Lab]:
    """x on node-0, y and z on node-1: pod subnets routed between the nodes over a veth,
    and y <-> z routed inside node-1."""
    with built({"x": "node-0", "y": "node-1", "z": "node-1"}, f"np-{os.getpid() % 100000}t") as two:
        yield two


def _build(lab: Lab, tag: str) -> None:
    one_node = len(lab.nodes) == 1
    for node, netns in lab.nodes.items():
        run("ip", "netns", "add", netns)
        inside = ("ip", "netns", "exec", netns)
        run(*inside, "ip", "link", "add", "cbr0", "type", "bridge")
        gateways = ["10.251.0.1/16"] if one_node else \
            [f"{subnet(ns)}.1/24" for ns, where in lab.placement.items() if where == node]
        for gateway in gateways:
            run(*inside, "ip", "addr", "add", gateway, "dev", "cbr0")
        run(*inside, "ip", "link", "set", "cbr0", "up")
        # bridged pod-to-pod traffic through iptables/nftables, as on a kgen node
        run(*inside, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        run(*inside, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run(*inside, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0")  # y <-> z: in and out cbr0
    if not one_node:
        _link_nodes(lab, tag)
    for number, (key, netns) in enumerate(lab.pods.items()):
        host, (ns, name) = f"{tag}v{number}", key.split("/")
        node = lab.node_ns(key)
        run("ip", "netns", "add", netns)
        run("ip", "-n", node, "link", "add", host, "type", "veth", "peer", "name", "eth0",
            "netns", netns)
        run("ip", "-n", node, "link", "set", host, "master", "cbr0", "up")
        run("ip", "-n", netns, "addr", "add", f"{pod_ip(ns, name)}/{16 if one_node else 24}",
            "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        gateway = "10.251.0.1" if one_node else f"{subnet(ns)}.1"
        run("ip", "-n", netns, "route", "add", "default", "via", gateway)


def _link_nodes(lab: Lab, tag: str) -> None:
    """node-0 and node-1 joined by a veth pair (10.251.254.0/30), each routing the other's
    pod subnets to it: the role the overlay plays in a lab."""
    (first, a), (second, b) = lab.nodes.items()
    run("ip", "-n", a, "link", "add", "uplink", "type", "veth", "peer", "name", "uplink",
        "netns", b)
    for netns, mine, theirs, node in ((a, "10.251.254.1", "10.251.254.2", second),
                                      (b, "10.251.254.2", "10.251.254.1", first)):
        run("ip", "-n", netns, "addr", "add", f"{mine}/30", "dev", "uplink")
        run("ip", "-n", netns, "link", "set", "uplink", "up")
        for ns, where in lab.placement.items():
            if where == node:
                run("ip", "-n", netns, "route", "add", f"{subnet(ns)}.0/24", "via", theirs)


def apply(lab: Lab, stage: Stage, mode: str) -> None:
    """Every node gets the rules for its own pods, as each node's agent will write them."""
    cluster = model_cluster(stage.policies, stage.ns_labels, stage.pod_labels, lab.placement)
    for node, netns in lab.nodes.items():
        _apply_node(lab, node_plan(cluster, node), node, netns, mode)


def _apply_node(lab: Lab, plan: NodePlan, node: str, netns: str, mode: str) -> None:
    inside = ("ip", "netns", "exec", netns)
    if mode == "nftables":
        run(*inside, "nft", "-f", "-", stdin=nftables.render(plan))
        return
    if node not in lab.held:  # as the agent after a restart: what iptables-save shows
        lab.held[node] = iptables.held_chains(run(*inside, "iptables-save", "-t", "filter"))
    now = iptables.chain_rules(plan)  # then, sync after sync, only what changed
    run(*inside, "iptables-restore", "--noflush", stdin=iptables.restore_input(now, lab.held[node]))
    lab.held[node] = now
    for command in iptables.jump_commands(run(*inside, "iptables", "-S", "FORWARD")):
        run(*inside, "iptables", "-t", "filter", *command)
    assert iptables.jump_commands(run(*inside, "iptables", "-S", "FORWARD")) == []


def reset(lab: Lab) -> None:
    """No rules at all in the nodes (iptables-nft keeps its tables in nftables too)."""
    for netns in lab.nodes.values():
        run("ip", "netns", "exec", netns, "nft", "flush", "ruleset")
    lab.held.clear()


def probe(lab: Lab, port: int, protocol: str) -> dict[tuple[str, str], bool]:
    procs = {}
    for src, netns in lab.pods.items():
        targets = [[pod_ip(*dst.split("/")), port, protocol] for dst in keys() if dst != src]
        proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m",
                                 "tests.unit.netpol_pod", "probe"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=ENV)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(targets))
        proc.stdin.close()
        procs[src] = proc
    truth = {}
    for src, proc in procs.items():
        assert proc.stdout is not None
        answers = json.loads(proc.stdout.read())
        proc.wait()
        for dst, answer in zip([d for d in keys() if d != src], answers, strict=True):
            assert answer in (None, dst), f"{src} -> {dst} answered by {answer}"
            truth[(src, dst)] = answer == dst
    return truth


def mismatches(got: dict[tuple[str, str], bool], want: dict[tuple[str, str], bool]) -> list[str]:
    return [f"{s} -> {d}: expected {'allowed' if want[(s, d)] else 'blocked'}"
            for (s, d) in sorted(want) if got[(s, d)] != want[(s, d)]]


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
@pytest.mark.parametrize("name", PROBED)
def test_enforced_truth_tables_match_the_e2e_suite(lab: Lab, mode: str, name: str) -> None:
    reset(lab)
    for number, stage in enumerate(SCENARIOS[name]):
        apply(lab, stage, mode)
        for port, protocol, reach in stage.probes:
            wrong = mismatches(probe(lab, port, protocol), reach.without_loopback())
            assert not wrong, f"stage {number}, {port}/{protocol}: " + "; ".join(wrong)
    if mode == "iptables":  # partial syncs left exactly the chains the last plan needs
        assert_only_needed_chains(lab)


TWO_NODES = [
    "should support a 'default-deny-all' policy",
    "should enforce policy based on Ports",
    "should allow egress access on one named port",
    "should support denying of egress traffic on the client side (even if the server explicitly "
    "allows this traffic)",
    "should enforce except clause while egress access to server in CIDR block",
    "UDP: should enforce policy to allow traffic only from a pod in a different namespace based "
    "on PodSelector and NamespaceSelector",
]


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
@pytest.mark.parametrize("name", TWO_NODES)
def test_two_nodes_each_enforcing_for_its_own_pods(two_nodes: Lab, mode: str, name: str) -> None:
    """Egress is enforced on the source's node, ingress on the destination's: the tables
    still hold across nodes, over routed (not bridged) paths."""
    test_enforced_truth_tables_match_the_e2e_suite(two_nodes, mode, name)


def assert_only_needed_chains(lab: Lab) -> None:
    for node, netns in lab.nodes.items():
        saved = iptables.held_chains(run("ip", "netns", "exec", netns, "iptables-save", "-t",
                                         "filter"))
        ours = {c for c in saved if c.startswith(iptables.OWN_PREFIXES) or c == iptables.TOP}
        assert ours == set(lab.held[node])


def test_probes_see_a_blocked_pair_at_all(lab: Lab) -> None:
    """Guards the tests above against a datapath that passes everything: no rules, all
    reachable; a default deny, nothing into x."""
    reset(lab)
    assert all(probe(lab, 80, "UDP").values())
    apply(lab, SCENARIOS["should support a 'default-deny-ingress' policy"][0], "nftables")
    into_x = {k: v for k, v in probe(lab, 80, "TCP").items() if k[1].startswith("x/")}
    assert into_x and not any(into_x.values())


SERVICE_IP = "172.28.160.10"  # a "cluster IP" DNATed to x/a, as kube-proxy does in PREROUTING


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_policies_apply_after_a_services_dnat(lab: Lab, mode: str) -> None:
    """Through the service address the verdict is the pod's: x/a takes ingress from x/b only."""
    reset(lab)
    inside = ("ip", "netns", "exec", lab.nodes["node-0"])
    for proto in ("tcp", "udp"):
        run(*inside, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", SERVICE_IP, "-p", proto,
            "--dport", "80", "-j", "DNAT", "--to-destination", f"{pod_ip('x', 'a')}:80")
    assert {_ask(lab, src, SERVICE_IP, "TCP") for src in ("x/b", "x/c", "y/a")} == {"x/a"}
    name = "should enforce policy to allow traffic from pods within server namespace based on " \
           "PodSelector"
    apply(lab, SCENARIOS[name][0], mode)
    for protocol in ("TCP", "UDP"):
        answers = {src: _ask(lab, src, SERVICE_IP, protocol) for src in ("x/b", "x/c", "y/a")}
        assert answers == {"x/b": "x/a", "x/c": None, "y/a": None}, protocol


def _ask(lab: Lab, src: str, ip: str, protocol: str) -> str | None:
    out = run("ip", "netns", "exec", lab.pods[src], sys.executable, "-m", "tests.unit.netpol_pod",
              "probe", stdin=json.dumps([[ip, 80, protocol]]))
    answer: str | None = json.loads(out)[0]
    return answer


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_a_resync_keeps_an_allowed_established_connection(lab: Lab, mode: str) -> None:
    reset(lab)
    stages = SCENARIOS["should enforce multiple, stacked policies with overlapping podSelectors"]
    apply(lab, stages[0], mode)  # y may reach x/a on 81 only
    client = subprocess.Popen(["ip", "netns", "exec", lab.pods["y/b"], sys.executable, "-m",
                               "tests.unit.netpol_pod", "talk", pod_ip("x", "a"), "81"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    assert client.stdin is not None and client.stdout is not None
    try:
        client.stdin.write("1\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "x/a"
        apply(lab, stages[1], mode)  # a second policy: a whole new rule set, same verdict
        apply(lab, stages[1], mode)  # and a resync with nothing changed
        client.stdin.write("2\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "x/a"
    finally:
        client.kill()
        client.wait()
