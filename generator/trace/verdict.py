"""The verdict of a trace: answered, refused, dropped or timeout, and one line saying
where and why, from the probe's own result and the hops the join found."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from generator.node.contract import Cluster
from generator.node.documents import TraceDns, TraceProbeResult, TraceResult, TraceTried
from generator.trace.narrate import Hop
from generator.trace.plan import Plan


@dataclass
class Result:
    plan: Plan
    probe: TraceProbeResult
    hops: list[Hop] = field(default_factory=list)
    verdict: str = "timeout"
    answered_by: str | None = None
    summary: str = ""
    src_ip: str = ""
    dns: Lookup | None = None  # DST was a name: the source's lookup, traced first

    def as_json(self) -> TraceResult:
        p = self.plan
        return {"src": {"name": p.src.name, "ip": self.src_ip or p.src.ip},
                "dst": {"name": p.dst.name, "ip": p.dst.ip, "port": p.port,
                        "protocol": p.proto},
                "verdict": self.verdict, "answeredBy": self.answered_by,
                "hops": [h.as_json() for h in self.hops],
                "dns": self.dns.as_json() if self.dns else None}


@dataclass
class Lookup:
    """The source's DNS lookup of a name: its own trace (query and answer) and what the
    resolver got (generator.node.trace_dns)."""

    query: Result
    name: str
    server: str
    answers: list[str]
    rcode: str | None  # None: no answer came back
    tried: list[TraceTried]

    def as_json(self) -> TraceDns:
        return {"name": self.name, "server": self.server, "answers": self.answers,
                "rcode": self.rcode, "tried": self.tried, "verdict": self.query.verdict,
                "answeredBy": self.query.answered_by,
                "hops": [h.as_json() for h in self.query.hops]}


def decide(r: Result, cluster: Cluster, names: dict[str, str], seen: bool, drop: Hop | None,
           last: Hop | None) -> None:
    """Set the result's verdict and summary. `seen`: the request reached some node's
    netfilter; `drop`: the first drop or reject hop; `last`: the last hop recorded."""
    error = str(r.probe.get("error") or "") if r.probe else ""
    if r.probe and r.probe.get("ok"):
        _answered(r, cluster, names)
    elif "refused" in error:
        _refused(r, names)
    elif drop is not None:
        r.verdict = "dropped"
        if drop.policy:
            r.summary = (f"dropped at {drop.node} by NetworkPolicy {drop.policy} "
                         f"({drop.table} {drop.chain}: {drop.rule})")
        elif drop.rule:
            why = re.search(r'--comment "([^"]*)"', drop.rule)
            r.summary = (f"dropped at {drop.node} by {drop.table} {drop.chain}"
                         + (f" ({why.group(1)})" if why else "") + f": {drop.rule}")
        else:
            r.summary = f"dropped at {drop.node}: {drop.detail.split(': ', 1)[-1]}"
    elif "unreachable" in error or "no route" in error:
        r.verdict = "dropped"
        r.summary = f"dropped: {error} (an ICMP error came back)"
    else:
        _timeout(r, error, seen, last)


def _label(names: dict[str, str], ip: str) -> str:
    who = names.get(ip)
    return f"{ip} ({who})" if who else ip


def _answered(r: Result, cluster: Cluster, names: dict[str, str]) -> None:
    ms = r.probe.get("ms")
    took = f" in {ms:.1f} ms" if isinstance(ms, int | float) and ms else ""
    r.verdict = "answered"
    answer = str(r.probe.get("answer") or "")
    if r.plan.proto == "icmp":
        pods = {x["name"] for x in cluster["pods"]}
        r.answered_by = names.get(answer) if names.get(answer) in pods else None
        who = _label(names, answer)
    else:
        r.answered_by = answer or None
        where = next((h.packet["dst"] for h in r.hops if h.direction == "request"
                      and h.step == "deliver"), None)
        who = answer + (f" ({where})" if where else "")
    r.summary = f"answered by {who}{took}"


def _refused(r: Result, names: dict[str, str]) -> None:
    r.verdict = "refused"
    rej = next((h for h in r.hops if h.step == "reject"), None)
    if rej:
        r.summary = f"refused at {rej.node} by {rej.table} {rej.chain}: {rej.rule}"
        return
    delivered = next((h for h in r.hops if h.direction == "request" and h.step == "deliver"), None)
    rst = next((h for h in r.hops if h.direction == "reply" and "RST" in h.detail), None)
    where = f" at {delivered.packet['dst']}" if delivered else ""
    how = ("answered with a TCP reset" if rst or r.plan.proto == "tcp" else
           "answered with ICMP port unreachable")
    who = (names.get(delivered.packet["dst"].split(":")[0]) if delivered else None) \
        or "the destination"
    r.summary = f"refused: {who} {how} (nothing listens{where})"


def _timeout(r: Result, error: str, seen: bool, last: Hop | None) -> None:
    r.verdict = "timeout"
    drops = int(r.probe.get("backlogDrops") or 0) if r.probe else 0
    if drops:
        error = (f"{error or 'no answer'}; meanwhile the kernel dropped {drops} packet(s) from "
                 "its input backlog (/proc/net/softnet_stat): a busy machine, not a rule")
    if not seen:
        r.summary = (f"timeout ({error or 'no answer'}): the packet never reached any node's "
                     "netfilter after leaving the source")
    elif last is not None:
        r.summary = f"timeout ({error or 'no answer'}): last seen at {last.node}: {last.detail}"
    else:
        r.summary = f"timeout ({error or 'no answer'})"
