"""The NetworkPolicy rules a node writes, in both modes, as goldens, and what they must hold.

The golden cluster spreads the e2e model over two nodes and has a policy for
every feature (pod, namespace and combined selectors, ipBlock with except,
numeric, ranged, named and protocol-only ports, SCTP, both directions); the
goldens are node-0's rules. Regenerate them after an intended change with
`python -m tests.unit.test_netpol_rules` and read the diff.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from typing import Any

import pytest

from generator.node.netpol import iptables, nftables
from generator.node.netpol.plan import NodePlan, node_plan
from generator.node.netpol.policy import Cluster, parse_policy
from tests.conftest import GOLDEN, need_root_netns
from tests.unit.netpol_model import expr, labels, model_pods, ns_named, pod_a, pod_ip, policy

GOLDEN_DIR = GOLDEN / "netpol"
ON_NODE_0 = {"x/a", "x/b", "x/c", "y/a"}


def golden_policies() -> list[dict[str, Any]]:
    ranged = {"port": 30000, "endPort": 30010, "protocol": "UDP"}
    return [
        policy("deny-ingress", ingress=[]),
        pod_a("from-y-and-b", ingress=[{"from": [{"namespaceSelector": ns_named("y")},
                                                 {"podSelector": labels(pod="b")}],
                                        "ports": [{"port": 80}, ranged]}]),
        pod_a("from-z-c-named", ingress=[{"from": [{"namespaceSelector": expr(
            "kubernetes.io/metadata.name", "In", "z"), "podSelector": labels(pod="c")}],
            "ports": [{"port": "serve-81-tcp"}, {"protocol": "SCTP", "port": 81}]}]),
        policy("egress-cidr", labels(pod="b"), egress=[{"to": [{"ipBlock": {
            "cidr": "10.251.0.0/16", "except": [pod_ip("y", "b") + "/32", "10.251.3.0/30"]}},
            {"ipBlock": {"cidr": "192.168.7.0/24"}}, {"ipBlock": {"cidr": "fd00::/8"}}]}]),
        policy("egress-named", labels(pod="c"), egress=[{"to": [{"namespaceSelector": {}}],
                                                        "ports": [{"port": "serve-80-udp",
                                                                   "protocol": "UDP"}]},
                                                       {"ports": [{"protocol": "TCP"}]}]),
        policy("y-a-open", labels(pod="a"), ns="y", ingress=[{}], egress=[{}]),
    ]


def golden_plan(policies: list[dict[str, Any]] | None = None) -> NodePlan:
    pods = [dataclasses.replace(p, node="node-0" if p.key in ON_NODE_0 else "node-1")
            for p in model_pods()]
    chosen = golden_policies() if policies is None else policies
    return node_plan(Cluster([], pods, [parse_policy(p) for p in chosen]), "node-0")


def rendered() -> dict[str, str]:
    plan = golden_plan()
    # what the kernel held before: two chains of ours no longer needed, and kube-proxy's
    held = ":KUBE-POD-FW-OLDOLDOLDOLDOLDO - [0:0]\n:KUBE-SERVICES - [0:0]\n" \
           "-A KUBE-NWPLCY-OLDOLDOLDOLDOLDO -j RETURN\n"
    return {"node-0.rules": iptables.render(plan, held), "node-0.nft": nftables.render(plan)}


@pytest.mark.parametrize("name", ["node-0.rules", "node-0.nft"])
def test_rules_match_the_golden_files(name: str) -> None:
    assert rendered()[name] == (GOLDEN_DIR / name).read_text()


def test_only_the_nodes_isolated_pods_get_firewall_chains() -> None:
    plan = golden_plan()
    assert sorted(p.pod.key for p in plan.pods) == ["x/a", "x/b", "x/c", "y/a"]
    by_key = {p.pod.key: p for p in plan.pods}
    assert by_key["x/a"].isolated_by("ingress") == ["x/deny-ingress", "x/from-y-and-b",
                                                   "x/from-z-c-named"]
    assert by_key["x/b"].isolated_by("egress") == ["x/egress-cidr"]
    assert by_key["y/a"].isolated_by("egress") == ["y/y-a-open"]


def test_stale_chains_of_ours_go_and_others_stay() -> None:
    text = rendered()["node-0.rules"]
    assert "-X KUBE-POD-FW-OLDOLDOLDOLDOLDO" in text and "-X KUBE-NWPLCY-OLDOLDOLDOLDOLDO" in text
    assert "KUBE-SERVICES" not in text


def test_a_resync_writes_only_the_chains_that_changed() -> None:
    first = iptables.render(golden_plan())
    assert iptables.render(golden_plan(), first) == "*filter\nCOMMIT\n"
    changed = golden_policies()
    changed[1]["spec"]["ingress"][0]["ports"] = [{"port": 81}]  # x/from-y-and-b: 80 -> 81
    plan = golden_plan(changed)
    written = [line for line in iptables.render(plan, first).splitlines() if line.startswith(":")]
    policy = next(p for p in plan.policies if p.key == "x/from-y-and-b")
    assert written == [f":{policy.chain} - [0:0]"]


def test_named_ports_resolve_per_destination_pod() -> None:
    nft = rendered()["node-0.nft"]
    # ingress: serve-81-tcp on x/a itself; egress: serve-80-udp on every pod (all namespaces)
    assert f"ip daddr {pod_ip('x', 'a')} meta l4proto tcp th dport 81 ip saddr @" in nft
    pairs = ", ".join(f"{pod_ip(ns, n)} . 80" for ns in ("x", "y", "z") for n in ("a", "b", "c"))
    assert f"meta l4proto udp ip daddr . th dport {{ {pairs} }} meta mark set" in nft


def test_comments_fit_the_tools_limits() -> None:
    name = "p" * 253
    long = [policy(name, ns="n" * 63, ingress=[]), policy(name[:-1] + "q", ns="n" * 63, ingress=[])]
    pods = [dataclasses.replace(p, namespace="n" * 63, name="m") for p in model_pods()[:1]]
    plan = node_plan(Cluster([], pods, [parse_policy(p) for p in long]), "node-0")
    for text, limit, quote in ((iptables.render(plan), 256, '--comment "'),
                               (nftables.render(plan), 128, 'comment "')):
        comments = [line.split(quote, 1)[1].split('"', 1)[0] for line in text.splitlines()
                    if quote in line]
        assert comments and max(map(len, comments)) <= limit
        assert any(": isolated by 2 policies, first " in c for c in comments)


def need_tools() -> None:
    need_root_netns()
    for tool in ("iptables-restore", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed on this machine")


def test_the_kernel_takes_the_golden_rules() -> None:
    """Both files applied for real in a throw-away namespace (syntax, sets, SCTP, ranges)."""
    need_tools()
    netns = f"np-{os.getpid() % 100000}-golden"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        for argv, name in ((["iptables-restore", "--noflush"], "node-0.rules"),
                           (["nft", "-f", "-"], "node-0.nft")):
            done = subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True,
                                  text=True, input=(GOLDEN_DIR / name).read_text()
                                  .replace("-X KUBE-", "-F KUBE-"))  # nothing stale there
            assert done.returncode == 0, done.stderr
        listed = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "table", "ip",
                                 "kgen-netpol"], capture_output=True, text=True, check=True)
        assert "isolated by 3 policies, first x/deny-ingress" in listed.stdout
    finally:
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)


if __name__ == "__main__":
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for file, content in rendered().items():
        (GOLDEN_DIR / file).write_text(content)
        print(GOLDEN_DIR / file)


def test_the_forward_jump_is_kept_first_and_single() -> None:
    kube = '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'
    ours, insert = iptables.JUMP_RULE, ["-I", *iptables.JUMP[:1], "1", *iptables.JUMP[1:]]
    assert iptables.jump_commands(f"-P FORWARD ACCEPT\n{ours}\n{kube}\n") == []
    assert iptables.jump_commands(f"-P FORWARD ACCEPT\n{kube}\n") == [insert]
    assert iptables.jump_commands(f"{kube}\n{ours}\n{ours}\n") == [
        ["-D", *iptables.JUMP], ["-D", *iptables.JUMP], insert]
