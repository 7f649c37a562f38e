"""host-gw's one host rule: pod IPs may cross the lab's (internal) Docker bridge."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import docker
import docker.errors

from generator.cluster.names import network_name
from generator.node.contract import Cluster
from generator.runtime.errors import RuntimeFailure


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


# `iptables -w` waits for the xtables lock as long as another writer holds it, and
# sudo may prompt: bound both so `up` and `down` end with a message, never hang.
IPTABLES_TIMEOUT = 30


def host_iptables() -> list[str]:
    """The host's iptables; through passwordless sudo when not root (a GitHub runner)."""
    if os.geteuid() != 0 and shutil.which("sudo"):
        return ["sudo", "-n", "iptables", "-w"]
    return ["iptables", "-w"]


def allow_host_gw(client: docker.DockerClient, cluster: Cluster) -> None:
    bridge = bridge_of(client, cluster["name"])
    if cluster["backend"] != "host-gw" or bridge is None:
        return
    rule = host_gw_rule(bridge, cluster["name"])
    try:
        if subprocess.run([*host_iptables(), "-C", *rule], capture_output=True,
                          timeout=IPTABLES_TIMEOUT).returncode == 0:
            return
        added = subprocess.run([*host_iptables(), "-I", *rule], capture_output=True, text=True,
                               timeout=IPTABLES_TIMEOUT)
        problem = added.stderr.strip() if added.returncode else ""
    except FileNotFoundError as err:
        problem = str(err)
    except subprocess.TimeoutExpired:
        problem = f"iptables gave no answer within {IPTABLES_TIMEOUT} s"
    if problem:
        raise RuntimeFailure("backend host-gw needs a host iptables rule that lets pod IPs cross "
                             f"the lab bridge; adding it failed ({problem}): run kgen as root "
                             "or with passwordless sudo")


def remove_host_gw(name: str) -> None:
    """Delete the lab's DOCKER-USER rules by their comment (the network may be gone)."""
    try:
        listed = subprocess.run([*host_iptables(), "-S", "DOCKER-USER"], capture_output=True,
                                text=True, timeout=IPTABLES_TIMEOUT).stdout
        for line in listed.splitlines():
            if line.startswith("-A DOCKER-USER") and f'"kgen {name}: ' in line:
                args = shlex.split(line)[2:]
                subprocess.run([*host_iptables(), "-D", "DOCKER-USER", *args],
                               capture_output=True, timeout=IPTABLES_TIMEOUT)
    except FileNotFoundError:  # no iptables on this host: no rule of ours either
        return
    except subprocess.TimeoutExpired as err:
        raise RuntimeFailure(f"the host's iptables gave no answer within {IPTABLES_TIMEOUT} s "
                             "while removing the lab's host-gw rule; is another program "
                             "holding the xtables lock?") from err
