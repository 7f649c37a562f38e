"""A tiny libcni for the node agent: runs a network configuration list.

ADD runs the plugins in order, each with the previous one's result
(`prevResult`); DEL runs them in reverse; CHECK gives each the cached result
of the ADD, as libcni does (results cached under /var/lib/cni/results).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import cast

from generator.node.cni.spec import CNIError, exec_plugin, find_plugin
from generator.node.cni.types import CniResult, NetConf, NetConfList

__all__ = ["CNIError", "add", "cni_args", "delete", "write_wrappers"]

RESULTS_DIR = Path("/var/lib/cni/results")
PLUGINS = {"bridge": "bridge", "host-local": "host_local", "loopback": "loopback"}


def _load(conflist: Path) -> NetConfList:
    doc = cast(NetConfList, json.loads(conflist.read_text()))
    if not doc.get("plugins"):
        raise CNIError(7, f"{conflist}: no plugins in the network configuration list")
    return doc


def _net_conf(doc: NetConfList, plugin: NetConf, prev: CniResult | None) -> NetConf:
    conf: NetConf = {**plugin, "name": doc["name"], "cniVersion": doc["cniVersion"]}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def _env(command: str, container_id: str, netns: str, ifname: str, cni_path: str,
         args: str = "") -> dict[str, str]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_PATH": cni_path}
    if args:
        env["CNI_ARGS"] = args
    return env


def cni_args(**pairs: str) -> str:
    """CNI_ARGS as kubelet's runtimes write it: `IgnoreUnknown=1;K=V;...` (a plugin
    that does not know a key then ignores it instead of failing)."""
    return ";".join(["IgnoreUnknown=1", *(f"{k}={v}" for k, v in pairs.items() if v)])


def _cache(doc: NetConfList, container_id: str, ifname: str) -> Path:
    return RESULTS_DIR / f"{doc['name']}-{container_id}-{ifname}"


def add(conflist: Path, container_id: str, netns: str, ifname: str,
        cni_path: str, args: str = "") -> CniResult:
    doc = _load(conflist)
    env = _env("ADD", container_id, netns, ifname, cni_path, args)
    result: CniResult | None = None
    for plugin in doc["plugins"]:
        result = exec_plugin(find_plugin(plugin["type"], cni_path), env,
                             _net_conf(doc, plugin, result))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    _cache(doc, container_id, ifname).write_text(json.dumps(result))
    return CniResult(**result) if result else CniResult(cniVersion=doc["cniVersion"])


def delete(conflist: Path, container_id: str, netns: str, ifname: str, cni_path: str,
           args: str = "") -> None:
    doc = _load(conflist)
    env = _env("DEL", container_id, netns, ifname, cni_path, args)
    cache = _cache(doc, container_id, ifname)
    prev = cast(CniResult, json.loads(cache.read_text())) if cache.exists() else None
    for plugin in reversed(doc["plugins"]):
        exec_plugin(find_plugin(plugin["type"], cni_path), env, _net_conf(doc, plugin, prev))
    cache.unlink(missing_ok=True)


def write_wrappers(bin_dir: str | Path, python: str = "/usr/bin/python3",
                   pythonpath: str = "/opt/kgen") -> list[Path]:
    """Executables named like the reference plugins, running kgen's modules."""
    directory = Path(bin_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, module in PLUGINS.items():
        path = directory / name
        path.write_text(f"#!/bin/sh\nPYTHONPATH={pythonpath} exec {python} "
                        f"-m generator.node.cni.{module} \"$@\"\n")
        os.chmod(path, 0o755)
        written.append(path)
    return written


if __name__ == "__main__":
    write_wrappers(sys.argv[1] if len(sys.argv) > 1 else "/opt/kgen/cni/bin")
