"""Hairpin: a backend reaches itself through its own service.

kube-proxy masquerades a pod that its service sends back to itself; the pod
must answer itself within `hit_requests(n)` requests (stats.py).
"""

from __future__ import annotations

from generator.checks.base import LabView, Outcome, Planning, Pod, ProbeCheck, names, svc_name
from generator.checks.batch import all_ok, answers, describe, job
from generator.checks.stats import hit_miss_probability, hit_requests
from generator.node.contract import ServicePortSpec, ServiceSpec
from generator.node.documents import ProbeJob, ProbeSummary


class Hairpin(ProbeCheck):
    kind = "hairpin"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        p = self.params
        return [job(lab, self.source, "http", self.target, "/hostname", p["requests"],
                    until=[p["self"]])]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        [s] = summaries
        p = self.params
        ok = all_ok(s) and answers(s) <= set(p["backends"]) and p["self"] in s["answers"]
        return Outcome(ok, describe(s))


def plan(ctx: Planning, svc: ServiceSpec, port: ServicePortSpec,
         backends: list[Pod]) -> Hairpin:
    pod = backends[0]
    requests = hit_requests(len(backends))
    return Hairpin(f"{svc_name(svc)}:{port['port']} from {pod['name']}",
                   f"a backend reaches itself through {svc_name(svc)}", pod["name"],
                   f"{svc['clusterIP']}:{port['port']}",
                   f"{pod['name']} answers itself (≤ {requests} requests)",
                   ctx.service_path(pod, backends),
                   {"requests": requests, "self": pod["name"],
                    "false_failure": hit_miss_probability(len(backends), requests),
                    "backends": names(backends)})
