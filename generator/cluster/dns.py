"""The cluster DNS as a cluster runs it (lab contract section 8).

What kubeadm's CoreDNS add-on creates, made from the lab: the ClusterIP service
`kube-dns` in `kube-system` at `dns.clusterIP` (the 10th address of serviceCIDR
unless the lab says, as kubeadm picks it) with ports `dns` 53/UDP and `dns-tcp`
53/TCP, and `dns.replicas` pods `coredns-<n>` in `kube-system`, spread over the
nodes round-robin, labelled `k8s-app: kube-dns`. Each runs the node side's DNS
server (`generator.node.dns`) on port 53 of its own network namespace, answering
from the zone file its node's agent keeps current, so every lookup crosses
kube-proxy's DNAT like any other service traffic. They are appended after the
lab's own pods and services, so that adding the DNS moves no address of theirs.
"""

from __future__ import annotations

import dataclasses

from generator.lab.dns_checks import default_dns_ip
from generator.lab.model import Container, Lab, Pod, Service, ServicePort
from generator.node.contract import DNS_NAMESPACE, DNS_SERVICE, DNS_ZONE_FILE

DNS_LABELS = {"k8s-app": "kube-dns"}
DNS_PORT = 53
DNS_POD_PREFIX = "coredns-"
# Each DNS pod's query log, beside its container's output (which `kgen logs` shows).
QUERY_LOG = "/var/log/kgen/pods/{pod}/queries.log"


def dns_cluster_ip(lab: Lab) -> str:
    return lab.dns.cluster_ip or default_dns_ip(lab.service_cidr)


def dns_pod_names(replicas: int) -> list[str]:
    return [f"{DNS_POD_PREFIX}{n}" for n in range(replicas)]


def dns_pods(lab: Lab) -> list[Pod]:
    command = ["python3", "-m", "generator.node.dns", "--zone", str(DNS_ZONE_FILE),
               "--port", str(DNS_PORT)]
    return [Pod(name, lab.nodes[n % len(lab.nodes)], dict(DNS_LABELS),
                [Container("coredns", [*command, "--log", QUERY_LOG.format(pod=name)],
                           (("udp", DNS_PORT), ("tcp", DNS_PORT)))],
                namespace=DNS_NAMESPACE)
            for n, name in enumerate(dns_pod_names(lab.dns.replicas))]


def dns_service(lab: Lab) -> Service:
    ports = [ServicePort("dns", DNS_PORT, DNS_PORT, "UDP", None),
             ServicePort("dns-tcp", DNS_PORT, DNS_PORT, "TCP", None)]
    return Service(name=DNS_SERVICE, type="ClusterIP", selector=dict(DNS_LABELS), ports=ports,
                   cluster_ip=dns_cluster_ip(lab), session_affinity="None",
                   affinity_timeout=10800, external_traffic_policy="Cluster",
                   namespace=DNS_NAMESPACE)


def with_dns(lab: Lab) -> Lab:
    """The lab with its DNS pods and service added (unchanged when dns.enabled is off)."""
    if not lab.dns.enabled:
        return lab
    return dataclasses.replace(lab, pods=[*lab.pods, *dns_pods(lab)],
                               services=[*lab.services, dns_service(lab)])


def dns_spec(lab: Lab) -> dict[str, object]:
    """cluster.json's `dns`: what agents need to write zones and resolv.conf files."""
    return {"enabled": lab.dns.enabled, "clusterIP": dns_cluster_ip(lab),
            "replicas": lab.dns.replicas if lab.dns.enabled else 0}

