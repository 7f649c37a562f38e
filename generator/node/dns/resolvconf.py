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


class Resolver:
    """What a resolver takes from resolv.conf: its servers, search list and ndots."""

    def __init__(self, nameservers: list[str], search: list[str], ndots: int) -> None:
        self.nameservers, self.search, self.ndots = nameservers, search, ndots


def parse_resolv_conf(text: str) -> Resolver:
    """glibc's reading (resolv.conf(5)): `nameserver` lines add up, the last `search` (or
    `domain`) line wins, `options ndots:N` (capped at 15) defaults to 1."""
    nameservers: list[str] = []
    search: list[str] = []
    ndots = 1
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, args = words[0], words[1:]
        if key == "nameserver" and args:
            nameservers.append(args[0])
        elif key in ("search", "domain"):
            search = [a.strip(".") for a in args]
        elif key == "options":
            for opt in args:
                if opt.startswith("ndots:") and opt[6:].isdigit():
                    ndots = min(int(opt[6:]), 15)
    return Resolver(nameservers, search, ndots)


def search_names(name: str, search: list[str], ndots: int) -> list[str]:
    """The names a stub resolver asks for, in order (glibc's res_nsearch): a name ending
    in a dot only as it is; one with at least `ndots` dots as it is first, then with each
    search domain; any other with each search domain first, then as it is."""
    if name.endswith("."):
        return [name.rstrip(".")]
    expanded = [f"{name}.{domain}" for domain in search if domain]
    if name.count(".") >= ndots:
        return [name, *expanded]
    return [*expanded, name]
