"""NetworkPolicy: every pod's reachability to every pod, as the lab's policies say it must be.

Planned only for a lab with policies. The expectation comes from kgen's own
evaluator (`generator.netpol.evaluate`, Kubernetes' semantics, independent of
the rules the nodes write), and every pair is probed for real: one check per
source pod and port (its row of the matrix), over TCP to the test server's
8080, and over UDP to its 8081 when some policy names UDP or the policies treat
UDP otherwise than TCP (lab contract §4).
A mismatch fails the row, naming each pair and the reason the evaluator gives
(the policy that isolates, or the ones that allow). `kgen check` prints the
rows as the matrix Kubernetes' network-policy e2e tests print
(generator/checks/matrix.py).

How long a probe waits decides which mistakes are possible:
- must reach: batch.TIMEOUT (10 s), as every other check: a SYN lost on a busy
  host is sent again after 1 s and 3 s, so only a real drop runs it out.
- must be blocked: batch.DROP_TIMEOUT (2 s). A policy drops the SYN (or the
  datagram) silently, so no answer ever comes; the wait only bounds the run.
  Waiting cannot make a correct lab fail (an answer to a blocked pair is a
  failure however late it comes, and we stop listening only after 2 s). The
  error it can make is the other way: a broken lab whose answer is slower than
  2 s would pass as blocked. Lab round trips take about a millisecond; 2 s is
  past TCP's first SYN retransmission (1 s), so a lost first SYN that is then
  answered is still seen.
"""

from __future__ import annotations

from typing import Any

from generator.checks.base import LabView, Outcome, Planning, Pod, ProbeCheck
from generator.checks.batch import DROP_TIMEOUT, TIMEOUT, describe, job
from generator.netpol.evaluate import Evaluator
from generator.node.documents import ProbeJob, ProbeSummary

HTTP = (8080, "TCP")  # the test server's `http` port
UDP = (8081, "UDP")  # and its `udp` port


def key(pod: Pod) -> str:
    """A pod as the matrix labels it: NAMESPACE/NAME."""
    return f"{pod.get('namespace') or 'default'}/{pod['name']}"


def probed_ports(cluster: Any, evaluator: Evaluator | None = None) -> list[tuple[int, str]]:
    """TCP always; UDP too when some policy names UDP (a port with protocol UDP), or when
    the policies treat UDP otherwise than TCP (e.g. they allow only TCP)."""
    for policy in cluster.get("networkPolicies") or ():
        spec = policy.get("spec") or {}
        rules = [*(spec.get("ingress") or ()), *(spec.get("egress") or ())]
        if any(p.get("protocol") == "UDP" for r in rules for p in r.get("ports") or ()):
            return [HTTP, UDP]
    if evaluator is not None and evaluator.matrix(*UDP) != evaluator.matrix(*HTTP):
        return [HTTP, UDP]
    return [HTTP]


def observe(s: ProbeSummary, target: str) -> bool | None:
    """Reached (answered, or refused: the packet got there), blocked (timed out), or
    neither (another error: the datapath is broken some other way)."""
    if s["ok"] and set(s["answers"]) == {target}:
        return True
    if not s["ok"] and "connection refused" in s["errors"]:
        return True
    if not s["ok"] and set(s["errors"]) == {"timed out"}:
        return False
    return None


class NetPol(ProbeCheck):
    kind = "netpol"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        port, proto = self.params["port"], self.params["protocol"]
        mode, arg = ("http", "/hostname") if proto == "TCP" else ("udp", "hostname")
        return [job(lab, self.source, mode, f"{lab.pod_ip[d['pod']]}:{port}", arg,
                    timeout=TIMEOUT if d["expected"] else DROP_TIMEOUT, streams=1)
                for d in self.params["to"]]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        reach: dict[str, dict[str, Any]] = {}
        wrong: list[str] = []
        for d, s in zip(self.params["to"], summaries, strict=True):
            seen = observe(s, d["pod"])
            reach[d["key"]] = {"expected": d["expected"], "observed": seen, "reason": d["reason"]}
            if seen is not d["expected"]:
                saw = "reached" if seen else "blocked" if seen is False else describe(s)
                wrong.append(f"{self.params['from']} → {d['key']}: {saw}, expected "
                             f"{'reachable' if d['expected'] else 'blocked'} ({d['reason']})")
        extra = {"matrix": f"NetworkPolicy reachability, {self.params['protocol']} "
                           f"{self.params['port']}",
                 "protocol": self.params["protocol"], "port": self.params["port"],
                 "fromPod": self.params["from"], "reach": reach}
        if wrong:
            return Outcome(False, "; ".join(wrong), extra)
        blocked = sum(not r["observed"] for r in reach.values())
        return Outcome(True, f"as expected: {len(reach) - blocked} reached, {blocked} blocked",
                       extra)


def plan(ctx: Planning) -> list[NetPol]:
    if ctx.policy is None:
        return []
    pods = [p for p in ctx.servers if p.get("ip")]
    return [_row(ctx, ctx.policy, source, pods, port, proto)
            for port, proto in probed_ports(ctx.cluster, ctx.policy) for source in pods]


def _row(ctx: Planning, evaluator: Evaluator, source: Pod, pods: list[Pod], port: int,
         proto: str) -> NetPol:
    netpol_pods = {p.name: p for p in evaluator.cluster.pods}
    to: list[dict[str, Any]] = []
    for dst in pods:
        verdict = evaluator.decide(netpol_pods[source["name"]], netpol_pods[dst["name"]], port, proto)
        to.append({"pod": dst["name"], "key": key(dst), "expected": verdict.allowed,
                   "reason": verdict.reason})
    reachable = sum(d["expected"] for d in to)
    parts: set[str] = set()
    for dst in pods:
        parts |= ctx.path(source, dst)
    return NetPol(f"from {source['name']} {proto.lower()}/{port}",
                  f"NetworkPolicy row: {key(source)} to every pod over {proto} {port}",
                  source["name"], f"{len(pods)} pods",
                  f"reaches {reachable}, blocked from {len(pods) - reachable} (policies)",
                  frozenset(parts),
                  {"from": key(source), "port": port, "protocol": proto, "to": to})
