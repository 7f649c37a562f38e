"""Cluster DNS: every service resolves from every namespace, as a pod's resolver asks.

Sources: the first pod of every namespace, then the first pod of every node not yet
covered (the DNS pods themselves excepted: they do not resolve through kube-dns).
From each source, per service: `svc.ns` and `svc.ns.svc.<domain>`, and the short
name `svc` for its own namespace's services only (the search path begins with
`<ns>.svc.<domain>`, so `web` from namespace A must be A's web). Every lookup is
glibc's getaddrinfo in the pod's network namespace, through its own resolv.conf,
so it crosses kube-proxy's DNAT to a DNS pod (node/dns/lookup.py). Expected
answers come from the lab on the host: the cluster IP; for a headless service
exactly the ready endpoints' pod IPs (status `endpoints`; without a status, the
pods it selects in its namespace). Also from each source: an outside name must
be answered REFUSED (an rcode, not a timeout: nothing is forwarded), and once per
lab the SRV record of a named port.

One `docker exec` per source pod runs all its lookups (`PodLookups`, shared by
that pod's checks). Kube-proxy draws a DNS pod at random per query, so a DNS pod
this source cannot reach would fail its lookups only now and then; to fail
deterministically, each source also asks every DNS pod directly (its pod IP),
and every check of the source carries those answers: its datapath parts are the
source's own and the path to every DNS pod.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import threading
from typing import Any

from generator.checks.base import CommandCheck, LabView, Outcome, Planning, Pod
from generator.node.contract import (
    DNS_NAMESPACE,
    DNS_SERVICE,
    ServiceSpec,
    namespace_of,
    service_selects,
)

OUTSIDE = "example.org."  # any name outside the cluster domain: REFUSED, never forwarded
TIMEOUT = 4.0  # per raw query; getaddrinfo: 2 s × 2 attempts per search-list entry
COMMAND_TIMEOUT = 60


class Dns(CommandCheck):
    kind = "dns"

    def run(self, lab: LabView) -> Outcome:
        result = self.params["lookups"].result(lab)
        if isinstance(result, str):
            return Outcome(False, result)
        problems = _unreachable_dns_pods(self.params["lookups"], result)
        if "names" in self.params:
            ok, seen = _judge_names(self.params["names"], result["names"])
        else:
            ok, seen = _judge_query(self.params["query"], self.params["want"],
                                    result["queries"][self.params["index"]])
        if problems:
            seen += "; " + "; ".join(problems)
        return Outcome(ok and not problems, seen)


class PodLookups:
    """All DNS lookups of one source pod: run once, by whichever of its checks asks first."""

    def __init__(self, source: str, dns_pods: list[Pod], probe_name: str) -> None:
        self.source = source
        self.names: list[str] = []
        self.dns_pods = [p for p in dns_pods if p.get("ip")]
        # First, `probe_name` asked of every DNS pod directly (its pod IP, no DNAT).
        self.queries: list[dict[str, Any]] = [
            {"server": p["ip"], "name": probe_name, "type": "A"} for p in self.dns_pods]
        self._lock = threading.Lock()
        self._result: dict[str, Any] | str | None = None

    def query(self, name: str, qtype: str, server: str | None = None) -> int:
        self.queries.append({"server": server, "name": name, "type": qtype})
        return len(self.queries) - 1

    def job(self) -> dict[str, Any]:
        return {"names": self.names, "queries": self.queries, "timeout": TIMEOUT}

    def result(self, lab: LabView) -> dict[str, Any] | str:
        """The node side's answers, or why there are none."""
        with self._lock:
            if self._result is None:
                self._result = self._run(lab)
            return self._result

    def _run(self, lab: LabView) -> dict[str, Any] | str:
        cmd = (f"timeout -k 2 {COMMAND_TIMEOUT} python3 -m generator.node.dns.lookup "
               f"{shlex.quote(json.dumps(self.job()))}")
        out = lab.host(self.source).run(cmd)
        try:
            result = json.loads(out.stdout)
            if isinstance(result, dict) and len(result.get("queries", [])) == len(self.queries):
                return result
        except ValueError:
            pass
        return f"lookups from {self.source} did not run: " + \
            (out.stderr or out.stdout or f"exit {out.rc}").strip()[:200]


def _unreachable_dns_pods(lookups: PodLookups, result: dict[str, Any]) -> list[str]:
    found = result["queries"][:len(lookups.dns_pods)]
    return [f"{pod['name']} ({pod['ip']}) asked directly: {got['error'] or got['rcode']}"
            for pod, got in zip(lookups.dns_pods, found, strict=True)
            if got["error"] or got["rcode"] != "NOERROR" or not got["answers"]]


def _judge_names(expected: dict[str, list[str]], got: dict[str, Any]) -> tuple[bool, str]:
    wrong = []
    for name, want in expected.items():
        answer = got.get(name) or {"ips": [], "error": "not asked"}
        if answer["ips"] != want:
            shown = ", ".join(answer["ips"]) or answer["error"] or "no address"
            wrong.append(f"{name} → {shown}, expected {', '.join(want) or 'no address'}")
    if wrong:
        return False, "; ".join(wrong)
    any_want = next(iter(expected.values()))
    return True, f"{', '.join(any_want) or 'no address'} for all {len(expected)} names"


def _judge_query(query: dict[str, Any], want: dict[str, Any], got: dict[str, Any]) -> tuple[bool, str]:
    seen = got["error"] or f"{got['rcode']} {', '.join(got['answers'])}".strip()
    ok = got["error"] is None and got["rcode"] == want["rcode"] and \
        (want["answers"] is None or got["answers"] == want["answers"])
    return ok, f"{query['type']} {query['name']}: {seen}"


# ---- planning


def domain_of(ctx: Planning) -> str:
    return ctx.cluster.get("clusterDomain") or "cluster.local"


def dns_pods(ctx: Planning) -> list[Pod]:
    svc = next((s for s in ctx.cluster["services"]
                if (namespace_of(s), s["name"]) == (DNS_NAMESPACE, DNS_SERVICE)), None)
    return [p for p in ctx.cluster["pods"] if svc is not None and service_selects(svc, p)]


def sources(ctx: Planning, skip: list[Pod]) -> list[Pod]:
    """The first pod of every namespace, then the first of every node not yet covered;
    only pods the lab's NetworkPolicies let reach every DNS pod (`skip`) on 53/UDP."""
    names = {p["name"] for p in skip}
    pods = [p for p in ctx.cluster["pods"] if p["name"] not in names and p.get("ip")
            and all(ctx.allows(p, server, 53, "UDP") for server in skip)]
    chosen: dict[str, Pod] = {}
    for pod in pods:
        chosen.setdefault(namespace_of(pod), pod)
    covered = {p["node"] for p in chosen.values()}
    picked = list(chosen.values())
    for pod in pods:
        if pod["node"] not in covered:
            covered.add(pod["node"])
            picked.append(pod)
    return picked


def expected_ips(ctx: Planning, svc: ServiceSpec) -> list[str]:
    """The A records of a service: its cluster IP; headless, its ready endpoints' pod IPs."""
    if svc["clusterIP"] != "None":
        return [svc["clusterIP"]]
    listed = ctx.listed(svc)
    if listed is not None:
        ips = {e.rsplit(":", 1)[0] for e in listed.get("endpoints") or []}
    else:
        ips = {p["ip"] for p in ctx.cluster["pods"] if p.get("ip") and service_selects(svc, p)}
    return sorted(ips, key=ipaddress.IPv4Address)


def names_for(svc: ServiceSpec, source: Pod, domain: str) -> list[str]:
    ns = namespace_of(svc)
    names = [f"{svc['name']}.{ns}", f"{svc['name']}.{ns}.svc.{domain}"]
    return ([svc["name"]] if ns == namespace_of(source) else []) + names


def plan(ctx: Planning) -> list[Dns]:
    spec = ctx.cluster.get("dns")
    if not spec or not spec.get("enabled"):
        return []
    servers = dns_pods(ctx)
    domain = domain_of(ctx)
    checks: list[Dns] = []
    for n, source in enumerate(sources(ctx, servers)):
        lookups = PodLookups(source["name"], servers, f"{DNS_SERVICE}.{DNS_NAMESPACE}.svc.{domain}.")
        depends = _depends(ctx, source, servers)
        for svc in ctx.cluster["services"]:
            checks.append(_resolves(ctx, svc, source, lookups, domain, depends))
        checks.append(_refused(source, lookups, depends))
        if n == 0:
            checks += _srv(ctx, source, lookups, domain, depends)
    return checks


def _depends(ctx: Planning, source: Pod, servers: list[Pod]) -> frozenset[str]:
    parts = {f"nat:{source['node']}", f"veth:{source['name']}", f"bridge:{source['node']}"}
    for server in servers:
        parts |= ctx.path(source, server)
    return frozenset(parts)


def _label(name: str, source: Pod) -> str:
    return f"{name} from {source['name']}"


def _resolves(ctx: Planning, svc: ServiceSpec, source: Pod, lookups: PodLookups, domain: str,
              depends: frozenset[str]) -> Dns:
    ns, want = namespace_of(svc), expected_ips(ctx, svc)
    names = names_for(svc, source, domain)
    lookups.names += names
    kind = "headless: its ready endpoints" if svc["clusterIP"] == "None" else "its cluster IP"
    return Dns(_label(f"{svc['name']}.{ns}", source),
               f"DNS: {svc['name']}.{ns} from {source['name']} ({namespace_of(source)})",
               source["name"], f"{svc['name']}.{ns}",
               f"{', '.join(names)} → {', '.join(want) or 'no address'} ({kind})",
               depends, {"lookups": lookups, "names": {name: _answer(name, want, source)
                                                       for name in names}})


def _answer(name: str, want: list[str], source: Pod) -> list[str]:
    """A pod's own name comes from its hosts file before any DNS (kubelet's managed
    /etc/hosts), so a service named as the asking pod resolves there to the pod's IP."""
    return [source["ip"]] if name == source["name"] and source.get("ip") else want


def _refused(source: Pod, lookups: PodLookups, depends: frozenset[str]) -> Dns:
    index = lookups.query(OUTSIDE, "A")
    return Dns(_label(OUTSIDE, source), f"DNS: an outside name from {source['name']}",
               source["name"], OUTSIDE, "REFUSED (nothing is forwarded)", depends,
               {"lookups": lookups, "query": lookups.queries[index], "index": index,
                "want": {"rcode": "REFUSED", "answers": None}})


def _srv(ctx: Planning, source: Pod, lookups: PodLookups, domain: str,
         depends: frozenset[str]) -> list[Dns]:
    """The SRV record of the first named port of a ClusterIP service (the lab's own first)."""
    ranked = sorted(ctx.cluster["services"], key=lambda s: namespace_of(s) == DNS_NAMESPACE)
    for svc in ranked:
        port = next((p for p in svc["ports"] if p["name"]), None)
        if svc["clusterIP"] == "None" or port is None:
            continue
        fqdn = f"{svc['name']}.{namespace_of(svc)}.svc.{domain}"
        name = f"_{port['name']}._{port['protocol'].lower()}.{fqdn}."
        index = lookups.query(name, "SRV")
        record = f"0 100 {port['port']} {fqdn}."
        return [Dns(_label(f"SRV {name}", source), f"DNS: SRV of {svc['name']}'s port "
                    f"{port['name']} from {source['name']}", source["name"], name, record,
                    depends, {"lookups": lookups, "query": lookups.queries[index],
                              "index": index, "want": {"rcode": "NOERROR", "answers": [record]}})]
    return []
