"""The CNI plugins against the CNI 1.0.0 spec and Debian's reference plugins.

Every test runs the real executables, as a runtime does (CNI_* environment,
config on stdin), inside throw-away network namespaces: a "host" namespace
that gets the bridge, and one namespace per pod. Nothing touches the
machine's own network namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from generator.node.cni.runtime import write_wrappers
from tests.conftest import ROOT, need_root_netns

pytestmark = pytest.mark.netns
REFERENCE = Path("/usr/lib/cni")


class Netns:
    """Throw-away namespaces with a common prefix, all removed at the end."""

    def __init__(self) -> None:
        self.prefix = f"kgt-cni-{uuid.uuid4().hex[:6]}"
        self.made: list[str] = []

    def new(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True)
        self.made.append(full)
        return full

    def cleanup(self) -> None:
        for name in self.made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@pytest.fixture
def netns() -> Iterator[Netns]:
    need_root_netns()
    ns = Netns()
    yield ns
    ns.cleanup()


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bin_dir = tmp_path_factory.mktemp("cni-bin")
    write_wrappers(bin_dir, python=sys.executable, pythonpath=str(ROOT))
    return bin_dir


def conf(data_dir: Path, subnet: str = "10.244.0.0/24", gateway: str = "10.244.0.1",
         **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "kgt", "type": "bridge", "bridge": "cbr0",
            "isGateway": True, "isDefaultGateway": True, "hairpinMode": True, "mtu": 1450,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                     "dataDir": str(data_dir)}, **extra}


def plugin(bin_dir: Path, command: str, host: str | None, config: Any, container: str = "c1",
           pod: str | None = None, ifname: str = "eth0", name: str = "bridge",
           env: dict[str, str] | None = None) -> tuple[int, Any]:
    environ = {"CNI_COMMAND": command, "CNI_CONTAINERID": container,
               "CNI_NETNS": f"/run/netns/{pod}" if pod else "", "CNI_IFNAME": ifname,
               "CNI_PATH": str(bin_dir), "PATH": os.environ["PATH"]}
    environ.update(env or {})
    environ = {k: v for k, v in environ.items() if v is not None}
    cmd = [str(bin_dir / name)]
    if host:
        cmd = ["ip", "netns", "exec", host, *cmd]
    data = config if isinstance(config, bytes) else json.dumps(config).encode()
    proc = subprocess.run(cmd, input=data, capture_output=True, env=environ)
    out = proc.stdout.decode().strip()
    return proc.returncode, json.loads(out) if out else None


def in_ns(ns: str, *cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True,
                          text=True).stdout


def ipam_files(data_dir: Path) -> dict[str, bytes]:
    net = data_dir / "kgt"
    return {p.name: p.read_bytes() for p in sorted(net.iterdir())} if net.exists() else {}


# ---------------------------------------------------------------- spec behaviour


def test_add_check_del_version(netns: Netns, ours: Path, tmp_path: Path) -> None:
    host, pod = netns.new("h"), netns.new("p")
    code, result = plugin(ours, "ADD", host, conf(tmp_path), pod=pod)
    assert code == 0, result
    assert result["cniVersion"] == "1.0.0"
    assert [i["name"] for i in result["interfaces"]][0::2] == ["cbr0", "eth0"]
    assert result["interfaces"][2]["sandbox"] == f"/run/netns/{pod}"
    assert result["ips"] == [{"address": "10.244.0.2/24", "gateway": "10.244.0.1",
                              "interface": 2}]
    assert {"dst": "0.0.0.0/0", "gw": "10.244.0.1"} in result["routes"]
    assert ipam_files(tmp_path)["10.244.0.2"] == b"c1\r\neth0"
    code, out = plugin(ours, "CHECK", host, {**conf(tmp_path), "prevResult": result}, pod=pod)
    assert (code, out) == (0, None)
    code, out = plugin(ours, "DEL", host, conf(tmp_path), pod=pod)
    assert (code, out) == (0, None)
    assert "eth0" not in in_ns(pod, "ip", "-br", "link")
    code, version = plugin(ours, "VERSION", None, {"cniVersion": "1.0.0"})
    assert code == 0 and "1.0.0" in version["supportedVersions"]


def test_del_is_idempotent_and_releases_ipam_without_netns(netns: Netns, ours: Path,
                                                           tmp_path: Path) -> None:
    host, pod = netns.new("h"), netns.new("p")
    assert plugin(ours, "ADD", host, conf(tmp_path), pod=pod)[0] == 0
    subprocess.run(["ip", "netns", "delete", pod], check=True)
    for _ in range(2):
        assert plugin(ours, "DEL", host, conf(tmp_path), pod=pod) == (0, None)
    assert set(ipam_files(tmp_path)) == {"lock", "last_reserved_ip.0"}


def test_add_of_an_existing_interface_is_an_error(netns: Netns, ours: Path, tmp_path: Path) -> None:
    host, pod = netns.new("h"), netns.new("p")
    assert plugin(ours, "ADD", host, conf(tmp_path), pod=pod)[0] == 0
    code, err = plugin(ours, "ADD", host, conf(tmp_path), container="c2", pod=pod)
    assert code == 1 and "already exists" in err["msg"]


def test_round_robin_and_exhaustion(netns: Netns, ours: Path, tmp_path: Path) -> None:
    host = netns.new("h")
    small = conf(tmp_path, subnet="10.244.9.0/29", gateway="10.244.9.1")  # .2-.6 usable
    got = []
    for i in range(5):
        code, result = plugin(ours, "ADD", host, small, container=f"c{i}", pod=netns.new(f"p{i}"))
        assert code == 0, result
        got.append(result["ips"][0]["address"])
    assert got == [f"10.244.9.{i}/29" for i in range(2, 7)]
    code, err = plugin(ours, "ADD", host, small, container="c9", pod=netns.new("p9"))
    assert code == 1 and err["msg"].startswith("no IP addresses available in range set")
    assert plugin(ours, "DEL", host, small, container="c0", pod=netns.made[1])[0] == 0
    code, result = plugin(ours, "ADD", host, small, container="c9", pod=netns.made[-1])
    assert result["ips"][0]["address"] == "10.244.9.2/29", "the freed address, found round robin"


@pytest.mark.parametrize(("env", "stdin", "code"), [
    ({"CNI_COMMAND": None}, None, 4),
    ({"CNI_COMMAND": "BOGUS"}, None, 4),
    ({"CNI_IFNAME": ""}, None, 4),
    ({}, b"{not json", 6),
    ({}, {"cniVersion": "9.9.9", "name": "x", "type": "bridge", "ipam": {"type": "host-local"}}, 1),
])
def test_errors_use_the_spec_codes(ours: Path, tmp_path: Path, env: dict, stdin: Any,
                                   code: int) -> None:
    rc, err = plugin(ours, "ADD", None, stdin if stdin is not None else conf(tmp_path),
                     pod="nowhere", env=env)
    assert rc == 1
    assert err["code"] == code and err["msg"] and err["cniVersion"]


def test_fifty_parallel_adds_get_distinct_ips_and_dels_empty_the_store(
        netns: Netns, ours: Path, tmp_path: Path) -> None:
    ipam = {"cniVersion": "1.0.0", "name": "kgt",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
                     "dataDir": str(tmp_path)}}

    def add(i: int) -> str:
        code, result = plugin(ours, "ADD", None, ipam, container=f"c{i}", pod="unused",
                              name="host-local")
        assert code == 0, result
        return str(result["ips"][0]["address"])

    with ThreadPoolExecutor(16) as pool:
        addresses = list(pool.map(add, range(50)))
    assert len(set(addresses)) == 50
    assert "10.244.0.1/24" not in addresses, "the gateway is never handed out"
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: plugin(ours, "DEL", None, ipam, container=f"c{i}",
                                               name="host-local")[0], range(50)))
    assert codes == [0] * 50
    assert set(ipam_files(tmp_path)) == {"lock", "last_reserved_ip.0"}


def test_parallel_adds_through_the_bridge(netns: Netns, ours: Path, tmp_path: Path) -> None:
    host = netns.new("h")
    pods = [netns.new(f"p{i}") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: plugin(ours, "ADD", host, conf(tmp_path),
                                                 container=f"c{i}", pod=pods[i]), range(8)))
    assert all(code == 0 for code, _ in results), results
    assert len({r["ips"][0]["address"] for _, r in results}) == 8
    ping = subprocess.run(["ip", "netns", "exec", pods[0], "ping", "-c", "1", "-W", "1",
                           results[7][1]["ips"][0]["address"].split("/")[0]], capture_output=True)
    assert ping.returncode == 0, "pods on one bridge reach each other"


# ---------------------------------------------------------------- the reference plugins


def observed(host: str, pod: str, data_dir: Path) -> dict[str, Any]:
    """What a plugin built, in comparable terms."""
    pod_link = json.loads(in_ns(pod, "ip", "-j", "-d", "link", "show", "eth0"))[0]
    pod_addr = json.loads(in_ns(pod, "ip", "-j", "addr", "show", "eth0"))[0]
    bridge_addr = json.loads(in_ns(host, "ip", "-j", "addr", "show", "cbr0"))[0]
    ports = json.loads(in_ns(host, "bridge", "-j", "-d", "link", "show"))
    return {
        "pod_mtu": pod_link["mtu"],
        "pod_addresses": sorted(f"{a['local']}/{a['prefixlen']}" for a in pod_addr["addr_info"]
                                if a["family"] == "inet"),
        "pod_routes": sorted(in_ns(pod, "ip", "route").splitlines()),
        "bridge_addresses": sorted(f"{a['local']}/{a['prefixlen']}"
                                   for a in bridge_addr["addr_info"] if a["family"] == "inet"),
        "hairpin": sorted(p.get("hairpin") for p in ports),
        "host_mtu": sorted(p["mtu"] for p in ports),
        "ipam_files": {k: v for k, v in ipam_files(data_dir).items() if k != "lock"},
    }


def normalised(result: dict[str, Any]) -> dict[str, Any]:
    """The ADD result without what differs by design: MACs, the host veth's name and
    the sandbox path (each plugin runs in its own throw-away namespaces here)."""
    doc = json.loads(json.dumps(result))
    for iface in doc.get("interfaces", []):
        iface.pop("mac", None)
        if iface["name"].startswith("veth"):
            iface["name"] = "veth*"
        if "sandbox" in iface:
            iface["sandbox"] = "<netns>"
    doc["routes"] = sorted(doc.get("routes", []), key=lambda r: r["dst"])
    return doc


# Differences kept on purpose, each with its reason (see also the error-code test):
KEPT_DIFFERENCES = {
    "no CNI_COMMAND": "the reference prints its 'about' text and exits 0; the spec makes "
                      "CNI_COMMAND required, so kgen answers error 4",
    "cniVersion in errors": "the spec's error object carries cniVersion; reference 1.1.1 "
                            "leaves it out",
}


def test_same_config_builds_the_same_datapath_as_the_reference(netns: Netns, ours: Path,
                                                                tmp_path: Path) -> None:
    if not (REFERENCE / "bridge").exists():
        pytest.skip(f"reference plugins not found in {REFERENCE} "
                    "(apt-get install containernetworking-plugins)")
    seen = {}
    for label, bin_dir in (("reference", REFERENCE), ("kgen", ours)):
        host, pod = netns.new(f"{label[:3]}h"), netns.new(f"{label[:3]}p")
        data = tmp_path / label
        code, result = plugin(bin_dir, "ADD", host, conf(data), pod=pod)
        assert code == 0, (label, result)
        seen[label] = (observed(host, pod, data), normalised(result))
        assert plugin(bin_dir, "DEL", host, conf(data), pod=pod)[0] == 0
        assert plugin(bin_dir, "DEL", host, conf(data), pod=pod)[0] == 0, "DEL twice"
        assert set(ipam_files(data)) == {"lock", "last_reserved_ip.0"}
    (ref_world, ref_result), (our_world, our_result) = seen["reference"], seen["kgen"]
    assert our_world == ref_world
    assert our_result == ref_result


# No CNI_COMMAND at all is left out: see KEPT_DIFFERENCES.
@pytest.mark.parametrize(("env", "stdin"), [
    ({"CNI_COMMAND": "BOGUS"}, None),
    ({}, b"{not json"),
    ({"CNI_IFNAME": ""}, None),
    ({"CNI_NETNS": ""}, None),
])
def test_error_codes_match_the_reference(ours: Path, tmp_path: Path, env: dict,
                                         stdin: Any) -> None:
    if not (REFERENCE / "bridge").exists():
        pytest.skip(f"reference plugins not found in {REFERENCE}")
    config = stdin if stdin is not None else conf(tmp_path)
    ref = plugin(REFERENCE, "ADD", None, config, pod="nowhere", env=env)
    mine = plugin(ours, "ADD", None, config, pod="nowhere", env=env)
    assert ref[0] == mine[0] == 1
    assert ref[1]["code"] == mine[1]["code"]


# ---------------------------------------------------------------- requested addresses


def _ipam(data_dir: Path, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "kgt",
            "ipam": {"type": "host-local", "dataDir": str(data_dir),
                     "ranges": [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]]},
            **extra}


# (CNI_ARGS, extra config): what a runtime asks host-local for, taken or refused.
REQUESTS = [
    ("IP=10.244.0.7", {}),
    ("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.244.0.8", {}),
    ("K8S_POD_NAME=web;IP=10.244.0.9", {}),  # unknown key without IgnoreUnknown
    ("IP=10.244.0.5", {}),  # taken by the first ADD of the test
    ("IP=10.244.1.7", {}),  # in no range
    ("IP=10.244.0.1", {}),  # the gateway
    ("IP=bogus", {}),
    ("IgnoreUnknown=yes;IP=10.244.0.10", {}),
    ("IP", {}),
    ("", {"args": {"cni": {"ips": ["10.244.0.20/24"]}}}),
    ("", {"args": {"cni": {"ips": ["10.244.0.21"]}}}),
    ("IgnoreUnknown=true", {"runtimeConfig": {"ips": ["10.244.0.22/24"]}}),
]


@pytest.mark.parametrize(("args", "extra"), REQUESTS)
def test_requested_ips_as_the_reference(ours: Path, tmp_path: Path, args: str,
                                        extra: dict[str, Any]) -> None:
    if not (REFERENCE / "host-local").exists():
        pytest.skip(f"reference plugins not found in {REFERENCE}")
    seen = {}
    for label, bin_dir in (("reference", REFERENCE), ("kgen", ours)):
        data = tmp_path / label
        taken = plugin(bin_dir, "ADD", None, _ipam(data), container="first", pod="unused",
                       name="host-local", env={"CNI_ARGS": "IP=10.244.0.5"})
        assert taken[0] == 0, taken
        result = plugin(bin_dir, "ADD", None, _ipam(data, **extra), container="c1",
                        pod="unused", name="host-local", env={"CNI_ARGS": args or None})
        if result[0] != 0:
            result[1].pop("cniVersion", None)  # see KEPT_DIFFERENCES
        files = {k: v for k, v in ipam_files(data).items() if k not in ("lock",)}
        seen[label] = (result, files)
    assert seen["kgen"] == seen["reference"]


def test_requested_ips_in_parallel_through_the_bridge(netns: Netns, ours: Path,
                                                      tmp_path: Path) -> None:
    """What the node agent does: every pod at once, each with the address the host chose."""
    host = netns.new("h")
    pods = [netns.new(f"p{i}") for i in range(6)]
    wanted = [f"10.244.0.{40 - 3 * i}" for i in range(6)]

    def add(i: int) -> tuple[int, Any]:
        return plugin(ours, "ADD", host, conf(tmp_path), container=f"c{i}", pod=pods[i],
                      env={"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME=p{i};IP={wanted[i]}"})

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(add, range(6)))
    assert [r[1]["ips"][0]["address"] for r in results] == [f"{w}/24" for w in wanted]
    for i in range(6):
        assert f"{wanted[i]}/24" in in_ns(pods[i], "ip", "-br", "addr", "show", "eth0")
