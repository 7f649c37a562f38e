"""A running lab: up, down, status and exec through the Docker SDK.

Compose starts the lab (so the rendered file alone is enough to run it);
everything else goes by the `kgen.lab` label, so `down` cleans up even
without the rendered directory.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from generator.compose import compose
from generator.node.proxy.endpoints import input_digest, ready_pods, selects
from generator.node.published import published_pods, read_json, read_node_states
from generator.render import docker_networks, network_name, project_name

LABEL = "kgen.lab"
UP_TIMEOUT = 180.0

Echo = Callable[[str], None]


class RuntimeFailure(RuntimeError):
    """A failure at run time (exit status 1)."""


def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
        return client
    except Exception as err:
        raise RuntimeFailure(f"cannot reach the Docker engine ({err}); is dockerd running?") from None


@dataclass
class LabPaths:
    """Where a rendered lab lives."""

    root: Path

    @property
    def compose_file(self) -> Path:
        return self.root / "docker-compose.yml"

    @property
    def cluster_file(self) -> Path:
        return self.root / "config" / "cluster.json"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def cluster(self) -> dict[str, Any] | None:
        doc = read_json(self.cluster_file)
        return doc if isinstance(doc, dict) else None


def lab_containers(client: docker.DockerClient, name: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{LABEL}={name}"})


# ---------------------------------------------------------------- up


def ensure_bridge_netfilter() -> None:
    """Node sysctls include net.bridge.*, which exists only with br_netfilter loaded."""
    if Path("/proc/sys/net/bridge").is_dir():
        return
    if shutil.which("modprobe"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True)
    if not Path("/proc/sys/net/bridge").is_dir():
        raise RuntimeFailure("the kernel has no bridge netfilter (/proc/sys/net/bridge); "
                             "run `modprobe br_netfilter` as root")


def refuse_taken_node_network(cluster: dict[str, Any]) -> None:
    """A lab file's own nodeNetwork may clash with another Docker network: say which."""
    wanted = ipaddress.ip_network(cluster["nodeNetwork"])
    for name, subnet in docker_networks(network_name(cluster["name"])):
        if wanted.overlaps(subnet):
            raise RuntimeFailure(f"nodeNetwork {wanted} overlaps Docker network {name} ({subnet}); "
                                 "choose another nodeNetwork, or leave it out to get a free /24")


def remove_stale(client: docker.DockerClient, cluster: dict[str, Any]) -> list[str]:
    """Remove what would make compose fail: same-named leftovers of another lab run."""
    name = cluster["name"]
    project = project_name(name)
    members = {m["container"] for m in cluster["nodes"] + cluster["clients"]}
    removed = []
    for container in client.containers.list(all=True):
        labels = container.labels or {}
        ours = labels.get("com.docker.compose.project") == project
        same_lab = labels.get(LABEL) == name
        if (container.name in members and not ours) or (same_lab and container.name not in members):
            container.remove(force=True)
            removed.append(f"container {container.name}")
    for net in client.networks.list(names=[network_name(name)]):
        subnets = [c.get("Subnet") for c in (net.attrs.get("IPAM") or {}).get("Config") or []]
        ours = (net.attrs.get("Labels") or {}).get("com.docker.compose.project") == project
        if net.name == network_name(name) and (not ours or subnets != [cluster["nodeNetwork"]]):
            for c in client.containers.list(all=True, filters={"network": net.id}):
                c.remove(force=True)
                removed.append(f"container {c.name}")
            net.remove()
            removed.append(f"network {net.name}")
    return removed


def clear_stale_state(client: docker.DockerClient, paths: LabPaths, cluster: dict[str, Any]) -> None:
    """Forget what agents published before their container (re)starts."""
    running = {c.name for c in lab_containers(client, cluster["name"]) if c.status == "running"}
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    keep = {f"{n['name']}.json" for n in cluster["nodes"] if n["container"] in running}
    for path in paths.state_dir.glob("*.json"):
        if path.name not in keep:
            path.unlink()


def start(paths: LabPaths, cluster: dict[str, Any]) -> None:
    compose(paths.compose_file, project_name(cluster["name"]), "up", "-d", "--remove-orphans")


def expected_digest(cluster: dict[str, Any], docs: dict[str, dict[str, Any]]) -> str:
    return input_digest(cluster["services"], published_pods(cluster, docs))


def pending(cluster: dict[str, Any], docs: dict[str, dict[str, Any]]) -> list[str]:
    """What is not there yet, as short phrases for the progress line."""
    missing = []
    digest = expected_digest(cluster, docs)
    for node in cluster["nodes"]:
        doc = docs.get(node["name"])
        if doc is None or not doc.get("ready") or doc.get("generation") != cluster["generation"]:
            missing.append(f"node {node['name']}")
            continue
        if (doc.get("proxy") or {}).get("digest") != digest:
            missing.append(f"proxy on {node['name']}")
    running = {p["name"] for p in published_pods(cluster, docs) if p["ip"]
               and p["state"] == "Running"}
    missing += [f"pod {p['name']}" for p in cluster["pods"] if p["name"] not in running]
    return missing


def failures(cluster: dict[str, Any], docs: dict[str, dict[str, Any]]) -> list[str]:
    found = [f"node {n}: {d['error']}" for n, d in docs.items() if d.get("error")]
    for node, doc in docs.items():
        for pod, info in (doc.get("pods") or {}).items():
            if info.get("state") == "Failed":
                found.append(f"pod {pod} on {node}: {info.get('error')}")
    return found


def wait_ready(client: docker.DockerClient, paths: LabPaths, cluster: dict[str, Any],
               progress: Callable[[int, int, str], None], timeout: float = UP_TIMEOUT) -> None:
    total = len(cluster["nodes"]) * 2 + len(cluster["pods"])
    deadline = time.monotonic() + timeout
    while True:
        docs = read_node_states(paths.state_dir, [n["name"] for n in cluster["nodes"]])
        missing = pending(cluster, docs)
        progress(total - len(missing), total, ", ".join(missing[:4]))
        if not missing:
            return
        broken = failures(cluster, docs)
        if broken:
            raise RuntimeFailure("; ".join(broken))
        dead = [c.name for c in lab_containers(client, cluster["name"]) if c.status != "running"]
        if dead:
            raise RuntimeFailure(f"container(s) stopped: {', '.join(dead)} "
                                 f"(see `docker logs {dead[0]}`)")
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"not ready after {timeout:.0f}s: {', '.join(missing)}; "
                                 "see `docker logs <container>`")
        time.sleep(0.25)


def bridge_of(client: docker.DockerClient, name: str) -> str | None:
    try:
        net = client.networks.get(network_name(name))
    except docker.errors.NotFound:
        return None
    options = net.attrs.get("Options") or {}
    return options.get("com.docker.network.bridge.name") or f"br-{net.id[:12]}"


def host_gw_rule(bridge: str, name: str) -> list[str]:
    """Docker drops frames on an internal network whose addresses are outside its
    subnet; host-gw puts pod IPs on the wire, so accept same-bridge traffic (only)."""
    return ["DOCKER-USER", "-i", bridge, "-o", bridge, "-m", "comment", "--comment",
            f"kgen {name}: host-gw pod traffic stays on the lab bridge", "-j", "ACCEPT"]


def host_iptables() -> list[str]:
    """The host's iptables; through passwordless sudo when not root (a GitHub runner)."""
    if os.geteuid() != 0 and shutil.which("sudo"):
        return ["sudo", "-n", "iptables", "-w"]
    return ["iptables", "-w"]


def allow_host_gw(client: docker.DockerClient, cluster: dict[str, Any]) -> None:
    bridge = bridge_of(client, cluster["name"])
    if cluster["backend"] != "host-gw" or bridge is None:
        return
    rule = host_gw_rule(bridge, cluster["name"])
    try:
        if subprocess.run([*host_iptables(), "-C", *rule], capture_output=True).returncode == 0:
            return
        added = subprocess.run([*host_iptables(), "-I", *rule], capture_output=True, text=True)
        problem = added.stderr.strip() if added.returncode else ""
    except FileNotFoundError as err:
        problem = str(err)
    if problem:
        raise RuntimeFailure("backend host-gw needs a host iptables rule that lets pod IPs cross "
                             f"the lab bridge; adding it failed ({problem}): run kgen as root "
                             "or with passwordless sudo")


def remove_host_gw(name: str) -> None:
    """Delete the lab's DOCKER-USER rules by their comment (the network may be gone)."""
    try:
        listed = subprocess.run([*host_iptables(), "-S", "DOCKER-USER"], capture_output=True,
                                text=True).stdout
    except FileNotFoundError:  # no iptables on this host: no rule of ours either
        return
    for line in listed.splitlines():
        if line.startswith("-A DOCKER-USER") and f'"kgen {name}: ' in line:
            args = shlex.split(line)[2:]
            subprocess.run([*host_iptables(), "-D", "DOCKER-USER", *args], capture_output=True)


# ---------------------------------------------------------------- down


def down(client: docker.DockerClient, name: str, paths: LabPaths | None) -> list[str]:
    remove_host_gw(name)
    removed = []
    for container in lab_containers(client, name):
        container.remove(force=True)
        removed.append(f"container {container.name}")
    networks = client.networks.list(filters={"label": f"{LABEL}={name}"})
    networks += [n for n in client.networks.list(names=[network_name(name)])
                 if n.name == network_name(name) and n.id not in {m.id for m in networks}]
    for net in networks:
        try:
            net.remove()
            removed.append(f"network {net.name}")
        except docker.errors.NotFound:
            pass
    if paths is not None and paths.state_dir.exists():
        shutil.rmtree(paths.state_dir)
        removed.append(f"state {paths.state_dir}")
    return removed


# ---------------------------------------------------------------- status


def _node_state(container: Any, doc: dict[str, Any] | None, generation: str) -> str:
    if container is None:
        return "Absent"
    if container.status != "running":
        return container.status.capitalize()
    if doc and doc.get("ready") and doc.get("generation") == generation:
        return "Ready"
    return "NotReady"


def service_endpoints(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[str]:
    """`ip:targetPort` of every Running pod matching the selector, for every port."""
    out: set[str] = set()
    for pod in ready_pods(pods):
        if selects(service["selector"], pod["labels"]):
            out.update(f"{pod['ip']}:{p['targetPort']}" for p in service["ports"])
    return sorted(out, key=lambda e: (tuple(int(x) for x in e.split(":")[0].split(".")), e))


def status(client: docker.DockerClient | None, paths: LabPaths, name: str) -> dict[str, Any]:
    cluster = paths.cluster()
    if cluster is None:
        return {"name": name, "nodes": [], "pods": [], "services": [], "clients": []}
    containers = {c.name: c for c in lab_containers(client, name)} if client else {}
    docs = read_node_states(paths.state_dir, [n["name"] for n in cluster["nodes"]])
    live = {n for n, d in docs.items()
            if containers.get(_container_of(cluster, n)) is not None
            and containers[_container_of(cluster, n)].status == "running"}
    pods = published_pods(cluster, {n: d for n, d in docs.items() if n in live})
    by_name = {p["name"]: p for p in pods}
    return {
        "name": cluster["name"],
        "nodes": [{"name": n["name"], "container": n["container"], "ip": n["ip"],
                   "podCIDR": n["podCIDR"],
                   "state": _node_state(containers.get(n["container"]), docs.get(n["name"]),
                                        cluster["generation"])}
                  for n in cluster["nodes"]],
        "pods": [{"name": p["name"], "node": p["node"],
                  "ip": (by_name.get(p["name"]) or {}).get("ip"),
                  "state": (by_name.get(p["name"]) or {}).get("state", "Unknown")}
                 for p in cluster["pods"]],
        "services": [{"name": s["name"], "type": s["type"], "clusterIP": s["clusterIP"],
                      "ports": [dict(p) for p in s["ports"]],
                      "endpoints": service_endpoints(s, pods)}
                     for s in cluster["services"]],
        "clients": [{"name": c["name"], "container": c["container"], "ip": c["ip"]}
                    for c in cluster["clients"]],
    }


def _container_of(cluster: dict[str, Any], node: str) -> str:
    return next(n["container"] for n in cluster["nodes"] if n["name"] == node)


# ---------------------------------------------------------------- exec


def exec_argv(cluster: dict[str, Any], target: str, command: list[str],
              interactive: bool) -> list[str]:
    """The `docker exec` command line for a node, a client or a pod."""
    flags = ["-i", "-t"] if interactive else ["-i"]
    for member in cluster["nodes"] + cluster["clients"]:
        if member["name"] == target:
            return ["docker", "exec", *flags, member["container"], *command]
    for pod in cluster["pods"]:
        if pod["name"] == target:
            node = next(n for n in cluster["nodes"] if n["name"] == pod["node"])
            return ["docker", "exec", *flags, node["container"],
                    "ip", "netns", "exec", pod["name"], *command]
    names = [m["name"] for m in cluster["nodes"] + cluster["clients"] + cluster["pods"]]
    raise LookupError(f"no node, client or pod named {target!r} (known: {', '.join(names)})")


def run_exec(argv: list[str]) -> int:
    """The command's own exit status; stdin is passed through (`docker exec -i`)."""
    return subprocess.call(argv)
