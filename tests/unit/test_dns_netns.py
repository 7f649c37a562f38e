"""The cluster DNS server on real sockets, asked by real `dig`.

Two throw-away network namespaces joined by a veth pair: the server
(`python3 -m generator.node.dns`) listens on port 53 in the first, `dig`
queries it from the second over UDP and TCP, and we read dig's own output.
The zone file is rewritten while it runs, as a lab change would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from generator.node.dns.resolvconf import resolv_conf
from tests.conftest import ROOT, need_root_netns

pytestmark = pytest.mark.netns

ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
SERVER, CLIENT = "10.250.53.1", "10.250.53.2"  # private, and only between the two namespaces
SVC = "default.svc.cluster.local"


def zone_doc(services: list[dict[str, Any]]) -> dict[str, Any]:
    return {"domain": "cluster.local", "namespaces": ["default", "kube-system"], "nameserver": "10.96.0.10",
            "reverseCIDRs": ["10.96.0.0/12", "10.244.0.0/16"],
            "pods": [{"name": "web-0", "namespace": "default", "ip": "10.244.1.2"}], "services": services}


HTTP = [{"name": "http", "protocol": "TCP", "port": 80}]
WEB = {"name": "web", "namespace": "default", "clusterIP": "10.96.0.20", "ports": HTTP,
       "endpoints": [{"ip": "10.244.1.2", "pod": "web-0"}]}
MANY = {"name": "many", "namespace": "default", "clusterIP": None, "ports": HTTP,
        "endpoints": [{"ip": f"10.244.2.{i}", "pod": f"m-{i}"} for i in range(1, 121)]}


@dataclass
class Lab:
    client: str
    zone: Path
    log: Path
    server: subprocess.Popen[str]

    def dig(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.client, "dig", f"@{SERVER}", "+time=2", "+tries=1",
                               *args], capture_output=True, text=True, timeout=20, env=ENV)

    def getent(self, *args: str) -> str:
        """glibc's resolver as a pod's processes use it: the pod's resolv.conf, search path, ndots:5."""
        return subprocess.run(["ip", "netns", "exec", self.client, "getent", *args], capture_output=True,
                              text=True, timeout=30, env=ENV).stdout

    def write_zone(self, services: list[dict[str, Any]]) -> None:
        tmp = self.zone.with_suffix(".tmp")
        tmp.write_text(json.dumps(zone_doc(services)))
        os.replace(tmp, self.zone)


def status(out: str) -> str:
    line = next(x for x in out.splitlines() if "->>HEADER<<-" in x)
    return line.split("status: ")[1].split(",")[0]


def answer_lines(out: str) -> list[list[str]]:
    """dig's ANSWER SECTION, one list of fields per record."""
    lines = out.split(";; ANSWER SECTION:\n")[1].split("\n\n")[0] if ";; ANSWER SECTION:" in out else ""
    return [line.split() for line in lines.splitlines()]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    need_root_netns()
    if shutil.which("dig") is None:
        pytest.skip("dig is not installed (apt-get install dnsutils; scripts/install.sh does)")
    tag = f"dn-{os.getpid() % 100000}"
    server_ns, client_ns = f"{tag}s", f"{tag}c"
    steps = [["ip", "netns", "add", server_ns], ["ip", "netns", "add", client_ns],
             ["ip", "link", "add", f"{tag}x", "type", "veth", "peer", "name", f"{tag}y"],
             ["ip", "link", "set", f"{tag}x", "netns", server_ns],
             ["ip", "link", "set", f"{tag}y", "netns", client_ns],
             ["ip", "-n", server_ns, "addr", "add", f"{SERVER}/24", "dev", f"{tag}x"],
             ["ip", "-n", client_ns, "addr", "add", f"{CLIENT}/24", "dev", f"{tag}y"],
             ["ip", "-n", server_ns, "link", "set", f"{tag}x", "up"],
             ["ip", "-n", client_ns, "link", "set", f"{tag}y", "up"]]
    zone, log = tmp_path / "zone.json", tmp_path / "queries.log"
    etc = Path("/etc/netns") / client_ns  # `ip netns exec` binds its files over /etc, as a pod's
    zone.write_text(json.dumps(zone_doc([WEB, MANY])))
    server: subprocess.Popen[str] | None = None
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(resolv_conf(SERVER, "default", "cluster.local"))
        argv = ["ip", "netns", "exec", server_ns, sys.executable, "-m", "generator.node.dns",
                "--zone", str(zone), "--listen", SERVER, "--port", "53", "--log", str(log)]
        server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        assert server.stdout is not None
        assert server.stdout.readline().startswith(f"kgen dns: listening on {SERVER}:53"), server.stderr
        yield Lab(client_ns, zone, log, server)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        for ns in (server_ns, client_ns):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


def test_dig_gets_a_srv_and_ptr_over_udp_and_tcp(lab: Lab) -> None:
    for transport in ("+notcp", "+tcp"):
        a = lab.dig(transport, f"web.{SVC}", "A")
        assert status(a.stdout) == "NOERROR" and "flags: qr aa rd;" in a.stdout
        assert answer_lines(a.stdout) == [[f"web.{SVC}.", "5", "IN", "A", "10.96.0.20"]]
        srv = lab.dig(transport, f"_http._tcp.web.{SVC}", "SRV")
        assert answer_lines(srv.stdout) == [[f"_http._tcp.web.{SVC}.", "5", "IN", "SRV", "0", "100", "80",
                                             f"web.{SVC}."]]
        assert f"web.{SVC}. 5 IN A 10.96.0.20" in " ".join(srv.stdout.split())  # additional section
        ptr = lab.dig(transport, "-x", "10.244.1.2")
        assert answer_lines(ptr.stdout) == [["2.1.244.10.in-addr.arpa.", "5", "IN", "PTR",
                                             f"10-244-1-2.web.{SVC}."]]
        assert f"({'TCP' if transport == '+tcp' else 'UDP'})" in a.stdout


def test_dig_sees_nxdomain_nodata_refused_and_the_schema_version(lab: Lab) -> None:
    nx = lab.dig(f"nope.{SVC}")
    assert status(nx.stdout) == "NXDOMAIN" and "AUTHORITY: 1" in nx.stdout
    nodata = lab.dig(f"web.{SVC}", "AAAA")
    assert status(nodata.stdout) == "NOERROR" and "ANSWER: 0" in nodata.stdout
    assert status(lab.dig("example.com").stdout) == "REFUSED"
    assert lab.dig("+short", "dns-version.cluster.local", "TXT").stdout.strip() == '"1.1.0"'


def test_a_big_answer_is_truncated_over_udp_and_dig_retries_over_tcp(lab: Lab) -> None:
    out = lab.dig("+bufsize=1232", f"many.{SVC}").stdout
    assert "Truncated, retrying in TCP mode" in out
    assert len(answer_lines(out)) == 120 and "(TCP)" in out
    proto = [line.split('"')[1].split()[3] for line in lab.log.read_text().splitlines() if "many." in line]
    assert proto == ["udp", "tcp"]
    assert " NOERROR qr,aa,tc,rd " in next(x for x in lab.log.read_text().splitlines() if " udp " in x)


def test_records_follow_the_zone_file_within_two_seconds(lab: Lab) -> None:
    assert status(lab.dig(f"shop.{SVC}").stdout) == "NXDOMAIN"
    shop = {**WEB, "name": "shop", "clusterIP": "10.96.0.30", "endpoints": []}
    lab.write_zone([WEB, shop])
    written = time.monotonic()
    while status(out := lab.dig(f"shop.{SVC}").stdout) != "NOERROR" and time.monotonic() - written < 2.0:
        time.sleep(0.05)
    assert answer_lines(out) == [[f"shop.{SVC}.", "5", "IN", "A", "10.96.0.30"]]  # the contract's 2 s (§8)
    lab.zone.write_text("{ not json")
    time.sleep(0.6)  # two reload periods
    assert status(lab.dig(f"shop.{SVC}").stdout) == "NOERROR"  # the last good zone stays


def test_one_log_line_per_query_and_a_clean_exit_on_sigterm(lab: Lab) -> None:
    for name in (f"web.{SVC}", "example.com", f"nope.{SVC}"):
        lab.dig(name)
    lab.server.send_signal(signal.SIGTERM)
    assert lab.server.wait(timeout=5) == 0
    queries = [line for line in lab.log.read_text().splitlines() if '"A IN' in line]
    assert [(q.split('"')[1].split()[2], q.split('"')[2].split()[0]) for q in queries] == [
        (f"web.{SVC}.", "NOERROR"), ("example.com.", "REFUSED"), (f"nope.{SVC}.", "NXDOMAIN")]
    assert all(f"{CLIENT}:" in q for q in queries)


def test_glibc_resolves_through_the_search_path_and_back(lab: Lab) -> None:
    for name in ("web", "web.default", "web.default.svc", f"web.{SVC}"):
        assert lab.getent("hosts", name).split() == ["10.96.0.20", f"web.{SVC}"], name
    assert lab.getent("hosts", "10.96.0.20").split() == ["10.96.0.20", f"web.{SVC}"]  # PTR
    assert lab.getent("ahostsv4", "10-244-1-2.default.pod.cluster.local").split()[0] == "10.244.1.2"
    assert lab.getent("hosts", "example.com") == ""  # refused, and nothing forwarded anywhere
    # `web` was tried as web.default.svc.cluster.local first: AAAA (NODATA), then A
    asked = [line.split('"')[1].split()[:3] for line in lab.log.read_text().splitlines() if '"' in line]
    assert ["AAAA", "IN", f"web.{SVC}."] in asked and ["A", "IN", f"web.{SVC}."] in asked


def test_the_checks_lookup_module_reads_the_namespaces_resolv_conf(lab: Lab) -> None:
    """`kgen check`'s DNS lookups (node/dns/lookup.py) as a check runs them in a pod:
    getaddrinfo through the bound resolv.conf (search path), raw queries for rcodes and SRV,
    and a server that does not answer reported as a timeout, not a hang."""
    job = {"names": ["web", "web.default", f"web.{SVC}", "many", f"nope.{SVC}"],
           "queries": [{"server": None, "name": "example.org.", "type": "A"},
                       {"server": None, "name": f"_http._tcp.web.{SVC}.", "type": "SRV"},
                       {"server": SERVER, "name": f"web.{SVC}.", "type": "A"},
                       {"server": "10.250.53.9", "name": f"web.{SVC}.", "type": "A"}],
           "timeout": 2.0}
    out = subprocess.run(["ip", "netns", "exec", lab.client, sys.executable, "-m",
                          "generator.node.dns.lookup", json.dumps(job)],
                         capture_output=True, text=True, timeout=60, env=ENV)
    result = json.loads(out.stdout)
    names = result["names"]
    assert names["web"] == names["web.default"] == names[f"web.{SVC}"] == {
        "ips": ["10.96.0.20"], "error": None}
    assert len(names["many"]["ips"]) == 120  # a headless service: every endpoint's address
    assert names[f"nope.{SVC}"]["ips"] == [] and names[f"nope.{SVC}"]["error"]
    refused, srv, direct, nobody = result["queries"]
    assert refused == {"rcode": "REFUSED", "answers": [], "error": None}
    assert srv == {"rcode": "NOERROR", "answers": [f"0 100 80 web.{SVC}."], "error": None}
    assert direct["answers"] == ["10.96.0.20"]
    # Nobody at that address: no reply (the neighbour lookup may fail first: no route).
    assert nobody["rcode"] is None and nobody["error"] in ("timed out", "no route to host")
