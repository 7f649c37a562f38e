"""The generated NetworkPolicy rules on this machine's kernel, in throw-away namespaces.

One namespace is the node: a bridge with br_netfilter, as cbr0 is. Nine more
are the e2e suite's pods (x, y, z times a, b, c), each on the bridge by a veth
pair and serving 80 and 81 over TCP and UDP. The node's rules come from the
real generator and go in with the real tools (iptables-restore --noflush, nft
-f); each scenario's truth tables are then probed pod to pod and must equal the
e2e suite's expectations (loopback aside). A resync must keep an allowed
established connection.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from generator.node.netpol import iptables, nftables
from generator.node.netpol.plan import node_plan
from tests.conftest import ROOT, need_root_netns
from tests.unit.netpol_model import NAMESPACES, POD_NAMES, keys, model_cluster, pod_ip
from tests.unit.netpol_scenarios import SCENARIOS, Stage

pytestmark = pytest.mark.netns

ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
GATEWAY = "10.251.0.1"
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
    node: str
    pods: dict[str, str]  # "x/a" -> its namespace name
    held: dict[str, list[str]] | None = None  # iptables: the chains the last sync left


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    need_root_netns()
    for tool in ("iptables-restore", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed on this machine")
    tag = f"np-{os.getpid() % 100000}"
    node = f"{tag}-node"
    pods = {f"{ns}/{name}": f"{tag}-{ns}{name}" for ns in NAMESPACES for name in POD_NAMES}
    servers: list[subprocess.Popen[str]] = []
    try:
        _build(node, pods, tag)
        for key, netns in pods.items():
            servers.append(subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.unit.netpol_pod",
                 "serve", key], stdout=subprocess.PIPE, text=True, env=ENV))
        for server in servers:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield Lab(node, pods)
    finally:
        for server in servers:
            server.kill()
            server.wait()
        for netns in [node, *pods.values()]:
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True)


def _build(node: str, pods: dict[str, str], tag: str) -> None:
    run("ip", "netns", "add", node)
    inside = ("ip", "netns", "exec", node)
    run(*inside, "ip", "link", "add", "cbr0", "type", "bridge")
    run(*inside, "ip", "addr", "add", f"{GATEWAY}/24", "dev", "cbr0")
    run(*inside, "ip", "link", "set", "cbr0", "up")
    # bridged pod-to-pod traffic through iptables/nftables, as on a kgen node
    run(*inside, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
    for number, (key, netns) in enumerate(pods.items()):
        host, ns, name = f"{tag}v{number}", *key.split("/")
        run("ip", "netns", "add", netns)
        run("ip", "-n", node, "link", "add", host, "type", "veth", "peer", "name", "eth0",
            "netns", netns)
        run("ip", "-n", node, "link", "set", host, "master", "cbr0", "up")
        run("ip", "-n", netns, "addr", "add", f"{pod_ip(ns, name)}/24", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        run("ip", "-n", netns, "route", "add", "default", "via", GATEWAY)


def apply(lab: Lab, stage: Stage, mode: str) -> None:
    plan = node_plan(model_cluster(stage.policies, stage.ns_labels, stage.pod_labels), "node-0")
    inside = ("ip", "netns", "exec", lab.node)
    if mode == "nftables":
        run(*inside, "nft", "-f", "-", stdin=nftables.render(plan))
        return
    if lab.held is None:  # as the agent after a restart: what iptables-save shows
        lab.held = iptables.held_chains(run(*inside, "iptables-save", "-t", "filter"))
    now = iptables.chain_rules(plan)  # then, sync after sync, only what changed
    run(*inside, "iptables-restore", "--noflush", stdin=iptables.restore_input(now, lab.held))
    lab.held = now
    for command in iptables.jump_commands(run(*inside, "iptables", "-S", "FORWARD")):
        run(*inside, "iptables", "-t", "filter", *command)
    assert iptables.jump_commands(run(*inside, "iptables", "-S", "FORWARD")) == []


def reset(lab: Lab) -> None:
    """No rules at all in the node (iptables-nft keeps its tables in nftables too)."""
    run("ip", "netns", "exec", lab.node, "nft", "flush", "ruleset")
    lab.held = None


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
        saved = iptables.held_chains(run("ip", "netns", "exec", lab.node, "iptables-save",
                                         "-t", "filter"))
        ours = {c for c in saved if c.startswith(iptables.OWN_PREFIXES) or c == iptables.TOP}
        assert lab.held is not None and ours == set(lab.held)


def test_probes_see_a_blocked_pair_at_all(lab: Lab) -> None:
    """Guards the tests above against a datapath that passes everything: no rules, all
    reachable; a default deny, nothing into x."""
    reset(lab)
    assert all(probe(lab, 80, "UDP").values())
    apply(lab, SCENARIOS["should support a 'default-deny-ingress' policy"][0], "nftables")
    into_x = {k: v for k, v in probe(lab, 80, "TCP").items() if k[1].startswith("x/")}
    assert into_x and not any(into_x.values())


SERVICE_IP = "10.251.255.10"  # a "cluster IP" DNATed to x/a, as kube-proxy does in PREROUTING


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_policies_apply_after_a_services_dnat(lab: Lab, mode: str) -> None:
    """Through the service address the verdict is the pod's: x/a takes ingress from x/b only."""
    reset(lab)
    inside = ("ip", "netns", "exec", lab.node)
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
