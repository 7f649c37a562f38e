"""Pods on this node: a network namespace named after the pod, a CNI ADD, and
one process per pod container inside that namespace (what kubelet and a
container runtime do, minus images and cgroups).

Health as kubelet's: a container that exits is restarted (restartPolicy
Always) after a back-off of 10 s, doubling per restart up to 5 min, reset once
a container has run for 10 min; while it waits the pod is `CrashLoopBackOff`.
A pod is `Running` (ready, an endpoint) only while all its containers run and
every test server listens. A container's output goes to
/var/log/kgen/pods/<pod>/<container>.log (`kgen logs`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.node import proc
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
STOP_GRACE = 2.0
# kubelet's container restart back-off.
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0  # a container that ran this long starts over at BACKOFF_INITIAL
SETUP_WORKERS = 8


@dataclass
class Container:
    spec: ContainerSpec
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = 0.0  # the delay before the next restart; 0 until the first exit
    restart_at: float | None = None  # set while waiting in back-off

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Pod:
    spec: PodSpec
    ip: str | None = None
    state: str = "Pending"
    error: str | None = None
    containers: dict[str, Container] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def restarts(self) -> int:
        return sum(c.restarts for c in self.containers.values())

    def published(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ip": self.ip, "state": self.state, "restarts": self.restarts}
        if self.error:
            doc["error"] = self.error
        return doc


def reset_leftovers() -> None:
    """A (re)started node container has a new network namespace: nothing of
    the pods it had survives but stale files, which would block the names."""
    for path in NETNS_DIR.glob("*"):
        proc.run(["ip", "netns", "delete", path.name])
        path.unlink(missing_ok=True)
    for path in IPAM_DIR.glob("*/*"):
        path.unlink(missing_ok=True)
    for path in cni.RESULTS_DIR.glob("*"):
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


def next_backoff(current: float, ran: float) -> float:
    """The delay before the next restart, given the last delay and how long the
    container ran: 10 s, 20 s, 40 s ... 300 s; back to 10 s after a long run."""
    if current <= 0 or ran >= BACKOFF_RESET:
        return BACKOFF_INITIAL
    return min(current * 2, BACKOFF_MAX)


def pod_state(pod: Pod, serving: bool) -> str:
    """Failed (set-up failed) > CrashLoopBackOff (a container waits to restart) >
    Running (all run and serve) > Pending."""
    if pod.state == "Failed":
        return "Failed"
    if any(c.restart_at is not None for c in pod.containers.values()):
        return "CrashLoopBackOff"
    return "Running" if serving else "Pending"


class PodManager:
    def __init__(self, node: str) -> None:
        self.node = node
        self.pods: dict[str, Pod] = {}

    # ---- lifecycle

    def add_all(self, specs: list[PodSpec]) -> None:
        """Set pods up; in parallel when the host chose every address (deterministic
        whatever the order), else one at a time in lab-file order (round-robin IPAM
        then gives every run the same addresses)."""
        for spec in specs:  # names first: `ip netns add` is quick, and racy in parallel
            self._netns(spec["name"])
        if len(specs) > 1 and all(s.get("ip") for s in specs):
            with ThreadPoolExecutor(min(SETUP_WORKERS, len(specs))) as pool:
                list(pool.map(self.add, specs))
        else:
            for spec in specs:
                self.add(spec)

    def _netns(self, name: str) -> None:
        if not (NETNS_DIR / name).exists():
            proc.run(["ip", "netns", "add", name])

    def add(self, spec: PodSpec) -> Pod:
        pod = Pod(spec)
        self.pods[pod.name] = pod
        try:
            self._netns(pod.name)
            if not (NETNS_DIR / pod.name).exists():
                raise OSError(f"ip netns add {pod.name} failed")
            args = cni.cni_args(K8S_POD_NAME=pod.name, IP=spec.get("ip") or "")
            result = cni.add(CONFLIST, pod.name, str(NETNS_DIR / pod.name), "eth0", CNI_BIN,
                             args)
            pod.ip = result["ips"][0]["address"].split("/")[0]
            for container in spec["containers"]:
                pod.containers[container["name"]] = Container(container)
                self._start(pod, pod.containers[container["name"]])
            log.info("pod %s: %s", pod.name, pod.ip)
        except (subprocess.CalledProcessError, CNIError, OSError, KeyError) as err:
            detail = getattr(err, "stderr", None) or str(err)
            pod.state, pod.error = "Failed", str(detail).strip()
            log.error("pod %s failed: %s", pod.name, pod.error)
        return pod

    def remove(self, name: str) -> None:
        pod = self.pods.pop(name, None)
        if pod is not None:
            for container in pod.containers.values():
                _stop(container.proc)
        netns = NETNS_DIR / name
        try:
            cni.delete(CONFLIST, name, str(netns), "eth0", CNI_BIN,
                       cni.cni_args(K8S_POD_NAME=name))
        except CNIError as err:
            log.error("pod %s: CNI DEL: %s", name, err)
        proc.run(["ip", "netns", "delete", name])
        log.info("pod %s removed", name)

    def update(self, spec: PodSpec) -> None:
        """Labels change in place; a change of containers restarts the processes;
        a new address (or one a failed set-up never got) sets the pod up again."""
        pod = self.pods[spec["name"]]
        if pod.state == "Failed" or (spec.get("ip") and spec.get("ip") != pod.ip):
            self.remove(spec["name"])
            self.add(spec)
            return
        old, pod.spec = pod.spec, spec
        if old["containers"] != spec["containers"] and pod.ip:
            for container in pod.containers.values():
                _stop(container.proc)
            pod.containers = {c["name"]: Container(c) for c in spec["containers"]}
            for container in pod.containers.values():
                self._start(pod, container)
            pod.state = "Pending"

    def _start(self, pod: Pod, container: Container) -> None:
        LOG_DIR.joinpath(pod.name).mkdir(parents=True, exist_ok=True)
        with open(LOG_DIR / pod.name / f"{container.name}.log", "ab") as logfile:
            env = dict(os.environ, POD_NAME=pod.name, POD_IP=pod.ip or "", NODE_NAME=self.node)
            container.proc = subprocess.Popen(
                ["ip", "netns", "exec", pod.name, *_command(pod.name, container.spec)],
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        container.started = time.monotonic()
        container.restart_at = None

    # ---- health

    def tick(self, now: float | None = None) -> bool:
        """Notice exited containers, restart those whose back-off is over, and set
        each pod's state. True when any pod's published state changed."""
        now = time.monotonic() if now is None else now
        changed = False
        for pod in list(self.pods.values()):
            before = pod.published()
            if pod.state != "Failed":
                for container in pod.containers.values():
                    self._check(pod, container, now)
                # Ports are looked at until the pod first serves, not on every tick.
                pod.state = pod_state(pod, self._serving(pod, pod.state != "Running"))
            changed |= pod.published() != before
        return changed

    def _check(self, pod: Pod, container: Container, now: float) -> None:
        process = container.proc
        if container.restart_at is None:
            if process is None or process.poll() is None:
                return
            container.backoff = next_backoff(container.backoff, now - container.started)
            container.restart_at = now + container.backoff
            log.warning("pod %s: container %s exited (%s); restart in %.0fs", pod.name,
                        container.name, process.returncode, container.backoff)
        elif now >= container.restart_at:
            container.restarts += 1
            log.info("pod %s: restarting container %s (restart %d)", pod.name, container.name,
                     container.restarts)
            self._start(pod, container)

    def _serving(self, pod: Pod, check_ports: bool = True) -> bool:
        for container in pod.containers.values():
            process = container.proc
            if process is None or process.poll() is not None or container.restart_at is not None:
                return False
            test_server = not container.spec.get("command")
            if check_ports and test_server and not all(
                    _listening(process.pid, p, n) for p, n in TEST_SERVER_PORTS.items()):
                return False
        return True

    def busy(self) -> bool:
        """Is any pod on its way somewhere (worth watching closely)?"""
        return any(p.state == "Pending" for p in self.pods.values())

    def next_restart(self) -> float | None:
        due = [c.restart_at for p in self.pods.values() for c in p.containers.values()
               if c.restart_at is not None]
        return min(due) if due else None

    def published(self) -> dict[str, dict[str, Any]]:
        return {name: pod.published() for name, pod in sorted(self.pods.items())}

    def stop_all(self) -> None:
        for pod in self.pods.values():
            for container in pod.containers.values():
                _stop(container.proc)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
