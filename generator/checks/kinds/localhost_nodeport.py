"""Localhost NodePort: `curl 127.0.0.1:<nodePort>` on a node answers (iptables mode).

kube-proxy's iptables mode accepts NodePorts on the node's 127.0.0.0/8 (its
default localhost NodePorts) and sets net.ipv4.conf.all.route_localnet=1 so
that the DNATed packet may leave loopback. The traffic is the node's own
(src-type LOCAL), so KUBE-EXT sends it to the Cluster endpoints even under
externalTrafficPolicy Local: the answer must come from one of those. The
nftables mode does not do this (kube-proxy does not support it there): no check.
"""

from __future__ import annotations

from generator.checks.base import LabView, Outcome, Pod, ProbeCheck, names, shown, svc_name
from generator.checks.batch import all_ok, answers, describe, job
from generator.node.contract import NodeSpec, ServiceSpec
from generator.node.documents import ProbeJob, ProbeSummary


class LocalhostNodePort(ProbeCheck):
    """One request from the node's own network namespace (a node source has no pod's),
    sent with the node's other probes, as `curl 127.0.0.1:<nodePort>` would."""

    kind = "localhost"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        return [job(lab, self.source, "http", self.target, "/hostname")]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        [s] = summaries
        ok = all_ok(s) and answers(s) <= set(self.params["backends"])
        return Outcome(ok, f"answered by {describe(s)}")


def plan(svc: ServiceSpec, node: NodeSpec, proxy_mode: str,
         answerers: list[Pod]) -> list[LocalhostNodePort]:
    """The check on `node`, whose Cluster endpoints for the service are `answerers`."""
    port = next((p for p in svc["ports"] if p["nodePort"] and p["protocol"] == "TCP"), None)
    if proxy_mode != "iptables" or port is None or not answerers:
        return []
    parts = {f"nat:{node['name']}"} | {f"veth:{b['name']}" for b in answerers}
    parts |= {f"bridge:{b['node']}" for b in answerers}
    parts |= {f"overlay:{n}" for n in {b["node"] for b in answerers} - {node["name"]}}
    if any(b["node"] != node["name"] for b in answerers):
        parts.add(f"overlay:{node['name']}")
    return [LocalhostNodePort(
        f"{svc_name(svc)}:{port['nodePort']} on {node['name']}",
        f"NodePort {svc_name(svc)} on {node['name']}'s 127.0.0.1", node["name"],
        f"127.0.0.1:{port['nodePort']}", f"answered by one of {shown(names(answerers))}",
        frozenset(parts), {"nodePort": port["nodePort"], "backends": names(answerers)})]
