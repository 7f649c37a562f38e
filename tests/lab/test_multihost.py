"""A lab across two Docker engines joined in one swarm (lab contract section 11).

The two hosts are simulated on this machine (issue 25's recipe,
scripts/multihost-sim.sh): two network namespaces on a bridge, a dockerd in each,
one swarm. Needs root; skipped with the reason where the simulation cannot be
built. The local engine is only read from (the node image's base).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.lab.conftest import PREFIX, kgen

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "scripts" / "multihost-sim.sh"
ENGINES = {"a": "unix:///var/run/kgmh-a.sock", "b": "unix:///var/run/kgmh-b.sock"}


@pytest.fixture(scope="module")
def swarm() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("the two-engine simulation needs root (network namespaces, dockerd)")
    up = subprocess.run(["sh", str(SIM), "up"], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        subprocess.run(["sh", str(SIM), "down"], capture_output=True, timeout=300)
        pytest.skip(f"cannot build the two-engine simulation: {up.stderr.strip()[-300:]}")
    yield ENGINES
    subprocess.run(["sh", str(SIM), "down"], capture_output=True, timeout=300)


def lab_file(tmp: Path, backend: str, proxy: str) -> Path:
    doc = {
        "name": f"{PREFIX or 'mh'}-{backend[:2]}{proxy[:2]}"[:20],
        "nodeNetwork": "172.29.20.0/24",
        "backend": backend, "proxyMode": proxy,
        "hosts": [{"name": h, "docker": d} for h, d in ENGINES.items()],
        "nodes": ["node-0", "node-1", "node-2"],  # a, b, a
        "pods": [{"name": "pod-a", "node": "node-0", "labels": {"app": "front"}},
                 {"name": "pod-b", "node": "node-1", "labels": {"app": "web"}},
                 {"name": "pod-c", "node": "node-2", "labels": {"app": "web2"}}],
        "services": [{"name": "web", "selector": {"app": "web"},
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}],
        "clients": [{"name": "client-0", "host": "b"}],
    }
    path = tmp / "lab.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def on_engines(lab: str) -> list[str]:
    found = []
    for engine in ENGINES.values():
        for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
            out = subprocess.run(["docker", "-H", engine, *kind, "-q", "--filter",
                                  f"label=kgen.lab={lab}"], capture_output=True, text=True)
            found += out.stdout.split()
    return found


@pytest.mark.parametrize("backend, proxy", [("vxlan", "iptables"), ("host-gw", "nftables")])
def test_a_lab_across_two_hosts(swarm: dict[str, str], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, backend: str, proxy: str) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))  # the engines kgen records
    path = lab_file(tmp_path, backend, proxy)
    name = yaml.safe_load(path.read_text())["name"]
    env_kgen = {"cwd": tmp_path}
    try:
        kgen("up", "-l", str(path), **env_kgen)
        status = json.loads(kgen("status", "--json", "-l", str(path), **env_kgen).stdout)
        assert [(n["name"], n["host"], n["state"]) for n in status["nodes"]] == [
            ("node-0", "a", "Ready"), ("node-1", "b", "Ready"), ("node-2", "a", "Ready")]
        assert status["clients"][0]["host"] == "b"
        assert (tmp_path / f"kgen-{name}" / "hosts" / "b" / "docker-compose.yml").is_file()

        checked = kgen("check", "-l", str(path), **env_kgen, check=False)
        assert checked.returncode == 0, checked.stdout[-3000:]

        trace = json.loads(kgen("trace", "-l", str(path), "pod-a", "web", "--json",
                                **env_kgen).stdout)
        assert trace["verdict"] == "answered" and trace["answeredBy"] == "pod-b"
        swarm = [h["encap"] for h in trace["hops"] if h["step"] == "swarm-overlay"]
        assert {(e["src"], e["dst"]) for e in swarm} == {("192.168.250.11", "192.168.250.12"),
                                                         ("192.168.250.12", "192.168.250.11")}
        nodes = [h["node"] for h in trace["hops"] if h["direction"] == "request"]
        assert "node-0" in nodes and "node-1" in nodes  # host a, then host b
        if backend == "vxlan":
            encaps = {(h["encap"]["src"], h["encap"]["dst"]) for h in trace["hops"] if h["encap"]}
            assert ("172.29.20.2", "172.29.20.3") in encaps, trace["hops"]

        pcap = tmp_path / "node-1.pcap"
        kgen("capture", "-l", str(path), "node-1", "-c", "3", "--duration", "5", "-w",
             str(pcap), **env_kgen, check=False)
        data = pcap.read_bytes()
        assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), "not a pcap"

        doc = yaml.safe_load(path.read_text())  # apply: cluster.json reaches every host
        doc["pods"].append({"name": "pod-d", "node": "node-2", "labels": {"app": "web"}})
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        kgen("apply", "-l", str(path), **env_kgen)
        status = json.loads(kgen("status", "--json", "-l", str(path), **env_kgen).stdout)
        web = next(s for s in status["services"] if s["name"] == "web")
        ips = {p["name"]: p["ip"] for p in status["pods"]}
        assert web["endpoints"] == sorted([f"{ips['pod-b']}:8080", f"{ips['pod-d']}:8080"])
    finally:
        kgen("down", "-l", str(path), **env_kgen, check=False)
    assert on_engines(name) == []
