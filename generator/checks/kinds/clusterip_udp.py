"""ClusterIP over UDP: every datagram to the cluster IP is answered by a backend."""

from __future__ import annotations

from generator.checks.base import LabView, Outcome, Planning, Pod, ProbeCheck, names, svc_name
from generator.checks.batch import all_ok, answers, describe, job
from generator.node.contract import ServicePortSpec, ServiceSpec
from generator.node.documents import ProbeJob, ProbeSummary

UDP_DRAWS = 8  # datagrams to a UDP ClusterIP: every answer must come from a backend


class ClusterIPUDP(ProbeCheck):
    kind = "clusterip-udp"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        return [job(lab, self.source, "udp", self.target, "hostname", self.params["requests"])]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        [s] = summaries
        return Outcome(all_ok(s) and answers(s) <= set(self.params["backends"]), describe(s))


def plan(ctx: Planning, svc: ServiceSpec, port: ServicePortSpec, source: Pod,
         backends: list[Pod]) -> ClusterIPUDP:
    return ClusterIPUDP(f"{svc_name(svc)}:{port['port']} from {source['name']}",
                        f"ClusterIP {svc_name(svc)} over UDP", source["name"],
                        f"{svc['clusterIP']}:{port['port']}",
                        f"{UDP_DRAWS} datagrams, each answered by a backend",
                        ctx.service_path(source, backends),
                        {"requests": UDP_DRAWS, "backends": names(backends)})
