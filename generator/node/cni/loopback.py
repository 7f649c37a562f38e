"""The loopback plugin: `lo` up in the pod's netns (containers of a pod meet on 127.0.0.1)."""

from __future__ import annotations

import os

from generator.node.cni import spec
from generator.node.cni.spec import CNIError, in_ns, run
from generator.node.cni.types import CniResult, NetConf


def add(env: dict[str, str], conf: NetConf) -> CniResult:
    netns = env["CNI_NETNS"]
    if not os.path.exists(netns):
        raise CNIError(spec.INTERNAL, f"failed to open netns {netns!r}: no such file")
    run(in_ns(netns, "ip", "link", "set", "lo", "up"), "bring up lo")
    if conf.get("prevResult"):
        return CniResult(**conf["prevResult"])  # chained after another plugin: pass its result on
    return {"cniVersion": conf["cniVersion"],
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": netns}],
            "ips": [{"interface": 0, "address": "127.0.0.1/8"}], "dns": {}}


def delete(env: dict[str, str], conf: NetConf) -> None:
    return None  # lo goes away with the netns


def check(env: dict[str, str], conf: NetConf) -> None:
    out = run(in_ns(env["CNI_NETNS"], "ip", "-br", "link", "show", "lo"), "read lo")
    if "UP" not in out.split()[1:2] and "UNKNOWN" not in out:
        raise CNIError(spec.INTERNAL, "lo is down")


def main() -> None:
    spec.plugin_main(add, delete, check)


if __name__ == "__main__":
    main()
