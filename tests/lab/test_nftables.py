"""Issue 12 on a live lab: `proxyMode: nftables` (labs/nftables.yaml) passes every
`kgen check`, with kube-proxy's nftables table on each node and no KUBE-SVC rules in
iptables."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.lab.conftest import RunningLab, bring_up


@pytest.fixture(scope="module")
def nft_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    yield from bring_up(ROOT / "labs" / "nftables.yaml", tmp_path_factory.mktemp("nftables"))


def test_every_check_passes(nft_lab: RunningLab) -> None:
    result = nft_lab.kgen("check", "--json", check=False)
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if not c["passed"]]
    assert result.returncode == 0, failed


def test_nodes_have_kube_proxys_table_and_no_iptables_service_rules(nft_lab: RunningLab) -> None:
    for node in ("node-0", "node-1", "node-2"):
        saved = nft_lab.exec(node, "iptables-save").stdout
        assert "KUBE-SVC" not in saved and "KUBE-SEP" not in saved, node
        table = nft_lab.exec(node, "nft", "list", "table", "ip", "kube-proxy").stdout
        assert "map service-ips" in table and "chain service-" in table, node
        assert "10.97.0.11 . tcp . 80 : goto service-" in table, node
    status = nft_lab.status()
    web = next(s for s in status["services"] if s["name"] == "web")
    assert len(web["endpoints"]) == 4  # two ports x two pods
