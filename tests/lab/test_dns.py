"""Issue 23: the cluster DNS on a real lab (labs/dns.yaml), in both proxy modes.

`web` lives in `default` and in `shop`: a pod's search path decides which one
`getent hosts web` finds. Every lookup goes to kube-dns's cluster IP and crosses
kube-proxy's DNAT to a coredns pod, which conntrack on the querying pod's node
shows; `kgen apply` adds a service that then resolves within 2 s. `kgen check`'s
DNS checks pass, and fail naming a DNS pod whose server was frozen.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.lab.conftest import RunningLab, bring_up

DNS_IP = "10.96.0.10"
APPLY_WITHIN = 2.0  # contract section 8: records follow `kgen apply` within 2 s


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    doc = yaml.safe_load((ROOT / "labs" / "dns.yaml").read_text())
    doc["name"] = f"dns{request.param[:3]}"
    doc["proxyMode"] = request.param
    workdir = tmp_path_factory.mktemp(f"dns-{request.param}")
    (workdir / f"{doc['name']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    yield from bring_up(workdir / f"{doc['name']}.yaml", workdir)


def service_ip(lab: RunningLab, namespace: str, name: str) -> str:
    return next(s["clusterIP"] for s in lab.status()["services"]
                if (s["namespace"], s["name"]) == (namespace, name))


def pod_ip(lab: RunningLab, name: str) -> str:
    return next(p["ip"] for p in lab.status()["pods"] if p["name"] == name)


def dig(lab: RunningLab, pod: str, *query: str) -> list[str]:
    return lab.exec(pod, "dig", "+short", "+time=2", "+tries=2", *query).stdout.split()


def test_each_namespace_finds_its_own_web(lab: RunningLab) -> None:
    default_web, shop_web = service_ip(lab, "default", "web"), service_ip(lab, "shop", "web")
    assert default_web != shop_web
    for pod, ip, fqdn in (("client", default_web, "web.default.svc.cluster.local"),
                          ("shop/client-shop", shop_web, "web.shop.svc.cluster.local")):
        assert lab.exec(pod, "getent", "hosts", "web").stdout.split() == [ip, fqdn]
    # The other namespace's web by its longer name, through the search path.
    assert lab.exec("client", "getent", "hosts", "web.shop").stdout.split()[0] == shop_web


def test_resolv_conf_is_a_cluster_pods(lab: RunningLab) -> None:
    text = lab.exec("client-shop", "cat", "/etc/resolv.conf").stdout
    assert text == (f"nameserver {DNS_IP}\nsearch shop.svc.cluster.local svc.cluster.local "
                    "cluster.local\noptions ndots:5\n")


def test_headless_srv_ptr_and_pod_records(lab: RunningLab) -> None:
    webs = sorted([pod_ip(lab, "web-0"), pod_ip(lab, "web-1")], key=ipaddress.IPv4Address)
    headless = dig(lab, "client", "web-headless.default.svc.cluster.local")
    assert sorted(headless, key=ipaddress.IPv4Address) == webs
    assert dig(lab, "client", "SRV", "_http._tcp.web.shop.svc.cluster.local") == [
        "0", "100", "80", "web.shop.svc.cluster.local."]
    assert dig(lab, "client", "-x", DNS_IP) == ["kube-dns.kube-system.svc.cluster.local."]
    shop_pod = pod_ip(lab, "shop-web-0")
    dashed = shop_pod.replace(".", "-")
    assert dig(lab, "client", f"{dashed}.shop.pod.cluster.local") == [shop_pod]
    status = lab.exec("client", "dig", "+time=2", "nothere.default.svc.cluster.local").stdout
    assert "status: NXDOMAIN" in status
    outside = lab.exec("client", "dig", "+time=2", "example.com").stdout
    assert "status: REFUSED" in outside


def test_the_query_is_dnated_to_a_dns_pod(lab: RunningLab) -> None:
    dns_pods = {pod_ip(lab, "coredns-0"), pod_ip(lab, "coredns-1")}
    node = lab.node_of("client")
    client_ip = pod_ip(lab, "client")
    sport = 40053  # a source port of our own, to find this query's entry
    lab.exec("client", "dig", "+short", "+time=2", "+tries=1", "-b", f"{client_ip}#{sport}",
             "kube-dns.kube-system.svc.cluster.local")
    entries = lab.exec(node, "conntrack", "-L", "-p", "udp", "--orig-dst", DNS_IP,
                       "--sport", str(sport)).stdout
    found = re.search(rf"src={re.escape(client_ip)} dst={re.escape(DNS_IP)} sport={sport} "
                      r"dport=53 src=(\S+) ", entries)
    assert found is not None, entries
    assert found.group(1) in dns_pods


def check_report(lab: RunningLab) -> dict[str, Any]:
    result = lab.kgen("check", "--json", check=False)
    report: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == (0 if report["failed"] == 0 else 1), result.stderr
    return report


def test_kgen_check_resolves_every_service_from_every_namespace(lab: RunningLab) -> None:
    report = check_report(lab)
    failed = [(c["id"], c["seen"]) for c in report["checks"] if not c["passed"]]
    assert failed == []
    dns = {c["id"] for c in report["checks"] if c["kind"] == "dns"}
    assert {"dns[web.default from client]", "dns[web.shop from client]",
            "dns[web.shop from client-shop]", "dns[web-headless.default from client-shop]",
            "dns[example.org. from client]", "dns[example.org. from client-shop]",
            "dns[SRV _http._tcp.web.default.svc.cluster.local. from client]"} <= dns
    print(f"kgen check: {report['passed']} passed ({len(dns)} DNS) in {report['seconds']} s")


def test_kgen_check_names_a_dns_pod_that_stopped_answering(lab: RunningLab) -> None:
    """A frozen DNS server (SIGSTOP: its process and socket stay, nothing answers): every
    DNS check fails naming it; the checks that need no DNS still pass."""
    server = "pods/coredns-0/queries.log"  # only coredns-0's server has this in its command
    node = lab.node_of("coredns-0")
    lab.exec(node, "pkill", "-STOP", "-f", server)
    try:
        report = check_report(lab)
    finally:
        lab.exec(node, "pkill", "-CONT", "-f", server)
    dns = [c for c in report["checks"] if c["kind"] == "dns"]
    assert dns and not any(c["passed"] for c in dns)
    coredns_0 = pod_ip(lab, "coredns-0")
    for c in dns:
        assert f"coredns-0 ({coredns_0}) asked directly: timed out" in c["seen"], c
    assert all(c["passed"] for c in report["checks"] if c["kind"] != "dns")
    # Lookups through kube-dns that kube-proxy sent to coredns-0 name what they asked.
    assert any("→ Temporary failure in name resolution, expected" in c["seen"] for c in dns)
    print(f"kgen check with coredns-0 frozen: {report['failed']} failed in {report['seconds']} s")


def test_a_service_added_with_apply_resolves_within_2_s(lab: RunningLab) -> None:
    doc = yaml.safe_load(lab.lab_file.read_text())
    doc["services"].append({"name": "late", "namespace": "shop", "selector": {"app": "web"},
                            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]})
    lab.lab_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    lab.kgen("apply")
    applied = time.monotonic()
    address = service_ip(lab, "shop", "late")
    while True:
        # When the query was sent counts, not how long `kgen exec` took to return.
        sent = time.monotonic() - applied
        answer = dig(lab, "shop/client-shop", "late.shop.svc.cluster.local")
        if answer == [address] or sent > APPLY_WITHIN:
            break
        time.sleep(0.1)
    print(f"late.shop answered to a query sent {sent:.2f}s after kgen apply returned")
    assert answer == [address] and sent <= APPLY_WITHIN


def test_status_lists_the_dns_in_kube_system(lab: RunningLab) -> None:
    status = lab.status()
    dns = [(p["namespace"], p["name"]) for p in status["pods"] if p["name"].startswith("coredns")]
    assert dns == [("kube-system", "coredns-0"), ("kube-system", "coredns-1")]
    (svc,) = [s for s in status["services"] if s["name"] == "kube-dns"]
    assert svc["namespace"] == "kube-system" and svc["clusterIP"] == DNS_IP
    assert len(svc["endpoints"]) == 2


@pytest.fixture(autouse=True)
def _lab_file_is_a_copy(lab: RunningLab) -> None:
    """The apply test edits the lab file: it must be the copy, never labs/dns.yaml."""
    assert Path(lab.lab_file).parent != ROOT / "labs"
