"""Pods on this node: a network namespace named after the pod, a CNI ADD, and
one process per pod container inside that namespace (what kubelet and a
container runtime do, minus images and cgroups).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.node.cni import runtime as cni
from generator.node.cni.spec import CNIError
from generator.node.contract import ContainerSpec, PodSpec

log = logging.getLogger("kgen.pods")

NETNS_DIR = Path("/run/netns")
CONFLIST = Path("/etc/cni/net.d/10-kgen.conflist")
CNI_BIN = "/opt/kgen/cni/bin"
IPAM_DIR = Path("/var/lib/cni/networks")
LOG_DIR = Path("/var/log/kgen/pods")
TEST_SERVER_PORTS = {"tcp": 8080, "udp": 8081}
RESTART_BACKOFF = 2.0
STOP_GRACE = 2.0


@dataclass
class Pod:
    spec: PodSpec
    ip: str | None = None
    state: str = "Pending"
    error: str | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    exited_at: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def published(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ip": self.ip, "state": self.state}
        if self.error:
            doc["error"] = self.error
        return doc


def reset_leftovers() -> None:
    """A (re)started node container has a new network namespace: nothing of
    the pods it had survives but stale files, which would block the names."""
    for path in NETNS_DIR.glob("*"):
        subprocess.run(["ip", "netns", "delete", path.name], capture_output=True)
        path.unlink(missing_ok=True)
    for path in IPAM_DIR.glob("*/*"):
        path.unlink(missing_ok=True)


def _command(pod: str, container: ContainerSpec) -> list[str]:
    command = container.get("command")
    if command:
        return list(command)
    return [sys.executable, "-m", "generator.node.testserver", "--name", pod]


def _listening(pid: int, proto: str, port: int) -> bool:
    """Is `port` bound in the process's network namespace? (/proc/PID/net is per netns)"""
    try:
        lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return False
    wanted = f":{port:04X}"
    for line in lines:
        cols = line.split()
        # TCP sockets must be listening (0A); an unconnected UDP socket is 07.
        if cols[1].endswith(wanted) and cols[3] in ("0A", "07"):
            return True
    return False


class PodManager:
    def __init__(self, node: str) -> None:
        self.node = node
        self.pods: dict[str, Pod] = {}

    # ---- lifecycle

    def add(self, spec: PodSpec) -> Pod:
        pod = Pod(spec)
        self.pods[pod.name] = pod
        try:
            subprocess.run(["ip", "netns", "add", pod.name], check=True, capture_output=True,
                           text=True)
            result = cni.add(CONFLIST, pod.name, str(NETNS_DIR / pod.name), "eth0", CNI_BIN)
            pod.ip = result["ips"][0]["address"].split("/")[0]
            for container in spec["containers"]:
                self._start(pod, container)
            log.info("pod %s: %s", pod.name, pod.ip)
        except (subprocess.CalledProcessError, CNIError, OSError, KeyError) as err:
            detail = getattr(err, "stderr", None) or str(err)
            pod.state, pod.error = "Failed", str(detail).strip()
            log.error("pod %s failed: %s", pod.name, pod.error)
        return pod

    def remove(self, name: str) -> None:
        pod = self.pods.pop(name, None)
        if pod is not None:
            for proc in pod.procs.values():
                _stop(proc)
        netns = NETNS_DIR / name
        try:
            cni.delete(CONFLIST, name, str(netns), "eth0", CNI_BIN)
        except CNIError as err:
            log.error("pod %s: CNI DEL: %s", name, err)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        log.info("pod %s removed", name)

    def update(self, spec: PodSpec) -> None:
        """Labels change in place; a change of containers restarts the processes."""
        pod = self.pods[spec["name"]]
        old, pod.spec = pod.spec, spec
        if old["containers"] != spec["containers"] and pod.ip:
            for proc in pod.procs.values():
                _stop(proc)
            pod.procs.clear()
            for container in spec["containers"]:
                self._start(pod, container)
            pod.state = "Pending"

    def _start(self, pod: Pod, container: ContainerSpec) -> None:
        LOG_DIR.joinpath(pod.name).mkdir(parents=True, exist_ok=True)
        logfile = open(LOG_DIR / pod.name / f"{container['name']}.log", "ab")  # noqa: SIM115
        env = dict(os.environ, POD_NAME=pod.name, POD_IP=pod.ip or "", NODE_NAME=self.node)
        pod.procs[container["name"]] = subprocess.Popen(
            ["ip", "netns", "exec", pod.name, *_command(pod.name, container)],
            stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        logfile.close()

    # ---- health

    def tick(self) -> None:
        """Restart exited containers (restartPolicy Always) and promote ready pods."""
        now = time.monotonic()
        for pod in self.pods.values():
            if pod.state == "Failed":
                continue
            for container in pod.spec["containers"]:
                proc = pod.procs.get(container["name"])
                if proc is None or proc.poll() is None:
                    continue
                since = pod.exited_at.setdefault(container["name"], now)
                if now - since >= RESTART_BACKOFF:
                    log.warning("pod %s: container %s exited (%s), restarting", pod.name,
                                container["name"], proc.returncode)
                    pod.exited_at.pop(container["name"])
                    self._start(pod, container)
            if pod.state == "Pending" and self._serving(pod):
                pod.state = "Running"

    def _serving(self, pod: Pod) -> bool:
        for container in pod.spec["containers"]:
            proc = pod.procs.get(container["name"])
            if proc is None or proc.poll() is not None:
                return False
            if not container.get("command"):
                ports = TEST_SERVER_PORTS
                if not all(_listening(proc.pid, p, n) for p, n in ports.items()):
                    return False
        return True

    def published(self) -> dict[str, dict[str, Any]]:
        return {name: pod.published() for name, pod in sorted(self.pods.items())}

    def stop_all(self) -> None:
        for pod in self.pods.values():
            for proc in pod.procs.values():
                _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
