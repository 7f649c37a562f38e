"""Pods on this node: a network namespace named after the pod, a CNI ADD, and
one process per pod container inside that namespace (what kubelet and a
container runtime do, minus images and cgroups).

Health as kubelet's (kuberuntime_manager.go doBackOff over client-go's
flowcontrol.Backoff): a container that exits is restarted (restartPolicy Always)
at once the first time, then after 10 s, 20 s, ... up to 5 min; a container that
ran 10 min (twice the maximum) starts over; while a restart waits the pod is
`CrashLoopBackOff`.
A pod is `Running` (ready, an endpoint) only while all its containers run and
every test server listens.

Removal is kubelet's graceful termination (killContainersWithSyncResult): the pod
is `Terminating`, its containers get SIGTERM, and SIGKILL when its
terminationGracePeriodSeconds run out; it is gone (CNI DEL, netns deleted) once
every container has ended. While its containers still run it is `serving`, which
the proxies use as kube-proxy uses a serving terminating endpoint. A container's output goes to
/var/log/kgen/pods/<pod>/<container>.log (`kgen logs`).
"""

from __future__ import annotations

import contextlib
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
from generator.node.backoff import next_backoff, restart_delay
from generator.node.cni import runtime as cni
from generator.node.cni.spec import CNIError
from generator.node.contract import DEFAULT_TERMINATION_GRACE, ContainerSpec, PodSpec
from generator.node.pod_dns import NETNS_ETC, remove_pod_files, write_pod_files

log = logging.getLogger("kgen.pods")

NETNS_DIR = Path("/run/netns")
CONFLIST = Path("/etc/cni/net.d/10-kgen.conflist")
CNI_BIN = "/opt/kgen/cni/bin"
IPAM_DIR = Path("/var/lib/cni/networks")
LOG_DIR = Path("/var/log/kgen/pods")
TEST_SERVER_PORTS = {"tcp": 8080, "udp": 8081}
STOP_GRACE = 2.0
SETUP_WORKERS = 8


@dataclass
class Container:
    spec: ContainerSpec
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    # kubelet's back-off entry for this container: its window and when it was last
    # moved on (at a restart); no entry (0) until the first restart.
    backoff: float = 0.0
    backoff_updated: float = 0.0
    finished: float = 0.0  # when it last exited
    restart_at: float | None = None  # set from an exit until the restart

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
    kill_at: float | None = None  # Terminating: when the grace period ends

    @property
    def grace(self) -> float:
        return float(self.spec.get("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE))

    def serving(self) -> bool:
        """While terminating: do all its containers still run (EndpointSlice `serving`)?"""
        return bool(self.containers) and all(c.running() for c in self.containers.values())

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
        if self.state == "Terminating":
            # Its spec is gone from cluster.json: the proxies select it by these.
            doc["labels"] = dict(self.spec.get("labels") or {})
            doc["namespace"] = str(self.spec.get("namespace") or "default")
            doc["serving"] = self.serving()
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
    for path in NETNS_ETC.glob("*"):
        remove_pod_files(path.name)


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


def pod_state(pod: Pod, serving: bool, now: float) -> str:
    """Failed (set-up failed) > CrashLoopBackOff (a restart waits on the back-off) >
    Running (all run and serve) > Pending."""
    if pod.state == "Failed":
        return "Failed"
    if any(c.restart_at is not None and c.restart_at > now for c in pod.containers.values()):
        return "CrashLoopBackOff"
    return "Running" if serving else "Pending"


class PodManager:
    def __init__(self, node: str) -> None:
        self.node = node
        self.pods: dict[str, Pod] = {}
        self.dns: tuple[str, str] | None = None  # (nameserver, domain) for resolv.conf

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
            write_pod_files(spec, pod.ip, self.dns)  # before any process resolves a name
            for container in spec["containers"]:
                pod.containers[container["name"]] = Container(container)
                self._start(pod, pod.containers[container["name"]])
            log.info("pod %s: %s", pod.name, pod.ip)
        except (subprocess.CalledProcessError, CNIError, OSError, KeyError) as err:
            detail = getattr(err, "stderr", None) or str(err)
            pod.state, pod.error = "Failed", str(detail).strip()
            log.error("pod %s failed: %s", pod.name, pod.error)
        return pod

    def remove(self, name: str, kill: bool = False) -> None:
        """Stop the pod's containers (SIGTERM, SIGKILL after STOP_GRACE; `kill`: SIGKILL
        at once) and tear its network down."""
        pod = self.pods.pop(name, None)
        if pod is not None:
            processes = [c.proc for c in pod.containers.values()]
            if kill:
                for process in processes:
                    _signal(process, signal.SIGKILL)
                    if process is not None:
                        process.wait()
            else:
                _stop(processes)
        netns = NETNS_DIR / name
        try:
            cni.delete(CONFLIST, name, str(netns), "eth0", CNI_BIN,
                       cni.cni_args(K8S_POD_NAME=name))
        except CNIError as err:
            log.error("pod %s: CNI DEL: %s", name, err)
        proc.run(["ip", "netns", "delete", name])
        remove_pod_files(name)
        log.info("pod %s removed", name)

    def terminate(self, name: str, now: float | None = None) -> None:
        """Begin the pod's graceful termination: SIGTERM now, SIGKILL after its grace
        period. A pod with nothing to drain (no address, failed set-up) goes at once."""
        pod = self.pods[name]
        if pod.state == "Terminating":
            return
        now = time.monotonic() if now is None else now
        if pod.state == "Failed" or not pod.ip or pod.grace <= 0:
            self.remove(name, kill=True)
            return
        pod.state, pod.kill_at = "Terminating", now + pod.grace
        for container in pod.containers.values():
            container.restart_at = None  # no restarts while terminating
            _signal(container.proc, signal.SIGTERM)
        log.info("pod %s terminating: SIGTERM sent, SIGKILL in %.0fs", name, pod.grace)

    def _tick_terminating(self, pod: Pod, now: float) -> None:
        """A terminating pod is gone once its containers have ended, or at its deadline."""
        if pod.kill_at is not None and now >= pod.kill_at:
            log.info("pod %s: grace period over, SIGKILL", pod.name)
            self.remove(pod.name, kill=True)
        elif not any(c.running() for c in pod.containers.values()):
            self.remove(pod.name, kill=True)

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
            _stop([c.proc for c in pod.containers.values()])
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
            if pod.state == "Terminating":
                self._tick_terminating(pod, now)
                changed |= pod.name not in self.pods or pod.published() != before
                continue
            if pod.state != "Failed":
                for container in pod.containers.values():
                    self._check(pod, container, now)
                # Ports are looked at until the pod first serves, not on every tick.
                pod.state = pod_state(pod, self._serving(pod, pod.state != "Running"), now)
            changed |= pod.published() != before
        return changed

    def _check(self, pod: Pod, container: Container, now: float) -> None:
        process = container.proc
        if container.restart_at is None:
            if process is None or process.poll() is None:
                return
            container.finished = now  # the exit is seen at most one agent period late
            delay = restart_delay(container.backoff, container.backoff_updated, now)
            container.restart_at = now + delay
            log.warning("pod %s: container %s exited (%s); restart %s", pod.name,
                        container.name, process.returncode,
                        f"in {delay:.0f}s" if delay else "now")
        if now >= container.restart_at:
            container.backoff = next_backoff(container.backoff, container.backoff_updated,
                                             container.finished)
            container.backoff_updated = now
            container.restarts += 1
            log.info("pod %s: restarting container %s (restart %d)", pod.name, container.name,
                     container.restarts)
            self._start(pod, container)

    def _serving(self, pod: Pod, check_ports: bool = True) -> bool:
        for container in pod.containers.values():
            process = container.proc
            # `tick`'s _check has just polled it: its returncode is up to date.
            if process is None or process.returncode is not None \
                    or container.restart_at is not None:
                return False
            ports = list(TEST_SERVER_PORTS.items()) if not container.spec.get("command") \
                else [(str(p), int(n)) for p, n in container.spec.get("readyPorts") or []]
            if check_ports and not all(_listening(process.pid, p, n) for p, n in ports):
                return False
        return True

    def watched_pids(self) -> list[int]:
        """The processes `tick` polls for an exit (the agent may wait on them instead)."""
        return [c.proc.pid for p in self.pods.values() if p.state not in ("Failed", "Terminating")
                for c in p.containers.values()
                if c.restart_at is None and c.proc is not None and c.proc.returncode is None]

    def busy(self) -> bool:
        """Is any pod on its way somewhere (worth watching closely)?"""
        return any(p.state in ("Pending", "Terminating") for p in self.pods.values())

    def next_restart(self) -> float | None:
        """The next moment a container restarts or a terminating pod is killed."""
        due = [c.restart_at for p in self.pods.values() for c in p.containers.values()
               if c.restart_at is not None]
        due += [p.kill_at for p in self.pods.values() if p.kill_at is not None]
        return min(due) if due else None


    def published(self) -> dict[str, dict[str, Any]]:
        return {name: pod.published() for name, pod in sorted(self.pods.items())}

    def stop_all(self) -> None:
        _stop([c.proc for p in self.pods.values() for c in p.containers.values()])


def _signal(process: subprocess.Popen[bytes] | None, signum: int) -> None:
    """Signal a container's process group (it runs in a session of its own)."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _stop(processes: list[subprocess.Popen[bytes] | None]) -> None:
    """SIGTERM to every process, SIGKILL to those still running STOP_GRACE later
    (test servers drain on SIGTERM: they always need the SIGKILL)."""
    for process in processes:
        _signal(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for process in processes:
        if process is None:
            continue
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL)
            process.wait()
