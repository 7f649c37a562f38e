"""The proxier's sync model on a real iptables, in a throw-away network namespace."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from generator.node.contract import input_digest
from generator.node.proxy.proxier import Proxier
from tests.conftest import need_root_netns
from tests.unit.proxy_fixture import CLUSTER_CIDR, NODE, PODS, SERVICES, pod

pytestmark = pytest.mark.netns


@pytest.fixture
def ns() -> Iterator[str]:
    need_root_netns()
    name = f"kgt-proxy-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def proxier(ns: str, **kw: float) -> Proxier:
    exec_ns = ("ip", "netns", "exec", ns)
    return Proxier(NODE, "192.168.0.2", CLUSTER_CIDR,
                   iptables_restore=(*exec_ns, "iptables-restore"),
                   iptables=(*exec_ns, "iptables"), iptables_save=(*exec_ns, "iptables-save"),
                   **kw)  # type: ignore[arg-type]


def save(ns: str, table: str = "nat") -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "iptables-save", "-t", table],
                          check=True, capture_output=True, text=True).stdout


def chains(ns: str) -> set[str]:
    return {line[1:].split()[0] for line in save(ns).splitlines() if line.startswith(":KUBE-")}


def test_full_sync_writes_rules_jumps_and_canary(ns: str) -> None:
    p = proxier(ns)
    p.update(SERVICES, PODS)
    assert p.sync_once(), p.error
    nat = save(ns)
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in nat
    assert "KUBE-SVC-XPGD46QRK7WJZT7O" in nat and ":KUBE-PROXY-CANARY" in nat
    assert "--to-destination 10.180.0.1:80" in nat
    assert "REJECT" in save(ns, "filter")
    assert p.status()["digest"] and p.status()["syncs"] == 1


def test_partial_sync_rewrites_changed_chains_and_deletes_stale_ones(ns: str) -> None:
    p = proxier(ns)
    p.update(SERVICES, PODS)
    assert p.sync_once()
    before = chains(ns)
    # ep1 (svc1's only endpoint) goes away: its SEP chain is stale, svc1 now REJECTs.
    p.update(SERVICES, PODS[1:])
    assert p.sync_once()
    after = chains(ns)
    assert before - after == {"KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SEP-SXIVWICOYRO3J4NJ"}
    assert "ns1/svc1:p80 has no endpoints" in save(ns, "filter")
    # Unchanged service chains were not rewritten: a rule added by hand there survives.
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", "nat", "-A",
                    "KUBE-SVC-X27LE4BHSL4DOUIK", "-j", "RETURN"], check=True)
    p.update(SERVICES, PODS[2:])
    assert p.sync_once()
    assert "-A KUBE-SVC-X27LE4BHSL4DOUIK -j RETURN" in save(ns)


def flush(ns: str, table: str) -> None:
    for flag in ("-F", "-X"):
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", table, flag], check=True)


def test_a_flushed_table_brings_a_full_resync(ns: str) -> None:
    p = proxier(ns)
    p.update(SERVICES, PODS)
    assert p.sync_once()
    assert p.canary_present()
    # A flush of nat alone leaves mangle's canary, the one kube-proxy polls: unnoticed.
    flush(ns, "nat")
    assert p.canary_present()
    # What a firewall reload does: flush and delete every chain of every table.
    for table in ("mangle", "nat", "filter"):
        flush(ns, table)
    assert not p.canary_present()
    assert p.sync_once()
    nat = save(ns)
    assert "KUBE-SVC-XPGD46QRK7WJZT7O" in nat and "-j KUBE-POSTROUTING" in nat
    assert p.canary_present()


def test_full_sync_removes_chains_left_by_an_earlier_proxy(ns: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", "nat", "-N",
                    "KUBE-SVC-LEFTOVER0000000"], check=True)
    p = proxier(ns)
    p.update(SERVICES, PODS)
    assert p.sync_once(full=True)
    assert "KUBE-SVC-LEFTOVER0000000" not in chains(ns)


def test_events_are_batched(ns: str) -> None:
    p = proxier(ns, min_sync_period=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=p.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for i in range(20):  # 20 changes within ~0.2 s
            p.update(SERVICES, PODS[: 1 + i % 6])
            time.sleep(0.01)
        last = input_digest(SERVICES, PODS[: 1 + 19 % 6])
        deadline = time.monotonic() + 5
        while p.status()["digest"] != last and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.status()["digest"] == last, "caught up with the last change"
        # Burst 2 at once, then one per min sync period (0.5 s here).
        assert p.status()["syncs"] <= 4, p.status()
    finally:
        stop.set()
        thread.join(3)


def test_jumps_follow_kube_proxys_order(ns: str) -> None:
    p = proxier(ns)
    p.update(SERVICES, PODS)
    assert p.sync_once()
    filter_rules = save(ns, "filter").splitlines()
    jumps = [line.split(" -j ")[-1] for line in filter_rules if line.startswith("-A INPUT")]
    assert jumps == ["KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES",
                     "KUBE-FIREWALL"]
    jumps = [line.split(" -j ")[-1] for line in filter_rules if line.startswith("-A FORWARD")]
    assert jumps == ["KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES",
                     "KUBE-EXTERNAL-SERVICES"]
    # A second full sync finds every jump in place and adds none.
    assert p.sync_once(full=True)
    def rules(text: str) -> list[str]:  # without the save's dated comment lines
        return [line for line in text.splitlines() if not line.startswith("#")]
    assert rules(save(ns, "filter")) == rules("\n".join(filter_rules))
    assert save(ns).count("-j KUBE-SERVICES") == 2


def test_staged_full_sync_writes_the_same_ruleset(ns: str) -> None:
    p = proxier(ns, stage=1)
    p.update(SERVICES, PODS)
    assert p.sync_once()
    staged = save(ns)
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", "nat", "-F"], check=True)
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-t", "nat", "-X"], check=True)
    q = proxier(ns, stage=1000)
    q.update(SERVICES, PODS)
    assert q.sync_once()
    def rules(text: str) -> list[str]:
        return sorted(line for line in text.splitlines() if line.startswith(("-A", ":KUBE")))
    assert rules(staged) == rules(save(ns))


def test_partial_syncs_end_where_a_full_sync_starts(ns: str) -> None:
    """Partial syncs leave unchanged top-level chains as they are: the tables must still
    hold exactly what one full sync of the final state writes."""
    p = proxier(ns)
    steps = [PODS, PODS[1:], [*PODS, pod("e4b", "10.180.0.14", "svc4")],
             [*PODS, pod("mine", "10.180.0.9", "svc2", node=NODE)], PODS[:3]]
    for pods in steps:
        p.update(SERVICES, pods)
        assert p.sync_once(), p.error
    fresh = f"kgt-proxy-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", fresh], check=True)
    try:
        q = proxier(fresh)
        q.update(SERVICES, steps[-1])
        assert q.sync_once(), q.error
        for table in ("nat", "filter"):
            def rules(text: str) -> list[str]:
                return sorted(line for line in text.splitlines() if line.startswith(("-A", ":")))
            assert rules(save(ns, table)) == rules(save(fresh, table)), table
    finally:
        subprocess.run(["ip", "netns", "delete", fresh], capture_output=True)


class Recorder:
    """Stands in for subprocess.run: records commands, every one succeeds; `conntrack -L`
    answers with the entries given."""

    def __init__(self, entries: str = "") -> None:
        self.calls: list[list[str]] = []
        self.payloads: list[str] = []  # what iptables-restore was given
        self.entries = entries

    def __call__(self, cmd: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        if cmd[0] == "iptables-restore":
            self.payloads.append(input or "")
        out = self.entries if cmd[:2] == ["conntrack", "-L"] else ""
        return subprocess.CompletedProcess(cmd, 0, out, "")

    def deletes(self) -> list[list[str]]:
        return [c for c in self.calls if c[:2] == ["conntrack", "-D"]]

    def restored(self) -> str:
        return "".join(self.payloads)


def udp_service(node_port: int | None = None) -> dict:
    return {"name": "dns", "type": "NodePort" if node_port else "ClusterIP",
            "clusterIP": "172.30.0.53", "selector": {"app": "dns"}, "sessionAffinity": "None",
            "sessionAffinityTimeout": 10800, "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster",
            "ports": [{"name": "", "port": 53, "targetPort": 5353, "protocol": "UDP",
                       "nodePort": node_port}]}


def dns_pod(name: str, ip: str) -> dict:
    return {"name": name, "node": NODE, "ip": ip, "state": "Running", "labels": {"app": "dns"}}


def entry(client: str, dst: str, dport: int, reply_src: str) -> str:
    return (f"udp      17 29 src={client} dst={dst} sport=40000 dport={dport} "
            f"src={reply_src} dst={client} sport=5353 dport=40000 mark=0 use=1")


ENTRIES = "\n".join([
    entry("10.0.0.2", "172.30.0.53", 53, "10.180.0.7"),  # to a. still serving
    entry("10.0.0.2", "172.30.0.53", 53, "10.180.0.8"),  # to b, gone below
    entry("10.0.0.3", "172.30.0.53", 53, "172.30.0.53"),  # made while REJECTed: no DNAT
    entry("203.0.113.9", "192.168.0.2", 30053, "10.180.0.8"),  # via the nodePort to b
    entry("10.0.0.2", "172.30.0.99", 53, "10.180.0.8"),  # another service: not ours
]) + "\n"


def test_stale_udp_entries_are_those_whose_reply_source_no_longer_serves() -> None:
    run = Recorder(ENTRIES)
    p = Proxier(NODE, "192.168.0.2", CLUSTER_CIDR, runner=run)
    both = [dns_pod("a", "10.180.0.7"), dns_pod("b", "10.180.0.8")]
    p.update([udp_service(30053)], both)
    assert p.sync_once()
    run.calls.clear()
    p.update([udp_service(30053)], both[:1])  # b goes away
    assert p.sync_once()
    assert run.deletes() == [
        ["conntrack", "-D", "-p", "udp", "--orig-dst", "172.30.0.53", "--orig-port-dst", "53",
         "--reply-src", "10.180.0.8"],
        ["conntrack", "-D", "-p", "udp", "--orig-dst", "172.30.0.53", "--orig-port-dst", "53",
         "--reply-src", "172.30.0.53"],
        ["conntrack", "-D", "-p", "udp", "--orig-port-dst", "30053", "--reply-src", "10.180.0.8"]]


def test_nothing_is_listed_when_no_udp_service_changed() -> None:
    run = Recorder(ENTRIES)
    p = Proxier(NODE, "192.168.0.2", CLUSTER_CIDR, runner=run)
    p.update([udp_service()], [dns_pod("a", "10.180.0.7")])
    assert p.sync_once()
    run.calls.clear()
    p.update([udp_service(), *SERVICES], [dns_pod("a", "10.180.0.7"), *PODS])
    assert p.sync_once()
    assert not [c for c in run.calls if c[0] == "conntrack"]


def test_a_deleted_udp_service_loses_all_its_entries() -> None:
    run = Recorder(ENTRIES)
    p = Proxier(NODE, "192.168.0.2", CLUSTER_CIDR, runner=run)
    p.update([udp_service(30053)], [dns_pod("a", "10.180.0.7")])
    assert p.sync_once()
    run.calls.clear()
    p.update([], [dns_pod("a", "10.180.0.7")])
    assert p.sync_once()
    deleted = {tuple(c[4:]) for c in run.deletes()}
    assert ("--orig-dst", "172.30.0.53", "--orig-port-dst", "53", "--reply-src",
            "10.180.0.7") in deleted
    assert ("--orig-port-dst", "30053", "--reply-src", "10.180.0.8") in deleted
    assert not any("172.30.0.99" in c for c in deleted)


def test_a_udp_service_losing_its_last_endpoint_loses_its_entries() -> None:
    """kube-proxy since kubernetes#139629: no serving endpoint left, no entry kept, so
    the next datagram of a one-way sender is a new flow and meets the REJECT."""
    run = Recorder(ENTRIES)
    p = Proxier(NODE, "192.168.0.2", CLUSTER_CIDR, runner=run)
    p.update([udp_service(30053)], [dns_pod("b", "10.180.0.8")])
    assert p.sync_once()
    run.calls.clear()
    run.payloads.clear()
    p.update([udp_service(30053)], [])
    assert p.sync_once()
    deleted = {tuple(c[4:]) for c in run.deletes()}
    assert deleted == {
        ("--orig-dst", "172.30.0.53", "--orig-port-dst", "53", "--reply-src", "10.180.0.7"),
        ("--orig-dst", "172.30.0.53", "--orig-port-dst", "53", "--reply-src", "10.180.0.8"),
        ("--orig-dst", "172.30.0.53", "--orig-port-dst", "53", "--reply-src", "172.30.0.53"),
        ("--orig-port-dst", "30053", "--reply-src", "10.180.0.8")}
    assert "REJECT" in run.restored(), "and the service now rejects"


def test_a_serving_terminating_endpoint_keeps_its_udp_entries() -> None:
    """CleanStaleEntries keeps flows to serving endpoints, terminating ones too: b
    terminating (a the only ready one) keeps its flows; once b stops serving, they go."""
    run = Recorder(ENTRIES)
    p = Proxier(NODE, "192.168.0.2", CLUSTER_CIDR, runner=run)
    a, b = dns_pod("a", "10.180.0.7"), dns_pod("b", "10.180.0.8")
    p.update([udp_service(30053)], [a, b])
    assert p.sync_once()
    run.calls.clear()
    p.update([udp_service(30053)], [a, {**b, "state": "Terminating", "serving": True}])
    assert p.sync_once()
    assert not any("10.180.0.8" in c for c in run.deletes())
    p.update([udp_service(30053)], [a, {**b, "state": "Terminating", "serving": False}])
    assert p.sync_once()
    assert ["conntrack", "-D", "-p", "udp", "--orig-dst", "172.30.0.53", "--orig-port-dst", "53",
            "--reply-src", "10.180.0.8"] in run.deletes()
