"""The nftables proxier against kube-proxy's TestOverallNFTablesRules, and its syncs
(on a model of the table that applies each transaction all or nothing)."""

from __future__ import annotations

import subprocess

import pytest

from generator.node.proxy import nft_rules
from generator.node.proxy.nftables import STAGE, NFTablesProxier
from generator.node.proxy.service import port_infos
from tests.conftest import GOLDEN
from tests.unit.nft_fake import FakeTable, sort_transaction
from tests.unit.proxy_fixture import (
    CLUSTER_CIDR,
    NODE,
    NODE_IP,
    PODS,
    SERVICE_CIDR,
    SERVICES,
    pod,
    service,
)


def table_for(services=SERVICES, pods=PODS) -> FakeTable:
    ports = [nft_rules.service_port_rules(i, NODE, CLUSTER_CIDR)
             for i in port_infos(services, pods)]
    table = FakeTable()
    table.apply(nft_rules.full_transaction(ports, NODE_IP, SERVICE_CIDR))
    return table


def test_overall_table_matches_the_golden_file() -> None:
    golden = (GOLDEN / "proxy" / "nftables-overall.nft").read_text()
    assert sort_transaction(table_for().dump()) == sort_transaction(golden)


class FakeNft:
    """Stands in for `nft` (and `conntrack`): applies transactions to a FakeTable."""

    def __init__(self) -> None:
        self.table = FakeTable()
        self.transactions: list[str] = []
        self.fail_next = False

    def __call__(self, cmd: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        if cmd[0] == "conntrack":
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if cmd[1:] == ["-f", "-"]:
            assert input is not None
            self.transactions.append(input)
            if self.fail_next:
                self.fail_next = False
                return subprocess.CompletedProcess(cmd, 1, "", "Error: injected")
            try:
                self.table.apply(input)
            except (ValueError, KeyError) as err:
                return subprocess.CompletedProcess(cmd, 1, "", f"Error: {err}")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if "list" in cmd:
            if self.table.table is None:
                return subprocess.CompletedProcess(cmd, 0, "", "")
            if "chains" in cmd:
                body = "".join(f"\tchain {c} {{\n\t}}\n" for c in self.table.chains)
            else:
                body = "".join(f"\tset {s} {{\n\t}}\n" for s in self.table.containers)
            return subprocess.CompletedProcess(cmd, 0, f"table ip kube-proxy {{\n{body}}}\n", "")
        raise AssertionError(cmd)


def proxier(nft: FakeNft, stage: int = STAGE) -> NFTablesProxier:
    return NFTablesProxier(NODE, NODE_IP, CLUSTER_CIDR, SERVICE_CIDR, runner=nft, stage=stage)


def same_as_fresh(nft: FakeNft, services, pods) -> bool:
    """The table after the proxier's syncs equals one written from scratch for this state
    (stale chains, which kube-proxy flushes now and deletes a second later, aside)."""
    fresh = sort_transaction(table_for(services, pods).dump())
    got = sort_transaction(nft.table.dump())
    fresh_lines, got_lines = set(fresh.splitlines()), set(got.splitlines())
    leftovers = {line for line in got_lines - fresh_lines
                 if line.startswith("add chain") and "/" in line}
    return fresh_lines == got_lines - leftovers


def two_ports() -> dict:
    """svc8 with two ports: both own the cluster-ips element of 172.30.0.48."""
    svc = service(8, "172.30.0.48")
    svc["ports"] = [*svc["ports"], {**svc["ports"][0], "name": "p81", "port": 81}]
    return svc


@pytest.mark.parametrize("stage", [1, STAGE])
def test_full_then_partial_syncs_reach_the_same_table_as_a_fresh_one(stage: int) -> None:
    nft = FakeNft()
    p = proxier(nft, stage)
    steps = [
        (SERVICES, PODS),
        (SERVICES, PODS[1:]),  # svc1 loses its only endpoint: REJECT, chains stale
        (SERVICES, [*PODS, pod("mine", "10.180.0.9", "svc2", node=NODE)]),  # a local endpoint
        (SERVICES[:4], PODS),  # svc5 and svc6 deleted
        ([*SERVICES, service(7, "172.30.0.47", internal="Local")], PODS),
        ([*SERVICES, two_ports()], [*PODS, pod("e8", "10.180.0.8", "svc8")]),
        ([*SERVICES, service(8, "172.30.0.48")], [*PODS, pod("e8", "10.180.0.8", "svc8")]),
    ]
    for services, pods in steps:
        p.update(services, pods)
        assert p.sync_once(), p.error
        assert same_as_fresh(nft, services, pods)
    assert len(nft.transactions) >= len(steps)


def test_partial_sync_touches_only_what_changed() -> None:
    nft = FakeNft()
    p = proxier(nft)
    p.update(SERVICES, PODS)
    assert p.sync_once()
    p.update(SERVICES, [*PODS, pod("ep4b", "10.180.0.14", "svc4")])
    assert p.sync_once()
    last = nft.transactions[-1]
    assert "ns4/svc4" in last and "ns1/svc1" not in last
    assert "flush map" not in last, "partial: elements are diffed, not rewritten"


def test_stale_chains_are_flushed_then_deleted_a_second_later() -> None:
    nft = FakeNft()
    p = proxier(nft)
    p.update(SERVICES, PODS)
    assert p.sync_once()
    p.update(SERVICES, PODS[1:])
    assert p.sync_once()
    gone = "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    assert nft.table.chains[gone].rules == []
    p.stale = {c: t - 2.0 for c, t in p.stale.items()}
    p.update(SERVICES, PODS[2:])
    assert p.sync_once()
    assert gone not in nft.table.chains


def test_a_failed_sync_is_followed_by_a_full_one() -> None:
    nft = FakeNft()
    p = proxier(nft)
    p.update(SERVICES, PODS)
    assert p.sync_once()
    nft.fail_next = True
    p.update(SERVICES, PODS[1:])
    assert not p.sync_once() and p.need_full
    assert p.sync_once()
    assert "flush map ip kube-proxy service-ips" in nft.transactions[-1]
    assert same_as_fresh(nft, SERVICES, PODS[1:])


def test_staged_cold_start_bounds_each_transaction() -> None:
    services = [service(i, f"172.30.1.{i}") for i in range(1, 40)]
    pods = [pod(f"p{i}", f"10.180.1.{i}", f"svc{i}") for i in range(1, 40)]
    nft = FakeNft()
    p = proxier(nft, stage=10)
    p.update(services, pods)
    assert p.sync_once()
    vmaps = [t.count("numgen random") for t in nft.transactions]
    assert max(vmaps) <= 10 and sum(vmaps) == 39
    assert same_as_fresh(nft, services, pods)
