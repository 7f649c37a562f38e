"""A pod's /etc/resolv.conf, as the kubelet writes it for dnsPolicy ClusterFirst
(lab contract §8): the cluster DNS first, the pod's namespace first in the
search path, and ndots:5 so that `web` and `web.shop` try the search list
before being looked up as they are."""

from __future__ import annotations

NDOTS = 5  # the kubelet's value for ClusterFirst pods


def resolv_conf(nameserver: str, namespace: str, domain: str) -> str:
    domain = domain.strip(".")
    search = f"{namespace}.svc.{domain} svc.{domain} {domain}"
    return f"nameserver {nameserver}\nsearch {search}\noptions ndots:{NDOTS}\n"
