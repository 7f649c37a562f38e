"""DNS first (lab contract section 5): when DST is a name a pod would look up, the
trace follows the source pod's own lookup before the request.

A name is looked up when SRC is a pod, the lab runs its DNS, and DST is neither a
member of the lab nor an address: it contains a dot (`web.shop`,
`web.shop.svc.cluster.local`, `example.org`), or it is the short name of a service
in SRC's namespace. The lookup is the pod's resolver's: the node side reads the
pod's resolv.conf and walks its search list with ndots (generator.node.trace_dns),
one A query after another from the trace's source port, so the first query is the
flow traced through kube-proxy's DNAT to a DNS pod and back. The request then goes
to the first address of the answer, on the named service's first port (its
targetPort when the address is a pod's: a headless service) unless --port says.
"""

from __future__ import annotations

import ipaddress

from generator.cluster.targets import find_service
from generator.node.contract import Cluster, PublishedPod
from generator.trace.plan import DEFAULT_PORTS, Member, Plan, TraceUsageError, make_plan, member
from generator.trace.verdict import Lookup, Result

DNS_SERVICE = "kube-dns.kube-system"
CLUSTER_DOMAIN = "cluster.local"


def _domain(cluster: Cluster) -> str:
    return cluster.get("clusterDomain") or CLUSTER_DOMAIN


def wants_lookup(cluster: Cluster, pods: list[PublishedPod], src: str, dst: str) -> bool:
    """Whether SRC would look DST up in the cluster DNS before sending to it."""
    dns = cluster.get("dns")
    source = member(cluster, pods, src)
    if not dns or not dns.get("enabled") or source is None or source.kind != "pod":
        return False
    try:
        ipaddress.ip_address(dst)
        return False
    except ValueError:
        pass
    if "/" in dst or member(cluster, pods, dst) is not None:
        return False
    if "." in dst:
        return True
    return find_service(cluster["services"], dst, _domain(cluster), source.namespace) is not None


def query_plan(cluster: Cluster, pods: list[PublishedPod], src: str, name: str,
               sport: int | None = None) -> Plan:
    """The trace of SRC's lookup: UDP to the kube-dns service, the probe its resolver."""
    plan = make_plan(cluster, pods, src, DNS_SERVICE, 53, "udp", sport=sport)
    plan.probe_mode, plan.probe_arg = "dns", name
    plan.what = f"a DNS query (A {name}, as its resolv.conf's search list and ndots say)"
    return plan


def outcome(query: Result) -> Lookup:
    """What the lookup got, with the query's own verdict said in DNS terms."""
    found = query.probe.get("lookup") if query.probe else None
    delivered = next((h for h in query.hops if h.direction == "request"
                      and h.step == "deliver"), None)
    where = delivered.packet["dst"] if delivered else ""
    if not found:  # no DNS answer came back: nobody answered, whatever the probe said
        query.answered_by = None
        return Lookup(query, query.plan.probe_arg, f"{query.plan.dst.ip}:53", [], None, [])
    query.answered_by = query.plan.names.get(where.split(":")[0]) if where else None
    who = f"{query.answered_by} ({where})" if query.answered_by else found["server"]
    answers = ", ".join(found["answers"]) or "no address"
    query.summary = f"answered by {who}: {found['name']} {found['rcode']}, {answers}"
    return Lookup(query, found["name"], found["server"], list(found["answers"]),
                  found["rcode"], list(found["tried"]))


def request_target(cluster: Cluster, pods: list[PublishedPod], lookup: Lookup,
                   port: int | None, protocol: str | None) -> tuple[str, int | None, str | None]:
    """(address, port, protocol) of the request after the lookup: the first address
    answered, on the named service's first port (targetPort for a pod's address)."""
    ip = lookup.answers[0]
    if protocol == "icmp" or port is not None:
        return ip, port, protocol
    service = find_service(cluster["services"], lookup.name, _domain(cluster))
    if service is None:
        if any(p.get("ip") == ip for p in pods):
            return ip, DEFAULT_PORTS[protocol or "tcp"], protocol
        raise TraceUsageError(f"{lookup.name} is {ip}, not a service's or pod's: give --port")
    ports = [p for p in service["ports"] if protocol in (None, p["protocol"].lower())]
    if not ports:
        raise TraceUsageError(f"service {service['name']} has no {protocol} port")
    sp = ports[0]
    chosen = int(sp["port"]) if ip == service["clusterIP"] else int(sp["targetPort"])
    return ip, chosen, protocol or sp["protocol"].lower()


def unanswered(query: Result, lookup: Lookup, dst: str, port: int | None,
               protocol: str | None) -> Result:
    """The result when the lookup gave no address: no request is sent. The verdict is
    the query's own when it got no answer (timeout, dropped, refused by ICMP), and
    `refused` when the DNS answered without an address (NXDOMAIN, REFUSED, no A record)."""
    plan = query.plan
    request = Plan(plan.trace_id, plan.src, Member(dst, "name", ""), port, protocol or "tcp",
                   plan.sport, plan.mode, plan.backend, names=plan.names)
    result = Result(request, query.probe, src_ip=query.src_ip, dns=lookup)
    if lookup.rcode is None:
        result.verdict, result.summary = query.verdict, f"DNS lookup {query.summary}"
    else:
        result.verdict = "refused"
        result.summary = (f"refused: the lookup of {dst} got {lookup.rcode} and no address "
                          f"from {query.answered_by or lookup.server}; no request was sent")
    return result
