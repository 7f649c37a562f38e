"""ClientIP session affinity: one client's requests all go to the one backend."""

from __future__ import annotations

from generator.checks.base import LabView, Outcome, Planning, Pod, ProbeCheck, names, svc_name
from generator.checks.batch import all_ok, answers, describe, job
from generator.node.contract import ServicePortSpec, ServiceSpec
from generator.node.documents import ProbeJob, ProbeSummary

AFFINITY_REQUESTS = 10


class Affinity(ProbeCheck):
    kind = "affinity"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        # One request at a time: the first answer must pin the client before the next asks.
        return [job(lab, self.source, "http", self.target, "/hostname",
                    self.params["requests"], streams=1)]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        [s] = summaries
        seen = answers(s)
        return Outcome(all_ok(s) and seen <= set(self.params["backends"]) and len(seen) == 1,
                       describe(s))


def plan(ctx: Planning, svc: ServiceSpec, port: ServicePortSpec, source: Pod,
         backends: list[Pod]) -> Affinity:
    return Affinity(f"{svc_name(svc)}:{port['port']} from {source['name']}",
                    f"ClientIP affinity of {svc_name(svc)}", source["name"],
                    f"{svc['clusterIP']}:{port['port']}",
                    f"{AFFINITY_REQUESTS} requests, one backend",
                    ctx.service_path(source, backends),
                    {"requests": AFFINITY_REQUESTS, "backends": names(backends)})
