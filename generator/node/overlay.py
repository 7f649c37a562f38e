"""The node's network: cbr0, the overlay to other nodes, and what must not leave.

vxlan (the flannel model): one VXLAN device, `nolearning`; for every other
node a route to its pod subnet via its VTEP address `onlink`, a permanent
neighbour entry (VTEP → VTEP MAC) and an FDB entry (VTEP MAC → node IP).
host-gw: a route to every other node's pod subnet via its node IP.
The cluster pod range is `unreachable` (more specific routes win), and the
service range is routed onto cbr0, so a packet to a cluster IP that no rule
DNATs still crosses FORWARD (where kube-proxy REJECTs it) and otherwise ends
in an unanswered ARP inside the node, never on the default route out of the lab.
`setup` converges: running it again is a no-op, and it removes what belongs
to nodes no longer in the cluster.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

from generator.node import proc
from generator.node.contract import Cluster

log = logging.getLogger("kgen.overlay")

BRIDGE = "cbr0"
VXLAN_OVERHEAD = 50


# The desired state `plan` returns.
class BridgePart(TypedDict):
    name: str
    address: str  # gateway/prefix
    mtu: int
    mac: str


class VxlanPart(TypedDict):
    name: str
    vni: int
    port: int
    local: str  # this node's IP
    dev: str  # the underlay
    mtu: int
    address: str  # VTEP/32
    mac: str


class PeerRoute(TypedDict):
    dst: str  # the peer's pod subnet
    via: str  # its VTEP (vxlan) or node IP (host-gw)
    dev: str
    onlink: bool


class Neighbour(TypedDict):
    ip: str  # a peer's VTEP
    mac: str


class FdbEntry(TypedDict):
    mac: str  # a peer's VTEP MAC
    dst: str  # its node IP


class OverlayPlan(TypedDict):
    bridge: BridgePart
    unreachable: list[str]
    service_route: str
    vxlan: VxlanPart | None
    routes: list[PeerRoute]
    neighbours: list[Neighbour]
    fdb: list[FdbEntry]


# The rows of `ip -j` / `bridge -j` that are read (only the keys used; iproute2
# leaves a key out rather than writing null, hence total=False).
class IpAddrInfo(TypedDict, total=False):
    family: str
    local: str
    prefixlen: int


class VxlanInfoData(TypedDict, total=False):
    id: int
    port: int
    local: str


class IpLinkInfo(TypedDict, total=False):
    info_kind: str
    info_data: VxlanInfoData


class IpLink(TypedDict, total=False):
    """A row of `ip -j link show` or `ip -j addr show` (the latter adds addr_info)."""

    ifname: str
    mtu: int
    address: str
    linkinfo: IpLinkInfo
    addr_info: list[IpAddrInfo]


class IpRoute(TypedDict, total=False):
    dst: str
    dev: str
    gateway: str


class IpNeighbour(TypedDict, total=False):
    dst: str
    lladdr: str


class FdbRow(TypedDict, total=False):
    mac: str
    dst: str


def ip(*args: str, check: bool = True) -> str:
    return proc.check(["ip", *args]) if check else proc.run(["ip", *args]).stdout


def _rows(cmd: list[str]) -> list[Any]:
    out = proc.run(cmd).stdout
    return list(json.loads(out)) if out.strip() else []


def ip_links(*args: str) -> list[IpLink]:
    """`ip -j link|addr show ...` rows ([] when the device does not exist)."""
    return cast(list[IpLink], _rows(["ip", "-j", *args]))


def ip_routes() -> list[IpRoute]:
    return cast(list[IpRoute], _rows(["ip", "-j", "route", "show"]))


def ip_neighbours(device: str) -> list[IpNeighbour]:
    return cast(list[IpNeighbour], _rows(["ip", "-j", "neigh", "show", "dev", device]))


def fdb_rows(device: str) -> list[FdbRow]:
    return cast(list[FdbRow], _rows(["bridge", "-j", "fdb", "show", "dev", device]))


@dataclass(frozen=True)
class Underlay:
    ifname: str
    mtu: int


def underlay_for(node_ip: str) -> Underlay:
    """The interface that carries the node IP (Docker's eth0)."""
    for link in ip_links("addr", "show"):
        if any(a.get("local") == node_ip for a in link.get("addr_info", [])):
            return Underlay(link["ifname"], int(link["mtu"]))
    raise RuntimeError(f"no interface holds the node IP {node_ip}")


def plan(cluster: Cluster, node_name: str, underlay: Underlay) -> OverlayPlan:
    """What this node's network must look like (pure: no system calls)."""
    me = next(n for n in cluster["nodes"] if n["name"] == node_name)
    others = [n for n in cluster["nodes"] if n["name"] != node_name]
    prefix = me["podCIDR"].split("/")[1]
    vx = cluster["vxlan"]
    desired: OverlayPlan = {
        "bridge": {"name": BRIDGE, "address": f"{me['gateway']}/{prefix}", "mtu": cluster["mtu"],
                   "mac": me["gatewayMAC"]},
        "unreachable": [cluster["podCIDR"]],
        "service_route": cluster["serviceCIDR"],
        "vxlan": None,
        "routes": [],
        "neighbours": [],
        "fdb": [],
    }
    if cluster["backend"] == "vxlan":
        desired["vxlan"] = {"name": vx["device"], "vni": vx["vni"], "port": vx["port"],
                            "local": me["ip"], "dev": underlay.ifname,
                            "mtu": underlay.mtu - VXLAN_OVERHEAD,
                            "address": f"{me['vtep']}/32", "mac": me["vtepMAC"]}
        for n in others:
            desired["routes"].append({"dst": n["podCIDR"], "via": n["vtep"], "dev": vx["device"],
                                      "onlink": True})
            desired["neighbours"].append({"ip": n["vtep"], "mac": n["vtepMAC"]})
            desired["fdb"].append({"mac": n["vtepMAC"], "dst": n["ip"]})
    else:
        for n in others:
            desired["routes"].append({"dst": n["podCIDR"], "via": n["ip"], "dev": underlay.ifname,
                                      "onlink": False})
    return desired


def _sysctl(path: str, value: str) -> None:
    target = Path("/proc/sys") / path
    try:
        if target.read_text().strip() != value:
            target.write_text(value)
    except OSError as err:
        # /proc/sys is read-only in a container: compose sets these, so only warn.
        log.warning("cannot set %s=%s (%s); set it through the compose file", path, value, err)


def _ensure_bridge(b: BridgePart) -> None:
    if not ip_links("link", "show", "dev", b["name"]):
        ip("link", "add", "name", b["name"], "mtu", str(b["mtu"]), "type", "bridge")
    ip("link", "set", b["name"], "address", b["mac"], "mtu", str(b["mtu"]), "up")
    addrs = ip_links("addr", "show", "dev", b["name"])
    have = {f"{a['local']}/{a['prefixlen']}" for link in addrs for a in link.get("addr_info", [])
            if a.get("family") == "inet"}
    if b["address"] not in have:
        ip("addr", "add", b["address"], "dev", b["name"])


def _ensure_vxlan(v: VxlanPart | None, device: str) -> None:
    current = ip_links("-d", "link", "show", "dev", device)
    if v is None:
        if current:
            ip("link", "del", device)
        return
    info = current[0].get("linkinfo", {}).get("info_data", {}) if current else {}
    if current and (info.get("id") != v["vni"] or info.get("port") != v["port"]
                    or info.get("local") != v["local"]):
        ip("link", "del", device)
        current = []
    if not current:
        ip("link", "add", device, "type", "vxlan", "id", str(v["vni"]), "dstport", str(v["port"]),
           "local", v["local"], "dev", v["dev"], "nolearning")
    ip("link", "set", device, "address", v["mac"], "mtu", str(v["mtu"]), "up")
    ip("addr", "replace", v["address"], "dev", device)


def _ensure_service_route(cidr: str) -> None:
    ip("route", "replace", cidr, "dev", BRIDGE)


def ip_batch(lines: list[str], tool: str = "ip") -> None:
    """Many iproute2 commands in one process (`ip -batch -`): one fork for N peers."""
    if not lines:
        return
    proc.check([tool, "-batch", "-"], input="\n".join(lines) + "\n")


def route_commands(desired: OverlayPlan, current: list[IpRoute],
                   managed_devs: set[str]) -> list[str]:
    """`ip -batch` lines that make the routes what `desired` says (pure).

    Routes to pod subnets of nodes that left (inside the pod range, via a gateway
    on our devices) are deleted; the pod range stays `unreachable`.
    """
    lines = []
    wanted = {r["dst"] for r in desired["routes"]}
    pods = ipaddress.ip_network(desired["unreachable"][0])
    for route in current:
        dst = route.get("dst", "")
        inside = "/" in dst and ipaddress.ip_network(dst).subnet_of(pods)  # type: ignore[arg-type]
        if inside and route.get("dev") in managed_devs and route.get("gateway") and dst not in wanted:
            lines.append(f"route del {dst} dev {route['dev']}")
    for r in desired["routes"]:
        lines.append(f"route replace {r['dst']} via {r['via']} dev {r['dev']}"
                     + (" onlink" if r["onlink"] else ""))
    lines += [f"route replace unreachable {cidr}" for cidr in desired["unreachable"]]
    return lines


def neighbour_commands(desired: OverlayPlan, device: str, neighbours: list[IpNeighbour],
                       fdb: list[FdbRow]) -> tuple[list[str], list[str]]:
    """(`ip -batch` lines, `bridge -batch` lines) for the VTEP neighbours and FDB (pure)."""
    ip_lines, bridge_lines = [], []
    wanted_neigh = {n["ip"]: n["mac"] for n in desired["neighbours"]}
    for neigh in neighbours:
        if neigh.get("dst") and wanted_neigh.get(neigh["dst"]) != neigh.get("lladdr"):
            ip_lines.append(f"neigh del {neigh['dst']} dev {device}")
    ip_lines += [f"neigh replace {addr} lladdr {mac} dev {device} nud permanent"
                 for addr, mac in wanted_neigh.items()]
    wanted_fdb = {f["mac"]: f["dst"] for f in desired["fdb"]}
    for entry in fdb:
        mac, dst = entry.get("mac"), entry.get("dst")
        if dst and wanted_fdb.get(mac or "") != dst:
            bridge_lines.append(f"fdb del {mac} dev {device} dst {dst}")
    bridge_lines += [f"fdb replace {mac} dev {device} dst {dst} self permanent"
                     for mac, dst in wanted_fdb.items()]
    return ip_lines, bridge_lines


def _sync_routes(desired: OverlayPlan, managed_devs: set[str]) -> None:
    ip_batch(route_commands(desired, ip_routes(), managed_devs))


def _sync_neighbours(desired: OverlayPlan, device: str) -> None:
    ip_lines, bridge_lines = neighbour_commands(desired, device, ip_neighbours(device),
                                                fdb_rows(device))
    ip_batch(ip_lines)
    ip_batch(bridge_lines, tool="bridge")


def setup(cluster: Cluster, node_name: str) -> None:
    me = next(n for n in cluster["nodes"] if n["name"] == node_name)
    underlay = underlay_for(me["ip"])
    desired = plan(cluster, node_name, underlay)
    _sysctl("net/ipv4/ip_forward", "1")
    _sysctl("net/bridge/bridge-nf-call-iptables", "1")
    _ensure_bridge(desired["bridge"])
    device = cluster["vxlan"]["device"]
    _ensure_vxlan(desired["vxlan"], device)
    _ensure_service_route(desired["service_route"])
    _sync_routes(desired, {device, underlay.ifname})
    if desired["vxlan"]:
        _sync_neighbours(desired, device)
    log.info("overlay %s ready: %d peer routes", cluster["backend"], len(desired["routes"]))


def main() -> None:
    parser = argparse.ArgumentParser(description="Set up a kgen node's network")
    parser.add_argument("--cluster", default="/etc/kgen/cluster.json")
    parser.add_argument("--node", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    setup(json.loads(Path(args.cluster).read_text()), args.node)


if __name__ == "__main__":
    main()
