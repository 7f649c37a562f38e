"""NetworkPolicy from outside: each client to a NodePort through every node, as the
policies isolating the service's backends say.

Planned for a NodePort (or LoadBalancer) service only when some policy keeps a
client or a node from its backends (otherwise the nodeport kind checks it).
Which address a backend's policies see is kube-proxy's doing: the client's
own under externalTrafficPolicy Local, and under Cluster also when the backend
runs on the node the client came in through (the masquerade happens in
POSTROUTING, after the FORWARD hook that enforces the policy); a backend on
another node sees the entry node's address. A node whose backends would not
all get the same verdict is left out (which one answers is a random draw), as
is a Local node without a backend (dropped whatever the policies say). The
timeouts are the netpol kind's: 10 s to be reached, 2 s to count as blocked.
"""

from __future__ import annotations

from typing import Any

from generator.checks.base import LabView, Outcome, Planning, Pod, ProbeCheck
from generator.checks.batch import DROP_TIMEOUT, TIMEOUT, describe, job
from generator.node.contract import ClientSpec, ServiceSpec
from generator.node.documents import ProbeJob, ProbeSummary


class NetPolNodePort(ProbeCheck):
    kind = "netpol-nodeport"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        return [job(lab, self.source, "http", v["target"], "/hostname",
                    timeout=TIMEOUT if v["expected"] else DROP_TIMEOUT, streams=1)
                for v in self.params["via"]]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        reach: dict[str, dict[str, Any]] = {}
        wrong: list[str] = []
        for v, s in zip(self.params["via"], summaries, strict=True):
            seen: bool | None = None
            if s["ok"] and set(s["answers"]) <= set(v["backends"]):
                seen = True
            elif not s["ok"] and set(s["errors"]) == {"timed out"}:
                seen = False
            reach[v["column"]] = {"expected": v["expected"], "observed": seen,
                                  "reason": v["reason"]}
            if seen is not v["expected"]:
                saw = "reached" if seen else "blocked" if seen is False else describe(s)
                wrong.append(f"{self.source} → {v['column']}: {saw}, expected "
                             f"{'reachable' if v['expected'] else 'blocked'} ({v['reason']})")
        extra = {"matrix": self.params["matrix"], "fromPod": self.source, "reach": reach}
        if wrong:
            return Outcome(False, "; ".join(wrong), extra)
        blocked = sum(not r["observed"] for r in reach.values())
        return Outcome(True, f"as expected: {len(reach) - blocked} reached, {blocked} blocked",
                       extra)


def plan(ctx: Planning, svc: ServiceSpec, serving_at: Any) -> list[NetPolNodePort]:
    """`serving_at(node)`: who answers external traffic arriving at a node."""
    port = next((p for p in svc["ports"] if p.get("nodePort") and p["protocol"] == "TCP"), None)
    if ctx.policy is None or port is None:
        return []
    checks = []
    for client in ctx.cluster["clients"]:
        via = [v for node in ctx.cluster["nodes"]
               if (v := _via(ctx, svc, port, client, node, serving_at(node["name"])))]
        if via:
            title = (f"NetworkPolicy reachability from clients, NodePort "
                     f"{svc.get('namespace') or 'default'}/{svc['name']} {port['nodePort']}")
            checks.append(NetPolNodePort(
                f"{client['name']} to {svc['name']}:{port['nodePort']}",
                f"NetworkPolicy: {client['name']} to NodePort {svc['name']} via every node",
                client["name"], f"{len(via)} nodes",
                f"reaches {sum(v['expected'] for v in via)} of {len(via)} (policies)",
                frozenset(), {"matrix": title, "via": via}))
    return checks


def _via(ctx: Planning, svc: ServiceSpec, port: Any, client: ClientSpec, node: Any,
         serving: list[Pod]) -> dict[str, Any] | None:
    local = svc["externalTrafficPolicy"] == "Local"
    if not serving:
        return None
    verdicts = []
    for backend in serving:
        seen_from = client["ip"] if local or backend["node"] == node["name"] else node["ip"]
        verdicts.append(_decide(ctx, seen_from, backend, port["targetPort"]))
    if len({allowed for allowed, _ in verdicts}) != 1:
        return None  # some backends would answer, others not: a random draw decides
    allowed, reason = verdicts[0]
    return {"column": f"{node['name']}:{port['nodePort']}", "expected": allowed,
            "reason": reason, "target": f"{node['ip']}:{port['nodePort']}",
            "backends": sorted(b["name"] for b in serving)}


def _decide(ctx: Planning, src_ip: str, backend: Pod, port: int) -> tuple[bool, str]:
    assert ctx.policy is not None
    dst = next((p for p in ctx.policy.cluster.pods if p.name == backend["name"]), None)
    if dst is None:
        return True, "no policy isolates it"
    verdict = ctx.policy.decide(src_ip, dst, port, "TCP")
    return verdict.allowed, f"as {src_ip} to {dst.key}: {verdict.reason}"
