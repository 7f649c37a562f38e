"""tcpdump inside the lab, its pcap streamed out through `docker exec`.

The capture runs where the interface is: in the node's or client's container,
or, for a pod, in the pod's network namespace on its node (`ip netns exec`).
It is bounded twice: tcpdump stops after `count` packets, and `timeout`
inside the container stops it after `duration` seconds (tcpdump flushes and
closes the file on that signal, so the pcap is whole). The host waits a
little longer than that and then ends `docker exec` itself, so a capture
always stops by itself.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from generator.cluster.targets import find_pod
from generator.node.contract import Cluster
from generator.node.documents import docker_cli

DEFAULT_COUNT = 100
DEFAULT_DURATION = 10.0
MAX_DURATION = 3600.0
HOST_GRACE = 15.0          # seconds the host waits beyond --duration before ending docker exec
IFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")   # a Linux interface name
TIMEOUT_EXPIRED = 124      # `timeout`'s status when it stopped the command


class CaptureError(ValueError):
    """A bad target, interface or bound (exit status 2)."""


@dataclass(frozen=True)
class Target:
    name: str
    kind: str                 # node, client or pod
    container: str            # where tcpdump runs
    netns: str | None         # a pod's namespace on that container
    iface: str
    docker: tuple[str, ...] = ("docker",)  # the CLI reaching its engine (a lab across hosts)

    def prefix(self) -> list[str]:
        argv = [*self.docker, "exec", "-i", self.container]
        if self.netns:
            argv += ["ip", "netns", "exec", self.netns]
        return argv


def resolve(cluster: Cluster, target: str, iface: str | None) -> Target:
    """The container (and namespace) that holds TARGET's interface.

    `-i vxlan` on a node means its VXLAN device (kgen.<vni>); any other name
    is taken as it is (eth0, cbr0, a veth...)."""
    if iface is not None and iface != "vxlan" and not IFACE.match(iface):
        raise CaptureError(f"-i: {iface!r} is not an interface name")
    for node in cluster["nodes"]:
        if node["name"] == target:
            device = iface or "eth0"
            if device == "vxlan":
                if cluster.get("backend") != "vxlan":
                    raise CaptureError(f"-i vxlan: lab {cluster['name']} uses backend "
                                       f"{cluster.get('backend')}, which has no VXLAN device")
                device = cluster["vxlan"]["device"]
            return Target(target, "node", node["container"], None, device,
                          tuple(docker_cli(cluster, node["container"])))
    for client in cluster["clients"]:
        if client["name"] == target:
            return Target(target, "client", client["container"], None, _plain(iface),
                          tuple(docker_cli(cluster, client["container"])))
    pod = find_pod(cluster["pods"], target)
    if pod is not None:
        node = next(n for n in cluster["nodes"] if n["name"] == pod["node"])
        return Target(pod["name"], "pod", node["container"], pod["name"], _plain(iface),
                      tuple(docker_cli(cluster, node["container"])))
    names = [m["name"] for m in cluster["nodes"] + cluster["clients"] + cluster["pods"]]
    raise CaptureError(f"no node, client or pod named {target!r} (known: {', '.join(names)}; "
                       "a pod is also NAMESPACE/POD)")


def _plain(iface: str | None) -> str:
    if iface == "vxlan":
        raise CaptureError("-i vxlan: only a node has the VXLAN device")
    return iface or "eth0"


def check_bounds(count: int, duration: float) -> None:
    if count < 1:
        raise CaptureError(f"-c: {count} must be at least 1")
    if not 0 < duration <= MAX_DURATION:
        raise CaptureError(f"--duration: {duration:g} must be more than 0 and at most "
                           f"{MAX_DURATION:g} seconds")


def argv(target: Target, count: int, duration: float, capture_filter: list[str]) -> list[str]:
    """The whole command: tcpdump writing pcap to stdout, packet by packet, bounded twice."""
    return [*target.prefix(), "timeout", f"{duration:g}", "tcpdump", "-i", target.iface,
            "--immediate-mode", "-U", "-n", "-w", "-", "-c", str(count), *capture_filter]


def default_file(lab_dir: Path, target: Target) -> Path:
    return lab_dir / "captures" / f"{target.name}-{target.iface}.pcap"


def decode_hint(cluster: Cluster, target: Target, where: str) -> str | None:
    """How to read the overlay in a node's underlay capture (the lab's VXLAN port)."""
    if cluster.get("backend") != "vxlan" or target.kind != "node" or target.iface == \
            cluster["vxlan"]["device"]:
        return None
    port = cluster["vxlan"]["port"]
    return (f"the overlay is VXLAN on UDP {port}: decode it with "
            f"`tshark -r {where} -d udp.port=={port},vxlan` "
            f"(Wireshark: Decode As... UDP port {port} -> VXLAN)")


@dataclass
class Result:
    status: int               # tcpdump's, 0 also when `timeout` ended it
    captured: int | None      # from tcpdump's "N packets captured"
    stopped_by_host: bool


def run(command: list[str], sink: IO[bytes] | int | None, duration: float,
        err: IO[str] | None = None) -> Result:
    """Run the capture, pcap to `sink`; tcpdump's messages go to `err` (stderr) line by line."""
    err = err or sys.stderr
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.PIPE)
    captured: list[int] = []

    def relay() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            found = re.match(r"^(\d+) packets? captured", line)
            if found:
                captured.append(int(found.group(1)))
            print(line, file=err, flush=True)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    stopped = False
    try:
        status = proc.wait(timeout=duration + HOST_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
        stopped = True
    reader.join(timeout=5)
    if status == TIMEOUT_EXPIRED:
        status = 0
    return Result(status, captured[0] if captured else None, stopped)
