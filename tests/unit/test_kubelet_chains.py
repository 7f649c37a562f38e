"""kubelet's iptables chains and kube-proxy's nfacct counters, on a real kernel in a
throw-away network namespace."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence

import pytest

from generator.node import kubelet_chains, proc
from generator.node.proxy.proxier import Proxier
from tests.conftest import ROOT, need_root_netns
from tests.unit.proxy_fixture import CLUSTER_CIDR, NODE, PODS, SERVICES

pytestmark = pytest.mark.netns


@pytest.fixture
def ns() -> Iterator[str]:
    need_root_netns()
    name = f"kgt-kubelet-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def runner(ns: str) -> kubelet_chains.Run:
    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return proc.run(["ip", "netns", "exec", ns, *argv])
    return run


def save(ns: str, table: str) -> str:
    return proc.check(["ip", "netns", "exec", ns, "iptables-save", "-t", table])


def rules(ns: str, table: str) -> list[str]:
    """Chain declarations and rules, blanks squeezed (iptables-nft prints some doubled)."""
    return [" ".join(line.split()) for line in save(ns, table).splitlines()
            if line.startswith(("-A", ":KUBE"))]


def test_kubelet_chains_in_place_and_idempotent(ns: str) -> None:
    run = runner(ns)
    kubelet_chains.sync(run)
    assert ":KUBE-IPTABLES-HINT - [0:0]" in rules(ns, "mangle")
    for table in kubelet_chains.CANARY_TABLES:
        assert ":KUBE-KUBELET-CANARY - [0:0]" in rules(ns, table)
    assert [r for r in rules(ns, "filter") if r.startswith("-A")] == [
        "-A INPUT -j KUBE-FIREWALL", "-A OUTPUT -j KUBE-FIREWALL",
        '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming '
        'localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP']
    before = {t: rules(ns, t) for t in ("mangle", "nat", "filter")}
    kubelet_chains.sync(run)
    assert {t: rules(ns, t) for t in before} == before, "a second sync changes nothing"
    assert kubelet_chains.check_and_repair(run) is False


def test_a_flushed_table_is_put_back_by_the_canary_check(ns: str) -> None:
    run = runner(ns)
    kubelet_chains.sync(run)
    before = rules(ns, "filter")
    # What a firewall reload does: flush and delete every chain of every table.
    for table in ("mangle", "nat", "filter"):
        for flag in ("-F", "-X"):
            subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", table, flag], check=True)
    assert kubelet_chains.check_and_repair(run) is True
    assert rules(ns, "filter") == before


def test_nfacct_counters_and_kube_proxys_counted_rules(ns: str) -> None:
    """The counters are created over netlink in the namespace; with them the proxier
    writes kube-proxy's `-m nfacct` rules, which the kernel accepts."""
    made = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c",
         "from generator.node.proxy.nfacct import ensure_counter as e; "
         "print(e('localhost_nps_accepted_pkts') and e('ct_state_invalid_dropped_pkts'))"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    if made.stdout.strip() != "True":
        pytest.skip("this kernel has no nfacct (nfnetlink_acct)")
    exec_ns = ("ip", "netns", "exec", ns)
    p = Proxier(NODE, "192.168.0.2", CLUSTER_CIDR, iptables_restore=(*exec_ns, "iptables-restore"),
                iptables=(*exec_ns, "iptables"), iptables_save=(*exec_ns, "iptables-save"),
                nfacct=True)
    p.update(SERVICES, PODS)
    assert p.sync_once(), p.error
    nat = "\n".join(rules(ns, "nat"))
    assert ('-A KUBE-NODEPORTS -d 127.0.0.0/8 -p tcp -m comment --comment "ns3/svc3:p80" -m tcp '
            "--dport 3003 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-"
            in nat)
    assert ("-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name "
            "ct_state_invalid_dropped_pkts -j DROP") in rules(ns, "filter")
