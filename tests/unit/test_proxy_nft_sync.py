"""The nftables proxier on a real kernel, in a throw-away network namespace."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from generator.node.proxy.nftables import NFTablesProxier
from tests.conftest import need_root_netns
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

pytestmark = pytest.mark.netns


@pytest.fixture
def ns() -> Iterator[str]:
    need_root_netns()
    if shutil.which("nft") is None:
        pytest.skip("needs nft (Debian package nftables)")
    name = f"kgt-nft-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def proxier(ns: str, stage: int = 500) -> NFTablesProxier:
    return NFTablesProxier(NODE, NODE_IP, CLUSTER_CIDR, SERVICE_CIDR,
                           nft=("ip", "netns", "exec", ns, "nft"), stage=stage)


def listing(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "ip", "kube-proxy"],
                          check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("stage", [1, 500])
def test_full_and_partial_syncs_load(ns: str, stage: int) -> None:
    p = proxier(ns, stage)
    p.update(SERVICES, PODS)
    assert p.sync_once(), p.error
    table = listing(ns)
    assert "chain service-ULMVA6XW-ns1/svc1/tcp/p80" in table
    assert "numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80" \
        in table
    assert "set affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80" in table
    assert "type filter hook prerouting priority dstnat - 10" in table
    # svc1 loses its endpoint, svc7 (internalTrafficPolicy Local) appears, svc5 goes.
    services = [*SERVICES[:4], SERVICES[5], service(7, "172.30.0.47", internal="Local")]
    pods = [*PODS[1:], pod("a", "10.180.0.7", "svc7", node=NODE)]
    p.update(services, pods)
    assert p.sync_once(), p.error
    table = listing(ns)
    assert "172.30.0.41 . tcp . 80 comment \"ns1/svc1:p80\" : goto reject-chain" in table
    assert "chain local-" in table and "ns7/svc7/tcp/p80" in table
    assert "affinity-GTK6MW7G" not in table
    # A second later the flushed chains go.
    p.stale = {c: t - 2.0 for c, t in p.stale.items()}
    p.update(services, pods[1:])
    assert p.sync_once(), p.error
    assert "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80" not in listing(ns)


def test_a_restarted_proxier_removes_what_it_no_longer_wants(ns: str) -> None:
    p = proxier(ns)
    p.update(SERVICES, PODS)
    assert p.sync_once()
    q = proxier(ns)  # a new agent: knows nothing of what is in the table
    q.update(SERVICES[:1], PODS)
    assert q.sync_once(), q.error
    table = listing(ns)
    assert "affinity-" not in table and "172.30.0.45" not in table
    assert "chain service-HVFWP5L3-ns5/svc5/tcp/p80 {\n\t}" in table, "flushed, deleted later"
