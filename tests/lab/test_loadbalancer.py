"""Issue 22 on live labs, in both proxy modes (labs/loadbalancer.yaml): clients reach
every LoadBalancer IP through the node that answers ARP for it, a source outside
loadBalancerSourceRanges gets no answer, externalTrafficPolicy Local keeps the client's
address and its health check node port answers 200 / 503 as kube-proxy's does, an
externalIP routed to a node is served, and pausing the announcing node moves the IP
to another node whose gratuitous ARP updates the client's ARP cache in place.

The lab's node network is rewritten to KGEN_TEST_LB_NETWORKS (two /24 prefixes, one
per mode, e.g. `172.28.181,172.28.182`) so that engineers sharing an engine do not meet.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from generator.node.healthcheck import body
from tests.conftest import ROOT
from tests.lab.conftest import RunningLab, bring_up

NETWORKS = os.environ.get("KGEN_TEST_LB_NETWORKS", "172.31.200,172.31.201").split(",")
LAB_PREFIX = "172.31.200."  # labs/loadbalancer.yaml's node network
WAIT = 30.0  # a bound on waiting for the lab to change (a hang guard, not a speed goal)


def lab_copy(mode: str, workdir: Path) -> Path:
    net = NETWORKS[0 if mode == "iptables" else 1]
    text = (ROOT / "labs" / "loadbalancer.yaml").read_text().replace(LAB_PREFIX, f"{net}.")
    doc = yaml.safe_load(text)
    doc["name"], doc["proxyMode"] = f"lb-{mode[:3]}", mode
    path = workdir / "loadbalancer.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    workdir = tmp_path_factory.mktemp(f"lb-{request.param}")
    yield from bring_up(lab_copy(request.param, workdir), workdir)


def service(lab: RunningLab, name: str) -> dict:
    return next(s for s in lab.status()["services"] if s["name"] == name)


def curl(lab: RunningLab, client: str, url: str) -> subprocess.CompletedProcess[str]:
    return lab.exec(client, "curl", "-s", "--max-time", "3", url, check=False)


def mac_of(lab: RunningLab, node: str) -> str:
    return lab.exec(node, "cat", "/sys/class/net/eth0/address").stdout.strip()


def neighbour_mac(lab: RunningLab, client: str, ip: str) -> str:
    words = lab.exec(client, "ip", "neigh", "show", ip).stdout.split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else ""


def answer_and_mac(lab: RunningLab, client: str, ip: str) -> tuple[str, str]:
    """A request to the IP and, in the same exec, the client's ARP entry for it (so that
    no probe of a slow lab can age the entry between the two)."""
    out = lab.exec(client, "sh", "-c", f"curl -s --max-time 3 http://{ip}/hostname; echo; "
                                       f"ip neigh show {ip}", check=False).stdout
    answer, _, neigh = out.partition("\n")
    words = neigh.split()
    return answer, words[words.index("lladdr") + 1] if "lladdr" in words else ""


def ip_of(lab: RunningLab, name: str) -> str:
    status = lab.status()
    return next(m["ip"] for m in status["nodes"] + status["clients"] if m["name"] == name)


@pytest.mark.parametrize("name", ["web-lb", "web-lb-local", "web-lb-ranges"])
def test_client_reaches_the_lb_ip_through_its_announcer(lab: RunningLab, name: str) -> None:
    svc = service(lab, name)
    answer, mac = answer_and_mac(lab, "client-0", svc["loadBalancerIP"])
    assert answer in ("web-0", "web-1"), answer
    # The client resolved the IP to the MAC of the node status names.
    assert svc["announcedBy"] in ("node-0", "node-1", "node-2")
    assert mac == mac_of(lab, svc["announcedBy"])


def test_local_lb_is_announced_by_a_node_with_an_endpoint(lab: RunningLab) -> None:
    assert service(lab, "web-lb-local")["announcedBy"] in ("node-1", "node-2")


def test_source_outside_the_ranges_gets_no_answer(lab: RunningLab) -> None:
    ip = service(lab, "web-lb-ranges")["loadBalancerIP"]
    assert curl(lab, "client-0", f"http://{ip}/hostname").returncode == 0
    refused = curl(lab, "client-1", f"http://{ip}/hostname")
    assert refused.returncode == 28 and refused.stdout == "", refused  # 28: timed out
    # The same client reaches the LB IP without source ranges.
    other = service(lab, "web-lb")["loadBalancerIP"]
    assert curl(lab, "client-1", f"http://{other}/hostname").returncode == 0


def test_local_keeps_the_client_address_and_cluster_masquerades(lab: RunningLab) -> None:
    client = ip_of(lab, "client-0")
    local = curl(lab, "client-0", f"http://{service(lab, 'web-lb-local')['loadBalancerIP']}/clientip")
    assert local.stdout.split(":")[0] == client, local
    cluster = curl(lab, "client-0", f"http://{service(lab, 'web-lb')['loadBalancerIP']}/clientip")
    assert cluster.returncode == 0 and cluster.stdout.split(":")[0] != client, cluster


@pytest.mark.parametrize(("node", "count"), [("node-0", 0), ("node-1", 1), ("node-2", 1)])
def test_health_check_node_port_answers_as_kube_proxy(lab: RunningLab, node: str,
                                                      count: int) -> None:
    port = service(lab, "web-lb-local")["healthCheckNodePort"]
    url = f"http://{ip_of(lab, node)}:{port}/"
    got = lab.exec("client-0", "curl", "-s", "--max-time", "3", "-w", "\n%{http_code}", url,
                   check=False).stdout
    text, _, code = got.rpartition("\n")
    assert code == ("200" if count else "503"), got
    assert text == body("default", "web-lb-local", count)
    assert json.loads(text)["localEndpoints"] == count


def test_external_ip_routed_to_a_node_is_served(lab: RunningLab) -> None:
    ip = service(lab, "web-external")["externalIPs"][0]
    lab.exec("client-0", "ip", "route", "replace", f"{ip}/32", "via", ip_of(lab, "node-0"))
    try:
        answer = curl(lab, "client-0", f"http://{ip}/clientip")
    finally:
        lab.exec("client-0", "ip", "route", "del", f"{ip}/32")
    # node-0 has no endpoint: Cluster policy masquerades on the way to another node.
    assert answer.returncode == 0 and answer.stdout.split(":")[0] != ip_of(lab, "client-0")


def wait_for(what: str, test) -> float:
    started = time.monotonic()
    while not test():
        if time.monotonic() - started > WAIT:
            raise AssertionError(f"not within {WAIT:.0f} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_pausing_the_announcer_moves_the_ip_and_the_client_follows(lab: RunningLab) -> None:
    svc = service(lab, "web-lb-local")
    ip, old = svc["loadBalancerIP"], svc["announcedBy"]
    survivor = "node-2" if old == "node-1" else "node-1"
    old_mac, new_mac = mac_of(lab, old), mac_of(lab, survivor)
    assert answer_and_mac(lab, "client-0", ip) == ("web-0" if old == "node-1" else "web-1",
                                                   old_mac)
    container = f"kgen-{lab.name}-{old}"
    subprocess.run(["docker", "pause", container], check=True, capture_output=True)
    try:
        # The survivor's gratuitous ARP rewrites the client's entry: no flush, no new ARP.
        took = wait_for(f"{survivor}'s gratuitous ARP for {ip}",
                        lambda: neighbour_mac(lab, "client-0", ip) == new_mac)
        print(f"{ip} moved from {old} to {survivor} {took:.1f} s after the pause")
        assert service(lab, "web-lb-local")["announcedBy"] == survivor
        answer = curl(lab, "client-0", f"http://{ip}/clientip")
        assert answer.stdout.split(":")[0] == ip_of(lab, "client-0"), answer
        assert curl(lab, "client-0", f"http://{ip}/hostname").stdout == \
            ("web-1" if survivor == "node-2" else "web-0")
    finally:
        subprocess.run(["docker", "unpause", container], check=True, capture_output=True)
    # Back again, the node owns its IP once more and says so with its own gratuitous ARP.
    wait_for(f"{old} announcing {ip} again", lambda: neighbour_mac(lab, "client-0", ip) == old_mac)
