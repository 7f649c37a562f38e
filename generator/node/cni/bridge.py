"""The bridge plugin: a veth pair from the pod's netns to a Linux bridge.

Same configuration as the reference `bridge` plugin (bridge, isGateway,
isDefaultGateway, hairpinMode, mtu, promiscMode, ipam); IPAM is delegated to
the plugin named by `ipam.type`, found in CNI_PATH, as the reference does.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import TYPE_CHECKING, TypedDict, cast

from generator.node import proc
from generator.node.cni import spec
from generator.node.cni.spec import CNIError, in_ns, run
from generator.node.cni.types import CniResult, NetConf, Route

if TYPE_CHECKING:  # only the row type: the plugin runs per ADD, keep its imports few
    from generator.node.overlay import IpLink


class Settings(TypedDict):
    """The configuration after checking, in the terms the plugin acts on."""

    bridge: str
    gateway: bool  # the bridge holds the pod subnet's gateway address
    default_route: bool
    hairpin: bool
    promisc: bool
    mtu: int


def _link(name: str, netns: str | None = None) -> IpLink | None:
    cmd = ["ip", "-j", "link", "show", "dev", name]
    result = proc.run(in_ns(netns, *cmd) if netns else cmd)
    if result.returncode != 0:
        return None
    links = cast("list[IpLink]", json.loads(result.stdout or "[]"))
    return links[0] if links else None


def _config(conf: NetConf, env: dict[str, str]) -> Settings:
    spec.load_args(env, {})  # the reference bridge knows no CNI_ARGS key of its own
    if conf.get("ipMasq"):
        raise CNIError(spec.UNSUPPORTED_FIELD, "ipMasq is not supported by kgen's bridge plugin")
    if not (conf.get("ipam") or {}).get("type"):
        raise CNIError(spec.INVALID_CONFIG, "ipam.type is required")
    mtu = conf.get("mtu", 1500)
    if not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise CNIError(spec.INVALID_CONFIG, f"invalid mtu {mtu!r}")
    return {"bridge": conf.get("bridge") or "cni0",
            "gateway": bool(conf.get("isGateway") or conf.get("isDefaultGateway")),
            "default_route": bool(conf.get("isDefaultGateway")),
            "hairpin": bool(conf.get("hairpinMode")),
            "promisc": bool(conf.get("promiscMode")), "mtu": mtu}


def ensure_bridge(name: str, mtu: int, promisc: bool) -> IpLink:
    if _link(name) is None:
        # Another ADD may create it at the same moment: a lost race is fine.
        proc.run(["ip", "link", "add", "name", name, "mtu", str(mtu), "type", "bridge"])
    run(["ip", "link", "set", name, "up"] + (["promisc", "on"] if promisc else []),
        f"bring up bridge {name}")
    link = _link(name)
    if link is None or link.get("linkinfo", {}).get("info_kind", "bridge") != "bridge":
        raise CNIError(spec.INTERNAL, f"{name} exists but is not a bridge")
    return link


def ensure_gateway(bridge: str, gateway: str, prefix: int) -> None:
    current = run(["ip", "-j", "addr", "show", "dev", bridge], "read bridge addresses")
    have = {a["local"] for link in json.loads(current) for a in link.get("addr_info", [])}
    if gateway not in have:
        # Concurrent ADDs may both try; "exists" is success.
        proc.run(["ip", "addr", "add", f"{gateway}/{prefix}", "dev", bridge])


def make_veth(env: dict[str, str], cfg: Settings) -> tuple[str, IpLink]:
    netns, ifname = env["CNI_NETNS"], env["CNI_IFNAME"]
    if _link(ifname, netns) is not None:
        raise CNIError(spec.INTERNAL, f"container veth name provided ({ifname}) already exists")
    host = "veth" + os.urandom(4).hex()  # (not `secrets`: it loads hmac/OpenSSL, per ADD)
    run(["ip", "link", "add", host, "mtu", str(cfg["mtu"]), "type", "veth", "peer", "name",
         ifname, "mtu", str(cfg["mtu"]), "netns", netns], "create veth pair")
    run(["ip", "link", "set", host, "master", cfg["bridge"], "up"], f"attach {host}")
    if cfg["hairpin"]:
        run(["bridge", "link", "set", "dev", host, "hairpin", "on"], f"hairpin on {host}")
    link = _link(host)
    assert link is not None
    return host, link


def configure_pod(env: dict[str, str], ipam: CniResult, cfg: Settings) -> list[Route]:
    netns, ifname = env["CNI_NETNS"], env["CNI_IFNAME"]
    for ip in ipam["ips"]:
        run(in_ns(netns, "ip", "addr", "add", ip["address"], "dev", ifname), "set pod address")
    run(in_ns(netns, "ip", "link", "set", ifname, "up"), "bring up pod interface")
    routes = [Route(**r) for r in ipam.get("routes", [])]
    if cfg["default_route"] and not any(r["dst"] == "0.0.0.0/0" for r in routes):
        routes.append({"dst": "0.0.0.0/0", "gw": ipam["ips"][0]["gateway"]})
    for route in routes:
        gw = route.get("gw") or ipam["ips"][0].get("gateway")
        cmd = ["ip", "route", "add", route["dst"], "dev", ifname] + (["via", gw] if gw else [])
        run(in_ns(netns, *cmd), f"add route {route['dst']}")
    return routes


def add(env: dict[str, str], conf: NetConf) -> CniResult:
    cfg = _config(conf, env)
    netns = env["CNI_NETNS"]
    if not os.path.exists(netns):
        raise CNIError(spec.INTERNAL, f"failed to open netns {netns!r}: no such file")
    bridge = ensure_bridge(cfg["bridge"], cfg["mtu"], cfg["promisc"])
    host, host_link = make_veth(env, cfg)
    ipam_type = conf["ipam"]["type"]
    try:
        ipam = spec.exec_plugin(spec.find_plugin(ipam_type, env["CNI_PATH"]), env, conf)
        if ipam is None:
            raise CNIError(spec.INTERNAL, "IPAM plugin returned missing IP config")
        if not ipam.get("ips"):
            raise CNIError(spec.INTERNAL, "IPAM plugin returned missing IP config")
        if cfg["gateway"]:
            net = ipaddress.IPv4Interface(ipam["ips"][0]["address"]).network
            ensure_gateway(cfg["bridge"], ipam["ips"][0]["gateway"], net.prefixlen)
        routes = configure_pod(env, ipam, cfg)
    except CNIError:
        proc.run(["ip", "link", "del", host])
        raise
    pod_link = _link(env["CNI_IFNAME"], netns) or {}
    return {
        "cniVersion": conf["cniVersion"],
        "interfaces": [
            {"name": cfg["bridge"], "mac": bridge.get("address", "")},
            {"name": host, "mac": host_link.get("address", "")},
            {"name": env["CNI_IFNAME"], "mac": pod_link.get("address", ""), "sandbox": netns},
        ],
        "ips": [{**ip, "interface": 2} for ip in ipam["ips"]],
        "routes": routes,
        "dns": ipam.get("dns") or {},
    }


def delete(env: dict[str, str], conf: NetConf) -> None:
    spec.load_args(env, {})
    # IPAM first: an address must be released even when the netns is gone.
    ipam_type = (conf.get("ipam") or {}).get("type")
    if ipam_type:
        spec.exec_plugin(spec.find_plugin(ipam_type, env["CNI_PATH"]), env, conf)
    netns = env.get("CNI_NETNS", "")
    if netns and os.path.exists(netns) and _link(env["CNI_IFNAME"], netns) is not None:
        # Deleting the pod end removes the host end with it.
        proc.run(in_ns(netns, "ip", "link", "del", env["CNI_IFNAME"]))


def check(env: dict[str, str], conf: NetConf) -> None:
    prev = conf.get("prevResult")
    if not prev:
        raise CNIError(spec.INVALID_CONFIG, "required prevResult missing")
    cfg = _config(conf, env)
    spec.exec_plugin(spec.find_plugin(conf["ipam"]["type"], env["CNI_PATH"]), env, conf)
    if _link(cfg["bridge"]) is None:
        raise CNIError(spec.INTERNAL, f"bridge {cfg['bridge']} not found")
    netns, ifname = env["CNI_NETNS"], env["CNI_IFNAME"]
    if _link(ifname, netns) is None:
        raise CNIError(spec.INTERNAL, f"interface {ifname} not found in {netns}")
    out = run(in_ns(netns, "ip", "-j", "addr", "show", "dev", ifname), "read pod addresses")
    have = {f"{a['local']}/{a['prefixlen']}" for link in json.loads(out)
            for a in link.get("addr_info", [])}
    for ip in prev.get("ips", []):
        if ip["address"] not in have:
            raise CNIError(spec.INTERNAL, f"address {ip['address']} not on {ifname}")


def main() -> None:
    spec.plugin_main(add, delete, check)


if __name__ == "__main__":
    main()
