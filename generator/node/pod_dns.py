"""The node agent's part of the cluster DNS (lab contract section 8).

The zone: on every sync the agent computes the DnsZone of the lab as this node
sees it (`dns_zone`, from the same serving pods its proxy gets) and writes it to
the node-local DNS_ZONE_FILE, atomically and only when it changed; the DNS pods
on this node read it within a quarter second (generator.node.dns.server).

A pod's resolver: as kubelet does for dnsPolicy ClusterFirst, each pod gets a
resolv.conf naming the cluster DNS, its namespace first in the search path and
ndots:5, and a kubelet-style hosts file with its own name. They live in
/etc/netns/<pod>/, which `ip netns exec` bind-mounts over /etc/ for every
process it starts in the pod: its containers and `kgen exec`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from generator.node.contract import DNS_ZONE_FILE, Cluster, PodSpec, PublishedPod, namespace_of
from generator.node.dns.resolvconf import resolv_conf
from generator.node.dns.zone import CLUSTER_DOMAIN, dns_zone

NETNS_ETC = Path("/etc/netns")


def dns_settings(cluster: Cluster) -> tuple[str, str] | None:
    """(nameserver, cluster domain) when the lab runs its DNS, else None."""
    spec = cluster.get("dns")
    if not spec or not spec.get("enabled"):
        return None
    return spec["clusterIP"], cluster.get("clusterDomain") or CLUSTER_DOMAIN


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ZoneWriter:
    """Keeps DNS_ZONE_FILE equal to the lab's zone; `digest` names what it holds."""

    def __init__(self, path: Path = DNS_ZONE_FILE) -> None:
        self.path = path
        self.text: str | None = None
        self.digest = ""

    def update(self, cluster: Cluster, pods: list[PublishedPod]) -> bool:
        """Write the zone if it changed; True when it did."""
        text = zone_text(cluster, pods)
        if text is None or text == self.text:
            return False
        _write_atomic(self.path, text)
        self.text = text
        self.digest = zone_digest(text)
        return True


def zone_text(cluster: Cluster, pods: list[PublishedPod]) -> str | None:
    """The zone file's text for `pods` as `serving_pods` gives them (None: no DNS); the
    host computes it too, to know when every node serves the lab's current zone."""
    settings = dns_settings(cluster)
    if settings is None:
        return None
    nameserver, domain = settings
    return json.dumps(dns_zone(cluster, pods, domain, nameserver), sort_keys=True) + "\n"


def zone_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hosts_file(pod: str, ip: str | None) -> str:
    """kubelet's managed hosts file (kubelet_pods.go managedHostsFileContent)."""
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    if ip:
        lines.append(f"{ip}\t{pod}")
    return "\n".join(lines) + "\n"


def write_pod_files(spec: PodSpec, ip: str | None, settings: tuple[str, str] | None,
                    etc: Path = NETNS_ETC) -> None:
    """The pod's resolv.conf (only when the lab runs its DNS) and hosts file."""
    where = etc / spec["name"]
    where.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        _write_atomic(where / "resolv.conf", resolv_conf(settings[0], namespace_of(spec),
                                                         settings[1]))
    _write_atomic(where / "hosts", hosts_file(spec["name"], ip))


def remove_pod_files(name: str, etc: Path = NETNS_ETC) -> None:
    shutil.rmtree(etc / name, ignore_errors=True)
