"""No endpoints: a TCP service without backends refuses at once (kube-proxy's REJECT)."""

from __future__ import annotations

from generator.checks.base import LabView, Outcome, Planning, ProbeCheck, svc_name
from generator.checks.batch import describe, job
from generator.node.contract import ServiceSpec
from generator.node.documents import ProbeJob, ProbeSummary


class NoEndpoints(ProbeCheck):
    kind = "no-endpoints"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        return [job(lab, self.source, "tcp", self.target)]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        [s] = summaries
        # REJECT answers at once; a missing rule would give "no route" (the unreachable
        # service range) or a timeout, never a refusal.
        refused = s["ok"] == 0 and "connection refused" in s["errors"]
        return Outcome(refused, f"{describe(s)} after {float(s['ms_max']):.0f} ms")


def plan(ctx: Planning, svc: ServiceSpec) -> list[NoEndpoints]:
    port = svc["ports"][0]
    if not ctx.servers or port["protocol"] != "TCP":
        return []
    source = ctx.servers[0]
    return [NoEndpoints(f"{svc_name(svc)}:{port['port']} from {source['name']}",
                        f"{svc_name(svc)} has no endpoints", source["name"],
                        f"{svc['clusterIP']}:{port['port']}", "refused at once (REJECT)",
                        frozenset({f"veth:{source['name']}", f"bridge:{source['node']}"}),
                        {"protocol": port["protocol"]})]
