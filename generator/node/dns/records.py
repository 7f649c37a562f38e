"""The cluster zone's records, built once per input from a DnsZone document.

Names and contents follow the Kubernetes DNS-Based Service Discovery
specification (kubernetes/dns docs/specification.md, schema 1.1.0) and, where
it leaves a choice, what CoreDNS's kubernetes plugin answers:
- TTL 5 for every record (the plugin's default; kubeadm's Corefile sets 30),
  28800 for `dns-version.<zone>` TXT "1.1.0";
- an endpoint's hostname is its `hostname`, else its IP with dashes
  (10-244-1-5), as the plugin does without `endpoint_pod_names`;
- endpoint names (`<hostname>.<svc>.<ns>.svc.<zone>`) and their PTRs exist for
  every service's ready endpoints, not only headless ones;
- SRV priority 0, weight 100 split evenly over the records of the name;
- pod records `a-b-c-d.<ns>.pod.<zone>` exist for pods of the zone's input
  ("pods verified": a pod with that IP in that namespace);
- names the plugin treats as existing but empty (the zone apex, `svc`, `pod`,
  `<ns>.svc`, `<ns>.pod`) answer NODATA; every other unknown name NXDOMAIN.
kgen extension (spec §3 allows them): a pod IP that is no service's endpoint
has a PTR to its pod record, so every lab address resolves back to a name.
Every lookup is a dictionary access: the work per query does not grow with the zone.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from generator.node.dns.message import NS, PTR, SOA, SRV, TXT, A, RData, Soa, Srv
from generator.node.documents import DnsService, DnsZone

RECORD_TTL = 5  # CoreDNS kubernetes plugin: defaultTTL
VERSION_TTL = 28800  # the spec's own example; CoreDNS hard-codes it
SCHEMA_VERSION = "1.1.0"
REVERSE_ZONE = "in-addr.arpa"

RRsets = dict[int, list[RData]]


def reverse_name(ip: str) -> str:
    return ipaddress.IPv4Address(ip).reverse_pointer


def reverse_ip(name: str) -> str | None:
    """The IPv4 address a full `d.c.b.a.in-addr.arpa` name stands for."""
    labels = name.split(".")
    if len(labels) != 6 or not name.endswith("." + REVERSE_ZONE):
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
    except ValueError:
        return None


def endpoint_hostname(endpoint_ip: str, hostname: str | None) -> str:
    return hostname or endpoint_ip.replace(".", "-")


class ClusterZone:
    """The records of one cluster domain and of its reverse names."""

    def __init__(self, doc: DnsZone, serial: int = 0) -> None:
        self.domain = doc["domain"].strip(".").lower()
        self.serial = serial & 0xFFFFFFFF
        self.reverse_nets = [ipaddress.ip_network(c, strict=False) for c in doc["reverseCIDRs"]]
        self.names: dict[str, RRsets] = defaultdict(dict)
        self._build(doc)
        self.names = dict(self.names)  # lookups must not create names

    # ---------------------------------------------------------------- queries

    def where(self, name: str) -> str:
        """'zone' (the cluster domain), 'reverse' (a lab address's PTR name) or 'outside'."""
        name = name.lower()
        if name == self.domain or name.endswith("." + self.domain):
            return "zone"
        ip = reverse_ip(name)
        if ip is not None and any(ipaddress.IPv4Address(ip) in net for net in self.reverse_nets
                                  if net.version == 4):
            return "reverse"
        return "outside"

    def lookup(self, name: str) -> RRsets | None:
        """The record sets at `name` (case-insensitive); None when the name does not exist."""
        return self.names.get(name.lower())

    def ttl(self, rtype: int) -> int:
        return VERSION_TTL if rtype == TXT else RECORD_TTL

    def soa(self, where: str) -> tuple[str, Soa]:
        """The SOA that negative answers carry, as CoreDNS writes it for its zone."""
        apex = self.domain if where == "zone" else REVERSE_ZONE
        return apex, Soa(f"ns.dns.{apex}", f"hostmaster.{apex}", self.serial, 7200, 1800, 86400,
                         RECORD_TTL)

    # ---------------------------------------------------------------- building

    def _add(self, name: str, rtype: int, data: RData) -> None:
        rrset = self.names[name.lower()].setdefault(rtype, [])
        if data not in rrset:
            rrset.append(data)

    def _exists(self, name: str) -> None:
        self.names[name.lower()]  # noqa: B018 - the defaultdict creates the (empty) name

    def _build(self, doc: DnsZone) -> None:
        zone = self.domain
        self._add(zone, SOA, self.soa("zone")[1])
        self._add(zone, NS, f"ns.dns.{zone}")
        if doc["nameserver"]:
            self._add(f"ns.dns.{zone}", A, doc["nameserver"])
        self._add(f"dns-version.{zone}", TXT, (SCHEMA_VERSION.encode(),))
        for kind in ("svc", "pod"):
            self._exists(f"{kind}.{zone}")
            for namespace in doc["namespaces"]:
                self._exists(f"{namespace}.{kind}.{zone}")
        endpoint_ips: set[str] = set()
        for service in doc["services"]:
            self._add_service(service)
            endpoint_ips.update(e["ip"] for e in service["endpoints"])
        for pod in doc["pods"]:
            pod_name = f"{pod['ip'].replace('.', '-')}.{pod['namespace']}.pod.{zone}"
            self._add(pod_name, A, pod["ip"])
            if pod["ip"] not in endpoint_ips:
                self._add(reverse_name(pod["ip"]), PTR, pod_name)

    def _add_service(self, service: DnsService) -> None:
        fqdn = f"{service['name']}.{service['namespace']}.svc.{self.domain}"
        named = [p for p in service["ports"] if p["name"]]
        endpoints = [(endpoint_hostname(e["ip"], e.get("hostname")), e["ip"])
                     for e in service["endpoints"]]
        for hostname, ip in endpoints:
            self._add(f"{hostname}.{fqdn}", A, ip)
            self._add(reverse_name(ip), PTR, f"{hostname}.{fqdn}")
        if service["clusterIP"] is not None:
            self._add(fqdn, A, service["clusterIP"])
            self._add(reverse_name(service["clusterIP"]), PTR, fqdn)
            for port in named:
                srv_name = f"_{port['name']}._{port['protocol'].lower()}.{fqdn}"
                self._add(srv_name, SRV, Srv(0, 100, port["port"], fqdn))
            return
        if not endpoints:
            return  # a headless service without ready endpoints: NXDOMAIN, as the spec says
        for _, ip in endpoints:
            self._add(fqdn, A, ip)
        weight = max(1, 100 // len(endpoints))
        for port in named:
            srv_name = f"_{port['name']}._{port['protocol'].lower()}.{fqdn}"
            for hostname, _ in endpoints:
                self._add(srv_name, SRV, Srv(0, weight, port["port"], f"{hostname}.{fqdn}"))

